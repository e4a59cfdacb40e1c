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
//! Only the bytes of the files are written: free space is not filled (a
//! filesystem may keep old blocks of deleted files; deleting the volume's
//! PersistentVolume afterwards is what releases them). `max_bytes` is a
//! guard: when the files hold more than that, nothing is written at all.
//!
//! Symlinks are never followed, and every file is checked after opening to
//! be the same inode that was listed, so a symlink swapped in cannot redirect
//! the overwrite outside the root. Other filesystems mounted under the root
//! are refused.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Size of one write and one read.
pub const CHUNK: usize = 1 << 20;

/// The attestation printed on success.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Regular files overwritten, verified and removed.
    pub files: u64,
    /// Bytes overwritten with zeros and read back as zeros (each inode once).
    pub bytes: u64,
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
    /// The files hold more than `max_bytes`.
    #[error(
        "the files under {root} hold {total} bytes, more than --max-bytes {max}; nothing was written"
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
    /// Refuse (before writing anything) when the files hold more bytes than this.
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
        let total = total_bytes(root, meta.dev())?;
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
        seen: HashSet::new(),
        zeros: vec![0u8; CHUNK],
        buffer: vec![0u8; CHUNK],
    };
    wiper.wipe_children(root, Path::new(""))?;
    let files = wiper.records.len() as u64;
    Ok(Report {
        files,
        bytes: wiper.bytes,
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

/// Total size of the regular files under `dir`, without following symlinks.
fn total_bytes(dir: &Path, device: u64) -> Result<u64, WipeError> {
    let mut total = 0u64;
    for path in entries(dir)? {
        let meta = fs::symlink_metadata(&path).map_err(io_error(&path, "reading metadata"))?;
        if meta.is_dir() {
            if meta.dev() != device {
                return Err(WipeError::OtherFilesystem(path));
            }
            total = total.saturating_add(total_bytes(&path, device)?);
        } else if meta.is_file() {
            total = total.saturating_add(meta.len());
        }
    }
    Ok(total)
}

struct Wiper {
    device: u64,
    records: Vec<(Vec<u8>, u64)>,
    bytes: u64,
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
            overwrite(path, &file, size, &self.zeros)?;
            self.bytes = self.bytes.saturating_add(size);
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

fn overwrite(path: &Path, mut file: &File, size: u64, zeros: &[u8]) -> Result<(), WipeError> {
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])
            .map_err(io_error(path, "overwriting"))?;
        left -= n as u64;
    }
    file.sync_all().map_err(io_error(path, "syncing"))
}

/// Overwrite the first `size` bytes of the file at `path` with zeros, in place
/// (no truncation), and sync it to storage. Symlinks are refused.
pub fn overwrite_with_zeros(path: &Path, size: u64) -> Result<(), WipeError> {
    let listed = fs::symlink_metadata(path).map_err(io_error(path, "reading metadata"))?;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path, "opening for writing"))?;
    same_file(path, &file, &listed)?;
    overwrite(path, &file, size, &vec![0u8; CHUNK])
}

/// Read the file back and check that it holds exactly `size` bytes, all zero.
pub fn verify_zeros(path: &Path, size: u64) -> Result<(), WipeError> {
    verify_zeros_with(path, size, &mut vec![0u8; CHUNK])
}

fn verify_zeros_with(path: &Path, size: u64, buffer: &mut [u8]) -> Result<(), WipeError> {
    let mut file = File::open(path).map_err(io_error(path, "opening for reading"))?;
    let mut offset = 0u64;
    loop {
        let n = match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(path, "reading back")(e)),
        };
        if let Some(i) = buffer[..n].iter().position(|&b| b != 0) {
            return Err(WipeError::NotZero {
                path: path.to_path_buf(),
                offset: offset + i as u64,
            });
        }
        offset += n as u64;
    }
    if offset != size {
        return Err(WipeError::SizeChanged {
            path: path.to_path_buf(),
            expected: size,
            found: offset,
        });
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

    #[test]
    fn report_serializes_as_one_json_line() {
        let report = Report {
            files: 2,
            bytes: 10,
            digest: "ab".repeat(32),
            verified: true,
        };
        let json = serde_json::to_string(&report).expect("json");
        assert_eq!(
            json,
            format!(
                r#"{{"files":2,"bytes":10,"digest":"{}","verified":true}}"#,
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
