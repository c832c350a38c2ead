// Progressive enhancements only: every page works without this script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons beside pull and install commands.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = button.dataset.copy;
      try {
        await navigator.clipboard.writeText(text);
      } catch (_) {
        const area = document.createElement("textarea");
        area.value = text;
        document.body.appendChild(area);
        area.select();
        document.execCommand("copy");
        area.remove();
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
  // "Select all" boxes of tables with a checkbox per row.
  for (const all of document.querySelectorAll("input[data-select-all]")) {
    all.hidden = false;
    all.addEventListener("change", () => {
      const form = all.closest("form");
      for (const box of form.querySelectorAll("input[type=checkbox][name=" + all.dataset.selectAll + "]")) {
        box.checked = all.checked;
      }
    });
  }
});
