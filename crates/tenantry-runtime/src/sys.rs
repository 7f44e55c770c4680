//! Thin, documented wrappers around the raw Linux calls the sandbox needs and that neither `std`
//! nor `rustix` offer safely: `clone` with namespace flags, `fork` for probing, `mount` and
//! friends, credential changes, capability-bounding-set drops and the loopback `ioctl`.
//!
//! This is the only module of the crate where `unsafe` is allowed. Every block states the
//! invariant that makes it sound. The functions here never allocate between a `fork`/`clone` and
//! the child's `_exit` unless the caller is known to be single-threaded (the helper process).
//!
//! It must never grow policy: what to mount, which capability to keep or which syscall to deny
//! is decided by the callers; this module only performs the call and reports `errno`.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstring(p: &[u8]) -> io::Result<CString> {
    CString::new(p).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// What `clone_process` returned in the calling process.
#[derive(Debug)]
pub(crate) enum Forked {
    /// We are the child.
    Child,
    /// We are the parent; the child has this (host) pid.
    Parent(libc::pid_t),
}

/// `clone(flags | SIGCHLD)` without a new stack: fork semantics (the child gets a copy-on-write
/// copy of the address space) plus the given `CLONE_NEW*` flags.
///
/// Must only be called by a single-threaded process (the helper): the child continues running
/// arbitrary Rust code, which is only sound when no other thread could have held a lock (e.g.
/// the allocator's) at the moment of the copy.
pub(crate) fn clone_process(ns_flags: libc::c_int) -> io::Result<Forked> {
    let flags = (ns_flags | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: the raw clone syscall with a null stack pointer behaves like fork(2): the child
    // resumes here on a copy of the parent's stack. The remaining arguments (parent_tid,
    // child_tid, tls) are unused because no CLONE_*TID/CLONE_SETTLS flag is passed. The caller
    // guarantees the process is single-threaded, so the child inherits no half-held locks.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match rc {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// Forks, runs `child` in the child (which must only make async-signal-safe calls: raw
/// syscalls, no allocation, no locks) and returns the child's raw wait status.
///
/// Used by `probe()`, which may run in a multi-threaded process; `child` therefore receives only
/// data prepared before the fork and returns the exit code for `_exit`.
pub(crate) fn fork_and_wait(child: impl FnOnce() -> libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: after fork in a possibly multi-threaded parent, the child only runs `child`, whose
    // contract (documented above and upheld by every caller in this crate) is to make raw
    // syscalls on pre-allocated data, and then `_exit`s without running destructors or atexit
    // handlers.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let code = child();
        // SAFETY: `_exit` is async-signal-safe and never returns.
        unsafe { libc::_exit(code) }
    }
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable c_int; `pid` is our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `unshare(2)`; returns the raw errno on failure so it can be called from `fork_and_wait`'s
/// child without allocating.
pub(crate) fn unshare_raw(flags: libc::c_int) -> libc::c_int {
    // SAFETY: unshare takes an integer and touches no memory of ours.
    if unsafe { libc::unshare(flags) } == -1 {
        errno()
    } else {
        0
    }
}

/// `unshare(2)`.
pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    match unshare_raw(flags) {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// `waitpid(-1, &status, 0)`: the next child to end, with its raw wait status.
pub(crate) fn wait_any() -> io::Result<(libc::pid_t, libc::c_int)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid, writable c_int.
    let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
    if pid == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok((pid, status))
    }
}

/// The calling thread's errno, without allocating.
pub(crate) fn errno() -> libc::c_int {
    // SAFETY: __errno_location always returns a valid pointer to the thread's errno.
    unsafe { *libc::__errno_location() }
}

/// `mount(2)` with optional source, file-system type and data.
pub(crate) fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source
        .map(|s| cstring(s.as_os_str().as_bytes()))
        .transpose()?;
    let target = cstring(target.as_os_str().as_bytes())?;
    let fstype = fstype.map(|s| cstring(s.as_bytes())).transpose()?;
    let data = data.map(|s| cstring(s.as_bytes())).transpose()?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null (allowed by mount(2) for source, fstype and data) or
    // points to a NUL-terminated string owned by a local that outlives the call.
    check(unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    })
}

/// `umount2(2)`.
pub(crate) fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cstring(target.as_os_str().as_bytes())?;
    // SAFETY: `target` is a valid NUL-terminated string alive for the call.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })
}

/// `pivot_root(2)` (no libc wrapper exists).
pub(crate) fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let new_root = cstring(new_root.as_os_str().as_bytes())?;
    let put_old = cstring(put_old.as_os_str().as_bytes())?;
    // SAFETY: both arguments are valid NUL-terminated strings alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `statvfs(2)`'s `f_flag` for a path: the mount flags that a bind remount must preserve.
pub(crate) fn statvfs_flags(path: &Path) -> io::Result<libc::c_ulong> {
    let path = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: statvfs is plain old data; zeroed is a valid value for it.
    let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `buf` a valid, writable statvfs.
    check(unsafe { libc::statvfs(path.as_ptr(), &mut buf) })?;
    Ok(buf.f_flag)
}

/// Flags a remount must keep: a mount inherited from a more privileged namespace has its atime
/// and nosuid/nodev/noexec flags locked, and omitting them makes the remount fail (or, where
/// they are not locked, clears them).
pub(crate) fn locked_mount_flags(path: &Path) -> libc::c_ulong {
    let Ok(f) = statvfs_flags(path) else {
        return 0;
    };
    let map: [(libc::c_ulong, libc::c_ulong); 7] = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
        (libc::ST_SYNCHRONOUS, libc::MS_SYNCHRONOUS),
    ];
    map.iter()
        .filter(|(st, _)| f & st != 0)
        .fold(0, |acc, (_, ms)| acc | ms)
}

/// `setgroups(0, NULL)`: drop every supplementary group.
pub(crate) fn clear_groups() -> io::Result<()> {
    // SAFETY: a zero-length list with a null pointer is the documented way to clear the groups.
    check(unsafe { libc::setgroups(0, std::ptr::null()) })
}

/// `setresgid(g, g, g)` then `setresuid(u, u, u)` (glibc applies them to every thread).
pub(crate) fn set_ids(uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setresgid(gid, gid, gid) })?;
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setresuid(uid, uid, uid) })
}

/// `sethostname(2)`.
pub(crate) fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe the bytes of `name`, alive for the call.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
}

/// `prctl` with integer arguments only.
pub(crate) fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: every prctl option used by this crate (PDEATHSIG, DUMPABLE, CAPBSET_DROP,
    // SECUREBITS, CAP_AMBIENT, NO_NEW_PRIVS) takes integer arguments and no pointers.
    let rc = unsafe { libc::prctl(option, arg2, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Drops every capability from the bounding set (up to the kernel's last known one).
pub(crate) fn drop_bounding_set() -> io::Result<()> {
    for cap in 0..64 {
        match prctl(libc::PR_CAPBSET_DROP, cap) {
            Ok(_) => {}
            // EINVAL: past the kernel's last capability.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `capset` with empty effective, permitted and inheritable sets for the calling thread.
pub(crate) fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data match the kernel's `__user_cap_header_struct` and the two
    // `__user_cap_data_struct`s that version 3 expects; both outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets the `IFF_UP` flag of the loopback interface of the current network namespace.
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() takes integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    let r = set_lo_up(fd);
    // SAFETY: `fd` was returned by socket() above and is closed exactly once.
    unsafe { libc::close(fd) };
    r
}

fn set_lo_up(fd: libc::c_int) -> io::Result<()> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming "lo"; SIOCGIFFLAGS fills `ifru_flags`.
    check(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: reading the union member the kernel just filled in.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: `req` is a valid ifreq with the name and new flags set.
    check(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) })
}

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`: the kernel's Landlock
/// ABI version, or `None` when Landlock is unsupported or disabled.
pub(crate) fn landlock_abi_version() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer and size 0, this flag only queries the version.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(rc).ok().filter(|v| *v > 0)
}

/// Installs an already-compiled seccomp program on the calling thread, without allocating
/// (callable between `fork` and `_exit`). Returns the raw errno on failure.
pub(crate) fn seccomp_install_raw(program: &[seccompiler::sock_filter]) -> libc::c_int {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const seccompiler::sock_filter,
    }
    let Ok(len) = libc::c_ushort::try_from(program.len()) else {
        return libc::E2BIG;
    };
    let prog = SockFprog {
        len,
        filter: program.as_ptr(),
    };
    // SAFETY: integer-only prctl.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return errno();
    }
    // SAFETY: `prog` points at `program`, which has the kernel's `struct sock_filter` layout
    // (seccompiler declares it `repr(C)`) and outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &prog as *const SockFprog,
        )
    };
    if rc == 0 { 0 } else { errno() }
}

/// A raw syscall with one integer argument (the others zero); returns -1 with errno set on
/// failure. Allocation-free, for use in `fork_and_wait` children.
#[cfg(test)]
pub(crate) fn raw_syscall1(nr: i64, arg0: u64) -> i64 {
    // SAFETY: only used by tests with syscalls whose remaining arguments may be zero/null
    // (the kernel validates user pointers and returns EFAULT rather than touching our memory).
    unsafe { libc::syscall(nr, arg0, 0u64, 0u64, 0u64, 0u64, 0u64) }
}

/// `kill(2)`.
pub(crate) fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::kill(pid, sig) })
}

/// The effective uid and gid of the calling process.
pub(crate) fn effective_ids() -> (libc::uid_t, libc::gid_t) {
    // SAFETY: geteuid/getegid cannot fail and take no arguments.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// `_exit(2)`: ends the process without running destructors (used by the sandbox init, whose
/// stack belongs to a forked copy of the helper).
pub(crate) fn exit_now(code: libc::c_int) -> ! {
    // SAFETY: `_exit` is always safe to call and never returns.
    unsafe { libc::_exit(code) }
}

/// Replaces `target` (0, 1 or 2) with a duplicate of `source`.
pub(crate) fn dup_onto(source: libc::c_int, target: libc::c_int) -> io::Result<()> {
    // SAFETY: dup2 takes two fds; it closes `target` atomically if open.
    if unsafe { libc::dup2(source, target) } == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sends `data` on a Unix socket with one descriptor attached (`SCM_RIGHTS`).
pub(crate) fn send_with_fd(
    sock: impl std::os::fd::AsFd,
    data: &[u8],
    fd: std::os::fd::BorrowedFd<'_>,
) -> io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let fds = [fd];
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !anc.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other(
            "no room for the descriptor in the message",
        ));
    }
    loop {
        match rustix::net::sendmsg(
            &sock,
            &[io::IoSlice::new(data)],
            &mut anc,
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message from a Unix socket into `buf`, and the descriptors sent with it (at
/// most two are expected; all that arrive are owned by the caller, close-on-exec). Returns the
/// number of bytes received.
pub(crate) fn recv_with_fds(
    sock: impl std::os::fd::AsFd,
    buf: &mut [u8],
    flags: rustix::net::RecvFlags,
) -> io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            &sock,
            &mut [io::IoSliceMut::new(buf)],
            &mut anc,
            flags | RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for m in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    Ok((msg.bytes, fds))
}

/// Closes every descriptor numbered `first` or above (`close_range(2)`; on a kernel without
/// it, each one listed in `/proc/self/fd`). Only for a process that owns every descriptor it
/// has (the helper at its start): whatever else is open there was inherited by mistake.
pub(crate) fn close_from(first: libc::c_int) -> io::Result<()> {
    let first_u = libc::c_uint::try_from(first).unwrap_or(0);
    // SAFETY: close_range takes plain integers. Closing descriptors that Rust objects still
    // own would be unsound for those objects; the caller guarantees that none at or above
    // `first` is owned by anything (they were inherited, unknown to this program).
    if unsafe { libc::close_range(first_u, libc::c_uint::MAX, 0) } == 0 {
        return Ok(());
    }
    for fd in open_descriptors()? {
        if fd >= first {
            // SAFETY: as above: no Rust object owns these descriptors. The listing's own
            // descriptor was closed when `open_descriptors` returned.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Marks every descriptor numbered `first` or above close-on-exec (`close_range(2)` with
/// `CLOSE_RANGE_CLOEXEC`, or `fcntl` on each one listed in `/proc/self/fd`), so no program
/// this process executes inherits them. Owners keep using them; nothing is closed.
pub(crate) fn cloexec_from(first: libc::c_int) -> io::Result<()> {
    let first_u = libc::c_uint::try_from(first).unwrap_or(0);
    let flags = libc::CLOSE_RANGE_CLOEXEC as libc::c_int;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors; it closes
    // nothing, so no owner's descriptor becomes invalid.
    if unsafe { libc::close_range(first_u, libc::c_uint::MAX, flags) } == 0 {
        return Ok(());
    }
    for fd in open_descriptors()? {
        if fd >= first {
            // SAFETY: F_GETFD/F_SETFD read and set a descriptor flag; on a descriptor closed
            // meanwhile they fail with EBADF and change nothing.
            unsafe {
                let old = libc::fcntl(fd, libc::F_GETFD);
                if old != -1 {
                    libc::fcntl(fd, libc::F_SETFD, old | libc::FD_CLOEXEC);
                }
            }
        }
    }
    Ok(())
}

/// The descriptors open in this process, from `/proc/self/fd` (without the listing's own).
fn open_descriptors() -> io::Result<Vec<libc::c_int>> {
    let mut fds: Vec<libc::c_int> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own descriptor is closed now; it may be listed, and closing or marking
    // a number that is no longer open fails harmlessly.
    fds.sort_unstable();
    Ok(fds)
}

// ---- loop devices (linux/loop.h) -------------------------------------------------------------

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
/// Detach the device when its last user (the mount) goes away.
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Binds the open file `backing` to a free loop device that detaches itself once nothing
/// uses it any more (`LO_FLAGS_AUTOCLEAR`): open, then mount it, then close the returned
/// descriptor, and the device lives exactly as long as the mount. Returns the device's
/// descriptor and path. Needs `CAP_SYS_ADMIN` on the host.
pub(crate) fn attach_loop(
    backing: std::os::fd::BorrowedFd<'_>,
) -> io::Result<(std::os::fd::OwnedFd, std::path::PathBuf)> {
    use std::os::fd::AsRawFd;
    let control = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let fd = u32::try_from(backing.as_raw_fd())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad descriptor"))?;
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_AUTOCLEAR,
        lo_file_name: [0; 64],
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    let name = b"tenantry-session";
    info.lo_file_name[..name.len()].copy_from_slice(name);
    // Another process may take the free device between our asking and our binding it
    // (EBUSY): ask again.
    let mut last = io::Error::other("no free loop device");
    for _ in 0..32 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = std::path::PathBuf::from(format!("/dev/loop{n}"));
        let device = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(d) => std::os::fd::OwnedFd::from(d),
            Err(e) => {
                last = e;
                continue;
            }
        };
        let config = LoopConfig {
            fd,
            block_size: 0,
            info,
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads a `struct loop_config`, which `config` is (repr(C),
        // the kernel's layout), alive for the call.
        let rc = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE as _, &config) };
        if rc == 0 {
            return Ok((device, path));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EBUSY) => last = err,
            // Kernels before 5.8: the two-step form.
            Some(libc::EINVAL) | Some(libc::ENOTTY) => {
                // SAFETY: LOOP_SET_FD takes the backing descriptor as an integer.
                if unsafe { libc::ioctl(device.as_raw_fd(), LOOP_SET_FD as _, fd as libc::c_ulong) }
                    != 0
                {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EBUSY) {
                        last = e;
                        continue;
                    }
                    return Err(e);
                }
                // SAFETY: LOOP_SET_STATUS64 reads a `struct loop_info64`, which `info` is.
                if unsafe { libc::ioctl(device.as_raw_fd(), LOOP_SET_STATUS64 as _, &info) } != 0 {
                    let e = io::Error::last_os_error();
                    // SAFETY: LOOP_CLR_FD takes no argument.
                    unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD as _, 0) };
                    return Err(e);
                }
                return Ok((device, path));
            }
            _ => return Err(err),
        }
    }
    Err(last)
}
