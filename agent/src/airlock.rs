//! The airlock's copies: `seal` (workspace outbox -> a fresh volume, with a
//! manifest of sizes and SHA-256s), `verify` (a sealed copy is still exactly
//! what was sealed) and `release` (sealed copy -> release directory, hashes
//! checked again on arrival).
//!
//! A sealed directory holds `manifest.json` and the files under `files/`:
//!
//! ```json
//! {"version": 1, "files": [{"name": "by-district.csv", "kind": "Table",
//!   "size": 1234, "sha256": "<hex>", "columns": {"keys": ["district"]}}]}
//! ```
//!
//! The manifest's own SHA-256 is what the operator records and passes back
//! to `verify` and `release`: a copy whose manifest or files changed after
//! sealing is refused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the manifest format.
pub const MANIFEST_VERSION: u32 = 1;
/// Name of the manifest in a sealed or released directory.
pub const MANIFEST: &str = "manifest.json";
/// Directory of the files in a sealed copy.
pub const FILES: &str = "files";

/// What the operator asks to seal: the manifest without sizes and hashes.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub files: Vec<Requested>,
}

/// One file asked for.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Requested {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub columns: Option<serde_json::Value>,
    /// An import's declared columns (names and types), checked by the scan.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
}

/// The manifest of a sealed copy.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Manifest {
    pub version: u32,
    pub files: Vec<Entry>,
}

/// One sealed file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub kind: String,
    pub size: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
}

/// What `seal`, `verify` and `release` print (and leave in the termination
/// log): the manifest hash and each file's size and hash, in request order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub manifest_sha256: String,
    pub files: Vec<Digest256>,
}

/// A file's size and hash (its name is the request's, in the same order).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Digest256 {
    pub size: u64,
    pub sha256: String,
}

/// Why an airlock copy failed. Messages name files, never their content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Refused(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A relative path of plain components: no `..`, no root, no hidden parts.
fn checked_name(name: &str) -> Result<&Path, Error> {
    let path = Path::new(name);
    let plain = !name.is_empty()
        && path.components().all(|c| match c {
            Component::Normal(part) => !part.to_string_lossy().starts_with('.'),
            _ => false,
        });
    if plain {
        Ok(path)
    } else {
        Err(Error::Refused(format!(
            "{name:?} is not a plain relative path"
        )))
    }
}

/// Opens `root/name` for reading without following a symbolic link in any
/// part of the path: a link in the outbox could point at anything the
/// workspace can see.
fn open_plain(root: &Path, name: &str) -> Result<File, Error> {
    let path = checked_name(name)?;
    let mut at = root.to_path_buf();
    for part in path.components() {
        at.push(part);
        let meta = fs::symlink_metadata(&at).map_err(io(format!("reading {name}")))?;
        if meta.file_type().is_symlink() {
            return Err(Error::Refused(format!(
                "{name}: a symbolic link is never copied"
            )));
        }
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&at)
        .map_err(io(format!("opening {name}")))?;
    let meta = file.metadata().map_err(io(format!("reading {name}")))?;
    if !meta.is_file() {
        return Err(Error::Refused(format!("{name} is not a regular file")));
    }
    Ok(file)
}

/// Copies `from` to a new file `to` (parents created), returning size and hash.
fn copy_hashed(mut from: File, to: &Path, name: &str) -> Result<Digest256, Error> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(io(format!("creating the directory of {name}")))?;
    }
    let mut out = File::create(to).map_err(io(format!("creating {name}")))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(io(format!("reading {name}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io(format!("writing {name}")))?;
        size += n as u64;
    }
    out.sync_all().map_err(io(format!("writing {name}")))?;
    Ok(Digest256 {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Size and hash of a file already in place.
fn hash_file(path: &Path, name: &str) -> Result<Digest256, Error> {
    let mut file = File::open(path).map_err(io(format!("opening {name}")))?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher).map_err(io(format!("reading {name}")))?;
    Ok(Digest256 {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Copies the requested files from `from` into `to/files/` and writes
/// `to/manifest.json`. Anything already in `to` (a previous attempt) is
/// replaced: a seal always starts from the outbox.
pub fn seal(from: &Path, to: &Path, request: &Request) -> Result<Outcome, Error> {
    if request.files.is_empty() {
        return Err(Error::Refused("nothing to seal".into()));
    }
    let files_dir = to.join(FILES);
    if files_dir.exists() {
        fs::remove_dir_all(&files_dir).map_err(io("clearing an earlier attempt"))?;
    }
    let mut entries = Vec::with_capacity(request.files.len());
    for asked in &request.files {
        let source = open_plain(from, &asked.name)?;
        let digest = copy_hashed(source, &files_dir.join(&asked.name), &asked.name)?;
        entries.push(Entry {
            name: asked.name.clone(),
            kind: asked.kind.clone(),
            size: digest.size,
            sha256: digest.sha256,
            columns: asked.columns.clone(),
            schema: asked.schema.clone(),
        });
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        files: entries,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Refused(e.to_string()))?;
    write_synced(&to.join(MANIFEST), &bytes)?;
    Ok(outcome(&manifest, &bytes))
}

fn outcome(manifest: &Manifest, bytes: &[u8]) -> Outcome {
    Outcome {
        manifest_sha256: sha256_hex(bytes),
        files: manifest
            .files
            .iter()
            .map(|e| Digest256 {
                size: e.size,
                sha256: e.sha256.clone(),
            })
            .collect(),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut file = File::create(path).map_err(io("writing the manifest"))?;
    file.write_all(bytes).map_err(io("writing the manifest"))?;
    file.sync_all().map_err(io("writing the manifest"))
}

/// Reads `dir/manifest.json` and checks its hash against `expected`.
fn read_manifest(dir: &Path, expected: &str) -> Result<(Manifest, Vec<u8>), Error> {
    let bytes = fs::read(dir.join(MANIFEST)).map_err(io("reading the manifest"))?;
    let actual = sha256_hex(&bytes);
    if actual != expected {
        return Err(Error::Refused(format!(
            "the manifest's SHA-256 is {actual}, not the sealed {expected}: the copy changed after sealing"
        )));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Refused(format!("the manifest is not valid: {e}")))?;
    for entry in &manifest.files {
        checked_name(&entry.name)?;
    }
    Ok((manifest, bytes))
}

fn check_digest(entry: &Entry, got: &Digest256) -> Result<(), Error> {
    if got.size != entry.size || got.sha256 != entry.sha256 {
        return Err(Error::Refused(format!(
            "{}: {} bytes with SHA-256 {}, but {} bytes with {} were sealed",
            entry.name, got.size, got.sha256, entry.size, entry.sha256
        )));
    }
    Ok(())
}

/// Checks that the sealed copy in `dir` is exactly what was sealed.
pub fn verify(dir: &Path, expected: &str) -> Result<Outcome, Error> {
    let (manifest, bytes) = read_manifest(dir, expected)?;
    for entry in &manifest.files {
        let got = hash_file(&dir.join(FILES).join(&entry.name), &entry.name)?;
        check_digest(entry, &got)?;
    }
    Ok(outcome(&manifest, &bytes))
}

/// Copies the sealed copy in `from` to the directory `to` (which must not be
/// there yet, unless a previous attempt completed it), checking every hash on
/// arrival. The copy is made under a temporary name and renamed at the end,
/// so `to` either holds the whole verified release or does not exist.
pub fn release(from: &Path, to: &Path, expected: &str) -> Result<Outcome, Error> {
    if to.join(MANIFEST).exists() {
        // A completed earlier attempt: check it, never copy twice.
        return verify_released(to, expected);
    }
    let (manifest, bytes) = read_manifest(from, expected)?;
    let partial = partial_dir(to)?;
    for entry in &manifest.files {
        let source = File::open(from.join(FILES).join(&entry.name))
            .map_err(io(format!("opening {}", entry.name)))?;
        let got = copy_hashed(source, &partial.join(&entry.name), &entry.name)?;
        check_digest(entry, &got)?;
    }
    write_synced(&partial.join(MANIFEST), &bytes)?;
    fs::rename(&partial, to).map_err(io("moving the release into place"))?;
    verify_released(to, expected)
}

/// A fresh temporary directory beside `to`.
fn partial_dir(to: &Path) -> Result<PathBuf, Error> {
    let name = to
        .file_name()
        .ok_or_else(|| Error::Refused("the release directory has no name".into()))?;
    let partial = to.with_file_name(format!(".partial-{}", name.to_string_lossy()));
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(io("clearing an earlier attempt"))?;
    }
    fs::create_dir_all(&partial).map_err(io("creating the release directory"))?;
    Ok(partial)
}

/// Checks a released directory (files directly under it) against `expected`.
fn verify_released(dir: &Path, expected: &str) -> Result<Outcome, Error> {
    let (manifest, bytes) = read_manifest(dir, expected)?;
    for entry in &manifest.files {
        check_digest(entry, &hash_file(&dir.join(&entry.name), &entry.name)?)?;
    }
    Ok(outcome(&manifest, &bytes))
}

/// Takes a released copy back: checks that `dir` is the release of the
/// manifest `expected` (a directory holding something else is refused),
/// overwrites every file with zeros and verifies it (`agent wipe`), then
/// removes the directory and checks it is gone. A directory already gone
/// (an earlier attempt finished) reports nothing wiped. No partial copy is
/// left beside it to take back: a release renames its copy into place only
/// once complete, so an export is `Released` only after that rename.
pub fn recall(dir: &Path, expected: &str) -> Result<crate::wipe::Report, Error> {
    if fs::symlink_metadata(dir).is_err() {
        return Ok(crate::wipe::Report {
            files: 0,
            bytes: 0,
            apparent_bytes: 0,
            digest: crate::wipe::digest(&mut []),
            verified: true,
        });
    }
    // A manifest already wiped (an interrupted recall) is not checked again.
    if dir.join(MANIFEST).exists() {
        read_manifest(dir, expected)?;
    }
    let report = crate::wipe::wipe(dir, &crate::wipe::Options::default())
        .map_err(|e| Error::Refused(e.to_string()))?;
    fs::remove_dir_all(dir).map_err(io("removing the recalled directory"))?;
    if fs::symlink_metadata(dir).is_ok() {
        return Err(Error::Refused(format!("{} is still there", dir.display())));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recall_wipes_the_release_and_refuses_another_exports_directory() {
        let from = outbox(&[("a.csv", "x,n\n1,12\n"), ("sub/b.md", "# report\n")]);
        let sealed = tempfile::tempdir().unwrap();
        let out = seal(from.path(), sealed.path(), &request(&["a.csv", "sub/b.md"])).unwrap();
        let target = tempfile::tempdir().unwrap();
        let to = target.path().join("ns.export");
        release(sealed.path(), &to, &out.manifest_sha256).unwrap();
        // Another manifest's hash: this is not that export's release.
        let err = recall(&to, &sha256_hex(b"{}")).unwrap_err();
        assert!(err.to_string().contains("changed after sealing"), "{err}");
        assert!(
            to.join("a.csv").exists(),
            "a refused recall removes nothing"
        );
        let report = recall(&to, &out.manifest_sha256).unwrap();
        assert_eq!(report.files, 3, "two files and the manifest");
        assert!(report.verified && report.bytes >= 18);
        assert!(!to.exists(), "the released directory is gone");
        // Again (the operator killed after the Job): nothing left to wipe.
        let again = recall(&to, &out.manifest_sha256).unwrap();
        assert_eq!((again.files, again.bytes), (0, 0));
    }

    fn request(names: &[&str]) -> Request {
        Request {
            files: names
                .iter()
                .map(|n| Requested {
                    name: n.to_string(),
                    kind: "Table".into(),
                    columns: None,
                    schema: None,
                })
                .collect(),
        }
    }

    fn outbox(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn seal_records_sizes_and_hashes_and_release_reproduces_the_bytes() {
        let from = outbox(&[("a.csv", "x,n\n1,12\n"), ("sub/b.md", "# report\n")]);
        let sealed = tempfile::tempdir().unwrap();
        let out = seal(from.path(), sealed.path(), &request(&["a.csv", "sub/b.md"])).unwrap();
        assert_eq!(out.files[0].size, 9);
        assert_eq!(out.files[0].sha256, sha256_hex(b"x,n\n1,12\n"));
        assert_eq!(verify(sealed.path(), &out.manifest_sha256).unwrap(), out);

        // The outbox changes after sealing: the release is what was sealed.
        fs::write(from.path().join("a.csv"), "x,n\n1,2\n").unwrap();
        let target = tempfile::tempdir().unwrap();
        let to = target.path().join("ns.export");
        let released = release(sealed.path(), &to, &out.manifest_sha256).unwrap();
        assert_eq!(released, out);
        assert_eq!(fs::read(to.join("a.csv")).unwrap(), b"x,n\n1,12\n");
        assert_eq!(fs::read(to.join("sub/b.md")).unwrap(), b"# report\n");
        // Repeated (the operator killed after the copy): verified, not copied again.
        assert_eq!(
            release(sealed.path(), &to, &out.manifest_sha256).unwrap(),
            out
        );
    }

    #[test]
    fn a_sealed_copy_changed_afterwards_is_refused() {
        let from = outbox(&[("a.csv", "x,n\n1,12\n")]);
        let sealed = tempfile::tempdir().unwrap();
        let out = seal(from.path(), sealed.path(), &request(&["a.csv"])).unwrap();
        fs::write(sealed.path().join(FILES).join("a.csv"), "x,n\n1,99\n").unwrap();
        let err = verify(sealed.path(), &out.manifest_sha256).unwrap_err();
        assert!(err.to_string().contains("were sealed"), "{err}");
        let to = tempfile::tempdir().unwrap().path().join("r");
        assert!(release(sealed.path(), &to, &out.manifest_sha256).is_err());
        assert!(!to.exists(), "a refused release leaves nothing in place");
        // A manifest rewritten to match the new file has another hash.
        let err = verify(sealed.path(), &sha256_hex(b"{}")).unwrap_err();
        assert!(err.to_string().contains("changed after sealing"), "{err}");
    }

    #[test]
    fn links_hidden_parts_and_escapes_are_never_sealed() {
        let from = outbox(&[("a.csv", "1\n")]);
        let secret = outbox(&[("raw.csv", "secret\n")]);
        std::os::unix::fs::symlink(secret.path().join("raw.csv"), from.path().join("l.csv"))
            .unwrap();
        std::os::unix::fs::symlink(secret.path(), from.path().join("dir")).unwrap();
        let sealed = tempfile::tempdir().unwrap();
        for bad in [
            "l.csv",
            "dir/raw.csv",
            "../a.csv",
            "/etc/passwd",
            ".hidden",
            "a/../a.csv",
        ] {
            let err = seal(from.path(), sealed.path(), &request(&[bad])).unwrap_err();
            assert!(!err.to_string().contains("secret"), "{err}");
            assert!(
                matches!(err, Error::Refused(_) | Error::Io { .. }),
                "{bad}: {err}"
            );
        }
        let err = seal(from.path(), sealed.path(), &request(&["missing.csv"])).unwrap_err();
        assert!(err.to_string().contains("missing.csv"), "{err}");
    }
}
