//! The wire formats between the three parties of a process sandbox:
//!
//! * platform → helper: one JSON line on the helper's stdin (`HelperSpec`), then control lines
//!   (`kill`); closing stdin also means `kill`, so a platform that dies takes its sandboxes
//!   with it;
//! * helper → platform: JSON lines on the helper's stdout (`HelperEvent`);
//! * init ↔ helper: short `SOCK_SEQPACKET` messages (`ControlMsg`) on a socket pair, plus
//!   `SCM_RIGHTS` for the platform connections the helper makes on the init's behalf.
//!
//! The init is inside the sandbox and shares it with hostile code, so the helper treats every
//! control message as untrusted: it parses strictly, never takes a path or size from it, and
//! its only service is "connect me to the platform socket named in the spec".

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One id mapping line: `inside outside 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
}

/// What the helper needs to build one sandbox. Built by the platform from a validated
/// `SandboxSpec`; everything is final (environment merged, cgroups created, paths resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperSpec {
    pub sandbox_id: String,
    pub command: Vec<String>,
    pub workdir: PathBuf,
    pub env: Vec<(String, String)>,
    pub storage_dir: PathBuf,
    /// An ext4 image to loop-mount on `storage_dir` (in the helper's own mount namespace)
    /// before the sandbox is built: the storage's size is then a hard limit.
    #[serde(default)]
    pub storage_image: Option<PathBuf>,
    pub mount_path: PathBuf,
    /// Host path where the helper creates the agent bridge's listening socket.
    pub agent_socket: PathBuf,
    pub agent_port: u16,
    /// Host Unix socket of the platform, and the port inside the sandbox that forwards to it.
    pub platform_socket: Option<PathBuf>,
    pub platform_port: u16,
    pub uid: IdMap,
    pub gid: IdMap,
    /// The helper may map ids other than its own (it runs as root on the host): supplementary
    /// groups are then dropped inside instead of `setgroups` being denied.
    pub privileged: bool,
    /// `cgroup.procs` files the init is written to before it may start the agent.
    pub cgroup_procs: Vec<PathBuf>,
    pub tmp_size_mb: u32,
    pub hostname: String,
    /// Refuse to start when the kernel cannot enforce Landlock.
    pub require_landlock: bool,
}

/// How a process ended, as `waitpid` told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessEnd {
    Code(i32),
    Signal(i32),
}

impl ProcessEnd {
    pub fn from_wait_status(status: i32) -> Self {
        if libc::WIFSIGNALED(status) {
            ProcessEnd::Signal(libc::WTERMSIG(status))
        } else {
            ProcessEnd::Code(libc::WEXITSTATUS(status))
        }
    }
}

/// Which step of the set-up failed, so the platform can classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupStage {
    /// Reading or checking the spec.
    Spec,
    /// Creating the namespaces (user namespaces unavailable...).
    Namespaces,
    /// Id maps, cgroup placement, mounts, network, hostname.
    Environment,
    /// Capabilities, Landlock, seccomp.
    Confinement,
    /// Executing the agent command.
    Agent,
}

/// What the helper reports on its stdout, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HelperEvent {
    /// The sandbox runs and the agent has been started. `init_pid` is the host pid of the
    /// sandbox's PID 1.
    Ready { init_pid: u32 },
    /// The sandbox could not be built; nothing of it is left running.
    SetupFailed { stage: SetupStage, message: String },
    /// The sandbox has ended. `agent` is how the agent process ended when the init saw it;
    /// `None` when the sandbox was killed first.
    Exited {
        agent: Option<ProcessEnd>,
        init: ProcessEnd,
    },
}

impl HelperEvent {
    pub fn to_line(&self) -> String {
        // Serialising these plain enums cannot fail; fall back to a fixed line regardless.
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"event":"setup_failed","stage":"spec","message":"unserialisable event"}"#.into()
        });
        s.push('\n');
        s
    }
}

/// Messages on the init ↔ helper control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMsg {
    /// helper → init: id maps written; build the sandbox.
    Go,
    /// helper → init: the init is in the sandbox's cgroup(s); the agent may start.
    Placed,
    /// init → helper: the agent has started.
    Ready,
    /// init → helper: set-up failed at this stage.
    Failed(SetupStage, String),
    /// init → helper: please connect to the platform socket and pass me the connection.
    Connect,
    /// helper → init: here it is (the fd travels as `SCM_RIGHTS`).
    Connected,
    /// helper → init: the platform socket refused.
    Refused,
    /// init → helper: the agent ended with this raw wait status.
    AgentEnded(i32),
}

/// The one byte the init sends on an agent bridge connection, with the socket it connected to
/// the agent's port attached (`SCM_RIGHTS`).
pub const AGENT_SOCKET_TAG: u8 = b'A';

/// The largest control message (a failure text is truncated to fit).
pub const CONTROL_MAX: usize = 1024;

impl ControlMsg {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ControlMsg::Go => b"G".to_vec(),
            ControlMsg::Placed => b"P".to_vec(),
            ControlMsg::Ready => b"R".to_vec(),
            ControlMsg::Connect => b"C".to_vec(),
            ControlMsg::Connected => b"F".to_vec(),
            ControlMsg::Refused => b"N".to_vec(),
            ControlMsg::AgentEnded(status) => {
                let mut v = b"X".to_vec();
                v.extend_from_slice(&status.to_le_bytes());
                v
            }
            ControlMsg::Failed(stage, text) => {
                let mut v = vec![b'E', stage_byte(*stage)];
                let room = CONTROL_MAX - v.len();
                let mut end = text.len().min(room);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                v.extend_from_slice(&text.as_bytes()[..end]);
                v
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, rest) = bytes.split_first()?;
        match (tag, rest.len()) {
            (b'G', 0) => Some(ControlMsg::Go),
            (b'P', 0) => Some(ControlMsg::Placed),
            (b'R', 0) => Some(ControlMsg::Ready),
            (b'C', 0) => Some(ControlMsg::Connect),
            (b'F', 0) => Some(ControlMsg::Connected),
            (b'N', 0) => Some(ControlMsg::Refused),
            (b'X', 4) => {
                let raw: [u8; 4] = rest.try_into().ok()?;
                Some(ControlMsg::AgentEnded(i32::from_le_bytes(raw)))
            }
            (b'E', n) if n >= 1 => {
                let stage = byte_stage(rest[0])?;
                Some(ControlMsg::Failed(
                    stage,
                    String::from_utf8_lossy(&rest[1..]).into_owned(),
                ))
            }
            _ => None,
        }
    }
}

fn stage_byte(stage: SetupStage) -> u8 {
    match stage {
        SetupStage::Spec => b's',
        SetupStage::Namespaces => b'n',
        SetupStage::Environment => b'e',
        SetupStage::Confinement => b'c',
        SetupStage::Agent => b'a',
    }
}

fn byte_stage(b: u8) -> Option<SetupStage> {
    match b {
        b's' => Some(SetupStage::Spec),
        b'n' => Some(SetupStage::Namespaces),
        b'e' => Some(SetupStage::Environment),
        b'c' => Some(SetupStage::Confinement),
        b'a' => Some(SetupStage::Agent),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        for m in [
            ControlMsg::Go,
            ControlMsg::Placed,
            ControlMsg::Ready,
            ControlMsg::Connect,
            ControlMsg::Connected,
            ControlMsg::Refused,
            ControlMsg::AgentEnded(-17),
            ControlMsg::Failed(SetupStage::Agent, "no such file: python3".into()),
        ] {
            assert_eq!(ControlMsg::decode(&m.encode()), Some(m.clone()), "{m:?}");
        }
    }

    #[test]
    fn malformed_control_messages_are_rejected() {
        for bad in [&b""[..], b"Z", b"GG", b"X12", b"Eq", b"E"] {
            assert_eq!(ControlMsg::decode(bad), None, "{bad:?}");
        }
        let long = "é".repeat(CONTROL_MAX);
        let enc = ControlMsg::Failed(SetupStage::Spec, long).encode();
        assert!(enc.len() <= CONTROL_MAX);
        assert!(ControlMsg::decode(&enc).is_some());
    }

    #[test]
    fn events_are_one_json_line() {
        let line = HelperEvent::Exited {
            agent: Some(ProcessEnd::Signal(9)),
            init: ProcessEnd::Code(0),
        }
        .to_line();
        assert_eq!(
            line,
            "{\"event\":\"exited\",\"agent\":{\"signal\":9},\"init\":{\"code\":0}}\n"
        );
        let back: HelperEvent = serde_json::from_str(line.trim()).expect("parses");
        assert!(matches!(back, HelperEvent::Exited { .. }));
    }
}
