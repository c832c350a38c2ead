-- A repository's revision changes with every change to one of its packages (a package row is
-- inserted, updated — every change to a package's versions, files or tags touches it — or
-- deleted), so index-like pages (the PyPI project index, npm search) are cached by it and stay
-- exact on every instance. The update takes the repository row's no-key-update lock, which a
-- package row's foreign-key check (key share) does not wait for.
ALTER TABLE package_repositories ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION package_repository_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE package_repositories SET revision = revision + 1 WHERE id = OLD.repository_id;
    ELSE
        UPDATE package_repositories SET revision = revision + 1 WHERE id = NEW.repository_id;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER packages_changed AFTER INSERT OR UPDATE OR DELETE ON packages
    FOR EACH ROW EXECUTE FUNCTION package_repository_changed();
