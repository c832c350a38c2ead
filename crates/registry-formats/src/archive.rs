//! Reading the archives clients upload, bounded and path-safe: one gzip tar walk for every
//! format that ships tarballs (npm packages, Python sdists; Terraform modules next), and one
//! zip opener for every format that ships zips (wheels; `.nupkg` and jars next). A walk stops
//! at the first entry beyond its count, at the first byte beyond its expanded size, and at the
//! first path that is absolute or climbs out (`..`), whatever the caller does with the entries.
//! A zip's index is parsed through a reader with a byte budget (whatever the index declares),
//! its entry count and every entry name are checked, and entries are read with a size bound.

use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Component, Path};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use registry_core::{Error, Result};

/// Bounds on a tar walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TarLimits {
    /// The most entries walked.
    pub max_entries: u64,
    /// The most bytes the archive expands to (entry contents and tar framing).
    pub max_expanded: u64,
    /// Whether symbolic and hard links may appear (they are never followed here; a format whose
    /// clients would create them on unpacking refuses them).
    pub links: bool,
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
        // Every gzip member, as the clients that unpack these archives read them (Go's and
        // Python's gzip readers, Node's zlib): content in a second member is checked too.
        inner: flate2::read::MultiGzDecoder::new(reader),
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
        // PAX headers (`git archive` starts with a global one) describe entries; they are none.
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let path = entry.path().map_err(corrupt)?.into_owned();
        if !is_safe_path(&path) {
            return Err(invalid(format!(
                "{what} holds an unsafe path: {}",
                path.display()
            )));
        }
        if !limits.links
            && (entry.header().entry_type().is_symlink()
                || entry.header().entry_type().is_hard_link())
        {
            return Err(invalid(format!("{what} holds a link: {}", path.display())));
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
    /// The largest central directory (the archive's index), in bytes.
    pub max_directory: u64,
}

impl Default for ZipLimits {
    /// 100,000 entries in at most 16 MiB of central directory.
    fn default() -> Self {
        ZipLimits {
            max_entries: 100_000,
            max_directory: 16 << 20,
        }
    }
}

/// A reader over a zip that stops with an error once more bytes than its budget were read:
/// how [`open_zip`] bounds the parsing of an index, whatever the index declares. Once the
/// archive is open the budget is lifted (entries are bounded when they are read).
#[derive(Debug)]
pub struct BoundedReader<R> {
    inner: R,
    /// Bytes still allowed; `u64::MAX` once lifted (shared with [`open_zip`], which lifts it).
    left: Arc<AtomicU64>,
}

impl<R: Read> Read for BoundedReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left.load(Ordering::Relaxed);
        if left == 0 {
            return Err(std::io::Error::other(IndexTooLarge));
        }
        let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut out[..want])?;
        if left != u64::MAX {
            self.left.store(left - read as u64, Ordering::Relaxed);
        }
        Ok(read)
    }
}

impl<R: Seek> Seek for BoundedReader<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(to)
    }
}

/// The error a [`BoundedReader`] fails with when its budget runs out.
#[derive(Debug)]
struct IndexTooLarge;

impl std::fmt::Display for IndexTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the index is too large")
    }
}

impl std::error::Error for IndexTooLarge {}

/// Opens a zip archive the way installers will read it, refusing any archive two readers
/// could see differently:
///
/// - the **last** end-of-central-directory record (and the zip64 record just before its
///   locator), found as Python's `zipfile` — pip's reader — finds it, must be whole and
///   consistent: one disk, as many entries on it as in all, a central directory of at most
///   `limits.max_directory` bytes ending where the end records begin, at most
///   `limits.max_entries` entries — checked before the directory is parsed;
/// - the directory is parsed through a reader with that byte budget, and the parser must have
///   read that same directory: its start and its entry count (so no entry name is listed
///   twice, one name with two contents);
/// - every entry name is a safe relative path (no `..`, no absolute path, no backslash, no
///   drive prefix, no NUL).
///
/// `what` names the archive in errors (`the wheel`). Errors ([`Error::PackageInvalid`]): not a
/// zip, over the limits, inconsistent, an unsafe entry name.
pub fn open_zip<R: Read + Seek>(
    mut reader: R,
    what: &str,
    limits: ZipLimits,
) -> Result<zip::ZipArchive<BoundedReader<R>>> {
    let invalid = |reason: String| Error::PackageInvalid { reason };
    let end = end_record(&mut reader)
        .map_err(|e| invalid(format!("{what} is not a zip archive: {e}")))?;
    if end.entries > limits.max_entries {
        return Err(invalid(format!(
            "{what} has {} entries; at most {} are accepted",
            end.entries, limits.max_entries
        )));
    }
    if end.directory_size > limits.max_directory {
        return Err(invalid(format!(
            "{what}'s index is over {} bytes",
            limits.max_directory
        )));
    }
    if end.directory_offset.checked_add(end.directory_size) != Some(end.records_at) {
        return Err(invalid(format!(
            "{what}'s central directory does not end where its end record begins"
        )));
    }
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| invalid(format!("reading {what}: {e}")))?;
    // The records declare the directory's size; the budget also covers the end records the
    // parser reads, and holds whatever else it might try.
    let budget = Arc::new(AtomicU64::new(
        limits.max_directory.saturating_add(END_SEARCH + 1024),
    ));
    let bounded = BoundedReader {
        inner: reader,
        left: Arc::clone(&budget),
    };
    let archive = zip::ZipArchive::new(bounded).map_err(|e| {
        // The parser's error may wrap ours in any way: the spent budget says it was the bound.
        if budget.load(Ordering::Relaxed) == 0 {
            invalid(format!(
                "{what}'s index is over {} bytes",
                limits.max_directory
            ))
        } else {
            invalid(format!("{what} is not a zip archive: {e}"))
        }
    })?;
    budget.store(u64::MAX, Ordering::Relaxed);
    if archive.offset() != 0
        || archive.central_directory_start() != end.directory_offset
        || archive.len() as u64 != end.entries
    {
        return Err(invalid(format!(
            "{what} is ambiguous: its end record declares {} entries at offset {}, the archive \
             reads as {} distinct names at offset {} (a name listed twice, or records that \
             readers resolve differently)",
            end.entries,
            end.directory_offset,
            archive.len(),
            archive.central_directory_start()
        )));
    }
    if let Some(unsafe_name) = archive
        .file_names()
        .find(|name| name.contains(['\\', '\0', ':']) || !is_safe_path(Path::new(name)))
    {
        return Err(invalid(format!(
            "{what} has an entry outside it: {unsafe_name:?}"
        )));
    }
    Ok(archive)
}

/// How far from the end an end-of-central-directory record may start: its 22 bytes and a
/// comment of at most 65,535.
const END_SEARCH: u64 = 22 + 65_535;

const EOCD: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;

/// What a zip's end records declare.
#[derive(Debug)]
struct EndRecord {
    entries: u64,
    directory_size: u64,
    directory_offset: u64,
    /// Where the end records begin (the zip64 record's start, when there is one).
    records_at: u64,
}

/// Reads the end records as Python's `zipfile` does: the record ending the file (no comment),
/// else the last signature in the final 64 KiB; then, when a zip64 locator sits just before it,
/// the zip64 record just before that. Both must be whole and describe one disk.
fn end_record(reader: &mut (impl Read + Seek)) -> std::io::Result<EndRecord> {
    let bad = |reason: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, reason);
    let length = reader.seek(SeekFrom::End(0))?;
    let tail_length = length.min(END_SEARCH);
    let tail_start = length - tail_length;
    reader.seek(SeekFrom::Start(tail_start))?;
    let mut tail = vec![0u8; tail_length as usize];
    reader.read_exact(&mut tail)?;
    let whole = tail.len() >= 22
        && u32_at(&tail, tail.len() - 22) == Some(EOCD)
        && u16_at(&tail, tail.len() - 2) == Some(0);
    let at = if whole {
        tail.len() - 22
    } else {
        (0..tail.len().saturating_sub(3))
            .rev()
            .find(|&i| u32_at(&tail, i) == Some(EOCD))
            .ok_or_else(|| bad("no end of central directory record"))?
    };
    let field16 = |offset| u16_at(&tail, at + offset).ok_or_else(|| bad("a cut end record"));
    let field32 = |offset| u32_at(&tail, at + offset).ok_or_else(|| bad("a cut end record"));
    let (disk, directory_disk) = (field16(4)?, field16(6)?);
    let (on_disk, entries) = (field16(8)?, field16(10)?);
    let (directory_size, directory_offset) = (field32(12)?, field32(16)?);
    let record_at = tail_start + at as u64;
    let locator = at
        .checked_sub(20)
        .filter(|&l| u32_at(&tail, l) == Some(ZIP64_LOCATOR));
    let Some(locator) = locator else {
        if disk != 0 || directory_disk != 0 || on_disk != entries {
            return Err(bad("an end record for more than one disk"));
        }
        return Ok(EndRecord {
            entries: u64::from(entries),
            directory_size: u64::from(directory_size),
            directory_offset: u64::from(directory_offset),
            records_at: record_at,
        });
    };
    let locator_disk = u32_at(&tail, locator + 4).ok_or_else(|| bad("a cut zip64 locator"))?;
    let disks = u32_at(&tail, locator + 16).ok_or_else(|| bad("a cut zip64 locator"))?;
    if locator_disk != 0 || disks > 1 {
        return Err(bad("a zip64 locator for more than one disk"));
    }
    let zip64_at = (record_at - 20)
        .checked_sub(56)
        .ok_or_else(|| bad("no zip64 end record before its locator"))?;
    reader.seek(SeekFrom::Start(zip64_at))?;
    let mut zip64 = [0u8; 56];
    reader.read_exact(&mut zip64)?;
    if u32_at(&zip64, 0) != Some(ZIP64_EOCD) {
        return Err(bad("no zip64 end record before its locator"));
    }
    let field = |offset| u64_at(&zip64, offset).ok_or_else(|| bad("a cut zip64 record"));
    let (disk, directory_disk) = (
        u32_at(&zip64, 16).ok_or_else(|| bad("a cut zip64 record"))?,
        u32_at(&zip64, 20).ok_or_else(|| bad("a cut zip64 record"))?,
    );
    let (on_disk, entries) = (field(24)?, field(32)?);
    if disk != 0 || directory_disk != 0 || on_disk != entries {
        return Err(bad("a zip64 end record for more than one disk"));
    }
    Ok(EndRecord {
        entries,
        directory_size: field(40)?,
        directory_offset: field(48)?,
        records_at: zip64_at,
    })
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
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
        links: true,
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
            assert!(reason.contains("index is over 100 bytes"), "{reason}");
        }
        for name in [
            "../evil",
            "/etc/passwd",
            "a/../../b",
            "a\\..\\b",
            "C:evil",
            "a/ev\0il",
        ] {
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

    #[test]
    fn zips_two_readers_could_read_differently_are_refused() {
        let good = zip_of(&[("a/x", b"one"), ("a/y", b"two")], false);
        let open = |bytes: &[u8]| {
            open_zip(
                std::io::Cursor::new(bytes.to_vec()),
                "the zip",
                ZipLimits::default(),
            )
        };
        open(&good).unwrap();

        // One name listed twice (with different contents): readers keep one or the other.
        let twice = replace(&good, b"a/y", b"a/x");
        let reason = refusal(open(&twice));
        assert!(reason.contains("ambiguous"), "{reason}");

        // A second end record appended: Python reads the last one, whatever it says.
        let record_at = good.len() - 22;
        let mut other_disk = good.clone();
        other_disk.extend_from_slice(&good[record_at..]);
        let at = other_disk.len() - 22;
        other_disk[at + 4] = 1;
        assert!(refusal(open(&other_disk)).contains("more than one disk"));
        let mut counts = good.clone();
        counts.extend_from_slice(&good[record_at..]);
        let at = counts.len() - 22;
        counts[at + 8] = 1;
        assert!(refusal(open(&counts)).contains("more than one disk"));
        let mut displaced = good.clone();
        displaced.extend_from_slice(&good[record_at..]);
        assert!(refusal(open(&displaced)).contains("does not end where"));
    }

    fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let mut i = 0;
        while i + from.len() <= out.len() {
            if &out[i..i + from.len()] == from {
                out[i..i + from.len()].copy_from_slice(to);
            }
            i += 1;
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_zip_opener(bytes in proptest::collection::vec(0u8..=255, 0..400)) {
            let _ = open_zip(std::io::Cursor::new(&bytes), "the zip", ZipLimits::default());
        }
    }
}
