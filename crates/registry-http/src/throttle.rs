//! Slowing down repeated authentication failures, per user and per client address.
//!
//! A [`FailureThrottle`] counts failures by key. The first `free_failures` cost nothing; after
//! that each further failure closes the key for a delay that doubles up to `max_delay`, during
//! which attempts are refused at once (`429` with `Retry-After`) without checking anything. A
//! key is forgotten once it has been quiet for `forget_after`. [`StaticUsers`] throttles by
//! user name; [`throttle_logins`] by client address, for every route.
//!
//! [`StaticUsers`]: crate::auth::StaticUsers

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use registry_core::Error;

/// How failures are slowed down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failures allowed before any delay.
    pub free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// A key quiet this long starts afresh.
    pub forget_after: Duration,
}

impl Default for ThrottleSettings {
    /// Per user: 5 free failures, then 1 s doubling up to 5 min, forgotten after 15 min.
    fn default() -> Self {
        ThrottleSettings {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
        }
    }
}

impl ThrottleSettings {
    /// Per client address: 20 free failures (several users may share one address), then as
    /// per user.
    pub fn per_address() -> Self {
        ThrottleSettings {
            free_failures: 20,
            ..ThrottleSettings::default()
        }
    }
}

/// The most keys remembered; past it, expired keys are dropped and new keys go uncounted
/// until there is room (the password-check bound still holds).
const MAX_KEYS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
    closed_until: Option<Instant>,
}

/// Failures by key, slowing down the keys that keep failing.
#[derive(Debug)]
pub struct FailureThrottle<K> {
    settings: ThrottleSettings,
    records: Mutex<HashMap<K, Record>>,
}

impl<K: Hash + Eq + Clone> FailureThrottle<K> {
    /// A throttle with these settings.
    pub fn new(settings: ThrottleSettings) -> Self {
        FailureThrottle {
            settings,
            records: Mutex::default(),
        }
    }

    /// `Err(retry_after)` while the key is closed.
    pub fn check<Q>(&self, key: &Q) -> Result<(), Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match records.get(key).and_then(|r| r.closed_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure of the key.
    pub fn failed(&self, key: K) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let forget_after = self.settings.forget_after;
        if records.len() >= MAX_KEYS && !records.contains_key(&key) {
            records.retain(|_, r| now.duration_since(r.last) < forget_after);
            if records.len() >= MAX_KEYS {
                return;
            }
        }
        let record = records.entry(key).or_insert(Record {
            failures: 0,
            last: now,
            closed_until: None,
        });
        if now.duration_since(record.last) >= forget_after {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last = now;
        if let Some(over) = record
            .failures
            .checked_sub(self.settings.free_failures.saturating_add(1))
        {
            let delay = self
                .settings
                .base_delay
                .saturating_mul(1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX))
                .min(self.settings.max_delay);
            record.closed_until = now.checked_add(delay).or(Some(now));
        }
    }

    /// Forgets the key's failures (a success).
    pub fn succeeded<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.remove(key);
    }
}

/// Failed authentications by client address, shared by every route of an application.
#[derive(Clone, Debug)]
pub struct LoginThrottle {
    addresses: Arc<FailureThrottle<IpAddr>>,
}

impl LoginThrottle {
    /// A throttle with these settings (see [`ThrottleSettings::per_address`]).
    pub fn new(settings: ThrottleSettings) -> Self {
        LoginThrottle {
            addresses: Arc::new(FailureThrottle::new(settings)),
        }
    }
}

/// The middleware throttling authentication failures by client address:
/// `router.layer(axum::middleware::from_fn_with_state(throttle, throttle_logins))`. It needs
/// the client address (`ConnectInfo<SocketAddr>`, which [`crate::serve`] provides); without it,
/// requests pass untouched.
///
/// Only attempts that check a secret count: Basic credentials, an access token (`rgt_…`) and
/// npm's login, when answered `401`. A Docker token-auth JWT is never counted nor refused here:
/// its `401` challenges are how clients learn which scope to ask for. While an address is
/// closed, attempts of the kinds that count are refused with `429` and `Retry-After` before
/// any check runs. IPv6 addresses count by their /64, which one client usually holds whole.
pub async fn throttle_logins(
    State(throttle): State<LoginThrottle>,
    request: Request,
    next: Next,
) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| network_of(address.ip()));
    let Some(address) = address.filter(|_| checks_a_secret(&request)) else {
        return next.run(request).await;
    };
    if let Err(retry_after) = throttle.addresses.check(&address) {
        let error = || Error::TooManyRequests {
            reason: format!("too many failed logins from {address}"),
            retry_after,
        };
        return refusal(request.uri().path(), error);
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        throttle.addresses.failed(address);
    }
    response
}

/// Whether the request presents a secret the registry checks: a password (Basic, npm's login
/// document, the web UI's login form, or NuGet's `X-NuGet-ApiKey`) or an access token.
fn checks_a_secret(request: &Request) -> bool {
    if request.headers().contains_key("x-nuget-apikey") {
        return true;
    }
    let npm_login = request.method() == axum::http::Method::PUT
        && request.uri().path().starts_with("/npm/")
        && request.uri().path().contains("/-/user/org.couchdb.user:");
    let ui_login =
        request.method() == axum::http::Method::POST && request.uri().path() == "/ui/login";
    // The web UI reads no credentials but its login form's: a 401 page is no failed check.
    if request.uri().path().starts_with("/ui/") {
        return ui_login;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '));
    npm_login
        || ui_login
        || presented.is_some_and(|(scheme, value)| {
            scheme.eq_ignore_ascii_case("basic")
                || (scheme.eq_ignore_ascii_case("bearer")
                    && registry_core::token::looks_like_secret(value.trim()))
        })
}

/// The key an address counts under: IPv4 as is, IPv6 by its /64.
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

/// An error answered by a layer in front of every protocol, in the format of the protocol the
/// path belongs to.
fn refusal(path: &str, error: impl Fn() -> Error) -> Response {
    #[cfg(feature = "ui")]
    if path.starts_with("/ui/") {
        return crate::ui::refusal(error());
    }
    #[cfg(feature = "packages")]
    {
        use crate::package_error::{ErrorJson, Failure, MessageJson, PlainText};
        if path.starts_with("/npm/") {
            return Failure::<ErrorJson>::from(error()).into_response();
        }
        if path.starts_with("/pypi/") {
            return Failure::<PlainText>::from(error()).into_response();
        }
        if !(path.starts_with("/v2") || path == "/token") {
            return Failure::<MessageJson>::from(error()).into_response();
        }
    }
    let _ = path;
    crate::error::ApiError::Core(error()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only secrets count: a token-auth JWT answered 401 (a scope challenge) never closes an
    /// address; Basic credentials answered 401 do, after the free failures.
    #[tokio::test]
    async fn only_failed_secrets_close_an_address() {
        use axum::body::Body;
        use tower::ServiceExt;
        let throttle = LoginThrottle::new(ThrottleSettings {
            free_failures: 2,
            ..ThrottleSettings::default()
        });
        let app = axum::Router::new()
            .route(
                "/v2/",
                axum::routing::get(|| async { StatusCode::UNAUTHORIZED }),
            )
            .layer(axum::middleware::from_fn_with_state(
                throttle,
                throttle_logins,
            ));
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let send = |authorization: &'static str| {
            let mut request = axum::http::Request::builder()
                .uri("/v2/")
                .header(header::AUTHORIZATION, authorization)
                .body(Body::empty())
                .unwrap();
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        };
        for _ in 0..10 {
            let status = send("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig")
                .await
                .unwrap()
                .status();
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "JWT challenges never throttle"
            );
        }
        for _ in 0..3 {
            assert_eq!(
                send("Basic YTpi").await.unwrap().status(),
                StatusCode::UNAUTHORIZED
            );
        }
        let refused = send("Basic YTpi").await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key(header::RETRY_AFTER));
        let status = send("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig")
            .await
            .unwrap()
            .status();
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a closed address still gets JWT challenges"
        );
    }

    /// NuGet's API key is a secret too: failed keys close the address like failed passwords.
    #[tokio::test]
    async fn failed_nuget_keys_close_an_address() {
        use axum::body::Body;
        use tower::ServiceExt;
        let throttle = LoginThrottle::new(ThrottleSettings {
            free_failures: 2,
            ..ThrottleSettings::default()
        });
        let app = axum::Router::new()
            .route(
                "/nuget/feed/api/v2/package",
                axum::routing::put(|| async { StatusCode::UNAUTHORIZED }),
            )
            .layer(axum::middleware::from_fn_with_state(
                throttle,
                throttle_logins,
            ));
        let peer: SocketAddr = "192.0.2.2:4000".parse().unwrap();
        let mut statuses = Vec::new();
        for attempt in 0..4 {
            let mut request = axum::http::Request::builder()
                .method("PUT")
                .uri("/nuget/feed/api/v2/package")
                .header("X-NuGet-ApiKey", format!("user{attempt}:guess"))
                .body(Body::empty())
                .unwrap();
            request.extensions_mut().insert(ConnectInfo(peer));
            statuses.push(app.clone().oneshot(request).await.unwrap().status());
        }
        assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    }

    #[test]
    fn ipv6_clients_count_by_their_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(network_of(a), network_of(b));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(network_of(v4), v4);
    }

    #[test]
    fn failures_close_a_key_with_growing_delays() {
        let throttle = FailureThrottle::new(ThrottleSettings {
            free_failures: 2,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(25),
            forget_after: Duration::from_secs(900),
        });
        for _ in 0..2 {
            throttle.failed("alice".to_owned());
            assert!(throttle.check("alice").is_ok());
        }
        throttle.failed("alice".to_owned());
        let first = throttle.check("alice").unwrap_err();
        assert!(first > Duration::from_secs(9) && first <= Duration::from_secs(10));
        throttle.failed("alice".to_owned());
        assert!(throttle.check("alice").unwrap_err() > Duration::from_secs(19));
        throttle.failed("alice".to_owned());
        assert!(
            throttle.check("alice").unwrap_err() <= Duration::from_secs(25),
            "capped"
        );
        assert!(throttle.check("bob").is_ok(), "other keys are untouched");
        throttle.succeeded("alice");
        assert!(throttle.check("alice").is_ok());
    }
}
