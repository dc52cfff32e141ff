//! Root-test helpers: guards that remove what a test created, even when it panics.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("note: skipping root-only test (not running as root)");
        false
    }
}

pub fn sh(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"))
}

pub fn sh_ok(cmd: &str, args: &[&str]) -> String {
    let out = sh(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A named netns under /run/netns, deleted on drop.
pub struct NetnsGuard {
    pub name: String,
    pub path: PathBuf,
}

impl NetnsGuard {
    pub fn new() -> Self {
        let name = format!(
            "berth-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        sh_ok("ip", &["netns", "add", &name]);
        NetnsGuard {
            path: PathBuf::from("/run/netns").join(&name),
            name,
        }
    }

    /// Runs a command inside the netns.
    pub fn exec(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    pub fn ipv4_of(&self, ifname: &str) -> String {
        String::from_utf8_lossy(&self.exec(&["ip", "-o", "-4", "addr", "show", "dev", ifname]).stdout).into_owned()
    }

    /// Starts `busybox httpd` serving `body` on `port` inside the netns.
    pub fn serve(&self, dir: &Path, port: u16, body: &str) -> ChildGuard {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("index.html"), body).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "busybox",
                "httpd",
                "-f",
                "-p",
                &port.to_string(),
                "-h",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ChildGuard(child)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = sh("ip", &["netns", "del", &self.name]);
    }
}

/// Kills a child process on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Deletes links by name on drop.
pub struct LinkGuard(pub Vec<String>);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        for l in &self.0 {
            if link_exists(l) {
                let _ = sh("ip", &["link", "del", l]);
            }
        }
    }
}

pub fn link_exists(name: &str) -> bool {
    sh("ip", &["link", "show", "dev", name]).status.success()
}

/// On drop, deletes every iptables rule whose text contains one of `needles`
/// (in nat and filter), then flushes and deletes `chains`.
pub struct IptablesGuard {
    pub needles: Vec<String>,
    pub chains: Vec<(String, String)>,
}

impl IptablesGuard {
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for table in ["nat", "filter"] {
            let save = sh_ok("iptables-save", &["-t", table]);
            for l in save.lines() {
                if self.needles.iter().any(|n| l.contains(n.as_str())) {
                    found.push(format!("{table}: {l}"));
                }
            }
        }
        found
    }
}

impl Drop for IptablesGuard {
    fn drop(&mut self) {
        for table in ["nat", "filter"] {
            let Ok(out) = Command::new("iptables-save").args(["-t", table]).output() else {
                continue;
            };
            for l in String::from_utf8_lossy(&out.stdout).lines() {
                let Some(rest) = l.strip_prefix("-A ") else { continue };
                if self.needles.iter().any(|n| l.contains(n.as_str())) {
                    let input = format!("*{table}\n-D {rest}\nCOMMIT\n");
                    if let Ok(mut c) = Command::new("iptables-restore")
                        .arg("--noflush")
                        .stdin(Stdio::piped())
                        .spawn()
                    {
                        let _ = c.stdin.take().map(|mut s| s.write_all(input.as_bytes()));
                        let _ = c.wait();
                    }
                }
            }
        }
        for (table, chain) in &self.chains {
            let _ = sh("iptables", &["-w", "-t", table, "-F", chain]);
            let _ = sh("iptables", &["-w", "-t", table, "-X", chain]);
        }
    }
}

/// A temp dir under /tmp, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("berth-cni-test").tempdir().unwrap()
}

/// GET / from 127.0.0.1:port, retrying while the server starts.
pub fn http_get_localhost(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if body.contains("200") => return body,
            Ok(body) if Instant::now() > deadline => panic!("unexpected answer: {body}"),
            Err(e) if Instant::now() > deadline => panic!("cannot reach 127.0.0.1:{port}: {e}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

pub fn ping(from: &NetnsGuard, ip: &str) -> bool {
    from.exec(&["busybox", "ping", "-c", "1", "-W", "2", ip])
        .status
        .success()
}
