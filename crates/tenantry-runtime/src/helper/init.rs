//! The sandbox's PID 1. Runs inside every new namespace, builds the sandbox from the inside,
//! starts the agent, forwards the two bridges and reaps zombies.
//!
//! Order matters and is fixed:
//! 1. wait for the helper's `Go` (id maps written);
//! 2. build the root file system (`mounts`), set the hostname, bring up loopback;
//! 3. bind the platform forwarder's TCP port, so the agent can never take it first;
//! 4. wait for `Placed` (the helper has moved us into the session's cgroups, meanwhile), then
//!    enter a new cgroup namespace (the sandbox's cgroup becomes its `/`);
//! 5. drop every capability, apply Landlock, install the seccomp filters (`confine`): from
//!    here on, neither the init nor anything it starts can mount, create namespaces, ptrace...;
//! 6. become non-dumpable (the agent shares our uid and must not read our memory), start the
//!    agent, report `Ready`;
//! 7. serve the agent bridge and the platform forwarder on threads and reap children until the
//!    agent ends, then report its status and exit, which makes the kernel kill whatever is
//!    left in the PID namespace.
//!
//! It must never run anything of the agent's before step 5, and never keep a host path open
//! after step 3.

use std::fs::File;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustix::net::SendFlags;

use super::forward::{self, Control};
use super::{confine, mounts};
use crate::protocol::{ControlMsg, HelperSpec, SetupStage};
use crate::sys;

type Failure = (SetupStage, String);

/// Runs the init; never returns.
pub(super) fn run(spec: &HelperSpec, ctl: OwnedFd, agent_listener: UnixListener) -> ! {
    let ctl = Arc::new(Control::new(ctl));
    let code = match init_main(spec, &ctl, agent_listener) {
        Ok(code) => code,
        Err((stage, text)) => {
            let _ = ctl.send(&ControlMsg::Failed(stage, text));
            1
        }
    };
    sys::exit_now(code)
}

fn env(what: &'static str) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| (SetupStage::Environment, format!("{what}: {e}"))
}

fn init_main(
    spec: &HelperSpec,
    ctl: &Arc<Control>,
    agent_listener: UnixListener,
) -> Result<i32, Failure> {
    // If the helper dies, so does the sandbox (and with PID 1 gone, every process in it).
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
        .map_err(env("setting the parent-death signal"))?;
    // What `ps` inside the sandbox shows for PID 1.
    let _ = rustix::thread::set_name(c"sandbox-init");
    // The helper's stdin and stdout are its channels to the platform; the agent gets neither.
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(env("opening /dev/null"))?;
    sys::dup_onto(null.as_raw_fd(), 0).map_err(env("redirecting stdin"))?;
    sys::dup_onto(2, 1).map_err(env("redirecting stdout"))?;
    drop(null);

    if ctl.recv_plain() != Some(ControlMsg::Go) {
        // The helper gave up (and will kill us): nothing to report.
        return Ok(1);
    }

    mounts::build_root(spec).map_err(|e| (SetupStage::Environment, e))?;
    sys::set_hostname(&spec.hostname).map_err(env("setting the hostname"))?;
    sys::loopback_up().map_err(env("bringing up loopback"))?;
    let platform_listener = match &spec.platform_socket {
        Some(_) => Some(
            TcpListener::bind(("127.0.0.1", spec.platform_port))
                .map_err(env("binding the platform forwarder port"))?,
        ),
        None => None,
    };

    if ctl.recv_plain() != Some(ControlMsg::Placed) {
        return Ok(1);
    }
    // Best effort: a kernel without cgroup namespaces still isolates through the mount table.
    let _ = sys::unshare(libc::CLONE_NEWCGROUP);

    confine::drop_capabilities().map_err(|e| {
        (
            SetupStage::Confinement,
            format!("dropping capabilities: {e}"),
        )
    })?;
    confine::apply_landlock(&spec.mount_path, spec.require_landlock)
        .map_err(|e| (SetupStage::Confinement, e))?;
    confine::apply_seccomp().map_err(|e| (SetupStage::Confinement, e))?;

    // The agent will share our uid: it must not be able to read our memory or open our fds
    // through /proc (exec makes the agent itself dumpable again).
    sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(env("becoming non-dumpable"))?;
    // The agent gets stdin, stdout and stderr only: every other descriptor of ours (control
    // socket, bridges) is close-on-exec already, and this makes sure of it for any that is not.
    sys::cloexec_from(3).map_err(env("marking descriptors close-on-exec"))?;
    let agent = Command::new(&spec.command[0])
        .args(&spec.command[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.workdir)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| {
            (
                SetupStage::Agent,
                format!(
                    "cannot execute {:?} in {}: {e}",
                    spec.command[0],
                    spec.workdir.display()
                ),
            )
        })?;
    let agent_pid = agent.id() as libc::pid_t;
    // `Child` has no Drop side effects; reaping happens below with waitpid(-1).
    drop(agent);
    ctl.send(&ControlMsg::Ready)
        .map_err(env("reporting ready"))?;

    forward::serve_agent_bridge(agent_listener, spec.agent_port);
    if let Some(listener) = platform_listener {
        forward::serve_platform_bridge(listener, Arc::clone(ctl));
    }

    loop {
        match sys::wait_any() {
            Ok((pid, status)) if pid == agent_pid => {
                let _ = ctl.send(&ControlMsg::AgentEnded(status));
                return Ok(0);
            }
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(_) => return Ok(0),
        }
    }
}

impl Control {
    pub(super) fn send(&self, msg: &ControlMsg) -> std::io::Result<()> {
        rustix::net::send(self.fd(), &msg.encode(), SendFlags::NOSIGNAL)?;
        Ok(())
    }
}
