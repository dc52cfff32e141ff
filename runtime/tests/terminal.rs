//! Root tests: terminals. A `process.terminal` container hands its pty
//! master to a `--console-socket` listener (runc's contract); so does
//! `exec --tty`. Checked from inside: `tty` names a /dev/pts slave,
//! `stty size` follows TIOCSWINSZ on the master, /dev/console exists.

mod common;

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use berth_runtime::pty;
use common::{is_root, Env};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::json;

/// Accepts one connection on `listener` and returns the descriptor it
/// carries.
fn receive_master(listener: &UnixListener) -> OwnedFd {
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).unwrap();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel installed this descriptor for us just now.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("the console socket message carried no descriptor");
}

/// Binds the test's console socket (`wait_acceptable` bounds the wait for
/// the runtime to connect).
fn listen(path: &Path) -> UnixListener {
    UnixListener::bind(path).unwrap()
}

fn wait_acceptable(listener: &UnixListener, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap() > 0 {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("runtime exited ({status}) without connecting to the console socket");
        }
        assert!(Instant::now() < deadline, "no console socket connection in 10s");
    }
}

/// Reads from the master until `needle` shows up (or, with `None`, until
/// the terminal closes). Returns everything read, `\r` removed.
fn read_until(master: &OwnedFd, needle: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    loop {
        if needle.is_some_and(|n| text.contains(n)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {needle:?}; got {text:?}"
        );
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap() == 0 {
            continue;
        }
        match nix::unistd::read(master.as_fd(), &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => {
                assert!(needle.is_none(), "terminal closed before {needle:?}; got {text:?}");
                return text;
            }
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', "")),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => panic!("read master: {e}"),
        }
    }
}

const SCRIPT: &str = "tty; stty size; [ -c /dev/console ] && echo console-ok; echo ready; \
                      read x; stty size; echo done";

/// `console`: whether /dev/console should exist (a terminal container's
/// does; a plain container exec'd with a tty has none).
fn check_session(master: &OwnedFd, first_size: &str, console: bool) {
    let before = read_until(master, Some("ready\n"));
    let lines: Vec<&str> = before.lines().collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{before:?}");
    assert_eq!(lines[1], first_size, "{before:?}");
    assert_eq!(lines[2] == "console-ok", console, "{before:?}");
    pty::set_winsize(master.as_fd(), 50, 132).unwrap();
    nix::unistd::write(master, b"go\n").unwrap();
    let after = read_until(master, None);
    let lines: Vec<&str> = after.lines().filter(|l| !l.is_empty()).collect();
    // "go" is the terminal's echo of our input.
    assert_eq!(lines, ["go", "50 132", "done"], "{after:?}");
}

#[test]
fn terminal_container_sends_its_master_to_the_console_socket() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let mut b = env.bundle("tty", SCRIPT);
    b.spec["process"]["terminal"] = json!(true);
    b.spec["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    // A non-root process owns its terminal.
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.write();
    let sock = env.tmp.path().join("console.sock");
    let listener = listen(&sock);
    let mut create = env
        .cmd()
        .args([
            "create",
            "--console-socket",
            sock.to_str().unwrap(),
            "--bundle",
            b.path(),
            "tty",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_acceptable(&listener, &mut create);
    let master = receive_master(&listener);
    let out = create.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let start = env.rt(&["start", "tty"]);
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));
    check_session(&master, "30 100", true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.state("tty")["status"] != "stopped" {
        assert!(Instant::now() < deadline, "container did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(env.rt(&["delete", "tty"]).status.success());
}

#[test]
fn exec_tty_gets_its_own_terminal() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = env.bundle("exectty", "sleep 300");
    b.write();
    let (ok, err) = env.rt_detached(&["run", "-d", "--bundle", b.path(), "exectty"]);
    assert!(ok, "{err}");
    let sock = env.tmp.path().join("exec-console.sock");
    let listener = listen(&sock);
    let mut process = b.spec["process"].clone();
    process["args"] = json!(["sh", "-c", format!("{SCRIPT}; exit 4")]);
    process["terminal"] = json!(true);
    process["consoleSize"] = json!({"height": 20, "width": 60});
    let process_json = env.tmp.path().join("process.json");
    std::fs::write(&process_json, process.to_string()).unwrap();
    let mut exec = env
        .cmd()
        .args([
            "exec",
            "--process",
            process_json.to_str().unwrap(),
            "--console-socket",
            sock.to_str().unwrap(),
            "exectty",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_acceptable(&listener, &mut exec);
    let master = receive_master(&listener);
    check_session(&master, "20 60", false);
    let out = exec.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(env.rt(&["delete", "--force", "exectty"]).status.success());
}

#[test]
fn a_terminal_without_a_console_socket_is_refused() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let mut b = env.bundle("notty", "true");
    b.spec["process"]["terminal"] = json!(true);
    b.write();
    let (ok, err) = env.rt_detached(&["create", "--bundle", b.path(), "notty"]);
    assert!(!ok);
    assert!(err.contains("no console socket"), "{err}");
    let b = env.bundle("exec-notty", "sleep 300");
    b.write();
    let (ok, err) = env.rt_detached(&["run", "-d", "--bundle", b.path(), "exec-notty"]);
    assert!(ok, "{err}");
    let out = env.rt(&["exec", "--tty", "exec-notty", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no console socket"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.rt(&["delete", "--force", "exec-notty"]).status.success());
}
