//! What the monitor writes into the container's state directory:
//!
//! - `started`: the start time, written when the init has called execve
//!   (the engine turns `created` into `running` when it is there);
//! - `exit.json`: the exit record, byte for byte what serde writes for the
//!   engine's `ExitRecord`, written once every process of the container is
//!   gone.
//!
//! Both go through a temp file and a rename, so a reader never sees a torn
//! file. Only the exit record is fsynced (file and directory): it is the one
//! fact that must survive anything; the start time is cheap to lose (the
//! state dir is volatile) and an fsync costs milliseconds on the start path.

use core::ffi::CStr;

use crate::buf::Buf;
use crate::sys::{self, Errno};
use crate::time::Stamp;

pub const STARTED_FILE: &CStr = c"started";
pub const EXIT_FILE: &CStr = c"exit.json";
pub const MONITOR_SOCKET: &CStr = c"monitor.sock";

/// How the container ended, as the monitor saw it.
#[derive(Debug, Clone)]
pub struct Exit {
    /// The code, or 128 + signal, as a shell reports it.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub exited_at: Stamp,
    pub oom_killed: bool,
}

/// The exit record as JSON (`error` is always null: the monitor only
/// records containers that ran).
pub fn exit_json(exit: &Exit) -> Buf<160> {
    let mut out = Buf::new();
    out.push(b"{\"exit_code\":").push_i64(exit.exit_code.into());
    out.push(b",\"signal\":");
    match exit.signal {
        Some(s) => out.push_i64(s.into()),
        None => out.push(b"null"),
    };
    // The timestamp is ASCII digits and punctuation: nothing to escape.
    out.push(b",\"exited_at\":\"").push(exit.exited_at.as_bytes());
    out.push(b"\",\"oom_killed\":")
        .push(if exit.oom_killed { b"true" } else { b"false" });
    out.push(b",\"error\":null}");
    out
}

/// Writes `bytes` to `name` in directory `dir` through a temp file and a
/// rename; with `durable`, file and directory are fsynced too.
pub fn write_atomic(dir: i32, name: &CStr, bytes: &[u8], durable: bool) -> sys::Result<()> {
    let mut tmp = Buf::<64>::new();
    tmp.push(b".")
        .push(name.to_bytes())
        .push(b".tmp")
        .push_i64(sys::getpid().into());
    let tmp = tmp.as_cstr().ok_or(Errno::EINVAL)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
    let file = sys::openat(dir, tmp, flags, 0o600)?;
    let mut rest = bytes;
    while !rest.is_empty() {
        match sys::write(file.raw(), rest) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    if durable {
        sys::fsync(file.raw())?;
    }
    drop(file);
    sys::renameat(dir, tmp, dir, name)?;
    if durable {
        sys::fsync(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn exit_json_shapes() {
        let exit = Exit {
            exit_code: 137,
            signal: Some(9),
            exited_at: crate::time::format(0, 6),
            oom_killed: true,
        };
        assert_eq!(
            exit_json(&exit).as_bytes(),
            br#"{"exit_code":137,"signal":9,"exited_at":"1970-01-01T00:00:00.000000006Z","oom_killed":true,"error":null}"#
        );
        let exit = Exit {
            exit_code: -1,
            signal: None,
            ..exit
        };
        assert!(exit_json(&exit)
            .as_bytes()
            .starts_with(br#"{"exit_code":-1,"signal":null,"#));
    }

    #[test]
    fn records_replace_whole_and_leave_no_temp_files() {
        use std::os::fd::AsRawFd;
        let dir = std::env::temp_dir().join(std::format!("berth-monitor-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = std::fs::File::open(&dir).unwrap();
        write_atomic(d.as_raw_fd(), STARTED_FILE, b"first", false).unwrap();
        write_atomic(d.as_raw_fd(), STARTED_FILE, b"second", false).unwrap();
        write_atomic(d.as_raw_fd(), EXIT_FILE, b"{}", true).unwrap();
        let mut names: std::vec::Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["exit.json", "started"]);
        assert_eq!(std::fs::read_to_string(dir.join("started")).unwrap(), "second");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            write_atomic(d.as_raw_fd(), STARTED_FILE, b"x", false).is_err(),
            "directory is gone"
        );
    }
}
