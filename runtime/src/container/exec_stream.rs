//! `exec_stream`: what a streaming CRI `Exec` runs. Like [`super::exec_sync`]
//! the fork happens in a re-executed `berth-runtime exec` (the caller is
//! multi-threaded), started as the leader of its own process group; unlike
//! it, the caller wires the stdio itself (pipes, or the pty master that the
//! runtime sends to a console socket) and waits for the exit.
//!
//! ```text
//! let mut launch = exec_stream::prepare(dir, exe, id, &process)?;  // files, socket
//! launch.command.stdin(..).stdout(..).stderr(..);  // pipes (no tty)
//! let child = launch.command.spawn()?;             // or tokio's Command from it
//! let master = launch.receive_terminal(|| alive)?; // with process.terminal
//! launch.started()                                 // did execve happen?
//! kill_exec_tree(child pid)                        // client gone: all of it dies
//! ```

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oci_spec::runtime::Process;

use super::query::query;
use super::ContainerError;
use crate::state::{StateDir, Status};

/// How long the runtime may take to hand over the terminal.
pub const TERMINAL_TIMEOUT: Duration = Duration::from_secs(30);

/// A prepared streaming exec: the command to spawn and the files it uses,
/// removed when this is dropped.
pub struct ExecLaunch {
    /// `berth-runtime exec …`, its own process group leader. Set its stdio
    /// before spawning (without a terminal they are the process's).
    pub command: Command,
    id: String,
    process_file: PathBuf,
    pid_file: PathBuf,
    console: Option<(UnixListener, PathBuf)>,
}

/// Writes `process` for container `id` and builds the runtime command.
/// With `process.terminal`, a console socket is bound for the pty master.
pub fn prepare(dir: &StateDir, runtime_exe: &Path, id: &str, process: &Process) -> Result<ExecLaunch, ContainerError> {
    let c = query(dir, id)?;
    if c.status != Status::Running {
        return Err(ContainerError::WrongStatus {
            id: id.to_string(),
            status: c.status,
            action: "exec",
            needed: "running",
        });
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        let id = id.to_string();
        move |source| ContainerError::Io { id, path, source }
    };
    let cdir = dir.container_dir(id)?;
    let stem = unique_stem();
    let process_file = cdir.join(format!("{stem}.json"));
    let pid_file = cdir.join(format!("{stem}.pid"));
    let json = serde_json::to_vec(process).expect("an OCI process serializes");
    std::fs::write(&process_file, json).map_err(io_err(&process_file))?;
    let mut launch = ExecLaunch {
        command: Command::new(runtime_exe),
        id: id.to_string(),
        process_file,
        pid_file,
        console: None,
    };
    launch
        .command
        .arg("--root")
        .arg(dir.root())
        // The runtime's own log lines must not reach the client's stderr;
        // a failure to start still does (its error message).
        .arg("--log")
        .arg("/dev/null")
        .arg("exec")
        .arg("--process")
        .arg(&launch.process_file)
        .arg("--pid-file")
        .arg(&launch.pid_file);
    if process.terminal().unwrap_or(false) {
        let path = console_socket_path(dir, &stem);
        let listener = UnixListener::bind(&path).map_err(io_err(&path))?;
        listener.set_nonblocking(true).map_err(io_err(&path))?;
        launch.command.arg("--console-socket").arg(&path);
        launch.console = Some((listener, path));
    }
    launch.command.arg(id).process_group(0);
    Ok(launch)
}

impl ExecLaunch {
    /// Waits for the runtime to send the pty master. `alive` tells whether
    /// the runtime still runs (it exits without connecting when the exec
    /// fails; its stderr then says why).
    pub fn receive_terminal(&self, alive: impl Fn() -> bool) -> Result<OwnedFd, ContainerError> {
        let Some((listener, path)) = &self.console else {
            return Err(ContainerError::ExecFailed {
                id: self.id.clone(),
                message: "no terminal was asked for".into(),
            });
        };
        let deadline = Instant::now() + TERMINAL_TIMEOUT;
        loop {
            match listener.accept() {
                Ok((conn, _)) => {
                    conn.set_nonblocking(false).map_err(|source| ContainerError::Io {
                        id: self.id.clone(),
                        path: path.clone(),
                        source,
                    })?;
                    return receive_fd(&conn).map_err(|source| ContainerError::Sys {
                        id: self.id.clone(),
                        step: "receive the terminal from the console socket",
                        source,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(source) => {
                    return Err(ContainerError::Io {
                        id: self.id.clone(),
                        path: path.clone(),
                        source,
                    })
                }
            }
            if !alive() {
                return Err(ContainerError::ExecFailed {
                    id: self.id.clone(),
                    message: "the runtime exited before handing over the terminal".into(),
                });
            }
            if Instant::now() >= deadline {
                return Err(ContainerError::Timeout {
                    id: self.id.clone(),
                    secs: TERMINAL_TIMEOUT.as_secs(),
                    what: "the exec's terminal",
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// True once the process has called execve (the runtime writes its pid
    /// file only then): an exit without it is a failure to start.
    pub fn started(&self) -> bool {
        self.pid_file.exists()
    }
}

impl Drop for ExecLaunch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.process_file);
        let _ = std::fs::remove_file(&self.pid_file);
        if let Some((_, path)) = &self.console {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn unique_stem() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("exec-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A socket path short enough for `sun_path` (108 bytes): in the state
/// root's `.console` dir (mode 0700) when that fits, else in a private temp
/// dir of the same shape.
fn console_socket_path(dir: &StateDir, stem: &str) -> PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let name = format!("{stem}.sock");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    let preferred = dir.root().join(".console");
    if preferred.as_os_str().len() + name.len() < 100 && builder.create(&preferred).is_ok() {
        return preferred.join(name);
    }
    let fallback = std::env::temp_dir().join(format!("berth-console-{}", nix::unistd::getuid()));
    let _ = builder.create(&fallback);
    fallback.join(name)
}

/// Receives the one descriptor runc's console-socket contract sends.
fn receive_fd(conn: &std::os::unix::net::UnixStream) -> Result<OwnedFd, nix::errno::Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut got = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel installed these descriptors in this
                // process for this message; each is owned exactly once here.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    got.ok_or(nix::errno::Errno::EBADMSG)
}
