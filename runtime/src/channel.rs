//! The typed handshake between the monitor (parent), the intermediate
//! process and the container init, over one `SOCK_SEQPACKET` socketpair.
//!
//! ```text
//! monitor (ParentEnd)                 intermediate / init (ChildEnd)
//!   fork intermediate ───────────────▶
//!   put it in the cgroup
//!   parent_ready ────────────────────▶ wait_parent_ready
//!                                      join namespaces (setns), unshare user ns
//!   wait_id_map_request ◀──────────── request_id_maps   (only with a new user ns)
//!   write uid_map/gid_map
//!   id_maps_written ─────────────────▶
//!                                      unshare the other namespaces, fork init
//!   wait_init_pid ◀───────────────── send_init_pid (intermediate exits)
//!                                      init: rootfs, mounts, pivot_root, …
//!   wait_console ◀────────────────── send_console (pty master, SCM_RIGHTS; tty only)
//!   wait_init_ready ◀─────────────── send_init_ready   (blocked before execve)
//!   start ───────────────────────────▶ wait_start
//!   wait_exec ◀──────────────────── EOF on execve (CLOEXEC) or exec_failed
//! ```
//! Any step may instead receive `Error(msg)`, which the parent reports.
//!
//! Wire format: one packet per message, a tag byte then the payload (a
//! little-endian `i32` for `InitPid`, UTF-8 text for `ExecFailed`/`Error`).
//! No serde: the monitor's supervisor (`berth-monitor`) speaks this too and
//! stays small.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
/// Largest message; longer error texts arrive truncated.
const MAX_MESSAGE: usize = 8 * 1024;

/// Errors on the parent/child channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel: {0}")]
    Sys(#[from] nix::errno::Errno),
    #[error("channel: peer closed while waiting for {0}")]
    Closed(&'static str),
    #[error("channel: expected {expected}, got {got:?}")]
    Unexpected { expected: &'static str, got: Message },
    #[error("channel: malformed message: {0}")]
    Malformed(String),
    #[error("{0}")]
    Remote(String),
}

/// Messages exchanged during setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    ParentReady,
    IdMapRequest,
    IdMapsWritten,
    InitPid(i32),
    Console,
    InitReady,
    Start,
    ExecFailed(String),
    Error(String),
}

impl Message {
    /// The packet for this message (see the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let (tag, payload): (u8, &[u8]) = match self {
            Message::ParentReady => (0, &[]),
            Message::IdMapRequest => (1, &[]),
            Message::IdMapsWritten => (2, &[]),
            Message::InitPid(pid) => return [&[3u8][..], &pid.to_le_bytes()].concat(),
            Message::Console => (4, &[]),
            Message::InitReady => (5, &[]),
            Message::Start => (6, &[]),
            Message::ExecFailed(e) => (7, e.as_bytes()),
            Message::Error(e) => (8, e.as_bytes()),
        };
        [&[tag][..], payload].concat()
    }

    /// Parses one packet.
    pub fn decode(packet: &[u8]) -> Result<Message, ChannelError> {
        let (&tag, payload) = packet
            .split_first()
            .ok_or_else(|| ChannelError::Malformed("empty packet".into()))?;
        let text = || String::from_utf8_lossy(payload).into_owned();
        let bare = |m: Message| match payload.is_empty() {
            true => Ok(m),
            false => Err(ChannelError::Malformed(format!("tag {tag}: unexpected payload"))),
        };
        match tag {
            0 => bare(Message::ParentReady),
            1 => bare(Message::IdMapRequest),
            2 => bare(Message::IdMapsWritten),
            3 => payload
                .try_into()
                .map(|b| Message::InitPid(i32::from_le_bytes(b)))
                .map_err(|_| ChannelError::Malformed(format!("init pid of {} bytes", payload.len()))),
            4 => bare(Message::Console),
            5 => bare(Message::InitReady),
            6 => bare(Message::Start),
            7 => Ok(Message::ExecFailed(text())),
            8 => Ok(Message::Error(text())),
            _ => Err(ChannelError::Malformed(format!("unknown tag {tag}"))),
        }
    }
}

/// Creates the connected pair (both ends close-on-exec).
pub fn pair() -> Result<(ParentEnd, ChildEnd), ChannelError> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    Ok((ParentEnd { sock: Sock(a) }, ChildEnd { sock: Sock(b) }))
}

#[derive(Debug)]
struct Sock(OwnedFd);

impl Sock {
    fn send(&self, msg: &Message, fd: Option<RawFd>) -> Result<(), ChannelError> {
        let bytes = msg.encode();
        let fds;
        let cmsgs: &[ControlMessage] = match fd {
            Some(fd) => {
                fds = [fd];
                &[ControlMessage::ScmRights(&fds)]
            }
            None => &[],
        };
        sendmsg::<()>(
            self.0.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    fn recv(&self, waiting_for: &'static str) -> Result<(Message, Option<OwnedFd>), ChannelError> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fd = None;
                    for c in msg.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for raw in fds {
                                // SAFETY: the kernel just installed `raw` in
                                // our table for us; nothing else owns it.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    break (msg.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Err(ChannelError::Closed(waiting_for));
        }
        let msg = Message::decode(&buf[..n])?;
        if let Message::Error(e) = msg {
            return Err(ChannelError::Remote(e));
        }
        Ok((msg, fd))
    }

    fn expect(&self, want: Message, name: &'static str) -> Result<(), ChannelError> {
        match self.recv(name)?.0 {
            m if m == want => Ok(()),
            got => Err(ChannelError::Unexpected { expected: name, got }),
        }
    }
}

/// The monitor's end.
#[derive(Debug)]
pub struct ParentEnd {
    sock: Sock,
}

impl ParentEnd {
    /// Takes over a parent end passed as a descriptor (the monitor's
    /// supervisor receives it across `execve`).
    pub fn from_fd(fd: OwnedFd) -> ParentEnd {
        ParentEnd { sock: Sock(fd) }
    }

    /// The socket, to hand over to the supervisor.
    pub fn into_fd(self) -> OwnedFd {
        self.sock.0
    }

    pub fn parent_ready(&self) -> Result<(), ChannelError> {
        self.sock.send(&Message::ParentReady, None)
    }

    /// Waits for the intermediate to ask for uid/gid maps.
    pub fn wait_id_map_request(&self) -> Result<(), ChannelError> {
        self.sock.expect(Message::IdMapRequest, "id map request")
    }

    pub fn id_maps_written(&self) -> Result<(), ChannelError> {
        self.sock.send(&Message::IdMapsWritten, None)
    }

    /// The init's pid as the monitor sees it.
    pub fn wait_init_pid(&self) -> Result<i32, ChannelError> {
        match self.sock.recv("init pid")?.0 {
            Message::InitPid(pid) => Ok(pid),
            got => Err(ChannelError::Unexpected {
                expected: "init pid",
                got,
            }),
        }
    }

    /// Receives the pty master the init opened inside the container.
    pub fn wait_console(&self) -> Result<OwnedFd, ChannelError> {
        match self.sock.recv("console")? {
            (Message::Console, Some(fd)) => Ok(fd),
            (got, _) => Err(ChannelError::Unexpected {
                expected: "console",
                got,
            }),
        }
    }

    pub fn wait_init_ready(&self) -> Result<(), ChannelError> {
        self.sock.expect(Message::InitReady, "init ready")
    }

    pub fn start(&self) -> Result<(), ChannelError> {
        self.sock.send(&Message::Start, None)
    }

    /// Waits until the init has called execve: the channel closes (its end
    /// is close-on-exec). An `ExecFailed` message is turned into an error.
    pub fn wait_exec(&self) -> Result<(), ChannelError> {
        match self.sock.recv("exec") {
            Err(ChannelError::Closed(_)) => Ok(()),
            Ok((Message::ExecFailed(e), _)) => Err(ChannelError::Remote(e)),
            Ok((got, _)) => Err(ChannelError::Unexpected { expected: "exec", got }),
            Err(e) => Err(e),
        }
    }
}

/// The end held by the intermediate and then the init.
#[derive(Debug)]
pub struct ChildEnd {
    sock: Sock,
}

impl ChildEnd {
    pub fn raw_fd(&self) -> RawFd {
        self.sock.0.as_raw_fd()
    }

    pub fn wait_parent_ready(&self) -> Result<(), ChannelError> {
        self.sock.expect(Message::ParentReady, "parent ready")
    }

    /// Asks the parent to write our uid/gid maps and waits until it has.
    pub fn request_id_maps(&self) -> Result<(), ChannelError> {
        self.sock.send(&Message::IdMapRequest, None)?;
        self.sock.expect(Message::IdMapsWritten, "id maps written")
    }

    pub fn send_init_pid(&self, pid: i32) -> Result<(), ChannelError> {
        self.sock.send(&Message::InitPid(pid), None)
    }

    pub fn send_console(&self, master: RawFd) -> Result<(), ChannelError> {
        self.sock.send(&Message::Console, Some(master))
    }

    pub fn send_init_ready(&self) -> Result<(), ChannelError> {
        self.sock.send(&Message::InitReady, None)
    }

    pub fn wait_start(&self) -> Result<(), ChannelError> {
        self.sock.expect(Message::Start, "start")
    }

    pub fn exec_failed(&self, error: &str) -> Result<(), ChannelError> {
        self.sock.send(&Message::ExecFailed(error.to_string()), None)
    }

    pub fn send_error(&self, error: &str) -> Result<(), ChannelError> {
        self.sock.send(&Message::Error(error.to_string()), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_in_order_with_fd_passing() {
        let (parent, child) = pair().unwrap();
        parent.parent_ready().unwrap();
        child.wait_parent_ready().unwrap();
        let t = std::thread::spawn(move || {
            child.request_id_maps().unwrap();
            child.send_init_pid(42).unwrap();
            let f = std::fs::File::open("/dev/null").unwrap();
            child.send_console(f.as_raw_fd()).unwrap();
            child.send_init_ready().unwrap();
            child.wait_start().unwrap();
            child.exec_failed("no such file").unwrap();
        });
        parent.wait_id_map_request().unwrap();
        parent.id_maps_written().unwrap();
        assert_eq!(parent.wait_init_pid().unwrap(), 42);
        let fd = parent.wait_console().unwrap();
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"));
        parent.wait_init_ready().unwrap();
        parent.start().unwrap();
        let err = parent.wait_exec().unwrap_err().to_string();
        assert_eq!(err, "no such file");
        t.join().unwrap();
    }

    #[test]
    fn every_message_roundtrips() {
        let all = [
            Message::ParentReady,
            Message::IdMapRequest,
            Message::IdMapsWritten,
            Message::InitPid(-7),
            Message::InitPid(4_000_000),
            Message::Console,
            Message::InitReady,
            Message::Start,
            Message::ExecFailed("exec /bin/nope: ENOENT".into()),
            Message::Error(String::new()),
        ];
        for m in all {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
        for bad in [&[][..], &[3, 1, 2], &[0, 1], &[99]] {
            assert!(
                matches!(Message::decode(bad), Err(ChannelError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn eof_means_exec_and_errors_are_remote() {
        let (parent, child) = pair().unwrap();
        drop(child);
        parent.wait_exec().unwrap();
        let (parent, child) = pair().unwrap();
        child.send_error("mount /proc: EPERM").unwrap();
        let err = parent.wait_init_ready().unwrap_err();
        assert!(matches!(err, ChannelError::Remote(m) if m == "mount /proc: EPERM"));
    }
}
