//! Pseudo-terminal helpers: open a master from a given `ptmx`, size it,
//! make a slave the controlling terminal, hand a master to a
//! `--console-socket` listener. Raw ioctls are wrapped here once.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::pty::PtyMaster;
use nix::sys::stat::Mode;

/// Errors handling a terminal.
#[derive(Debug, thiserror::Error)]
#[error("terminal: {step}: {source}")]
pub struct PtyError {
    step: &'static str,
    source: Errno,
}

/// Errors handing a terminal master to a console socket.
#[derive(Debug, thiserror::Error)]
#[error("console socket {path}: {step}: {source}")]
pub struct ConsoleSocketError {
    path: PathBuf,
    step: &'static str,
    source: Errno,
}

fn err(step: &'static str) -> impl FnOnce(Errno) -> PtyError {
    move |source| PtyError { step, source }
}

/// Opens a new master on `ptmx` (a devpts `ptmx` node, possibly a
/// `/proc/self/fd/N` path) and returns it with the slave's number.
pub fn open_master(ptmx: &Path) -> Result<(OwnedFd, u32), PtyError> {
    let fd = open(ptmx, OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty()).map_err(err("open ptmx"))?;
    // SAFETY: `fd` was just opened from a ptmx node, so it is a pty master;
    // PtyMaster takes over its ownership.
    let master = unsafe { PtyMaster::from_owned_fd(fd) };
    nix::pty::unlockpt(&master).map_err(err("unlockpt"))?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int through the valid pointer.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n as *mut libc::c_uint) };
    Errno::result(rc).map_err(err("TIOCGPTN"))?;
    Ok((master.into(), n))
}

/// Sets the terminal size of `fd` (master or slave).
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), PtyError> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `struct winsize` from the valid pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws as *const libc::winsize) };
    Errno::result(rc).map(drop).map_err(err("TIOCSWINSZ"))
}

/// Starts a new session and makes `slave` its controlling terminal.
pub fn make_controlling(slave: BorrowedFd<'_>) -> Result<(), PtyError> {
    nix::unistd::setsid().map_err(err("setsid"))?;
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal).
    let rc = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(rc).map(drop).map_err(err("TIOCSCTTY"))
}

/// Sends `master` over the unix stream socket at `path`, runc's
/// `--console-socket` contract: one message whose payload is the terminal's
/// name and whose `SCM_RIGHTS` carries the master.
pub fn send_to_console_socket(path: &Path, master: BorrowedFd<'_>) -> Result<(), ConsoleSocketError> {
    use nix::sys::socket::{connect, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};
    let err = |step| {
        move |source| ConsoleSocketError {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(err("socket"))?;
    let addr = nix::sys::socket::UnixAddr::new(path).map_err(err("address"))?;
    connect(fd.as_raw_fd(), &addr).map_err(err("connect"))?;
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        fd.as_raw_fd(),
        &[IoSlice::new(b"/dev/ptmx")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(err("sendmsg"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn opens_and_sizes_a_pty() {
        let (master, n) = open_master(Path::new("/dev/ptmx")).unwrap();
        assert!(Path::new(&format!("/dev/pts/{n}")).exists());
        set_winsize(master.as_fd(), 30, 100).unwrap();
    }

    #[test]
    fn console_socket_receives_the_master() {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::FromRawFd;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let (master, n) = open_master(Path::new("/dev/ptmx")).unwrap();
        send_to_console_socket(&path, master.as_fd()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
        let mut got = None;
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel installed this descriptor for us.
                got = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
            }
        }
        let got = got.expect("a descriptor was passed");
        let mut num: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes one unsigned int through the valid pointer.
        let rc = unsafe { libc::ioctl(got.as_raw_fd(), libc::TIOCGPTN, &mut num as *mut libc::c_uint) };
        assert_eq!(rc, 0);
        assert_eq!(num, n);
        let err = send_to_console_socket(&tmp.path().join("nope"), master.as_fd())
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope") && err.contains("connect"), "{err}");
    }
}
