-- Proxy repositories' cache: upstream paths with the blob each holds (none for a remembered
-- 404), the upstream's validators, and download statistics. Entries hold their blobs like
-- package files do.

CREATE TABLE proxy_cache (
    repository    TEXT NOT NULL,
    path          TEXT NOT NULL,
    kind          TEXT    NOT NULL,
    blob_digest   TEXT REFERENCES blobs (digest),
    blob_size     INTEGER,
    etag          TEXT,
    last_modified TEXT,
    checked_at    INTEGER  NOT NULL,
    created_at    INTEGER  NOT NULL,
    downloads     INTEGER  NOT NULL,
    last_download INTEGER,
    PRIMARY KEY (repository, path)
);
CREATE INDEX proxy_cache_blob ON proxy_cache (blob_digest);
