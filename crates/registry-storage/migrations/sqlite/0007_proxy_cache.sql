-- Proxy repositories' cache: upstream paths with the blob each holds, the digest a file was
-- verified against, the upstream's validators, and read statistics. Entries hold their blobs
-- like package files do.

CREATE TABLE proxy_cache (
    repository    TEXT NOT NULL,
    path          TEXT NOT NULL,
    kind          TEXT    NOT NULL,
    blob_digest   TEXT NOT NULL REFERENCES blobs (digest),
    blob_size     INTEGER NOT NULL,
    declared      TEXT,
    etag          TEXT,
    last_modified TEXT,
    checked_at    INTEGER  NOT NULL,
    created_at    INTEGER  NOT NULL,
    downloads     INTEGER  NOT NULL,
    last_download INTEGER,
    PRIMARY KEY (repository, path)
);
CREATE INDEX proxy_cache_blob ON proxy_cache (blob_digest);
