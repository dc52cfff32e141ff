//! The pin helper: the child side of [`super::pin::pin`], run as
//! `berth-pod-init pin [--net] [--ipc] [--uts] [--pid] [--hostname H]
//! [--sysctl KEY=VALUE]… [--exit-file PATH] [--cgroup-join FILE]…`.
//!
//! Why a separate executable: berthd is a multi-threaded tokio process, and
//! only async-signal-safe calls are allowed between `fork` and `exec` there.
//! `unshare`, writing sysctls, `sethostname` and forking a PID 1 are plain
//! Rust code in a fresh single-threaded process instead: std's `Command`
//! forks and execs this small binary (no serde, tracing or clap reachable),
//! which is also what stays behind as the pod init, so one tiny image
//! serves both jobs.
//!
//! ```text
//! berthd ── Command ──▶ helper: unshare(net|ipc|uts), hostname, sysctls, lo up
//!   │                     ├─ without --pid: "ready <own pid> 0" on stdout
//!   │                     │                 wait for EOF on stdin, exit
//!   │                     └─ with --pid: fork ──▶ supervisor: setsid, unshare(pid),
//!   │                           exit            fork ──▶ pod init (PID 1, podinit.rs):
//!   │                                           │        writes 0 to each --cgroup-join
//!   │                                           │        file (joins its cgroup), says so
//!   │                                           "ready <init pid> <own pid>",
//!   │                                           wait for EOF on stdin, then waitpid
//!   │                                           the init and write --exit-file
//!   │ reads the line, bind-mounts /proc/<pid>/ns/*, closes stdin
//! ```
//!
//! Failures are reported as `error <message>` on stdout.

use std::ffi::OsString;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::unistd::ForkResult;

/// The first argument selecting the helper mode.
pub const PIN_MODE: &str = "pin";

/// What the helper is asked to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HelperArgs {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    pub pid: bool,
    pub hostname: Option<String>,
    /// Validated by the caller (see [`super::sysctl::validate`]).
    pub sysctls: Vec<(String, String)>,
    /// Where the supervisor records how the pod init ended.
    pub exit_file: Option<PathBuf>,
    /// Files the pod init writes `0` into to join its cgroup (see
    /// `CgroupManager::self_join_files`), before the helper reports ready.
    pub cgroup_join: Vec<PathBuf>,
}

impl HelperArgs {
    /// The command line (after the program name).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![PIN_MODE.into()];
        for (on, flag) in [
            (self.net, "--net"),
            (self.ipc, "--ipc"),
            (self.uts, "--uts"),
            (self.pid, "--pid"),
        ] {
            if on {
                out.push(flag.into());
            }
        }
        if let Some(h) = &self.hostname {
            out.push("--hostname".into());
            out.push(h.into());
        }
        for (k, v) in &self.sysctls {
            out.push("--sysctl".into());
            out.push(format!("{k}={v}").into());
        }
        if let Some(p) = &self.exit_file {
            out.push("--exit-file".into());
            out.push(p.into());
        }
        for f in &self.cgroup_join {
            out.push("--cgroup-join".into());
            out.push(f.into());
        }
        out
    }

    /// Parses the command line (after the program name).
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<HelperArgs, String> {
        let mut it = args.into_iter();
        if it.next().as_deref() != Some(std::ffi::OsStr::new(PIN_MODE)) {
            return Err(format!(
                "usage: berth-pod-init {PIN_MODE} [options] (internal to berth)"
            ));
        }
        let mut a = HelperArgs::default();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.to_str() {
                Some("--net") => a.net = true,
                Some("--ipc") => a.ipc = true,
                Some("--uts") => a.uts = true,
                Some("--pid") => a.pid = true,
                Some("--hostname") => {
                    let v = value("--hostname")?;
                    a.hostname = Some(v.into_string().map_err(|_| "hostname is not UTF-8".to_string())?);
                }
                Some("--sysctl") => {
                    let v = value("--sysctl")?;
                    let v = v.to_str().ok_or("sysctl is not UTF-8")?;
                    let (k, val) = v
                        .split_once('=')
                        .ok_or_else(|| format!("sysctl {v:?} is not KEY=VALUE"))?;
                    a.sysctls.push((k.to_string(), val.to_string()));
                }
                Some("--exit-file") => a.exit_file = Some(value("--exit-file")?.into()),
                Some("--cgroup-join") => a.cgroup_join.push(value("--cgroup-join")?.into()),
                _ => return Err(format!("unknown argument {arg:?}")),
            }
        }
        Ok(a)
    }
}

/// The helper's one-line report on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The namespaces are ready in process `ns_pid` (the pod init when a
    /// PID namespace was asked, supervised by `supervisor`).
    Ready {
        ns_pid: i32,
        supervisor: Option<i32>,
    },
    Error(String),
}

impl Report {
    pub fn line(&self) -> String {
        match self {
            Report::Ready { ns_pid, supervisor } => format!("ready {ns_pid} {}\n", supervisor.unwrap_or(0)),
            Report::Error(msg) => format!("error {}\n", msg.replace('\n', " ")),
        }
    }

    pub fn parse(line: &str) -> Option<Report> {
        let line = line.trim_end_matches('\n');
        if let Some(msg) = line.strip_prefix("error ") {
            return Some(Report::Error(msg.to_string()));
        }
        let mut it = line.strip_prefix("ready ")?.split(' ');
        let ns_pid: i32 = it.next()?.parse().ok()?;
        let sup: i32 = it.next()?.parse().ok()?;
        (ns_pid > 0 && it.next().is_none()).then_some(Report::Ready {
            ns_pid,
            supervisor: (sup > 0).then_some(sup),
        })
    }
}

/// Writes `report` to stdout, unbuffered (the process may fork next).
pub(crate) fn report(report: &Report) {
    let line = report.line();
    // SAFETY: fd 1 stays open for the whole process life (set up by the
    // caller as a pipe); the borrow lasts for this call only.
    let out = unsafe { BorrowedFd::borrow_raw(1) };
    let mut buf = line.as_bytes();
    while !buf.is_empty() {
        match nix::unistd::write(out, buf) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Blocks until the caller closes our stdin (its "done").
pub(crate) fn wait_for_eof() {
    // SAFETY: fd 0 stays open for the whole process life; borrowed for
    // this call only.
    let input = unsafe { BorrowedFd::borrow_raw(0) };
    let mut buf = [0u8; 64];
    loop {
        match nix::unistd::read(input, &mut buf) {
            Ok(0) => return,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Runs the helper; returns the process exit code (the supervisor and the
/// pod init never return here).
pub fn run(args: &HelperArgs) -> i32 {
    if let Err(msg) = setup(args) {
        report(&Report::Error(msg));
        return 1;
    }
    if args.pid {
        // SAFETY: this freshly exec'd helper is single-threaded, so the
        // child may run any code; it never returns from `supervise`.
        return match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => super::podinit::supervise(args.exit_file.as_deref(), &args.cgroup_join),
            Ok(ForkResult::Parent { .. }) => 0,
            Err(e) => {
                report(&Report::Error(format!("fork supervisor: {e}")));
                1
            }
        };
    }
    report(&Report::Ready {
        ns_pid: nix::unistd::getpid().as_raw(),
        supervisor: None,
    });
    wait_for_eof();
    0
}

/// New namespaces, then everything that must happen inside them.
fn setup(args: &HelperArgs) -> Result<(), String> {
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    let mut flags = CloneFlags::empty();
    for (on, flag) in [
        (args.net, CloneFlags::CLONE_NEWNET),
        (args.ipc, CloneFlags::CLONE_NEWIPC),
        (args.uts, CloneFlags::CLONE_NEWUTS),
    ] {
        if on {
            flags |= flag;
        }
    }
    if !flags.is_empty() {
        nix::sched::unshare(flags).map_err(|e| format!("unshare {flags:?}: {e}"))?;
    }
    if let Some(h) = &args.hostname {
        if !args.uts {
            return Err(format!("hostname {h:?} needs a new UTS namespace"));
        }
        nix::unistd::sethostname(h).map_err(|e| format!("sethostname {h:?}: {e}"))?;
    }
    for (key, value) in &args.sysctls {
        // The caller validated the key; refuse path tricks all the same.
        if key.contains("..") || key.as_bytes().first() == Some(&b'/') {
            return Err(format!("sysctl {key:?}: invalid name"));
        }
        let path = PathBuf::from("/proc/sys").join(super::sysctl::relative_path(key));
        std::fs::write(&path, value.as_bytes()).map_err(|e| format!("sysctl {key}: write {}: {e}", path.display()))?;
    }
    if args.net {
        super::loopback::set_up().map_err(|e| format!("bring lo up: {e}"))?;
    }
    Ok(())
}

/// Entry of the `berth-pod-init` binary.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    match HelperArgs::parse(args) {
        Ok(a) => run(&a),
        Err(msg) => {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("berth-pod-init: {msg}\n").as_bytes());
            report(&Report::Error(msg));
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn args_roundtrip() {
        let a = HelperArgs {
            net: true,
            ipc: false,
            uts: true,
            pid: true,
            hostname: Some("pod-a".into()),
            sysctls: vec![
                ("net.core.somaxconn".into(), "1024".into()),
                ("kernel.sem".into(), "1 2 3 4".into()),
            ],
            exit_file: Some("/run/berth/pods/a/init-exit".into()),
            cgroup_join: vec![
                "/sys/fs/cgroup/cpu/b/pods/a/berth-pod-init/tasks".into(),
                "/sys/fs/cgroup/memory/b/pods/a/berth-pod-init/tasks".into(),
            ],
        };
        assert_eq!(HelperArgs::parse(a.to_args()).unwrap(), a);
        assert!(HelperArgs::parse(vec![os("pin"), os("--bogus")]).is_err());
        assert!(HelperArgs::parse(vec![os("other")]).is_err());
        assert!(HelperArgs::parse(vec![os("pin"), os("--hostname")]).is_err());
        assert!(HelperArgs::parse(vec![os("pin"), os("--sysctl"), os("novalue")]).is_err());
    }

    #[test]
    fn reports_roundtrip() {
        for r in [
            Report::Ready {
                ns_pid: 42,
                supervisor: None,
            },
            Report::Ready {
                ns_pid: 42,
                supervisor: Some(41),
            },
            Report::Error("unshare: EPERM".into()),
        ] {
            assert_eq!(Report::parse(&r.line()), Some(r));
        }
        assert_eq!(Report::parse("ready x 0"), None);
        assert_eq!(Report::parse("ready 0 0"), None);
        assert_eq!(Report::parse(""), None);
    }
}
