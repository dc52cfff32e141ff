//! `exec_sync`: CRI ExecSync. Runs a process in a running container
//! through the same exec path as `berth-runtime exec` (namespaces, cgroup,
//! user, capabilities, no_new_privs, seccomp), captures its stdout and
//! stderr into capped buffers, and enforces a timeout.
//!
//! Safe to call from a multi-threaded caller (berthd): the fork happens in
//! a re-executed `berth-runtime exec`, started as the leader of a new
//! process group that the exec'd process and its children inherit.
//!
//! - Output beyond `output_cap` is read and dropped, so a chatty process
//!   never blocks on a full pipe.
//! - On timeout everything the command started dies, and the call answers
//!   only once it has: see [`kill_descendants`]. The runtime process is
//!   *not* killed with them: it is the command's parent and reaps it, so no
//!   zombie of the command is left in the container. (Killing it together
//!   with the command, as berth once did, left the command a zombie whose
//!   new parent was outside the container; critest's "execSync with
//!   timeout" then found it with `pgrep sleep` inside the container.) Only
//!   if the runtime has not exited [`RUNTIME_GRACE`] after the kill is its
//!   process group SIGKILLed too.
//! - How the tree is found. Every exec'd process is a child subreaper
//!   (`berth-runtime exec` sets `PR_SET_CHILD_SUBREAPER` before execve; see
//!   [`super::exec`]), so while the command runs, a descendant orphaned by a
//!   double fork, with or without `setsid`, is reparented to the command,
//!   not to the container's init: the command's `/proc` descendants are the
//!   whole tree, whatever sessions and process groups it made. A subreaper
//!   on `berth-runtime exec` itself would not do: the kernel looks for
//!   subreapers only within the orphan's pid namespace, and the runtime
//!   lives outside the container's. A cgroup per exec would also find
//!   everything, but means a child cgroup under the container's
//!   (controllers, the no-internal-processes rule on v2, stats): more than
//!   this needs. The timeout can only fire while the runtime waits for the
//!   command, so while the command, the subreaper, is alive.
//! - What is left: descendants killed with the command become zombies of
//!   the container's init (their parent died too); an init that reaps
//!   (a shell, tini, berth's pod init) removes them at once, one that
//!   never reaps (critest's `top`) keeps them as zombies, as it keeps
//!   every orphan's. A process in a new user namespace of its own is still
//!   found (the search is by parentage in the host's `/proc`).
//! - Once the process has exited, output still arriving (a background
//!   child holding the pipes) is read for [`DRAIN_AFTER_EXIT`] at most,
//!   then the call answers (kubernetes#92057: a probe must not hang until
//!   its timeout). The background child is left running, as containerd
//!   and CRI-O leave it: it now belongs to the container (a postStart
//!   hook may start a daemon this way); its output after the drain is
//!   lost (the pipe's reader is gone).
//! - The runtime writes a pid file only after the process called execve,
//!   which tells a process that exited non-zero from an exec that could
//!   not start (the latter is an error carrying the runtime's message).

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::ContainerError;
use crate::procfs;
use crate::state::StateDir;

/// How long output is still read after the process exited.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// How long [`kill_descendants`] waits for the tree to stop, then to die
/// (each): processes in uninterruptible sleep take as long as their I/O.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// How long the runtime may take to reap the killed command and exit
/// before its process group is SIGKILLed.
pub const RUNTIME_GRACE: Duration = Duration::from_secs(2);

/// The outcome of [`exec_sync`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSyncResult {
    /// The exit code, or 128 + signal.
    pub exit_code: i32,
    /// At most `output_cap` bytes of stdout.
    pub stdout: Vec<u8>,
    /// At most `output_cap` bytes of stderr.
    pub stderr: Vec<u8>,
    /// The timeout expired and the process tree was killed.
    pub timed_out: bool,
}

/// A capped buffer fed from a nonblocking pipe.
#[derive(Debug)]
struct Capture {
    buf: Vec<u8>,
    cap: usize,
    open: bool,
}

impl Capture {
    fn new(cap: usize) -> Capture {
        Capture {
            buf: Vec::new(),
            cap,
            open: true,
        }
    }

    /// Reads what is available; keeps up to the cap, drops the rest.
    fn pump(&mut self, fd: BorrowedFd<'_>, scratch: &mut [u8]) {
        loop {
            match nix::unistd::read(fd, scratch) {
                Ok(0) => {
                    self.open = false;
                    return;
                }
                Ok(n) => {
                    let room = self.cap.saturating_sub(self.buf.len());
                    self.buf.extend_from_slice(&scratch[..n.min(room)]);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    self.open = false;
                    return;
                }
            }
        }
    }
}

/// Runs `process` in container `id` (see the module doc). A zero
/// `timeout` means none.
#[tracing::instrument(skip(dir, runtime_exe, process))]
pub fn exec_sync(
    dir: &StateDir,
    runtime_exe: &Path,
    id: &str,
    process: &Process,
    timeout: Duration,
    output_cap: usize,
) -> Result<ExecSyncResult, ContainerError> {
    let mut process = process.clone();
    process.set_terminal(Some(false));
    // The same runtime command, files and process group as a streaming
    // exec (the runtime's log to /dev/null: a failure to start still
    // reaches stderr, see ExecFailed below).
    let mut launch = super::exec_stream::prepare(dir, runtime_exe, id, &process)?;
    let mut child = launch
        .command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ContainerError::Io {
            id: id.to_string(),
            path: runtime_exe.to_path_buf(),
            source,
        })?;
    let leader = Pid::from_raw(child.id() as i32);
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    for fd in [stdout.as_fd(), stderr.as_fd()] {
        set_nonblocking(fd);
    }
    let mut out = Capture::new(output_cap);
    let mut err = Capture::new(output_cap);
    let mut scratch = vec![0u8; 64 * 1024];
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let mut timed_out = false;
    // When the tree was killed, and whether the runtime's group was too.
    let mut killed: Option<(Instant, bool)> = None;
    let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
    loop {
        if exited.is_none() {
            exited = child
                .try_wait()
                .map_err(|source| ContainerError::Io {
                    id: id.to_string(),
                    path: runtime_exe.to_path_buf(),
                    source,
                })?
                .map(|s| (s, Instant::now()));
        }
        let now = Instant::now();
        match exited {
            Some((_, at)) if !(out.open || err.open) || now >= at + DRAIN_AFTER_EXIT => break,
            Some(_) => {}
            None if !timed_out && deadline.is_some_and(|d| now >= d) => {
                timed_out = true;
                kill_descendants(leader);
                killed = Some((Instant::now(), false));
            }
            None => {
                if let Some((at, false)) = killed {
                    if now >= at + RUNTIME_GRACE {
                        tracing::warn!(
                            id,
                            "berth-runtime exec did not exit after the timeout kill: killing its group"
                        );
                        let _ = killpg(leader, Signal::SIGKILL);
                        killed = Some((at, true));
                    }
                }
            }
        }
        let mut fds = Vec::with_capacity(2);
        if out.open {
            fds.push(PollFd::new(stdout.as_fd(), PollFlags::POLLIN));
        }
        if err.open {
            fds.push(PollFd::new(stderr.as_fd(), PollFlags::POLLIN));
        }
        if fds.is_empty() {
            // Both pipes closed: only the exit is left to see.
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match poll(&mut fds, PollTimeout::from(20u16)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(source) => {
                kill_tree(leader);
                let _ = child.wait();
                return Err(ContainerError::Sys {
                    id: id.to_string(),
                    step: "poll exec output",
                    source,
                });
            }
        }
        if out.open {
            out.pump(stdout.as_fd(), &mut scratch);
        }
        if err.open {
            err.pump(stderr.as_fd(), &mut scratch);
        }
    }
    let (status, _) = exited.expect("the loop ends only after the exit");
    let exit_code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255);
    if !launch.started() && !timed_out {
        return Err(ContainerError::ExecFailed {
            id: id.to_string(),
            message: String::from_utf8_lossy(&err.buf).trim().to_string(),
        });
    }
    Ok(ExecSyncResult {
        exit_code,
        stdout: out.buf,
        stderr: err.buf,
        timed_out,
    })
}

/// SIGKILLs everything the runtime process `leader` (a `berth-runtime
/// exec`, leader of its own process group) started, and returns once it
/// is dead (or after [`KILL_GRACE`]s); `leader` itself stays to reap its
/// child.
///
/// Everything is first stopped (SIGSTOP), scan after scan of `leader`'s
/// `/proc` descendants until one finds nothing new: a stopped process
/// cannot fork, and the command, a subreaper, stays alive meanwhile, so an
/// orphan forked in the race is reparented into the tree and found by the
/// next scan instead of escaping to the container's init. Then all of
/// them get SIGKILL at once.
pub(crate) fn kill_descendants(leader: Pid) {
    let running = |pid: i32| procfs::state(pid).is_some_and(|s| !matches!(s, 'Z' | 'X'));
    let stop_deadline = Instant::now() + KILL_GRACE;
    let mut seen: HashSet<i32> = HashSet::new();
    let mut tree: Vec<i32> = Vec::new();
    loop {
        let new: Vec<i32> = procfs::descendants(leader.as_raw())
            .into_iter()
            .filter(|&p| running(p) && seen.insert(p))
            .collect();
        if new.is_empty() {
            break;
        }
        for &p in &new {
            let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
        }
        tree.extend(&new);
        // The stop takes effect when the process next leaves the kernel: a
        // fork already under way completes first, so wait for it before
        // the next scan.
        while new
            .iter()
            .any(|&p| procfs::state(p).is_some_and(|s| !matches!(s, 'T' | 't' | 'Z' | 'X')))
        {
            if Instant::now() >= stop_deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if Instant::now() >= stop_deadline {
            break;
        }
    }
    let kill_deadline = Instant::now() + KILL_GRACE;
    loop {
        for &p in &tree {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        // Anything a process started before its stop took hold (only when
        // the stop phase ran out of time) is killed on the next round.
        let more: Vec<i32> = procfs::descendants(leader.as_raw())
            .into_iter()
            .filter(|&p| running(p) && seen.insert(p))
            .collect();
        tree.extend(&more);
        tree.retain(|&p| running(p));
        if tree.is_empty() || Instant::now() >= kill_deadline {
            if !tree.is_empty() {
                tracing::warn!(pids = ?tree, "exec: processes still running after SIGKILL");
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// SIGKILLs the runtime process `leader` of an exec and everything it
/// started: [`kill_descendants`], then, once `leader` has reaped its child
/// and exited (or after [`RUNTIME_GRACE`]), its process group. Blocks for
/// as long as that takes, normally a few milliseconds. `leader` must be the
/// caller's unreaped child (its zombie keeps the group id from reuse).
pub(crate) fn kill_tree(leader: Pid) {
    kill_descendants(leader);
    let deadline = Instant::now() + RUNTIME_GRACE;
    while procfs::state(leader.as_raw()).is_some_and(|s| !matches!(s, 'Z' | 'X')) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = killpg(leader, Signal::SIGKILL);
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_the_cap_and_drains_the_rest() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        set_nonblocking(r.as_fd());
        let mut c = Capture::new(10);
        let mut scratch = [0u8; 4];
        nix::unistd::write(&w, b"0123456789abcdef").unwrap();
        c.pump(r.as_fd(), &mut scratch);
        assert_eq!(c.buf, b"0123456789");
        assert!(c.open);
        drop(w);
        c.pump(r.as_fd(), &mut scratch);
        assert!(!c.open);
    }
}
