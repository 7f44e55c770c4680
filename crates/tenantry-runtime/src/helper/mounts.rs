//! The sandbox's file system, built by its init inside the new mount namespace.
//!
//! Layout (everything else of the host is absent, not merely unreadable):
//!
//! | path | what | access |
//! |---|---|---|
//! | `/` | a small tmpfs | read-only |
//! | `/usr`, `/bin`, `/sbin`, `/lib*`, `/etc` | host directories, bound recursively (or the host's symlinks) | read-only, nosuid, nodev |
//! | `/dev` | tmpfs with `null`, `zero`, `full`, `random`, `urandom` bound from the host | read-only (the devices themselves writable) |
//! | `/proc` | a fresh procfs of the sandbox's PID namespace | nosuid, nodev, noexec |
//! | `/tmp` | a private tmpfs, size-limited (counted in the sandbox's memory) | read-write |
//! | `/mnt/...` | tmpfs holding only the session storage bind at `mount_path` | storage read-write, nosuid, nodev |
//! | the workdir | the agent's program directory at its host path | read-only |
//!
//! Sources are opened (`O_PATH`) *before* the init takes its in-namespace identity, so host
//! directories that only the platform's user may traverse can still be bound, and are bound
//! through `/proc/self/fd/N`: no path lookup happens after the identity change, and the
//! sandbox's uid never needs to see the host path at all.
//!
//! The new root is assembled on a tmpfs mounted over `/tmp` of the (private) mount namespace,
//! then `pivot_root` makes it `/` and the old root is detached, so no host mount stays
//! reachable. It must never bind a host directory read-write other than the storage directory.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::cgroup::mounts_under;
use crate::protocol::HelperSpec;
use crate::sys;

/// Host directories the sandbox sees read-only (or the host's symlinks of these names).
pub(crate) const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

const MS_RO_BIND: libc::c_ulong = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;

enum Source {
    Dir(OwnedFd),
    Link(PathBuf),
}

fn open_path(path: &Path) -> Result<OwnedFd, String> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", path.display()))
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn mount_err(what: &str, target: &Path) -> impl FnOnce(std::io::Error) -> String {
    let t = format!("{what} {}", target.display());
    move |e| format!("{t}: {e}")
}

/// Whether the workdir is already visible through a read-only system directory.
pub(crate) fn workdir_visible(workdir: &Path) -> bool {
    SYSTEM_DIRS.iter().any(|d| workdir.starts_with(d))
}

fn remount(target: &Path, flags: libc::c_ulong) -> Result<(), String> {
    let flags = flags | sys::locked_mount_flags(target);
    sys::mount(None, target, None, flags, None).map_err(mount_err("remounting", target))
}

/// Makes `dir` and every mount below it read-only, nosuid and nodev.
fn make_tree_read_only(dir: &Path) -> Result<(), String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading mountinfo: {e}"))?;
    for m in mounts_under(&mountinfo, dir) {
        remount(&m, MS_RO_BIND | libc::MS_NOSUID | libc::MS_NODEV)?;
    }
    Ok(())
}

fn bind(source: &Path, target: &Path, recursive: bool) -> Result<(), String> {
    let flags = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
    sys::mount(Some(source), target, None, flags, None).map_err(mount_err("binding onto", target))
}

fn tmpfs(target: &Path, flags: libc::c_ulong, options: &str) -> Result<(), String> {
    sys::mount(
        Some(Path::new("tenantry")),
        target,
        Some("tmpfs"),
        flags,
        Some(options),
    )
    .map_err(mount_err("mounting tmpfs on", target))
}

fn mkdir(path: &Path) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))
}

/// `path` (absolute) placed below `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Builds the sandbox root and pivots into it. Runs as the init, before any agent code.
pub(super) fn build_root(spec: &HelperSpec) -> Result<(), String> {
    // 1. Open every source while still holding the platform's file-system identity.
    let storage = open_path(&spec.storage_dir)?;
    let workdir = if workdir_visible(&spec.workdir) {
        None
    } else {
        Some(open_path(&spec.workdir)?)
    };
    let mut system = Vec::new();
    for dir in SYSTEM_DIRS {
        let path = Path::new(dir);
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(path).map_err(|e| format!("reading {dir}: {e}"))?;
                system.push((*dir, Source::Link(target)));
            }
            Ok(m) if m.is_dir() => system.push((*dir, Source::Dir(open_path(path)?))),
            Ok(_) | Err(_) => {}
        }
    }

    // 2. Become root of the user namespace (the host uid of the sandbox).
    if spec.privileged {
        sys::clear_groups().map_err(|e| format!("dropping supplementary groups: {e}"))?;
    }
    sys::set_ids(0, 0).map_err(|e| format!("switching to the sandbox identity: {e}"))?;

    // 3. Nothing we mount may propagate back to the host.
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(|e| format!("making mounts private: {e}"))?;

    let root = Path::new("/tmp");
    tmpfs(
        root,
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755,size=4m,nr_inodes=4096",
    )?;

    // 4. System directories, read-only.
    for (dir, source) in &system {
        let target = under(root, Path::new(dir));
        match source {
            Source::Link(to) => {
                symlink(to, &target).map_err(|e| format!("linking {dir}: {e}"))?;
            }
            Source::Dir(fd) => {
                mkdir(&target)?;
                bind(&fd_path(fd), &target, true)?;
                make_tree_read_only(&target)?;
            }
        }
    }
    drop(system);

    // 5. /dev with the harmless devices only.
    let dev = root.join("dev");
    mkdir(&dev)?;
    tmpfs(
        &dev,
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "mode=0755,size=64k,nr_inodes=64",
    )?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let target = dev.join(name);
        fs::File::create(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
        bind(&host, &target, false)?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("shm", "/tmp"),
    ] {
        symlink(to, dev.join(name)).map_err(|e| format!("linking /dev/{name}: {e}"))?;
    }
    remount(&dev, MS_RO_BIND | libc::MS_NOSUID | libc::MS_NOEXEC)?;

    // 6. A /proc of our own PID namespace.
    let proc_dir = root.join("proc");
    mkdir(&proc_dir)?;
    sys::mount(
        Some(Path::new("proc")),
        &proc_dir,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(mount_err("mounting proc on", &proc_dir))?;

    // 7. Private /tmp.
    let tmp = root.join("tmp");
    mkdir(&tmp)?;
    tmpfs(
        &tmp,
        libc::MS_NOSUID | libc::MS_NODEV,
        &format!("mode=1777,size={}m", spec.tmp_size_mb.max(1)),
    )?;

    // 8. /mnt with the session storage, the only host directory the agent can write.
    let mnt = root.join("mnt");
    mkdir(&mnt)?;
    tmpfs(
        &mnt,
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "mode=0755,size=64k,nr_inodes=64",
    )?;
    let storage_target = under(root, &spec.mount_path);
    mkdir(&storage_target)?;
    bind(&fd_path(&storage), &storage_target, false)?;
    drop(storage);
    remount(
        &storage_target,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | libc::MS_NODEV,
    )?;
    remount(
        &mnt,
        MS_RO_BIND | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    )?;

    // 9. The agent's program directory at its host path, read-only.
    if let Some(fd) = workdir {
        let target = under(root, &spec.workdir);
        mkdir(&target)?;
        bind(&fd_path(&fd), &target, true)?;
        make_tree_read_only(&target)?;
    }

    // 10. Switch roots and forget the host's.
    std::env::set_current_dir(root).map_err(|e| format!("entering the new root: {e}"))?;
    sys::pivot_root(Path::new("."), Path::new(".")).map_err(|e| format!("pivot_root: {e}"))?;
    sys::umount2(Path::new("."), libc::MNT_DETACH)
        .map_err(|e| format!("detaching the host root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("entering /: {e}"))?;
    remount(
        Path::new("/"),
        MS_RO_BIND | libc::MS_NOSUID | libc::MS_NODEV,
    )?;
    Ok(())
}
