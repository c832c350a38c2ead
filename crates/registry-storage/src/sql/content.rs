//! Repositories, blob links, manifests, tags and referrers ([`ContentMetadata`]) in the SQL
//! metadata store.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use registry_core::{
    BlobRecord, ContentMetadata, Digest, Error, ManifestRecord, NewManifest, Page,
    PutManifestOutcome, Reference, Referrer, RepositoryName, Result, ReviewEvent, StorageUsage,
    Tag, TagChange, TagDetail, TagGuard, TagOrder, TagQuery, Timestamp, UsageScope,
};
use sqlx::{Any, AnyConnection, Pool};

use super::{
    Dialect, MANIFEST_TOTAL_SIZE, MAX_UPSERT_ATTEMPTS, SqlMetadataStore, blob_record, blob_review,
    corrupt, db_error, digest_column, get, hold_blob, manifest_review, page_query, queue,
    remove_manifest, repository_id, split_page, tag_column, to_i64,
};

/// The id of a repository, created when missing.
async fn ensure_repository(conn: &mut AnyConnection, name: &RepositoryName) -> Result<i64> {
    sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name.as_str())
    .bind(Timestamp::now().0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    repository_id(conn, name)
        .await?
        .ok_or_else(|| Error::backend("repository vanished while being created"))
}

fn annotations_from(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|_| corrupt("annotations", text))
}

fn manifest_unknown(repository: &RepositoryName, reference: impl ToString) -> Error {
    Error::ManifestUnknown {
        repository: repository.to_string(),
        reference: reference.to_string(),
    }
}

#[async_trait]
impl ContentMetadata for SqlMetadataStore {
    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool> {
        self.read(Some(repository), |pool| async move {
            let mut conn = pool.acquire().await.map_err(db_error)?;
            Ok(repository_id(&mut conn, repository).await?.is_some())
        })
        .await
    }

    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepositoryName>> {
        let limit = to_i64(page.limit as u64)?;
        let names = self
            .read(None, |pool| async move {
                sqlx::query(&page_query("repositories", "TRUE"))
                    .bind(page.last.as_deref().unwrap_or(""))
                    .bind(limit)
                    .fetch_one(&pool)
                    .await
                    .map_err(db_error)
            })
            .await?;
        split_page(&names, |name| {
            RepositoryName::parse(name).map_err(|_| corrupt("repository name", name))
        })
    }

    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let now = Timestamp::now().0;
        let mut tx = self.begin().await?;
        hold_blob(&mut tx, self, digest, size, now).await?;
        let repository_id = ensure_repository(&mut tx, repository).await?;
        sqlx::query("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT (repository_id, digest) DO NOTHING")
            .bind(repository_id)
            .bind(digest.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        queue(
            &mut tx,
            &blob_review(digest.clone()),
            ReviewEvent::BlobUploaded,
            self.due(),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.wrote(repository).await;
        Ok(())
    }

    async fn linked_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>> {
        self.read(Some(repository), |pool| async move {
            sqlx::query(
                "SELECT b.digest, b.size, b.created_at FROM blobs b \
                 JOIN repository_blobs rb ON rb.digest = b.digest \
                 JOIN repositories r ON r.id = rb.repository_id \
                 WHERE r.name = $1 AND b.digest = $2",
            )
            .bind(repository.as_str())
            .bind(digest.as_str())
            .fetch_optional(&pool)
            .await
            .map_err(db_error)
        })
        .await?
        .as_ref()
        .map(blob_record)
        .transpose()
    }

    async fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        sqlx::query("SELECT digest, size, created_at FROM blobs WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(blob_record)
            .transpose()
    }

    async fn unlink_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool> {
        let mut tx = self.begin().await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(false);
        };
        let removed =
            sqlx::query("DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2")
                .bind(repository_id)
                .bind(digest.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected()
                > 0;
        if removed {
            queue(
                &mut tx,
                &blob_review(digest.clone()),
                ReviewEvent::BlobUnlinked,
                self.due(),
            )
            .await?;
        }
        tx.commit().await.map_err(db_error)?;
        self.wrote(repository).await;
        Ok(removed)
    }

    async fn put_manifest(
        &self,
        manifest: &NewManifest,
        tags: &[Tag],
        guard: &TagGuard,
    ) -> Result<PutManifestOutcome> {
        let now = Timestamp::now().0;
        let due = self.due();
        let mut tx = self.begin().await?;
        let repository_id = ensure_repository(&mut tx, &manifest.repository).await?;
        let blob_check = format!(
            "SELECT 1 FROM blobs WHERE digest = $2 AND EXISTS \
             (SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2) {}",
            self.lock("FOR SHARE")
        );
        for digest in &manifest.blobs {
            let found = sqlx::query(&blob_check)
                .bind(repository_id)
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            if found.is_none() {
                return Err(Error::ManifestBlobUnknown {
                    digest: digest.clone(),
                });
            }
        }
        for digest in &manifest.children {
            if !self
                .manifest_row(&mut tx, repository_id, digest, "FOR SHARE")
                .await?
            {
                return Err(Error::ManifestBlobUnknown {
                    digest: digest.clone(),
                });
            }
        }
        let annotations = serde_json::to_string(&manifest.annotations).map_err(Error::backend)?;
        let mut created = false;
        for attempt in 1.. {
            created = sqlx::query(
                "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, \
                 annotations, size, payload, created_at, total_size) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (repository_id, digest) DO NOTHING",
            )
            .bind(repository_id)
            .bind(manifest.digest.as_str())
            .bind(manifest.media_type.as_str())
            .bind(manifest.artifact_type.as_deref())
            .bind(manifest.subject.as_ref().map(Digest::as_str))
            .bind(annotations.as_str())
            .bind(to_i64(manifest.bytes.len() as u64)?)
            .bind(manifest.bytes.to_vec())
            .bind(now)
            // Its own size until its blobs are listed, below.
            .bind(to_i64(manifest.bytes.len() as u64)?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected()
                > 0;
            // An existing row was not locked by DO NOTHING: hold it so a collector deciding on
            // it waits and then sees the tag; if one deleted it meanwhile, insert it anew.
            if created
                || self
                    .manifest_row(&mut tx, repository_id, &manifest.digest, "FOR SHARE")
                    .await?
            {
                break;
            }
            if attempt == MAX_UPSERT_ATTEMPTS {
                return Err(Error::backend(format!(
                    "manifest {} kept vanishing while pushed",
                    manifest.digest
                )));
            }
        }
        if created {
            for blob in &manifest.blobs {
                sqlx::query("INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(repository_id)
                    .bind(manifest.digest.as_str())
                    .bind(blob.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
            sqlx::query(&format!(
                "UPDATE manifests AS m SET total_size = {MANIFEST_TOTAL_SIZE} \
                 WHERE m.repository_id = $1 AND m.digest = $2"
            ))
            .bind(repository_id)
            .bind(manifest.digest.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            for child in &manifest.children {
                sqlx::query("INSERT INTO manifest_children (repository_id, parent_digest, child_digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(repository_id)
                    .bind(manifest.digest.as_str())
                    .bind(child.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
        }
        // Tags are locked in one order, so pushes of overlapping tag sets cannot deadlock.
        // Dropping the transaction on a refused tag rolls the manifest and earlier tags back.
        let mut ordered: Vec<&Tag> = tags.iter().collect();
        ordered.sort();
        ordered.dedup();
        let mut previous: Vec<Digest> = Vec::new();
        for tag in ordered {
            let target = (tag, &manifest.digest);
            if let Some(left) = upsert_tag(&mut tx, self, repository_id, target, now, guard).await?
                && !previous.contains(&left)
            {
                previous.push(left);
            }
        }
        let review = manifest_review(&manifest.repository, manifest.digest.clone());
        queue(&mut tx, &review, ReviewEvent::ManifestUploaded, due).await?;
        for left in &previous {
            let review = manifest_review(&manifest.repository, left.clone());
            queue(&mut tx, &review, ReviewEvent::TagSwitched, due).await?;
        }
        tx.commit().await.map_err(db_error)?;
        self.wrote(&manifest.repository).await;
        Ok(PutManifestOutcome {
            created,
            previous_tag_targets: previous,
        })
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        const BY_DIGEST: &str = "SELECT m.digest, m.media_type, m.artifact_type, m.subject, \
            m.annotations, m.payload, m.created_at \
            FROM manifests m JOIN repositories r ON r.id = m.repository_id \
            WHERE r.name = $1 AND m.digest = $2";
        const BY_TAG: &str = "SELECT m.digest, m.media_type, m.artifact_type, m.subject, \
            m.annotations, m.payload, m.created_at \
            FROM manifests m JOIN repositories r ON r.id = m.repository_id \
            JOIN tags t ON t.repository_id = m.repository_id AND t.manifest_digest = m.digest \
            WHERE r.name = $1 AND t.name = $2";
        let (sql, key) = match reference {
            Reference::Digest(digest) => (BY_DIGEST, digest.as_str()),
            Reference::Tag(tag) => (BY_TAG, tag.as_str()),
        };
        let row = self
            .read(Some(repository), |pool| async move {
                sqlx::query(sql)
                    .bind(repository.as_str())
                    .bind(key)
                    .fetch_optional(&pool)
                    .await
                    .map_err(db_error)
            })
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let annotations: String = get(&row, "annotations")?;
        let subject: Option<String> = get(&row, "subject")?;
        Ok(Some(ManifestRecord {
            repository: repository.clone(),
            digest: digest_column(&row, "digest")?,
            media_type: get(&row, "media_type")?,
            artifact_type: get(&row, "artifact_type")?,
            subject: subject
                .map(|s| Digest::parse(&s).map_err(|_| corrupt("subject", &s)))
                .transpose()?,
            annotations: annotations_from(&annotations)?,
            bytes: Bytes::from(get::<Vec<u8>>(&row, "payload")?),
            created_at: Timestamp(get(&row, "created_at")?),
        }))
    }

    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        guard: &TagGuard,
    ) -> Result<Vec<Tag>> {
        let due = self.due();
        let mut tx = self.begin().await?;
        let repository_id = repository_id(&mut tx, repository)
            .await?
            .ok_or_else(|| manifest_unknown(repository, digest))?;
        if !self
            .manifest_row(&mut tx, repository_id, digest, "FOR UPDATE")
            .await?
        {
            return Err(manifest_unknown(repository, digest));
        }
        let rows_of =
            |sql: &'static str| sqlx::query(sql).bind(repository_id).bind(digest.as_str());
        let parent = rows_of("SELECT parent_digest FROM manifest_children WHERE repository_id = $1 AND child_digest = $2 LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if let Some(parent) = parent {
            return Err(Error::ManifestReferenced {
                digest: digest.clone(),
                index: digest_column(&parent, "parent_digest")?,
            });
        }
        let tag_rows = rows_of(
            "SELECT name FROM tags WHERE repository_id = $1 AND manifest_digest = $2 ORDER BY name",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        for row in &tag_rows {
            guard.check(&tag_column(row)?, TagChange::Delete { current: digest })?;
        }
        let tags = remove_manifest(&mut tx, repository, repository_id, digest, due).await?;
        tx.commit().await.map_err(db_error)?;
        self.wrote(repository).await;
        Ok(tags)
    }

    async fn put_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
        guard: &TagGuard,
    ) -> Result<Option<Digest>> {
        let mut tx = self.begin().await?;
        let repository_id = repository_id(&mut tx, repository)
            .await?
            .ok_or_else(|| manifest_unknown(repository, digest))?;
        if !self
            .manifest_row(&mut tx, repository_id, digest, "FOR SHARE")
            .await?
        {
            return Err(manifest_unknown(repository, digest));
        }
        let previous = upsert_tag(
            &mut tx,
            self,
            repository_id,
            (tag, digest),
            Timestamp::now().0,
            guard,
        )
        .await?;
        if let Some(previous) = &previous {
            let review = manifest_review(repository, previous.clone());
            queue(&mut tx, &review, ReviewEvent::TagSwitched, self.due()).await?;
        }
        tx.commit().await.map_err(db_error)?;
        self.wrote(repository).await;
        Ok(previous)
    }

    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        guard: &TagGuard,
    ) -> Result<Digest> {
        let mut tx = self.begin().await?;
        let repository_id = repository_id(&mut tx, repository)
            .await?
            .ok_or_else(|| manifest_unknown(repository, tag))?;
        let row = sqlx::query(&format!(
            "SELECT manifest_digest FROM tags WHERE repository_id = $1 AND name = $2 {}",
            self.lock("FOR UPDATE")
        ))
        .bind(repository_id)
        .bind(tag.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| manifest_unknown(repository, tag))?;
        let digest = digest_column(&row, "manifest_digest")?;
        guard.check(tag, TagChange::Delete { current: &digest })?;
        sqlx::query("DELETE FROM tags WHERE repository_id = $1 AND name = $2")
            .bind(repository_id)
            .bind(tag.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let review = manifest_review(repository, digest.clone());
        queue(&mut tx, &review, ReviewEvent::TagDeleted, self.due()).await?;
        tx.commit().await.map_err(db_error)?;
        self.wrote(repository).await;
        Ok(digest)
    }

    async fn list_tags(&self, repository: &RepositoryName, page: &Page) -> Result<Vec<Tag>> {
        self.read(Some(repository), |pool| {
            self.list_tags_on(pool, repository, page)
        })
        .await
    }

    async fn storage_usage(&self, scope: &UsageScope) -> Result<StorageUsage> {
        // A namespace `p` covers `p` and the byte range ["p/", "p0"): '0' follows '/'.
        let (name, low, high) = match scope {
            UsageScope::Repository(name) => (name.as_str(), String::new(), String::new()),
            UsageScope::Namespace(prefix) => {
                (prefix.as_str(), format!("{prefix}/"), format!("{prefix}0"))
            }
        };
        let row = sqlx::query(
            "WITH scope AS (SELECT id FROM repositories \
               WHERE name = $1 OR (name >= $2 AND name < $3)), \
             used AS (SELECT DISTINCT blob_digest FROM manifest_blobs \
               WHERE repository_id IN (SELECT id FROM scope)) \
             SELECT (SELECT COUNT(*) FROM scope) AS repositories, \
               (SELECT COUNT(*) FROM manifests WHERE repository_id IN (SELECT id FROM scope)) \
                 AS manifests, \
               (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM manifests \
                 WHERE repository_id IN (SELECT id FROM scope)) AS manifest_bytes, \
               (SELECT COUNT(*) FROM used) AS blobs, \
               (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b \
                 WHERE b.digest IN (SELECT blob_digest FROM used)) AS blob_bytes",
        )
        .bind(name)
        .bind(low)
        .bind(high)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        let count = |column: &str| -> Result<u64> {
            Ok(u64::try_from(get::<i64>(&row, column)?).unwrap_or(0))
        };
        Ok(StorageUsage {
            repositories: count("repositories")?,
            manifests: count("manifests")?,
            manifest_bytes: count("manifest_bytes")?,
            blobs: count("blobs")?,
            blob_bytes: count("blob_bytes")?,
        })
    }

    async fn tag_details(
        &self,
        repository: &RepositoryName,
        query: &TagQuery,
    ) -> Result<Vec<TagDetail>> {
        self.read(Some(repository), |pool| {
            self.tag_details_on(pool, repository, query)
        })
        .await
    }

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        self.read(Some(repository), |pool| {
            self.referrers_on(pool, repository, subject, artifact_type)
        })
        .await
    }
}

/// A referrers query row, decoded before validation.
#[derive(sqlx::FromRow)]
struct ReferrerRow {
    digest: String,
    media_type: String,
    size: i64,
    artifact_type: Option<String>,
    annotations: String,
}

impl ReferrerRow {
    fn into_referrer(self) -> Result<Referrer> {
        Ok(Referrer {
            digest: Digest::parse(&self.digest).map_err(|_| corrupt("digest", &self.digest))?,
            media_type: self.media_type,
            size: u64::try_from(self.size).unwrap_or(0),
            artifact_type: self.artifact_type,
            annotations: annotations_from(&self.annotations)?,
        })
    }
}

/// Points a tag at a manifest, if the guard allows; returns the manifest it pointed at before,
/// if different.
///
/// A tag that does not exist yet is inserted without overwriting: when a concurrent transaction
/// creates it first, the insert does nothing, the row is read again and the push is judged as
/// a move (an immutable tag is never overwritten by a racing push).
async fn upsert_tag(
    conn: &mut AnyConnection,
    store: &SqlMetadataStore,
    repository_id: i64,
    (tag, digest): (&Tag, &Digest),
    now: i64,
    guard: &TagGuard,
) -> Result<Option<Digest>> {
    let select = format!(
        "SELECT manifest_digest FROM tags WHERE repository_id = $1 AND name = $2 {}",
        store.lock("FOR UPDATE")
    );
    for _ in 0..MAX_UPSERT_ATTEMPTS {
        let previous = sqlx::query(&select)
            .bind(repository_id)
            .bind(tag.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?
            .map(|row| digest_column(&row, "manifest_digest"))
            .transpose()?;
        let moved = previous.as_ref().is_some_and(|p| p != digest);
        guard.check(tag, TagChange::Push { moved })?;
        let written = match previous {
            Some(_) => sqlx::query(
                "UPDATE tags SET manifest_digest = $3, updated_at = $4 \
                 WHERE repository_id = $1 AND name = $2",
            ),
            None => sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_digest, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (repository_id, name) DO NOTHING",
            ),
        }
        .bind(repository_id)
        .bind(tag.as_str())
        .bind(digest.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        if written.rows_affected() == 1 {
            return Ok(previous.filter(|p| p != digest));
        }
    }
    Err(Error::backend(format!(
        "tag {tag} kept changing under concurrent pushes; try again"
    )))
}

/// A repository's id. Errors: [`Error::NameUnknown`].
async fn known_repository_id(conn: &mut AnyConnection, repository: &RepositoryName) -> Result<i64> {
    repository_id(conn, repository)
        .await?
        .ok_or_else(|| Error::NameUnknown {
            name: repository.to_string(),
        })
}

/// The bodies of the reads the load balancer may send to a replica, on the pool it chose.
impl SqlMetadataStore {
    async fn list_tags_on(
        &self,
        pool: Pool<Any>,
        repository: &RepositoryName,
        page: &Page,
    ) -> Result<Vec<Tag>> {
        let mut conn = pool.acquire().await.map_err(db_error)?;
        let repository_id = known_repository_id(&mut conn, repository).await?;
        let names = sqlx::query(&page_query("tags", "repository_id = $3"))
            .bind(page.last.as_deref().unwrap_or(""))
            .bind(to_i64(page.limit as u64)?)
            .bind(repository_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
        split_page(&names, |name| {
            Tag::parse(name).map_err(|_| corrupt("tag", name))
        })
    }

    async fn tag_details_on(
        &self,
        pool: Pool<Any>,
        repository: &RepositoryName,
        query: &TagQuery,
    ) -> Result<Vec<TagDetail>> {
        let mut conn = pool.acquire().await.map_err(db_error)?;
        let repository_id = known_repository_id(&mut conn, repository).await?;
        let mut sql = format!(
            "SELECT t.name, t.manifest_digest, t.created_at, t.updated_at, m.media_type, m.size, \
             COALESCE(m.total_size, {MANIFEST_TOTAL_SIZE}) AS total \
             FROM tags t JOIN manifests m \
               ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest \
             WHERE t.repository_id = $1",
        );
        let mut texts: Vec<String> = Vec::new();
        let mut times: Vec<i64> = Vec::new();
        // Placeholders are numbered in order: $2… texts first, then times.
        if let Some(contains) = &query.contains {
            texts.push(contains.clone());
            sql.push_str(&match self.dialect {
                Dialect::Sqlite => " AND instr(t.name, $2) > 0".to_owned(),
                Dialect::Postgres => " AND strpos(t.name, $2) > 0".to_owned(),
            });
        }
        let (marker, forward) = match (&query.after, &query.before) {
            (Some(after), _) => (Some(after), true),
            (None, Some(before)) => (Some(before), false),
            (None, None) => (None, true),
        };
        // Walking forward in an ascending listing (or backward in a descending one) goes up.
        let upward = forward != query.descending;
        let name_slot = texts.len() + 2;
        if let Some(marker) = marker {
            texts.push(marker.name.clone());
            let op = if upward { ">" } else { "<" };
            match query.order {
                TagOrder::Name => sql.push_str(&format!(" AND t.name {op} ${name_slot}")),
                TagOrder::Published => {
                    times.push(marker.published_at.0);
                    let time_slot = name_slot + 1;
                    sql.push_str(&format!(
                        " AND (t.updated_at, t.name) {op} (${time_slot}, ${name_slot})"
                    ));
                }
            }
        }
        let direction = if upward { "ASC" } else { "DESC" };
        sql.push_str(&match query.order {
            TagOrder::Name => format!(" ORDER BY t.name {direction}"),
            TagOrder::Published => {
                format!(" ORDER BY t.updated_at {direction}, t.name {direction}")
            }
        });
        sql.push_str(&format!(" LIMIT {}", query.limit));
        let mut statement = sqlx::query(&sql).bind(repository_id);
        for text in texts {
            statement = statement.bind(text);
        }
        for time in times {
            statement = statement.bind(time);
        }
        let rows = statement.fetch_all(&mut *conn).await.map_err(db_error)?;
        let mut details = rows
            .iter()
            .map(|row| {
                let name: String = get(row, "name")?;
                Ok(TagDetail {
                    name: Tag::parse(&name).map_err(|_| corrupt("tag", &name))?,
                    digest: digest_column(row, "manifest_digest")?,
                    media_type: get(row, "media_type")?,
                    manifest_size: u64::try_from(get::<i64>(row, "size")?).unwrap_or(0),
                    size: u64::try_from(get::<i64>(row, "total")?).unwrap_or(0),
                    created_at: Timestamp(get(row, "created_at")?),
                    published_at: Timestamp(get(row, "updated_at")?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if !forward {
            // Fetched nearest-first going backwards; the page reads in the listing's order.
            details.reverse();
        }
        Ok(details)
    }

    async fn referrers_on(
        &self,
        pool: Pool<Any>,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let filter = if artifact_type.is_some() {
            "AND m.artifact_type = $3"
        } else {
            ""
        };
        let sql = format!(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations \
             FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.subject = $2 {filter} ORDER BY m.digest"
        );
        let mut query = sqlx::query_as::<_, ReferrerRow>(&sql)
            .bind(repository.as_str())
            .bind(subject.as_str());
        if let Some(artifact_type) = artifact_type {
            query = query.bind(artifact_type);
        }
        let rows = query.fetch_all(&pool).await.map_err(db_error)?;
        rows.into_iter().map(ReferrerRow::into_referrer).collect()
    }
}
