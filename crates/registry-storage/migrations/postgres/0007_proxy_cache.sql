-- Proxy repositories' cache: upstream paths with the blob each holds, the digest a file was
-- verified against, the upstream's validators, and read statistics. Entries hold their blobs
-- like package files do.

CREATE TABLE proxy_cache (
    repository    TEXT COLLATE "C" NOT NULL,
    path          TEXT COLLATE "C" NOT NULL,
    kind          TEXT    NOT NULL,
    blob_digest   TEXT COLLATE "C" NOT NULL REFERENCES blobs (digest),
    blob_size     BIGINT NOT NULL,
    declared      TEXT,
    etag          TEXT,
    last_modified TEXT,
    checked_at    BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    downloads     BIGINT  NOT NULL,
    last_download BIGINT,
    PRIMARY KEY (repository, path)
);
CREATE INDEX proxy_cache_blob ON proxy_cache (blob_digest);
