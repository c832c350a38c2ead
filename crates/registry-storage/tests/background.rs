//! Zero-downtime migrations on SQLite and PostgreSQL: a database migrated for a rolling upgrade
//! (pre-deployment only) holds manifests an older version wrote without their total size; the
//! background migration fills them in a batch at a time, resumes on another handle after a
//! "crash", pauses and resumes, fails a batch without applying half of it and is retried; the
//! post-deployment migration fails as a whole when it cannot complete, then applies.

use registry_core::{
    BackgroundMigrations, ContentMetadata, Digest, MigrationStatus, RepositoryName, Tag, TagGuard,
    TagQuery,
};
use registry_storage::conformance::new_manifest;
use registry_storage::sql::{Migrations, SqlMetadataStore};
use registry_storage::testing;
use sqlx::Connection;

/// A database URL, and what removes the database when dropped.
type Fresh = (String, Box<dyn std::any::Any + Send>);

async fn sqlite() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("registry.db").display()
    );
    (url, Box::new(dir))
}

async fn postgres() -> Fresh {
    let (url, cleanup) = testing::postgres_schema().await;
    (url, Box::new(cleanup))
}

/// Runs a statement as an older version (or an operator) would, on a connection of its own.
async fn execute(url: &str, statement: &str) -> Result<(), sqlx::Error> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    sqlx::query(statement).execute(&mut conn).await.map(drop)
}

async fn status(store: &SqlMetadataStore) -> registry_core::BackgroundMigration {
    let all = store.background_migrations().await.unwrap();
    all.into_iter()
        .find(|m| m.name == "manifest_total_size")
        .expect("the migration is listed")
}

/// Tag sizes as listings show them.
async fn sizes(store: &SqlMetadataStore, repository: &RepositoryName) -> Vec<(String, u64)> {
    let query = TagQuery {
        limit: 100,
        ..TagQuery::default()
    };
    store
        .tag_details(repository, &query)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.name.as_str().to_owned(), d.size))
        .collect()
}

async fn scenario(url: String) {
    let store = SqlMetadataStore::connect_with(&url, Migrations::PreDeployment)
        .await
        .unwrap();
    assert_eq!(
        store.pending_post_deployment().await.unwrap().len(),
        1,
        "the post-deployment migration waits"
    );
    // Seven manifests with a layer each, in two repositories, tagged.
    let mut repositories = Vec::new();
    for (r, count) in [("team/a", 4u64), ("team/b", 3)] {
        let repository = RepositoryName::parse(r).unwrap();
        for n in 0..count {
            let layer = Digest::sha256(format!("{r}/{n}").as_bytes());
            store
                .link_blob(&repository, &layer, 1000 + n)
                .await
                .unwrap();
            let manifest = new_manifest(&repository, &format!("{r}{n}"), &[layer], &[], None, None);
            let tag = Tag::parse(&format!("v{n}")).unwrap();
            store
                .put_manifest(&manifest, &[tag], &TagGuard::none())
                .await
                .unwrap();
        }
        repositories.push(repository);
    }
    let expected_a = sizes(&store, &repositories[0]).await;
    assert_eq!(expected_a[0].1, 1000 + r#"{"seed":"team/a0"}"#.len() as u64);
    // As an older version wrote them: no total size.
    execute(&url, "UPDATE manifests SET total_size = NULL")
        .await
        .unwrap();
    assert_eq!(
        sizes(&store, &repositories[0]).await,
        expected_a,
        "listings work meanwhile"
    );

    // Two batches of three, then a "crash": a fresh handle resumes after the cursor.
    let first = store.run_background_batch(3).await.unwrap().unwrap();
    assert_eq!((first.rows, first.finished), (3, false));
    let progress = status(&store).await;
    assert_eq!((progress.done, progress.total), (3, Some(7)));
    drop(store);
    let store = SqlMetadataStore::connect_with(&url, Migrations::PreDeployment)
        .await
        .unwrap();
    assert_eq!(status(&store).await.done, 3);

    // Paused: no batch runs; resumed: it goes on.
    let paused = store
        .pause_background_migration("manifest_total_size", true)
        .await
        .unwrap();
    assert_eq!(paused.status, MigrationStatus::Paused);
    assert_eq!(store.run_background_batch(3).await.unwrap(), None);
    store
        .pause_background_migration("manifest_total_size", false)
        .await
        .unwrap();

    // A batch that fails (a total past what a BIGINT holds) applies nothing and stops.
    let poison = RepositoryName::parse("team/c").unwrap();
    let huge = [Digest::sha256(b"h1"), Digest::sha256(b"h2")];
    for digest in &huge {
        store
            .link_blob(&poison, digest, u64::MAX / 3)
            .await
            .unwrap();
    }
    let manifest = new_manifest(&poison, "c", &huge[..1], &[], None, None);
    store
        .put_manifest(&manifest, &[], &TagGuard::none())
        .await
        .unwrap();
    // A second such blob listed by the manifest behind the store's back: its total no longer
    // fits.
    execute(
        &url,
        &format!(
            "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest) \
             SELECT repository_id, digest, '{}' FROM manifests WHERE digest = '{}'",
            huge[1], manifest.digest
        ),
    )
    .await
    .unwrap();
    execute(&url, "UPDATE manifests SET total_size = NULL")
        .await
        .unwrap();
    assert!(store.run_background_batch(100).await.is_err());
    let failed = status(&store).await;
    assert_eq!(failed.status, MigrationStatus::Failed);
    assert!(failed.error.is_some(), "{failed:?}");
    assert_eq!(failed.done, 3, "the failed batch counted nothing");
    assert_eq!(store.run_background_batch(100).await.unwrap(), None);

    // The post-deployment migration cannot complete either: it fails whole.
    assert!(store.migrate_post_deployment().await.is_err());
    assert_eq!(store.pending_post_deployment().await.unwrap().len(), 1);
    execute(
        &url,
        "UPDATE manifests SET total_size = 1 WHERE total_size IS NULL AND digest = 'x'",
    )
    .await
    .expect("the column still takes what the older version writes");

    // Repaired and resumed: the rest is done.
    execute(&url, "DELETE FROM manifests WHERE repository_id = (SELECT id FROM repositories WHERE name = 'team/c')")
        .await
        .unwrap();
    store
        .pause_background_migration("manifest_total_size", false)
        .await
        .unwrap();
    let last = store.run_background_batch(100).await.unwrap().unwrap();
    assert!(last.finished);
    assert_eq!(status(&store).await.status, MigrationStatus::Finished);
    assert!(
        store
            .pause_background_migration("manifest_total_size", true)
            .await
            .is_err(),
        "a finished migration cannot be paused"
    );
    assert_eq!(sizes(&store, &repositories[0]).await, expected_a);

    // Post-deployment: applied; a manifest without its size is now refused.
    store.migrate_post_deployment().await.unwrap();
    assert!(store.pending_post_deployment().await.unwrap().is_empty());
    let refused = execute(
        &url,
        "INSERT INTO manifests (repository_id, digest, media_type, annotations, size, payload, created_at) \
         SELECT id, 'sha256:x', 'x', '{}', 1, 'x', 0 FROM repositories WHERE name = 'team/a'",
    )
    .await;
    assert!(
        refused.is_err(),
        "total_size is required after the post-deployment migration"
    );
    assert_eq!(sizes(&store, &repositories[1]).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_background_and_post_deployment_migrations() {
    let (url, _cleanup) = sqlite().await;
    scenario(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_background_and_post_deployment_migrations() {
    let (url, _cleanup) = postgres().await;
    scenario(url).await;
}

/// Two instances running batches at once on PostgreSQL: each batch is taken by one, so every
/// manifest is counted once and the migration finishes with `done` equal to the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_running_batches_at_once_never_run_one_twice() {
    let (url, _cleanup) = postgres().await;
    let one = SqlMetadataStore::connect_with(&url, Migrations::PreDeployment)
        .await
        .unwrap();
    let two = SqlMetadataStore::connect_with(&url, Migrations::PreDeployment)
        .await
        .unwrap();
    let repository = RepositoryName::parse("team/many").unwrap();
    for n in 0..60u32 {
        let manifest = new_manifest(&repository, &format!("m{n}"), &[], &[], None, None);
        one.put_manifest(&manifest, &[], &TagGuard::none())
            .await
            .unwrap();
    }
    execute(&url, "UPDATE manifests SET total_size = NULL")
        .await
        .unwrap();
    let run = |store: SqlMetadataStore| async move {
        let mut rows = 0;
        // Bounded: 60 rows in batches of 7 take 9 batches; a store that finds the row taken
        // by the other sees no work and tries again.
        for _ in 0..200 {
            match store.run_background_batch(7).await.unwrap() {
                Some(batch) => {
                    rows += batch.rows;
                    if batch.finished {
                        break;
                    }
                }
                None if status(&store).await.status == MigrationStatus::Finished => break,
                None => tokio::task::yield_now().await,
            }
        }
        rows
    };
    let (a, b) = tokio::join!(run(one.clone()), run(two.clone()));
    assert_eq!(a + b, 60, "every manifest done once ({a} + {b})");
    let done = status(&one).await;
    assert_eq!(
        (done.status, done.done, done.total),
        (MigrationStatus::Finished, 60, Some(60))
    );
    assert!(
        sizes_all_set(&url).await,
        "every manifest has its total size"
    );
}

async fn sizes_all_set(url: &str) -> bool {
    use sqlx::Row;
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let row = sqlx::query("SELECT COUNT(*) AS n FROM manifests WHERE total_size IS NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    row.try_get::<i64, _>("n").unwrap() == 0
}
