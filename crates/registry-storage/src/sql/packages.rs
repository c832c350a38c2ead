//! Package repositories and packages ([`PackageMetadata`]) in the SQL metadata store.
//!
//! A publish locks the package row (`FOR UPDATE` on PostgreSQL; SQLite's write transactions
//! are serialized already) and every blob its files reference (`FOR SHARE`, so a collector's
//! claim waits), then decides with [`check_publish`] and writes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use registry_core::{
    BlobRef, Digest, Error, FileDigests, Package, PackageFile, PackageFormat, PackageMetadata,
    PackageRepository, PackageSummary, PackageUpdate, PackageVersion, Page, Publish, PublishMode,
    PublishOutcome, RepositoryKind, RepositorySettings, Result, ReviewEvent, Timestamp,
    VersionStatus,
};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::{
    Dialect, SqlMetadataStore, blob_review, corrupt, db_error, digest_column, get, hold_blob, json,
    queue, to_i64,
};
use crate::packages::{check_publish, unknown};

const REPOSITORY_COLUMNS: &str = "name, format, kind, settings, created_at";

fn repository_row(row: &AnyRow) -> Result<PackageRepository> {
    let format: String = get(row, "format")?;
    let kind: String = get(row, "kind")?;
    let settings: String = get(row, "settings")?;
    Ok(PackageRepository {
        name: get(row, "name")?,
        format: PackageFormat::from_name(&format).ok_or_else(|| corrupt("format", &format))?,
        kind: RepositoryKind::from_name(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        settings: serde_json::from_str(&settings).map_err(|_| corrupt("settings", &settings))?,
        created_at: Timestamp(get(row, "created_at")?),
    })
}

fn size(row: &AnyRow, column: &str) -> Result<u64> {
    let value: i64 = get(row, column)?;
    u64::try_from(value).map_err(|_| corrupt(column, &value.to_string()))
}

fn file_row(row: &AnyRow) -> Result<PackageFile> {
    let digests: String = get(row, "digests")?;
    let attributes: String = get(row, "attributes")?;
    let sidecar: Option<String> = get(row, "sidecar_digest")?;
    let sidecar = match sidecar {
        None => None,
        Some(digest) => Some(BlobRef {
            digest: Digest::parse(&digest).map_err(|_| corrupt("sidecar_digest", &digest))?,
            size: get::<Option<i64>>(row, "sidecar_size")?
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
        }),
    };
    Ok(PackageFile {
        name: get(row, "name")?,
        blob: BlobRef {
            digest: digest_column(row, "blob_digest")?,
            size: size(row, "size")?,
        },
        digests: serde_json::from_str::<FileDigests>(&digests)
            .map_err(|_| corrupt("digests", &digests))?,
        sidecar,
        attributes: serde_json::from_str(&attributes)
            .map_err(|_| corrupt("attributes", &attributes))?,
        created_at: Timestamp(get(row, "created_at")?),
    })
}

/// The id of a repository's package, if any, its row locked for the rest of the transaction:
/// every mutation of a package takes this lock first (a publish too), so two of them never take
/// the rows below it in opposite orders.
async fn package_id(
    conn: &mut AnyConnection,
    store: &SqlMetadataStore,
    repository: &str,
    name: &str,
) -> Result<Option<i64>> {
    let row = sqlx::query(&format!(
        "SELECT p.id FROM packages p JOIN package_repositories r ON r.id = p.repository_id \
         WHERE r.name = $1 AND p.name = $2 {}",
        store.lock("FOR UPDATE OF p")
    ))
    .bind(repository)
    .bind(name)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?;
    row.map(|row| get(&row, "id")).transpose()
}

async fn version_id(
    conn: &mut AnyConnection,
    package_id: i64,
    version: &str,
) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT id FROM package_versions WHERE package_id = $1 AND version = $2")
        .bind(package_id)
        .bind(version)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?;
    row.map(|row| get(&row, "id")).transpose()
}

/// The ids of a package (its row locked, see [`package_id`]) and of one of its versions.
async fn locate_version(
    conn: &mut AnyConnection,
    store: &SqlMetadataStore,
    repository: &str,
    name: &str,
    version: &str,
) -> Result<Option<(i64, i64)>> {
    let Some(package_id) = package_id(&mut *conn, store, repository, name).await? else {
        return Ok(None);
    };
    Ok(version_id(conn, package_id, version)
        .await?
        .map(|version_id| (package_id, version_id)))
}

/// Deletes file rows matching `filter` (SQL over `f`, binding `$1`, and `$2` when given),
/// queueing their blobs for review.
async fn delete_files(
    conn: &mut AnyConnection,
    filter: &str,
    first: i64,
    second: Option<&str>,
    due: i64,
) -> Result<()> {
    let select =
        format!("SELECT f.blob_digest, f.sidecar_digest FROM package_files f WHERE {filter}");
    let mut query = sqlx::query(&select).bind(first);
    if let Some(second) = second {
        query = query.bind(second);
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(db_error)?;
    let delete = format!("DELETE FROM package_files AS f WHERE {filter}");
    let mut query = sqlx::query(&delete).bind(first);
    if let Some(second) = second {
        query = query.bind(second);
    }
    query.execute(&mut *conn).await.map_err(db_error)?;
    for row in &rows {
        let mut digests = vec![digest_column(row, "blob_digest")?];
        if let Some(sidecar) = get::<Option<String>>(row, "sidecar_digest")? {
            digests.push(Digest::parse(&sidecar).map_err(|_| corrupt("sidecar", &sidecar))?);
        }
        for digest in digests {
            queue(
                &mut *conn,
                &blob_review(digest),
                ReviewEvent::PackageFileDeleted,
                due,
            )
            .await?;
        }
    }
    Ok(())
}

/// Deletes a version row, its tags and (already emptied of files) itself; then the package if
/// it has no version left.
async fn delete_version_row(
    conn: &mut AnyConnection,
    package_id: i64,
    version_id: i64,
) -> Result<()> {
    for sql in [
        "DELETE FROM package_tags WHERE version_id = $1",
        "DELETE FROM package_versions WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(version_id)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    let left = sqlx::query("SELECT 1 FROM package_versions WHERE package_id = $1 LIMIT 1")
        .bind(package_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    if left.is_none() {
        sqlx::query("DELETE FROM packages WHERE id = $1")
            .bind(package_id)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    } else {
        touch(conn, package_id).await?;
    }
    Ok(())
}

/// Points a package's tag at a version.
async fn set_tag(
    conn: &mut AnyConnection,
    package_id: i64,
    tag: &str,
    version_id: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO package_tags (package_id, name, version_id) VALUES ($1, $2, $3) \
         ON CONFLICT (package_id, name) DO UPDATE SET version_id = excluded.version_id",
    )
    .bind(package_id)
    .bind(tag)
    .bind(version_id)
    .execute(conn)
    .await
    .map_err(db_error)
    .map(drop)
}

async fn touch(conn: &mut AnyConnection, package_id: i64) -> Result<()> {
    sqlx::query("UPDATE packages SET updated_at = $2, revision = $3 WHERE id = $1")
        .bind(package_id)
        .bind(Timestamp::now().0)
        .bind(registry_core::package::new_revision())
        .execute(conn)
        .await
        .map_err(db_error)
        .map(drop)
}

#[async_trait]
impl PackageMetadata for SqlMetadataStore {
    async fn ensure_package_repository(
        &self,
        repository: &PackageRepository,
    ) -> Result<PackageRepository> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO package_repositories (name, format, kind, settings, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(repository.name.as_str())
        .bind(repository.format.as_str())
        .bind(repository.kind.as_str())
        .bind(json(&repository.settings)?)
        .bind(repository.created_at.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let row = sqlx::query(&format!(
            "SELECT {REPOSITORY_COLUMNS} FROM package_repositories WHERE name = $1"
        ))
        .bind(repository.name.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        repository_row(&row)
    }

    async fn package_repository(&self, name: &str) -> Result<Option<PackageRepository>> {
        let row = sqlx::query(&format!(
            "SELECT {REPOSITORY_COLUMNS} FROM package_repositories WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(repository_row).transpose()
    }

    async fn set_package_repository_settings(
        &self,
        name: &str,
        settings: &RepositorySettings,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE package_repositories SET settings = $2 WHERE name = $1")
            .bind(name)
            .bind(json(settings)?)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(unknown(format!("package repository {name}")));
        }
        Ok(())
    }

    async fn list_package_repositories(&self, page: &Page) -> Result<Vec<PackageRepository>> {
        let rows = sqlx::query(&format!(
            "SELECT {REPOSITORY_COLUMNS} FROM package_repositories WHERE name > $1 \
             ORDER BY name LIMIT $2"
        ))
        .bind(page.last.as_deref().unwrap_or(""))
        .bind(to_i64(page.limit as u64)?)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(repository_row).collect()
    }

    async fn record_package_blob(&self, blob: &BlobRef) -> Result<()> {
        let mut tx = self.begin().await?;
        hold_blob(&mut tx, self, &blob.digest, blob.size, Timestamp::now().0).await?;
        queue(
            &mut tx,
            &blob_review(blob.digest.clone()),
            ReviewEvent::BlobUploaded,
            self.due(),
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn publish(&self, publish: &Publish) -> Result<PublishOutcome> {
        let now = Timestamp::now().0;
        let due = self.due();
        let mut tx = self.begin().await?;
        let repository_id: i64 =
            match sqlx::query("SELECT id FROM package_repositories WHERE name = $1")
                .bind(publish.repository.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?
            {
                Some(row) => get(&row, "id")?,
                None => {
                    return Err(unknown(format!(
                        "package repository {}",
                        publish.repository
                    )));
                }
            };
        // A concurrent deletion of the package's last version may remove the row between the
        // insert (which then did nothing) and the lock: insert it again.
        let mut package_id: Option<i64> = None;
        for _ in 0..super::MAX_UPSERT_ATTEMPTS {
            sqlx::query(
                "INSERT INTO packages (repository_id, name, display_name, revision, created_at, updated_at) \
                 VALUES ($1, $2, $3, $5, $4, $4) ON CONFLICT (repository_id, name) DO NOTHING",
            )
            .bind(repository_id)
            .bind(publish.name.as_str())
            .bind(publish.display_name.as_str())
            .bind(now)
            .bind(registry_core::package::new_revision())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            let row = sqlx::query(&format!(
                "SELECT id FROM packages WHERE repository_id = $1 AND name = $2 {}",
                self.lock("FOR UPDATE")
            ))
            .bind(repository_id)
            .bind(publish.name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            if let Some(row) = row {
                package_id = Some(get(&row, "id")?);
                break;
            }
        }
        let package_id = package_id.ok_or_else(|| {
            Error::backend(format!(
                "package {} kept vanishing while published",
                publish.name
            ))
        })?;
        // The package row first, then the blobs: the same order as every other package
        // mutation, and a collector claiming one of these blobs waits behind this publish.
        let hold = format!(
            "SELECT 1 FROM blobs WHERE digest = $1 {}",
            self.lock("FOR SHARE")
        );
        let blobs: Vec<Digest> = publish
            .files
            .iter()
            .flat_map(|f| [Some(&f.blob), f.sidecar.as_ref()])
            .flatten()
            .map(|b| b.digest.clone())
            .collect();
        for digest in &blobs {
            let held = sqlx::query(&hold)
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            if held.is_none() {
                return Err(Error::BlobUnknown {
                    digest: digest.clone(),
                });
            }
        }
        let existing_version = version_id(&mut tx, package_id, &publish.version).await?;
        let existing_files: Option<Vec<String>> = match existing_version {
            None => None,
            Some(id) => Some(
                sqlx::query("SELECT name FROM package_files WHERE version_id = $1")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_error)?
                    .iter()
                    .map(|row| get(row, "name"))
                    .collect::<Result<_>>()?,
            ),
        };
        let plan = check_publish(existing_files.as_deref(), publish)?;
        let version_id: i64 = match existing_version {
            Some(id) => {
                // Attached files keep the version's document.
                let metadata = (publish.mode != PublishMode::AttachFiles)
                    .then_some(publish.metadata.as_str());
                sqlx::query(
                    "UPDATE package_versions SET metadata = COALESCE($2, metadata), updated_at = $3 \
                     WHERE id = $1",
                )
                    .bind(id)
                    .bind(metadata)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                id
            }
            None => get(
                &sqlx::query(
                    "INSERT INTO package_versions (package_id, version, status, metadata, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
                )
                .bind(package_id)
                .bind(publish.version.as_str())
                .bind(json(&VersionStatus::Default)?)
                .bind(publish.metadata.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?,
                "id",
            )?,
        };
        match publish.mode {
            PublishMode::NewVersion if !plan.version_created => {
                delete_files(&mut tx, "f.version_id = $1", version_id, None, due).await?;
            }
            _ => {
                for name in &plan.replaced {
                    delete_files(
                        &mut tx,
                        "f.version_id = $1 AND f.name = $2",
                        version_id,
                        Some(name),
                        due,
                    )
                    .await?;
                }
            }
        }
        for file in &publish.files {
            sqlx::query(
                "INSERT INTO package_files (version_id, name, blob_digest, size, digests, \
                 sidecar_digest, sidecar_size, attributes, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(version_id)
            .bind(file.name.as_str())
            .bind(file.blob.digest.as_str())
            .bind(to_i64(file.blob.size)?)
            .bind(json(&file.digests)?)
            .bind(file.sidecar.as_ref().map(|s| s.digest.to_string()))
            .bind(file.sidecar.as_ref().map(|s| to_i64(s.size)).transpose()?)
            .bind(json(&file.attributes)?)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        for tag in &publish.tags {
            sqlx::query(
                "INSERT INTO package_tags (package_id, name, version_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (package_id, name) DO UPDATE SET version_id = excluded.version_id",
            )
            .bind(package_id)
            .bind(tag.as_str())
            .bind(version_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        touch(&mut tx, package_id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(PublishOutcome {
            version_created: plan.version_created,
            replaced: plan.replaced,
        })
    }

    async fn package(&self, repository: &str, name: &str) -> Result<Option<Package>> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let Some(row) = sqlx::query(
            "SELECT p.id, p.name, p.display_name, p.revision, p.created_at, p.updated_at FROM packages p \
             JOIN package_repositories r ON r.id = p.repository_id WHERE r.name = $1 AND p.name = $2",
        )
        .bind(repository)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?
        else {
            return Ok(None);
        };
        let package_id: i64 = get(&row, "id")?;
        let version_rows = sqlx::query(
            "SELECT id, version, status, metadata, created_at, updated_at FROM package_versions \
             WHERE package_id = $1 ORDER BY created_at, id",
        )
        .bind(package_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        let file_rows = sqlx::query(
            "SELECT f.version_id, f.name, f.blob_digest, f.size, f.digests, f.sidecar_digest, \
             f.sidecar_size, f.attributes, f.created_at FROM package_files f \
             JOIN package_versions v ON v.id = f.version_id WHERE v.package_id = $1 \
             ORDER BY f.created_at, f.name",
        )
        .bind(package_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        let mut files: BTreeMap<i64, Vec<PackageFile>> = BTreeMap::new();
        for row in &file_rows {
            files
                .entry(get(row, "version_id")?)
                .or_default()
                .push(file_row(row)?);
        }
        let mut ids = BTreeMap::new();
        let mut versions = Vec::with_capacity(version_rows.len());
        for row in &version_rows {
            let id: i64 = get(row, "id")?;
            let status: String = get(row, "status")?;
            let version: String = get(row, "version")?;
            ids.insert(id, version.clone());
            versions.push(PackageVersion {
                version,
                status: serde_json::from_str(&status).map_err(|_| corrupt("status", &status))?,
                metadata: get(row, "metadata")?,
                // A version always has a file (it goes with its last one); none reads as none.
                files: files.remove(&id).unwrap_or_default(),
                created_at: Timestamp(get(row, "created_at")?),
                updated_at: Timestamp(get(row, "updated_at")?),
            });
        }
        let tag_rows =
            sqlx::query("SELECT name, version_id FROM package_tags WHERE package_id = $1")
                .bind(package_id)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_error)?;
        let mut tags = BTreeMap::new();
        for tag in &tag_rows {
            let version_id: i64 = get(tag, "version_id")?;
            if let Some(version) = ids.get(&version_id) {
                tags.insert(get(tag, "name")?, version.clone());
            }
        }
        Ok(Some(Package {
            name: get(&row, "name")?,
            display_name: get(&row, "display_name")?,
            versions,
            tags,
            created_at: Timestamp(get(&row, "created_at")?),
            updated_at: Timestamp(get(&row, "updated_at")?),
            revision: get(&row, "revision")?,
        }))
    }

    async fn package_file(
        &self,
        repository: &str,
        name: &str,
        version: Option<&str>,
        file: &str,
    ) -> Result<Option<(String, PackageFile)>> {
        let row = sqlx::query(
            "SELECT v.version, f.name, f.blob_digest, f.size, f.digests, f.sidecar_digest, \
             f.sidecar_size, f.attributes, f.created_at FROM package_files f \
             JOIN package_versions v ON v.id = f.version_id \
             JOIN packages p ON p.id = v.package_id \
             JOIN package_repositories r ON r.id = p.repository_id \
             WHERE r.name = $1 AND p.name = $2 AND f.name = $3 AND ($4 IS NULL OR v.version = $4) \
             ORDER BY v.created_at LIMIT 1",
        )
        .bind(repository)
        .bind(name)
        .bind(file)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|row| Ok((get(&row, "version")?, file_row(&row)?)))
            .transpose()
    }

    async fn repository_revision(&self, repository: &str) -> Result<Option<u64>> {
        let row = sqlx::query("SELECT revision FROM package_repositories WHERE name = $1")
            .bind(repository)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.map(|row| get::<i64>(&row, "revision").map(|r| r as u64))
            .transpose()
    }

    async fn package_revision(&self, repository: &str, name: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT p.revision FROM packages p JOIN package_repositories r ON r.id = p.repository_id \
             WHERE r.name = $1 AND p.name = $2",
        )
        .bind(repository)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|row| get(&row, "revision")).transpose()
    }

    async fn list_packages(
        &self,
        repository: &str,
        contains: Option<&str>,
        page: &Page,
    ) -> Result<Vec<PackageSummary>> {
        let filter = match (contains, self.dialect) {
            (None, _) => "",
            (Some(_), Dialect::Sqlite) => "AND instr(p.name, $4) > 0",
            (Some(_), Dialect::Postgres) => "AND strpos(p.name, $4) > 0",
        };
        let sql = format!(
            "SELECT p.name, p.display_name, p.updated_at, \
             (SELECT COUNT(*) FROM package_versions v WHERE v.package_id = p.id) AS versions \
             FROM packages p JOIN package_repositories r ON r.id = p.repository_id \
             WHERE r.name = $1 AND p.name > $2 {filter} ORDER BY p.name LIMIT $3"
        );
        let mut query = sqlx::query(&sql)
            .bind(repository)
            .bind(page.last.as_deref().unwrap_or(""))
            .bind(to_i64(page.limit as u64)?);
        if let Some(contains) = contains {
            query = query.bind(contains);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(PackageSummary {
                    name: get(row, "name")?,
                    display_name: get(row, "display_name")?,
                    versions: size(row, "versions")?,
                    updated_at: Timestamp(get(row, "updated_at")?),
                })
            })
            .collect()
    }

    async fn list_package_names(&self, repository: &str, page: &Page) -> Result<Vec<String>> {
        let row = sqlx::query(&super::page_query(
            "packages",
            "repository_id = (SELECT id FROM package_repositories WHERE name = $3)",
        ))
        .bind(page.last.as_deref().unwrap_or(""))
        .bind(to_i64(page.limit as u64)?)
        .bind(repository)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        super::split_page(&row, |name| Ok(name.to_owned()))
    }

    async fn set_version_status(
        &self,
        repository: &str,
        name: &str,
        version: &str,
        status: &VersionStatus,
        metadata: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let missing = || unknown(format!("version {version} of {name}"));
        let package_id = package_id(&mut tx, self, repository, name)
            .await?
            .ok_or_else(missing)?;
        let done = sqlx::query(
            "UPDATE package_versions SET status = $3, metadata = COALESCE($4, metadata), \
             updated_at = $5 WHERE package_id = $1 AND version = $2",
        )
        .bind(package_id)
        .bind(version)
        .bind(json(status)?)
        .bind(metadata)
        .bind(Timestamp::now().0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(missing());
        }
        touch(&mut tx, package_id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_version(&self, repository: &str, name: &str, version: &str) -> Result<()> {
        let due = self.due();
        let mut tx = self.begin().await?;
        let missing = || unknown(format!("version {version} of {name}"));
        let (package_id, version_id) = locate_version(&mut tx, self, repository, name, version)
            .await?
            .ok_or_else(missing)?;
        delete_files(&mut tx, "f.version_id = $1", version_id, None, due).await?;
        delete_version_row(&mut tx, package_id, version_id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_package_file(
        &self,
        repository: &str,
        name: &str,
        version: &str,
        file: &str,
    ) -> Result<()> {
        let due = self.due();
        let mut tx = self.begin().await?;
        let missing = || unknown(format!("file {file} of {name} {version}"));
        let (package_id, version_id) = locate_version(&mut tx, self, repository, name, version)
            .await?
            .ok_or_else(missing)?;
        let found = sqlx::query("SELECT 1 FROM package_files WHERE version_id = $1 AND name = $2")
            .bind(version_id)
            .bind(file)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if found.is_none() {
            return Err(missing());
        }
        delete_files(
            &mut tx,
            "f.version_id = $1 AND f.name = $2",
            version_id,
            Some(file),
            due,
        )
        .await?;
        let left = sqlx::query("SELECT 1 FROM package_files WHERE version_id = $1 LIMIT 1")
            .bind(version_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if left.is_none() {
            delete_version_row(&mut tx, package_id, version_id).await?;
        } else {
            touch(&mut tx, package_id).await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn delete_package(&self, repository: &str, name: &str) -> Result<bool> {
        let due = self.due();
        let mut tx = self.begin().await?;
        let Some(package_id) = package_id(&mut tx, self, repository, name).await? else {
            return Ok(false);
        };
        delete_files(
            &mut tx,
            "f.version_id IN (SELECT id FROM package_versions WHERE package_id = $1)",
            package_id,
            None,
            due,
        )
        .await?;
        for sql in [
            "DELETE FROM package_tags WHERE package_id = $1",
            "DELETE FROM package_versions WHERE package_id = $1",
            "DELETE FROM packages WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(package_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn update_package(&self, update: &PackageUpdate) -> Result<()> {
        let due = self.due();
        let name = &update.name;
        let mut tx = self.begin().await?;
        let package_id = package_id(&mut tx, self, &update.repository, name)
            .await?
            .ok_or_else(|| unknown(format!("package {name}")))?;
        if let Some(expected) = &update.expected_revision {
            let row = sqlx::query("SELECT revision FROM packages WHERE id = $1")
                .bind(package_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
            if get::<String>(&row, "revision")? != *expected {
                return Err(Error::PackageConflict {
                    reason: format!("{name} changed since revision {expected}; fetch it again"),
                });
            }
        }
        touch(&mut tx, package_id).await?;
        for (version, status) in &update.statuses {
            let done = sqlx::query(
                "UPDATE package_versions SET status = $3, updated_at = $4 \
                 WHERE package_id = $1 AND version = $2",
            )
            .bind(package_id)
            .bind(version)
            .bind(json(status)?)
            .bind(Timestamp::now().0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            if done.rows_affected() == 0 {
                return Err(unknown(format!("version {version} of {name}")));
            }
        }
        for tag in &update.delete_tags {
            sqlx::query("DELETE FROM package_tags WHERE package_id = $1 AND name = $2")
                .bind(package_id)
                .bind(tag)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        for (tag, version) in &update.set_tags {
            let version_id = version_id(&mut tx, package_id, version)
                .await?
                .ok_or_else(|| unknown(format!("version {version} of {name}")))?;
            set_tag(&mut tx, package_id, tag, version_id).await?;
        }
        for version in &update.delete_versions {
            let version_id = version_id(&mut tx, package_id, version)
                .await?
                .ok_or_else(|| unknown(format!("version {version} of {name}")))?;
            delete_files(&mut tx, "f.version_id = $1", version_id, None, due).await?;
            delete_version_row(&mut tx, package_id, version_id).await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn set_package_tag(
        &self,
        repository: &str,
        name: &str,
        tag: &str,
        version: &str,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let missing = || unknown(format!("version {version} of {name}"));
        let (package_id, version_id) = locate_version(&mut tx, self, repository, name, version)
            .await?
            .ok_or_else(missing)?;
        set_tag(&mut tx, package_id, tag, version_id).await?;
        touch(&mut tx, package_id).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_package_tag(&self, repository: &str, name: &str, tag: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let Some(package_id) = package_id(&mut tx, self, repository, name).await? else {
            return Ok(false);
        };
        let done = sqlx::query("DELETE FROM package_tags WHERE package_id = $1 AND name = $2")
            .bind(package_id)
            .bind(tag)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() > 0 {
            touch(&mut tx, package_id).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn blob_in_packages(&self, digest: &Digest) -> Result<bool> {
        let row = sqlx::query(&format!("{} LIMIT 1", super::HELD_BEYOND_MANIFESTS))
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }
}
