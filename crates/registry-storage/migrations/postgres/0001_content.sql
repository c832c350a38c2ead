-- Repositories, blobs, manifests, tags, upload sessions and the GC review queue.
-- Timestamps are milliseconds since the Unix epoch.

CREATE TABLE repositories (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL
);

CREATE TABLE blobs (
    digest     TEXT COLLATE "C" PRIMARY KEY,
    size       BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE TABLE repository_blobs (
    repository_id BIGINT  NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT    NOT NULL REFERENCES blobs (digest),
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    repository_id BIGINT  NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT COLLATE "C" NOT NULL,
    media_type    TEXT    NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT    NOT NULL,
    size          BIGINT  NOT NULL,
    payload       BYTEA   NOT NULL,
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_subject ON manifests (repository_id, subject) WHERE subject IS NOT NULL;

CREATE TABLE manifest_blobs (
    repository_id   BIGINT  NOT NULL,
    manifest_digest TEXT    NOT NULL,
    blob_digest     TEXT    NOT NULL REFERENCES blobs (digest),
    PRIMARY KEY (repository_id, manifest_digest, blob_digest),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_blobs_blob ON manifest_blobs (blob_digest);

CREATE TABLE manifest_children (
    repository_id BIGINT  NOT NULL,
    parent_digest TEXT    NOT NULL,
    child_digest  TEXT    NOT NULL,
    PRIMARY KEY (repository_id, parent_digest, child_digest),
    FOREIGN KEY (repository_id, parent_digest) REFERENCES manifests (repository_id, digest) ON DELETE CASCADE,
    FOREIGN KEY (repository_id, child_digest) REFERENCES manifests (repository_id, digest)
);
CREATE INDEX manifest_children_child ON manifest_children (repository_id, child_digest);

CREATE TABLE tags (
    repository_id   BIGINT  NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    manifest_digest TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_manifest ON tags (repository_id, manifest_digest);

CREATE TABLE uploads (
    id         TEXT    PRIMARY KEY,
    repository TEXT    NOT NULL,
    started_at BIGINT  NOT NULL
);
CREATE INDEX uploads_started ON uploads (started_at);

-- One entry per target: kind is 'blob' (repository '') or 'manifest'.
CREATE TABLE review_queue (
    kind       TEXT    NOT NULL,
    repository TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    event      TEXT    NOT NULL,
    due_at     BIGINT  NOT NULL,
    attempts   BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, repository, digest)
);
CREATE INDEX review_queue_due ON review_queue (due_at);
