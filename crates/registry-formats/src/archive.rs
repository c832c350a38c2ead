//! Reading the archives clients upload, bounded and path-safe: one gzip tar walk for every
//! format that ships tarballs (npm packages, Python sdists; Terraform modules next), and one
//! zip opener for every format that ships zips (wheels; `.nupkg` and jars next). A walk stops
//! at the first entry beyond its count, at the first byte beyond its expanded size, and at the
//! first path that is absolute or climbs out (`..`), whatever the caller does with the entries.
//! A zip's entry count and central directory size are read from its end record and checked
//! before the directory is parsed, every entry name is checked, and entries are read with a
//! size bound.

use std::io::{Read, Seek, SeekFrom};
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

/// Bounds on a zip archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZipLimits {
    /// The most entries the archive may have.
    pub max_entries: u64,
    /// The largest central directory (the index of entries) parsed.
    pub max_directory: u64,
}

impl Default for ZipLimits {
    /// 100,000 entries in at most 32 MiB of central directory.
    fn default() -> Self {
        ZipLimits {
            max_entries: 100_000,
            max_directory: 32 << 20,
        }
    }
}

/// The end-of-central-directory record's signature, and the zip64 locator's and record's.
const EOCD: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;

/// Opens a zip archive after checking, from its end record, that its entry count and central
/// directory are within `limits` (so a hostile index is never parsed), then checks every entry
/// name is a safe relative path. `what` names the archive in errors (`the wheel`).
///
/// Errors ([`Error::PackageInvalid`]): not a zip, over the limits, an unsafe entry name.
pub fn open_zip<R: Read + Seek>(
    mut reader: R,
    what: &str,
    limits: ZipLimits,
) -> Result<zip::ZipArchive<R>> {
    let invalid = |reason: String| Error::PackageInvalid { reason };
    let (entries, directory) = directory_size(&mut reader)
        .map_err(|e| invalid(format!("{what} is not a zip archive: {e}")))?;
    if entries > limits.max_entries {
        return Err(invalid(format!(
            "{what} has {entries} entries; at most {} are accepted",
            limits.max_entries
        )));
    }
    if directory > limits.max_directory {
        return Err(invalid(format!(
            "{what}'s index is {directory} bytes; at most {} are accepted",
            limits.max_directory
        )));
    }
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| invalid(format!("reading {what}: {e}")))?;
    let archive = zip::ZipArchive::new(reader)
        .map_err(|e| invalid(format!("{what} is not a zip archive: {e}")))?;
    if let Some(unsafe_name) = archive
        .file_names()
        .find(|name| name.contains('\\') || !is_safe_path(Path::new(name)))
    {
        return Err(invalid(format!(
            "{what} has an entry outside it: {unsafe_name:?}"
        )));
    }
    Ok(archive)
}

/// Reads one entry of a zip opened by [`open_zip`], refusing more than `max` bytes expanded.
pub fn read_zip_entry<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    what: &str,
    max: u64,
) -> Result<Vec<u8>> {
    let entry = archive.by_name(name).map_err(|_| Error::PackageInvalid {
        reason: format!("{what} has no {name}"),
    })?;
    read_bounded(entry, &format!("{what}'s {name}"), max)
}

/// Reads everything from `reader`, refusing more than `max` bytes.
pub fn read_bounded(reader: impl Read, what: &str, max: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::PackageInvalid {
            reason: format!("reading {what}: {e}"),
        })?;
    if bytes.len() as u64 > max {
        return Err(Error::PackageInvalid {
            reason: format!("{what} is over {max} bytes"),
        });
    }
    Ok(bytes)
}

/// The entry count and central directory size a zip's end record declares (its zip64 record's
/// when the classic one overflows).
fn directory_size(reader: &mut (impl Read + Seek)) -> std::io::Result<(u64, u64)> {
    let bad = |reason: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, reason);
    let length = reader.seek(SeekFrom::End(0))?;
    // The end record is 22 bytes plus a comment of at most 65,535.
    let tail_length = length.min(22 + 65_535);
    let tail_start = length - tail_length;
    reader.seek(SeekFrom::Start(tail_start))?;
    let mut tail = vec![0u8; tail_length as usize];
    reader.read_exact(&mut tail)?;
    let at = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(&tail, i) == Some(EOCD))
        .ok_or_else(|| bad("no end of central directory record"))?;
    let entries = u64::from(u16_at(&tail, at + 10).ok_or_else(|| bad("short end record"))?);
    let directory = u64::from(u32_at(&tail, at + 12).ok_or_else(|| bad("short end record"))?);
    if entries != 0xFFFF && directory != 0xFFFF_FFFF {
        return Ok((entries, directory));
    }
    // Zip64: the locator sits just before the classic record and points at the zip64 record.
    let locator = at
        .checked_sub(20)
        .filter(|&l| u32_at(&tail, l) == Some(ZIP64_LOCATOR))
        .ok_or_else(|| bad("no zip64 end of central directory locator"))?;
    let record = u64_at(&tail, locator + 8).ok_or_else(|| bad("short zip64 locator"))?;
    if record >= length {
        return Err(bad("the zip64 record is beyond the end"));
    }
    reader.seek(SeekFrom::Start(record))?;
    let mut zip64 = [0u8; 56];
    reader.read_exact(&mut zip64)?;
    if u32_at(&zip64, 0) != Some(ZIP64_EOCD) {
        return Err(bad("no zip64 end of central directory record"));
    }
    let entries = u64_at(&zip64, 32).ok_or_else(|| bad("short zip64 record"))?;
    let directory = u64_at(&zip64, 40).ok_or_else(|| bad("short zip64 record"))?;
    Ok((entries, directory))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
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

    fn zip_of(entries: &[(&str, &[u8])], zip64: bool) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().large_file(zip64);
        for (name, data) in entries {
            writer.start_file(*name, options).unwrap();
            std::io::Write::write_all(&mut writer, data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    fn refusal<T: std::fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::PackageInvalid { reason }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn zips_are_bounded_before_their_index_is_parsed_and_their_names_checked() {
        let entries: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("pkg/file{i}"), vec![b'x'; 100]))
            .collect();
        let borrowed: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        for zip64 in [false, true] {
            let archive = zip_of(&borrowed, zip64);
            let roomy = ZipLimits::default();
            let mut opened = open_zip(std::io::Cursor::new(&archive), "the zip", roomy).unwrap();
            assert_eq!(opened.len(), 20);
            let read = read_zip_entry(&mut opened, "pkg/file3", "the zip", 100).unwrap();
            assert_eq!(read, vec![b'x'; 100]);
            let over = read_zip_entry(&mut opened, "pkg/file3", "the zip", 99);
            assert!(refusal(over).contains("over 99 bytes"));
            let missing = read_zip_entry(&mut opened, "pkg/none", "the zip", 99);
            assert!(refusal(missing).contains("has no pkg/none"));

            let few = ZipLimits {
                max_entries: 19,
                ..roomy
            };
            let reason = refusal(open_zip(std::io::Cursor::new(&archive), "the zip", few));
            assert!(reason.contains("20 entries"), "{reason}");
            let small = ZipLimits {
                max_directory: 100,
                ..roomy
            };
            let reason = refusal(open_zip(std::io::Cursor::new(&archive), "the zip", small));
            assert!(reason.contains("index is"), "{reason}");
        }
        for name in ["../evil", "/etc/passwd", "a/../../b", "a\\..\\b"] {
            let archive = zip_of(&[(name, b"x")], false);
            let opened = open_zip(
                std::io::Cursor::new(&archive),
                "the zip",
                ZipLimits::default(),
            );
            assert!(refusal(opened).contains("outside it"), "{name}");
        }
        for junk in [&b""[..], b"PK\x05\x06", &[0u8; 100]] {
            let opened = open_zip(std::io::Cursor::new(junk), "the zip", ZipLimits::default());
            assert!(refusal(opened).contains("not a zip"));
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_zip_opener(bytes in proptest::collection::vec(0u8..=255, 0..400)) {
            let _ = open_zip(std::io::Cursor::new(&bytes), "the zip", ZipLimits::default());
        }
    }
}
