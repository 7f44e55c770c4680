//! The last layers the init puts on itself before it starts the agent (which inherits them):
//! no capabilities (not even as root inside the user namespace, and none regained on exec),
//! Landlock file-system rules, and the seccomp filters of `crate::seccomp`.
//!
//! Landlock rules: read and execute everywhere in the (already minimal, read-only) root; full
//! access only below `/tmp` and the session storage; write access to the `/dev/null`-like
//! devices. Where the kernel supports it (ABI 6), signals and abstract Unix sockets are scoped
//! to the sandbox. These rules duplicate what the mount table already enforces, so one layer
//! failing open does not open the sandbox.

use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, path_beneath_rules,
};

use crate::sys;

/// Securebits that keep uid 0 from meaning "all capabilities": no capabilities granted on exec
/// (`NOROOT`), none adjusted on uid changes, ambient raising forbidden, all locked.
const SECUREBITS: libc::c_ulong = 0x01 // SECBIT_NOROOT
    | 0x02 // SECBIT_NOROOT_LOCKED
    | 0x04 // SECBIT_NO_SETUID_FIXUP
    | 0x08 // SECBIT_NO_SETUID_FIXUP_LOCKED
    | 0x20 // SECBIT_KEEP_CAPS_LOCKED
    | 0x40 // SECBIT_NO_CAP_AMBIENT_RAISE
    | 0x80; // SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED

/// Drops every capability for good: bounding set, securebits, ambient and the current sets.
pub(super) fn drop_capabilities() -> std::io::Result<()> {
    sys::drop_bounding_set()?;
    sys::prctl(libc::PR_SET_SECUREBITS, SECUREBITS)?;
    sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    )?;
    sys::clear_capabilities()
}

/// The Landlock ABI whose rights we ask for; older kernels get what they support.
const LANDLOCK_ABI: ABI = ABI::V6;

pub(super) fn apply_landlock(mount_path: &Path, required: bool) -> Result<(), String> {
    let abi = LANDLOCK_ABI;
    let fail = |e: landlock::RulesetError| format!("Landlock: {e}");
    let status = landlock::Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?
        .scope(Scope::from_all(abi))
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            [Path::new("/tmp"), mount_path],
            AccessFs::from_all(abi),
        ))
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            ["/dev/null", "/dev/zero", "/dev/full"],
            AccessFs::from_read(abi) | AccessFs::WriteFile,
        ))
        .map_err(fail)?
        .restrict_self()
        .map_err(fail)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Ok(()),
        RulesetStatus::NotEnforced if !required => Ok(()),
        RulesetStatus::NotEnforced => Err(format!(
            "Landlock unavailable: the kernel enforces none of the rules (landlock ABI {:?}); \
             enable the landlock LSM (lsm=...,landlock) or allow running without it",
            sys::landlock_abi_version()
        )),
    }
}

pub(super) fn apply_seccomp() -> Result<(), String> {
    let programs = crate::seccomp::compile().map_err(|e| e.to_string())?;
    crate::seccomp::install(&programs).map_err(|errno| {
        format!(
            "seccomp unavailable: installing the filter failed: {}",
            std::io::Error::from_raw_os_error(errno)
        )
    })
}
