//! Authentication at the HTTP edge: HTTP Basic, and Docker token auth (a `/token` endpoint
//! issuing short-lived signed JWTs with `repository:<name>:<actions>` scopes).
//!
//! Who may do what is decided by the core [`Authorizer`]; who the caller is, by an
//! [`Authenticator`]. [`StaticUsers`] is an authenticator over users configured with argon2
//! password hashes; an embedder can supply its own of either.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::password_hash::PasswordHash;
use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use registry_core::{
    Action, Actor, Authenticator, Authorizer, Credentials, Error, Grant, NamePattern, Principal,
    RepositoryName, Result, Role, RoleAuthorizer, TagRule, TokenRecord, TokenStore,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::throttle::{FailureThrottle, ThrottleSettings};

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub enum AuthMode {
    /// HTTP Basic on every request.
    Basic {
        /// The realm named in challenges.
        realm: String,
    },
    /// Docker token auth: clients fetch a bearer token from `/token`.
    Token(Arc<TokenIssuer>),
}

/// Authentication and authorization for the OCI router.
#[derive(Clone, Debug)]
pub struct Auth {
    /// Basic or token.
    pub mode: AuthMode,
    /// Who the caller is.
    pub authenticator: Arc<dyn Authenticator>,
    /// What they may do.
    pub authorizer: Arc<dyn Authorizer>,
}

impl Auth {
    /// Basic auth over an authenticator, with the role-based authorizer.
    pub fn basic(realm: impl Into<String>, authenticator: Arc<dyn Authenticator>) -> Self {
        Auth {
            mode: AuthMode::Basic {
                realm: realm.into(),
            },
            authenticator,
            authorizer: Arc::new(RoleAuthorizer),
        }
    }

    /// Token auth over an authenticator, with the role-based authorizer.
    pub fn token(issuer: TokenIssuer, authenticator: Arc<dyn Authenticator>) -> Self {
        Auth {
            mode: AuthMode::Token(Arc::new(issuer)),
            authenticator,
            authorizer: Arc::new(RoleAuthorizer),
        }
    }
}

/// Reads the `Authorization` header. A malformed header counts as wrong credentials.
pub fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Some(Credentials::None);
    };
    let value = value.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        if user.is_empty() && password.is_empty() {
            // Some clients answer a challenge with empty credentials when they have none.
            return Some(Credentials::None);
        }
        Some(Credentials::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credentials::Bearer(rest.trim().to_owned()))
    } else {
        None
    }
}

/// What the caller of one request turned out to be.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No authentication is configured: everything is allowed.
    Open,
    /// A principal authenticated by credentials, judged by the authorizer.
    Principal(Principal),
    /// A bearer token, whose claims list exactly what it allows.
    Token(TokenAccess),
}

impl Caller {
    /// Whether the caller may act on the repository.
    pub fn may(
        &self,
        authorizer: &dyn Authorizer,
        repository: &RepositoryName,
        action: Action,
    ) -> bool {
        match self {
            Caller::Open => true,
            Caller::Principal(principal) => authorizer.authorize(principal, repository, action),
            Caller::Token(access) => access.allows(repository, action),
        }
    }

    /// Who the caller is to the tag rules of a repository: an open registry is trusted; a
    /// principal has the role its authorizer gives (reader when none); a token carries its role
    /// and rules in its claims (without a role claim, the least role its actions need).
    pub fn actor(&self, authorizer: &dyn Authorizer, repository: &RepositoryName) -> Actor {
        match self {
            Caller::Open => Actor::trusted(),
            Caller::Principal(principal) => Actor::with_role(
                authorizer
                    .role(principal, repository)
                    .unwrap_or(Role::Reader),
            ),
            Caller::Token(access) => match access.repositories.get(repository.as_str()) {
                Some(granted) => Actor {
                    role: Some(
                        granted
                            .role
                            .unwrap_or_else(|| Role::least_allowing(&granted.actions)),
                    ),
                    rules: granted.tag_rules.clone(),
                },
                None => Actor::with_role(Role::Reader),
            },
        }
    }

    /// Whether the caller may list every repository.
    pub fn may_list_catalog(&self, authorizer: &dyn Authorizer) -> bool {
        match self {
            Caller::Open => true,
            Caller::Principal(principal) => authorizer.is_admin(principal),
            Caller::Token(access) => access.catalog,
        }
    }

    /// The role the caller holds over every repository `pattern` covers, as the authorizer
    /// decides ([`Authorizer::role_over`]); an open registry is an admin, a Docker token holds
    /// no role beyond its repositories.
    pub fn role_over(&self, authorizer: &dyn Authorizer, pattern: &NamePattern) -> Option<Role> {
        match self {
            Caller::Open => Some(Role::Admin),
            Caller::Principal(principal) => authorizer.role_over(principal, pattern),
            Caller::Token(_) => None,
        }
    }

    /// Whether the caller administers the whole registry.
    pub fn is_admin(&self, authorizer: &dyn Authorizer) -> bool {
        match self {
            Caller::Open => true,
            Caller::Principal(principal) => authorizer.is_admin(principal),
            Caller::Token(_) => false,
        }
    }

    /// Whether the caller is known (not anonymous).
    pub fn is_identified(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::Principal(principal) => principal.name.is_some(),
            Caller::Token(access) => !access.subject.is_empty(),
        }
    }
}

/// An authenticator over users listed in configuration.
///
/// Password checks are bounded: argon2 needs 19 MiB and tens of milliseconds per check, so at
/// most one check per core runs at once (on threads of its own), a few more wait in a short
/// queue, and the rest are refused at once with [`Error::TooManyRequests`]. Concurrent checks of the same credentials share one
/// run; a verified password is remembered for five minutes. A user whose password is wrong
/// again and again is slowed down (see [`FailureThrottle`]). An unknown user is checked
/// against a dummy hash, so the answer takes as long as for a known one.
pub struct StaticUsers {
    users: HashMap<String, StaticUser>,
    anonymous: Option<Vec<Grant>>,
    /// Successful password checks, so argon2 runs once per credential and not per request.
    verified: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    /// Checks running now, by credential, so concurrent requests share one.
    running: Mutex<HashMap<[u8; 32], Arc<tokio::sync::OnceCell<bool>>>>,
    /// The threads that run argon2.
    checkers: PasswordCheckers,
    /// Repeated failures, by the SHA-256 of the user name given (a fixed size whatever the
    /// name's length).
    failures: FailureThrottle<[u8; 32]>,
    /// The hash unknown users are checked against.
    dummy: String,
}

/// One configured user.
#[derive(Clone, Debug, Deserialize)]
pub struct StaticUser {
    /// An argon2 PHC string (`$argon2id$v=19$…`), as `registry hash-password` prints.
    pub password_hash: String,
    /// Roles by repository pattern.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// How long a verified password is remembered.
const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// Password checks that may wait for a thread, per thread.
const WAITING_PER_CHECK: usize = 4;

/// One password to check, and where the answer goes.
struct PasswordCheck {
    hash: String,
    password: String,
    reply: tokio::sync::oneshot::Sender<bool>,
}

/// Checks `password` against an argon2 PHC string, computing in `memory` (grown to the hash's
/// memory cost once, then reused): argon2's own `verify_password` allocates its 19 MiB anew
/// for every check, and the allocator then keeps such blocks around, so a flood of checks
/// grew the process by hundreds of MiB even with two checks at a time.
fn verify_in(memory: &mut Vec<argon2::Block>, hash: &str, password: &str) -> bool {
    let mut verify = || -> Option<bool> {
        let parsed = PasswordHash::new(hash).ok()?;
        let algorithm = argon2::Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(v) => argon2::Version::try_from(v).ok()?,
            None => argon2::Version::default(),
        };
        let expected = parsed.hash?;
        let params = argon2::Params::try_from(&parsed).ok()?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
        let blocks = params.block_count();
        if memory.len() != blocks {
            memory.clear();
            memory.resize(blocks, argon2::Block::default());
        }
        let mut output = vec![0u8; expected.len()];
        argon2::Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt,
                &mut output,
                memory.as_mut_slice(),
            )
            .ok()?;
        // Constant time: every byte compared whatever the first difference.
        let difference = output
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        Some(difference == 0)
    };
    verify().unwrap_or(false)
}

/// A thread per core that runs argon2, and a short queue in front of them.
///
/// Dedicated threads, not the runtime's blocking pool: argon2 needs 19 MiB per check, and the
/// allocator keeps that memory with the thread that used it, so the number of threads that
/// ever run a check is what bounds the memory (a flood through the blocking pool grew the
/// process by hundreds of MiB). A full queue refuses the check at once.
struct PasswordCheckers {
    queue: std::sync::mpsc::SyncSender<PasswordCheck>,
}

impl PasswordCheckers {
    fn start(threads: usize) -> Result<Self> {
        let (queue, jobs) =
            std::sync::mpsc::sync_channel::<PasswordCheck>(threads * WAITING_PER_CHECK);
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..threads {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new()
                .name(format!("password-check-{n}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // Idle threads queue on the lock; the one holding it waits for the next
                        // job. The queue closing (the users dropped) ends every thread.
                        let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(job) = job else { break };
                        let matches = verify_in(&mut memory, &job.hash, &job.password);
                        let _ = job.reply.send(matches);
                    }
                })
                .map_err(Error::backend)?;
        }
        Ok(PasswordCheckers { queue })
    }

    fn submit(&self, check: PasswordCheck) -> Result<()> {
        self.queue
            .try_send(check)
            .map_err(|_| Error::TooManyRequests {
                reason: "too many password checks at once".into(),
                retry_after: Duration::from_secs(1),
            })
    }
}

impl StaticUsers {
    /// Users by name; `anonymous` grants for callers without credentials (`None`: anonymous
    /// callers are refused).
    ///
    /// Errors when a password hash is not a valid PHC string.
    pub fn new(users: HashMap<String, StaticUser>, anonymous: Option<Vec<Grant>>) -> Result<Self> {
        for (name, user) in &users {
            PasswordHash::new(&user.password_hash).map_err(|e| Error::Unsupported {
                what: format!("password hash of user {name:?}: {e}"),
            })?;
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let dummy = dummy_hash(&users)?;
        Ok(StaticUsers {
            users,
            anonymous,
            verified: Mutex::default(),
            running: Mutex::default(),
            checkers: PasswordCheckers::start(cores)?,
            failures: FailureThrottle::new(ThrottleSettings::default()),
            dummy,
        })
    }

    /// Runs password checks on `threads` threads (one per core by default), each with a queue
    /// of four.
    pub fn with_password_threads(mut self, threads: usize) -> Result<Self> {
        self.checkers = PasswordCheckers::start(threads.max(1))?;
        Ok(self)
    }

    /// Sets how repeated wrong passwords for one user are slowed down.
    pub fn with_throttle(mut self, settings: ThrottleSettings) -> Self {
        self.failures = FailureThrottle::new(settings);
        self
    }

    /// The principal a configured user is now, by name, without a password check: how an
    /// access token learns its user's current grants.
    pub fn user(&self, name: &str) -> Option<Principal> {
        self.users
            .get(name)
            .map(|user| Principal::user(name, user.grants.clone()))
    }

    fn cache_key(user: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(user.as_bytes());
        hasher.update([0]);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    /// Runs argon2 for `password` against `hash` on the checkers' threads.
    async fn check(&self, hash: String, password: String) -> Result<bool> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.checkers.submit(PasswordCheck {
            hash,
            password,
            reply,
        })?;
        answer.await.map_err(Error::backend)
    }

    /// Checks credentials once however many requests carry them at the same moment.
    async fn check_shared(&self, key: [u8; 32], hash: &str, password: &str) -> Result<bool> {
        let cell = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(running.entry(key).or_default())
        };
        // Removed however this ends, a request cancelled mid-check included.
        let _forget = RunningCheck {
            running: &self.running,
            key,
            cell: Arc::clone(&cell),
        };
        cell.get_or_try_init(|| self.check(hash.to_owned(), password.to_owned()))
            .await
            .copied()
    }
}

/// Removes a shared check from the running ones when its last user is done with it.
struct RunningCheck<'a> {
    running: &'a Mutex<HashMap<[u8; 32], Arc<tokio::sync::OnceCell<bool>>>>,
    key: [u8; 32],
    cell: Arc<tokio::sync::OnceCell<bool>>,
}

impl Drop for RunningCheck<'_> {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            running.remove(&self.key);
        }
    }
}

impl fmt::Debug for StaticUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticUsers")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

/// A hash of a random password with the parameters of the configured users' hashes (the
/// first by name; argon2's defaults when there are none), so checking an unknown user costs
/// what checking a known one does.
fn dummy_hash(users: &HashMap<String, StaticUser>) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let first = users.keys().min().and_then(|name| {
        let parsed = PasswordHash::new(&users[name].password_hash).ok()?;
        let algorithm = argon2::Algorithm::try_from(parsed.algorithm).ok()?;
        let params = argon2::Params::try_from(&parsed).ok()?;
        Some(argon2::Argon2::new(
            algorithm,
            argon2::Version::default(),
            params,
        ))
    });
    // No users: nothing to match, argon2's defaults (what `hash_password` uses).
    let hasher = first.unwrap_or_default();
    let salt = SaltString::generate(&mut OsRng);
    hasher
        .hash_password(uuid::Uuid::new_v4().to_string().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Unsupported {
            what: format!("hashing the password: {e}"),
        })
}

/// Hashes a password for configuration (argon2id, random salt), as a PHC string.
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Unsupported {
            what: format!("hashing the password: {e}"),
        })
}

#[async_trait]
impl Authenticator for StaticUsers {
    async fn authenticate(&self, credentials: &Credentials) -> Result<Option<Principal>> {
        let (user, password) = match credentials {
            Credentials::None => return Ok(self.anonymous.clone().map(Principal::anonymous)),
            Credentials::Basic { user, password } => (user, password),
            Credentials::Bearer(_) => return Ok(None),
        };
        let key = Self::cache_key(user, password);
        {
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            match verified.get(&key) {
                Some((principal, at)) if at.elapsed() < VERIFIED_FOR => {
                    return Ok(Some(principal.clone()));
                }
                Some(_) => {
                    verified.remove(&key);
                }
                None => {}
            }
        }
        // Throttled by the name given, whether or not such a user exists, and refused without
        // naming it: neither the answer nor its timing tells which users exist.
        let name_key: [u8; 32] = Sha256::digest(user.as_bytes()).into();
        if let Err(retry_after) = self.failures.check(&name_key) {
            return Err(Error::TooManyRequests {
                reason: "too many wrong passwords for this user name".into(),
                retry_after,
            });
        }
        let hash = match self.users.get(user) {
            Some(configured) => &configured.password_hash,
            // The same work as for a known user: the time taken does not tell who exists.
            None => &self.dummy,
        };
        let matches = self.check_shared(key, hash, password).await?;
        let Some(configured) = self.users.get(user).filter(|_| matches) else {
            self.failures.failed(name_key);
            return Ok(None);
        };
        self.failures.succeeded(&name_key);
        let principal = Principal::user(user.clone(), configured.grants.clone());
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified.retain(|_, (_, at)| at.elapsed() < VERIFIED_FOR);
        verified.insert(key, (principal.clone(), Instant::now()));
        Ok(Some(principal))
    }

    async fn user(&self, name: &str) -> Result<Option<Principal>> {
        Ok(StaticUsers::user(self, name))
    }
}

/// Issues and verifies the bearer tokens of Docker token auth (HS256 JWTs).
#[derive(Clone)]
pub struct TokenIssuer {
    /// The `service` clients name (and the tokens' audience).
    pub service: String,
    /// The token endpoint's absolute URL for challenges; derived from the request's `Host`
    /// when `None`.
    pub realm: Option<String>,
    /// How long a token is valid.
    pub ttl: Duration,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("service", &self.service)
            .field("realm", &self.realm)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// One `access` entry of a token: a resource and the actions granted on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAccess {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A repository name, or `catalog`.
    pub name: String,
    /// Granted actions (`pull`, `push`, `delete`, or `*` for the catalog).
    pub actions: Vec<String>,
    /// The holder's role on the repository, for protected-tag rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Tag rules that apply to requests with this token, besides the stored ones (an
    /// embedder issuing its own tokens sends its rules this way).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_rules: Vec<TagRule>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<ResourceAccess>,
}

/// What a verified token allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenAccess {
    /// The user it was issued to (empty for anonymous).
    pub subject: String,
    repositories: HashMap<String, RepositoryGrant>,
    catalog: bool,
}

/// What a token grants on one repository.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RepositoryGrant {
    actions: Vec<Action>,
    role: Option<Role>,
    tag_rules: Vec<TagRule>,
}

impl TokenAccess {
    fn allows(&self, repository: &RepositoryName, action: Action) -> bool {
        self.repositories
            .get(repository.as_str())
            .is_some_and(|granted| granted.actions.contains(&action))
    }
}

/// A requested scope: `repository:<name>:<action>[,<action>…]` or `registry:catalog:*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Actions on one repository.
    Repository(RepositoryName, Vec<Action>),
    /// Listing the catalog.
    Catalog,
}

impl Scope {
    /// Parses a scope; unknown actions are dropped, as clients may ask for more than exists.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "registry:catalog:*" {
            return Some(Scope::Catalog);
        }
        let rest = text.strip_prefix("repository:")?;
        let (name, actions) = rest.rsplit_once(':')?;
        let name = RepositoryName::parse(name).ok()?;
        let actions = if actions == "*" {
            Action::ALL.to_vec()
        } else {
            actions.split(',').filter_map(Action::from_name).collect()
        };
        Some(Scope::Repository(name, actions))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenIssuer {
    /// An issuer signing with an HMAC secret (share it between instances).
    pub fn new(service: impl Into<String>, secret: &[u8], ttl: Duration) -> Self {
        TokenIssuer {
            service: service.into(),
            realm: None,
            ttl,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// Sets the absolute URL of the token endpoint named in challenges.
    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Issues a token for the scopes the principal may have, each cut down to what the
    /// authorizer allows. Returns the token and the access it carries.
    pub fn issue(
        &self,
        principal: &Principal,
        authorizer: &dyn Authorizer,
        scopes: &[Scope],
    ) -> Result<(String, Vec<ResourceAccess>)> {
        let mut access = Vec::new();
        for scope in scopes {
            match scope {
                Scope::Repository(name, actions) => {
                    let granted: Vec<String> = actions
                        .iter()
                        .filter(|a| authorizer.authorize(principal, name, **a))
                        .map(|a| a.as_str().to_owned())
                        .collect();
                    if !granted.is_empty() {
                        access.push(ResourceAccess {
                            kind: "repository".into(),
                            name: name.to_string(),
                            actions: granted,
                            role: authorizer.role(principal, name),
                            tag_rules: Vec::new(),
                        });
                    }
                }
                Scope::Catalog if authorizer.is_admin(principal) => access.push(ResourceAccess {
                    kind: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                    role: None,
                    tag_rules: Vec::new(),
                }),
                Scope::Catalog => {}
            }
        }
        // JWT subjects are strings; an anonymous caller's is empty.
        let subject = principal.name.clone().unwrap_or_default();
        let token = self.sign(&subject, access.clone())?;
        Ok((token, access))
    }

    /// Signs a token granting exactly `access` to `subject`, valid for the issuer's lifetime.
    ///
    /// This is how an embedder that decides access itself hands out tokens this registry
    /// accepts — including, per repository, the holder's `role` and extra `tag_rules`.
    pub fn sign(&self, subject: &str, access: Vec<ResourceAccess>) -> Result<String> {
        let now = unix_now();
        let claims = Claims {
            iss: self.service.clone(),
            sub: subject.to_owned(),
            aud: self.service.clone(),
            exp: now + self.ttl.as_secs(),
            nbf: now.saturating_sub(5),
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(Error::backend)
    }

    /// Verifies a token's signature, audience and lifetime; `None` when it is not valid.
    pub fn verify(&self, token: &str) -> Option<TokenAccess> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[&self.service]);
        validation.set_issuer(&[&self.service]);
        validation.leeway = 5;
        // A token that is not valid yet is not valid: the claim is checked, not only `exp`.
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        let mut repositories = HashMap::new();
        let mut catalog = false;
        for entry in claims.access {
            match entry.kind.as_str() {
                "repository" => {
                    let actions = entry
                        .actions
                        .iter()
                        .filter_map(|a| Action::from_name(a))
                        .collect();
                    repositories.insert(
                        entry.name,
                        RepositoryGrant {
                            actions,
                            role: entry.role,
                            tag_rules: entry.tag_rules,
                        },
                    );
                }
                "registry" if entry.name == "catalog" => catalog = true,
                _ => {}
            }
        }
        Some(TokenAccess {
            subject: claims.sub,
            repositories,
            catalog,
        })
    }

    /// The token endpoint URL for a request whose absolute URLs start with `base`
    /// (`https://host`, see `external_url`), unless the issuer names its own realm.
    pub fn realm_for(&self, base: &str) -> String {
        self.realm
            .clone()
            .unwrap_or_else(|| format!("{base}/token"))
    }
}

/// Authenticates a package client: no auth configured makes everyone [`Caller::Open`]; an
/// access token (`Authorization: Bearer rgt_…`, or as the password of Basic credentials, as
/// twine sends it) acts for its user with its own grants; other Basic credentials (or none,
/// for anonymous grants) go through the authenticator; a JWT bearer token is verified in token
/// mode. `None` when the credentials prove nothing (the caller answers 401 with a Basic
/// challenge, which every package client understands).
pub async fn authenticate_package_client(
    auth: Option<&Auth>,
    tokens: &dyn TokenStore,
    headers: &HeaderMap,
) -> Result<Option<Caller>> {
    let Some(auth) = auth else {
        return Ok(Some(Caller::Open));
    };
    let credentials = credentials(headers);
    if let Some(secret) = credentials.as_ref().and_then(token_secret) {
        let Some(token) = access_token(tokens, secret).await? else {
            return Ok(None);
        };
        return Ok(token_principal(auth, &token).await?.map(Caller::Principal));
    }
    match (credentials, &auth.mode) {
        (None, _) => Ok(None),
        (Some(Credentials::Bearer(token)), AuthMode::Token(issuer)) => {
            Ok(issuer.verify(&token).map(Caller::Token))
        }
        (Some(Credentials::Bearer(_)), AuthMode::Basic { .. }) => Ok(None),
        (Some(credentials), _) => Ok(auth
            .authenticator
            .authenticate(&credentials)
            .await?
            .map(Caller::Principal)),
    }
}

/// What one request may do on one repository, decided once for every route that acts on a
/// repository by name (package routes, web pages).
#[cfg(feature = "packages")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Allowed, with the caller's role there for protection rules (`None`: no authentication
    /// is configured, everything is allowed).
    Allowed(Option<Role>),
    /// The caller is nobody (credentials that proved nothing, or anonymous without the grant):
    /// they should authenticate.
    Unauthenticated,
    /// A known caller without the grant.
    Forbidden,
}

/// Decides whether `caller` (`None`: credentials that proved nothing) may perform `action` on
/// `repository`, as the configured authorizer says; a name no repository can have is allowed
/// to nobody.
#[cfg(feature = "packages")]
pub(crate) fn decide(
    auth: Option<&Auth>,
    caller: Option<&Caller>,
    repository: &str,
    action: Action,
) -> Decision {
    let Some(auth) = auth else {
        return Decision::Allowed(None);
    };
    let Some(caller) = caller else {
        return Decision::Unauthenticated;
    };
    let allowed = RepositoryName::parse(repository)
        .is_ok_and(|name| caller.may(&*auth.authorizer, &name, action));
    if allowed {
        Decision::Allowed(package_role(Some(auth), caller, repository))
    } else if caller.is_identified() {
        Decision::Forbidden
    } else {
        Decision::Unauthenticated
    }
}

/// Whether the caller may manage tag rules and cleanup policies over the repositories
/// `pattern` covers: a registry admin anything, an owner of what they own (a rule for every
/// repository is for admins only), as the configured authorizer decides; anyone when no
/// authentication is configured.
pub(crate) fn may_manage_rules(
    auth: Option<&Auth>,
    caller: &Caller,
    pattern: &NamePattern,
) -> bool {
    let Some(auth) = auth else {
        return true;
    };
    let authorizer = &*auth.authorizer;
    caller.is_admin(authorizer)
        || (pattern.as_str() != "*"
            && caller
                .role_over(authorizer, pattern)
                .is_some_and(|role| role >= Role::Owner))
}

/// Whom an access token acts as now. A token never outlives its user's grants: what it allows
/// is its scopes intersected with what the user holds now; a removed user's tokens are refused
/// (`None`).
pub(crate) async fn token_principal(auth: &Auth, token: &TokenRecord) -> Result<Option<Principal>> {
    let Some(user) = auth.authenticator.user(&token.user).await? else {
        return Ok(None);
    };
    let grants = Grant::intersect(&token.grants, &user.grants);
    Ok(Some(Principal::user(token.user.clone(), grants)))
}

/// The caller's role on a package repository, for protection rules: `None` (trusted) when no
/// authentication is configured.
pub fn package_role(auth: Option<&Auth>, caller: &Caller, repository: &str) -> Option<Role> {
    let auth = auth?;
    match RepositoryName::parse(repository) {
        Ok(name) => caller.actor(&*auth.authorizer, &name).role,
        Err(_) => Some(Role::Reader),
    }
}

/// The access-token secret in credentials, if they carry one.
pub fn token_secret(credentials: &Credentials) -> Option<&str> {
    let secret = match credentials {
        Credentials::Bearer(secret) => secret.as_str(),
        Credentials::Basic { password, .. } => password.as_str(),
        Credentials::None => return None,
    };
    registry_core::token::looks_like_secret(secret).then_some(secret)
}

/// The most live access tokens one user holds.
pub const MAX_TOKENS_PER_USER: usize = 100;

/// Refuses a new token for a user who holds [`MAX_TOKENS_PER_USER`] live ones already.
pub async fn check_token_quota(tokens: &dyn TokenStore, user: &str) -> Result<()> {
    let now = registry_core::Timestamp::now();
    let live = tokens
        .list_tokens(user)
        .await?
        .iter()
        .filter(|t| !t.expired(now))
        .count();
    if live >= MAX_TOKENS_PER_USER {
        return Err(Error::TooManyRequests {
            reason: format!(
                "{user} holds {live} access tokens, the most allowed; revoke one first"
            ),
            retry_after: Duration::from_secs(3600),
        });
    }
    Ok(())
}

/// The live (unexpired) token with this secret.
pub async fn access_token(tokens: &dyn TokenStore, secret: &str) -> Result<Option<TokenRecord>> {
    let hash = registry_core::token::hash_secret(secret);
    Ok(tokens
        .token_by_hash(&hash)
        .await?
        .filter(|t| !t.expired(registry_core::Timestamp::now())))
}

/// The `WWW-Authenticate` value of a challenge.
pub fn challenge(
    mode: &AuthMode,
    base: &str,
    scope: Option<&str>,
    insufficient: bool,
) -> HeaderValue {
    let text = match mode {
        AuthMode::Basic { realm } => format!("Basic realm=\"{realm}\""),
        AuthMode::Token(issuer) => {
            let mut text = format!(
                "Bearer realm=\"{}\",service=\"{}\"",
                issuer.realm_for(base),
                issuer.service
            );
            if let Some(scope) = scope {
                text.push_str(&format!(",scope=\"{scope}\""));
            }
            if insufficient {
                text.push_str(",error=\"insufficient_scope\"");
            }
            text
        }
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Basic"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_core::{NamePattern, Role};

    fn grant(pattern: &str, role: Role) -> Grant {
        Grant {
            pattern: NamePattern::parse(pattern).unwrap(),
            role,
        }
    }

    #[test]
    fn tokens_carry_only_what_was_granted() {
        let issuer = TokenIssuer::new("registry", b"secret", Duration::from_secs(60));
        let dev = Principal::user("dev", vec![grant("team/*", Role::Developer)]);
        let scopes = [
            Scope::parse("repository:team/app:pull,push,delete").unwrap(),
            Scope::parse("repository:other:pull").unwrap(),
            Scope::parse("registry:catalog:*").unwrap(),
        ];
        let (token, access) = issuer.issue(&dev, &RoleAuthorizer, &scopes).unwrap();
        assert_eq!(access.len(), 1);
        assert_eq!(access[0].actions, vec!["pull", "push"]);
        let verified = issuer.verify(&token).unwrap();
        let app = RepositoryName::parse("team/app").unwrap();
        assert!(verified.allows(&app, Action::Push));
        assert!(!verified.allows(&app, Action::Delete));
        assert!(!verified.allows(&RepositoryName::parse("other").unwrap(), Action::Pull));
        assert_eq!(verified.subject, "dev");

        let other = TokenIssuer::new("registry", b"another secret", Duration::from_secs(60));
        assert!(
            other.verify(&token).is_none(),
            "a token signed with another key is refused"
        );
        let elsewhere = TokenIssuer::new("elsewhere", b"secret", Duration::from_secs(60));
        assert!(
            elsewhere.verify(&token).is_none(),
            "a token for another service is refused"
        );
        assert!(issuer.verify("not.a.token").is_none());
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(
            Scope::parse("repository:a/b:pull,push"),
            Some(Scope::Repository(
                RepositoryName::parse("a/b").unwrap(),
                vec![Action::Pull, Action::Push]
            ))
        );
        assert_eq!(
            Scope::parse("repository:a:*"),
            Some(Scope::Repository(
                RepositoryName::parse("a").unwrap(),
                Action::ALL.to_vec()
            ))
        );
        assert_eq!(Scope::parse("repository:Bad:pull"), None);
        assert_eq!(Scope::parse("registry:catalog:*"), Some(Scope::Catalog));
    }

    #[test]
    fn basic_header_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(credentials(&headers), Some(Credentials::None));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert_eq!(
            credentials(&headers),
            Some(Credentials::Basic {
                user: "user".into(),
                password: "pass".into()
            })
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic Og=="),
        );
        assert_eq!(
            credentials(&headers),
            Some(Credentials::None),
            "empty user and password"
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(credentials(&headers), None);
    }

    #[tokio::test]
    async fn static_users_check_passwords() {
        let users = HashMap::from([(
            "alice".to_owned(),
            StaticUser {
                password_hash: hash_password("s3cret").unwrap(),
                grants: vec![grant("*", Role::Reader)],
            },
        )]);
        let auth = StaticUsers::new(users, None).unwrap();
        let ok = Credentials::Basic {
            user: "alice".into(),
            password: "s3cret".into(),
        };
        let wrong = Credentials::Basic {
            user: "alice".into(),
            password: "guess".into(),
        };
        let nobody = Credentials::Basic {
            user: "bob".into(),
            password: "s3cret".into(),
        };
        assert_eq!(
            auth.authenticate(&ok)
                .await
                .unwrap()
                .unwrap()
                .name
                .as_deref(),
            Some("alice")
        );
        assert!(auth.authenticate(&ok).await.unwrap().is_some(), "cached");
        assert!(auth.authenticate(&wrong).await.unwrap().is_none());
        assert!(auth.authenticate(&nobody).await.unwrap().is_none());
        assert!(
            auth.authenticate(&Credentials::None)
                .await
                .unwrap()
                .is_none(),
            "no anonymous grants"
        );
        let bad = HashMap::from([(
            "x".to_owned(),
            StaticUser {
                password_hash: "plain".into(),
                grants: vec![],
            },
        )]);
        assert!(StaticUsers::new(bad, None).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_checks_are_bounded_and_unknown_users_cost_a_check() {
        let users = HashMap::from([(
            "alice".to_owned(),
            StaticUser {
                password_hash: hash_password("s3cret").unwrap(),
                grants: vec![],
            },
        )]);
        // One checker thread, so the bound shows whatever the machine's core count.
        let auth = Arc::new(
            StaticUsers::new(users, None)
                .unwrap()
                .with_password_threads(1)
                .unwrap(),
        );
        // 200 checks at once, each of another unknown user: had unknown users been answered
        // without argon2 (a timing oracle), none would be refused. The bound refuses the excess
        // at once instead of running 200 argon2 computations side by side.
        let checks = (0..200).map(|n| {
            let auth = Arc::clone(&auth);
            tokio::spawn(async move {
                auth.authenticate(&Credentials::Basic {
                    user: format!("nobody{n}"),
                    password: format!("guess{n}"),
                })
                .await
            })
        });
        let outcomes = futures::future::join_all(checks).await;
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o.as_ref().unwrap(), Err(Error::TooManyRequests { .. })))
            .count();
        let denied = outcomes
            .iter()
            .filter(|o| matches!(o.as_ref().unwrap(), Ok(None)))
            .count();
        assert_eq!(refused + denied, 200);
        assert!(
            refused > 0 && denied > 0,
            "refused {refused}, denied {denied}"
        );
        // The checkers are free again afterwards.
        let ok = Credentials::Basic {
            user: "alice".into(),
            password: "s3cret".into(),
        };
        assert!(auth.authenticate(&ok).await.unwrap().is_some());
    }

    #[test]
    fn tokens_not_valid_yet_are_refused() {
        let issuer = TokenIssuer::new("registry", b"secret", Duration::from_secs(600));
        let now = unix_now();
        let claims = Claims {
            iss: "registry".into(),
            sub: "dev".into(),
            aud: "registry".into(),
            exp: now + 1200,
            nbf: now + 600,
            iat: now,
            jti: "x".into(),
            access: Vec::new(),
        };
        let early = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(issuer.verify(&early).is_none(), "nbf 600 s ahead");
        let valid = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims { nbf: now, ..claims },
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(issuer.verify(&valid).is_some());
    }
}
