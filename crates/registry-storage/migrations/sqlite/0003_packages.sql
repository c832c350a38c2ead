-- Package repositories, packages, versions, files and tags. Files reference shared blobs.

CREATE TABLE package_repositories (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    format     TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    settings   TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE packages (
    id            INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES package_repositories (id),
    name          TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    revision      TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (repository_id, name)
);

CREATE TABLE package_versions (
    id         INTEGER PRIMARY KEY,
    package_id INTEGER NOT NULL REFERENCES packages (id),
    version    TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    metadata   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (package_id, version)
);

CREATE TABLE package_files (
    version_id     INTEGER NOT NULL REFERENCES package_versions (id),
    name           TEXT    NOT NULL,
    blob_digest    TEXT    NOT NULL REFERENCES blobs (digest),
    size           INTEGER NOT NULL,
    digests        TEXT    NOT NULL,
    sidecar_digest TEXT    REFERENCES blobs (digest),
    sidecar_size   INTEGER,
    attributes     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (version_id, name)
);
CREATE INDEX package_files_blob ON package_files (blob_digest);
CREATE INDEX package_files_sidecar ON package_files (sidecar_digest) WHERE sidecar_digest IS NOT NULL;

CREATE TABLE package_tags (
    package_id INTEGER NOT NULL REFERENCES packages (id),
    name       TEXT    NOT NULL,
    version_id INTEGER NOT NULL REFERENCES package_versions (id),
    PRIMARY KEY (package_id, name)
);
