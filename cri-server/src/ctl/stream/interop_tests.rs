//! The clients against berthd's own protocol adapters (the WebSocket
//! channel mux and SPDY tunnel of `crate::streaming`), over in-memory
//! pipes: the wire formats agree without a running berthd.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;
use tokio_tungstenite::WebSocketStream;

use super::{ws_client, LocalIo, PortForwarder, RemoteCommandProtocol, TerminalSize};
use crate::streaming::spdy::{header, Role, Session};
use crate::streaming::websocket::{self, Wanted, WsProtocol};

const EXIT_5: &[u8] = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit code 5","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"5"}]}}"#;

#[tokio::test]
async fn websocket_v5_exec_against_the_servers_mux() {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let want = Wanted {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let (mut set, driver) = websocket::remote_command(server_io, &WsProtocol::Channel(RemoteCommandProtocol::V5), want);
    let driver = tokio::spawn(driver);
    // A fake process: cat to stdout in capitals, a word on stderr, exit 5.
    let process = tokio::spawn(async move {
        let mut input = Vec::new();
        set.stdin.take().unwrap().read_to_end(&mut input).await.unwrap();
        let mut stdout = set.stdout.take().unwrap();
        stdout.write_all(&input.to_ascii_uppercase()).await.unwrap();
        stdout.shutdown().await.unwrap();
        let mut stderr = set.stderr.take().unwrap();
        stderr.write_all(b"warning").await.unwrap();
        stderr.shutdown().await.unwrap();
        let mut error = set.error.take().unwrap();
        error.write_all(EXIT_5).await.unwrap();
        error.shutdown().await.unwrap();
    });
    let ws = WebSocketStream::from_raw_socket(client_io, WsRole::Client, None).await;
    let (out_w, mut out_r) = tokio::io::duplex(1 << 16);
    let (err_w, mut err_r) = tokio::io::duplex(1 << 16);
    let io = LocalIo {
        stdin: Some(Box::pin(&b"some input"[..])),
        stdout: Some(Box::pin(out_w)),
        stderr: Some(Box::pin(err_w)),
        resize: None,
    };
    let code = ws_client::run(ws, RemoteCommandProtocol::V5, io, false).await.unwrap();
    assert_eq!(code, 5);
    let mut s = String::new();
    out_r.read_to_string(&mut s).await.unwrap();
    assert_eq!(s, "SOME INPUT");
    s.clear();
    err_r.read_to_string(&mut s).await.unwrap();
    assert_eq!(s, "warning");
    process.await.unwrap();
    driver.await.unwrap();
}

#[tokio::test]
async fn websocket_v4_tty_resizes_reach_the_server() {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let want = Wanted {
        stdin: false,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let (mut set, driver) = websocket::remote_command(server_io, &WsProtocol::Channel(RemoteCommandProtocol::V4), want);
    let driver = tokio::spawn(driver);
    let process = tokio::spawn(async move {
        let mut resize = set.resize.take().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.ends_with(b"\n") {
            let n = resize.read(&mut buf).await.unwrap();
            assert!(n > 0, "resize channel ended early");
            got.extend_from_slice(&buf[..n]);
        }
        let size: serde_json::Value = serde_json::from_slice(&got).unwrap();
        assert_eq!(size, serde_json::json!({"Width": 132, "Height": 43}));
        let mut stdout = set.stdout.take().unwrap();
        stdout.write_all(b"$ ").await.unwrap();
        stdout.shutdown().await.unwrap();
        let mut error = set.error.take().unwrap();
        error.write_all(br#"{"metadata":{},"status":"Success"}"#).await.unwrap();
        error.shutdown().await.unwrap();
        drop(set);
    });
    let ws = WebSocketStream::from_raw_socket(client_io, WsRole::Client, None).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(TerminalSize { width: 132, height: 43 }).await.unwrap();
    let (out_w, mut out_r) = tokio::io::duplex(1 << 16);
    let io = LocalIo {
        stdout: Some(Box::pin(out_w)),
        resize: Some(rx),
        ..Default::default()
    };
    let code = ws_client::run(ws, RemoteCommandProtocol::V4, io, true).await.unwrap();
    assert_eq!(code, 0);
    let mut s = String::new();
    out_r.read_to_string(&mut s).await.unwrap();
    assert_eq!(s, "$ ");
    process.await.unwrap();
    driver.await.unwrap();
    drop(tx);
}

#[tokio::test]
async fn spdy_port_forward_through_the_servers_websocket_tunnel() {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    // The server: SPDY inside its tunnel; echo on port 7, refuse the rest.
    let server = tokio::spawn(async move {
        let (session, mut incoming) = Session::start(websocket::tunnel(server_io), Role::Server);
        let mut halves = std::collections::HashMap::<String, Vec<crate::streaming::spdy::Stream>>::new();
        let mut served = 0;
        while served < 2 {
            let stream = incoming.recv().await.expect("the client's streams");
            let id = header(stream.headers(), "requestid").unwrap().to_string();
            let entry = halves.entry(id.clone()).or_default();
            entry.push(stream);
            if entry.len() < 2 {
                continue;
            }
            served += 1;
            let mut pair = halves.remove(&id).unwrap();
            pair.sort_by_key(|s| header(s.headers(), "streamtype").unwrap().to_string());
            let (data, error) = (pair.remove(0), pair.remove(0));
            let port = header(data.headers(), "port").unwrap().to_string();
            tokio::spawn(async move {
                let (_, mut error_w) = error.split();
                let (mut data_r, mut data_w) = data.split();
                if port == "7" {
                    tokio::io::copy(&mut data_r, &mut data_w).await.unwrap();
                } else {
                    error_w
                        .write_all(format!("nothing listens on {port}").as_bytes())
                        .await
                        .unwrap();
                }
                let _ = data_w.shutdown().await;
                let _ = error_w.shutdown().await;
            });
        }
        session.closed().await;
    });
    let ws = WebSocketStream::from_raw_socket(client_io, WsRole::Client, None).await;
    let (session, _) = Session::start(ws_client::Tunnel::new(ws), Role::Client);
    let pf = PortForwarder::from_session(session);

    let mut conn = pf.open(7).await.unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut reader, mut writer) = (conn.reader, conn.writer);
    let send = async {
        writer.write_all(&payload).await.unwrap();
        writer.shutdown().await.unwrap();
    };
    let mut echoed = Vec::new();
    let receive = reader.read_to_end(&mut echoed);
    let ((), received) = tokio::join!(send, receive);
    received.unwrap();
    assert_eq!(echoed, payload);
    assert_eq!(conn.error.message().await.unwrap(), None);

    conn = pf.open(8).await.unwrap();
    drop(conn.writer);
    assert_eq!(
        conn.error.message().await.unwrap().as_deref(),
        Some("nothing listens on 8")
    );

    pf.close();
    pf.closed().await;
    server.await.unwrap();
}
