//! Child processes that never outlive us.
//!
//! A [`Guarded`] process is stopped when dropped (SIGTERM, then SIGKILL after
//! a grace period). Drop does not run when the owner is SIGKILLed or a test
//! binary exits with a static fixture alive, so each guarded child also gets
//! a watchdog: a tiny `sh` blocked reading a pipe whose only writer is this
//! process. When this process dies for any reason the pipe closes, `read`
//! returns and the watchdog kills the child.

use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub struct Guarded {
    name: String,
    child: Child,
    watchdog: Option<(Child, ChildStdin)>,
    exited: Option<ExitStatus>,
}

impl Guarded {
    /// Spawns `cmd` with stdin closed and stdout/stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Guarded> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let child = cmd.spawn().with_context(|| format!("starting {name} ({cmd:?})"))?;
        let pid = child.id().to_string();
        let watchdog = Command::new("/bin/sh")
            .args([
                "-c",
                "read _ignored; kill -9 \"$1\" 2>/dev/null; exit 0",
                "berth-watchdog",
                &pid,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(|mut w| {
                let stdin = w.stdin.take().expect("piped stdin");
                (w, stdin)
            })
            .ok();
        Ok(Guarded {
            name: name.to_string(),
            child,
            watchdog,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status if the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    pub fn signal(&mut self, sig: Signal) -> Result<()> {
        if self.try_wait().is_some() {
            return Ok(());
        }
        kill(Pid::from_raw(self.child.id() as i32), sig).with_context(|| format!("sending {sig} to {}", self.name))
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap, at once.
    pub fn kill_now(&mut self) -> Option<ExitStatus> {
        let _ = self.signal(Signal::SIGKILL);
        self.exited = self.child.wait().ok();
        self.disarm();
        self.exited
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let _ = self.signal(Signal::SIGTERM);
        let status = match self.wait_timeout(grace) {
            Some(s) => Some(s),
            None => self.kill_now(),
        };
        self.disarm();
        status
    }

    fn disarm(&mut self) {
        if let Some((mut w, stdin)) = self.watchdog.take() {
            // Kill the watchdog before it can see EOF: the child is reaped and
            // its pid may be reused.
            let _ = w.kill();
            drop(stdin);
            let _ = w.wait();
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Reads a log file for an error message (lossy, last `max` bytes).
pub fn tail(path: &Path, max: usize) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    let start = buf.len().saturating_sub(max);
    String::from_utf8_lossy(&buf[start..]).into_owned()
}
