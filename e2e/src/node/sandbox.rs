//! The container-like sandbox a pod's process runs in.
//!
//! The runner computes a [`SandboxSpec`] (pure: [`plan_rootfs`]) and starts
//! `cleanroom-e2e-node sandbox-exec --spec FILE`, a fresh single-threaded process that
//! [`exec`]s it: a private mount namespace, a rootfs of read-only host binds plus the
//! pod's mounts, `chroot`, credentials, then `execve` of the container's command.
//! All mounts live only in that namespace and vanish with its last process.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// One step of building the rootfs; paths named `path`/`dst` are inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum MountOp {
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    Symlink {
        target: PathBuf,
        path: PathBuf,
    },
    /// Bind `src` (a host path) at `dst`; the mount point is made to match `src`'s type.
    Bind {
        src: PathBuf,
        dst: PathBuf,
        read_only: bool,
        recursive: bool,
    },
    Tmpfs {
        dst: PathBuf,
        mode: u32,
    },
}

/// Everything `sandbox-exec` needs; written by the runner as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    /// Host directory the rootfs is built in (absolute, canonical).
    pub rootfs: PathBuf,
    pub ops: Vec<MountOp>,
    pub working_dir: PathBuf,
    pub argv: Vec<String>,
    /// What to execute; when unset, `argv[0]` is looked up in the container's PATH.
    pub program: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    /// Host path of the termination message file, where setup errors are reported.
    pub termination_message_file: Option<PathBuf>,
}

/// A mount the pod asks for: a volume, the agent binary or the termination message file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerMount {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub read_only: bool,
}

/// What a host path is (without following a final symlink).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKind {
    Dir,
    File,
    Symlink(PathBuf),
    Other,
}

/// The host filesystem as the planner sees it, so that plans can be tested on a fake one.
pub trait HostFs {
    fn kind(&self, path: &Path) -> Option<HostKind>;
    fn list(&self, dir: &Path) -> std::io::Result<Vec<(String, HostKind)>>;
}

pub struct RealFs;

impl HostFs for RealFs {
    fn kind(&self, path: &Path) -> Option<HostKind> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(kind_of(path, &meta.file_type()))
    }

    fn list(&self, dir: &Path) -> std::io::Result<Vec<(String, HostKind)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            out.push((name, kind_of(&entry.path(), &entry.file_type()?)));
        }
        Ok(out)
    }
}

fn kind_of(path: &Path, ft: &std::fs::FileType) -> HostKind {
    if ft.is_symlink() {
        std::fs::read_link(path).map_or(HostKind::Other, HostKind::Symlink)
    } else if ft.is_dir() {
        HostKind::Dir
    } else if ft.is_file() {
        HostKind::File
    } else {
        HostKind::Other
    }
}

/// Host top-level entries mirrored into every rootfs (read-only, or as symlinks where
/// the host has usrmerge symlinks).
pub const HOST_TOP_LEVEL: &[&str] = &[
    "usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32",
];
/// Device nodes bound from the host into the sandbox's tmpfs `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "random", "urandom", "full"];

fn mirrors_host(path: &Path) -> bool {
    match path.components().nth(1) {
        Some(Component::Normal(first)) => HOST_TOP_LEVEL.iter().any(|t| first == *t),
        _ => false,
    }
}

/// Lexically normalises an absolute path (`.` dropped, `..` pops, clamped at `/`).
pub fn lexical_normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Validates a mount destination: absolute, no `..`, not `/`, not under `/proc`.
pub fn validate_dst(dst: &Path) -> Result<PathBuf, String> {
    if !dst.is_absolute() {
        return Err(format!("mount path {} is not absolute", dst.display()));
    }
    if dst.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "mount path {} must not contain '..'",
            dst.display()
        ));
    }
    let dst = lexical_normalise(dst);
    if dst == Path::new("/") {
        return Err("cannot mount over /".to_string());
    }
    if dst.starts_with("/proc") {
        return Err(format!(
            "cannot mount at {}: /proc is reserved",
            dst.display()
        ));
    }
    Ok(dst)
}

/// Follows host symlinks along the part of `path` that mirrors the host, so that a
/// mount at e.g. `/bin/agent` lands in the real directory (`/usr/bin`) of the rootfs.
pub fn resolve_mirrored(fs: &dyn HostFs, path: &Path) -> Result<PathBuf, String> {
    let mut path = path.to_path_buf();
    'outer: for _ in 0..40 {
        let comps: Vec<_> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                _ => None,
            })
            .collect();
        let mut cur = PathBuf::from("/");
        for (i, c) in comps.iter().enumerate() {
            let next = cur.join(c);
            if !mirrors_host(&next) {
                return Ok(path);
            }
            match fs.kind(&next) {
                Some(HostKind::Symlink(target)) => {
                    let mut base = if target.is_absolute() {
                        target
                    } else {
                        cur.join(target)
                    };
                    for rest in &comps[i + 1..] {
                        base.push(rest);
                    }
                    path = lexical_normalise(&base);
                    continue 'outer;
                }
                Some(HostKind::Dir) => cur = next,
                Some(_) if i + 1 == comps.len() => return Ok(path),
                Some(_) => {
                    return Err(format!("{} is not a directory on the host", next.display()));
                }
                None => return Ok(path),
            }
        }
        return Ok(path);
    }
    Err(format!("too many symlinks resolving {}", path.display()))
}

/// The rootfs plan: host mirrors (exploded into real directories wherever a mount has
/// to go inside them, so that nothing is ever created in the host's own directories),
/// `/proc`, a tmpfs `/dev` with a few device nodes, a tmpfs `/tmp`, then the pod's mounts
/// shallowest first.
pub fn plan_rootfs(fs: &dyn HostFs, mounts: &[ContainerMount]) -> Result<Vec<MountOp>, String> {
    let mut resolved = Vec::with_capacity(mounts.len());
    for m in mounts {
        let dst = resolve_mirrored(fs, &validate_dst(&m.dst)?)?;
        if resolved.iter().any(|r: &ContainerMount| r.dst == dst) {
            return Err(format!("more than one mount at {}", dst.display()));
        }
        resolved.push(ContainerMount { dst, ..m.clone() });
    }
    let dsts: BTreeSet<PathBuf> = resolved.iter().map(|m| m.dst.clone()).collect();
    let covered = |p: &Path| dsts.iter().any(|d| p.starts_with(d));
    let mut exploded = BTreeSet::new();
    for d in &dsts {
        for a in d.ancestors().skip(1) {
            if a != Path::new("/") && mirrors_host(a) && !covered(a) {
                exploded.insert(a.to_path_buf());
            }
        }
    }

    let mut ops = Vec::new();
    for top in HOST_TOP_LEVEL {
        let p = Path::new("/").join(top);
        if dsts.contains(&p) {
            continue;
        }
        mirror_entry(fs, &p, fs.kind(&p), &exploded, &dsts, &mut ops)?;
    }

    ops.push(MountOp::Mkdir {
        path: "/proc".into(),
        mode: 0o555,
    });
    ops.push(bind("/proc", "/proc", false, true));

    ops.push(MountOp::Mkdir {
        path: "/dev".into(),
        mode: 0o755,
    });
    ops.push(MountOp::Tmpfs {
        dst: "/dev".into(),
        mode: 0o755,
    });
    for d in DEVICES {
        let p = format!("/dev/{d}");
        ops.push(bind(&p, &p, false, false));
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(MountOp::Symlink {
            target: target.into(),
            path: Path::new("/dev").join(name),
        });
    }
    ops.push(MountOp::Mkdir {
        path: "/dev/shm".into(),
        mode: 0o1777,
    });
    ops.push(MountOp::Tmpfs {
        dst: "/dev/shm".into(),
        mode: 0o1777,
    });

    ops.push(MountOp::Mkdir {
        path: "/tmp".into(),
        mode: 0o1777,
    });
    ops.push(MountOp::Tmpfs {
        dst: "/tmp".into(),
        mode: 0o1777,
    });

    // Parents before children, so that nested mounts land inside their parent mount.
    resolved.sort_by(|a, b| {
        (a.dst.components().count(), &a.dst).cmp(&(b.dst.components().count(), &b.dst))
    });
    for m in resolved {
        ops.push(MountOp::Bind {
            src: m.src,
            dst: m.dst,
            read_only: m.read_only,
            recursive: true,
        });
    }
    Ok(ops)
}

fn bind(src: &str, dst: &str, read_only: bool, recursive: bool) -> MountOp {
    MountOp::Bind {
        src: src.into(),
        dst: dst.into(),
        read_only,
        recursive,
    }
}

fn mirror_entry(
    fs: &dyn HostFs,
    p: &Path,
    kind: Option<HostKind>,
    exploded: &BTreeSet<PathBuf>,
    dsts: &BTreeSet<PathBuf>,
    ops: &mut Vec<MountOp>,
) -> Result<(), String> {
    match kind {
        Some(HostKind::Symlink(target)) => ops.push(MountOp::Symlink {
            target,
            path: p.to_path_buf(),
        }),
        Some(HostKind::Dir) if exploded.contains(p) => {
            ops.push(MountOp::Mkdir {
                path: p.to_path_buf(),
                mode: 0o755,
            });
            let mut entries = fs
                .list(p)
                .map_err(|e| format!("listing {} on the host: {e}", p.display()))?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, kind) in entries {
                let child = p.join(name);
                if !dsts.contains(&child) {
                    mirror_entry(fs, &child, Some(kind), exploded, dsts, ops)?;
                }
            }
        }
        Some(HostKind::Dir) => ops.push(MountOp::Bind {
            src: p.to_path_buf(),
            dst: p.to_path_buf(),
            read_only: true,
            recursive: true,
        }),
        Some(HostKind::File) => ops.push(MountOp::Bind {
            src: p.to_path_buf(),
            dst: p.to_path_buf(),
            read_only: true,
            recursive: false,
        }),
        Some(HostKind::Other) | None => {}
    }
    Ok(())
}

/// Looks `name` up in `path_var` inside the (already entered) rootfs.
pub fn lookup_in_path(
    name: &str,
    path_var: &str,
    is_executable: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    path_var
        .split(':')
        .map(|dir| {
            if dir.is_empty() {
                Path::new(".")
            } else {
                Path::new(dir)
            }
        })
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

// ---------------------------------------------------------------------------------------
// The helper process side. Everything below runs in `sandbox-exec`, single-threaded.

/// Exit codes of the helper when it cannot exec the command (shell conventions).
pub const EXIT_SETUP_FAILED: i32 = 128;
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;

/// Entry point of `sandbox-exec`: only returns (with an exit code) on failure.
pub fn sandbox_exec_main(spec_file: &Path) -> i32 {
    let spec = match read_spec(spec_file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("e2e-node sandbox: {e:#}");
            return EXIT_SETUP_FAILED;
        }
    };
    // Opened before the chroot so that errors after it can still be reported.
    let mut message_file = spec
        .termination_message_file
        .as_ref()
        .and_then(|p| std::fs::OpenOptions::new().append(true).open(p).ok());
    let (code, err) = match exec(&spec) {
        Ok(never) => match never {},
        Err(e) => {
            let code = e
                .downcast_ref::<ExecError>()
                .map_or(EXIT_SETUP_FAILED, |x| x.code);
            (code, e)
        }
    };
    let text = format!("e2e-node sandbox: {err:#}\n");
    eprint!("{text}");
    if let Some(f) = message_file.as_mut()
        && f.metadata().map(|m| m.len() == 0).unwrap_or(false)
    {
        // Best effort: the runner falls back to exit code and logs.
        let _ = f.write_all(text.as_bytes());
    }
    code
}

#[derive(Debug)]
struct ExecError {
    code: i32,
    msg: String,
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ExecError {}

fn read_spec(path: &Path) -> anyhow::Result<SandboxSpec> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // The spec holds the container's environment (possibly secrets): don't leave it around.
    let _ = std::fs::remove_file(path);
    serde_json::from_slice(&data).context("parsing the sandbox spec")
}

fn exec(spec: &SandboxSpec) -> anyhow::Result<Infallible> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    use nix::unistd::{Gid, Uid, chdir, chroot, setgid, setgroups, setuid};

    if spec.argv.is_empty() {
        bail!("empty command");
    }
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    // Nothing mounted from here on may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / private")?;

    std::fs::create_dir_all(&spec.rootfs)
        .with_context(|| format!("creating {}", spec.rootfs.display()))?;
    let rootfs = spec.rootfs.canonicalize().context("resolving the rootfs")?;
    for op in &spec.ops {
        apply(&rootfs, op).with_context(|| format!("{op:?}"))?;
    }

    chroot(&rootfs).context("chroot")?;
    chdir("/").context("chdir /")?;
    std::fs::create_dir_all(&spec.working_dir)
        .with_context(|| format!("creating working directory {}", spec.working_dir.display()))?;

    if let Some(gid) = spec.gid.or(spec.uid.map(|_| 0)) {
        let mut groups: Vec<Gid> = vec![Gid::from_raw(gid)];
        groups.extend(spec.supplemental_groups.iter().map(|g| Gid::from_raw(*g)));
        setgroups(&groups).context("setgroups")?;
        setgid(Gid::from_raw(gid)).context("setgid")?;
    }
    if let Some(uid) = spec.uid {
        setuid(Uid::from_raw(uid)).context("setuid")?;
    }
    chdir(&spec.working_dir).with_context(|| format!("chdir {}", spec.working_dir.display()))?;
    // Set after the credential change, which clears it: the process dies with the runner.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("PR_SET_PDEATHSIG")?;
    // Rust ignores SIGPIPE and ignored signals survive execve; a container expects the default.
    // SAFETY: restoring the default disposition installs no handler.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    }
    .context("resetting SIGPIPE")?;

    let path_var = spec.env.iter().find(|(k, _)| k == "PATH").map_or(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        |(_, v)| v.as_str(),
    );
    let program = match &spec.program {
        Some(p) => p.clone(),
        None => {
            lookup_in_path(&spec.argv[0], path_var, &is_executable).ok_or_else(|| ExecError {
                code: EXIT_NOT_FOUND,
                msg: format!("{:?}: executable file not found in $PATH", spec.argv[0]),
            })?
        }
    };
    let c = |s: &[u8]| CString::new(s).context("NUL byte in command or environment");
    let prog = c(program.as_os_str().as_bytes())?;
    let argv = spec
        .argv
        .iter()
        .map(|a| c(a.as_bytes()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let envp = spec
        .env
        .iter()
        .map(|(k, v)| c(format!("{k}={v}").as_bytes()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let err = match nix::unistd::execve(&prog, &argv, &envp) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let code = match err {
        nix::errno::Errno::ENOENT => EXIT_NOT_FOUND,
        _ => EXIT_NOT_EXECUTABLE,
    };
    Err(ExecError {
        code,
        msg: format!("exec {}: {err}", program.display()),
    }
    .into())
}

fn is_executable(p: &Path) -> bool {
    use nix::unistd::{AccessFlags, access};
    std::fs::metadata(p).is_ok_and(|m| m.is_file()) && access(p, AccessFlags::X_OK).is_ok()
}

fn in_rootfs(rootfs: &Path, path: &Path) -> PathBuf {
    rootfs.join(path.strip_prefix("/").unwrap_or(path))
}

/// Refuses to create anything whose nearest existing ancestor resolves outside the rootfs
/// (an absolute symlink inside a mirrored or volume directory would otherwise lead there).
fn ensure_confined(rootfs: &Path, target: &Path) -> anyhow::Result<()> {
    let mut existing = target;
    while std::fs::symlink_metadata(existing).is_err() {
        existing = existing.parent().context("no existing ancestor")?;
    }
    let real = existing.canonicalize()?;
    anyhow::ensure!(
        real.starts_with(rootfs),
        "{} resolves outside the rootfs",
        target.display()
    );
    Ok(())
}

fn apply(rootfs: &Path, op: &MountOp) -> anyhow::Result<()> {
    use nix::mount::{MsFlags, mount};
    use std::os::unix::fs::PermissionsExt;

    match op {
        MountOp::Mkdir { path, mode } => {
            let target = in_rootfs(rootfs, path);
            ensure_confined(rootfs, &target)?;
            std::fs::create_dir_all(&target)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))?;
        }
        MountOp::Symlink { target, path } => {
            let link = in_rootfs(rootfs, path);
            // The link itself may point anywhere (it is resolved inside the chroot later).
            ensure_confined(rootfs, link.parent().unwrap_or(rootfs))?;
            match std::fs::read_link(&link) {
                Ok(existing) if &existing == target => {}
                Ok(_) => {
                    std::fs::remove_file(&link)?;
                    std::os::unix::fs::symlink(target, &link)?;
                }
                Err(_) => std::os::unix::fs::symlink(target, &link)?,
            }
        }
        MountOp::Tmpfs { dst, mode } => {
            let target = in_rootfs(rootfs, dst);
            ensure_confined(rootfs, &target)?;
            std::fs::create_dir_all(&target)?;
            let data = format!("mode={mode:o}");
            mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::MS_NOSUID,
                Some(data.as_str()),
            )?;
        }
        MountOp::Bind {
            src,
            dst,
            read_only,
            recursive,
        } => {
            let target = in_rootfs(rootfs, dst);
            ensure_confined(rootfs, &target)?;
            let src_meta =
                std::fs::metadata(src).with_context(|| format!("source {}", src.display()))?;
            if src_meta.is_dir() {
                std::fs::create_dir_all(&target)?;
            } else {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if std::fs::symlink_metadata(&target).is_err() {
                    std::fs::File::create(&target)?;
                }
            }
            // The mount point must not have been swapped for a link out of the rootfs.
            let real = target.canonicalize()?;
            anyhow::ensure!(
                real.starts_with(rootfs),
                "{} resolves outside the rootfs",
                target.display()
            );
            let mut flags = MsFlags::MS_BIND;
            if *recursive {
                flags |= MsFlags::MS_REC;
            }
            mount(
                Some(src.as_path()),
                &real,
                None::<&str>,
                flags,
                None::<&str>,
            )?;
            if *read_only {
                // A read-only bind needs a remount; keep the flags the source mount has
                // (nosuid, nodev, noexec), which the kernel refuses to drop.
                let vfs = nix::sys::statvfs::statvfs(&real)?;
                let f = vfs.flags();
                use nix::sys::statvfs::FsFlags;
                let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                for (have, keep) in [
                    (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                    (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                    (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                    (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                    (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                    (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
                ] {
                    if f.contains(have) {
                        flags |= keep;
                    }
                }
                mount(None::<&str>, &real, None::<&str>, flags, None::<&str>)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A fake host: paths to kinds; directory listings are derived from the keys.
    struct FakeFs(BTreeMap<PathBuf, HostKind>);

    impl FakeFs {
        fn new(entries: &[(&str, HostKind)]) -> Self {
            Self(
                entries
                    .iter()
                    .map(|(p, k)| (PathBuf::from(p), k.clone()))
                    .collect(),
            )
        }
    }

    impl HostFs for FakeFs {
        fn kind(&self, path: &Path) -> Option<HostKind> {
            self.0.get(path).cloned()
        }
        fn list(&self, dir: &Path) -> std::io::Result<Vec<(String, HostKind)>> {
            Ok(self
                .0
                .iter()
                .filter(|(p, _)| p.parent() == Some(dir))
                .filter_map(|(p, k)| Some((p.file_name()?.to_str()?.to_string(), k.clone())))
                .collect())
        }
    }

    fn host() -> FakeFs {
        use HostKind::*;
        FakeFs::new(&[
            ("/usr", Dir),
            ("/usr/bin", Dir),
            ("/usr/bin/sh", File),
            ("/usr/lib", Dir),
            ("/usr/local", Dir),
            ("/usr/local/bin", Dir),
            ("/usr/local/bin/kubectl", File),
            ("/usr/local/bin/tool", Symlink("/opt/tool".into())),
            ("/usr/local/share", Dir),
            ("/etc", Dir),
            ("/etc/alt", Symlink("/usr/bin".into())),
            ("/bin", Symlink("usr/bin".into())),
            ("/lib", Symlink("usr/lib".into())),
            ("/lib64", Dir),
        ])
    }

    fn m(src: &str, dst: &str, ro: bool) -> ContainerMount {
        ContainerMount {
            src: src.into(),
            dst: dst.into(),
            read_only: ro,
        }
    }

    fn b(src: &str, dst: &str, ro: bool, rec: bool) -> MountOp {
        bind(src, dst, ro, rec)
    }

    fn tail_ops() -> Vec<MountOp> {
        let mut ops = vec![
            MountOp::Mkdir {
                path: "/proc".into(),
                mode: 0o555,
            },
            b("/proc", "/proc", false, true),
            MountOp::Mkdir {
                path: "/dev".into(),
                mode: 0o755,
            },
            MountOp::Tmpfs {
                dst: "/dev".into(),
                mode: 0o755,
            },
        ];
        for d in DEVICES {
            let p = format!("/dev/{d}");
            ops.push(b(&p, &p, false, false));
        }
        for (n, t) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            ops.push(MountOp::Symlink {
                target: t.into(),
                path: Path::new("/dev").join(n),
            });
        }
        ops.extend([
            MountOp::Mkdir {
                path: "/dev/shm".into(),
                mode: 0o1777,
            },
            MountOp::Tmpfs {
                dst: "/dev/shm".into(),
                mode: 0o1777,
            },
            MountOp::Mkdir {
                path: "/tmp".into(),
                mode: 0o1777,
            },
            MountOp::Tmpfs {
                dst: "/tmp".into(),
                mode: 0o1777,
            },
        ]);
        ops
    }

    #[test]
    fn plain_rootfs_binds_host_dirs_and_keeps_symlinks() {
        let ops = plan_rootfs(&host(), &[m("/v/pvc-1", "/work", false)]).unwrap();
        let mut expected = vec![
            b("/usr", "/usr", true, true),
            b("/etc", "/etc", true, true),
            MountOp::Symlink {
                target: "usr/bin".into(),
                path: "/bin".into(),
            },
            MountOp::Symlink {
                target: "usr/lib".into(),
                path: "/lib".into(),
            },
            b("/lib64", "/lib64", true, true),
        ];
        expected.extend(tail_ops());
        expected.push(b("/v/pvc-1", "/work", false, true));
        assert_eq!(ops, expected);
    }

    #[test]
    fn agent_binary_explodes_usr_down_to_its_directory() {
        let ops = plan_rootfs(
            &host(),
            &[
                m("/build/agent", "/usr/local/bin/agent", true),
                m("/r/pods/u/termination-log", "/dev/termination-log", false),
            ],
        )
        .unwrap();
        let mut expected = vec![
            MountOp::Mkdir {
                path: "/usr".into(),
                mode: 0o755,
            },
            b("/usr/bin", "/usr/bin", true, true),
            b("/usr/lib", "/usr/lib", true, true),
            MountOp::Mkdir {
                path: "/usr/local".into(),
                mode: 0o755,
            },
            MountOp::Mkdir {
                path: "/usr/local/bin".into(),
                mode: 0o755,
            },
            b(
                "/usr/local/bin/kubectl",
                "/usr/local/bin/kubectl",
                true,
                false,
            ),
            MountOp::Symlink {
                target: "/opt/tool".into(),
                path: "/usr/local/bin/tool".into(),
            },
            b("/usr/local/share", "/usr/local/share", true, true),
            b("/etc", "/etc", true, true),
            MountOp::Symlink {
                target: "usr/bin".into(),
                path: "/bin".into(),
            },
            MountOp::Symlink {
                target: "usr/lib".into(),
                path: "/lib".into(),
            },
            b("/lib64", "/lib64", true, true),
        ];
        expected.extend(tail_ops());
        expected.push(b(
            "/r/pods/u/termination-log",
            "/dev/termination-log",
            false,
            true,
        ));
        expected.push(b("/build/agent", "/usr/local/bin/agent", true, true));
        assert_eq!(ops, expected);
    }

    #[test]
    fn mounts_through_host_symlinks_land_in_the_real_directory() {
        let fs = host();
        assert_eq!(
            resolve_mirrored(&fs, Path::new("/bin/agent")).unwrap(),
            PathBuf::from("/usr/bin/agent")
        );
        assert_eq!(
            resolve_mirrored(&fs, Path::new("/etc/alt/x")).unwrap(),
            PathBuf::from("/usr/bin/x")
        );
        assert_eq!(
            resolve_mirrored(&fs, Path::new("/work/a")).unwrap(),
            PathBuf::from("/work/a")
        );
        assert!(resolve_mirrored(&fs, Path::new("/usr/bin/sh/x")).is_err());
        let ops = plan_rootfs(&fs, &[m("/build/agent", "/bin/agent", true)]).unwrap();
        assert_eq!(
            ops[0],
            MountOp::Mkdir {
                path: "/usr".into(),
                mode: 0o755
            }
        );
        assert_eq!(
            ops[1],
            MountOp::Mkdir {
                path: "/usr/bin".into(),
                mode: 0o755
            }
        );
        assert_eq!(ops[2], b("/usr/bin/sh", "/usr/bin/sh", true, false));
        assert_eq!(
            ops.last(),
            Some(&b("/build/agent", "/usr/bin/agent", true, true))
        );
    }

    #[test]
    fn symlink_loops_are_refused() {
        let fs = FakeFs::new(&[
            ("/etc", HostKind::Dir),
            ("/etc/a", HostKind::Symlink("/etc/a".into())),
        ]);
        assert!(
            resolve_mirrored(&fs, Path::new("/etc/a/x"))
                .unwrap_err()
                .contains("too many")
        );
    }

    #[test]
    fn nested_mounts_are_ordered_and_not_exploded_inside_volumes() {
        let ops = plan_rootfs(
            &host(),
            &[
                m("/v/b", "/usr/local/x/y", false),
                m("/v/a", "/usr/local", false),
            ],
        )
        .unwrap();
        // /usr is exploded (a mount replaces /usr/local), /usr/local is the volume itself.
        assert_eq!(
            ops[0],
            MountOp::Mkdir {
                path: "/usr".into(),
                mode: 0o755
            }
        );
        assert!(
            !ops.iter().any(
                |o| matches!(o, MountOp::Mkdir { path, .. } if path == Path::new("/usr/local"))
            )
        );
        let n = ops.len();
        assert_eq!(ops[n - 2], b("/v/a", "/usr/local", false, true));
        assert_eq!(ops[n - 1], b("/v/b", "/usr/local/x/y", false, true));
    }

    #[test]
    fn destinations_are_validated() {
        assert!(validate_dst(Path::new("work")).is_err());
        assert!(validate_dst(Path::new("/a/../b")).is_err());
        assert!(validate_dst(Path::new("/")).is_err());
        assert!(validate_dst(Path::new("/proc/x")).is_err());
        assert_eq!(
            validate_dst(Path::new("/a/./b/")).unwrap(),
            PathBuf::from("/a/b")
        );
        let dup = plan_rootfs(&host(), &[m("/a", "/w", false), m("/b", "/w/", false)]);
        assert!(dup.unwrap_err().contains("more than one"));
    }

    #[test]
    fn path_lookup() {
        let exists = |p: &Path| p == Path::new("/usr/bin/sh");
        assert_eq!(
            lookup_in_path("sh", "/bin2:/usr/bin", &exists),
            Some(PathBuf::from("/usr/bin/sh"))
        );
        assert_eq!(lookup_in_path("nope", "/usr/bin", &exists), None);
        assert_eq!(
            lookup_in_path("./x", "", &exists),
            Some(PathBuf::from("./x"))
        );
    }

    #[test]
    fn spec_round_trips_as_json() {
        let spec = SandboxSpec {
            rootfs: "/r/pods/u/rootfs".into(),
            ops: vec![MountOp::Tmpfs {
                dst: "/tmp".into(),
                mode: 0o1777,
            }],
            working_dir: "/".into(),
            argv: vec!["sh".into()],
            program: None,
            env: vec![("A".into(), "b".into())],
            uid: Some(1000),
            gid: None,
            supplemental_groups: vec![],
            termination_message_file: None,
        };
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json["ops"][0],
            serde_json::json!({"op": "tmpfs", "dst": "/tmp", "mode": 1023})
        );
        assert_eq!(serde_json::from_value::<SandboxSpec>(json).unwrap(), spec);
    }

    #[test]
    fn rootfs_ops_stay_inside_the_rootfs() {
        let base =
            std::env::temp_dir().join(format!("cleanroom-sandbox-test-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let rootfs = base.canonicalize().unwrap();
        let link = MountOp::Symlink {
            target: "/etc".into(),
            path: "/escape".into(),
        };
        // Re-applying a link that points out of the rootfs is fine: it is only followed
        // inside the chroot.
        apply(&rootfs, &link).unwrap();
        apply(&rootfs, &link).unwrap();
        assert_eq!(
            std::fs::read_link(rootfs.join("escape")).unwrap(),
            PathBuf::from("/etc")
        );
        // Creating something through that link would write to the host: refused.
        let through = MountOp::Mkdir {
            path: "/escape/cleanroom-should-not-exist".into(),
            mode: 0o755,
        };
        assert!(
            apply(&rootfs, &through)
                .unwrap_err()
                .to_string()
                .contains("outside the rootfs")
        );
        assert!(!Path::new("/etc/cleanroom-should-not-exist").exists());
        apply(
            &rootfs,
            &MountOp::Mkdir {
                path: "/a/b".into(),
                mode: 0o700,
            },
        )
        .unwrap();
        assert!(rootfs.join("a/b").is_dir());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
