// The web UI in Debian's Chromium, driven by playwright-core (run by tests/ui_browser.rs).
//
// Environment: PLAYWRIGHT (playwright-core's index.mjs), CHROMIUM (the browser), REGISTRY
// (http://127.0.0.1:<port>), UI_USER / UI_PASSWORD, SHOTS (where screenshots go), PACKAGE (the
// npm package published by the test).
//
// Exits non-zero with a message at the first expectation that fails.

const { chromium } = await import(process.env.PLAYWRIGHT);
const registry = process.env.REGISTRY;
const shots = process.env.SHOTS;
const packageName = process.env.PACKAGE;
const host = new URL(registry).host;

function expect(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-dev-shm-usage",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
  ],
});

// Every page must stay inert: no dialog opens, no script rewrites the title, no request
// leaves for another origin, and the Content-Security-Policy is never violated by our own pages.
function watch(page, label) {
  page.on("dialog", async (dialog) => {
    await dialog.dismiss();
    throw new Error(`${label}: a dialog opened: ${dialog.message()}`);
  });
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol.startsWith("http") && url.host !== host) {
      throw new Error(`${label}: a request left for ${request.url()}`);
    }
  });
  const violations = [];
  page.on("console", (message) => {
    if (message.text().includes("Content Security Policy")) {
      violations.push(message.text());
    }
  });
  return violations;
}

async function rowsOf(page) {
  return page.$$eval("table.tags td.tag a", (links) => links.map((a) => a.textContent.trim()));
}

try {
  // Anonymous: only what the anonymous grants allow.
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    watch(page, "anonymous");
    await page.goto(`${registry}/`);
    expect(new URL(page.url()).pathname === "/ui/", `/ leads to /ui/, not ${page.url()}`);
    const text = await page.textContent("main");
    expect(text.includes("public/base"), "anonymous visitors see public/base");
    expect(!text.includes("team/app"), "anonymous visitors do not see team/app");
    const refused = await page.goto(`${registry}/ui/r/team/app`);
    expect(refused.status() === 401, `team/app is 401 for anonymous visitors, not ${refused.status()}`);
    expect(!(await page.textContent("body")).includes("v2"), "no tag of team/app is shown");
    await page.screenshot({ path: `${shots}/anonymous.png`, fullPage: true });
    await context.close();
  }

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: registry });
  const page = await context.newPage();
  const violations = watch(page, "logged in");

  // Log in.
  await page.goto(`${registry}/ui/login`);
  await page.screenshot({ path: `${shots}/login.png`, fullPage: true });
  await page.fill("input[name=user]", process.env.UI_USER);
  await page.fill("input[name=password]", process.env.UI_PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click("form.login button[type=submit]")]);
  expect((await page.textContent("nav.top")).includes(process.env.UI_USER), "the user is shown after login");
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "registry_session");
  expect(session && session.httpOnly && session.sameSite === "Strict", `session cookie: ${JSON.stringify(session)}`);
  expect(!(await page.content()).includes(session.value), "no page holds the session's secret");
  await page.screenshot({ path: `${shots}/repositories.png`, fullPage: true });

  // Browse to the image pushed by skopeo.
  await Promise.all([page.waitForNavigation(), page.click("a[href='/ui/r/team/app']")]);
  let rows = await rowsOf(page);
  expect(rows.join() === "v2,v1", `newest first by default: ${rows}`);
  expect((await page.textContent("table.tags")).includes("linux/amd64"), "platforms are shown");
  await page.screenshot({ path: `${shots}/tags.png`, fullPage: true });

  // Sort by time, oldest first, then by name descending.
  await Promise.all([page.waitForNavigation(), page.click("th.sort a:has-text('Pushed')")]);
  rows = await rowsOf(page);
  expect(rows.join() === "v1,v2", `oldest first after sorting by time: ${rows}`);
  expect(page.url().includes("sort=published"), `the sort is in the URL: ${page.url()}`);
  await Promise.all([page.waitForNavigation(), page.click("th.sort a:has-text('Tag')")]);
  rows = await rowsOf(page);
  expect(rows.join() === "v2,v1", `name descending: ${rows}`);
  await page.fill("input[name=contains]", "1");
  await Promise.all([page.waitForNavigation(), page.click("form.filter button")]);
  rows = await rowsOf(page);
  expect(rows.join() === "v1", `filtered: ${rows}`);

  // Copy the pull command.
  const command = await page.getAttribute("button[data-copy]", "data-copy");
  expect(command === `podman pull ${host}/team/app:v1`, `the pull command: ${command}`);
  await page.click("button[data-copy]");
  await page.waitForFunction(() => document.querySelector("button[data-copy]").textContent === "Copied");
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  expect(copied === command, `the clipboard holds ${copied}`);

  // The manifest of v2: its hostile annotation is text.
  await page.goto(`${registry}/ui/r/team/app`);
  await Promise.all([page.waitForNavigation(), page.click("td.tag a:has-text('v2')")]);
  const manifest = await page.textContent("main");
  expect(manifest.includes("<img src=x onerror="), "the annotation is shown as text");
  expect(manifest.includes("application/vnd.oci.image.layer.v1.tar+gzip"), "layers are shown");
  expect((await page.$$("table.annotations img")).length === 0, "the annotation made no element");
  expect((await page.title()) !== "pwned", "no script ran");
  await page.screenshot({ path: `${shots}/manifest.png`, fullPage: true });

  // Delete v1, confirming first; then it is gone.
  await page.goto(`${registry}/ui/r/team/app`);
  await page.check("input[name=tag][value=v1]");
  await Promise.all([page.waitForNavigation(), page.click("button:has-text('Delete selected tags')")]);
  expect((await page.textContent("main")).includes("These tags will be deleted"), "a confirmation is asked");
  await page.screenshot({ path: `${shots}/delete-confirmation.png`, fullPage: true });
  await Promise.all([page.waitForNavigation(), page.click("button:has-text('Delete 1 tag')")]);
  expect((await page.textContent("main")).includes("Deleted 1 of 1 tags"), "the tag is deleted");
  await page.goto(`${registry}/ui/r/team/app`);
  rows = await rowsOf(page);
  expect(rows.join() === "v2", `v1 is gone: ${rows}`);

  // The npm package published by npm, with its hostile README rendered inert.
  await page.goto(`${registry}/ui/`);
  await Promise.all([page.waitForNavigation(), page.click("a[href='/ui/packages/js']")]);
  await Promise.all([page.waitForNavigation(), page.click(`table.packages a:has-text('${packageName}')`)]);
  await Promise.all([page.waitForNavigation(), page.click("table.versions a:has-text('1.0.0')")]);
  const version = await page.textContent("main");
  expect(version.includes(`npm install --registry ${registry}/npm/js/ ${packageName}@1.0.0`), "the install command");
  expect(version.includes(`${packageName}-1.0.0.tgz`), "the file");
  expect((await page.textContent("p.description")).includes("<img src=x onerror="), "the description is text");
  expect((await page.textContent(".readme h1")) === "Hello UI", "the README is rendered");
  expect((await page.textContent(".readme")).includes("<script>"), "raw HTML is shown as text");
  expect((await page.$$(".readme script, .readme img[onerror], .readme iframe")).length === 0, "no active element");
  const hrefs = await page.$$eval(".readme a", (links) => links.map((a) => a.getAttribute("href")));
  expect(hrefs.every((h) => !h.toLowerCase().includes("javascript")), `links: ${hrefs}`);
  expect((await page.title()) !== "pwned", "no script ran");
  await page.screenshot({ path: `${shots}/package.png`, fullPage: true });

  expect(violations.length === 0, `CSP violations: ${violations}`);

  // Logging out ends the session.
  await Promise.all([page.waitForNavigation(), page.click("nav.top button:has-text('Log out')")]);
  const after = await page.goto(`${registry}/ui/r/team/app`);
  expect(after.status() === 401, `logged out: ${after.status()}`);
  console.log("web UI checks passed");
} catch (error) {
  console.error(error.stack || String(error));
  process.exitCode = 1;
} finally {
  await browser.close();
}
