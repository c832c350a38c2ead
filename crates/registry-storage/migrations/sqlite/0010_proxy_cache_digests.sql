-- The digests computed while a proxied file was stored (JSON, as package files keep theirs),
-- which clients ask for beside the file (Maven's `.sha1` and `.md5`).

ALTER TABLE proxy_cache ADD COLUMN digests TEXT NOT NULL DEFAULT '{}';
