//! The authorization model: principals, roles per namespace, actions on repositories, and the
//! traits an embedder implements to plug in its own authentication and authorization.

use std::fmt::{self, Debug};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::name::RepositoryName;

/// What a request does to a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs, push manifests and tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// The action's name in token scopes (`pull`, `push`, `delete`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// Parses a scope action; `*` is not an action (see [`Action::ALL`]).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }

    /// Every action.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];
}

/// A role in a namespace, from least to most privileged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May pull.
    Reader,
    /// May pull and push.
    Developer,
    /// May pull, push and delete.
    Maintainer,
    /// A maintainer who also manages the namespace's rules.
    Owner,
    /// Everything, everywhere, including the catalog.
    Admin,
}

impl Role {
    /// The role's name (`reader`, `developer`, `maintainer`, `owner`, `admin`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
            Role::Owner => "owner",
            Role::Admin => "admin",
        }
    }

    /// The least role that permits every action in `actions` (reader for none).
    pub fn least_allowing(actions: &[Action]) -> Role {
        [Role::Reader, Role::Developer, Role::Maintainer]
            .into_iter()
            .find(|role| actions.iter().all(|a| role.allows(*a)))
            .unwrap_or(Role::Maintainer)
    }

    /// Whether the role permits an action.
    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::Pull => true,
            Action::Push => self >= Role::Developer,
            Action::Delete => self >= Role::Maintainer,
        }
    }
}

/// Which repositories a grant covers: `*` (all), `<prefix>/*` (a namespace and everything
/// below it) or one exact repository name.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamePattern(String);

/// A name pattern that is none of the accepted forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{pattern:?} is not a repository pattern: use *, <namespace>/* or an exact repository name"
)]
pub struct PatternError {
    /// The pattern given.
    pub pattern: String,
}

impl NamePattern {
    /// Parses a pattern.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let error = || PatternError {
            pattern: pattern.to_owned(),
        };
        let name_part = match pattern {
            "*" => return Ok(NamePattern(pattern.to_owned())),
            p => p.strip_suffix("/*").unwrap_or(p),
        };
        RepositoryName::parse(name_part).map_err(|_| error())?;
        Ok(NamePattern(pattern.to_owned()))
    }

    /// Whether the pattern covers a repository.
    pub fn matches(&self, repository: &RepositoryName) -> bool {
        let name = repository.as_str();
        match self.0.as_str() {
            "*" => true,
            pattern => match pattern.strip_suffix("/*") {
                Some(prefix) => name
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/')),
                None => name == pattern,
            },
        }
    }

    /// Whether the pattern covers every repository below a namespace (`*`, `<namespace>/*`, or
    /// the pattern of an enclosing namespace).
    pub fn covers_namespace(&self, namespace: &RepositoryName) -> bool {
        match self.0.as_str() {
            "*" => true,
            pattern => pattern.strip_suffix("/*").is_some_and(|prefix| {
                let name = namespace.as_str();
                name == prefix
                    || name
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            }),
        }
    }

    /// Whether this pattern matches every repository `other` matches.
    pub fn covers(&self, other: &NamePattern) -> bool {
        match other.0.as_str() {
            "*" => self.0 == "*",
            text => match text.strip_suffix("/*") {
                Some(namespace) => {
                    RepositoryName::parse(namespace).is_ok_and(|ns| self.covers_namespace(&ns))
                }
                None => RepositoryName::parse(text).is_ok_and(|name| self.matches(&name)),
            },
        }
    }

    /// The repositories both patterns match, as a pattern. Patterns nest or are disjoint
    /// (`*` holds every namespace, a namespace its sub-namespaces and names), so this is the
    /// narrower of the two, or `None`.
    pub fn intersect(&self, other: &NamePattern) -> Option<NamePattern> {
        if self.covers(other) {
            Some(other.clone())
        } else if other.covers(self) {
            Some(self.clone())
        } else {
            None
        }
    }

    /// The pattern as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Debug for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NamePattern({})", self.0)
    }
}

impl TryFrom<String> for NamePattern {
    type Error = PatternError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        NamePattern::parse(&value)
    }
}

impl From<NamePattern> for String {
    fn from(pattern: NamePattern) -> Self {
        pattern.0
    }
}

/// A role over the repositories a pattern covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The repositories.
    pub pattern: NamePattern,
    /// The role there.
    pub role: Role,
}

impl Grant {
    /// Grants allowing what both lists allow: on each repository, the lesser of the role
    /// `limit` gives and the role `grants` give (none where either gives none). An access
    /// token's access is its scopes intersected with its user's current grants this way.
    pub fn intersect(grants: &[Grant], limit: &[Grant]) -> Vec<Grant> {
        let mut both = Vec::new();
        for grant in grants {
            for bound in limit {
                if let Some(pattern) = grant.pattern.intersect(&bound.pattern) {
                    both.push(Grant {
                        pattern,
                        role: grant.role.min(bound.role),
                    });
                }
            }
        }
        both
    }
}

/// Who is making a request, and what they were granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user's name; `None` for an anonymous caller.
    pub name: Option<String>,
    /// Roles by repository pattern.
    pub grants: Vec<Grant>,
}

impl Principal {
    /// An anonymous caller with the given grants.
    pub fn anonymous(grants: Vec<Grant>) -> Self {
        Principal { name: None, grants }
    }

    /// A named user with the given grants.
    pub fn user(name: impl Into<String>, grants: Vec<Grant>) -> Self {
        Principal {
            name: Some(name.into()),
            grants,
        }
    }

    /// The highest role any grant gives on a repository.
    pub fn role_for(&self, repository: &RepositoryName) -> Option<Role> {
        self.grants
            .iter()
            .filter(|g| g.pattern.matches(repository))
            .map(|g| g.role)
            .max()
    }

    /// Whether the principal administers the whole registry: the admin role on `*`. An admin
    /// of a namespace administers that namespace only.
    pub fn is_admin(&self) -> bool {
        self.grants
            .iter()
            .any(|g| g.role == Role::Admin && g.pattern.as_str() == "*")
    }
}

/// Credentials as a client presented them.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// None at all.
    None,
    /// A user name and password (HTTP Basic).
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A bearer token.
    Bearer(String),
}

impl Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Turns credentials into a principal.
#[async_trait]
pub trait Authenticator: Debug + Send + Sync + 'static {
    /// The principal a user is now, by name, without checking credentials; `None` when no
    /// such user exists (any more). Access tokens act for their user with no more than this
    /// principal's grants, so removing a user or a grant takes effect on their tokens at once.
    async fn user(&self, name: &str) -> Result<Option<Principal>>;

    /// The principal the credentials prove, or `None` when they prove nothing (wrong password,
    /// unknown user). [`Credentials::None`] yields the anonymous principal, if anonymous access
    /// is allowed at all.
    async fn authenticate(&self, credentials: &Credentials) -> Result<Option<Principal>>;
}

/// Decides whether a principal may act on a repository.
pub trait Authorizer: Debug + Send + Sync + 'static {
    /// Whether `principal` may perform `action` on `repository`.
    fn authorize(&self, principal: &Principal, repository: &RepositoryName, action: Action)
    -> bool;

    /// The principal's role on `repository`, which protected-tag rules compare against; the
    /// highest role its grants give by default. `None` when it has none there.
    fn role(&self, principal: &Principal, repository: &RepositoryName) -> Option<Role> {
        principal.role_for(repository)
    }

    /// The role the principal holds over *every* repository `pattern` covers (`*`: the whole
    /// registry; `team/*`: a namespace), which decisions beyond one repository compare against:
    /// registry administration (the admin role over `*`), managing rules for a namespace
    /// (owner over it), reading a namespace's usage (any role over it), minting a token for a
    /// pattern (the token's role over it). By default the highest role of the grants whose
    /// pattern covers `pattern`.
    fn role_over(&self, principal: &Principal, pattern: &NamePattern) -> Option<Role> {
        principal
            .grants
            .iter()
            .filter(|g| g.pattern.covers(pattern))
            .map(|g| g.role)
            .max()
    }

    /// Whether the principal administers the whole registry (the admin role over `*`).
    fn is_admin(&self, principal: &Principal) -> bool {
        let everything = NamePattern("*".to_owned());
        self.role_over(principal, &everything) == Some(Role::Admin)
    }
}

/// The default authorizer: the principal's highest role on the repository decides.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoleAuthorizer;

impl Authorizer for RoleAuthorizer {
    fn authorize(
        &self,
        principal: &Principal,
        repository: &RepositoryName,
        action: Action,
    ) -> bool {
        principal
            .role_for(repository)
            .is_some_and(|role| role.allows(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepositoryName {
        RepositoryName::parse(s).unwrap()
    }

    #[test]
    fn patterns() {
        let team = NamePattern::parse("team/*").unwrap();
        assert!(team.matches(&name("team/app")));
        assert!(team.matches(&name("team/a/b")));
        assert!(!team.matches(&name("team")));
        assert!(!team.matches(&name("teamx/app")));
        assert!(NamePattern::parse("*").unwrap().matches(&name("x")));
        assert!(
            NamePattern::parse("exact/name")
                .unwrap()
                .matches(&name("exact/name"))
        );
        assert!(
            !NamePattern::parse("exact/name")
                .unwrap()
                .matches(&name("exact/name/sub"))
        );
        let team_ns = name("team");
        assert!(team.covers_namespace(&team_ns));
        assert!(team.covers_namespace(&name("team/sub")));
        assert!(!team.covers_namespace(&name("teamx")));
        assert!(NamePattern::parse("*").unwrap().covers_namespace(&team_ns));
        assert!(
            !NamePattern::parse("team/app")
                .unwrap()
                .covers_namespace(&team_ns)
        );
        for bad in ["", "Team/*", "a/**", "*/x", "a//*"] {
            assert!(NamePattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_nest_and_grants_intersect() {
        let p = |s: &str| NamePattern::parse(s).unwrap();
        assert!(p("*").covers(&p("team/*")) && p("team/*").covers(&p("team/a/*")));
        assert!(p("team/*").covers(&p("team/app")) && !p("team/*").covers(&p("team")));
        assert!(!p("team/app").covers(&p("team/*")) && !p("a/*").covers(&p("b/*")));
        assert_eq!(p("team/*").intersect(&p("*")), Some(p("team/*")));
        assert_eq!(p("team/*").intersect(&p("team/app")), Some(p("team/app")));
        assert_eq!(p("team/*").intersect(&p("other/*")), None);
        let g = |pattern: &str, role| Grant {
            pattern: p(pattern),
            role,
        };
        let token = [g("*", Role::Maintainer)];
        let user = [g("team/*", Role::Developer), g("*", Role::Reader)];
        let both = Principal::user("u", Grant::intersect(&token, &user));
        assert_eq!(both.role_for(&name("team/app")), Some(Role::Developer));
        assert_eq!(both.role_for(&name("other")), Some(Role::Reader));
        let narrow = Principal::user(
            "u",
            Grant::intersect(&[g("team/app", Role::Maintainer)], &user),
        );
        assert_eq!(narrow.role_for(&name("team/app")), Some(Role::Developer));
        assert_eq!(narrow.role_for(&name("team/other")), None);
        assert!(Grant::intersect(&token, &[]).is_empty());
    }

    #[test]
    fn roles_and_principals() {
        assert!(Role::Reader.allows(Action::Pull) && !Role::Reader.allows(Action::Push));
        assert!(Role::Developer.allows(Action::Push) && !Role::Developer.allows(Action::Delete));
        assert!(Role::Maintainer.allows(Action::Delete));
        let alice = Principal::user(
            "alice",
            vec![
                Grant {
                    pattern: NamePattern::parse("*").unwrap(),
                    role: Role::Reader,
                },
                Grant {
                    pattern: NamePattern::parse("team/*").unwrap(),
                    role: Role::Maintainer,
                },
            ],
        );
        assert_eq!(alice.role_for(&name("team/app")), Some(Role::Maintainer));
        assert_eq!(alice.role_for(&name("other")), Some(Role::Reader));
        let authorizer = RoleAuthorizer;
        assert!(authorizer.authorize(&alice, &name("team/app"), Action::Delete));
        assert!(!authorizer.authorize(&alice, &name("other"), Action::Push));
        assert!(!authorizer.authorize(&Principal::anonymous(vec![]), &name("x"), Action::Pull));
        assert!(!alice.is_admin());
        let team_admin = Principal::user(
            "t",
            vec![Grant {
                pattern: NamePattern::parse("team/*").unwrap(),
                role: Role::Admin,
            }],
        );
        assert!(
            !team_admin.is_admin(),
            "an admin of team/* is no registry admin"
        );
    }
}
