//! Session storage of a fixed size: when the spec names an image, the helper loop-mounts it on
//! the storage directory in a mount namespace of its own, before it clones the init.
//!
//! Why here: mounting ext4 needs the host's `CAP_SYS_ADMIN`, which the init (in its user
//! namespace) never has, and the helper runs with the platform's privileges. Why in a private
//! namespace: the host's mount table never holds a session's storage, so nothing is left
//! mounted when the platform dies (the namespaces go with the helper and the init, the file
//! system is unmounted by the kernel, and the loop device detaches itself), and a warm
//! sandbox's storage can be renamed to a session's on the host (a mount point could not be).
//! The init's mount namespace is a copy of the helper's, so the init sees the image's file
//! system at the storage directory and binds it like any storage directory.
//!
//! The file system is the limit: a write past its size fails with `ENOSPC` at once, from any
//! process of the sandbox, during an invocation or after it.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::protocol::{HelperSpec, SetupStage};
use crate::sys;

type Failure = (SetupStage, String);

fn failed(what: String) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| (SetupStage::Environment, format!("{what}: {e}"))
}

/// Mounts `image` (an ext4 file system in a file) on the spec's storage directory, in a new
/// mount namespace of this process that does not propagate back to the host.
pub(super) fn mount_image(spec: &HelperSpec, image: &Path) -> Result<(), Failure> {
    sys::unshare(libc::CLONE_NEWNS).map_err(failed("a mount namespace for the storage".into()))?;
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_SLAVE,
        None,
    )
    .map_err(failed("keeping the storage mount off the host".into()))?;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(image)
        .map_err(failed(format!(
            "opening the storage image {}",
            image.display()
        )))?;
    let meta = file
        .metadata()
        .map_err(failed(format!("reading {}", image.display())))?;
    if !meta.is_file() {
        return Err((
            SetupStage::Environment,
            format!(
                "the storage image {} is not a regular file",
                image.display()
            ),
        ));
    }
    let (device, path) = sys::attach_loop(file.as_fd()).map_err(failed(format!(
        "attaching {} to a loop device",
        image.display()
    )))?;
    sys::mount(
        Some(&path),
        &spec.storage_dir,
        Some("ext4"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME,
        None,
    )
    .map_err(failed(format!(
        "mounting the storage image {} on {}",
        image.display(),
        spec.storage_dir.display()
    )))?;
    // The mount holds the device now; with our descriptors closed, unmounting it (when this
    // namespace and the init's are gone) detaches the device.
    drop(device);
    drop(file);
    give_to_sandbox(spec)
}

/// A fresh file system belongs to host root: the first mount gives it to the sandbox's user
/// (and removes `lost+found`, which the agent could neither use nor delete). Later mounts find
/// it owned and change nothing, unless the sandbox's host uid changed (the whole tree is then
/// given again, as for a storage directory).
fn give_to_sandbox(spec: &HelperSpec) -> Result<(), Failure> {
    let root = &spec.storage_dir;
    let meta = fs::symlink_metadata(root).map_err(failed(format!("reading {}", root.display())))?;
    let (uid, gid) = (spec.uid.outside, spec.gid.outside);
    if meta.uid() == uid && meta.gid() == gid {
        return Ok(());
    }
    let _ = fs::remove_dir(root.join("lost+found"));
    crate::process::chown_tree(root, uid, gid).map_err(failed(format!(
        "giving the storage to the sandbox uid {uid}"
    )))?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o700))
        .map_err(failed(format!("restricting {}", root.display())))
}
