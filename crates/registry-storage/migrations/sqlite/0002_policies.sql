-- Tag rules and cleanup policies as JSON documents, by kind and name.

CREATE TABLE policies (
    kind       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    document   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);
