//! Talking to a container's monitor over its control socket.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::socket::{connect, recv, sendmsg, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use nix::sys::stat::Mode;

use super::protocol::{self, Request, Response};

/// Errors talking to a monitor.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("monitor socket {path}: {source}")]
    Connect { path: PathBuf, source: nix::errno::Errno },
    #[error("monitor socket {path}: {source}")]
    Io { path: PathBuf, source: nix::errno::Errno },
    #[error("monitor socket {path}: connection closed")]
    Closed { path: PathBuf },
    #[error("monitor socket {path}: bad reply: {detail}")]
    Protocol { path: PathBuf, detail: String },
    #[error("monitor: {0}")]
    Remote(String),
}

/// A connection to one monitor.
#[derive(Debug)]
pub struct MonitorConn {
    fd: OwnedFd,
    path: PathBuf,
}

impl MonitorConn {
    /// Connects to the socket in `container_dir`. The directory is reached
    /// through `/proc/self/fd/N` so long state paths fit in `sun_path`.
    pub fn connect(container_dir: &Path) -> Result<MonitorConn, ClientError> {
        let path = container_dir.join(crate::state::MONITOR_SOCKET);
        let err = |source| ClientError::Connect {
            path: path.clone(),
            source,
        };
        let dir = open(
            container_dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let short = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), crate::state::MONITOR_SOCKET);
        let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).map_err(err)?;
        let addr = UnixAddr::new(short.as_str()).map_err(err)?;
        connect(fd.as_raw_fd(), &addr).map_err(err)?;
        Ok(MonitorConn { fd, path })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Sends one packet.
    pub fn send_packet(&self, packet: &[u8]) -> Result<(), ClientError> {
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &[IoSlice::new(packet)],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(drop)
        .map_err(|source| ClientError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Receives one packet (empty: the monitor closed the connection).
    pub fn recv_packet(&self, buf: &mut [u8]) -> Result<usize, ClientError> {
        loop {
            match recv(self.fd.as_raw_fd(), buf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => {
                    return other.map_err(|source| ClientError::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// Sends `req` and waits for its response (stream packets that arrive
    /// meanwhile are skipped).
    pub fn call(&self, req: &Request) -> Result<Response, ClientError> {
        self.send_packet(req.packet().as_bytes())?;
        self.read_response()
    }

    /// Reads until the next control response.
    pub fn read_response(&self) -> Result<Response, ClientError> {
        let mut buf = vec![0u8; protocol::MAX_PACKET + 1];
        loop {
            let n = self.recv_packet(&mut buf)?;
            if n == 0 {
                return Err(ClientError::Closed {
                    path: self.path.clone(),
                });
            }
            if buf[0] != protocol::TAG_CONTROL {
                continue;
            }
            return Response::parse(&buf[1..n]).map_err(|e| ClientError::Protocol {
                path: self.path.clone(),
                detail: e.to_string(),
            });
        }
    }

    /// `call` that turns `Response::Error` into an error.
    pub fn call_ok(&self, req: &Request) -> Result<Response, ClientError> {
        match self.call(req)? {
            Response::Error(e) => Err(ClientError::Remote(e)),
            other => Ok(other),
        }
    }
}
