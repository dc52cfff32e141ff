//! The real Kubernetes tools: `crictl` and `critest` as `hack/tools.sh`
//! builds them (pinned in `hack/tools/go.mod`, cached outside the
//! checkout). `hack/test.sh` exports their directory as `BERTH_TOOLS_BIN`;
//! without it they are looked up on `PATH`. A test that needs one and does
//! not find it skips itself with a note ([`require_tool!`]).
//!
//! [`standins`] finds the programs `hack/standins.sh` builds for berth's
//! stand-ins of critest's images (`BERTH_STANDINS`).
//!
//! [`Crictl`] runs crictl against one berthd with a config file of its own
//! (so a host `/etc/crictl.yaml` never leaks in).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The directory named by `BERTH_TOOLS_BIN`, if set.
pub fn tools_bin() -> Option<PathBuf> {
    std::env::var_os("BERTH_TOOLS_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `name` in `BERTH_TOOLS_BIN`, else on `PATH`.
pub fn find(name: &str) -> Option<PathBuf> {
    if let Some(p) = tools_bin().map(|d| d.join(name)).filter(|p| executable(p)) {
        return Some(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// The crictl binary, if there is one.
pub fn crictl() -> Option<PathBuf> {
    find("crictl")
}

/// The critest binary, if there is one.
pub fn critest() -> Option<PathBuf> {
    find("critest")
}

/// The directory `hack/standins.sh` printed (`BERTH_STANDINS`), if set and
/// built: the programs berth's stand-ins for critest's images are made of.
pub fn standins() -> Option<PathBuf> {
    std::env::var_os("BERTH_STANDINS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|d| d.join("complete").is_file())
}

/// The path of tool `$name` (`crictl`, `critest`); returns from the
/// calling test (passing it) with a note when it is absent.
#[macro_export]
macro_rules! require_tool {
    ($name:ident) => {
        match $crate::tools::$name() {
            Some(p) => p,
            None => {
                eprintln!(
                    "SKIPPED {}: no {} (run hack/tools.sh and set BERTH_TOOLS_BIN to the directory it prints, or use hack/test.sh)",
                    module_path!(),
                    stringify!($name)
                );
                return;
            }
        }
    };
}

/// crictl pointed at one berthd socket.
pub struct Crictl {
    pub bin: PathBuf,
    /// Its `--config` file (runtime and image endpoint, timeout).
    pub config: PathBuf,
    tmp: tempfile::TempDir,
}

/// What one crictl run printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl Crictl {
    /// crictl `bin` for the berthd serving `socket`.
    pub fn new(bin: PathBuf, socket: &Path) -> Crictl {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-crictl-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("crictl.yaml");
        let endpoint = format!("unix://{}", socket.display());
        std::fs::write(
            &config,
            format!(
                "runtime-endpoint: {endpoint}\nimage-endpoint: {endpoint}\ntimeout: 60\ndebug: false\npull-image-on-create: false\ndisable-pull-on-run: false\n"
            ),
        )
        .expect("writing crictl.yaml");
        Crictl { bin, config, tmp: dir }
    }

    /// A temp dir for the test's own files (pod and container configs).
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// `crictl --config FILE ARGS…`, not yet run: for a test that wires
    /// stdin or a terminal itself.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config").arg(&self.config).args(args);
        c
    }

    /// Runs crictl with `args` (killed after `limit`), whatever it exits with.
    pub fn run_within(&self, args: &[&str], limit: Duration) -> Run {
        let mut c = self.command(args);
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()));
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(limit) {
            Ok(out) => Run::from(out.expect("waiting for crictl")),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!("crictl {args:?} did not finish within {limit:?}");
            }
        }
    }

    /// Runs crictl with `args`, whatever it exits with (2 minutes at most).
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_within(args, Duration::from_secs(120))
    }

    /// Runs crictl with `args`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert!(
            r.success(),
            "crictl {args:?} failed ({:?}):\n{}{}",
            r.code,
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// Runs crictl with `args`, which must succeed; stdout parsed as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("crictl {args:?}: not JSON ({e}):\n{out}"))
    }
}
