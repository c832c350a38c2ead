//! The metadata conformance suite on every metadata backend.

use std::sync::Arc;

use registry_storage::conformance;

macro_rules! metadata_suite {
    ($backend:ident, $open:path) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        let (store, _cleanup) = $open().await;
                        conformance::$name(Arc::new(store)).await;
                    }
                };
            }

            case!(metadata_blob_links);
            case!(metadata_manifests_and_tags);
            case!(metadata_referrers);
            case!(metadata_pagination);
            case!(metadata_uploads);
            case!(metadata_upload_sessions);
            case!(metadata_review_queue);
            case!(metadata_concurrency);
            case!(metadata_collection);
            case!(metadata_tag_details);
            case!(metadata_storage_usage);
            case!(metadata_tag_rules);
            case!(metadata_manifest_with_tags);
            case!(metadata_policies);
            case!(metadata_packages);
            case!(metadata_package_update);
            case!(metadata_repository_revision);
            case!(metadata_attach_files);
            case!(metadata_tokens);
            case!(metadata_proxy_cache);
            case!(metadata_firewall_audit);
        }
    };
}

registry_storage::for_each_metadata_backend!(metadata_suite);

#[tokio::test]
async fn sqlite_keeps_data_across_reopen_and_migrates_once() {
    use registry_core::{ContentMetadata, Digest, RepositoryName};
    use registry_storage::sql::SqlMetadataStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let repo = RepositoryName::parse("kept").unwrap();
    let digest = Digest::sha256(b"kept");
    {
        let store = SqlMetadataStore::sqlite(&path).await.unwrap();
        store.link_blob(&repo, &digest, 4).await.unwrap();
        store.close().await;
    }
    let store = SqlMetadataStore::sqlite(&path).await.unwrap();
    assert!(store.linked_blob(&repo, &digest).await.unwrap().is_some());
}

#[tokio::test]
async fn unknown_database_scheme_is_refused() {
    let error = registry_storage::sql::SqlMetadataStore::connect("mysql://localhost/x")
        .await
        .unwrap_err();
    assert!(
        matches!(error, registry_core::Error::Unsupported { .. }),
        "{error}"
    );
}

/// Several processes (here, pools) opening one fresh SQLite file at once take turns to set it
/// up: every one opens it, none fails on a half-applied migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_opened_by_several_at_once_is_set_up_once() {
    use registry_storage::sql::SqlMetadataStore;
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { SqlMetadataStore::sqlite(&path).await })
            })
            .collect();
        for opener in openers {
            let store = opener
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(store.schema_version().await.unwrap() >= 6);
            store.close().await;
        }
    }
}
