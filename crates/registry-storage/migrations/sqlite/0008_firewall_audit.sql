-- The dependency firewall's audit log: every decision that blocked or warned.

CREATE TABLE firewall_audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    repository TEXT NOT NULL,
    package    TEXT NOT NULL,
    version    TEXT NOT NULL,
    action     TEXT NOT NULL,
    rule       TEXT NOT NULL,
    mode       TEXT NOT NULL,
    reason     TEXT NOT NULL
);
CREATE INDEX firewall_audit_repository ON firewall_audit (repository, id);
CREATE INDEX firewall_audit_at ON firewall_audit (at);
