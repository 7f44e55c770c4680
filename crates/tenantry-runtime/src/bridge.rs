//! The host's end of the agent bridge: a connection to the sandbox's bridge socket is answered
//! by the sandbox's init with a TCP socket already connected to the agent's port inside the
//! sandbox (see `helper::forward`). The host then speaks HTTP to the agent on that socket with
//! nothing in between.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::net::{AddressFamily, RecvFlags, SocketType};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

use crate::protocol::AGENT_SOCKET_TAG;
use crate::sys;

/// How long the init may take to connect to the agent and pass the socket. On a loopback
/// interface this takes microseconds; only an agent whose accept queue stays full waits this
/// long.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a new connection to the agent behind the bridge socket at `path`.
pub(crate) async fn connect(path: &Path) -> io::Result<TcpStream> {
    let bridge = UnixStream::connect(path).await?;
    let fd = tokio::time::timeout(HAND_OVER_TIMEOUT, receive(&bridge))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the sandbox did not pass a connection to the agent within {HAND_OVER_TIMEOUT:?}"
                ),
            )
        })??;
    check_tcp(&fd)?;
    let stream = std::net::TcpStream::from(fd);
    stream.set_nonblocking(true)?;
    let stream = TcpStream::from_std(stream)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Waits for the init's answer on `bridge`: the tag byte with one socket attached.
async fn receive(bridge: &UnixStream) -> io::Result<OwnedFd> {
    loop {
        bridge.readable().await?;
        match bridge.try_io(Interest::READABLE, || receive_now(bridge.as_fd())) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

fn receive_now(bridge: impl AsFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    // Every descriptor that arrived is owned here and closed unless it is the one expected.
    let (n, mut fds) = sys::recv_with_fds(bridge, &mut byte, RecvFlags::DONTWAIT)?;
    match (n, fds.len()) {
        (0, _) => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "the agent does not accept connections on its port",
        )),
        (1, 1) if byte[0] == AGENT_SOCKET_TAG => fds.pop().ok_or_else(|| unexpected("no socket")),
        _ => Err(unexpected("an answer that is not one socket")),
    }
}

/// The socket must be a TCP one (IPv4 or IPv6 stream): anything else is refused rather than
/// handed to an HTTP client.
fn check_tcp(fd: &OwnedFd) -> io::Result<()> {
    let kind = rustix::net::sockopt::socket_type(fd)?;
    let family = rustix::net::sockopt::socket_domain(fd)?;
    if kind == SocketType::STREAM
        && (family == AddressFamily::INET || family == AddressFamily::INET6)
    {
        Ok(())
    } else {
        Err(unexpected("a descriptor that is not a TCP socket"))
    }
}

fn unexpected(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the sandbox's agent bridge sent {what}"),
    )
}
