//! The two bridges the sandbox's init runs, with plain threads and blocking I/O:
//!
//! * agent bridge: accepts on the host-side Unix socket (bound by the helper, inherited); each
//!   connection there asks for one connection to the agent. The init connects a TCP socket to
//!   `127.0.0.1:<agent_port>` inside the sandbox and hands that socket to the host over the
//!   bridge connection (`SCM_RIGHTS`), then forgets it: the host talks to the agent on it
//!   directly, and no byte of an invocation passes through the init;
//! * platform bridge: accepts on `127.0.0.1:<platform_port>` inside the sandbox and, for each
//!   connection, asks the helper for a connection to the platform's Unix socket (made on the
//!   host and passed in with `SCM_RIGHTS`), then copies bytes both ways.
//!
//! These threads run in the sandbox's cgroup and count against its process limit; when a thread
//! cannot be started (a fork bomb has used the limit), the connection is dropped, never queued.
//! They must never open anything on the host themselves: the init holds no host path. A socket
//! handed to the host stays in the sandbox's network namespace, so all the host can reach
//! with it is the agent's port.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustix::net::RecvFlags;

use crate::protocol::{AGENT_SOCKET_TAG, CONTROL_MAX, ControlMsg};
use crate::sys;

/// Stack of forwarder threads: they only run `io::copy` with its 8 KiB buffer.
const STACK: usize = 64 * 1024;

/// The init's end of the control socket. Requests for platform connections are serialised by
/// `lock`, so each `Connect` gets the answer meant for it.
#[derive(Debug)]
pub(super) struct Control {
    fd: OwnedFd,
    lock: Mutex<()>,
}

impl Control {
    pub(super) fn new(fd: OwnedFd) -> Self {
        Self {
            fd,
            lock: Mutex::new(()),
        }
    }

    pub(super) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Receives one message without file descriptors (used for `Go`).
    pub(super) fn recv_plain(&self) -> Option<ControlMsg> {
        let mut buf = [0u8; CONTROL_MAX];
        loop {
            match rustix::net::recv(&self.fd, &mut buf, RecvFlags::empty()) {
                Ok((0, _)) => return None,
                Ok((n, _)) => return ControlMsg::decode(&buf[..n]),
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Asks the helper for a connection to the platform socket.
    fn connect_platform(&self) -> io::Result<OwnedFd> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.send(&ControlMsg::Connect)?;
        let mut buf = [0u8; 16];
        let (n, mut fds) = sys::recv_with_fds(&self.fd, &mut buf, RecvFlags::empty())?;
        match ControlMsg::decode(&buf[..n]) {
            Some(ControlMsg::Connected) if fds.len() == 1 => {
                fds.pop().ok_or_else(|| io::Error::other("no fd"))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the platform endpoint refused the connection",
            )),
        }
    }
}

fn spawn(f: impl FnOnce() + Send + 'static) -> bool {
    thread::Builder::new().stack_size(STACK).spawn(f).is_ok()
}

/// Copies both directions until both are closed.
fn relay<A, B>(a: A, b: B)
where
    A: Read + Write + Send + 'static + Duplex,
    B: Read + Write + Send + 'static + Duplex,
{
    let (Ok(mut a2), Ok(mut b2)) = (a.dup(), b.dup()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    let upstream = thread::Builder::new().stack_size(STACK).spawn(move || {
        let _ = io::copy(&mut a2, &mut b2);
        b2.close_write();
    });
    if upstream.is_err() {
        return;
    }
    let _ = io::copy(&mut b, &mut a);
    a.close_write();
    if let Ok(h) = upstream {
        let _ = h.join();
    }
}

/// A stream that can be duplicated and half-closed.
trait Duplex: Sized {
    fn dup(&self) -> io::Result<Self>;
    fn close_write(&self);
}

impl Duplex for TcpStream {
    fn dup(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Duplex for UnixStream {
    fn dup(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

fn connect_agent(port: u16) -> io::Result<TcpStream> {
    TcpStream::connect(("127.0.0.1", port)).or_else(|_| TcpStream::connect(("::1", port)))
}

/// Host → agent: each connection on the bridge socket gets one socket connected to the
/// agent's port, passed back over it.
pub(super) fn serve_agent_bridge(listener: UnixListener, port: u16) {
    spawn(move || {
        loop {
            match listener.accept() {
                Ok((conn, _)) => {
                    // A thread per request: connecting can wait when the agent's accept queue
                    // is full, and must not hold up the next request.
                    spawn(move || {
                        // If the agent does not listen (yet), the host sees the bridge
                        // connection close without a socket.
                        // (The host sets TCP_NODELAY on the socket it receives.)
                        if let Ok(tcp) = connect_agent(port) {
                            let _ = sys::send_with_fd(&conn, &[AGENT_SOCKET_TAG], tcp.as_fd());
                        }
                    });
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    });
}

/// Agent → platform: each connection to the forwarder port is joined to a platform connection.
pub(super) fn serve_platform_bridge(listener: TcpListener, ctl: Arc<Control>) {
    spawn(move || {
        loop {
            match listener.accept() {
                Ok((tcp, _)) => {
                    let ctl = Arc::clone(&ctl);
                    spawn(move || {
                        if let Ok(fd) = ctl.connect_platform() {
                            let _ = tcp.set_nodelay(true);
                            relay(tcp, UnixStream::from(fd));
                        }
                    });
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    });
}
