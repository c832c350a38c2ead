//! Conformance of the [`PolicyStore`](registry_core::PolicyStore): stored tag rules and cleanup
//! policies.

use registry_core::{Error, PolicyKind, PolicySource, StoredPolicy};

use super::SharedMetadataStore;

/// Stored tag rules and cleanup policies: create, replace, list by name, delete; a source
/// manages only its own; the count limit holds; a replacement from the configuration swaps
/// its whole set at once, or changes nothing.
pub async fn metadata_policies(store: SharedMetadataStore) {
    let policy = |kind, name: &str, source, document: &str| StoredPolicy {
        kind,
        name: name.to_owned(),
        source,
        document: document.to_owned(),
    };
    let api = |name: &str, doc: &str| policy(PolicyKind::TagRule, name, PolicySource::Api, doc);
    let config =
        |name: &str, doc: &str| policy(PolicyKind::TagRule, name, PolicySource::Config, doc);
    assert!(store.put_policy(&api("b", "1"), 3).await.unwrap());
    assert!(store.put_policy(&api("a", "2"), 3).await.unwrap());
    assert!(
        !store.put_policy(&api("a", "3"), 3).await.unwrap(),
        "replaced"
    );
    let cleanup = policy(PolicyKind::Cleanup, "a", PolicySource::Api, "c");
    assert!(
        store.put_policy(&cleanup, 3).await.unwrap(),
        "kinds are apart"
    );
    let listed = store.policies(PolicyKind::TagRule).await.unwrap();
    assert_eq!(listed, vec![api("a", "3"), api("b", "1")]);
    assert_eq!(
        store.policies(PolicyKind::Cleanup).await.unwrap(),
        vec![cleanup]
    );

    // The configuration's set replaces only the configuration's.
    store
        .replace_policies(
            PolicyKind::TagRule,
            PolicySource::Config,
            &[config("c", "4")],
            3,
        )
        .await
        .unwrap();
    assert!(matches!(
        store.put_policy(&api("d", "5"), 3).await,
        Err(Error::PolicyInvalid { .. })
    ));
    assert!(matches!(
        store.put_policy(&api("c", "6"), 3).await,
        Err(Error::Denied { .. })
    ));
    assert!(matches!(
        store
            .delete_policy(PolicyKind::TagRule, "c", PolicySource::Api)
            .await,
        Err(Error::Denied { .. })
    ));
    // A configuration naming an API rule, or too many, changes nothing.
    for bad in [
        vec![config("a", "7")],
        vec![config("x", "8"), config("y", "9")],
    ] {
        assert!(
            store
                .replace_policies(PolicyKind::TagRule, PolicySource::Config, &bad, 3)
                .await
                .is_err()
        );
        assert_eq!(store.policies(PolicyKind::TagRule).await.unwrap().len(), 3);
    }
    store
        .replace_policies(
            PolicyKind::TagRule,
            PolicySource::Config,
            &[config("e", "10")],
            3,
        )
        .await
        .unwrap();
    let names: Vec<String> = store
        .policies(PolicyKind::TagRule)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["a", "b", "e"]);
    assert!(
        store
            .delete_policy(PolicyKind::TagRule, "a", PolicySource::Api)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_policy(PolicyKind::TagRule, "a", PolicySource::Api)
            .await
            .unwrap()
    );
}
