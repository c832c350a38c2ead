-- A repository's revision changes with every change to one of its packages (a package row is
-- inserted, updated — every change to a package's versions, files or tags touches it — or
-- deleted), so index-like pages (the PyPI project index, npm search) are cached by it and stay
-- exact on every instance.
ALTER TABLE package_repositories ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER packages_inserted AFTER INSERT ON packages BEGIN
    UPDATE package_repositories SET revision = revision + 1 WHERE id = NEW.repository_id;
END;

CREATE TRIGGER packages_updated AFTER UPDATE ON packages BEGIN
    UPDATE package_repositories SET revision = revision + 1 WHERE id = NEW.repository_id;
END;

CREATE TRIGGER packages_deleted AFTER DELETE ON packages BEGIN
    UPDATE package_repositories SET revision = revision + 1 WHERE id = OLD.repository_id;
END;
