//! Parsing of `/v2/` request paths.
//!
//! Repository names contain slashes, so routes cannot be told apart by a fixed pattern; the
//! route is read from the path's last segments instead, and everything before them is the name.

use registry_core::{Error, RepositoryName};

/// What a `/v2/` path addresses. Names are validated; references, digests and upload ids are
/// left as text for the handler to parse, so each gets its own error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags {
        /// The repository.
        name: RepositoryName,
    },
    /// `/v2/<name>/manifests/<reference>`.
    Manifest {
        /// The repository.
        name: RepositoryName,
        /// A tag or digest.
        reference: String,
    },
    /// `/v2/<name>/blobs/<digest>`.
    Blob {
        /// The repository.
        name: RepositoryName,
        /// The blob's digest.
        digest: String,
    },
    /// `/v2/<name>/blobs/uploads/`.
    UploadStart {
        /// The repository.
        name: RepositoryName,
    },
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload {
        /// The repository.
        name: RepositoryName,
        /// The session id.
        id: String,
    },
    /// `/v2/<name>/referrers/<digest>`.
    Referrers {
        /// The repository.
        name: RepositoryName,
        /// The subject's digest.
        digest: String,
    },
}

/// Parses the part of a path after `/v2/`. `None` when the path is no OCI route at all;
/// [`Error::NameInvalid`] when it is one but its repository name breaks the grammar.
pub fn parse_v2_path(path: &str) -> Option<Result<Route, Error>> {
    match path {
        "" => return Some(Ok(Route::Base)),
        "_catalog" => return Some(Ok(Route::Catalog)),
        _ => {}
    }
    let segments: Vec<&str> = path.split('/').collect();
    let (kind, name_len) = match segments.as_slice() {
        [.., "tags", "list"] => (Kind::Tags, segments.len() - 2),
        [.., "blobs", "uploads"] | [.., "blobs", "uploads", ""] => {
            let len = segments.len() - if path.ends_with('/') { 3 } else { 2 };
            (Kind::UploadStart, len)
        }
        [.., "blobs", "uploads", id] => (Kind::Upload(id), segments.len() - 3),
        [.., "manifests", reference] => (Kind::Manifest(reference), segments.len() - 2),
        [.., "blobs", digest] => (Kind::Blob(digest), segments.len() - 2),
        [.., "referrers", digest] => (Kind::Referrers(digest), segments.len() - 2),
        _ => return None,
    };
    if name_len == 0 {
        return None;
    }
    let name_text = segments[..name_len].join("/");
    let name = match RepositoryName::parse(&name_text) {
        Ok(name) => name,
        Err(source) => {
            return Some(Err(Error::NameInvalid {
                value: name_text,
                source,
            }));
        }
    };
    Some(Ok(match kind {
        Kind::Tags => Route::Tags { name },
        Kind::UploadStart => Route::UploadStart { name },
        Kind::Upload(id) => Route::Upload {
            name,
            id: id.to_owned(),
        },
        Kind::Manifest(reference) => Route::Manifest {
            name,
            reference: reference.to_owned(),
        },
        Kind::Blob(digest) => Route::Blob {
            name,
            digest: digest.to_owned(),
        },
        Kind::Referrers(digest) => Route::Referrers {
            name,
            digest: digest.to_owned(),
        },
    }))
}

enum Kind<'a> {
    Tags,
    UploadStart,
    Upload(&'a str),
    Manifest(&'a str),
    Blob(&'a str),
    Referrers(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> RepositoryName {
        RepositoryName::parse(s).unwrap()
    }

    #[test]
    fn routes() {
        let ok = |p: &str| parse_v2_path(p).unwrap().unwrap();
        assert_eq!(ok(""), Route::Base);
        assert_eq!(ok("_catalog"), Route::Catalog);
        assert_eq!(ok("a/b/tags/list"), Route::Tags { name: name("a/b") });
        assert_eq!(
            ok("library/alpine/manifests/3.20"),
            Route::Manifest {
                name: name("library/alpine"),
                reference: "3.20".into()
            }
        );
        assert_eq!(
            ok("x/blobs/uploads/"),
            Route::UploadStart { name: name("x") }
        );
        assert_eq!(
            ok("x/blobs/uploads"),
            Route::UploadStart { name: name("x") }
        );
        assert_eq!(
            ok("x/blobs/uploads/abc"),
            Route::Upload {
                name: name("x"),
                id: "abc".into()
            }
        );
        assert_eq!(
            ok("x/blobs/sha256:00"),
            Route::Blob {
                name: name("x"),
                digest: "sha256:00".into()
            }
        );
        assert_eq!(
            ok("x/referrers/sha256:00"),
            Route::Referrers {
                name: name("x"),
                digest: "sha256:00".into()
            }
        );
        // Route words are valid name components too.
        assert_eq!(
            ok("blobs/manifests/manifests/latest"),
            Route::Manifest {
                name: name("blobs/manifests"),
                reference: "latest".into()
            }
        );
        assert!(
            parse_v2_path("manifests/latest").is_none(),
            "a route needs a name"
        );
        assert!(parse_v2_path("x/unknown/thing").is_none());
        assert!(matches!(
            parse_v2_path("Bad/manifests/latest"),
            Some(Err(Error::NameInvalid { .. }))
        ));
    }

    proptest! {
        #[test]
        fn every_route_parses_back(
            name in "[a-z0-9]{1,6}((\\.|_|__|-{1,2})[a-z0-9]{1,6}){0,2}(/[a-z0-9]{1,6}){0,4}",
            tail in "[A-Za-z0-9_.:-]{1,20}",
        ) {
            let repo = RepositoryName::parse(&name).unwrap();
            let parse = |p: String| parse_v2_path(&p).unwrap().unwrap();
            prop_assert_eq!(parse(format!("{name}/tags/list")), Route::Tags { name: repo.clone() });
            prop_assert_eq!(parse(format!("{name}/manifests/{tail}")), Route::Manifest { name: repo.clone(), reference: tail.clone() });
            prop_assert_eq!(parse(format!("{name}/referrers/{tail}")), Route::Referrers { name: repo.clone(), digest: tail.clone() });
            prop_assert_eq!(parse(format!("{name}/blobs/uploads/")), Route::UploadStart { name: repo.clone() });
            if tail != "uploads" {
                prop_assert_eq!(parse(format!("{name}/blobs/{tail}")), Route::Blob { name: repo.clone(), digest: tail.clone() });
                prop_assert_eq!(parse(format!("{name}/blobs/uploads/{tail}")), Route::Upload { name: repo, id: tail });
            }
        }

        #[test]
        fn never_panics(path in "[a-zA-Z0-9/._:-]{0,60}") {
            let _ = parse_v2_path(&path);
        }
    }
}
