//! Database load balancing on a real PostgreSQL streaming replica (`scripts/postgres-replica`
//! starts it on loopback): reads of a repository go to the replica only once it has replayed
//! the repository's last write; a replica paused past the allowed lag is taken out and put back;
//! a replica stopped midway fails no read, and serves again once restarted.

use std::time::{Duration, Instant};

use registry_core::{ContentMetadata, Digest, RepositoryName};
use registry_storage::sql::{ReplicaOptions, SqlMetadataStore};
use registry_storage::testing::{self, Replica};

fn replica_reads(store: &SqlMetadataStore) -> u64 {
    store.replica_status().0[0].reads
}

fn healthy(store: &SqlMetadataStore) -> bool {
    store.replica_status().0[0].healthy
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_follow_the_replicas_replay_and_health() {
    let replica = Replica::start();
    let (url, _schema) = testing::postgres_schema().await;
    let primary = SqlMetadataStore::connect(&url).await.unwrap();
    let replica_url = replica.url_like(&url);
    assert_ne!(replica_url, url, "the test server is on 127.0.0.1:5432");
    let store = primary
        .with_replicas(
            // The second is the same standby seen through another schema: never read from.
            &[replica_url, replica.url_like(&testing::postgres_url())],
            ReplicaOptions {
                max_lag_bytes: 64 << 10,
                // Checks run when the test asks, so each step is deterministic.
                check_interval: Duration::from_secs(3600),
                timeout: Duration::from_secs(2),
                read_timeout: Duration::from_secs(10),
            },
        )
        .await
        .unwrap();
    let quiet = RepositoryName::parse("team/quiet").unwrap();
    let busy = RepositoryName::parse("team/busy").unwrap();
    let digest = Digest::sha256(b"layer");
    store.link_blob(&quiet, &digest, 5).await.unwrap();
    until("the replica has replayed team/quiet's write", async || {
        store.check_replicas().await;
        let before = replica_reads(&store);
        store.linked_blob(&quiet, &digest).await.unwrap().is_some()
            && replica_reads(&store) > before
    })
    .await;

    // Replay paused: a repository written now is read from the primary, with its write; the
    // quiet one is still read from the replica.
    replica.execute("SELECT pg_wal_replay_pause()").await;
    for n in 0..5u8 {
        let blob = Digest::sha256(&[n]);
        store.link_blob(&busy, &blob, 1).await.unwrap();
        store.check_replicas().await;
        let before = replica_reads(&store);
        assert!(
            store.linked_blob(&busy, &blob).await.unwrap().is_some(),
            "a read right after a write sees it"
        );
        assert_eq!(
            replica_reads(&store),
            before,
            "the paused replica was not asked"
        );
    }
    let before = replica_reads(&store);
    assert!(store.linked_blob(&quiet, &digest).await.unwrap().is_some());
    assert_eq!(
        replica_reads(&store),
        before + 1,
        "the quiet repository is read from the replica"
    );

    // Lagging past the limit: taken out, every read goes to the primary.
    for n in 0..400u32 {
        store
            .link_blob(&busy, &Digest::sha256(&n.to_be_bytes()), 1)
            .await
            .unwrap();
    }
    store.check_replicas().await;
    let status = store.replica_status().0;
    assert!(!status[0].healthy, "{status:?}");
    assert!(status[0].lag_bytes.unwrap() > 64 << 10, "{status:?}");
    let before = replica_reads(&store);
    assert!(store.linked_blob(&quiet, &digest).await.unwrap().is_some());
    assert_eq!(replica_reads(&store), before);

    // Caught up: back in.
    replica.execute("SELECT pg_wal_replay_resume()").await;
    until("the replica is back", async || {
        store.check_replicas().await;
        healthy(&store)
    })
    .await;
    let before = replica_reads(&store);
    let last = Digest::sha256(&399u32.to_be_bytes());
    assert!(store.linked_blob(&busy, &last).await.unwrap().is_some());
    assert_eq!(
        replica_reads(&store),
        before + 1,
        "{:?}",
        store.replica_status()
    );

    // Stopped midway: the read it fails is answered by the primary, and it is taken out.
    replica.stop();
    let (_, primary_before) = store.replica_status();
    assert!(store.linked_blob(&quiet, &digest).await.unwrap().is_some());
    assert!(store.linked_blob(&busy, &last).await.unwrap().is_some());
    let (status, primary_after) = store.replica_status();
    assert!(!status[0].healthy);
    assert_eq!(primary_after, primary_before + 2);

    let status = store.replica_status().0;
    assert!(!status[1].healthy, "{status:?}");
    assert_eq!(status[1].reads, 0, "{status:?}");

    // Restarted: checked, back in.
    replica.restart();
    until("the restarted replica is back", async || {
        store.check_replicas().await;
        healthy(&store)
    })
    .await;
    let before = replica_reads(&store);
    assert!(store.linked_blob(&quiet, &digest).await.unwrap().is_some());
    assert_eq!(replica_reads(&store), before + 1);
}
