//! End-to-end sessions over an in-memory pipe against tungstenite as the
//! client, framed the way client-go's websocket executor and tunneling
//! dialer frame them.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::*;
use crate::streaming::{PortStream, Reader, RemoteCommandProtocol as P, StreamSet, Writer};

type Client = WebSocketStream<DuplexStream>;

const PATIENCE: Duration = Duration::from_secs(5);

async fn connect(buffer: usize) -> (DuplexStream, Client) {
    let (server, client) = duplex(buffer);
    let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let client = WebSocketStream::from_raw_socket(client, Role::Client, Some(config)).await;
    (server, client)
}

async fn recv(client: &mut Client) -> Message {
    match timeout(PATIENCE, client.next()).await {
        Ok(Some(Ok(message))) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn bin(data: &[u8]) -> Message {
    Message::Binary(Bytes::copy_from_slice(data))
}

/// `[channel, data…]`.
fn chan(channel: u8, data: &[u8]) -> Message {
    let mut frame = vec![channel];
    frame.extend_from_slice(data);
    Message::Binary(frame.into())
}

async fn send(client: &mut Client, message: Message) {
    timeout(PATIENCE, client.send(message))
        .await
        .expect("send timed out")
        .expect("send failed");
}

async fn expect_close(client: &mut Client, code: CloseCode) {
    match recv(client).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, code, "close reason: {}", frame.reason),
        other => panic!("expected Close({code}), got {other:?}"),
    }
}

/// Answers the server's Close (tungstenite does so on the next read) and
/// waits for the server to drop the connection.
async fn finish_close(client: &mut Client) {
    match timeout(PATIENCE, client.next()).await {
        Ok(None | Some(Err(_))) => {}
        other => panic!("expected the end of the connection, got {other:?}"),
    }
}

async fn ended(driver: JoinHandle<()>) {
    timeout(PATIENCE, driver)
        .await
        .expect("driver still running")
        .expect("driver panicked");
}

/// stdin, stdout, stderr, error of a non-tty set that has them all.
fn all(set: StreamSet) -> (Reader, Writer, Writer, Writer) {
    match set {
        StreamSet {
            stdin: Some(i),
            stdout: Some(o),
            stderr: Some(e),
            error: Some(s),
            resize: None,
            ..
        } => (i, o, e, s),
        _ => panic!("unexpected stream set"),
    }
}

const FULL: Wanted = Wanted {
    stdin: true,
    stdout: true,
    stderr: true,
    tty: false,
};
const STATUS: &[u8] = br#"{"metadata":{},"status":"Success"}"#;

#[tokio::test]
async fn v4_exec_exchange() {
    let (io, mut client) = connect(64 << 10).await;
    let (set, driver) = remote_command(io, &WsProtocol::Channel(P::V4), FULL);
    let driver = tokio::spawn(driver);
    assert_eq!(set.protocol, P::V4);
    let (mut stdin, mut stdout, mut stderr, mut error) = all(set);

    assert_eq!(
        recv(&mut client).await,
        chan(1, b""),
        "greeting: an empty stdout message"
    );
    send(&mut client, chan(0, b"hello ")).await;
    send(&mut client, bin(&[255, 0])).await; // v5 CLOSE: ignored in v4
    send(&mut client, chan(0, b"world")).await;
    let mut got = [0u8; 11];
    stdin.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello world");
    assert!(
        timeout(Duration::from_millis(100), stdin.read(&mut got)).await.is_err(),
        "stdin must stay open"
    );

    stdout.write_all(b"out").await.unwrap();
    stderr.write_all(b"err").await.unwrap();
    error.write_all(STATUS).await.unwrap();
    drop((stdout, stderr, error));
    assert_eq!(recv(&mut client).await, chan(1, b"out"));
    assert_eq!(recv(&mut client).await, chan(2, b"err"));
    assert_eq!(recv(&mut client).await, chan(3, STATUS));
    expect_close(&mut client, CloseCode::Normal).await;
    finish_close(&mut client).await;
    ended(driver).await;
    assert_eq!(stdin.read(&mut got).await.unwrap(), 0, "stdin ends with the session");
}

#[tokio::test]
async fn v5_close_signal_is_stdin_eof() {
    let (io, mut client) = connect(64 << 10).await;
    let want = Wanted {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let (set, driver) = remote_command(io, &WsProtocol::Channel(P::V5), want);
    let driver = tokio::spawn(driver);
    assert_eq!(set.protocol, P::V5);
    assert!(set.stderr.is_none() && set.resize.is_none());
    let (mut stdin, mut stdout, mut error) = (set.stdin.unwrap(), set.stdout.unwrap(), set.error.unwrap());

    assert_eq!(recv(&mut client).await, chan(1, b""));
    send(&mut client, chan(0, b"abc")).await;
    send(&mut client, bin(&[255, 0])).await;
    let mut input = Vec::new();
    timeout(PATIENCE, stdin.read_to_end(&mut input)).await.unwrap().unwrap();
    assert_eq!(input, b"abc");

    // A ping is answered while the session runs.
    send(&mut client, Message::Ping(Bytes::from_static(b"hb"))).await;
    assert_eq!(recv(&mut client).await, Message::Pong(Bytes::from_static(b"hb")));

    stdout.write_all(b"abc").await.unwrap();
    error.write_all(STATUS).await.unwrap();
    // Shutting the writers down (not dropping them) ends the session too.
    stdout.shutdown().await.unwrap();
    error.shutdown().await.unwrap();
    assert_eq!(recv(&mut client).await, chan(1, b"abc"));
    assert_eq!(recv(&mut client).await, chan(3, STATUS));
    expect_close(&mut client, CloseCode::Normal).await;
    finish_close(&mut client).await;
    ended(driver).await;
    assert_eq!(
        stdout.write(b"late").await.unwrap_err().kind(),
        std::io::ErrorKind::BrokenPipe
    );
}

#[tokio::test]
async fn base64_exec_exchange() {
    let (io, mut client) = connect(64 << 10).await;
    let (set, driver) = remote_command(io, &WsProtocol::Base64(P::V1), FULL);
    let driver = tokio::spawn(driver);
    assert_eq!(set.protocol, P::V1);
    let (mut stdin, mut stdout, mut stderr, mut error) = all(set);

    assert_eq!(recv(&mut client).await, Message::text("1"));
    send(&mut client, Message::text("0Zm9vCg==")).await;
    let mut got = [0u8; 4];
    stdin.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"foo\n");

    stdout.write_all(b"\n").await.unwrap();
    stderr.write_all(b"oops").await.unwrap();
    error.write_all(b"command terminated").await.unwrap();
    drop((stdout, stderr, error));
    assert_eq!(recv(&mut client).await, Message::text("1Cg=="));
    assert_eq!(recv(&mut client).await, Message::text("2b29wcw=="));
    assert_eq!(recv(&mut client).await, Message::text("3Y29tbWFuZCB0ZXJtaW5hdGVk"));
    expect_close(&mut client, CloseCode::Normal).await;
    finish_close(&mut client).await;
    ended(driver).await;
}

#[tokio::test]
async fn tty_resize_and_a_dropped_reader() {
    let (io, mut client) = connect(64 << 10).await;
    let want = Wanted {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: true,
    };
    let (set, driver) = remote_command(io, &WsProtocol::Channel(P::V5), want);
    let driver = tokio::spawn(driver);
    assert!(set.stderr.is_none(), "no stderr with a tty");
    let (stdin, mut resize) = (set.stdin.unwrap(), set.resize.unwrap());
    drop(stdin);
    assert_eq!(recv(&mut client).await, chan(1, b""));

    let filler = vec![b'z'; 4096];
    for _ in 0..4 * pipe::INBOUND_QUEUE {
        send(&mut client, chan(0, &filler)).await;
    }
    send(&mut client, chan(4, br#"{"Width":80,"Height":24}"#)).await;
    let mut size = [0u8; 24];
    timeout(PATIENCE, resize.read_exact(&mut size))
        .await
        .expect("resize blocked by stdin")
        .unwrap();
    assert_eq!(&size, br#"{"Width":80,"Height":24}"#);

    drop((set.stdout, set.error));
    expect_close(&mut client, CloseCode::Normal).await;
    finish_close(&mut client).await;
    ended(driver).await;
}

#[tokio::test]
async fn greeting_falls_back_to_the_error_channel() {
    let (io, mut client) = connect(64 << 10).await;
    let want = Wanted {
        stdin: true,
        ..Wanted::default()
    };
    let (set, driver) = remote_command(io, &WsProtocol::Channel(P::V4), want);
    let driver = tokio::spawn(driver);
    assert_eq!(recv(&mut client).await, chan(3, b""));
    drop(set);
    expect_close(&mut client, CloseCode::Normal).await;
    finish_close(&mut client).await;
    ended(driver).await;
}

#[tokio::test]
async fn unknown_channel_ends_the_session() {
    let (io, mut client) = connect(64 << 10).await;
    let (set, driver) = remote_command(io, &WsProtocol::Channel(P::V5), FULL);
    let driver = tokio::spawn(driver);
    let (mut stdin, mut stdout, _stderr, _error) = all(set);
    assert_eq!(recv(&mut client).await, chan(1, b""));
    send(&mut client, chan(7, b"?")).await;
    expect_close(&mut client, CloseCode::Protocol).await;
    ended(driver).await;
    assert_eq!(stdin.read(&mut [0u8; 8]).await.unwrap(), 0);
    assert_eq!(
        stdout.write(b"x").await.unwrap_err().kind(),
        std::io::ErrorKind::BrokenPipe
    );
}

#[tokio::test]
async fn oversized_message_ends_the_session() {
    let (io, client) = connect(1 << 20).await;
    let (set, driver) = remote_command(io, &WsProtocol::Channel(P::V5), FULL);
    let driver = tokio::spawn(driver);
    let (mut client_tx, mut client_rx) = client.split();
    let big = Message::Binary(vec![0u8; MAX_MESSAGE_SIZE + 2].into());
    let sender = tokio::spawn(async move { client_tx.send(big).await });
    let first = timeout(PATIENCE, client_rx.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, chan(1, b""));
    match timeout(PATIENCE, client_rx.next()).await.unwrap().unwrap().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected Close(1009), got {other:?}"),
    }
    ended(driver).await;
    drop(set);
    let _ = timeout(PATIENCE, sender).await;
}

#[tokio::test]
async fn a_client_that_never_reads_blocks_the_writer() {
    let (io, client) = connect(4096).await;
    let want = Wanted {
        stdout: true,
        ..Wanted::default()
    };
    let (set, driver) = remote_command(io, &WsProtocol::Channel(P::V5), want);
    let driver = tokio::spawn(driver);
    let mut stdout = set.stdout.unwrap();
    let chunk = vec![b'x'; 32 << 10];
    let mut accepted = 0usize;
    while let Ok(written) = timeout(Duration::from_millis(300), stdout.write(&chunk)).await {
        accepted += written.unwrap();
        assert!(accepted < 16 << 20, "writer never blocked");
    }
    assert!(accepted > 0);
    assert!(
        accepted < 1 << 20,
        "{accepted} bytes buffered for a client that never reads"
    );

    drop(client);
    ended(driver).await;
    assert_eq!(
        stdout.write(&chunk).await.unwrap_err().kind(),
        std::io::ErrorKind::BrokenPipe
    );
}

#[tokio::test]
async fn a_vanishing_client_ends_the_driver() {
    let (io, mut client) = connect(64 << 10).await;
    let (set, driver) = remote_command(io, &WsProtocol::Channel(P::V5), FULL);
    let driver = tokio::spawn(driver);
    let (mut stdin, mut stdout, _stderr, _error) = all(set);
    assert_eq!(recv(&mut client).await, chan(1, b""));
    send(&mut client, chan(0, b"partial")).await;
    drop(client);
    ended(driver).await;
    let mut input = Vec::new();
    stdin.read_to_end(&mut input).await.unwrap();
    assert_eq!(input, b"partial", "data read before the end is kept");
    assert_eq!(
        stdout.write(b"x").await.unwrap_err().kind(),
        std::io::ErrorKind::BrokenPipe
    );
}

#[tokio::test]
async fn a_client_close_ends_the_session() {
    let (io, mut client) = connect(64 << 10).await;
    let (set, driver) = remote_command(io, &WsProtocol::Channel(P::V4), FULL);
    let driver = tokio::spawn(driver);
    assert_eq!(recv(&mut client).await, chan(1, b""));
    timeout(PATIENCE, client.close(None)).await.unwrap().unwrap();
    assert!(
        matches!(recv(&mut client).await, Message::Close(_)),
        "the server answers the Close"
    );
    ended(driver).await;
    drop(set);
}

#[tokio::test]
async fn a_tunnel_protocol_is_no_exec_session() {
    let (io, mut client) = connect(64 << 10).await;
    let (set, driver) = remote_command(io, &WsProtocol::SpdyTunnel, FULL);
    let driver = tokio::spawn(driver);
    assert!(set.stdin.is_none() && set.stdout.is_none() && set.error.is_none());
    expect_close(&mut client, CloseCode::Error).await;
    ended(driver).await;
}

#[tokio::test]
async fn tunnel_carries_bytes_both_ways() {
    let (io, mut client) = connect(64 << 10).await;
    let mut tunnel = tunnel(io);
    send(&mut client, bin(b"abc")).await;
    send(&mut client, bin(b"")).await;
    send(&mut client, Message::Ping(Bytes::from_static(b"p"))).await;
    send(&mut client, bin(b"defg")).await;
    let mut got = [0u8; 7];
    timeout(PATIENCE, tunnel.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"abcdefg");
    assert_eq!(recv(&mut client).await, Message::Pong(Bytes::from_static(b"p")));

    tunnel.write_all(b"xyz").await.unwrap();
    tunnel.flush().await.unwrap();
    assert_eq!(recv(&mut client).await, bin(b"xyz"));
    let big = vec![9u8; 100 << 10];
    let writer = tokio::spawn(async move {
        tunnel.write_all(&big).await.unwrap();
        tunnel.shutdown().await.unwrap();
        tunnel
    });
    let mut received = 0;
    loop {
        match recv(&mut client).await {
            Message::Binary(data) => received += data.len(),
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::Normal);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received, 100 << 10);
    drop(timeout(PATIENCE, writer).await.unwrap().unwrap());
}

#[tokio::test]
async fn tunnel_writes_and_reads_from_separate_tasks() {
    let (io, mut client) = connect(1024).await;
    let (mut reading, mut writing) = tokio::io::split(tunnel(io));
    let total = 96 << 10;
    // The writer flushes its own writes (as the SPDY session's writer
    // does); the read half is polled from another task meanwhile.
    let writer = tokio::spawn(async move {
        writing.write_all(&vec![1u8; total]).await?;
        writing.flush().await?;
        Ok::<_, std::io::Error>(writing)
    });
    let reader = tokio::spawn(async move {
        let mut ack = [0u8; 3];
        reading.read_exact(&mut ack).await.map(|_| ack)
    });
    let mut received = 0;
    while received < total {
        match recv(&mut client).await {
            Message::Binary(data) => received += data.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    send(&mut client, bin(b"ack")).await;
    assert_eq!(&timeout(PATIENCE, reader).await.unwrap().unwrap().unwrap(), b"ack");
    let writing = timeout(PATIENCE, writer).await.unwrap().unwrap().unwrap();
    drop(writing);
}

#[tokio::test]
async fn tunnel_ends_on_the_clients_close() {
    let (io, mut client) = connect(64 << 10).await;
    let mut tunnel = tunnel(io);
    send(&mut client, bin(b"last")).await;
    timeout(PATIENCE, client.close(None)).await.unwrap().unwrap();
    let mut got = Vec::new();
    timeout(PATIENCE, tunnel.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"last");
    timeout(PATIENCE, tunnel.shutdown()).await.unwrap().unwrap();
    assert!(
        matches!(recv(&mut client).await, Message::Close(_)),
        "the Close is answered"
    );
}

#[tokio::test]
async fn tunnel_rejects_text() {
    let (io, mut client) = connect(64 << 10).await;
    let mut tunnel = tunnel(io);
    send(&mut client, Message::text("nope")).await;
    let err = timeout(PATIENCE, tunnel.read(&mut [0u8; 4]))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn legacy_port_forward() {
    let (io, mut client) = connect(64 << 10).await;
    let (streams, driver) = port_forward_channels(io, false, &[80, 8080]);
    let driver = tokio::spawn(driver);
    assert_eq!(streams.iter().map(|s| s.port).collect::<Vec<_>>(), [80, 8080]);
    assert_eq!(recv(&mut client).await, chan(0, &[80, 0]));
    assert_eq!(recv(&mut client).await, chan(1, &[80, 0]));
    assert_eq!(recv(&mut client).await, chan(2, &[0x90, 0x1f]));
    assert_eq!(recv(&mut client).await, chan(3, &[0x90, 0x1f]));

    let [mut first, mut second]: [PortStream; 2] = streams.try_into().ok().unwrap();
    send(&mut client, chan(1, b"ignored: error channels are write-only")).await;
    send(&mut client, chan(2, b"GET /")).await;
    let mut got = [0u8; 5];
    timeout(PATIENCE, second.data_in.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"GET /");
    first.data_out.write_all(b"HTTP/1.1 200").await.unwrap();
    assert_eq!(recv(&mut client).await, chan(0, b"HTTP/1.1 200"));
    second.error.write_all(b"connection refused").await.unwrap();
    assert_eq!(recv(&mut client).await, chan(3, b"connection refused"));

    drop((first, second));
    expect_close(&mut client, CloseCode::Normal).await;
    finish_close(&mut client).await;
    ended(driver).await;
}

#[tokio::test]
async fn legacy_port_forward_base64() {
    let (io, mut client) = connect(64 << 10).await;
    let (mut streams, driver) = port_forward_channels(io, true, &[80]);
    let driver = tokio::spawn(driver);
    assert_eq!(recv(&mut client).await, Message::text("0UAA="));
    assert_eq!(recv(&mut client).await, Message::text("1UAA="));
    send(&mut client, Message::text("0aGk=")).await;
    let mut got = [0u8; 2];
    timeout(PATIENCE, streams[0].data_in.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"hi");
    streams.clear();
    expect_close(&mut client, CloseCode::Normal).await;
    finish_close(&mut client).await;
    ended(driver).await;
}
