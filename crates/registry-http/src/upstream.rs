//! Fetching from upstream registries for proxy repositories ([`HttpUpstream`], reqwest), and
//! the loop guard that keeps a registry from proxying itself.
//!
//! Every upstream request carries the `Via` hops of the client request that caused it, then
//! `1.1 registry-<instance>`; a request that arrives with this instance's own name among its
//! hops, or with more than [`MAX_HOPS`], has gone round a loop of proxies (an upstream URL
//! that points at this registry, directly or through other registries, behind a load balancer
//! or not) and is answered `508 Loop Detected` ([`refuse_loops`]) instead of asking the upstream
//! again, forever. Configuration refuses the obvious case before that ([`points_at`]).
//!
//! Bounds: connecting and the response's headers within the upstream's timeout (the package
//! service bounds the body), at most [`MAX_REDIRECTS`] redirects (a loop of them is an error),
//! credentials sent to the upstream's own origin only (reqwest drops them on a redirect
//! elsewhere).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use registry_core::{Error, Fetched, Result, Upstream, UpstreamSettings, Validators};

/// The most redirects an upstream request follows.
pub const MAX_REDIRECTS: usize = 5;

/// The most `Via` hops a request may carry: more is a loop among registries.
pub const MAX_HOPS: usize = 8;

/// The `Via` hops of a request, in order.
fn via_hops(headers: &axum::http::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| hop.trim().to_owned())
        .filter(|hop| !hop.is_empty())
        .take(MAX_HOPS + 1)
        .collect()
}

/// This registry instance's name in `Via` headers (random per application).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance(Arc<str>);

impl Instance {
    /// A new random name.
    pub fn random() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Instance(format!("registry-{}", &id[..16]).into())
    }

    /// The name as it appears in `Via`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn via(&self) -> String {
        format!("1.1 {}", self.0)
    }
}

/// The largest `ca_file` read.
const MAX_CA_FILE: u64 = 1 << 20;

/// Follows at most [`MAX_REDIRECTS`] redirects, each to the first URL's scheme, host and port:
/// an upstream cannot send this registry (with its credentials, or to an address only it can
/// reach) anywhere else, nor from https down to http.
fn same_origin_redirects(file_origins: Vec<String>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let first = attempt.previous().first().cloned();
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects (a loop?)"));
        }
        let same = first.is_some_and(|first| {
            first.scheme() == attempt.url().scheme()
                && first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        // Or to one of the upstream's file origins (a registry's blob CDN); reqwest drops
        // credentials on a redirect to another host.
        let target = registry_core::proxy::origin(attempt.url().as_str()).to_ascii_lowercase();
        let same = same
            || file_origins
                .iter()
                .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(&target));
        if same {
            attempt.follow()
        } else {
            let to = attempt.url().to_string();
            attempt.error(format!(
                "a redirect to {to}, away from the upstream's origin"
            ))
        }
    })
}

/// The upstream fetcher over HTTP(S).
#[derive(Debug)]
pub struct HttpUpstream {
    instance: Instance,
    /// One client per set of trusted certificates (`ca_file`), connect timeout and file
    /// origins, built on first use.
    clients: Mutex<HashMap<ClientKey, reqwest::Client>>,
    /// Tokens of registries' token challenges, per challenge and user, until when they last.
    tokens: Mutex<HashMap<TokenKey, (String, std::time::Instant)>>,
}

/// What a client is built from: the CA file, the connect timeout, the file origins redirects
/// may lead to.
type ClientKey = (Option<String>, u64, Vec<String>);

/// A token challenge, the upstream, its user and a digest of its password.
type TokenKey = (BearerChallenge, String, Option<String>, String);

impl HttpUpstream {
    /// A fetcher that names itself `instance` in `Via`.
    pub fn new(instance: Instance) -> Self {
        HttpUpstream {
            instance,
            clients: Mutex::default(),
            tokens: Mutex::default(),
        }
    }

    /// The client request's hops, then this instance.
    fn via(&self) -> String {
        let mut hops = registry_core::incoming_via();
        hops.push(self.instance.via());
        hops.join(", ")
    }

    async fn client(&self, upstream: &UpstreamSettings) -> Result<reqwest::Client> {
        let key = (
            upstream.ca_file.clone(),
            upstream.timeout_seconds,
            upstream.file_origins.clone(),
        );
        if let Some(client) = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(client.clone());
        }
        let failed = |reason: String| Error::Upstream {
            upstream: upstream.base().to_owned(),
            reason,
            timed_out: false,
        };
        let mut builder = reqwest::Client::builder()
            .redirect(same_origin_redirects(upstream.file_origins.clone()))
            .connect_timeout(upstream.timeout())
            .user_agent(concat!("registry/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(path) = &upstream.ca_file {
            let pem = read_ca_file(path)
                .await
                .map_err(|e| failed(format!("cannot read its ca_file {path}: {e}")))?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| failed(format!("its ca_file {path} holds no certificates: {e}")))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
            .build()
            .map_err(|e| failed(format!("cannot set up a client: {e}")))?;
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() > 64 {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Reads a CA file: a regular file (not a pipe or device, which could block or never end) of
/// at most [`MAX_CA_FILE`] bytes, without blocking the runtime.
async fn read_ca_file(path: &str) -> std::io::Result<Vec<u8>> {
    let not_regular = || {
        std::io::Error::other(format!(
            "it is not a regular file of at most {MAX_CA_FILE} bytes"
        ))
    };
    // Looked at before it is opened: opening a pipe blocks until a writer comes.
    let metadata = tokio::fs::metadata(path).await?;
    if !metadata.is_file() || metadata.len() > MAX_CA_FILE {
        return Err(not_regular());
    }
    let file = tokio::fs::File::open(path).await?;
    if !file.metadata().await?.is_file() {
        return Err(not_regular());
    }
    let mut pem = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(
        &mut tokio::io::AsyncReadExt::take(file, MAX_CA_FILE),
        &mut pem,
    )
    .await?;
    Ok(pem)
}

#[async_trait]
impl Upstream for HttpUpstream {
    async fn fetch(
        &self,
        upstream: &UpstreamSettings,
        url: &str,
        accept: &str,
        validators: &Validators,
    ) -> Result<Fetched> {
        let failed = |reason: String, timed_out: bool| Error::Upstream {
            upstream: upstream.base().to_owned(),
            reason,
            timed_out,
        };
        let client = self.client(upstream).await?;
        let send = |bearer: Option<String>| {
            let mut request = client
                .get(url)
                .header(header::ACCEPT, accept)
                .header(header::VIA, self.via());
            // Files and blobs are taken as they are (their digests are of those bytes); only
            // documents may come compressed.
            if accept == "*/*" {
                request = request.header(header::ACCEPT_ENCODING, "identity");
            }
            if let Some(etag) = &validators.etag {
                request = request.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &validators.last_modified {
                request = request.header(header::IF_MODIFIED_SINCE, modified);
            }
            // Credentials go to the upstream's own origin only, never to a file origin.
            let own = registry_core::proxy::origin(url).eq_ignore_ascii_case(upstream.origin());
            request = match (bearer, &upstream.username, &upstream.password) {
                _ if !own => request,
                (Some(token), _, _) => request.bearer_auth(token),
                (None, Some(user), password) => request.basic_auth(user, password.as_deref()),
                (None, None, Some(token)) => request.bearer_auth(token),
                (None, None, None) => request,
            };
            async move {
                request.send().await.map_err(|e| {
                    let reason = if e.is_redirect() {
                        format!("a redirect not followed for {url}: {}", error_chain(&e))
                    } else if e.is_timeout() {
                        format!("no answer for {url} within {} s", upstream.timeout_seconds)
                    } else {
                        format!("cannot fetch {url}: {}", error_chain(&e))
                    };
                    failed(reason, e.is_timeout())
                })
            }
        };
        let mut response = send(None).await?;
        // A registry's token challenge (Docker Hub, distribution with token auth): a token
        // from its realm, with the upstream's credentials, and the request again.
        // Only the upstream's own challenges are followed: a file origin's would get the
        // upstream's credentials sent where it says.
        let own = registry_core::proxy::origin(url).eq_ignore_ascii_case(upstream.origin());
        if own
            && response.status() == StatusCode::UNAUTHORIZED
            && let Some(challenge) = bearer_challenge(response.headers())
        {
            let (token, kept) = self.token(&client, upstream, &challenge).await?;
            response = send(Some(token)).await?;
            // A kept token the upstream no longer takes (revoked, rotated): dropped, and a
            // fresh one asked for once.
            if kept && response.status() == StatusCode::UNAUTHORIZED {
                self.forget_token(upstream, &challenge);
                let (token, _) = self.token(&client, upstream, &challenge).await?;
                response = send(Some(token)).await?;
            }
        }
        let status = response.status();
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_MODIFIED => return Ok(Fetched::NotModified),
            StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(Fetched::NotFound),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(failed(
                    format!("answered {status} for {url}: check the proxy's credentials"),
                    false,
                ));
            }
            StatusCode::LOOP_DETECTED => {
                return Err(Error::ProxyLoop {
                    upstream: upstream.base().to_owned(),
                    reason: format!(
                        "answered {status} for {url}: the request went round a loop of proxies \
                         (the upstream leads back to this registry, or it passed too many)"
                    ),
                });
            }
            other => {
                return Err(failed(format!("answered {other} for {url}"), false));
            }
        }
        let header_text = |name: header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let validators = Validators {
            etag: header_text(header::ETAG),
            last_modified: header_text(header::LAST_MODIFIED),
        };
        let length = response.content_length();
        let content_type = header_text(header::CONTENT_TYPE);
        let origin = upstream.base().to_owned();
        let body = response
            .bytes_stream()
            .map(move |chunk| {
                chunk.map_err(|e| Error::Upstream {
                    upstream: origin.clone(),
                    reason: format!("the body broke off: {}", error_chain(&e)),
                    timed_out: e.is_timeout(),
                })
            })
            .boxed();
        Ok(Fetched::Found {
            validators,
            length,
            content_type,
            body,
        })
    }
}

/// A `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` challenge's parameters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

fn bearer_challenge(headers: &axum::http::HeaderMap) -> Option<BearerChallenge> {
    let value = headers.get(header::WWW_AUTHENTICATE)?.to_str().ok()?;
    let (scheme, params) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut found = std::collections::HashMap::new();
    // `key="value"` pairs; values may hold commas (scopes do), not quotes.
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"')?,
            None => after.split_once(',').unwrap_or((after, "")),
        };
        found.insert(key, value.to_owned());
        rest = next.trim_start().trim_start_matches(',');
    }
    let realm = found.remove("realm")?;
    if !(realm.starts_with("https://") || realm.starts_with("http://")) {
        return None;
    }
    Some(BearerChallenge {
        realm,
        service: found.remove("service"),
        scope: found.remove("scope"),
    })
}

/// Where a token is kept: per challenge, upstream and credentials — two proxies with the same
/// user name (`_json_key`, `AWS`) never share a token.
fn token_key(upstream: &UpstreamSettings, challenge: &BearerChallenge) -> TokenKey {
    use sha2::Digest as _;
    // No password: the digest of none, which tells apart no two upstreams' credentials.
    let password = sha2::Sha256::digest(upstream.password.as_deref().unwrap_or_default());
    (
        challenge.clone(),
        upstream.base().to_owned(),
        upstream.username.clone(),
        hex::encode(&password[..16]),
    )
}

/// The most tokens kept.
const MAX_TOKENS: usize = 1024;

/// The largest token answer read.
const MAX_TOKEN_ANSWER: usize = 64 << 10;

impl HttpUpstream {
    /// A token for a challenge: kept from an earlier answer while it lasts, else asked of the
    /// realm — with the upstream's credentials when the realm is reached over https or on
    /// loopback (never in clear text across a network).
    async fn token(
        &self,
        client: &reqwest::Client,
        upstream: &UpstreamSettings,
        challenge: &BearerChallenge,
    ) -> Result<(String, bool)> {
        let key = token_key(upstream, challenge);
        if let Some((token, until)) = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && std::time::Instant::now() < *until
        {
            return Ok((token.clone(), true));
        }
        let failed = |reason: String| Error::Upstream {
            upstream: upstream.base().to_owned(),
            reason,
            timed_out: false,
        };
        let mut realm = reqwest::Url::parse(&challenge.realm).map_err(|e| {
            failed(format!(
                "its token realm {} is not a URL: {e}",
                challenge.realm
            ))
        })?;
        {
            let mut query = realm.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            if let Some(scope) = &challenge.scope {
                query.append_pair("scope", scope);
            }
        }
        // http(s) URLs always have a host (the challenge's realm is one); none is not local.
        let realm_host = realm.host_str().unwrap_or_default().to_owned();
        let mut request = client.get(realm).header(header::VIA, self.via());
        // A token travels in clear text only on this machine.
        if !(challenge.realm.starts_with("https://")
            || realm_host.eq_ignore_ascii_case("localhost")
            || realm_host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()))
        {
            return Err(failed(format!(
                "its token realm {} is plain http to another host; tokens are not fetched in \
                 clear text",
                challenge.realm
            )));
        }
        if let Some(user) = &upstream.username {
            request = request.basic_auth(user, upstream.password.as_deref());
        }
        let response = request.send().await.map_err(|e| {
            failed(format!(
                "cannot reach its token realm {}: {}",
                challenge.realm,
                error_chain(&e)
            ))
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!(
                "its token realm {} answered {status}: check the proxy's credentials",
                challenge.realm
            )));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed(format!("the token answer broke off: {e}")))?;
            if body.len() + chunk.len() > MAX_TOKEN_ANSWER {
                return Err(failed("its token answer is too large".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("its token answer is not JSON: {e}")))?;
        let token = answer
            .get("token")
            .or_else(|| answer.get("access_token"))
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= 16 << 10)
            .ok_or_else(|| failed("its token answer holds no token".to_owned()))?
            .to_owned();
        // Kept a little shorter than it lasts (60 s when unsaid, as the token spec says).
        let lasts = answer
            .get("expires_in")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(60)
            .clamp(1, 3600);
        let until = std::time::Instant::now()
            + std::time::Duration::from_secs(lasts.saturating_sub(lasts / 10));
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= MAX_TOKENS {
            tokens.clear();
        }
        tokens.insert(key, (token.clone(), until));
        Ok((token, false))
    }

    fn forget_token(&self, upstream: &UpstreamSettings, challenge: &BearerChallenge) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token_key(upstream, challenge));
    }
}

/// An error with its causes, which say what actually failed (refused, reset, DNS).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// Answers `508 Loop Detected` to a request whose `Via` names this instance: it was sent by
/// this registry's own proxy and came back.
pub async fn refuse_loops(
    axum::extract::State(instance): axum::extract::State<Instance>,
    request: Request,
    next: Next,
) -> Response {
    let hops = via_hops(request.headers());
    let looped = hops.len() > MAX_HOPS
        || hops
            .iter()
            .any(|hop| hop.split_whitespace().nth(1) == Some(instance.as_str()));
    if looped {
        let mut response = (
            StatusCode::LOOP_DETECTED,
            "this request came back to the registry that sent it: a proxy repository's \
             upstream points at this registry\n",
        )
            .into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return response;
    }
    next.run(request).await
}

/// Whether an upstream URL names this registry itself: its origin is `own` (an origin this
/// registry is reached at: its external URL, or the `Host` a request came in by), or a
/// loopback or unspecified address on `port`, the port it listens on.
pub fn points_at(upstream: &UpstreamSettings, own: &[&str], port: Option<u16>) -> bool {
    // Hosts as a URL parser reads them: `127.1`, `2130706433` and `[0::1]` are what they
    // connect to.
    let Ok(url) = reqwest::Url::parse(&upstream.url) else {
        return false;
    };
    let (Some(host), Some(upstream_port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let same = |o: &str| {
        let o = o.trim_end_matches('/');
        let with_scheme = if o.contains("://") {
            o.to_owned()
        } else {
            format!("{}://{o}", url.scheme())
        };
        reqwest::Url::parse(&with_scheme).is_ok_and(|own| {
            let own_host = own.host_str().map(str::to_ascii_lowercase);
            let own_port = own.port_or_known_default();
            let local = |h: &str| registry_core::proxy::is_local_host(h, true);
            own_port == Some(upstream_port)
                && (own_host.as_deref() == Some(host.as_str())
                    || (own_host.as_deref().is_some_and(local) && local(&host)))
        })
    };
    own.iter().any(|o| same(o))
        || (registry_core::proxy::is_local_host(&host, true) && port == Some(upstream_port))
}

/// Reports what a request did through proxy repositories: upstream failures are logged,
/// metadata served stale gets
/// `Warning: 110` and `X-Registry-Stale: <upstream>` (and a log line with the reason), and
/// `registry_proxy_events_total{event}` counts hits, misses, upstream errors and stale serves.
pub async fn report_proxy(request: Request, next: Next) -> Response {
    let via = via_hops(request.headers());
    let (mut response, report) = registry_core::observe_proxy(via, next.run(request)).await;
    for (event, count) in [
        ("hit", report.hits),
        ("miss", report.misses),
        ("upstream_error", report.upstream_errors),
        ("stale", report.stale.len() as u32),
    ] {
        if count > 0 {
            metrics::counter!("registry_proxy_events_total", "event" => event)
                .increment(u64::from(count));
        }
    }
    for failure in &report.failures {
        tracing::warn!(%failure, "upstream request failed");
    }
    if !report.stale.is_empty() {
        let headers = response.headers_mut();
        headers.insert(
            header::WARNING,
            HeaderValue::from_static("110 registry \"Response is Stale\""),
        );
        for stale in &report.stale {
            tracing::warn!(upstream = %stale.upstream, reason = %stale.reason, "served cached metadata stale");
            if let Ok(value) = HeaderValue::from_str(&stale.upstream) {
                headers.append(STALE_HEADER, value);
            }
        }
    }
    response
}

/// The header naming an upstream whose cached metadata a response was built from stale.
pub const STALE_HEADER: header::HeaderName = header::HeaderName::from_static("x-registry-stale");

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bearer_challenges_are_read_as_registries_write_them() {
        let read = |value: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(header::WWW_AUTHENTICATE, value.parse().unwrap());
            bearer_challenge(&headers)
        };
        assert_eq!(
            read(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#
            ),
            Some(BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
        assert_eq!(
            read(r#"bearer realm="http://127.0.0.1:1/t""#).map(|c| c.service),
            Some(None)
        );
        for bad in [
            r#"Basic realm="x""#,
            r#"Bearer service="x""#,
            r#"Bearer realm="file:///etc/passwd""#,
            r#"Bearer realm="unterminated"#,
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn ca_files_that_are_not_small_regular_files_are_refused_without_opening_them() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'x'; MAX_CA_FILE as usize + 1]).unwrap();
        let dir_path = dir.path().to_str().unwrap().to_owned();
        for path in [fifo.to_str().unwrap(), big.to_str().unwrap(), &dir_path] {
            // A pipe nobody writes to would block its open forever: a hang is the failure.
            let read = tokio::time::timeout(Duration::from_secs(30), read_ca_file(path))
                .await
                .expect("refused without blocking");
            let error = read.expect_err(path).to_string();
            assert!(error.contains("not a regular file"), "{path}: {error}");
        }
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, b"-----BEGIN CERTIFICATE-----").unwrap();
        assert!(read_ca_file(good.to_str().unwrap()).await.is_ok());
    }

    #[test]
    fn upstreams_that_name_this_registry_are_recognised() {
        let up = |url: &str| UpstreamSettings::new(url);
        let own = ["https://registry.example", "127.0.0.1:5000"];
        assert!(points_at(&up("https://registry.example/npm/x"), &own, None));
        assert!(points_at(&up("http://127.0.0.1:5000/npm/x"), &own, None));
        assert!(points_at(
            &up("http://localhost:5000/npm/x"),
            &[],
            Some(5000)
        ));
        assert!(points_at(&up("http://[::1]:5000/npm/x"), &[], Some(5000)));
        assert!(points_at(&up("http://0.0.0.0:80/npm/x"), &[], Some(80)));
        assert!(points_at(&up("http://127.0.0.1/npm/x"), &[], Some(80)));
        assert!(points_at(&up("http://localhost.:80/npm/x"), &[], Some(80)));
        assert!(points_at(
            &up("http://app.localhost:80/npm/x"),
            &[],
            Some(80)
        ));
        assert!(points_at(
            &up("http://[::ffff:127.0.0.1]:80/npm/x"),
            &[],
            Some(80)
        ));
        assert!(points_at(
            &up("http://localhost.:5000/npm/x"),
            &["127.0.0.1:5000"],
            None
        ));
        assert!(!points_at(
            &up("http://127.0.0.1:5001/npm/x"),
            &own,
            Some(5000)
        ));
        assert!(!points_at(
            &up("https://registry.npmjs.org"),
            &own,
            Some(443)
        ));
    }
}
