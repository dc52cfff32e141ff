//! The monitor's command line, as the engine's setup writes it before it
//! `execve`s the monitor (see `berth_runtime::monitor::handoff`):
//!
//! ```text
//! berth-monitor --id ID --dir CONTAINER_DIR --init PID --chan FD --listener FD
//!               [--stdout FD] [--stderr FD] [--stdin FD] [--master FD]
//!               [--log CRI_LOG] [--cgroup DIR] [--oom FILE] [--stdin-once]
//! ```
//!
//! `--cgroup` is a cgroup directory whose `cgroup.procs` (recursively) lists
//! the container's processes; `--oom` a file with an `oom_kill N` line
//! (`memory.oom_control` on v1, `memory.events` on v2); `--stdin-once`
//! closes the container's stdin when the first attached client leaves.

use core::ffi::CStr;

use crate::buf::parse_u64;
use crate::sys;

/// Descriptor flags, in [`Config`] field order.
pub const FD_FLAGS: [&str; 6] = ["--chan", "--listener", "--stdout", "--stderr", "--stdin", "--master"];
/// Path flags, in [`Config`] field order.
pub const PATH_FLAGS: [&str; 3] = ["--log", "--cgroup", "--oom"];
/// The one flag without a value.
pub const STDIN_ONCE_FLAG: &str = "--stdin-once";

/// What the monitor supervises; descriptors are numbers it takes over.
#[derive(Debug, Clone)]
pub struct Config<'a> {
    pub id: &'a CStr,
    /// The container's state directory (socket, `started`, `exit.json`).
    pub dir: &'a CStr,
    pub init_pid: i32,
    /// The parent end of the setup channel: `start` releases the init.
    pub chan: i32,
    /// The bound, listening control socket.
    pub listener: i32,
    /// Read ends of the container's stdout and stderr.
    pub stdout: Option<i32>,
    pub stderr: Option<i32>,
    /// Write end of the container's stdin pipe.
    pub stdin: Option<i32>,
    /// The pty master (terminal containers).
    pub master: Option<i32>,
    pub log: Option<&'a CStr>,
    pub cgroup: Option<&'a CStr>,
    pub oom: Option<&'a CStr>,
    pub stdin_once: bool,
}

/// A command line that does not parse: the flag (or value) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgError<'a> {
    pub arg: &'a [u8],
    pub why: &'static str,
}

fn err<'a>(arg: &'a CStr, why: &'static str) -> ArgError<'a> {
    ArgError {
        arg: arg.to_bytes(),
        why,
    }
}

/// Parses the arguments after argv\[0\]. Descriptor numbers must be open
/// (checked); taking them over is the caller's business.
pub fn parse<'a>(args: impl IntoIterator<Item = &'a CStr>) -> Result<Config<'a>, ArgError<'a>> {
    let mut id = None;
    let mut dir = None;
    let mut init = None;
    let mut fds: [Option<i32>; 6] = [None; 6];
    let mut paths: [Option<&CStr>; 3] = [None; 3];
    let mut stdin_once = false;
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let name = flag.to_bytes();
        if name == STDIN_ONCE_FLAG.as_bytes() {
            stdin_once = true;
            continue;
        }
        let value = it.next().ok_or(err(flag, "needs a value"))?;
        let number = || {
            parse_u64(value.to_bytes())
                .and_then(|n| i32::try_from(n).ok())
                .ok_or(err(flag, "not a number"))
        };
        if let Some(slot) = FD_FLAGS.iter().position(|f| f.as_bytes() == name) {
            let fd = number()?;
            if !sys::is_open(fd) {
                return Err(err(flag, "descriptor is not open"));
            }
            fds[slot] = Some(fd);
        } else if let Some(slot) = PATH_FLAGS.iter().position(|f| f.as_bytes() == name) {
            paths[slot] = Some(value);
        } else {
            match name {
                b"--id" => id = Some(value),
                b"--dir" => dir = Some(value),
                b"--init" => init = Some(number()?),
                _ => return Err(err(flag, "unknown flag")),
            }
        }
    }
    let missing = |what: &'static str| ArgError {
        arg: what.as_bytes(),
        why: "is required",
    };
    let [chan, listener, stdout, stderr, stdin, master] = fds;
    let [log, cgroup, oom] = paths;
    Ok(Config {
        id: id.ok_or(missing("--id"))?,
        dir: dir.ok_or(missing("--dir"))?,
        init_pid: init.ok_or(missing("--init"))?,
        chan: chan.ok_or(missing("--chan"))?,
        listener: listener.ok_or(missing("--listener"))?,
        stdout,
        stderr,
        stdin,
        master,
        log,
        cgroup,
        oom,
        stdin_once,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::ffi::CString;
    use std::vec::Vec;

    fn cstrings(v: &[&str]) -> Vec<CString> {
        v.iter().map(|s| CString::new(*s).unwrap()).collect()
    }

    #[test]
    fn full_command_line_parses() {
        // 0, 1 and 2 are open in any test process.
        let args = cstrings(&[
            "--id",
            "c1",
            "--dir",
            "/run/berth/c1",
            "--init",
            "42",
            "--chan",
            "0",
            "--listener",
            "1",
            "--stdout",
            "2",
            "--log",
            "/var/log/pods/p/c/0.log",
            "--cgroup",
            "/sys/fs/cgroup/pids/c1",
            "--stdin-once",
        ]);
        let c = parse(args.iter().map(|a| a.as_c_str())).unwrap();
        assert_eq!(c.id.to_bytes(), b"c1");
        assert_eq!(c.dir.to_bytes(), b"/run/berth/c1");
        assert_eq!((c.init_pid, c.chan, c.listener, c.stdout), (42, 0, 1, Some(2)));
        assert_eq!((c.stderr, c.stdin, c.master), (None, None, None));
        assert_eq!(c.log.unwrap().to_bytes(), b"/var/log/pods/p/c/0.log");
        assert_eq!(c.cgroup.unwrap().to_bytes(), b"/sys/fs/cgroup/pids/c1");
        assert!(c.oom.is_none() && c.stdin_once);
    }

    #[test]
    fn bad_command_lines_name_the_flag() {
        let cases: [(&[&str], &str, &str); 5] = [
            (&["--id"], "--id", "needs a value"),
            (&["--bogus", "1"], "--bogus", "unknown flag"),
            (&["--id", "c", "--dir", "/x", "--init", "1"], "--chan", "is required"),
            (&["--chan", "100000"], "--chan", "descriptor is not open"),
            (&["--init", "-5"], "--init", "not a number"),
        ];
        for (args, arg, why) in cases {
            let args = cstrings(args);
            let e = parse(args.iter().map(|a| a.as_c_str())).unwrap_err();
            assert_eq!((e.arg, e.why), (arg.as_bytes(), why));
        }
    }
}
