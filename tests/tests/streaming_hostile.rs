//! Streaming under hostile or heavy use, driven with berthctl's streaming
//! client library (`berth_cri_server::ctl::stream`, the same code as
//! `berthctl exec/attach/port-forward`): a client that never reads its
//! output cannot grow berthd's memory (backpressure down to the process),
//! 200 concurrent exec sessions complete and leave no descriptor behind, a
//! flood of resize events is harmless, a port-forward to a closed port
//! reports an error and the session keeps serving other connections, and
//! every protocol version berth offers works (v1 to v5 on SPDY, v4 and v5
//! on WebSocket).
//!
//! The berthd has its own built-in network (`berthc20`…`berthc24`; test binaries run one at a time).

use std::time::{Duration, Instant};

use berth_cri_server::ctl::stream::port_forward::PortForwarder;
use berth_cri_server::ctl::stream::{
    remote_command, remote_command_with, LocalIo, RemoteCommandOptions, RemoteCommandProtocol, TerminalSize, Transport,
};
use berth_tests::cri::*;
use berth_tests::cri_env::{shell, Env};
use berth_tests::require_root;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TRANSPORTS: [Transport; 2] = [Transport::Spdy, Transport::WebSocket];

async fn container(e: &mut Env, name: &str, config: ContainerConfig) -> (String, String) {
    let pod = e.pod(name, false).await;
    let id = e.run(&pod, config).await;
    (pod.0, id)
}

async fn exec_url(e: &mut Env, id: &str, cmd: &[&str], io: &LocalIo, tty: bool) -> String {
    let w = io.wanted(tty);
    e.rt.exec(ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: w.tty,
        stdin: w.stdin,
        stdout: w.stdout,
        stderr: w.stderr,
    })
    .await
    .unwrap()
    .into_inner()
    .url
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_grow_berthd() {
    require_root!();
    let mut e = Env::start(24, &["berth/busybox:latest"]).await;
    let (_, id) = container(&mut e, "noread", shell("c", "sleep 3600")).await;
    let pid = e.d.pid().unwrap();
    for transport in TRANSPORTS {
        let before = rss_kib(pid);
        // stdout goes into a 64 KiB pipe nobody reads: the client stops
        // reading the connection once it is full.
        let (stuck, _keep_unread) = tokio::io::duplex(64 * 1024);
        let io = LocalIo {
            stdout: Some(Box::pin(stuck)),
            ..Default::default()
        };
        let url = exec_url(
            &mut e,
            &id,
            &["sh", "-c", "yes 0123456789012345678901234567890123456789"],
            &io,
            false,
        )
        .await;
        let session = tokio::spawn(async move { remote_command(&url, transport, io, false).await });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let during = rss_kib(pid);
        assert!(
            during < before + 32 * 1024,
            "{transport:?}: berthd grew from {before} KiB to {during} KiB behind a client that does not read"
        );
        // The producer is blocked, not spinning: its output waits in pipes.
        let yes = e.sh(&id, "ps -o stat,args | grep '[y]es 0123' || true").await;
        assert!(yes.contains("yes"), "{transport:?}: {yes}");
        session.abort();
        let deadline = Instant::now() + Duration::from_secs(20);
        while e
            .sh(&id, "ps -o args | grep '[y]es 0123' || true")
            .await
            .contains("yes")
        {
            assert!(
                Instant::now() < deadline,
                "{transport:?}: yes left running after the client left"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn two_hundred_concurrent_exec_sessions() {
    require_root!();
    let mut e = Env::start(20, &["berth/busybox:latest"]).await;
    let (_, id) = container(&mut e, "many", shell("c", "sleep 3600")).await;
    let pid = e.d.pid().unwrap();
    let before = fd_count(pid);
    let mut sessions = Vec::new();
    for i in 0..200 {
        let transport = TRANSPORTS[i % 2];
        let (out_w, mut out_r) = tokio::io::duplex(4096);
        let (mut in_w, in_r) = tokio::io::duplex(4096);
        let io = LocalIo {
            stdin: Some(Box::pin(in_r)),
            stdout: Some(Box::pin(out_w)),
            ..Default::default()
        };
        let url = exec_url(&mut e, &id, &["sh", "-c", "read x; echo got-$x"], &io, false).await;
        sessions.push(tokio::spawn(async move {
            let run = tokio::spawn(async move { remote_command(&url, transport, io, false).await });
            // Every session is open at once before any finishes.
            tokio::time::sleep(Duration::from_secs(2)).await;
            in_w.write_all(format!("{i}\n").as_bytes()).await.unwrap();
            drop(in_w);
            let mut out = String::new();
            out_r.read_to_string(&mut out).await.unwrap();
            (i, run.await.unwrap(), out)
        }));
    }
    for s in sessions {
        let (i, code, out) = s.await.unwrap();
        assert_eq!(code.unwrap_or_else(|e| panic!("session {i}: {e:#}")), 0, "session {i}");
        assert_eq!(out, format!("got-{i}\n"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while fd_count(pid) > before + 2 {
        assert!(
            Instant::now() < deadline,
            "berthd holds {} descriptors after 200 sessions, {before} before",
            fd_count(pid)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_resize_flood_is_harmless() {
    require_root!();
    let mut e = Env::start(21, &["berth/busybox:latest"]).await;
    let (_, id) = container(&mut e, "flood", shell("c", "sleep 3600")).await;
    for transport in TRANSPORTS {
        let (resize_tx, resize_rx) = tokio::sync::mpsc::channel(16);
        let (out_w, mut out_r) = tokio::io::duplex(1 << 20);
        let (mut in_w, in_r) = tokio::io::duplex(4096);
        let io = LocalIo {
            stdin: Some(Box::pin(in_r)),
            stdout: Some(Box::pin(out_w)),
            resize: Some(resize_rx),
            ..Default::default()
        };
        let url = exec_url(&mut e, &id, &["sh", "-c", "read x; stty size"], &io, true).await;
        let run = tokio::spawn(async move { remote_command(&url, transport, io, true).await });
        for i in 0..20_000u32 {
            let size = TerminalSize {
                width: 10 + (i % 200) as u16,
                height: 5 + (i % 50) as u16,
            };
            resize_tx.send(size).await.unwrap();
        }
        resize_tx.send(TerminalSize { width: 123, height: 45 }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        in_w.write_all(b"go\r").await.unwrap();
        let code = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let mut out = String::new();
        out_r.read_to_string(&mut out).await.unwrap();
        assert_eq!(code, 0, "{transport:?}: {out}");
        assert!(
            out.contains("45 123"),
            "{transport:?}: the last size did not win: {out:?}"
        );
    }
    // berthd still serves.
    assert_eq!(e.exec(&id, &["true"]).await.unwrap().exit_code, 0);
}

#[tokio::test]
async fn a_closed_port_is_an_error_and_the_session_goes_on() {
    require_root!();
    let mut e = Env::start(22, &["berth/busybox:latest"]).await;
    let pod = e.pod("pf-keep", false).await;
    e.run(&pod, shell("web", "exec httpd -f -p 127.0.0.1:8080 -h /var/www"))
        .await;
    for transport in TRANSPORTS {
        let url =
            e.rt.port_forward(PortForwardRequest {
                pod_sandbox_id: pod.0.clone(),
                port: vec![8080, 9],
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let forwarder = PortForwarder::connect(&url, transport).await.unwrap();
        // Port 9: nothing listens; the error stream says why.
        let conn = forwarder.open(9).await.unwrap();
        let message = conn.error.message().await.unwrap().unwrap_or_default();
        assert!(message.contains("localhost:9"), "{transport:?}: {message:?}");
        // The same session still forwards 8080, several times at once.
        let mut gets = Vec::new();
        for _ in 0..4 {
            let conn = forwarder.open(8080).await.unwrap();
            gets.push(tokio::spawn(async move {
                let (mut r, mut w) = (conn.reader, conn.writer);
                w.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
                let mut body = String::new();
                r.read_to_string(&mut body).await.unwrap();
                body
            }));
        }
        for g in gets {
            assert!(g.await.unwrap().contains("hello from berth"), "{transport:?}");
        }
        forwarder.close();
    }
}

#[tokio::test]
async fn every_protocol_version_is_served() {
    require_root!();
    let mut e = Env::start(23, &["berth/busybox:latest"]).await;
    let (_, id) = container(&mut e, "versions", shell("c", "sleep 3600")).await;
    let cases = [
        (Transport::Spdy, RemoteCommandProtocol::V1),
        (Transport::Spdy, RemoteCommandProtocol::V2),
        (Transport::Spdy, RemoteCommandProtocol::V3),
        (Transport::Spdy, RemoteCommandProtocol::V4),
        (Transport::Spdy, RemoteCommandProtocol::V5),
        (Transport::WebSocket, RemoteCommandProtocol::V4),
        (Transport::WebSocket, RemoteCommandProtocol::V5),
    ];
    for (transport, protocol) in cases {
        let (out_w, mut out_r) = tokio::io::duplex(1 << 16);
        let (mut in_w, in_r) = tokio::io::duplex(4096);
        let io = LocalIo {
            stdin: Some(Box::pin(in_r)),
            stdout: Some(Box::pin(out_w)),
            ..Default::default()
        };
        // `head -n 1`, not `cat`: WebSocket v4 cannot half-close stdin
        // (that is what v5's CLOSE adds), so the command must end by itself.
        let url = exec_url(&mut e, &id, &["sh", "-c", "head -n 1; exit 3"], &io, false).await;
        let options = RemoteCommandOptions {
            transport,
            tty: false,
            protocols: vec![protocol],
        };
        let run = tokio::spawn(async move { remote_command_with(&url, &options, io).await });
        in_w.write_all(b"ping\n").await.unwrap();
        drop(in_w);
        let finished = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("{transport:?} {protocol:?}: no end in 30 s"))
            .unwrap();
        let mut out = String::new();
        out_r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "ping\n", "{transport:?} {protocol:?}");
        match protocol {
            // Before v4 the exit code does not travel; a failure text does.
            RemoteCommandProtocol::V1 | RemoteCommandProtocol::V2 | RemoteCommandProtocol::V3 => {
                let err = finished.expect_err("a non-zero exit is an error before v4");
                assert!(format!("{err:#}").contains("exit code 3"), "{protocol:?}: {err:#}");
            }
            _ => {
                let f = finished.unwrap();
                assert_eq!((f.protocol, f.exit_code), (protocol, 3), "{transport:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_large_port_forward_transfer_completes_over_both_transports() {
    require_root!();
    let mut e = Env::start(25, &["berth/busybox:latest"]).await;
    let pod = e.pod("pf-bulk", false).await;
    // 64 MiB per connection from the pod. (Over the WebSocket tunnel a
    // read-side flush once replaced the writer's waker and stalled such a
    // transfer for good under load.)
    e.run(
        &pod,
        shell(
            "source",
            "exec nc -ll -p 9000 -e sh -c 'dd if=/dev/zero bs=1M count=64 2>/dev/null'",
        ),
    )
    .await;
    for transport in TRANSPORTS {
        let url =
            e.rt.port_forward(PortForwardRequest {
                pod_sandbox_id: pod.0.clone(),
                port: vec![9000],
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let forwarder = PortForwarder::connect(&url, transport).await.unwrap();
        for round in 0..2 {
            let mut conn = forwarder.open(9000).await.unwrap();
            let mut total = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = tokio::time::timeout(Duration::from_secs(30), conn.reader.read(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("{transport:?} round {round}: stalled after {total} bytes"))
                    .unwrap();
                if n == 0 {
                    break;
                }
                total += n;
            }
            assert_eq!(total, 64 << 20, "{transport:?} round {round}");
        }
        forwarder.close();
    }
}
