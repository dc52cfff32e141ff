//! The local side of an interactive session: the terminal in raw mode
//! (restored on every way out: return, error, signal, panic), its size
//! and SIGWINCH as resize events, and stdin read on a thread of its own.

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, Once};

use bytes::Bytes;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::{LocalIo, LocalReader, TerminalSize, Transport};

/// The settings to put back, shared with the panic hook.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

fn restore_saved() {
    let saved = match SAVED.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    if let Some(saved) = saved {
        if let Err(e) = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &saved) {
            eprintln!("berthctl: restoring the terminal: {e}");
        }
    }
}

/// Stdin's terminal in raw mode until dropped: keys go to the remote
/// terminal as typed (Ctrl-C included), nothing is echoed locally.
#[must_use = "the terminal is restored when this is dropped"]
pub struct RawMode(());

impl RawMode {
    /// Switches stdin's terminal to raw mode; `None` when stdin is not a
    /// terminal.
    pub fn enable() -> anyhow::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !nix::unistd::isatty(&stdin).unwrap_or(false) {
            return Ok(None);
        }
        let saved = termios::tcgetattr(&stdin).map_err(|e| anyhow::anyhow!("read the terminal's settings: {e}"))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        // A panic (which aborts in release builds, skipping drops) puts the
        // terminal back first.
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_saved();
                previous(info);
            }));
        });
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
        if let Err(e) = termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw) {
            restore_saved();
            anyhow::bail!("switch the terminal to raw mode: {e}");
        }
        Ok(Some(RawMode(())))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_saved();
    }
}

fn size_of(fd: RawFd) -> Option<TerminalSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct passed, which
    // lives across the call; a bad or non-terminal fd only makes it fail.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some(TerminalSize {
        width: ws.ws_col,
        height: ws.ws_row,
    })
}

/// The local terminal's size (of stdin, else stdout), if either is one.
pub fn size() -> Option<TerminalSize> {
    size_of(std::io::stdin().as_raw_fd()).or_else(|| size_of(std::io::stdout().as_raw_fd()))
}

/// The terminal's size now and after every SIGWINCH (repeats dropped);
/// ends when the receiver is dropped.
pub fn watch_size() -> anyhow::Result<mpsc::Receiver<TerminalSize>> {
    let mut winch = signal(SignalKind::window_change())?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut last = None;
        loop {
            if let Some(now) = size().filter(|s| Some(*s) != last) {
                last = Some(now);
                if tx.send(now).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                r = winch.recv() => if r.is_none() { return },
                () = tx.closed() => return,
            }
        }
    });
    Ok(rx)
}

/// The process's stdin as an async reader. A thread does the blocking
/// reads (tokio's stdin would keep the runtime from shutting down while a
/// read waits for a key); it ends at EOF or when the reader is dropped and
/// the next read returns.
pub fn stdin() -> LocalReader {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let spawned = std::thread::Builder::new()
        .name("berthctl-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 32 << 10];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "reading stdin");
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no stdin reader thread: stdin is empty");
    }
    let stream = ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    Box::pin(tokio_util::io::StreamReader::new(stream))
}

/// Waits for SIGINT, SIGTERM, SIGHUP or SIGQUIT; returns 128 + its number
/// (the shell's exit status for a process killed by it).
async fn interrupted(mut signals: Vec<(tokio::signal::unix::Signal, i32)>) -> i32 {
    let waits = signals.iter_mut().map(|(s, n)| {
        let n = *n;
        Box::pin(async move {
            s.recv().await;
            128 + n
        })
    });
    futures::future::select_all(waits).await.0
}

/// Runs an exec or attach session at `url` on this process's stdio, as
/// `berthctl exec -i/-t` and `attach` do: stdin forwarded when `stdin`;
/// with `tty`, the local terminal raw while stdin is forwarded from it, and
/// its size sent at the start and on every change. Returns the remote exit
/// code, or 128 + n when signal n ended berthctl first. The terminal is
/// back to its settings before this returns.
pub async fn interactive(url: &str, transport: Transport, stdin: bool, tty: bool) -> anyhow::Result<i32> {
    let signals = [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
    ]
    .into_iter()
    .map(|(kind, n)| Ok((signal(kind)?, n)))
    .collect::<std::io::Result<Vec<_>>>()?;
    let resize = if tty { Some(watch_size()?) } else { None };
    let io = LocalIo {
        stdin: stdin.then(self::stdin),
        stdout: Some(Box::pin(tokio::io::stdout())),
        stderr: (!tty).then(|| Box::pin(tokio::io::stderr()) as super::LocalWriter),
        resize,
    };
    let raw = if tty && stdin { RawMode::enable()? } else { None };
    let result = tokio::select! {
        r = super::remote_command(url, transport, io, tty) => r,
        code = interrupted(signals) => Ok(code),
    };
    drop(raw);
    result
}
