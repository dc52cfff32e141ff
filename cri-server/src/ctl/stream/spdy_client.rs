//! Remote commands over SPDY/3.1: one stream per standard stream, named by
//! the `streamType` header, opened in client-go's order (error, stdin,
//! stdout, stderr, resize). Only the streams the CRI request asked for are
//! opened; the server waits for exactly those.

use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{status, LocalIo, LocalWriter, RemoteCommandProtocol};
use crate::streaming::spdy::{Headers, Role, Session, StreamReader};

/// How long the server gets to answer each stream (client-go waits 30 s).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the client pings (client-go's SPDY round tripper: 5 s), which
/// also keeps an idle session under the server's idle limit.
pub const PING_PERIOD: Duration = Duration::from_secs(5);
/// Most error-stream bytes kept (a status is a few hundred).
const MAX_ERROR_BYTES: u64 = 64 << 10;
const COPY_CHUNK: usize = 32 << 10;

/// Opens a stream with `headers` and waits for the server's reply.
pub(super) async fn open(session: &Session, headers: Headers) -> anyhow::Result<crate::streaming::spdy::Stream> {
    let what = headers
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    tokio::time::timeout(STREAM_CREATION_TIMEOUT, session.open_stream(headers))
        .await
        .map_err(|_| anyhow::anyhow!("SPDY stream {what}: no reply from the server in {STREAM_CREATION_TIMEOUT:?}"))?
        .with_context(|| format!("open SPDY stream {what}"))
}

/// Pings the session until it ends; dropped with the session's user.
pub(super) fn keepalive(session: &Session) -> tokio::task::JoinHandle<()> {
    let session = session.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PING_PERIOD).await;
            if session.ping().await.is_err() {
                return;
            }
        }
    })
}

/// Closes the session and stops its pinger when dropped.
pub(super) struct Closer {
    pub session: Session,
    pub pinger: tokio::task::JoinHandle<()>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.pinger.abort();
        self.session.close();
    }
}

fn stream_type(kind: &str) -> Headers {
    vec![("streamType".to_string(), kind.to_string())]
}

/// Runs one exec/attach session over the upgraded connection `io`.
pub async fn run<IO>(io: IO, protocol: RemoteCommandProtocol, local: LocalIo, tty: bool) -> anyhow::Result<i32>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    // The server opens no streams: refuse any.
    let (session, incoming) = Session::start(io, Role::Client);
    drop(incoming);
    let closer = Closer {
        pinger: keepalive(&session),
        session,
    };
    let session = &closer.session;

    let LocalIo {
        stdin,
        stdout,
        stderr,
        resize,
    } = local;
    let stderr = if tty { None } else { stderr };

    let (error, _) = open(session, stream_type("error")).await?.split();
    let remote_stdin = match stdin {
        Some(local) => Some((local, open(session, stream_type("stdin")).await?.split())),
        None => None,
    };
    let remote_stdout = match stdout {
        Some(local) => Some((local, open(session, stream_type("stdout")).await?.split().0)),
        None => None,
    };
    let remote_stderr = match stderr {
        Some(local) => Some((local, open(session, stream_type("stderr")).await?.split().0)),
        None => None,
    };
    let remote_resize = if tty && protocol.has_resize() {
        Some(open(session, stream_type("resize")).await?.split().1)
    } else {
        None
    };

    let read_error = async move {
        let mut message = Vec::new();
        let result = error.take(MAX_ERROR_BYTES).read_to_end(&mut message).await;
        (result, message)
    };
    let send_stdin = async move {
        let Some((mut local, (_, mut remote))) = remote_stdin else {
            return;
        };
        if let Err(e) = tokio::io::copy(&mut local, &mut remote).await {
            tracing::debug!(error = %e, "copying stdin");
        }
        // FIN: the remote stdin sees EOF.
        let _ = remote.shutdown().await;
    };
    let send_resizes = async move {
        let (Some(mut remote), Some(mut sizes)) = (remote_resize, resize) else {
            return;
        };
        while let Some(size) = sizes.recv().await {
            if remote.write_all(&size.event()).await.is_err() {
                return;
            }
        }
    };
    let outputs = async move {
        let out = async move {
            if let Some((local, remote)) = remote_stdout {
                copy_out(remote, local, "stdout").await;
            }
        };
        let err = async move {
            if let Some((local, remote)) = remote_stderr {
                copy_out(remote, local, "stderr").await;
            }
        };
        tokio::join!(out, err);
    };
    // The session is over once the outputs have ended and the outcome is
    // in; stdin and resizes go on in the meantime.
    let finished = async {
        let ((), (result, message)) = tokio::join!(outputs, read_error);
        (result, message)
    };
    let inputs = async {
        tokio::join!(send_stdin, send_resizes);
        std::future::pending::<()>().await
    };
    let (result, message) = tokio::select! {
        r = finished => r,
        () = inputs => unreachable!("pending"),
    };
    result.context("reading the error stream")?;
    status::outcome(protocol, &message)
}

/// Copies a remote output stream to its local end, flushing each piece;
/// after a local write failure the rest is read and dropped, so the
/// session is not held up.
pub(super) async fn copy_out(mut remote: StreamReader, local: LocalWriter, name: &str) {
    let mut local = Some(local);
    let mut buf = vec![0u8; COPY_CHUNK];
    loop {
        let n = match remote.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "reading remote {name}");
                break;
            }
        };
        if let Some(w) = &mut local {
            let written = async {
                w.write_all(&buf[..n]).await?;
                w.flush().await
            };
            if let Err(e) = written.await {
                tracing::debug!(error = %e, "writing local {name}: discarding the rest");
                local = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::spdy::header;

    /// A fake server over an in-memory pipe: accepts the streams, checks
    /// them, answers with output and a status.
    #[tokio::test]
    async fn a_session_opens_the_asked_streams_and_reports_the_exit_code() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let fake = async move {
            let (session, mut incoming) = Session::start(server_io, Role::Server);
            let mut kinds = Vec::new();
            let mut streams = std::collections::HashMap::new();
            for _ in 0..4 {
                let s = incoming.recv().await.unwrap();
                let kind = header(s.headers(), "streamtype").unwrap().to_string();
                kinds.push(kind.clone());
                streams.insert(kind, s);
            }
            assert_eq!(kinds, ["error", "stdin", "stdout", "stderr"]);
            let (mut stdin, _) = streams.remove("stdin").unwrap().split();
            let mut got = Vec::new();
            stdin.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"input");
            let (_, mut out) = streams.remove("stdout").unwrap().split();
            out.write_all(b"output").await.unwrap();
            out.shutdown().await.unwrap();
            let (_, mut err) = streams.remove("stderr").unwrap().split();
            err.write_all(b"oops").await.unwrap();
            err.shutdown().await.unwrap();
            let (_, mut error) = streams.remove("error").unwrap().split();
            let status = br#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#;
            error.write_all(status).await.unwrap();
            error.shutdown().await.unwrap();
            session.closed().await;
        };
        let (out_w, mut out_r) = tokio::io::duplex(1 << 16);
        let (err_w, mut err_r) = tokio::io::duplex(1 << 16);
        let local = LocalIo {
            stdin: Some(Box::pin(&b"input"[..])),
            stdout: Some(Box::pin(out_w)),
            stderr: Some(Box::pin(err_w)),
            resize: None,
        };
        let (code, ()) = tokio::join!(run(client_io, RemoteCommandProtocol::V4, local, false), fake);
        assert_eq!(code.unwrap(), 7);
        let mut s = String::new();
        out_r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "output");
        s.clear();
        err_r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "oops");
    }

    #[tokio::test]
    async fn a_tty_session_has_a_resize_stream_and_no_stderr() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let fake = async move {
            let (session, mut incoming) = Session::start(server_io, Role::Server);
            let mut streams = std::collections::HashMap::new();
            for _ in 0..3 {
                let s = incoming.recv().await.unwrap();
                streams.insert(header(s.headers(), "streamtype").unwrap().to_string(), s);
            }
            let mut keys: Vec<_> = streams.keys().cloned().collect();
            keys.sort();
            assert_eq!(keys, ["error", "resize", "stdout"]);
            let (mut resize, _) = streams.remove("resize").unwrap().split();
            let mut buf = vec![0u8; 64];
            let n = resize.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"{\"Width\":120,\"Height\":50}\n");
            drop(streams.remove("stdout"));
            let (_, mut error) = streams.remove("error").unwrap().split();
            error.write_all(br#"{"metadata":{},"status":"Success"}"#).await.unwrap();
            error.shutdown().await.unwrap();
            session.closed().await;
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(super::super::TerminalSize { width: 120, height: 50 })
            .await
            .unwrap();
        let local = LocalIo {
            stdin: None,
            stdout: Some(Box::pin(tokio::io::sink())),
            stderr: Some(Box::pin(tokio::io::sink())),
            resize: Some(rx),
        };
        let (code, ()) = tokio::join!(run(client_io, RemoteCommandProtocol::V5, local, true), fake);
        assert_eq!(code.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_session_lost_before_its_status_is_an_error() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let fake = async move {
            let (session, mut incoming) = Session::start(server_io, Role::Server);
            let _a = incoming.recv().await.unwrap();
            let _b = incoming.recv().await.unwrap();
            session.close();
            session.closed().await;
        };
        let local = LocalIo {
            stdout: Some(Box::pin(tokio::io::sink())),
            ..Default::default()
        };
        let (r, ()) = tokio::join!(run(client_io, RemoteCommandProtocol::V4, local, false), fake);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("without the command's status"), "{e}");
    }
}
