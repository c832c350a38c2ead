-- Files found by name: a download names the file, not its version (npm tarballs), and a
-- package of a thousand versions was read version by version.

CREATE INDEX package_files_name ON package_files (name);
