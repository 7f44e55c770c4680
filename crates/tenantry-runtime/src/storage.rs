//! Session storage of a fixed size, platform side: ext4 file systems in sparse image files, one
//! per session, made ahead of need so a session start does not wait for `mkfs`.
//!
//! A session's storage is its directory `<dir>` and, when its size is enforced, the image
//! `<dir>.img` beside it (see `image_of`): the sandbox helper loop-mounts the image on the
//! directory for that sandbox only (see `helper::storage`), so on the host the directory stays
//! an empty mount point and the image holds everything. An image is sparse: the host's disk
//! holds only what the agent wrote (plus the file system's own metadata, well under 1 MB for a
//! 1 GiB image), and never more than the image's size.
//!
//! Made with `mkfs.ext4 -m 0 -O ^has_journal`: no blocks reserved for root (the agent can use
//! all of it), no journal (it would take 4–32 MB of the host's disk per image, written at
//! once). Without a journal, a host crash can leave a session's file system needing a check;
//! a sandbox or platform crash cannot (the kernel unmounts cleanly when the namespaces go).
//!
//! Files are private: images 0600, directories 0700, owned by the platform's user.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// The image holding the storage of the session whose directory is `dir`.
pub fn image_of(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_os_string();
    name.push(".img");
    PathBuf::from(name)
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Removes a session's storage: its directory and its image. Whether anything was there.
pub fn remove_storage(dir: &Path) -> io::Result<bool> {
    let mut removed = false;
    match fs::remove_file(image_of(dir)) {
        Ok(()) => removed = true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => removed = true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(removed)
}

/// Whether this host can give sessions image-backed storage: the platform runs as root (to
/// attach loop devices and mount ext4), `/dev/loop-control` opens, and `mkfs.ext4` is
/// installed. The `mkfs.ext4` to use, or why not.
pub fn image_support() -> Result<PathBuf, String> {
    if crate::sys::effective_ids().0 != 0 {
        return Err(
            "the platform does not run as root (loop devices and ext4 mounts need it)".into(),
        );
    }
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| format!("/dev/loop-control cannot be opened: {e}"))?;
    let mkfs = [
        "/usr/sbin/mkfs.ext4",
        "/sbin/mkfs.ext4",
        "/usr/bin/mkfs.ext4",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .ok_or("mkfs.ext4 is not installed (e2fsprogs)")?;
    Ok(mkfs)
}

/// Makes an empty ext4 file system of `size_mb` MiB in a new sparse file at `path` (mode 0600),
/// written beside it first and renamed into place, so a crash never leaves half an image there.
pub fn make_image(mkfs: &Path, path: &Path, size_mb: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    create_private_dir(dir)?;
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let made = (|| {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_len(u64::from(size_mb.max(1)) * 1024 * 1024)?;
        drop(file);
        let out = Command::new(mkfs)
            .args(["-q", "-F", "-m", "0", "-O", "^has_journal"])
            .arg(&tmp)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{} failed ({}): {}",
                mkfs.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        fs::rename(&tmp, path)
    })();
    if made.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    made
}

/// Empty images made ahead of need, per size, in a directory of their own (on the same file
/// system as the sessions' storage, so taking one is a rename). They hold nothing of anyone's.
#[derive(Debug)]
pub struct BlankImages {
    dir: PathBuf,
    mkfs: PathBuf,
    /// How many of each size used so far to keep ready.
    keep: usize,
    refilling: Mutex<HashSet<u32>>,
}

impl BlankImages {
    /// Blank images kept in `dir` (created 0700; half-made images a crash left there are
    /// removed), `keep` of each size that sessions use.
    pub fn new(dir: PathBuf, mkfs: PathBuf, keep: usize) -> io::Result<Arc<Self>> {
        create_private_dir(&dir)?;
        for entry in fs::read_dir(&dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Arc::new(Self {
            dir,
            mkfs,
            keep,
            refilling: Mutex::new(HashSet::new()),
        }))
    }

    fn ready(&self, size_mb: u32) -> Vec<PathBuf> {
        let prefix = format!("{size_mb}mb-");
        fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Blank images of `size_mb` ready now.
    pub fn available(&self, size_mb: u32) -> usize {
        self.ready(size_mb).len()
    }

    /// Puts an empty image of `size_mb` MiB at `dest`: a ready one if there is one (a rename),
    /// else one made now. Blocking (run it off the async runtime); starts a top-up in the
    /// background when a Tokio runtime is current.
    pub fn place(self: &Arc<Self>, size_mb: u32, dest: &Path) -> io::Result<()> {
        if let Some(parent) = dest.parent() {
            create_private_dir(parent)?;
        }
        let mut placed = false;
        for blank in self.ready(size_mb) {
            // Another start may take the same one first: then try the next.
            if fs::rename(&blank, dest).is_ok() {
                placed = true;
                break;
            }
        }
        if !placed {
            make_image(&self.mkfs, dest, size_mb)?;
        }
        self.refill(size_mb);
        Ok(())
    }

    /// Makes blank images of `size_mb` until `keep` are ready, in the background (one top-up
    /// per size at a time).
    pub fn refill(self: &Arc<Self>, size_mb: u32) {
        if self.keep == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let started = self
            .refilling
            .lock()
            .map(|mut r| r.insert(size_mb))
            .unwrap_or(false);
        if !started {
            return;
        }
        let blanks = Arc::clone(self);
        runtime.spawn_blocking(move || {
            while blanks.ready(size_mb).len() < blanks.keep {
                let path = blanks
                    .dir
                    .join(format!("{size_mb}mb-{}.img", uuid::Uuid::new_v4().simple()));
                if let Err(e) = make_image(&blanks.mkfs, &path, size_mb) {
                    tracing::warn!(error = %e, size_mb, "cannot make a blank storage image");
                    break;
                }
            }
            if let Ok(mut r) = blanks.refilling.lock() {
                r.remove(&size_mb);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_sits_beside_its_directory() {
        assert_eq!(
            image_of(Path::new("/srv/sessions/t/abc")),
            PathBuf::from("/srv/sessions/t/abc.img")
        );
    }

    #[test]
    fn removing_storage_takes_the_directory_and_the_image() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("s");
        fs::create_dir(&dir).expect("mkdir");
        fs::write(dir.join("f"), "x").expect("write");
        fs::write(image_of(&dir), "img").expect("write");
        assert!(remove_storage(&dir).expect("remove"));
        assert!(!dir.exists() && !image_of(&dir).exists());
        assert!(!remove_storage(&dir).expect("nothing left"));
    }

    #[test]
    fn images_are_sparse_private_ext4_file_systems() {
        let Ok(mkfs) = image_support() else {
            println!("SKIPPED images_are_sparse_private_ext4_file_systems: no image support");
            return;
        };
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("i.img");
        make_image(&mkfs, &path, 64).expect("mkfs");
        let meta = fs::metadata(&path).expect("meta");
        assert_eq!(meta.len(), 64 * 1024 * 1024);
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(
            meta.blocks() * 512 < 4 * 1024 * 1024,
            "sparse: {} blocks",
            meta.blocks()
        );
        let leftovers: Vec<_> = fs::read_dir(root.path()).expect("ls").flatten().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left");
    }
}
