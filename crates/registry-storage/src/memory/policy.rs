//! Stored tag rules and cleanup policies ([`PolicyStore`]) in the memory metadata store.

use std::collections::BTreeMap;

use async_trait::async_trait;
use registry_core::{PolicyKind, PolicySource, PolicyStore, Result, StoredPolicy};

use super::{MemoryMetadataStore, lock};
use crate::policy::{check_count, check_source};

#[async_trait]
impl PolicyStore for MemoryMetadataStore {
    async fn policies(&self, kind: PolicyKind) -> Result<Vec<StoredPolicy>> {
        let state = lock(&self.state);
        Ok(state
            .policies
            .range((kind.as_str(), String::new())..)
            .take_while(|((k, _), _)| *k == kind.as_str())
            .map(|(_, policy)| policy.clone())
            .collect())
    }

    async fn put_policy(&self, policy: &StoredPolicy, max: usize) -> Result<bool> {
        let mut state = lock(&self.state);
        let key = (policy.kind.as_str(), policy.name.clone());
        let created = match state.policies.get(&key) {
            Some(existing) => {
                check_source(existing, policy.source)?;
                false
            }
            None => {
                check_count(count_of(&state.policies, policy.kind) + 1, max)?;
                true
            }
        };
        state.policies.insert(key, policy.clone());
        Ok(created)
    }

    async fn delete_policy(
        &self,
        kind: PolicyKind,
        name: &str,
        source: PolicySource,
    ) -> Result<bool> {
        let mut state = lock(&self.state);
        let key = (kind.as_str(), name.to_owned());
        match state.policies.get(&key) {
            None => Ok(false),
            Some(existing) => {
                check_source(existing, source)?;
                state.policies.remove(&key);
                Ok(true)
            }
        }
    }

    async fn replace_policies(
        &self,
        kind: PolicyKind,
        source: PolicySource,
        policies: &[StoredPolicy],
        max: usize,
    ) -> Result<()> {
        let mut state = lock(&self.state);
        let others: Vec<&StoredPolicy> = state
            .policies
            .values()
            .filter(|p| p.kind == kind && p.source != source)
            .collect();
        for policy in policies {
            if let Some(other) = others.iter().find(|o| o.name == policy.name) {
                check_source(other, source)?;
            }
        }
        check_count(others.len() + policies.len(), max)?;
        state
            .policies
            .retain(|_, p| !(p.kind == kind && p.source == source));
        for policy in policies {
            state
                .policies
                .insert((kind.as_str(), policy.name.clone()), policy.clone());
        }
        Ok(())
    }
}

fn count_of(policies: &BTreeMap<(&'static str, String), StoredPolicy>, kind: PolicyKind) -> usize {
    policies.values().filter(|p| p.kind == kind).count()
}
