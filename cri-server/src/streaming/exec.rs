//! A streaming exec session: the command runs in the container through the
//! engine's `berth-runtime exec` (same namespaces, cgroup, user, caps,
//! seccomp and no_new_privs as ExecSync), wired to the client's streams:
//! pipes without a terminal (stdin EOF closes the process's stdin), or a
//! pty whose size follows the client's resize events.
//!
//! The session ends when the process exits (output still held open by a
//! background child is read for [`DRAIN_AFTER_EXIT`] more) and reports the
//! exit code. If the client goes away first, the caller drops this future:
//! the [`KillOnDrop`] guard then SIGKILLs the runtime, the process and
//! everything it started, so no exec outlives its session.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::engine::{Engine, ExecLaunch};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;

use super::fdio::FdStream;
use super::remotecommand::{copy_then_close, resize_events, TermSize};
use super::status::Outcome;
use super::tokens::ExecTarget;
use super::StreamSet;
use crate::error::CriError;
use crate::services::{blocking, Services};

/// How long output is still forwarded after the process exited.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long a terminal exec waits for the client's first size.
const FIRST_SIZE_WAIT: Duration = Duration::from_secs(1);

/// Aborts a helper task when the session ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Kept runtime stderr when the client did not ask for stderr (a failure
/// to start is reported from it).
const STDERR_KEEP: usize = 64 * 1024;

/// SIGKILLs the exec's whole tree unless disarmed (the process exited).
struct KillOnDrop {
    engine: Arc<Engine>,
    leader: Option<i32>,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.leader.take() {
            tracing::debug!(pid, "exec session ended early: killing the exec's processes");
            self.engine.kill_exec_tree(pid);
        }
    }
}

/// Runs the exec described by `target` over `streams`; returns how it ended.
#[tracing::instrument(skip_all, fields(container_id = %target.container_id))]
pub async fn run(s: Arc<Services>, target: ExecTarget, streams: StreamSet) -> Outcome {
    match run_inner(&s, &target, streams).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

async fn run_inner(s: &Arc<Services>, target: &ExecTarget, mut streams: StreamSet) -> Result<Outcome, CriError> {
    Box::pin(super::ensure_running(s, &target.container_id)).await?;
    let tty = target.stdio.tty;
    // Resize events are followed from the start, so the first one (clients
    // send the terminal's size at once) sizes the pty before the command
    // runs: `stty size` as the first command must see it.
    let (size_tx, sizes) = tokio::sync::watch::channel(None::<TermSize>);
    let resize_reader = AbortOnDrop(tokio::spawn(resize_events(streams.resize.take(), move |size| {
        let _ = size_tx.send(Some(size));
    })));
    let initial_size = if tty {
        let mut first = sizes.clone();
        tokio::time::timeout(FIRST_SIZE_WAIT, first.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|s| *s))
    } else {
        None
    };
    let launch = {
        let (s, id, cmd) = (s.clone(), target.container_id.clone(), target.cmd.clone());
        blocking(move || {
            let mut process = s.engine.exec_process_with(&id, cmd, tty)?;
            if let Some(size) = initial_size {
                process.set_console_size(
                    oci_spec::runtime::BoxBuilder::default()
                        .height(u64::from(size.height))
                        .width(u64::from(size.width))
                        .build()
                        .ok(),
                );
            }
            Ok(s.engine.exec_stream(&id, &process)?)
        })
        .await?
    };
    let mut launch = launch;
    let piped = |wanted: bool| if wanted { Stdio::piped() } else { Stdio::null() };
    if tty {
        launch
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
    } else {
        launch
            .command
            .stdin(piped(streams.stdin.is_some()))
            .stdout(piped(streams.stdout.is_some()))
            .stderr(Stdio::piped());
    }
    let std_command = std::mem::replace(&mut launch.command, std::process::Command::new("/nonexistent"));
    let mut child = tokio::process::Command::from(std_command)
        .spawn()
        .map_err(|e| CriError::Internal(format!("start berth-runtime exec: {e}")))?;
    let leader = child.id().map(|p| p as i32);
    let mut guard = KillOnDrop {
        engine: s.engine.clone(),
        leader,
    };
    let launch = Arc::new(launch);
    let runtime_stderr = child.stderr.take();
    let outcome = if tty {
        Box::pin(run_tty(
            &launch,
            &mut child,
            leader,
            runtime_stderr,
            &mut streams,
            sizes,
        ))
        .await
    } else {
        Box::pin(run_pipes(&mut child, runtime_stderr, &mut streams)).await
    };
    let outcome = match outcome {
        Ok((status, runtime_errors)) => {
            guard.leader = None;
            let code = exit_code(status);
            if code != 0 && !launch.started() {
                let message = String::from_utf8_lossy(&runtime_errors).trim().to_string();
                Outcome::Failed(if message.is_empty() {
                    format!(
                        "exec in container {}: the command could not be started",
                        target.container_id
                    )
                } else {
                    message
                })
            } else {
                Outcome::Exited {
                    code,
                    cmd: target.cmd.clone(),
                }
            }
        }
        Err(e) => Outcome::Failed(e),
    };
    drop(guard);
    drop(resize_reader);
    Ok(outcome)
}

/// Code as a shell reports it: the exit code, or 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

type Ended = Result<(std::process::ExitStatus, Vec<u8>), String>;

/// Without a terminal: three pipes.
async fn run_pipes(
    child: &mut Child,
    runtime_stderr: Option<tokio::process::ChildStderr>,
    streams: &mut StreamSet,
) -> Ended {
    let stdin_pump = pump_stdin(streams.stdin.take(), child.stdin.take());
    let stdout_pump = forward(child.stdout.take(), streams.stdout.take(), None);
    let mut kept = Vec::new();
    let stderr_pump = forward(runtime_stderr, streams.stderr.take(), Some(&mut kept));
    let output = async {
        tokio::join!(stdout_pump, stderr_pump);
    };
    let status = wait_and_drain(child, stdin_pump, output).await?;
    Ok((status, kept))
}

/// With a terminal: the pty master carries both directions; resize events
/// size it.
async fn run_tty(
    launch: &Arc<ExecLaunch>,
    child: &mut Child,
    leader: Option<i32>,
    runtime_stderr: Option<tokio::process::ChildStderr>,
    streams: &mut StreamSet,
    mut sizes: tokio::sync::watch::Receiver<Option<TermSize>>,
) -> Ended {
    let master = {
        let launch = launch.clone();
        let alive = move || leader.is_some_and(still_running);
        tokio::task::spawn_blocking(move || launch.receive_terminal(alive))
            .await
            .map_err(|e| e.to_string())?
    };
    let master = match master {
        Ok(m) => m,
        Err(e) => {
            let status = child.wait().await.map_err(|e| e.to_string())?;
            let mut errors = Vec::new();
            if let Some(mut err) = runtime_stderr {
                let _ = (&mut err).take(STDERR_KEEP as u64).read_to_end(&mut errors).await;
            }
            if errors.is_empty() {
                errors = e.to_string().into_bytes();
            }
            return Ok((status, errors));
        }
    };
    let resize_fd = master.try_clone().map_err(|e| e.to_string())?;
    let writer_fd = master.try_clone().map_err(|e| e.to_string())?;
    let reader = FdStream::new(master).map_err(|e| e.to_string())?;
    let writer = FdStream::new(writer_fd).map_err(|e| e.to_string())?;
    let resizes = async move {
        loop {
            if let Some(size) = *sizes.borrow_and_update() {
                let _ = berth_runtime::pty::set_winsize(std::os::fd::AsFd::as_fd(&resize_fd), size.height, size.width);
            }
            if sizes.changed().await.is_err() {
                return;
            }
        }
    };
    // A terminal has no half-close: stdin's end leaves the pty open.
    let input = streams.stdin.take();
    let stdin_pump = async move {
        if let Some(mut input) = input {
            let mut writer = writer;
            let _ = tokio::io::copy(&mut input, &mut writer).await;
            // keep the writer (and so the pty) open until the session ends
            std::future::pending::<()>().await;
        }
    };
    let mut kept = Vec::new();
    let stdout = streams.stdout.take();
    let output = async {
        tokio::join!(forward(Some(reader), stdout, None), async {
            if let Some(err) = runtime_stderr {
                keep_tail(err, &mut kept).await;
            }
        });
    };
    let status = wait_and_drain(child, async { tokio::join!(stdin_pump, resizes) }, output).await?;
    Ok((status, kept))
}

/// True while `pid` has not exited (it is not reaped: WNOWAIT).
fn still_running(pid: i32) -> bool {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    matches!(
        waitid(
            Id::Pid(nix::unistd::Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
        ),
        Ok(WaitStatus::StillAlive)
    )
}

/// Waits for the child while `input` and `output` run; after the exit,
/// output gets [`DRAIN_AFTER_EXIT`] to finish.
async fn wait_and_drain(
    child: &mut Child,
    input: impl std::future::Future,
    output: impl std::future::Future,
) -> Result<std::process::ExitStatus, String> {
    tokio::pin!(input);
    tokio::pin!(output);
    let (mut input_done, mut output_done) = (false, false);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(|e| e.to_string())?,
            // stdin ended; keep waiting for the process.
            _ = &mut input, if !input_done => input_done = true,
            _ = &mut output, if !output_done => output_done = true,
        }
    };
    if !output_done {
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, &mut output).await;
    }
    Ok(status)
}

/// Copies the client's stdin into the process until EOF, then closes the
/// process's stdin (the half-close reaches it).
async fn pump_stdin(input: Option<super::Reader>, stdin: Option<tokio::process::ChildStdin>) {
    if let (Some(mut input), Some(mut stdin)) = (input, stdin) {
        let _ = tokio::io::copy(&mut input, &mut stdin).await;
        let _ = stdin.shutdown().await;
    }
}

/// Copies process output to the client (or, without a client stream, keeps
/// up to [`STDERR_KEEP`] bytes in `keep` when given, else drops it).
async fn forward(from: Option<impl AsyncRead + Unpin>, to: Option<super::Writer>, keep: Option<&mut Vec<u8>>) {
    let Some(mut from) = from else {
        if let Some(mut to) = to {
            let _ = to.shutdown().await;
        }
        return;
    };
    match to {
        Some(to) => copy_then_close(&mut from, to).await,
        None => match keep {
            Some(keep) => keep_tail(from, keep).await,
            None => {
                let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
            }
        },
    }
}

/// Reads `from` to its end, keeping the first [`STDERR_KEEP`] bytes.
async fn keep_tail(mut from: impl AsyncRead + Unpin, keep: &mut Vec<u8>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = STDERR_KEEP.saturating_sub(keep.len());
                keep.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}
