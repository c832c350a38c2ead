-- Personal access tokens, by the SHA-256 of their secret.

CREATE TABLE tokens (
    id          TEXT    PRIMARY KEY,
    user_name   TEXT    NOT NULL,
    label       TEXT    NOT NULL,
    secret_hash TEXT    NOT NULL UNIQUE,
    grants      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT 
);
CREATE INDEX tokens_user ON tokens (user_name, created_at);
