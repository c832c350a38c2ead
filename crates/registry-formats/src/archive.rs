//! Reading the archives clients upload, bounded and path-safe: one gzip tar walk for every
//! format that ships tarballs (npm packages, Python sdists; Terraform modules and Helm charts
//! next). A walk stops at the first entry beyond its count, at the first byte beyond its
//! expanded size, and at the first path that is absolute or climbs out (`..`), whatever the
//! caller does with the entries.

use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Component, Path};

use registry_core::{Error, Result};

/// Bounds on a tar walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TarLimits {
    /// The most entries walked.
    pub max_entries: u64,
    /// The most bytes the archive expands to (entry contents and tar framing).
    pub max_expanded: u64,
}

/// Whether `path` stays inside the archive: relative, and only plain names (and `.`).
pub fn is_safe_path(path: &Path) -> bool {
    !path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// The number of plain names in `path` (`package/package.json` is 2).
pub fn depth(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// Walks a gzip tar read from `reader`, handing each entry (its checked path and its contents
/// as a reader) to `visit` until it breaks with a value. `what` names the archive in errors
/// (`the tarball`, `the sdist`).
///
/// Errors ([`Error::PackageInvalid`]): not gzip or not tar, more entries or more expanded
/// bytes than `limits` allow, an unsafe path; and whatever `visit` returns.
pub fn walk_gzip_tar<T>(
    reader: impl Read,
    what: &str,
    limits: TarLimits,
    mut visit: impl FnMut(&Path, &mut dyn Read) -> Result<ControlFlow<T>>,
) -> Result<Option<T>> {
    let invalid = |reason: String| Error::PackageInvalid { reason };
    let too_large = || {
        invalid(format!(
            "{what} expands beyond {} bytes",
            limits.max_expanded
        ))
    };
    let over = std::rc::Rc::new(std::cell::Cell::new(false));
    // A read past the bound (tar framing included) reads as a truncated archive to the tar
    // reader; the flag says it was the bound.
    let corrupt = |e: std::io::Error| {
        if over.get() {
            too_large()
        } else {
            invalid(format!("{what} is not a gzip tar archive: {e}"))
        }
    };
    let expanded = Bounded {
        inner: flate2::read::GzDecoder::new(reader),
        left: limits.max_expanded,
        over: std::rc::Rc::clone(&over),
    };
    let mut archive = tar::Archive::new(expanded);
    let mut contents = 0u64;
    for (count, entry) in archive.entries().map_err(corrupt)?.enumerate() {
        if count as u64 >= limits.max_entries {
            return Err(invalid(format!(
                "{what} has more than {} entries",
                limits.max_entries
            )));
        }
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        if !is_safe_path(&path) {
            return Err(invalid(format!(
                "{what} holds an unsafe path: {}",
                path.display()
            )));
        }
        contents = contents.saturating_add(entry.size());
        if contents > limits.max_expanded {
            return Err(too_large());
        }
        if let ControlFlow::Break(value) = visit(&path, &mut entry)? {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// A reader that ends (with an error) after `left` bytes, and says so in `over`.
struct Bounded<R> {
    inner: R,
    left: u64,
    over: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more tells a stream that ends here from one that goes on.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.over.set(true);
                    Err(std::io::Error::other("the expanded size bound was reached"))
                }
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..want])?;
        self.left -= read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            let raw = path.as_bytes();
            header.as_old_mut().name[..raw.len()].copy_from_slice(raw);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, &builder.into_inner().unwrap()).unwrap();
        gzip.finish().unwrap()
    }

    const ROOMY: TarLimits = TarLimits {
        max_entries: 10,
        max_expanded: 1 << 20,
    };

    #[test]
    fn walks_stop_at_their_bounds_and_at_unsafe_paths() {
        let archive = tgz(&[("a/one", b"1"), ("a/two", b"22")]);
        let mut seen = Vec::new();
        let found = walk_gzip_tar(&archive[..], "the archive", ROOMY, |path, entry| {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            seen.push((path.display().to_string(), text));
            Ok(ControlFlow::<()>::Continue(()))
        })
        .unwrap();
        assert_eq!(found, None);
        assert_eq!(
            seen,
            [("a/one".into(), "1".into()), ("a/two".into(), "22".into())]
        );
        let found = walk_gzip_tar(&archive[..], "the archive", ROOMY, |path, _| {
            Ok(if path.ends_with("two") {
                ControlFlow::Break(depth(path))
            } else {
                ControlFlow::Continue(())
            })
        })
        .unwrap();
        assert_eq!(found, Some(2));

        let few = TarLimits {
            max_entries: 1,
            ..ROOMY
        };
        let error = walk_gzip_tar(&archive[..], "the archive", few, |_, _| {
            Ok(ControlFlow::<()>::Continue(()))
        });
        assert!(
            error
                .unwrap_err()
                .to_string()
                .contains("more than 1 entries")
        );
        let small = TarLimits {
            max_expanded: 2,
            ..ROOMY
        };
        let error = walk_gzip_tar(&archive[..], "the archive", small, |_, _| {
            Ok(ControlFlow::<()>::Continue(()))
        });
        assert!(
            error
                .unwrap_err()
                .to_string()
                .contains("expands beyond 2 bytes")
        );
        for bad in ["../evil", "/etc/passwd", "a/../../b"] {
            let archive = tgz(&[(bad, b"x")]);
            let error = walk_gzip_tar(&archive[..], "the archive", ROOMY, |_, _| {
                Ok(ControlFlow::<()>::Continue(()))
            });
            assert!(
                error.unwrap_err().to_string().contains("unsafe path"),
                "{bad}"
            );
        }
        let error = walk_gzip_tar(&b"not gzip"[..], "the archive", ROOMY, |_, _| {
            Ok(ControlFlow::<()>::Continue(()))
        });
        assert!(
            error
                .unwrap_err()
                .to_string()
                .contains("not a gzip tar archive")
        );
    }
}
