//! READMEs rendered from Markdown with nothing active left in them: raw HTML is shown as text,
//! and links and images keep only `http`, `https`, `mailto` and relative destinations.

use maud::{Markup, PreEscaped};
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

/// The most of a README rendered; the rest is cut off (on a character boundary).
const MAX_README: usize = 512 * 1024;

/// Renders a README as sanitised HTML.
pub(crate) fn render(markdown: &str) -> Markup {
    let mut end = markdown.len().min(MAX_README);
    while !markdown.is_char_boundary(end) {
        end -= 1;
    }
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let events = Parser::new_ext(&markdown[..end], options).map(|event| match event {
        // Raw HTML, block or inline, is shown as the text it is.
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    PreEscaped(html)
}

/// A link destination kept only when it cannot run anything: `http`, `https`, `mailto`, or
/// relative (no scheme); anything else becomes `#`.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    // Browsers ignore tabs and newlines inside schemes and trim leading controls and spaces.
    let cleaned: String = url
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect::<String>()
        .trim_start_matches(|c: char| c <= ' ')
        .to_owned();
    let scheme_end = cleaned.find([':', '/', '?', '#']);
    let allowed = match scheme_end {
        Some(at) if cleaned[at..].starts_with(':') => {
            let scheme = cleaned[..at].to_ascii_lowercase();
            matches!(scheme.as_str(), "http" | "https" | "mailto")
        }
        // No scheme: a relative reference.
        _ => true,
    };
    if allowed { url } else { CowStr::Borrowed("#") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_is_text() {
        let html =
            render("# Hi\n\n<script>alert(1)</script>\n\nx <img src=x onerror=alert(1)> y").0;
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("<h1>Hi</h1>"), "{html}");
    }

    #[test]
    fn only_harmless_links_are_kept() {
        for bad in [
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "java\tscript:alert(1)",
            " javascript:alert(1)",
            "data:text/html,hi",
            "vbscript:x",
        ] {
            let html = render(&format!("[a](<{bad}>) ![b](<{bad}>)")).0;
            assert!(
                html.contains("href=\"#\"") && html.contains("src=\"#\""),
                "{bad}: {html}"
            );
            let lowered = html.to_ascii_lowercase();
            assert!(
                !lowered.contains("script:") && !lowered.contains("data:"),
                "{bad}: {html}"
            );
        }
        let html =
            render("[a](https://example.com/x) [b](docs/x.md) [c](mailto:a@b.c) [d](#top)").0;
        for good in ["https://example.com/x", "docs/x.md", "mailto:a@b.c", "#top"] {
            assert!(html.contains(&format!("href=\"{good}\"")), "{good}: {html}");
        }
    }

    #[test]
    fn attributes_cannot_be_broken_out_of() {
        let html = render("[a](https://x/\"onmouseover=\"alert(1) \"t\")").0;
        assert!(!html.contains("\"onmouseover"), "{html}");
    }

    #[test]
    fn long_readmes_are_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_README);
        let html = render(&text).0;
        assert!(html.len() < 2 * MAX_README, "{}", html.len());
    }
}
