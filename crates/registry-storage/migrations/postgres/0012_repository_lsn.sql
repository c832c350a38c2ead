-- Database load balancing: for each repository, the primary's WAL position after its last
-- write; replicas answer reads of it only once they have replayed that far. Written and read on
-- the primary only (SQLite has no replicas; the table stays empty there).

CREATE TABLE repository_lsn (
    repository TEXT PRIMARY KEY,
    lsn BIGINT NOT NULL
);
