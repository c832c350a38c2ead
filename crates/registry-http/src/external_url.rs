//! The registry's external URL: what every absolute URL it hands out starts with (npm tarball
//! URLs, PyPI file links, the token realm).
//!
//! Behind a TLS-terminating proxy the request's `Host` says nothing of the scheme clients use,
//! so an operator configures the URL; an application carries it to every router as a request
//! extension ([`crate::app::Application::external_url`]). Without one, URLs are built from the
//! request's `Host` over plain HTTP, which suits a registry clients reach directly. Proxy
//! headers (`X-Forwarded-*`) are never trusted: a client could set them.

use axum::http::{HeaderMap, header};

/// A configured external URL: `http://` or `https://`, a host, an optional port and path, no
/// trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalUrl(String);

impl ExternalUrl {
    /// Parses and normalizes (drops a trailing slash) an external URL.
    ///
    /// Errors (with the reason) for another scheme, no host, a query or a fragment.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim().trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
            .ok_or_else(|| format!("external URL {text:?} must start with http:// or https://"))?;
        let host = rest.split_once('/').map_or(rest, |(host, _)| host);
        if host.is_empty() || host.contains('@') {
            return Err(format!("external URL {text:?} needs a host (and no user)"));
        }
        if rest.contains(['?', '#', ' ']) {
            return Err(format!(
                "external URL {text:?} may not have a query, a fragment or spaces"
            ));
        }
        Ok(ExternalUrl(trimmed.to_owned()))
    }

    /// The URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Marks a request that arrived over TLS (set by [`crate::serve::serve_tls`]): absolute URLs
/// built from its `Host` then start with `https://`.
#[derive(Clone, Copy, Debug)]
pub struct ServedOverTls;

/// The longest `Host` absolute URLs are built from (a DNS name and a port); a longer one is
/// not a name any client reaches the registry by.
const MAX_HOST: usize = 261;

/// The base of absolute URLs for a request: the configured external URL when the application
/// set one (as a request extension), else `http://<Host>` (`https://` over TLS).
pub(crate) fn base_url(extensions: &axum::http::Extensions, headers: &HeaderMap) -> String {
    if let Some(url) = extensions.get::<ExternalUrl>() {
        return url.0.clone();
    }
    let scheme = if extensions.get::<ServedOverTls>().is_some() {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.len() <= MAX_HOST && is_host_and_port(h))
        .unwrap_or("127.0.0.1");
    format!("{scheme}://{host}")
}

/// Whether text is a host a client reaches the registry by, with an optional port: a DNS name
/// (labels of letters, digits and inner hyphens), an IPv4 address, or a bracketed IPv6 address.
/// Nothing else is used in URLs or in the commands pages offer to copy.
fn is_host_and_port(text: &str) -> bool {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let Some((v6, after)) = rest.split_once(']') else {
                return false;
            };
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            match after {
                "" => (None, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (None, Some(port)),
                    None => return false,
                },
            }
        }
        None => match text.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(text), None),
        },
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    });
    let host_ok = host.is_none_or(|h| {
        !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    });
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hosts_and_ports_are_used() {
        for good in [
            "registry.example",
            "127.0.0.1:5000",
            "localhost",
            "[::1]:5000",
            "[2001:db8::1]",
            "a-b.c9:65535",
        ] {
            assert!(is_host_and_port(good), "{good}");
        }
        for bad in [
            "",
            "-v",
            "a:b:c",
            "evil.com:80:81",
            "::::",
            "_",
            "a..b",
            "x]y[z",
            "a b",
            "h:",
            "h:70000",
            "[::1",
            "[zz]",
            "[::1]x",
            "a.-b",
            "evil$(id)",
        ] {
            assert!(!is_host_and_port(bad), "{bad}");
        }
    }

    #[test]
    fn external_urls_are_checked_and_normalized() {
        assert_eq!(
            ExternalUrl::parse("https://registry.example/")
                .unwrap()
                .as_str(),
            "https://registry.example"
        );
        assert_eq!(
            ExternalUrl::parse("http://10.0.0.1:5000/reg")
                .unwrap()
                .as_str(),
            "http://10.0.0.1:5000/reg"
        );
        for bad in [
            "ftp://x",
            "https://",
            "registry.example",
            "https://a/b?c",
            "https://u@h",
        ] {
            assert!(ExternalUrl::parse(bad).is_err(), "{bad}");
        }
        let mut headers = HeaderMap::new();
        let mut extensions = axum::http::Extensions::new();
        assert_eq!(base_url(&extensions, &headers), "http://127.0.0.1");
        headers.insert(header::HOST, "reg:5000".parse().unwrap());
        assert_eq!(base_url(&extensions, &headers), "http://reg:5000");
        extensions.insert(ServedOverTls);
        assert_eq!(base_url(&extensions, &headers), "https://reg:5000");
        headers.insert(header::HOST, "h".repeat(300).parse().unwrap());
        assert_eq!(base_url(&extensions, &headers), "https://127.0.0.1");
        extensions.insert(ExternalUrl::parse("https://r.example").unwrap());
        assert_eq!(base_url(&extensions, &headers), "https://r.example");
    }
}
