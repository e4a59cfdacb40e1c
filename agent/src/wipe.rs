//! `agent wipe`: destroy the contents of a volume irrecoverably, with proof.
//!
//! Every regular file under the root is overwritten in place with zeros (in
//! 1 MiB chunks, without truncating, then `fsync`), read back and checked to
//! be all zeros, and removed; symlinks and special files are removed without
//! being followed; emptied directories are removed; the root itself stays.
//! The [`Report`] carries a SHA-256 digest over the sorted list of
//! `(relative path, size)` of the wiped files, which identifies what was
//! wiped without revealing any content.
//!
//! Only the data of a file is written and read back: its data extents, as
//! `lseek(SEEK_DATA)` and `lseek(SEEK_HOLE)` report them. Holes of sparse
//! files hold no data (they read as zeros) and are skipped, so a 1 TiB file
//! with a few bytes in it costs a few blocks, not hours of writing that would
//! also fill the volume. Where the filesystem does not support `SEEK_DATA`
//! (`EINVAL`), the whole size is written. For a file without holes this is
//! every byte of it, as before.
//!
//! Free space is not filled (a filesystem may keep old blocks of deleted
//! files; deleting the volume's PersistentVolume afterwards is what releases
//! them), and neither are extents a filesystem reports as holes though blocks
//! are reserved for them (preallocated with `fallocate` and never written):
//! like free space, they read as zeros through the file.
//!
//! `max_bytes` is a guard: when the files hold more data (what would be
//! written: data extents, each inode once) than that, no file is overwritten
//! or removed at all.
//!
//! Symlinks are never followed, and every file is checked after opening to
//! be the same inode that was listed, so a symlink swapped in cannot redirect
//! the overwrite outside the root. Other filesystems mounted under the root
//! are refused.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Size of one write and one read.
pub const CHUNK: usize = 1 << 20;

/// The attestation printed on success.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Regular files overwritten, verified and removed.
    pub files: u64,
    /// Bytes overwritten with zeros and read back as zeros (each inode once):
    /// the data extents of the files, so the apparent size for a file
    /// without holes, less for a sparse one.
    pub bytes: u64,
    /// Sum of the files' sizes (each inode once), holes included;
    /// `apparentBytes - bytes` were holes, which read as zeros already.
    pub apparent_bytes: u64,
    /// SHA-256 (hex) over the sorted `(relative path, size)` records.
    pub digest: String,
    /// Every file read back as zeros (always true in a report: a failed
    /// verification is an error).
    pub verified: bool,
}

/// What went wrong; each says which path.
#[derive(Debug, thiserror::Error)]
pub enum WipeError {
    /// The root is missing, or not a directory.
    #[error("{0}: not a directory (symlinks are not followed)")]
    NotADirectory(PathBuf),
    /// A file system operation failed.
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// A file did not read back as zeros.
    #[error("{path}: byte {offset} is not zero after overwriting; the wipe is not verified")]
    NotZero { path: PathBuf, offset: u64 },
    /// A file read back shorter or longer than it was written.
    #[error("{path}: read back {found} bytes but {expected} were written")]
    SizeChanged {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// The opened file is not the one that was listed (it was replaced, for
    /// example by a symlink).
    #[error(
        "{0}: changed while being wiped (replaced by another file or a symlink); refusing to write"
    )]
    Replaced(PathBuf),
    /// A directory on another filesystem is mounted under the root.
    #[error("{0}: another filesystem is mounted here; refusing to cross into it")]
    OtherFilesystem(PathBuf),
    /// The files hold more data than `max_bytes`.
    #[error(
        "the files under {root} hold {total} bytes of data (holes not counted), more than --max-bytes {max}; nothing was overwritten or removed"
    )]
    TooLarge { root: PathBuf, total: u64, max: u64 },
}

fn io_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> WipeError + 'a {
    move |source| WipeError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Options of [`wipe`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Refuse (before overwriting or removing anything) when the files hold
    /// more bytes of data than this (data extents, each inode once: what the
    /// wipe would write).
    pub max_bytes: Option<u64>,
}

/// Wipe everything under `root` and return the attestation.
pub fn wipe(root: &Path, options: &Options) -> Result<Report, WipeError> {
    let meta =
        fs::symlink_metadata(root).map_err(|_| WipeError::NotADirectory(root.to_path_buf()))?;
    if !meta.is_dir() {
        return Err(WipeError::NotADirectory(root.to_path_buf()));
    }
    if let Some(max) = options.max_bytes {
        make_owner_writable(root, &meta, 0o500);
        let total = data_bytes(root, meta.dev(), &mut HashSet::new())?;
        if total > max {
            return Err(WipeError::TooLarge {
                root: root.to_path_buf(),
                total,
                max,
            });
        }
    }
    make_owner_writable(root, &meta, 0o700);
    let mut wiper = Wiper {
        device: meta.dev(),
        records: Vec::new(),
        bytes: 0,
        apparent: 0,
        seen: HashSet::new(),
        zeros: vec![0u8; CHUNK],
        buffer: vec![0u8; CHUNK],
    };
    wiper.wipe_children(root, Path::new(""))?;
    let files = wiper.records.len() as u64;
    Ok(Report {
        files,
        bytes: wiper.bytes,
        apparent_bytes: wiper.apparent,
        digest: digest(&mut wiper.records),
        verified: true,
    })
}

/// Entries of a directory, sorted by name so the walk is deterministic.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, WipeError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir, "listing directory"))? {
        names.push(
            entry
                .map_err(io_error(dir, "listing directory"))?
                .file_name(),
        );
    }
    names.sort();
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// Bytes of data of the regular files under `dir` (their data extents, each
/// inode in `seen` once): what the wipe would write. Symlinks are not
/// followed. Owner read permission is added where missing so that every
/// file can be measured (the wipe would add it anyway); nothing is written.
fn data_bytes(dir: &Path, device: u64, seen: &mut HashSet<(u64, u64)>) -> Result<u64, WipeError> {
    let mut total = 0u64;
    for path in entries(dir)? {
        let meta = fs::symlink_metadata(&path).map_err(io_error(&path, "reading metadata"))?;
        if meta.is_dir() {
            if meta.dev() != device {
                return Err(WipeError::OtherFilesystem(path));
            }
            make_owner_writable(&path, &meta, 0o500);
            total = total.saturating_add(data_bytes(&path, device, seen)?);
        } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
            make_owner_writable(&path, &meta, 0o400);
            let file = File::open(&path).map_err(io_error(&path, "opening for reading"))?;
            same_file(&path, &file, &meta)?;
            for extent in data_extents(&file, meta.len()) {
                let (start, end) = extent.map_err(io_error(&path, "finding its data"))?;
                total = total.saturating_add(end - start);
            }
        }
    }
    Ok(total)
}

/// Which `lseek` question [`Extents`] asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Whence {
    /// `SEEK_DATA`: the first offset at or after this one holding data.
    Data,
    /// `SEEK_HOLE`: the first offset at or after this one in a hole (the
    /// end of the file counts as one).
    Hole,
}

/// `lseek(fd, offset, SEEK_DATA | SEEK_HOLE)`. Only the descriptor's offset
/// changes, which the positioned reads and writes here do not use.
fn lseek(file: &File, offset: u64, whence: Whence) -> io::Result<u64> {
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    let whence = match whence {
        Whence::Data => libc::SEEK_DATA,
        Whence::Hole => libc::SEEK_HOLE,
    };
    // SAFETY: lseek takes a descriptor, kept open by `file` for the call,
    // and two integers; no memory is passed.
    let found = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    u64::try_from(found).map_err(|_| io::Error::last_os_error())
}

/// The data extents of the first `size` bytes of `file`.
fn data_extents(file: &File, size: u64) -> Extents<impl FnMut(u64, Whence) -> io::Result<u64>> {
    Extents::new(size, move |offset, whence| lseek(file, offset, whence))
}

/// The data extents `[start, end)` of the first `size` bytes of a file, in
/// order, asked of `seek` (`lseek` with `SEEK_DATA` / `SEEK_HOLE`); holes are
/// left out. When the filesystem does not support those (`EINVAL`, or
/// `EOPNOTSUPP`), the rest of the range is one extent: everything is
/// written rather than anything skipped.
struct Extents<S> {
    seek: S,
    /// Where the next extent is looked for.
    position: u64,
    size: u64,
}

impl<S: FnMut(u64, Whence) -> io::Result<u64>> Extents<S> {
    fn new(size: u64, seek: S) -> Self {
        Extents {
            seek,
            position: 0,
            size,
        }
    }

    /// The rest of the range is data; the walk ends there.
    fn rest(&mut self) -> Option<io::Result<(u64, u64)>> {
        let extent = (self.position, self.size);
        self.position = self.size;
        Some(Ok(extent))
    }

    /// An error; the walk ends there.
    fn fail(&mut self, error: io::Error) -> Option<io::Result<(u64, u64)>> {
        self.position = self.size;
        Some(Err(error))
    }
}

/// `lseek` does not know `SEEK_DATA` / `SEEK_HOLE` here.
fn unsupported(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP))
}

impl<S: FnMut(u64, Whence) -> io::Result<u64>> Iterator for Extents<S> {
    type Item = io::Result<(u64, u64)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.size {
            return None;
        }
        let start = match (self.seek)(self.position, Whence::Data) {
            Ok(start) => start,
            // No data at or after the position: the rest is a hole.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                self.position = self.size;
                return None;
            }
            Err(e) if unsupported(&e) => return self.rest(),
            Err(e) => return self.fail(e),
        };
        if start < self.position {
            return self.fail(io::Error::other(format!(
                "SEEK_DATA from {} answered {start}",
                self.position
            )));
        }
        if start >= self.size {
            self.position = self.size;
            return None;
        }
        let end = match (self.seek)(start, Whence::Hole) {
            Ok(end) => end.min(self.size),
            Err(e) if unsupported(&e) => self.size,
            Err(e) => return self.fail(e),
        };
        if end <= start {
            return self.fail(io::Error::other(format!(
                "SEEK_HOLE from {start} answered {end}"
            )));
        }
        self.position = end;
        Some(Ok((start, end)))
    }
}

struct Wiper {
    device: u64,
    records: Vec<(Vec<u8>, u64)>,
    /// Bytes overwritten (data extents).
    bytes: u64,
    /// Sizes of the files overwritten, holes included.
    apparent: u64,
    /// (device, inode) of files already overwritten (hard links).
    seen: HashSet<(u64, u64)>,
    zeros: Vec<u8>,
    buffer: Vec<u8>,
}

impl Wiper {
    fn wipe_children(&mut self, dir: &Path, relative: &Path) -> Result<(), WipeError> {
        for path in entries(dir)? {
            let name = path.file_name().map(PathBuf::from).unwrap_or_default();
            let relative = relative.join(name);
            let meta = fs::symlink_metadata(&path).map_err(io_error(&path, "reading metadata"))?;
            if meta.is_dir() {
                if meta.dev() != self.device {
                    return Err(WipeError::OtherFilesystem(path));
                }
                make_owner_writable(&path, &meta, 0o700);
                self.wipe_children(&path, &relative)?;
                fs::remove_dir(&path).map_err(io_error(&path, "removing directory"))?;
            } else if meta.is_file() {
                self.wipe_file(&path, &meta)?;
                self.records
                    .push((relative.as_os_str().as_bytes().to_vec(), meta.len()));
            } else {
                // Symlink, FIFO, socket or device: remove the entry itself.
                fs::remove_file(&path).map_err(io_error(&path, "removing"))?;
            }
        }
        Ok(())
    }

    fn wipe_file(&mut self, path: &Path, listed: &fs::Metadata) -> Result<(), WipeError> {
        let size = listed.len();
        let inode = (listed.dev(), listed.ino());
        if self.seen.insert(inode) {
            make_owner_writable(path, listed, 0o600);
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_error(path, "opening for writing"))?;
            same_file(path, &file, listed)?;
            let written = overwrite(path, &file, size, &self.zeros)?;
            self.bytes = self.bytes.saturating_add(written);
            self.apparent = self.apparent.saturating_add(size);
        }
        verify_zeros_with(path, size, &mut self.buffer)?;
        fs::remove_file(path).map_err(io_error(path, "removing"))
    }
}

/// Add owner permissions so a read-only file or directory can be wiped; a
/// failure is left for the following open or remove to report.
fn make_owner_writable(path: &Path, meta: &fs::Metadata, bits: u32) {
    let mode = meta.permissions().mode();
    if mode & bits != bits {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | bits));
    }
}

/// Refuse to write unless the open file is the inode that was listed.
fn same_file(path: &Path, file: &File, listed: &fs::Metadata) -> Result<(), WipeError> {
    let opened = file
        .metadata()
        .map_err(io_error(path, "reading metadata"))?;
    if opened.dev() == listed.dev() && opened.ino() == listed.ino() && opened.is_file() {
        Ok(())
    } else {
        Err(WipeError::Replaced(path.to_path_buf()))
    }
}

/// Overwrite the data extents of the first `size` bytes with zeros, in place,
/// and sync; returns how many bytes were written.
fn overwrite(path: &Path, file: &File, size: u64, zeros: &[u8]) -> Result<u64, WipeError> {
    let mut written = 0u64;
    for extent in data_extents(file, size) {
        let (start, end) = extent.map_err(io_error(path, "finding its data"))?;
        let mut at = start;
        while at < end {
            let n = (end - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)
                .map_err(io_error(path, "overwriting"))?;
            at += n as u64;
        }
        written += end - start;
    }
    file.sync_all().map_err(io_error(path, "syncing"))?;
    Ok(written)
}

/// Overwrite the data of the first `size` bytes of the file at `path` with
/// zeros, in place (no truncation; holes are left as they are), and sync it
/// to storage; returns the bytes written. Symlinks are refused.
pub fn overwrite_with_zeros(path: &Path, size: u64) -> Result<u64, WipeError> {
    let listed = fs::symlink_metadata(path).map_err(io_error(path, "reading metadata"))?;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path, "opening for writing"))?;
    same_file(path, &file, &listed)?;
    overwrite(path, &file, size, &vec![0u8; CHUNK])
}

/// Check that the file holds exactly `size` bytes, all zero: its size, and
/// every data extent read back (holes read as zeros by definition; the
/// extents are asked again here, not remembered from the overwrite).
pub fn verify_zeros(path: &Path, size: u64) -> Result<(), WipeError> {
    verify_zeros_with(path, size, &mut vec![0u8; CHUNK])
}

fn verify_zeros_with(path: &Path, size: u64, buffer: &mut [u8]) -> Result<(), WipeError> {
    let file = File::open(path).map_err(io_error(path, "opening for reading"))?;
    let found = file
        .metadata()
        .map_err(io_error(path, "reading metadata"))?
        .len();
    if found != size {
        return Err(WipeError::SizeChanged {
            path: path.to_path_buf(),
            expected: size,
            found,
        });
    }
    for extent in data_extents(&file, size) {
        let (start, end) = extent.map_err(io_error(path, "finding its data"))?;
        let mut at = start;
        while at < end {
            let n = (end - at).min(buffer.len() as u64) as usize;
            file.read_exact_at(&mut buffer[..n], at)
                .map_err(io_error(path, "reading back"))?;
            if let Some(i) = buffer[..n].iter().position(|&b| b != 0) {
                return Err(WipeError::NotZero {
                    path: path.to_path_buf(),
                    offset: at + i as u64,
                });
            }
            at += n as u64;
        }
    }
    Ok(())
}

/// SHA-256 (hex) over the records sorted by path; each record is hashed as
/// `<path bytes> NUL <size in decimal> LF`.
pub fn digest(records: &mut [(Vec<u8>, u64)]) -> String {
    records.sort();
    let mut hasher = Sha256::new();
    for (path, size) in records.iter() {
        hasher.update(path);
        hasher.update([0u8]);
        hasher.update(size.to_string().as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// Longest message kept in a termination-log error (the kubelet reads at most
/// 4096 bytes).
const MAX_ERROR_LENGTH: usize = 3500;

/// The JSON written for a failure: `{"error": "..."}`, under 4096 bytes.
pub fn error_json(message: &str) -> String {
    let mut cut = message.len().min(MAX_ERROR_LENGTH);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    serde_json::json!({ "error": &message[..cut] }).to_string()
}

/// Write `json` to the termination log if its directory exists; returns
/// whether it was written.
pub fn write_termination_log(path: &Path, json: &str) -> io::Result<bool> {
    match path.parent() {
        Some(dir) if dir.as_os_str().is_empty() || dir.is_dir() => {
            fs::write(path, json)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use tempfile::TempDir;

    fn write(path: &Path, bytes: &[u8]) {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).expect("mkdir");
        }
        fs::write(path, bytes).expect("write");
    }

    /// Non-zero, size-specific content.
    fn content(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i % 251) as u8 + 1).collect()
    }

    fn wipe_default(root: &Path) -> Result<Report, WipeError> {
        wipe(root, &Options::default())
    }

    fn is_empty_dir(path: &Path) -> bool {
        fs::read_dir(path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
    }

    #[test]
    fn files_of_every_size_are_wiped_and_removed() {
        let tmp = TempDir::new().expect("tempdir");
        let root = tmp.path();
        let sizes = [0usize, 1, 4095, CHUNK, CHUNK + 1, 3 * CHUNK + 7];
        for (i, size) in sizes.iter().enumerate() {
            write(&root.join(format!("f{i}")), &content(*size));
        }
        let report = wipe_default(root).expect("wipes");
        assert_eq!(report.files, sizes.len() as u64);
        assert_eq!(report.bytes, sizes.iter().sum::<usize>() as u64);
        assert!(report.verified);
        assert_eq!(report.digest.len(), 64);
        assert!(root.is_dir(), "the root stays");
        assert!(is_empty_dir(root));
    }

    #[test]
    fn nested_directories_are_emptied_and_removed() {
        let tmp = TempDir::new().expect("tempdir");
        let root = tmp.path();
        write(
            &root.join("a/b/c/deep.csv"),
            b"resident_id\n110101199003071234\n",
        );
        write(&root.join("a/top.txt"), b"x");
        fs::create_dir_all(root.join("empty/inner")).expect("mkdir");
        let report = wipe_default(root).expect("wipes");
        assert_eq!(report.files, 2);
        assert_eq!(report.bytes, 31 + 1);
        assert!(is_empty_dir(root));
    }

    #[test]
    fn overwrite_leaves_zeros_of_the_same_size() {
        let tmp = TempDir::new().expect("tempdir");
        let file = tmp.path().join("data.bin");
        let original = content(CHUNK + 123);
        write(&file, &original);
        overwrite_with_zeros(&file, original.len() as u64).expect("overwrites");
        let after = fs::read(&file).expect("read");
        assert_eq!(after.len(), original.len(), "no truncation, no growth");
        assert!(after.iter().all(|&b| b == 0));
        verify_zeros(&file, original.len() as u64).expect("verifies");
    }

    #[test]
    fn verification_reports_the_first_non_zero_byte() {
        let tmp = TempDir::new().expect("tempdir");
        let file = tmp.path().join("dirty.bin");
        let mut bytes = vec![0u8; CHUNK + 10];
        bytes[CHUNK + 3] = 7;
        write(&file, &bytes);
        match verify_zeros(&file, bytes.len() as u64) {
            Err(WipeError::NotZero { offset, .. }) => assert_eq!(offset, CHUNK as u64 + 3),
            other => panic!("expected NotZero, got {other:?}"),
        }
    }

    #[test]
    fn verification_reports_a_size_change() {
        let tmp = TempDir::new().expect("tempdir");
        let file = tmp.path().join("short.bin");
        write(&file, &[0u8; 10]);
        assert!(matches!(
            verify_zeros(&file, 11),
            Err(WipeError::SizeChanged {
                expected: 11,
                found: 10,
                ..
            })
        ));
    }

    #[test]
    fn symlinks_are_removed_and_their_targets_left_alone() {
        let outside = TempDir::new().expect("tempdir");
        let secret = outside.path().join("secret.txt");
        write(&secret, b"must survive");
        write(&outside.path().join("dir/also.txt"), b"also survives");
        let tmp = TempDir::new().expect("tempdir");
        let root = tmp.path();
        write(&root.join("real.txt"), b"wipe me");
        symlink(&secret, root.join("link-to-file")).expect("symlink");
        symlink(outside.path().join("dir"), root.join("link-to-dir")).expect("symlink");
        symlink(root.join("nowhere"), root.join("dangling")).expect("symlink");

        let report = wipe_default(root).expect("wipes");
        assert_eq!(report.files, 1, "only the real file counts");
        assert_eq!(report.bytes, 7);
        assert!(is_empty_dir(root));
        assert_eq!(fs::read(&secret).expect("target kept"), b"must survive");
        assert_eq!(
            fs::read(outside.path().join("dir/also.txt")).expect("target dir kept"),
            b"also survives"
        );
    }

    #[test]
    fn a_root_that_is_a_symlink_or_missing_is_refused() {
        let outside = TempDir::new().expect("tempdir");
        write(&outside.path().join("keep.txt"), b"keep");
        let tmp = TempDir::new().expect("tempdir");
        let link = tmp.path().join("root-link");
        symlink(outside.path(), &link).expect("symlink");
        assert!(matches!(
            wipe_default(&link),
            Err(WipeError::NotADirectory(_))
        ));
        assert!(matches!(
            wipe_default(&tmp.path().join("missing")),
            Err(WipeError::NotADirectory(_))
        ));
        assert_eq!(
            fs::read(outside.path().join("keep.txt")).expect("kept"),
            b"keep"
        );
    }

    #[test]
    fn a_file_swapped_after_listing_is_not_written() {
        let tmp = TempDir::new().expect("tempdir");
        let listed = tmp.path().join("listed.txt");
        let other = tmp.path().join("other.txt");
        write(&listed, b"listed");
        write(&other, b"other");
        let listed_meta = fs::symlink_metadata(&listed).expect("lstat");
        let opened = File::open(&other).expect("open");
        assert!(matches!(
            same_file(&listed, &opened, &listed_meta),
            Err(WipeError::Replaced(_))
        ));
        // A symlink opened in place of the file resolves to another inode too.
        let link = tmp.path().join("link");
        symlink(&other, &link).expect("symlink");
        let link_meta = fs::symlink_metadata(&link).expect("lstat");
        let through_link = File::open(&link).expect("open");
        assert!(same_file(&link, &through_link, &link_meta).is_err());
        assert_eq!(fs::read(&other).expect("read"), b"other");
    }

    #[test]
    fn special_files_are_removed() {
        let tmp = TempDir::new().expect("tempdir");
        let root = tmp.path();
        let socket = root.join("app.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("socket");
        let report = wipe_default(root).expect("wipes");
        assert_eq!(report.files, 0);
        assert!(is_empty_dir(root));
    }

    #[test]
    fn read_only_files_and_directories_are_wiped() {
        let tmp = TempDir::new().expect("tempdir");
        let root = tmp.path();
        let file = root.join("locked/ro.txt");
        write(&file, b"read only");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o400)).expect("chmod");
        fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o500)).expect("chmod");
        fs::set_permissions(root, fs::Permissions::from_mode(0o500)).expect("chmod");
        let report = wipe_default(root).expect("wipes");
        assert_eq!(report.files, 1);
        assert!(is_empty_dir(root));
    }

    #[test]
    fn hard_links_are_overwritten_once_and_all_removed() {
        let tmp = TempDir::new().expect("tempdir");
        let root = tmp.path();
        write(&root.join("a.txt"), b"twelve bytes");
        fs::hard_link(root.join("a.txt"), root.join("b.txt")).expect("link");
        let report = wipe_default(root).expect("wipes");
        assert_eq!(report.files, 2);
        assert_eq!(report.bytes, 12);
        assert!(is_empty_dir(root));
    }

    #[test]
    fn digest_depends_on_paths_and_sizes_not_on_content() {
        let make = |files: &[(&str, Vec<u8>)]| {
            let tmp = TempDir::new().expect("tempdir");
            for (name, bytes) in files {
                write(&tmp.path().join(name), bytes);
            }
            wipe_default(tmp.path()).expect("wipes").digest
        };
        let first = make(&[("x/a.csv", vec![1; 10]), ("b.csv", vec![2; 3])]);
        let same_shape = make(&[("b.csv", vec![9; 3]), ("x/a.csv", vec![8; 10])]);
        assert_eq!(first, same_shape, "same names and sizes, other content");
        let other_size = make(&[("x/a.csv", vec![1; 11]), ("b.csv", vec![2; 3])]);
        assert_ne!(first, other_size);
        let other_name = make(&[("x/c.csv", vec![1; 10]), ("b.csv", vec![2; 3])]);
        assert_ne!(first, other_name);
    }

    #[test]
    fn digest_of_known_records_is_pinned() {
        // sha256("a.csv\x0010\nb/c.csv\x000\n"), computed independently.
        let mut records = vec![(b"b/c.csv".to_vec(), 0), (b"a.csv".to_vec(), 10)];
        assert_eq!(
            digest(&mut records),
            "c590ada09eef587a2d8e850bee274750d93e2079a0a4eebeb3214cf8a36ec82f"
        );
        // sha256 of nothing: an empty volume.
        assert_eq!(
            digest(&mut []),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn max_bytes_refuses_before_writing_anything() {
        let tmp = TempDir::new().expect("tempdir");
        let root = tmp.path();
        write(&root.join("big.bin"), &content(1000));
        match wipe(
            root,
            &Options {
                max_bytes: Some(999),
            },
        ) {
            Err(WipeError::TooLarge { total, max, .. }) => assert_eq!((total, max), (1000, 999)),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(
            fs::read(root.join("big.bin")).expect("untouched"),
            content(1000)
        );
        let report = wipe(
            root,
            &Options {
                max_bytes: Some(1000),
            },
        )
        .expect("within the limit");
        assert_eq!(report.bytes, 1000);
    }

    const GIB: u64 = 1 << 30;

    /// A file of `apparent` bytes holding only `pieces` (offset, bytes), the
    /// rest holes. Not synced: the data may still be in the page cache only,
    /// as a workspace's last writes may be when its volume is wiped.
    fn sparse_file(path: &Path, apparent: u64, pieces: &[(u64, &[u8])]) {
        let file = File::create(path).expect("create");
        file.set_len(apparent).expect("set_len");
        for (offset, bytes) in pieces {
            file.write_all_at(bytes, *offset).expect("write");
        }
    }

    /// The data extents of the file at `path`, asked of the kernel directly
    /// with `lseek` (not through `Extents`).
    fn kernel_extents(path: &Path) -> Vec<(u64, u64)> {
        let file = File::open(path).expect("open");
        let size = i64::try_from(file.metadata().expect("stat").len()).expect("size");
        let fd = file.as_raw_fd();
        let mut extents = Vec::new();
        let mut position = 0i64;
        while position < size {
            // SAFETY: lseek on a descriptor `file` keeps open.
            let start = unsafe { libc::lseek(fd, position, libc::SEEK_DATA) };
            if start < 0 {
                let e = io::Error::last_os_error();
                assert_eq!(e.raw_os_error(), Some(libc::ENXIO), "SEEK_DATA: {e}");
                break;
            }
            // SAFETY: as above.
            let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
            assert!(end > start, "SEEK_HOLE from {start}: {end}");
            extents.push((start as u64, end as u64));
            position = end;
        }
        extents
    }

    fn extent_bytes(extents: &[(u64, u64)]) -> u64 {
        extents.iter().map(|(start, end)| end - start).sum()
    }

    /// Reads `len` bytes at `offset` (a plain positioned read, no lseek).
    fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
        let mut buffer = vec![0u8; len];
        File::open(path)
            .expect("open")
            .read_exact_at(&mut buffer, offset)
            .expect("read");
        buffer
    }

    /// Fails (before anything is written) on a filesystem that reports no
    /// holes: the sparse tests would then write gigabytes.
    fn assert_holes_are_reported(path: &Path, at_most: u64) {
        let data = extent_bytes(&kernel_extents(path));
        assert!(
            data <= at_most,
            "this filesystem reports {data} bytes of data in a sparse file: run the tests on one with SEEK_HOLE (ext4, xfs, btrfs, tmpfs)"
        );
    }

    #[test]
    fn a_sparse_file_is_wiped_by_its_data_extents_only() {
        let tmp = TempDir::new().expect("tempdir");
        let root = tmp.path().join("volume");
        fs::create_dir(&root).expect("mkdir");
        let file = root.join("sparse.bin");
        let head = content(100);
        let middle = content(300);
        let apparent = 4 * GIB;
        sparse_file(&file, apparent, &[(0, &head), (GIB, &middle)]);
        // A second link outside the root keeps the inode after the wipe
        // removes the file, to look at what the wipe left in it.
        let kept = tmp.path().join("kept.bin");
        fs::hard_link(&file, &kept).expect("link");
        assert_holes_are_reported(&file, 64 << 20);
        let before = kernel_extents(&file);
        let blocks_before = fs::metadata(&file).expect("stat").blocks();
        let block = fs::metadata(&file).expect("stat").blksize();

        let report = wipe_default(&root).expect("wipes");

        // What was written is the data extents, as the kernel reports them:
        // at least the data, at most a block more per piece on each side,
        // and far less than the apparent size.
        let written = (head.len() + middle.len()) as u64;
        assert_eq!(report.bytes, extent_bytes(&before), "extents {before:?}");
        assert!(report.bytes >= written, "{} < {written}", report.bytes);
        assert!(
            report.bytes <= written + 2 * 2 * block,
            "{} bytes written for {written} bytes of data",
            report.bytes
        );
        assert!(report.bytes < apparent / 1000);
        assert_eq!(report.apparent_bytes, apparent);
        assert_eq!(report.files, 1);
        assert!(is_empty_dir(&root));

        // The inode: same size, the data zeroed where it was (read directly,
        // not through SEEK_DATA), every data extent zero, and no hole filled.
        assert_eq!(fs::metadata(&kept).expect("stat").len(), apparent);
        assert!(read_at(&kept, 0, head.len()).iter().all(|&b| b == 0));
        assert!(read_at(&kept, GIB, middle.len()).iter().all(|&b| b == 0));
        for (start, end) in kernel_extents(&kept) {
            let bytes = read_at(&kept, start, usize::try_from(end - start).expect("len"));
            assert!(bytes.iter().all(|&b| b == 0), "extent {start}..{end}");
        }
        assert!(extent_bytes(&kernel_extents(&kept)) <= report.bytes);
        assert!(
            fs::metadata(&kept).expect("stat").blocks() <= blocks_before,
            "the wipe allocated the holes"
        );
        // The digest records the apparent size, as for any file.
        assert_eq!(
            report.digest,
            digest(&mut [(b"sparse.bin".to_vec(), apparent)])
        );
    }

    #[test]
    fn a_terabyte_sparse_file_fits_a_megabyte_bound() {
        let tmp = TempDir::new().expect("tempdir");
        let file = tmp.path().join("huge.img");
        sparse_file(
            &file,
            1 << 40,
            &[(0, b"header"), ((1 << 40) - 4096, b"trailer")],
        );
        assert_holes_are_reported(&file, 1 << 20);
        let report = wipe(
            tmp.path(),
            &Options {
                max_bytes: Some(1 << 20),
            },
        )
        .expect("within the bound: only data counts");
        assert!(report.bytes >= 13 && report.bytes <= 1 << 20, "{report:?}");
        assert_eq!(report.apparent_bytes, 1 << 40);
        assert!(is_empty_dir(tmp.path()));
    }

    #[test]
    fn max_bytes_counts_data_not_holes_and_refuses_more() {
        let tmp = TempDir::new().expect("tempdir");
        let file = tmp.path().join("sparse.bin");
        let data = content(3 * CHUNK);
        sparse_file(&file, 16 * GIB, &[(8 * GIB, &data)]);
        assert_holes_are_reported(&file, 64 << 20);
        let held = extent_bytes(&kernel_extents(&file));
        assert!(held >= data.len() as u64);
        match wipe(
            tmp.path(),
            &Options {
                max_bytes: Some(held - 1),
            },
        ) {
            Err(WipeError::TooLarge { total, max, .. }) => {
                assert_eq!((total, max), (held, held - 1));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(read_at(&file, 8 * GIB, data.len()), data, "untouched");
        let report = wipe(
            tmp.path(),
            &Options {
                max_bytes: Some(held),
            },
        )
        .expect("exactly at the bound");
        assert_eq!(report.bytes, held);
    }

    #[test]
    fn max_bytes_counts_hard_linked_data_once() {
        let tmp = TempDir::new().expect("tempdir");
        write(&tmp.path().join("a.bin"), &content(1000));
        fs::hard_link(tmp.path().join("a.bin"), tmp.path().join("b.bin")).expect("link");
        let report = wipe(
            tmp.path(),
            &Options {
                max_bytes: Some(1000),
            },
        )
        .expect("one inode of 1000 bytes");
        assert_eq!((report.files, report.bytes), (2, 1000));
    }

    #[test]
    fn overwriting_a_sparse_file_writes_its_data_and_leaves_its_holes() {
        let tmp = TempDir::new().expect("tempdir");
        let file = tmp.path().join("sparse.bin");
        sparse_file(&file, 64 << 20, &[(32 << 20, &content(5000))]);
        assert_holes_are_reported(&file, 16 << 20);
        let extents = kernel_extents(&file);
        let written = overwrite_with_zeros(&file, 64 << 20).expect("overwrites");
        assert_eq!(written, extent_bytes(&extents));
        assert!(read_at(&file, 32 << 20, 5000).iter().all(|&b| b == 0));
        assert_eq!(fs::metadata(&file).expect("stat").len(), 64 << 20);
        verify_zeros(&file, 64 << 20).expect("verifies");
    }

    #[test]
    fn verification_finds_data_after_a_hole() {
        let tmp = TempDir::new().expect("tempdir");
        let file = tmp.path().join("dirty.bin");
        let offset = (5 << 20) + 3;
        sparse_file(&file, 8 << 20, &[(offset, &[7])]);
        assert_holes_are_reported(&file, 4 << 20);
        match verify_zeros(&file, 8 << 20) {
            Err(WipeError::NotZero { offset: found, .. }) => assert_eq!(found, offset),
            other => panic!("expected NotZero, got {other:?}"),
        }
    }

    /// `lseek` over a file of `size` bytes whose data is `data` (sorted,
    /// disjoint `[start, end)`), as the kernel answers it.
    fn fake_seek(size: u64, data: Vec<(u64, u64)>) -> impl FnMut(u64, Whence) -> io::Result<u64> {
        move |offset, whence| {
            if offset >= size {
                return Err(io::Error::from_raw_os_error(libc::ENXIO));
            }
            match whence {
                Whence::Data => data
                    .iter()
                    .find(|(_, end)| *end > offset)
                    .map(|(start, _)| (*start).max(offset))
                    .ok_or_else(|| io::Error::from_raw_os_error(libc::ENXIO)),
                Whence::Hole => Ok(data
                    .iter()
                    .find(|(start, end)| *start <= offset && offset < *end)
                    .map_or(offset, |(_, end)| *end)
                    .min(size)),
            }
        }
    }

    fn collect<S: FnMut(u64, Whence) -> io::Result<u64>>(
        extents: Extents<S>,
    ) -> Vec<Result<(u64, u64), Option<i32>>> {
        extents.map(|e| e.map_err(|e| e.raw_os_error())).collect()
    }

    #[test]
    fn extents_skip_holes_and_stop_at_the_size() {
        let size = 4 * GIB;
        let data = vec![(0, 4096), (GIB, GIB + 8192), (size - 4096, size)];
        assert_eq!(
            collect(Extents::new(size, fake_seek(size, data.clone()))),
            data.iter().copied().map(Ok).collect::<Vec<_>>()
        );
        // Data past the size that was listed (the file grew) is not walked.
        assert_eq!(
            collect(Extents::new(GIB + 4096, fake_seek(size, data))),
            vec![Ok((0, 4096)), Ok((GIB, GIB + 4096))]
        );
        // All hole: nothing; empty: not even asked.
        assert_eq!(collect(Extents::new(size, fake_seek(size, vec![]))), vec![]);
        let never = |_: u64, _: Whence| -> io::Result<u64> { panic!("asked") };
        assert_eq!(collect(Extents::new(0, never)), vec![]);
    }

    #[test]
    fn extents_fall_back_to_the_whole_range_without_seek_data() {
        for errno in [libc::EINVAL, libc::EOPNOTSUPP] {
            let unsupported = |_: u64, _: Whence| Err(io::Error::from_raw_os_error(errno));
            assert_eq!(
                collect(Extents::new(1000, unsupported)),
                vec![Ok((0, 1000))]
            );
        }
        // SEEK_DATA answered, SEEK_HOLE not: the rest from that data on.
        let half = |offset: u64, whence: Whence| match whence {
            Whence::Data => Ok(offset.max(600)),
            Whence::Hole => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        assert_eq!(collect(Extents::new(1000, half)), vec![Ok((600, 1000))]);
    }

    #[test]
    fn extents_report_other_errors_and_answers_that_do_not_advance() {
        let failing = |_: u64, _: Whence| Err(io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(
            collect(Extents::new(1000, failing)),
            vec![Err(Some(libc::EIO))]
        );
        let stuck = |offset: u64, _: Whence| Ok(offset);
        assert_eq!(collect(Extents::new(1000, stuck)), vec![Err(None)]);
    }

    #[test]
    fn extents_of_a_real_sparse_file_match_the_kernel() {
        let tmp = TempDir::new().expect("tempdir");
        let path = tmp.path().join("sparse.bin");
        sparse_file(
            &path,
            256 << 20,
            &[
                (0, b"a"),
                (100 << 20, &content(70_000)),
                ((256 << 20) - 1, b"z"),
            ],
        );
        assert_holes_are_reported(&path, 64 << 20);
        let file = File::open(&path).expect("open");
        let walked: Vec<(u64, u64)> = data_extents(&file, 256 << 20)
            .collect::<io::Result<_>>()
            .expect("walks");
        assert_eq!(walked, kernel_extents(&path));
        assert_eq!(walked.first().map(|e| e.0), Some(0));
        assert_eq!(walked.last().map(|e| e.1), Some(256 << 20));
    }

    #[test]
    fn report_serializes_as_one_json_line() {
        let report = Report {
            files: 2,
            bytes: 10,
            apparent_bytes: 4096,
            digest: "ab".repeat(32),
            verified: true,
        };
        let json = serde_json::to_string(&report).expect("json");
        assert_eq!(
            json,
            format!(
                r#"{{"files":2,"bytes":10,"apparentBytes":4096,"digest":"{}","verified":true}}"#,
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn error_json_stays_under_the_termination_log_limit() {
        let long = "é".repeat(5000);
        let json = error_json(&long);
        assert!(json.len() < 4096, "{} bytes", json.len());
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid json");
        assert!(value["error"].as_str().is_some_and(|s| s.starts_with('é')));
    }

    #[test]
    fn termination_log_is_written_only_when_its_directory_exists() {
        let tmp = TempDir::new().expect("tempdir");
        let log = tmp.path().join("termination-log");
        assert!(write_termination_log(&log, "{}").expect("writes"));
        assert_eq!(fs::read_to_string(&log).expect("read"), "{}");
        let missing = tmp.path().join("no-such-dir/termination-log");
        assert!(!write_termination_log(&missing, "{}").expect("ignored"));
        assert!(!missing.exists());
    }
}
