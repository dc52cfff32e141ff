//! Waiting for a foreground `exec` while passing on the signals that reach
//! `berth-runtime exec` (as runc does): Ctrl-C or a `kill` of the command
//! reaches the process in the container instead of killing the caller and
//! orphaning it.
//!
//! The forwarded signals are blocked in the calling thread before the
//! fork (so one arriving while the process starts is passed on too, not
//! fatal to the caller) and read from a signalfd; the child restores its
//! mask at once; the child's exit is watched through a pidfd (not SIGCHLD, so
//! a multi-threaded caller works too). The old signal mask comes back on
//! drop.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// The signals passed on to the process.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Forwarding in place for this thread; see the module doc.
pub struct Forwarder {
    sigfd: SignalFd,
    old_mask: SigSet,
}

/// A pidfd for `pid`, which must be our own unreaped child (so the pid
/// cannot have been reused).
fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Forwarder {
    /// Blocks the forwarded signals and opens the signalfd.
    pub fn install() -> Result<Forwarder, Errno> {
        let set = SigSet::from_iter(FORWARDED);
        let mut old_mask = SigSet::empty();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old_mask))?;
        match SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
            Ok(sigfd) => Ok(Forwarder { sigfd, old_mask }),
            Err(e) => {
                let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
                Err(e)
            }
        }
    }

    /// In a child forked after [`Forwarder::install`]: gives it the signal
    /// mask from before, so the process it becomes gets the forwarded
    /// signals normally. Async-signal-safe (one sigprocmask).
    pub fn restore_mask_in_child(&self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
    }

    /// Waits until child `pid` has exited, signalling it with every
    /// forwarded signal that arrives meanwhile; returns how it ended.
    pub fn wait(&self, pid: Pid) -> Result<WaitStatus, Errno> {
        let pidfd = pidfd_open(pid)?;
        loop {
            let mut fds = [
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
            let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            let (exited, signalled) = (ready(&fds[0]), ready(&fds[1]));
            if signalled {
                while let Ok(Some(info)) = self.sigfd.read_signal() {
                    if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                        let _ = kill(pid, sig);
                    }
                }
            }
            if exited {
                return loop {
                    match waitpid(pid, None) {
                        Err(Errno::EINTR) => continue,
                        other => break other,
                    }
                };
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
    }
}
