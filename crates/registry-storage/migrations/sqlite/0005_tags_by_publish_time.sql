-- Tag listings sorted by publish time (the detailed tags API's sort=published) read a page
-- from this index instead of sorting every tag of the repository.
CREATE INDEX tags_published ON tags (repository_id, updated_at, name);
