//! Checks every policy store makes the same way.

use registry_core::{Error, PolicyKind, PolicySource, Result, StoredPolicy};

/// Refuses to change a policy another source manages.
pub(crate) fn check_source(existing: &StoredPolicy, wanted: PolicySource) -> Result<()> {
    check_owner(existing.kind, &existing.name, existing.source, wanted)
}

/// Refuses to change the policy `name` of `kind`, managed by `owner`, on behalf of `wanted`.
pub(crate) fn check_owner(
    kind: PolicyKind,
    name: &str,
    owner: PolicySource,
    wanted: PolicySource,
) -> Result<()> {
    if owner == wanted {
        return Ok(());
    }
    let what = match kind {
        PolicyKind::TagRule => "tag rule",
        PolicyKind::Cleanup => "cleanup policy",
        PolicyKind::FirewallRule => "firewall rule",
    };
    let manager = match owner {
        PolicySource::Config => "the server configuration; change it there",
        PolicySource::Api => "the admin API; delete it there first",
    };
    Err(Error::Denied {
        reason: format!("{what} {name:?} is managed by {manager}"),
    })
}

/// Refuses a store that would hold more than `max` policies of a kind.
pub(crate) fn check_count(count: usize, max: usize) -> Result<()> {
    if count > max {
        return Err(Error::PolicyInvalid {
            reason: format!("at most {max} are stored; remove one first"),
        });
    }
    Ok(())
}
