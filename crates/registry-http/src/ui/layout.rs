//! The frame every page shares and the small pieces pages are made of: sizes, times, copy
//! boxes, links with query strings.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};
use registry_core::Timestamp;

use super::Ui;
use super::session::Visitor;

/// A whole page: the header with the visitor's login state, the breadcrumbs, the body.
pub(crate) fn page(
    visitor: &Visitor,
    title: &str,
    crumbs: &[(&str, String)],
    body: Markup,
) -> Markup {
    frame(
        title,
        html! {
            header {
                nav.top {
                    a.brand href="/ui/" { "Registry" }
                    a href="/ui/" { "Repositories" }
                    a href="/ui/cleanup" { "Cleanup" }
                    span.spacer {}
                    @match &visitor.user {
                        Some(user) => {
                            span.user { (user) }
                            form.inline method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(visitor.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                        None => {
                            a href="/ui/login" { "Log in" }
                        }
                    }
                }
            }
            main {
                @if !crumbs.is_empty() {
                    nav.crumbs aria-label="breadcrumbs" {
                        @for (label, href) in crumbs {
                            a href=(href) { (label) } " / "
                        }
                    }
                }
                h1 { (title) }
                (body)
            }
        },
    )
}

/// The document around a page's content.
fn frame(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Registry" }
                link rel="stylesheet" href=(super::assets::STYLESHEET);
                script src=(super::assets::SCRIPT) defer {}
            }
            body { (content) }
        }
    }
}

/// The page of an error.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    frame(
        title,
        html! {
            main {
                h1 { (status.as_u16()) " " (title) }
                p.error { (message) }
                p { a href="/ui/" { "Back to the repositories" } }
            }
        },
    )
}

/// What an anonymous visitor sees where they need to log in.
pub(crate) fn login_needed() -> (StatusCode, Markup) {
    (
        StatusCode::UNAUTHORIZED,
        frame(
            "Log in",
            html! {
                main {
                    h1 { "Log in to see this" }
                    p { "This page needs a user with access to it." }
                    p { a.button href="/ui/login" { "Log in" } }
                }
            },
        ),
    )
}

/// The login form, with a message after a failed attempt.
pub(crate) fn login_page(ui: &Ui, visitor: &Visitor, next: &str, failed: Option<&str>) -> Markup {
    page(
        visitor,
        "Log in",
        &[],
        html! {
            @if ui.auth.is_none() {
                p { "This registry is open: there is nothing to log in to." }
            } @else {
                @if let Some(message) = failed {
                    p.error role="alert" { (message) }
                }
                form.login method="post" action="/ui/login" {
                    input type="hidden" name="csrf" value=(visitor.csrf);
                    input type="hidden" name="next" value=(next);
                    label { "User" input type="text" name="user" autocomplete="username" required autofocus; }
                    label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

/// What a delete form did, tag by tag: a count, then each tag with `deleted` or why not.
pub(crate) fn outcomes<T: std::fmt::Display>(
    outcomes: &[(T, Result<(), registry_core::Error>)],
) -> Markup {
    let deleted = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    html! {
        p.notice role="status" { "Deleted " (deleted) " of " (outcomes.len()) " tags." }
        table.outcomes {
            tbody {
                @for (tag, result) in outcomes {
                    tr {
                        td { code { (tag) } }
                        td {
                            @match result {
                                Ok(()) => { "deleted" }
                                Err(error) => { span.error { (super::public_message(error)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A size in bytes as people read it (binary units).
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A time, as a `<time>` element in UTC to the second.
pub(crate) fn time(at: Timestamp) -> Markup {
    let text = rfc3339(at);
    html! { time datetime=(text) { (text.replace('T', " ").replace('Z', " UTC")) } }
}

/// A timestamp as RFC 3339 in UTC, to the second.
pub(crate) fn rfc3339(at: Timestamp) -> String {
    let seconds = at.0.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The date of a day count since 1970-01-01 (the proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Text to copy (a pull or install command): selectable as is, with a copy button where
/// scripts run.
pub(crate) fn copy_box(text: &str) -> Markup {
    html! {
        div.copy {
            pre { code { (text) } }
            button.copy-button type="button" data-copy=(text) hidden { "Copy" }
        }
    }
}

/// A digest shortened for tables (the whole one in its title).
pub(crate) fn short_digest(digest: &str) -> Markup {
    let short = match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", &hex[..hex.len().min(12)]),
        None => digest.to_owned(),
    };
    html! { code title=(digest) { (short) } }
}

/// A path with a query string built from the pairs whose value is set.
pub(crate) fn link(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let set: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(key, value)| value.map(|v| (*key, v)))
        .collect();
    if set.is_empty() {
        return path.to_owned();
    }
    // Encoding string pairs cannot fail (only maps with non-string keys can).
    let query = serde_urlencoded::to_string(&set).unwrap_or_default();
    format!("{path}?{query}")
}

/// The registry's host as image references name it (`registry.example:5000`).
pub(crate) fn host(base: &str) -> &str {
    base.split_once("://").map_or(base, |(_, host)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(Timestamp(951_782_400_000)), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(Timestamp(1_796_000_000_123)),
            "2026-11-30T00:53:20Z"
        );
        assert_eq!(rfc3339(Timestamp(-1000)), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(size(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn links_encode_their_values() {
        assert_eq!(link("/ui/", &[("q", None)]), "/ui/");
        assert_eq!(
            link(
                "/ui/packages/npm",
                &[("name", Some("@a/b c")), ("version", Some("1.0+x"))]
            ),
            "/ui/packages/npm?name=%40a%2Fb+c&version=1.0%2Bx"
        );
    }
}
