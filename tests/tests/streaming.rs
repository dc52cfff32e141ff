//! Streaming through the real crictl (cri-tools, pinned in
//! `hack/tools/go.mod`): `exec -i` with piped stdin, `exec -it` on a real
//! terminal with its size, `attach`, and `port-forward` (a pod network and
//! a host-network pod), each over SPDY and again over WebSocket; plus the
//! hostile cases: forged, reused and expired URLs start nothing, a client
//! killed mid-exec leaves no process behind, a port-forward to a closed port
//! reports an error and the session goes on.
//!
//! Skips with a note when crictl is absent ([`berth_tests::tools`]). The
//! berthd has its own built-in network (`berthc39`, `10.239.0.0/24`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::cri::*;
use berth_tests::cri_env::{shell, Env};
use berth_tests::tools::Crictl;
use berth_tests::{require_root, require_tool};

const TRANSPORTS: [&str; 2] = ["spdy", "websocket"];

/// A running busybox container `name` in a new pod (pod id, container id).
async fn container(e: &mut Env, name: &str, config: ContainerConfig) -> (String, String) {
    let pod = e.pod(name, false).await;
    let id = e.run(&pod, config).await;
    (pod.0, id)
}

/// Runs `cmd` with `input` on stdin; its output and exit code, killed after 60 s.
fn run_with_input(mut cmd: Command, input: &[u8]) -> (Option<i32>, String, String) {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn crictl");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let out = wait_output(child, Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_output(child: Child, limit: Duration) -> std::process::Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            panic!("crictl did not finish within {limit:?}");
        }
    }
}

#[tokio::test]
async fn crictl_exec_with_piped_stdin_over_both_transports() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start(39, &["berth/busybox:latest"]).await;
    let (_, id) = container(&mut e, "exec-pipe", shell("c", "sleep 3600")).await;
    let c = Crictl::new(bin, &e.d.socket);
    for transport in TRANSPORTS {
        // stdin reaches the process and its EOF ends `cat`.
        let (code, out, err) = run_with_input(
            c.command(&["exec", "-i", "--transport", transport, &id, "cat"]),
            b"hello through the stream\n",
        );
        assert_eq!(code, Some(0), "{transport}: {out} {err}\n{}", e.d.log_tail());
        assert_eq!(out, "hello through the stream\n", "{transport}: {err}");

        // stdout and stderr stay apart; a non-zero exit comes back as the code.
        let (code, out, err) = run_with_input(
            c.command(&[
                "exec",
                "-i",
                "--transport",
                transport,
                &id,
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ]),
            b"",
        );
        assert_eq!(out, "out\n", "{transport}: {err}");
        assert!(err.contains("err\n"), "{transport}: {err}");
        assert_ne!(code, Some(0), "{transport}");
        assert!(err.contains("exit code 3"), "{transport}: {err}");

        // A process killed by a signal reports 128 + n.
        let (code, _, err) = run_with_input(
            c.command(&["exec", "-i", "--transport", transport, &id, "sh", "-c", "kill -9 $$"]),
            b"",
        );
        assert_ne!(code, Some(0));
        assert!(err.contains("exit code 137"), "{transport}: {err}");

        // Large output arrives whole.
        let (code, out, err) = run_with_input(
            c.command(&[
                "exec",
                "-i",
                "--transport",
                transport,
                &id,
                "sh",
                "-c",
                "head -c 3000000 /dev/zero | tr '\\0' x",
            ]),
            b"",
        );
        assert_eq!(code, Some(0), "{transport}: {err}");
        assert_eq!(out.len(), 3_000_000, "{transport}");
    }
}

/// A pty pair: (master, slave) with the slave sized rows x cols.
fn pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let p = nix::pty::openpty(Some(&ws), None).expect("openpty");
    (p.master, p.slave)
}

/// Reads the pty master until `needle` shows up (or panics after 30 s).
fn read_until(master: &OwnedFd, needle: &str) -> String {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut f = std::fs::File::from(master.try_clone().unwrap());
    nix::fcntl::fcntl(master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains(needle) {
                    return String::from_utf8_lossy(&seen).into_owned();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    panic!(
        "{needle:?} not seen on the terminal: {:?}",
        String::from_utf8_lossy(&seen)
    );
}

#[tokio::test]
async fn crictl_exec_on_a_terminal_sees_its_size_and_input() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start(40, &["berth/busybox:latest"]).await;
    let (_, id) = container(&mut e, "exec-tty", shell("c", "sleep 3600")).await;
    let c = Crictl::new(bin, &e.d.socket);
    for transport in TRANSPORTS {
        let (master, slave) = pty(33, 111);
        let mut cmd = c.command(&[
            "exec",
            "-it",
            "--transport",
            transport,
            &id,
            "sh",
            "-c",
            "tty; stty size; echo ready; read x; stty size; echo got-$x; exit 4",
        ]);
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().unwrap();
        let first = read_until(&master, "ready");
        assert!(first.contains("/dev/pts/"), "{transport}: {first:?}");
        assert!(
            first.contains("33 111"),
            "{transport}: the size did not arrive: {first:?}"
        );
        // The terminal grows: crictl sees SIGWINCH and sends the new size.
        let ws = nix::pty::Winsize {
            ws_row: 40,
            ws_col: 132,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the valid pointer.
        let rc = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&master), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGWINCH,
        );
        std::thread::sleep(Duration::from_millis(300));
        nix::unistd::write(&master, b"hello\r").unwrap();
        let rest = read_until(&master, "got-hello");
        assert!(
            rest.contains("40 132"),
            "{transport}: the resize did not arrive: {rest:?}"
        );
        let out = wait_output(child, Duration::from_secs(30));
        assert_ne!(out.status.code(), Some(0), "{transport}: exit 4 must come back");
        drop(master);
    }
}

#[tokio::test]
async fn two_clients_attach_at_once() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start(48, &["berth/busybox:latest"]).await;
    let c = Crictl::new(bin, &e.d.socket);
    let mut config = shell(
        "ticker2",
        "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.1; done",
    );
    config.stdin = true;
    let (_, id) = container(&mut e, "attach2", config).await;
    let spawn = |transport: &str| {
        c.command(&["attach", "--transport", transport, &id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut clients = [spawn("spdy"), spawn("websocket")];
    for client in clients.iter_mut() {
        let mut out = client.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("tick-") {
            let n = out.read(&mut buf).unwrap();
            assert!(n > 0, "attach ended early");
            seen.extend_from_slice(&buf[..n]);
        }
    }
    for mut client in clients {
        client.kill().unwrap();
        let _ = client.wait();
    }
    assert_eq!(e.state(&id).await, ContainerState::ContainerRunning);
}

#[tokio::test]
async fn crictl_attach_joins_the_containers_stdio() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start(41, &["berth/busybox:latest"]).await;
    let c = Crictl::new(bin, &e.d.socket);
    for transport in TRANSPORTS {
        // stdin_once: when the attached client's stdin ends, the
        // container's does, the loop ends and so does the container.
        let mut config = shell(
            &format!("att-{transport}"),
            "echo started; while read l; do echo echo:$l; done; echo bye",
        );
        config.stdin = true;
        config.stdin_once = true;
        let (_, id) = container(&mut e, &format!("attach-{transport}"), config).await;
        let (code, out, err) = run_with_input(
            c.command(&["attach", "-i", "--transport", transport, &id]),
            b"one\ntwo\n",
        );
        assert_eq!(code, Some(0), "{transport}: {out} {err}\n{}", e.d.log_tail());
        assert!(out.contains("echo:one\necho:two\n"), "{transport}: {out:?} {err}");
        let st = e.wait_state(&id, ContainerState::ContainerExited).await;
        assert_eq!(st.exit_code, 0);
    }
}

#[tokio::test]
async fn detaching_leaves_the_container_running() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start(42, &["berth/busybox:latest"]).await;
    let c = Crictl::new(bin, &e.d.socket);
    let mut config = shell("ticker", "while true; do echo tick; sleep 0.2; done");
    config.stdin = true;
    let (_, id) = container(&mut e, "detach", config).await;
    let mut child = c
        .command(&["attach", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 64];
    let n = out.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("tick"));
    child.kill().unwrap();
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(e.state(&id).await, ContainerState::ContainerRunning);
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET / on 127.0.0.1:port, retried while the forward comes up.
fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if !body.is_empty() => return body,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("GET through the forward on {port}: {other:?}"),
        }
    }
}

/// Starts `crictl port-forward POD L:R…`; killed on drop (its output is
/// printed then, for a failing test).
struct Forward(Child, tempfile::NamedTempFile);

impl Forward {
    /// What crictl printed, after waiting `wait`.
    fn output_after(&self, wait: Duration) -> String {
        std::thread::sleep(wait);
        std::fs::read_to_string(self.1.path()).unwrap_or_default()
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        eprintln!(
            "crictl port-forward said: {}",
            std::fs::read_to_string(self.1.path()).unwrap_or_default()
        );
    }
}

fn port_forward(c: &Crictl, transport: &str, pod: &str, maps: &[String]) -> Forward {
    let mut args = vec!["port-forward", "--transport", transport, pod];
    args.extend(maps.iter().map(String::as_str));
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = c
        .command(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.reopen().unwrap()))
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    Forward(child, log)
}

async fn web_server(e: &mut Env, name: &str, host_network: bool) -> String {
    let mut config = e.pod_config(name, false);
    if host_network {
        let linux = config.linux.get_or_insert_with(Default::default);
        let sc = linux.security_context.get_or_insert_with(Default::default);
        sc.namespace_options = Some(NamespaceOption {
            network: NamespaceMode::Node as i32,
            ..Default::default()
        });
    }
    let pod = e.run_pod(config).await;
    let port = if host_network { free_port() } else { 8080 };
    e.run(
        &pod,
        shell("web", &format!("exec httpd -f -p 127.0.0.1:{port} -h /var/www")),
    )
    .await;
    if host_network {
        format!("{}:{port}", pod.0)
    } else {
        pod.0
    }
}

#[tokio::test]
async fn crictl_port_forward_reaches_a_pod_port() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start(43, &["berth/busybox:latest"]).await;
    let pod = web_server(&mut e, "pf", false).await;
    let c = Crictl::new(bin, &e.d.socket);
    for transport in TRANSPORTS {
        let good = free_port();
        let f = port_forward(&c, transport, &pod, &[format!("{good}:8080")]);
        let body = http_get(good);
        assert!(body.contains("hello from berth"), "{transport}: {body}");
        // Concurrent connections share the session.
        let handles: Vec<_> = (0..8).map(|_| std::thread::spawn(move || http_get(good))).collect();
        for h in handles {
            assert!(h.join().unwrap().contains("hello from berth"), "{transport}");
        }
        drop(f);

        // Nothing listens on 9 in the pod: the connection fails and berth's
        // reason reaches the client on the error stream. (crictl, like
        // kubectl since 1.29, then ends its own session; berth's goes on:
        // see the berthctl test.)
        let closed = free_port();
        let f = port_forward(&c, transport, &pod, &[format!("{closed}:9")]);
        let mut s = connect_retrying(closed);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(b"x");
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        assert!(sink.is_empty(), "{transport}: {sink:?}");
        let said = f.output_after(Duration::from_secs(2));
        assert!(
            said.contains("failed to connect to localhost:9 inside the pod"),
            "{transport}: {said}"
        );
    }
}

fn connect_retrying(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() >= deadline => panic!("connect to the forward on {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[tokio::test]
async fn one_session_forwards_several_ports_and_ipv6_localhost() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start(49, &["berth/busybox:latest"]).await;
    let pod = e.pod("pf-multi", false).await;
    // One server on IPv4 loopback only, one on IPv6 loopback only.
    e.run(&pod, shell("v4", "exec httpd -f -p 127.0.0.1:8081 -h /var/www"))
        .await;
    e.run(&pod, shell("v6", "exec httpd -f -p [::1]:8082 -h /var/www"))
        .await;
    let c = Crictl::new(bin, &e.d.socket);
    for transport in TRANSPORTS {
        let (a, b) = (free_port(), free_port());
        let _f = port_forward(&c, transport, &pod.0, &[format!("{a}:8081"), format!("{b}:8082")]);
        assert!(http_get(a).contains("hello from berth"), "{transport}: IPv4");
        assert!(http_get(b).contains("hello from berth"), "{transport}: IPv6");
    }
}

#[tokio::test]
async fn crictl_port_forward_reaches_a_host_network_pod() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start(44, &["berth/busybox:latest"]).await;
    let pod_and_port = web_server(&mut e, "pf-host", true).await;
    let (pod, port) = pod_and_port.split_once(':').unwrap();
    let c = Crictl::new(bin, &e.d.socket);
    for transport in TRANSPORTS {
        let local = free_port();
        let _f = port_forward(&c, transport, pod, &[format!("{local}:{port}")]);
        let body = http_get(local);
        assert!(body.contains("hello from berth"), "{transport}: {body}");
    }
}

/// The URL of a fresh CRI Exec for `id`.
async fn exec_url(e: &mut Env, id: &str, cmd: &[&str]) -> String {
    e.rt.exec(ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .url
}

/// The status code of a plain (not upgraded) request for `url`'s path.
fn status_of(url: &str, path: &str) -> u16 {
    let host = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let mut s = TcpStream::connect(&host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {reply:?}"))
}

#[tokio::test]
async fn forged_reused_and_expired_urls_start_nothing() {
    require_root!();
    let mut e = Env::start(45, &["berth/busybox:latest"]).await;
    let (pod, id) = container(&mut e, "hostile", shell("c", "sleep 3600")).await;
    let url = exec_url(&mut e, &id, &["touch", "/tmp/ran"]).await;
    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    assert!(path.starts_with("/exec/"), "{url}");
    // Forged: same shape, other token; wrong kind; junk.
    let forged = format!("/exec/{}", "0".repeat(32));
    assert_eq!(status_of(&url, &forged), 404);
    assert_eq!(status_of(&url, &path.replace("/exec/", "/attach/")), 404);
    assert_eq!(status_of(&url, "/exec/../../etc/passwd"), 404);
    // Used once (a request without an upgrade still spends it), then gone.
    let url2 = exec_url(&mut e, &id, &["touch", "/tmp/ran"]).await;
    let path2 = url2.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    assert_eq!(status_of(&url2, &path2), 400);
    assert_eq!(status_of(&url2, &path2), 404);
    // Nothing ran.
    let r = e.exec(&id, &["ls", "/tmp/ran"]).await.unwrap();
    assert_ne!(r.exit_code, 0, "a refused URL ran the command");
    // A not-running container, bad stdio combinations: refused at the CRI call.
    let err =
        e.rt.exec(ExecRequest {
            container_id: id.clone(),
            cmd: vec!["true".into()],
            tty: true,
            stderr: true,
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("stderr"), "{err}");
    let err =
        e.rt.exec(ExecRequest {
            container_id: id.clone(),
            cmd: vec!["true".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err =
        e.rt.port_forward(PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![70000],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    // No command, an unknown container or pod: named, and no URL handed out.
    let err =
        e.rt.exec(ExecRequest {
            container_id: id.clone(),
            cmd: vec![],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("cmd"), "{err}");
    let err =
        e.rt.exec(ExecRequest {
            container_id: "0".repeat(64),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    let err =
        e.rt.port_forward(PortForwardRequest {
            pod_sandbox_id: "f".repeat(64),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    e.stop(&id, 0).await;
    let err =
        e.rt.attach(AttachRequest {
            container_id: id.clone(),
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert!(err.message().contains(&id), "{err}");
}

#[tokio::test]
async fn an_expired_url_is_refused() {
    require_root!();
    let mut e = Env::start_with(46, &["berth/busybox:latest"], "[streaming]\ntoken_ttl_seconds = 1\n").await;
    let (_, id) = container(&mut e, "expired", shell("c", "sleep 3600")).await;
    let url = exec_url(&mut e, &id, &["true"]).await;
    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status_of(&url, &path), 404);
}

/// Host pids of processes in container `id` whose command line contains `needle`.
async fn processes_with(e: &mut Env, id: &str, needle: &str) -> String {
    e.sh(id, &format!("ps -o pid,args | grep -v grep | grep '{needle}' || true"))
        .await
}

#[tokio::test]
async fn a_killed_client_leaves_no_exec_behind() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start(47, &["berth/busybox:latest"]).await;
    let (_, id) = container(&mut e, "killed", shell("c", "sleep 3600")).await;
    let c = Crictl::new(bin, &e.d.socket);
    for transport in TRANSPORTS {
        let needle = if transport == "spdy" {
            "sleep 4321"
        } else {
            "sleep 4322"
        };
        let mut child = c
            .command(&[
                "exec",
                "-i",
                "--transport",
                transport,
                &id,
                "sh",
                "-c",
                &format!("{needle}; true"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !processes_with(&mut e, &id, needle).await.contains(needle) {
            assert!(Instant::now() < deadline, "{transport}: the exec never started");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        child.kill().unwrap();
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = processes_with(&mut e, &id, needle).await;
            if !left.contains(needle) {
                break;
            }
            assert!(Instant::now() < deadline, "{transport}: left behind: {left}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn an_idle_session_is_ended_and_its_exec_killed() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start_with(50, &["berth/busybox:latest"], "[streaming]\nidle_timeout_seconds = 1\n").await;
    let (_, id) = container(&mut e, "idle", shell("c", "sleep 3600")).await;
    let c = Crictl::new(bin, &e.d.socket);
    for transport in TRANSPORTS {
        let needle = if transport == "spdy" {
            "sleep 4323"
        } else {
            "sleep 4324"
        };
        // stdin stays open and silent; the command prints nothing.
        let mut child = c
            .command(&[
                "exec",
                "-i",
                "--transport",
                transport,
                &id,
                "sh",
                "-c",
                &format!("{needle}; true"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{transport}: the idle session was not ended");
            std::thread::sleep(Duration::from_millis(100));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while processes_with(&mut e, &id, needle).await.contains(needle) {
            assert!(Instant::now() < deadline, "{transport}: the idle exec was left running");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Open descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn sessions_leave_no_descriptors_behind() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start(51, &["berth/busybox:latest"]).await;
    let (_, id) = container(&mut e, "leak", shell("c", "sleep 3600")).await;
    let c = Crictl::new(bin, &e.d.socket);
    let pid = e.d.pid().expect("berthd runs");
    // One session first, so lazily opened descriptors are counted.
    let (code, _, err) = run_with_input(c.command(&["exec", "-i", &id, "true"]), b"");
    assert_eq!(code, Some(0), "{err}");
    let before = fd_count(pid);
    for i in 0..20 {
        let transport = TRANSPORTS[i % 2];
        let (code, out, err) = run_with_input(c.command(&["exec", "-i", "--transport", transport, &id, "cat"]), b"x\n");
        assert_eq!((code, out.as_str()), (Some(0), "x\n"), "{transport}: {err}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = fd_count(pid);
        if now <= before + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "berthd holds {now} descriptors after 20 sessions, {before} before"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_streaming_server_speaks_tls_when_configured() {
    require_root!();
    let tls = tempfile::tempdir().unwrap();
    let (cert, key) = (tls.path().join("cert.pem"), tls.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let extra = format!(
        "[streaming]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let mut e = Env::start_with(52, &["berth/busybox:latest"], &extra).await;
    let (_, id) = container(&mut e, "tls", shell("c", "sleep 3600")).await;
    let url = exec_url(&mut e, &id, &["true"]).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let host = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    write!(
        stdin,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let out = wait_output(client, Duration::from_secs(30));
    drop(stdin);
    let reply = String::from_utf8_lossy(&out.stdout);
    // Over TLS the token is taken (no upgrade asked: 400).
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
}

#[tokio::test]
async fn attach_to_a_terminal_container_follows_its_size() {
    require_root!();
    let bin = require_tool!(crictl);
    let mut e = Env::start(53, &["berth/busybox:latest"]).await;
    let c = Crictl::new(bin, &e.d.socket);
    let mut config = shell("term", "echo started; while read l; do stty size; echo line-$l; done");
    config.stdin = true;
    config.tty = true;
    // (A terminal container used to die of SIGHUP at create: the monitor
    // setup dropped the pty master it should have kept.)
    let (_, id) = container(&mut e, "attach-tty", config).await;
    assert_eq!(
        e.state(&id).await,
        ContainerState::ContainerRunning,
        "{}",
        e.d.log_tail()
    );
    for transport in TRANSPORTS {
        let (master, slave) = pty(27, 91);
        let mut cmd = c.command(&["attach", "-i", "-t", "--transport", transport, &id]);
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        nix::unistd::write(&master, format!("{transport}\r").as_bytes()).unwrap();
        let seen = read_until(&master, &format!("line-{transport}"));
        assert!(seen.contains("27 91"), "{transport}: {seen:?}");
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(e.state(&id).await, ContainerState::ContainerRunning);
}

#[tokio::test]
async fn berthctl_exec_attach_and_port_forward() {
    require_root!();
    let mut e = Env::start(38, &["berth/busybox:latest"]).await;
    let pod = e.pod("bctl", false).await;
    let id = e
        .run(&pod, shell("c", "exec httpd -f -p 127.0.0.1:8080 -h /var/www"))
        .await;
    let endpoint = format!("unix://{}", e.d.socket.display());
    let berthctl = |args: &[&str]| {
        let mut c = Command::new(berth_tests::daemon::berthctl_bin());
        c.arg("--endpoint").arg(&endpoint).args(args);
        c
    };
    for transport in TRANSPORTS {
        // stdin to the process, stdout back, the remote exit code as berthctl's.
        let (code, out, err) = run_with_input(
            berthctl(&["exec", "-i", "--transport", transport, &id, "sh", "-c", "cat; exit 5"]),
            b"through berthctl\n",
        );
        assert_eq!(out, "through berthctl\n", "{transport}: {err}");
        assert_eq!(code, Some(5), "{transport}: {err}");

        // port-forward: a chosen local port to the pod's 8080.
        let local = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = berthctl(&[
            "port-forward",
            "--transport",
            transport,
            &pod.0,
            &format!("{local}:8080"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.reopen().unwrap()))
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
        let f = Forward(child, log);
        assert!(http_get(local).contains("hello from berth"), "{transport}");
        let said = f.output_after(Duration::from_millis(100));
        assert!(
            said.contains(&format!("Forwarding from 127.0.0.1:{local} -> 8080")),
            "{said}"
        );
    }
}
