//! Pseudo-terminal helpers: open a master from a given `ptmx`, size it,
//! make a slave the controlling terminal. Raw ioctls are wrapped here once.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

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
}
