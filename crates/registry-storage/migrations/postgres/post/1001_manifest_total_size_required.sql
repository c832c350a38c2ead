-- Post-deployment (run once no instance of an older version is left): fills in the sizes the
-- background migration `manifest_total_size` has not reached (rows older instances wrote
-- after it passed), marks it finished, and makes the size required. One transaction: if any
-- step fails, nothing of it is applied.

UPDATE manifests AS m SET total_size = m.size + CAST(COALESCE((SELECT SUM(b.size) FROM manifest_blobs mb
    JOIN blobs b ON b.digest = mb.blob_digest
    WHERE mb.repository_id = m.repository_id AND mb.manifest_digest = m.digest), 0) AS BIGINT)
WHERE m.total_size IS NULL;
UPDATE background_migrations SET status = 'finished', error = NULL WHERE name = 'manifest_total_size';
ALTER TABLE manifests ALTER COLUMN total_size SET NOT NULL;
