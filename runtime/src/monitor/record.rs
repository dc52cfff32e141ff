//! What the monitor writes into the container's state directory, without
//! serde (the `berth-monitor` binary stays small):
//!
//! - `started`: the RFC 3339 start time, written when the init has
//!   called execve; [`crate::state::StateDir::load`] turns a `created`
//!   state into `running` when it is there.
//! - `exit.json`: the [`ExitRecord`], byte-compatible with its serde form,
//!   written once when every process of the container is gone.
//!
//! Both go through a temp file and a rename, so a reader never sees a torn
//! file. Only the exit record is fsynced (file and directory): it is the one
//! fact that must survive anything; the start time is cheap to lose (the
//! state dir is volatile) and an fsync costs milliseconds on the start path.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::state::ExitRecord;

/// File name of the start record in the container directory.
pub const STARTED_FILE: &str = crate::state::STARTED_FILE;
/// File name of the exit record in the container directory.
pub const EXIT_FILE: &str = crate::state::EXIT_FILE;

/// A record that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("write {path}: {source}")]
pub struct RecordError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                for shift in [4, 0] {
                    out.push(char::from(b"0123456789abcdef"[((c as u32) >> shift) as usize & 0xf]));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The exit record as JSON, field for field what serde writes.
pub fn exit_json(exit: &ExitRecord) -> String {
    let mut out = String::with_capacity(128);
    out.push_str("{\"exit_code\":");
    out.push_str(&exit.exit_code.to_string());
    out.push_str(",\"signal\":");
    match exit.signal {
        Some(s) => out.push_str(&s.to_string()),
        None => out.push_str("null"),
    }
    out.push_str(",\"exited_at\":");
    push_json_str(&mut out, &exit.exited_at);
    out.push_str(",\"oom_killed\":");
    out.push_str(if exit.oom_killed { "true" } else { "false" });
    out.push_str(",\"error\":");
    match &exit.error {
        Some(e) => push_json_str(&mut out, e),
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

/// Writes `bytes` to `dir/name` through a temp file and a rename; with
/// `durable`, the file and the directory are fsynced too.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], durable: bool) -> Result<(), RecordError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| RecordError { path: p, source }
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(err(&tmp))?;
    f.write_all(bytes).map_err(err(&tmp))?;
    if durable {
        f.sync_all().map_err(err(&tmp))?;
    }
    drop(f);
    std::fs::rename(&tmp, &path).map_err(err(&path))?;
    if durable {
        File::open(dir).and_then(|d| d.sync_all()).map_err(err(dir))?;
    }
    Ok(())
}

/// Records that the container started at `at` (RFC 3339).
pub fn write_started(container_dir: &Path, at: &str) -> Result<(), RecordError> {
    write_atomic(container_dir, STARTED_FILE, at.as_bytes(), false)
}

/// Records the container's exit, durably.
pub fn write_exit(container_dir: &Path, exit: &ExitRecord) -> Result<(), RecordError> {
    write_atomic(container_dir, EXIT_FILE, exit_json(exit).as_bytes(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_json_is_what_serde_reads_and_writes() {
        for exit in [
            ExitRecord {
                exit_code: 0,
                signal: None,
                exited_at: "2026-11-23T03:04:05.123456789Z".into(),
                oom_killed: false,
                error: None,
            },
            ExitRecord {
                exit_code: -1,
                signal: Some(15),
                exited_at: "x".into(),
                oom_killed: true,
                error: Some("tab\t quote\" back\\ nl\n cr\r bell\u{7} bs\u{8} ff\u{c} del\u{7f} é €".into()),
            },
        ] {
            let text = exit_json(&exit);
            assert_eq!(serde_json::from_str::<ExitRecord>(&text).unwrap(), exit);
            assert_eq!(text, serde_json::to_string(&exit).unwrap());
        }
    }

    #[test]
    fn records_are_written_whole_and_leave_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        write_started(tmp.path(), "2026-11-23T00:00:00.000000000Z").unwrap();
        write_started(tmp.path(), "2026-11-23T00:00:01.000000000Z").unwrap();
        let exit = ExitRecord {
            exit_code: 3,
            signal: None,
            exited_at: "t".into(),
            oom_killed: false,
            error: None,
        };
        write_exit(tmp.path(), &exit).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [EXIT_FILE, STARTED_FILE]);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join(STARTED_FILE)).unwrap(),
            "2026-11-23T00:00:01.000000000Z"
        );
        let err = write_started(&tmp.path().join("gone"), "t").unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
    }
}
