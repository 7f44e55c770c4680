//! The sandbox's seccomp policy, kept as data in one table (`POLICY`) and compiled with
//! `seccompiler`.
//!
//! The policy is a deny-list on top of a default-allow filter: the agent is arbitrary code in
//! any language, so an allow-list would break runtimes in ways nobody can predict, while the
//! calls below are ones no agent needs and that widen the kernel's attack surface or undo the
//! other layers (mount after set-up, namespaces, ptrace, kernel modules, kexec, bpf, keyrings...).
//! Namespaces, the read-only file system, Landlock, dropped capabilities and cgroups do the
//! confining; seccomp removes the kernel entry points that could be used to break out of them.
//!
//! Three filters are installed, in this order, by the sandbox's init just before it starts the
//! agent (after its own mounts, which this policy then forbids):
//! 1. on x86-64, every x32-ABI syscall number is refused, so the table cannot be bypassed by
//!    the same call under another number (i386 calls are killed by seccompiler's arch check);
//! 2. the `Deny` rules answer `EPERM`;
//! 3. the `Unimplemented` rules answer `ENOSYS`, for calls whose arguments seccomp cannot
//!    inspect (`clone3`) so that libc falls back to an inspectable one (`clone`).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

/// What the filter answers for a matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fail with `EPERM`.
    Deny,
    /// Fail with `ENOSYS` (libc then falls back to an older call the filter can inspect).
    Unimplemented,
}

/// Which calls of a syscall the rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgMatch {
    /// Every call.
    Any,
    /// Calls whose first argument (the clone flags) asks for any new namespace.
    NamespaceFlags,
    /// Calls whose first argument (the address family) is not in `ALLOWED_SOCKET_FAMILIES`.
    SocketFamilyNotAllowed,
}

/// One entry of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallRule {
    pub name: &'static str,
    pub nr: i64,
    pub verdict: Verdict,
    pub args: ArgMatch,
    /// Why an agent must not make this call.
    pub why: &'static str,
}

const fn deny(name: &'static str, nr: i64, why: &'static str) -> SyscallRule {
    SyscallRule {
        name,
        nr,
        verdict: Verdict::Deny,
        args: ArgMatch::Any,
        why,
    }
}

const MOUNTS: &str = "the mount table is fixed after set-up";
const NAMESPACES: &str = "no new namespaces: they reopen mount and capability games";
const OTHERS: &str = "no access to other processes' memory or state";
const KERNEL: &str = "kernel code loading and reconfiguration";
const HOST: &str = "host-wide state that is not the sandbox's to change";
const ATTACK_SURFACE: &str = "large kernel attack surface no agent needs";

/// Clone flags that create namespaces.
pub const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    0x80, // CLONE_NEWTIME
];

/// Address families an agent may open sockets of. All are scoped by the network namespace.
/// Everything else is refused: `AF_VSOCK` ignores network namespaces (it would reach the
/// hypervisor and vsock listeners of the host or VM), and rare families (`AF_ALG`, `AF_RDS`,
/// `AF_TIPC`...) are kernel attack surface that `socket()` can even load as modules.
pub const ALLOWED_SOCKET_FAMILIES: &[i32] = &[
    libc::AF_UNIX,
    libc::AF_INET,
    libc::AF_INET6,
    libc::AF_NETLINK,
];

/// The policy: every syscall the sandbox refuses, on every architecture.
pub const POLICY: &[SyscallRule] = &[
    deny("mount", libc::SYS_mount, MOUNTS),
    deny("umount2", libc::SYS_umount2, MOUNTS),
    deny("pivot_root", libc::SYS_pivot_root, MOUNTS),
    deny("chroot", libc::SYS_chroot, MOUNTS),
    deny("fsopen", libc::SYS_fsopen, MOUNTS),
    deny("fsconfig", libc::SYS_fsconfig, MOUNTS),
    deny("fsmount", libc::SYS_fsmount, MOUNTS),
    deny("fspick", libc::SYS_fspick, MOUNTS),
    deny("move_mount", libc::SYS_move_mount, MOUNTS),
    deny("open_tree", libc::SYS_open_tree, MOUNTS),
    deny("mount_setattr", libc::SYS_mount_setattr, MOUNTS),
    deny("unshare", libc::SYS_unshare, NAMESPACES),
    deny("setns", libc::SYS_setns, NAMESPACES),
    SyscallRule {
        name: "clone",
        nr: libc::SYS_clone,
        verdict: Verdict::Deny,
        args: ArgMatch::NamespaceFlags,
        why: NAMESPACES,
    },
    SyscallRule {
        name: "clone3",
        nr: libc::SYS_clone3,
        verdict: Verdict::Unimplemented,
        args: ArgMatch::Any,
        why: "its flags live in memory seccomp cannot read; libc falls back to clone",
    },
    SyscallRule {
        name: "socket",
        nr: libc::SYS_socket,
        verdict: Verdict::Deny,
        args: ArgMatch::SocketFamilyNotAllowed,
        why: "only Unix, IPv4, IPv6 and netlink sockets, which the network namespace confines",
    },
    deny("ptrace", libc::SYS_ptrace, OTHERS),
    deny("process_vm_readv", libc::SYS_process_vm_readv, OTHERS),
    deny("process_vm_writev", libc::SYS_process_vm_writev, OTHERS),
    deny("pidfd_getfd", libc::SYS_pidfd_getfd, OTHERS),
    deny("kcmp", libc::SYS_kcmp, OTHERS),
    deny("kexec_load", libc::SYS_kexec_load, KERNEL),
    deny("kexec_file_load", libc::SYS_kexec_file_load, KERNEL),
    deny("init_module", libc::SYS_init_module, KERNEL),
    deny("finit_module", libc::SYS_finit_module, KERNEL),
    deny("delete_module", libc::SYS_delete_module, KERNEL),
    deny("bpf", libc::SYS_bpf, KERNEL),
    deny("perf_event_open", libc::SYS_perf_event_open, ATTACK_SURFACE),
    deny("userfaultfd", libc::SYS_userfaultfd, ATTACK_SURFACE),
    deny("io_uring_setup", libc::SYS_io_uring_setup, ATTACK_SURFACE),
    deny("io_uring_enter", libc::SYS_io_uring_enter, ATTACK_SURFACE),
    deny(
        "io_uring_register",
        libc::SYS_io_uring_register,
        ATTACK_SURFACE,
    ),
    deny("fanotify_init", libc::SYS_fanotify_init, ATTACK_SURFACE),
    deny("open_by_handle_at", libc::SYS_open_by_handle_at, MOUNTS),
    deny("name_to_handle_at", libc::SYS_name_to_handle_at, MOUNTS),
    deny("keyctl", libc::SYS_keyctl, HOST),
    deny("add_key", libc::SYS_add_key, HOST),
    deny("request_key", libc::SYS_request_key, HOST),
    deny("reboot", libc::SYS_reboot, HOST),
    deny("swapon", libc::SYS_swapon, HOST),
    deny("swapoff", libc::SYS_swapoff, HOST),
    deny("acct", libc::SYS_acct, HOST),
    deny("settimeofday", libc::SYS_settimeofday, HOST),
    deny("clock_settime", libc::SYS_clock_settime, HOST),
    deny("clock_adjtime", libc::SYS_clock_adjtime, HOST),
    deny("quotactl", libc::SYS_quotactl, HOST),
    deny("syslog", libc::SYS_syslog, HOST),
    deny("vhangup", libc::SYS_vhangup, HOST),
    deny("sethostname", libc::SYS_sethostname, HOST),
    deny("setdomainname", libc::SYS_setdomainname, HOST),
];

/// Legacy calls that exist only on x86-64.
#[cfg(target_arch = "x86_64")]
pub const ARCH_POLICY: &[SyscallRule] = &[
    deny("iopl", libc::SYS_iopl, KERNEL),
    deny("ioperm", libc::SYS_ioperm, KERNEL),
    deny("_sysctl", libc::SYS__sysctl, HOST),
    deny("uselib", libc::SYS_uselib, ATTACK_SURFACE),
    deny("ustat", libc::SYS_ustat, ATTACK_SURFACE),
    deny("sysfs", libc::SYS_sysfs, ATTACK_SURFACE),
    deny("nfsservctl", libc::SYS_nfsservctl, HOST),
    deny("lookup_dcookie", libc::SYS_lookup_dcookie, KERNEL),
];
#[cfg(not(target_arch = "x86_64"))]
pub const ARCH_POLICY: &[SyscallRule] = &[];

/// Every rule for the architecture this crate is built for.
pub fn rules() -> impl Iterator<Item = &'static SyscallRule> {
    POLICY.iter().chain(ARCH_POLICY)
}

/// Errors compiling the policy (a bug in the table, caught by the unit tests).
#[derive(Debug, thiserror::Error)]
#[error("cannot compile the seccomp policy: {0}")]
pub struct PolicyError(String);

fn target_arch() -> Result<TargetArch, PolicyError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| PolicyError(e.to_string()))
}

fn compile_verdict(verdict: Verdict) -> Result<BpfProgram, PolicyError> {
    let errno = match verdict {
        Verdict::Deny => libc::EPERM,
        Verdict::Unimplemented => libc::ENOSYS,
    };
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for rule in rules().filter(|r| r.verdict == verdict) {
        let conditions = match rule.args {
            ArgMatch::Any => Vec::new(),
            ArgMatch::NamespaceFlags => NAMESPACE_FLAGS
                .iter()
                .map(|flag| {
                    let cond = SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Qword,
                        SeccompCmpOp::MaskedEq(*flag),
                        *flag,
                    )
                    .map_err(|e| PolicyError(e.to_string()))?;
                    SeccompRule::new(vec![cond]).map_err(|e| PolicyError(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?,
            ArgMatch::SocketFamilyNotAllowed => {
                let conditions = ALLOWED_SOCKET_FAMILIES
                    .iter()
                    .map(|family| {
                        SeccompCondition::new(
                            0,
                            SeccompCmpArgLen::Dword,
                            SeccompCmpOp::Ne,
                            *family as u64,
                        )
                        .map_err(|e| PolicyError(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                // One rule whose conditions must all hold: the family is none of the allowed.
                vec![SeccompRule::new(conditions).map_err(|e| PolicyError(e.to_string()))?]
            }
        };
        map.entry(rule.nr).or_default().extend(conditions);
    }
    let filter = SeccompFilter::new(
        map,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        target_arch()?,
    )
    .map_err(|e| PolicyError(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| PolicyError(e.to_string()))
}

/// On x86-64: refuse (ENOSYS) every syscall number with the x32 bit set. Elsewhere: nothing.
fn x32_guard() -> Option<BpfProgram> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JEQ_K: u16 = 0x15;
    const BPF_JMP_JGE_K: u16 = 0x35;
    const BPF_RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    Some(vec![
        // seccomp_data.arch at offset 4
        ins(BPF_LD_W_ABS, 0, 0, 4),
        ins(BPF_JMP_JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        // seccomp_data.nr at offset 0
        ins(BPF_LD_W_ABS, 0, 0, 0),
        ins(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
        ins(
            BPF_RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ])
}

/// The compiled filters, in installation order.
pub fn compile() -> Result<Vec<BpfProgram>, PolicyError> {
    let mut out = Vec::new();
    out.extend(x32_guard());
    out.push(compile_verdict(Verdict::Deny)?);
    out.push(compile_verdict(Verdict::Unimplemented)?);
    Ok(out)
}

/// Installs compiled filters on the calling thread (and so on every process it later starts).
/// Sets `no_new_privs`. Returns the raw errno on failure, without allocating.
pub(crate) fn install(programs: &[BpfProgram]) -> Result<(), i32> {
    for p in programs {
        let rc = crate::sys::seccomp_install_raw(p);
        if rc != 0 {
            return Err(rc);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_brief_list_is_covered() {
        let names: BTreeSet<&str> = rules().map(|r| r.name).collect();
        for required in [
            "mount",
            "umount2",
            "ptrace",
            "kexec_load",
            "init_module",
            "finit_module",
            "delete_module",
            "bpf",
            "unshare",
            "setns",
            "perf_event_open",
            "keyctl",
            "add_key",
            "reboot",
            "swapon",
            "clone",
            "clone3",
            "process_vm_writev",
            "open_by_handle_at",
            "io_uring_setup",
            "socket",
        ] {
            assert!(
                names.contains(required),
                "{required} missing from the policy"
            );
        }
    }

    #[test]
    fn no_syscall_appears_twice() {
        let mut seen = BTreeSet::new();
        for r in rules() {
            assert!(seen.insert(r.nr), "{} listed twice", r.name);
            assert!(!r.why.is_empty());
        }
    }

    #[test]
    fn the_policy_compiles() {
        let programs = compile().expect("compiles");
        assert_eq!(
            programs.len(),
            if cfg!(target_arch = "x86_64") { 3 } else { 2 }
        );
        assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
    }

    /// Installs the real filters in a forked child and checks the kernel's answers there.
    #[test]
    fn the_kernel_enforces_the_policy() {
        let programs = compile().expect("compiles");
        // Each child exits with: 0 = as expected, 1 = install failed, 2 = call allowed,
        // 3 = refused with another errno.
        let check = |nr: i64, arg0: u64, want: i32| {
            let status = crate::sys::fork_and_wait(|| {
                if install(&programs).is_err() {
                    return 1;
                }
                if crate::sys::raw_syscall1(nr, arg0) != -1 {
                    return 2;
                }
                if crate::sys::errno() == want { 0 } else { 3 }
            })
            .expect("fork");
            libc::WEXITSTATUS(status)
        };
        if check(libc::SYS_getpid, 0, 0) == 1 {
            println!("SKIPPED the_kernel_enforces_the_policy: this kernel refuses seccomp filters");
            return;
        }
        assert_eq!(
            check(libc::SYS_getpid, 0, 0),
            2,
            "ordinary calls are allowed"
        );
        let user = libc::CLONE_NEWUSER as u64;
        assert_eq!(
            check(libc::SYS_unshare, user, libc::EPERM),
            0,
            "unshare: EPERM"
        );
        assert_eq!(
            check(libc::SYS_clone3, 0, libc::ENOSYS),
            0,
            "clone3: ENOSYS"
        );
        assert_eq!(check(libc::SYS_mount, 0, libc::EPERM), 0, "mount: EPERM");
        // CLONE_THREAD without CLONE_SIGHAND is invalid, so a missing rule shows as EINVAL
        // instead of a stray child process.
        let vsock = libc::AF_VSOCK as u64;
        assert_eq!(
            check(libc::SYS_socket, vsock, libc::EPERM),
            0,
            "socket(AF_VSOCK): EPERM"
        );
        let unix = libc::AF_UNIX as u64;
        // socket(AF_UNIX, 0 = no type) passes the filter and is refused by the kernel with
        // another errno than the filter's EPERM.
        assert_eq!(
            check(libc::SYS_socket, unix, libc::EPERM),
            3,
            "socket(AF_UNIX) allowed"
        );
        let flags = (libc::CLONE_NEWNET | libc::CLONE_THREAD) as u64;
        assert_eq!(
            check(libc::SYS_clone, flags, libc::EPERM),
            0,
            "clone(NEWNET): EPERM"
        );
        if cfg!(target_arch = "x86_64") {
            let x32_unshare = libc::SYS_unshare | 0x4000_0000;
            assert_eq!(
                check(x32_unshare, user, libc::ENOSYS),
                0,
                "x32 numbers: ENOSYS"
            );
        }
    }
}
