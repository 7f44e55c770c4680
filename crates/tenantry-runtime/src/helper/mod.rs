//! The sandbox helper: a small, single-threaded program (`tenantry-sandbox`, or a hidden
//! subcommand of `tenantry`) that the platform runs once per sandbox.
//!
//! Why a separate process: `clone(CLONE_NEWUSER)` fails in a multi-threaded process, and the
//! platform runs a multi-threaded async runtime. The helper is exec'd fresh, so it has exactly
//! one thread when it clones.
//!
//! What it does, in order:
//! 1. reads a `HelperSpec` (one JSON line on stdin);
//! 2. when the storage is an image, loop-mounts it on the storage directory in a mount
//!    namespace of its own (see `storage`);
//! 3. binds the agent bridge's Unix socket on the host (mode 0600, so only the platform's user
//!    can reach the agent);
//! 4. clones the sandbox's init into new user, mount, PID, IPC, UTS and network namespaces;
//! 5. writes the init's uid/gid maps (root inside → the sandbox's host uid) and lets it build
//!    the sandbox (see `init` for what happens inside) while it places it in the session's
//!    cgroup(s) — moving a task between v1 cgroups can wait for an RCU grace period, so this
//!    overlaps with the init's mounts; the init starts no agent code before it is placed;
//! 6. stays outside the sandbox as its supervisor: it reports `ready`, serves the init's
//!    requests for connections to the platform socket, kills the sandbox when told (`kill` on
//!    stdin, or stdin closed), and reports how it ended.
//!
//! Threat model: the helper runs with the platform's privileges, outside every namespace and
//! cgroup of the sandbox, and talks to code inside it only through the control socket. It
//! trusts nothing it reads there: the only service it offers is connecting to the one platform
//! socket named in its spec and passing the connection in. Everything the sandbox's agent can
//! reach on the host is that socket, plus its own storage directory.
//!
//! It must never start threads before the clone, never run an async runtime, and never take a
//! path, uid or size from the sandbox side.

mod confine;
mod forward;
mod init;
mod mounts;
mod storage;

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::ExitCode;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions, pidfd_open, pidfd_send_signal};

use crate::protocol::{ControlMsg, HelperEvent, HelperSpec, ProcessEnd, SetupStage};
use crate::sys::{self, Forked};

type Failure = (SetupStage, String);

/// Entry point of the helper executable. Call it from `main` before anything starts a thread.
pub fn helper_main() -> ExitCode {
    // The helper passes nothing of the host into the sandbox but what its spec names: any
    // descriptor beyond stdin, stdout and stderr was inherited by mistake (the platform's
    // launching shell, a descriptor opened without close-on-exec) and is closed before
    // anything else, so neither the init (a clone of this process) nor the agent holds it.
    if let Err(e) = sys::close_from(3) {
        return fail((
            SetupStage::Environment,
            format!("closing inherited descriptors: {e}"),
        ));
    }
    let mut input = StdinLines::default();
    let spec = match input.next_line() {
        Ok(Some(line)) => match serde_json::from_slice::<HelperSpec>(&line) {
            Ok(spec) => spec,
            Err(e) => return fail((SetupStage::Spec, format!("invalid helper spec: {e}"))),
        },
        Ok(None) => return fail((SetupStage::Spec, "no spec on stdin".into())),
        Err(e) => return fail((SetupStage::Spec, format!("reading the spec: {e}"))),
    };
    match supervise(&spec, input) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(f),
    }
}

fn fail(f: Failure) -> ExitCode {
    emit(&HelperEvent::SetupFailed {
        stage: f.0,
        message: f.1,
    });
    ExitCode::from(1)
}

fn emit(event: &HelperEvent) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(event.to_line().as_bytes());
    let _ = out.flush();
}

/// Line reader over the raw stdin fd that never reads ahead into a buffer it would lose:
/// leftover bytes stay here for the control loop.
#[derive(Debug)]
struct StdinLines {
    stdin: io::Stdin,
    buf: Vec<u8>,
    eof: bool,
}

impl Default for StdinLines {
    fn default() -> Self {
        Self {
            stdin: io::stdin(),
            buf: Vec::new(),
            eof: false,
        }
    }
}

impl StdinLines {
    fn fd(&self) -> BorrowedFd<'_> {
        self.stdin.as_fd()
    }

    /// Reads whatever is available (one `read`), returning false at end of file.
    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 4096];
        loop {
            match rustix::io::read(self.fd(), &mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn take_line(&mut self) -> Option<Vec<u8>> {
        let pos = self.buf.iter().position(|b| *b == b'\n')?;
        let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
        line.pop();
        Some(line)
    }

    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(Some(line));
            }
            if self.eof || !self.fill()? {
                return Ok(None);
            }
        }
    }
}

const NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWNET;

fn env_err(what: &str) -> impl FnOnce(io::Error) -> Failure + '_ {
    move |e| (SetupStage::Environment, format!("{what}: {e}"))
}

/// Threads of this process, from `/proc/self/task`.
fn thread_count() -> usize {
    fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

fn supervise(spec: &HelperSpec, mut input: StdinLines) -> Result<(), Failure> {
    let threads = thread_count();
    if threads > 1 {
        return Err((
            SetupStage::Namespaces,
            format!(
                "the helper process has {threads} threads; helper_main() must be called before \
                 any thread or async runtime starts (clone(CLONE_NEWUSER) needs one thread)"
            ),
        ));
    }
    if let Some(image) = &spec.storage_image {
        storage::mount_image(spec, image)?;
    }
    let _ = fs::remove_file(&spec.agent_socket);
    let listener = UnixListener::bind(&spec.agent_socket).map_err(env_err(&format!(
        "binding the agent socket {}",
        spec.agent_socket.display()
    )))?;
    fs::set_permissions(&spec.agent_socket, fs::Permissions::from_mode(0o600))
        .map_err(env_err("restricting the agent socket"))?;
    let (ctl, init_ctl) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| env_err("creating the control socket")(e.into()))?;

    let pid = match sys::clone_process(NAMESPACES) {
        Ok(Forked::Child) => {
            drop(ctl);
            init::run(spec, init_ctl, listener)
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) => {
            let detail = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    " (unprivileged user namespaces are disabled or restricted on this host: \
                     check kernel.unprivileged_userns_clone, user.max_user_namespaces and \
                     AppArmor's userns restriction)"
                }
                Some(libc::ENOSPC) => " (user.max_user_namespaces is exhausted)",
                Some(libc::EINVAL) => " (the kernel lacks one of the namespace types)",
                _ => "",
            };
            return Err((
                SetupStage::Namespaces,
                format!(
                    "user namespaces unavailable: clone(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|\
                     CLONE_NEWIPC|CLONE_NEWUTS|CLONE_NEWNET) failed: {e}{detail}"
                ),
            ));
        }
    };
    drop(init_ctl);
    drop(listener);
    let child = Child::new(pid)?;
    let release = |msg: ControlMsg| {
        rustix::net::send(&ctl, &msg.encode(), SendFlags::NOSIGNAL)
            .map(|_| ())
            .map_err(|e| env_err("releasing the sandbox init")(e.into()))
    };
    let prepared = write_id_maps(spec, pid)
        .and_then(|()| release(ControlMsg::Go))
        .and_then(|()| join_cgroups(spec, pid))
        .and_then(|()| release(ControlMsg::Placed));
    if let Err(f) = prepared {
        child.kill();
        let _ = child.wait();
        return Err(f);
    }
    supervise_loop(spec, &child, &ctl, &mut input)
}

/// The sandbox's init, as seen from the helper: its pid and a pidfd (signals through the pidfd
/// cannot hit a recycled pid).
struct Child {
    pid: libc::pid_t,
    pidfd: OwnedFd,
}

impl Child {
    fn new(pid: libc::pid_t) -> Result<Self, Failure> {
        let p =
            Pid::from_raw(pid).ok_or((SetupStage::Namespaces, "clone returned pid 0".into()))?;
        match pidfd_open(p, PidfdFlags::empty()) {
            Ok(pidfd) => Ok(Child { pid, pidfd }),
            Err(e) => {
                let _ = sys::kill(pid, libc::SIGKILL);
                Err(env_err("pidfd_open on the sandbox init")(e.into()))
            }
        }
    }

    fn kill(&self) {
        let _ = pidfd_send_signal(&self.pidfd, Signal::KILL);
    }

    fn wait(&self) -> io::Result<ProcessEnd> {
        let pid = Pid::from_raw(self.pid).ok_or_else(|| io::Error::other("pid 0"))?;
        loop {
            match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
                Ok(Some((_, status))) => return Ok(ProcessEnd::from_wait_status(status.as_raw())),
                Ok(None) => continue,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Id maps, written from outside while the init waits for `Go`.
fn write_id_maps(spec: &HelperSpec, pid: libc::pid_t) -> Result<(), Failure> {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let ns = |what: String| move |e: io::Error| (SetupStage::Namespaces, format!("{what}: {e}"));
    if !spec.privileged {
        fs::write(proc_dir.join("setgroups"), "deny")
            .map_err(ns("writing setgroups=deny".into()))?;
    }
    fs::write(
        proc_dir.join("uid_map"),
        format!("{} {} 1\n", spec.uid.inside, spec.uid.outside),
    )
    .map_err(ns(format!("writing uid_map (0 → {})", spec.uid.outside)))?;
    fs::write(
        proc_dir.join("gid_map"),
        format!("{} {} 1\n", spec.gid.inside, spec.gid.outside),
    )
    .map_err(ns(format!("writing gid_map (0 → {})", spec.gid.outside)))?;
    Ok(())
}

/// Cgroup placement; the init's future children (the agent) inherit it.
fn join_cgroups(spec: &HelperSpec, pid: libc::pid_t) -> Result<(), Failure> {
    for procs in &spec.cgroup_procs {
        fs::write(procs, pid.to_string())
            .map_err(env_err(&format!("joining cgroup {}", procs.display())))?;
    }
    Ok(())
}

fn supervise_loop(
    spec: &HelperSpec,
    child: &Child,
    ctl: &OwnedFd,
    input: &mut StdinLines,
) -> Result<(), Failure> {
    let mut ready = false;
    let mut failed: Option<Failure> = None;
    let mut agent_end: Option<ProcessEnd> = None;
    let mut ctl_open = true;
    let mut stdin_open = !input.eof;
    // A `kill` may already sit in the buffer behind the spec line.
    if input.buf.windows(4).any(|w| w == b"kill") {
        child.kill();
    }
    let init_end = loop {
        let stdin_fd = input.fd();
        let mut fds = vec![PollFd::new(&child.pidfd, PollFlags::IN)];
        if ctl_open {
            fds.push(PollFd::new(ctl, PollFlags::IN));
        }
        if stdin_open {
            fds.push(PollFd::from_borrowed_fd(stdin_fd, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                child.kill();
                return Err(env_err("poll")(e.into()));
            }
        }
        let child_done = !fds[0].revents().is_empty();
        let ctl_ready = ctl_open && !fds[1].revents().is_empty();
        let stdin_ready = stdin_open && !fds[fds.len() - 1].revents().is_empty();
        drop(fds);

        if ctl_ready {
            match handle_control(spec, child, ctl) {
                Some(ControlEvent::Ready) => {
                    ready = true;
                    emit(&HelperEvent::Ready {
                        init_pid: child.pid.unsigned_abs(),
                    });
                }
                Some(ControlEvent::Failed(f)) => failed = Some(f),
                Some(ControlEvent::AgentEnded(end)) => agent_end = Some(end),
                Some(ControlEvent::Nothing) => {}
                None => ctl_open = false,
            }
        }
        if stdin_ready {
            match input.fill() {
                Ok(true) => {
                    while let Some(line) = input.take_line() {
                        if line.trim_ascii() == b"kill" {
                            child.kill();
                        }
                    }
                }
                // Stdin closed: the platform is gone or dropped its handle.
                Ok(false) | Err(_) => {
                    stdin_open = false;
                    child.kill();
                }
            }
        }
        if child_done {
            break child
                .wait()
                .map_err(env_err("waiting for the sandbox init"))?;
        }
    };
    // The init sends the agent's status just before it exits; collect what is still queued.
    while ctl_open {
        match handle_control_nowait(ctl) {
            Some(ControlEvent::AgentEnded(end)) => agent_end = Some(end),
            Some(ControlEvent::Failed(f)) => failed = Some(f),
            Some(ControlEvent::Ready) | Some(ControlEvent::Nothing) => {}
            None => ctl_open = false,
        }
    }
    if !ready {
        return Err(failed.unwrap_or((
            SetupStage::Environment,
            format!("the sandbox init ended during set-up ({init_end:?})"),
        )));
    }
    emit(&HelperEvent::Exited {
        agent: agent_end,
        init: init_end,
    });
    Ok(())
}

enum ControlEvent {
    Ready,
    Failed(Failure),
    AgentEnded(ProcessEnd),
    Nothing,
}

fn classify(msg: Option<ControlMsg>) -> ControlEvent {
    match msg {
        Some(ControlMsg::Ready) => ControlEvent::Ready,
        Some(ControlMsg::Failed(stage, text)) => ControlEvent::Failed((stage, text)),
        Some(ControlMsg::AgentEnded(status)) => {
            ControlEvent::AgentEnded(ProcessEnd::from_wait_status(status))
        }
        // Messages only the helper sends, `Connect` (handled by the caller) and garbage.
        Some(ControlMsg::Go)
        | Some(ControlMsg::Placed)
        | Some(ControlMsg::Connect)
        | Some(ControlMsg::Connected)
        | Some(ControlMsg::Refused)
        | None => ControlEvent::Nothing,
    }
}

/// Reads one control message; `None` when the socket is closed.
fn handle_control(spec: &HelperSpec, child: &Child, ctl: &OwnedFd) -> Option<ControlEvent> {
    let mut buf = [0u8; crate::protocol::CONTROL_MAX];
    let n = match rustix::net::recv(ctl, &mut buf, RecvFlags::DONTWAIT) {
        Ok((0, _)) => return None,
        Ok((n, _)) => n,
        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {
            return Some(ControlEvent::Nothing);
        }
        Err(_) => return None,
    };
    let msg = ControlMsg::decode(&buf[..n]);
    if msg == Some(ControlMsg::Connect) {
        if serve_connect(spec, ctl).is_err() {
            // The init is gone or misbehaving; it cannot be served any more.
            child.kill();
            return None;
        }
        return Some(ControlEvent::Nothing);
    }
    Some(classify(msg))
}

fn handle_control_nowait(ctl: &OwnedFd) -> Option<ControlEvent> {
    let mut buf = [0u8; crate::protocol::CONTROL_MAX];
    match rustix::net::recv(ctl, &mut buf, RecvFlags::DONTWAIT) {
        Ok((0, _)) => None,
        Ok((n, _)) => Some(classify(ControlMsg::decode(&buf[..n]))),
        Err(_) => None,
    }
}

/// Connects to the platform socket on the host and passes the connection to the init.
/// A refusal (no platform socket, nothing listening, backlog full) is answered `Refused`.
fn serve_connect(spec: &HelperSpec, ctl: &OwnedFd) -> io::Result<()> {
    let conn = spec
        .platform_socket
        .as_deref()
        .and_then(|p| connect_unix(p).ok());
    match conn {
        Some(conn) => {
            sys::send_with_fd(ctl, &ControlMsg::Connected.encode(), conn.as_fd())?;
        }
        None => {
            rustix::net::send(ctl, &ControlMsg::Refused.encode(), SendFlags::NOSIGNAL)?;
        }
    }
    Ok(())
}

/// A non-blocking connect (a full backlog must not stall the supervisor), then back to
/// blocking mode for the forwarder that will use it.
fn connect_unix(path: &Path) -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    rustix::net::connect(&fd, &addr)?;
    rustix::io::ioctl_fionbio(&fd, false)?;
    Ok(fd)
}
