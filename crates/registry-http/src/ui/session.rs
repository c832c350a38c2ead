//! Who is visiting: the session cookie's user or the anonymous caller; login, logout, and the
//! CSRF token every form carries.
//!
//! A session is an access token (`rgt_…`, labelled [`SESSION_LABEL`]) with the user's grants
//! at login, expiring after [`SESSION_TTL`]: kept in the shared token store, so every instance
//! knows it, the user can list and revoke it with their other tokens, and — as for every
//! token — it allows no more than the user's grants allow now.

use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use registry_core::{
    Action, Credentials, Principal, RepositoryName, Role, Timestamp, TokenRecord, TokenStore,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{PageResult, Ui, UiError, layout};
use crate::auth::{Caller, Decision};
use std::sync::Arc;

/// The session cookie (over https with the `__Host-` prefix, which only this host can set).
const SESSION_COOKIE: &str = "registry_session";
/// The cookie that binds forms to a browser before it logs in (prefixed like the session's).
const BROWSER_COOKIE: &str = "registry_browser";
/// What session tokens are labelled.
pub(crate) const SESSION_LABEL: &str = "web session";
/// The most sessions one user holds at once (the oldest ends when another starts).
const MAX_SESSIONS: usize = 10;
/// How long a session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// The largest form accepted (a delete of many tags at once included).
const MAX_FORM: usize = 1024 * 1024;

/// The caller of one page.
#[derive(Debug)]
pub(crate) struct Visitor {
    /// What they may do; `None` when they must log in to see anything (no anonymous grants).
    pub(crate) caller: Option<Caller>,
    /// The logged-in user's name.
    pub(crate) user: Option<String>,
    /// The session's token id, while logged in.
    session: Option<String>,
    /// The CSRF token this visitor's forms carry.
    pub(crate) csrf: String,
    /// A cookie to set with the response (the browser cookie, when new).
    set_cookie: Option<HeaderValue>,
    /// The registry's base URL as this visitor reaches it (`https://host`).
    pub(crate) base: String,
}

impl Visitor {
    /// Whether the visitor may act on a repository (a package repository's name included),
    /// as the configured authorizer decides; everyone may when no authentication is set.
    pub(crate) fn may(&self, ui: &Ui, repository: &str, action: Action) -> bool {
        matches!(self.decide(ui, repository, action), Decision::Allowed(_))
    }

    fn decide(&self, ui: &Ui, repository: &str, action: Action) -> Decision {
        crate::auth::decide(ui.auth.as_ref(), self.caller.as_ref(), repository, action)
    }

    /// Refuses a page the visitor may not see: anonymous visitors are asked to log in; a name
    /// no repository can have is not found.
    pub(crate) fn require(&self, ui: &Ui, repository: &str, action: Action) -> Result<(), UiError> {
        if RepositoryName::parse(repository).is_err() {
            return Err(UiError::NotFound(format!("no repository {repository:?}")));
        }
        match self.decide(ui, repository, action) {
            Decision::Allowed(_) => Ok(()),
            Decision::Unauthenticated => Err(UiError::LoginNeeded),
            Decision::Forbidden => Err(UiError::Forbidden(format!(
                "{} on {repository} is not granted to {}",
                action.as_str(),
                self.user.as_deref().unwrap_or("you")
            ))),
        }
    }

    /// The namespaces the visitor's grants name (`team` for `team/*`), where their pages start
    /// listing; none for an administrator, who lists everything from the start.
    pub(crate) fn granted_namespaces(&self, ui: &Ui) -> Vec<RepositoryName> {
        if self.is_admin(ui) {
            return Vec::new();
        }
        let Some(Caller::Principal(principal)) = &self.caller else {
            return Vec::new();
        };
        let mut namespaces: Vec<RepositoryName> = principal
            .grants
            .iter()
            .filter_map(|grant| grant.pattern.as_str().strip_suffix("/*"))
            .filter_map(|prefix| RepositoryName::parse(prefix).ok())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }

    /// Whether the visitor administers the whole registry.
    pub(crate) fn is_admin(&self, ui: &Ui) -> bool {
        match (&ui.auth, &self.caller) {
            (None, _) => true,
            (Some(auth), Some(caller)) => caller.is_admin(&*auth.authorizer),
            (Some(_), None) => false,
        }
    }

    /// The caller, for decisions made elsewhere (tag rules, protection, namespaces).
    pub(crate) fn caller(&self) -> Caller {
        self.caller.clone().unwrap_or_else(|| {
            // No anonymous access: a caller with no grant at all.
            Caller::Principal(Principal::anonymous(Vec::new()))
        })
    }

    /// The visitor's role on a package repository for its protection rules (`None`: trusted,
    /// when no authentication is configured).
    pub(crate) fn package_role(&self, ui: &Ui, repository: &str) -> Option<Role> {
        crate::auth::package_role(ui.auth.as_ref(), &self.caller(), repository)
    }

    /// Adds the cookie this visit needs to a response.
    pub(crate) fn finish(&self, mut response: Response) -> Response {
        if let Some(cookie) = &self.set_cookie {
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie.clone());
        }
        response
    }

    /// A page's HTML as a response, with the cookie this visit needs.
    pub(crate) fn page(&self, markup: maud::Markup) -> Response {
        self.finish(markup.into_response())
    }
}

/// What a request says about its visitor, read before anything is awaited (a request's body
/// cannot be held across an `await` of a handler).
struct Presented {
    base: String,
    session: Option<String>,
    browser: Option<String>,
}

/// Works out who is visiting from the request's cookies.
pub(crate) fn visitor<'a>(
    ui: &'a Ui,
    request: &Request,
) -> impl Future<Output = Result<Visitor, UiError>> + Send + 'a {
    let headers = request.headers();
    let base = crate::external_url::base_url(request.extensions(), headers);
    let secure = base.starts_with("https://");
    let presented = Presented {
        session: cookie(headers, SESSION_COOKIE, secure)
            .filter(|secret| registry_core::token::looks_like_secret(secret))
            .map(str::to_owned),
        browser: cookie(headers, BROWSER_COOKIE, secure)
            .filter(|b| is_browser_id(b))
            .map(str::to_owned),
        base,
    };
    resolve(ui, presented)
}

async fn resolve(ui: &Ui, presented: Presented) -> Result<Visitor, UiError> {
    let Presented {
        base,
        session: session_secret,
        browser,
    } = presented;
    let secure = base.starts_with("https://");
    if let (Some(auth), Some(secret)) = (&ui.auth, &session_secret) {
        let token = crate::auth::access_token(ui.packages.tokens(), secret).await?;
        if let Some(token) = token.filter(|t| t.label == SESSION_LABEL) {
            // A session never outlives its user's grants, like every token.
            if let Some(principal) = crate::auth::token_principal(auth, &token).await? {
                return Ok(Visitor {
                    caller: Some(Caller::Principal(principal)),
                    user: Some(token.user),
                    session: Some(token.id),
                    csrf: csrf_token(secret),
                    set_cookie: None,
                    base,
                });
            }
        }
    }
    let caller = match &ui.auth {
        None => Some(Caller::Open),
        Some(auth) => auth
            .authenticator
            .authenticate(&Credentials::None)
            .await?
            .map(Caller::Principal),
    };
    let (browser, set_cookie) = match browser {
        Some(browser) => (browser, None),
        None => {
            let browser = uuid::Uuid::new_v4().simple().to_string();
            let cookie = cookie_header(BROWSER_COOKIE, &browser, None, secure);
            (browser, Some(cookie))
        }
    };
    Ok(Visitor {
        caller,
        user: None,
        session: None,
        csrf: csrf_token(&browser),
        set_cookie,
        base,
    })
}

/// The CSRF token of forms shown to a holder of `secret` (the session's, or the browser
/// cookie's before login): a hash, so a page never shows the secret itself.
fn csrf_token(secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"registry web form\0");
    hasher.update(secret.as_bytes());
    hex::encode(hasher.finalize())
}

fn is_browser_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One cookie's value from the `Cookie` headers (its `__Host-` form over https).
fn cookie<'a>(headers: &'a HeaderMap, name: &str, secure: bool) -> Option<&'a str> {
    let name = cookie_name(name, secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name.as_str())
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the whole site, Secure over TLS;
/// `max_age` `None` for a browser-session cookie, `Some(0)` to remove it.
fn cookie_header(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> HeaderValue {
    let name = cookie_name(name, secure);
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(seconds) = max_age {
        text.push_str(&format!("; Max-Age={seconds}"));
    }
    if secure {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).expect("cookie names and values are visible ASCII")
}

/// A cookie's name: with the `__Host-` prefix over https (browsers then take it only from this
/// host, over TLS, for the whole site: a sibling domain cannot plant one).
fn cookie_name(name: &str, secure: bool) -> String {
    match secure {
        true => format!("__Host-{name}"),
        false => name.to_owned(),
    }
}

/// A form's fields, read after the visitor was decided, bounded, and refused unless it comes
/// from this origin with this visitor's CSRF token.
#[derive(Debug)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// Reads and checks the form of a `POST`.
    pub(crate) async fn read(visitor: &Visitor, request: Request) -> Result<Self, UiError> {
        if request.method() != Method::POST {
            return Err(UiError::BadRequest("forms are posted".into()));
        }
        check_origin(visitor, request.headers())?;
        let body = axum::body::to_bytes(request.into_body(), MAX_FORM)
            .await
            .map_err(|_| UiError::BadRequest(format!("a form is at most {MAX_FORM} bytes")))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|e| UiError::BadRequest(format!("the form is not URL-encoded: {e}")))?;
        let form = Form(fields);
        // A form without a token sends the empty one, which matches nothing.
        let sent = form.value("csrf").unwrap_or_default();
        if !same(sent.as_bytes(), visitor.csrf.as_bytes()) {
            return Err(UiError::Forbidden(
                "this form is out of date or comes from another site: reload the page and try again"
                    .into(),
            ));
        }
        Ok(form)
    }

    /// The first value of a field.
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of a field, in order.
    pub(crate) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Refuses a form sent from another site (browsers say where a `POST` comes from). The
/// `Origin` is compared by host and port only: behind a proxy that ends TLS, the registry sees
/// `http` where the browser sent `https`; the CSRF token is the check that binds.
fn check_origin(visitor: &Visitor, headers: &HeaderMap) -> Result<(), UiError> {
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|site| site != "same-origin" && site != "none");
    let foreign_origin = headers
        .get(header::ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .is_some_and(|origin| authority(origin) != authority(&visitor.base));
    if cross_site || foreign_origin {
        return Err(UiError::Forbidden(
            "forms are accepted from this registry's own pages only".into(),
        ));
    }
    Ok(())
}

/// The `host[:port]` of a URL or origin, lowercase, without the scheme's default port
/// (`null` and other opaque origins are their own text).
fn authority(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    match authority.strip_suffix(default_port) {
        Some(host) if !default_port.is_empty() => host.to_owned(),
        _ => authority,
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// Where to go after logging in: a page of the UI (visible ASCII, no way to another host),
/// nothing else.
fn next_page(next: Option<&str>) -> String {
    next.filter(|n| {
        n.starts_with("/ui/")
            && n.len() <= 2048
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    })
    .unwrap_or("/ui/")
    .to_owned()
}

/// `GET /ui/login`.
pub(crate) async fn login_form(
    State(ui): State<Arc<Ui>>,
    Query(next): Query<Next>,
    request: Request,
) -> PageResult {
    let visitor = visitor(&ui, &request).await?;
    let next = next_page(next.next.as_deref());
    Ok(visitor.page(layout::login_page(&ui, &visitor, &next, None)))
}

/// `POST /ui/login`: checks the password as every API does (the same throttles), then starts
/// a session.
pub(crate) async fn login(State(ui): State<Arc<Ui>>, request: Request) -> PageResult {
    let visitor = visitor(&ui, &request).await?;
    let Some(auth) = &ui.auth else {
        return Ok(Redirect::to("/ui/").into_response());
    };
    let form = Form::read(&visitor, request).await?;
    let next = next_page(form.value("next"));
    // Missing fields are empty ones, refused below like wrong ones.
    let user = form.value("user").unwrap_or_default().to_owned();
    let password = form.value("password").unwrap_or_default().to_owned();
    let refused = |message: &str| {
        let mut response = visitor.page(layout::login_page(&ui, &visitor, &next, Some(message)));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        Ok(response)
    };
    if user.is_empty() || password.is_empty() || user.len() > 256 || password.len() > 1024 {
        return refused("user name or password is wrong");
    }
    let principal = auth
        .authenticator
        .authenticate(&Credentials::Basic {
            user: user.clone(),
            password,
        })
        .await?;
    let Some(principal) = principal.filter(|p| p.name.is_some()) else {
        return refused("user name or password is wrong");
    };
    let name = principal.name.clone().unwrap_or(user);
    let tokens = ui.packages.tokens();
    end_old_sessions(tokens, &name).await?;
    crate::auth::check_token_quota(tokens, &name).await?;
    let (secret, hash) = registry_core::token::new_secret();
    let now = Timestamp::now();
    tokens
        .put_token(&TokenRecord {
            id: uuid::Uuid::new_v4().to_string(),
            user: name,
            label: SESSION_LABEL.to_owned(),
            secret_hash: hash,
            grants: principal.grants,
            created_at: now,
            expires_at: Some(Timestamp(now.0 + SESSION_TTL.as_millis() as i64)),
        })
        .await?;
    let secure = visitor.base.starts_with("https://");
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(SESSION_COOKIE, &secret, Some(SESSION_TTL.as_secs()), secure),
    );
    Ok(response)
}

/// Revokes a user's oldest sessions so that, with the one starting, they hold at most
/// [`MAX_SESSIONS`]: logging in again and again never uses up their token quota.
async fn end_old_sessions(tokens: &dyn TokenStore, user: &str) -> Result<(), UiError> {
    let now = Timestamp::now();
    let sessions: Vec<TokenRecord> = tokens
        .list_tokens(user)
        .await?
        .into_iter()
        .filter(|t| t.label == SESSION_LABEL && !t.expired(now))
        .collect();
    // Oldest first, as the store lists them.
    let surplus = (sessions.len() + 1).saturating_sub(MAX_SESSIONS);
    for session in sessions.iter().take(surplus) {
        tokens.delete_token(&session.id).await?;
    }
    Ok(())
}

/// `POST /ui/logout`: ends the session (its token is revoked) and drops the cookie.
pub(crate) async fn logout(State(ui): State<Arc<Ui>>, request: Request) -> PageResult {
    let visitor = visitor(&ui, &request).await?;
    Form::read(&visitor, request).await?;
    if let Some(id) = &visitor.session {
        ui.packages.tokens().delete_token(id).await?;
    }
    let secure = visitor.base.starts_with("https://");
    let mut response = Redirect::to("/ui/").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(SESSION_COOKIE, "", Some(0), secure),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor(base: &str) -> Visitor {
        Visitor {
            caller: None,
            user: None,
            session: None,
            csrf: String::new(),
            set_cookie: None,
            base: base.to_owned(),
        }
    }

    fn origin(origin: Option<&str>, fetch_site: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        if let Some(site) = fetch_site {
            headers.insert("sec-fetch-site", HeaderValue::from_str(site).unwrap());
        }
        headers
    }

    #[test]
    fn forms_are_accepted_from_this_host_only() {
        let behind_proxy = visitor("http://registry.test");
        let configured = visitor("https://Registry.Example:443");
        for (visitor, origin_sent, site) in [
            (&behind_proxy, None, None),
            (
                &behind_proxy,
                Some("https://registry.test"),
                Some("same-origin"),
            ),
            (&behind_proxy, Some("http://registry.test:80"), None),
            (
                &configured,
                Some("https://registry.example"),
                Some("same-origin"),
            ),
            (&configured, None, Some("none")),
        ] {
            assert!(
                check_origin(visitor, &origin(origin_sent, site)).is_ok(),
                "{:?} {origin_sent:?} {site:?}",
                visitor.base
            );
        }
        for (origin_sent, site) in [
            (Some("http://evil.test"), None),
            (Some("http://registry.test.evil.test"), None),
            (Some("http://registry.test:8080"), None),
            (Some("null"), None),
            (None, Some("cross-site")),
            (None, Some("same-site")),
            (Some("http://registry.test"), Some("cross-site")),
        ] {
            assert!(
                check_origin(&behind_proxy, &origin(origin_sent, site)).is_err(),
                "{origin_sent:?} {site:?}"
            );
        }
    }

    #[test]
    fn logins_lead_only_to_pages_of_the_ui() {
        assert_eq!(
            next_page(Some("/ui/r/team/app?sort=name")),
            "/ui/r/team/app?sort=name"
        );
        for bad in [
            None,
            Some("https://evil.test/"),
            Some("//evil.test/ui/"),
            Some("/ui/\r\nSet-Cookie: x=y"),
            Some("/ui/\u{1}"),
            Some("/ui/\\evil"),
            Some("/v2/"),
        ] {
            assert_eq!(next_page(bad), "/ui/", "{bad:?}");
        }
    }
}
