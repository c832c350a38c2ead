-- Package repositories, packages, versions, files and tags. Files reference shared blobs.

CREATE TABLE package_repositories (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    format     TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    settings   TEXT    NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE packages (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository_id BIGINT NOT NULL REFERENCES package_repositories (id),
    name          TEXT COLLATE "C" NOT NULL,
    display_name  TEXT    NOT NULL,
    revision      TEXT    NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (repository_id, name)
);

CREATE TABLE package_versions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    package_id BIGINT NOT NULL REFERENCES packages (id),
    version    TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    metadata   TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (package_id, version)
);

CREATE TABLE package_files (
    version_id     BIGINT NOT NULL REFERENCES package_versions (id),
    name           TEXT COLLATE "C" NOT NULL,
    blob_digest    TEXT COLLATE "C"   NOT NULL REFERENCES blobs (digest),
    size           BIGINT NOT NULL,
    digests        TEXT    NOT NULL,
    sidecar_digest TEXT COLLATE "C"   REFERENCES blobs (digest),
    sidecar_size   BIGINT,
    attributes     TEXT    NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (version_id, name)
);
CREATE INDEX package_files_blob ON package_files (blob_digest);
CREATE INDEX package_files_sidecar ON package_files (sidecar_digest) WHERE sidecar_digest IS NOT NULL;

CREATE TABLE package_tags (
    package_id BIGINT NOT NULL REFERENCES packages (id),
    name       TEXT COLLATE "C" NOT NULL,
    version_id BIGINT NOT NULL REFERENCES package_versions (id),
    PRIMARY KEY (package_id, name)
);
