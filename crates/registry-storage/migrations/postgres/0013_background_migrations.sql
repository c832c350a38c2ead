-- Batched background migrations: long data changes that run inside the servers, a batch at a
-- time, each batch in one transaction with its cursor, so a crash resumes where it stopped.
-- `status`: active, paused, finished or failed (with `error`).

CREATE TABLE background_migrations (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    cursor TEXT,
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT,
    error TEXT,
    updated_at BIGINT NOT NULL
);

-- Each manifest's size with the blobs it references, for tag listings (it was computed per
-- row, per listing). New manifests get it when stored; the background migration
-- `manifest_total_size` fills it in for the others; the post-deployment migration 1001
-- finishes what remains and makes it required.
ALTER TABLE manifests ADD COLUMN total_size BIGINT;
INSERT INTO background_migrations (name, status, updated_at) VALUES ('manifest_total_size', 'active', 0);
