//! A pod's files (see the layout in [`super`]): `pod.json` (the record,
//! temp file + rename, not fsynced: the pods root is on volatile `/run`
//! and a machine crash ends every pod anyway), the `init` file naming the
//! pod init and its supervisor, and the supervisor's `init-exit`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::pin::PinnedNamespaces;
use super::SandboxError;
use crate::state::ProcessId;

/// File name of the pod record.
pub const POD_FILE: &str = "pod.json";
/// File naming the pod init and its supervisor.
pub const INIT_FILE: &str = "init";
/// File the supervisor writes when the pod init ends.
pub const INIT_EXIT_FILE: &str = "init-exit";
/// stderr of the helper and supervisor.
pub const LOG_FILE: &str = "pod-init.log";

/// The stored lifecycle status (see the state diagram in [`super`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    Creating,
    Ready,
    Stopped,
}

/// Persistent record of one pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub status: RecordStatus,
    /// RFC 3339 creation time.
    pub created: String,
    /// cgroup path of the pod (`<prefix>/pods/<id>`, or `<parent>/<id>`
    /// under a caller's cgroup parent).
    pub cgroup_path: PathBuf,
    #[serde(default)]
    pub namespaces: PinnedNamespaces,
    /// Directories of a caller's cgroup parent that this pod's create made
    /// (hierarchy filesystem paths); removed with the pod when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_cgroup_parents: Vec<PathBuf>,
}

/// Reads `dir/pod.json`; `None` when absent.
pub fn load(dir: &Path) -> Result<Option<PodRecord>, SandboxError> {
    let path = dir.join(POD_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| SandboxError::Malformed {
                path,
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SandboxError::Io {
            op: "read",
            path,
            source,
        }),
    }
}

/// Replaces `dir/pod.json` atomically.
pub fn save(dir: &Path, rec: &PodRecord) -> Result<(), SandboxError> {
    let bytes = serde_json::to_vec(rec).map_err(|e| SandboxError::Malformed {
        path: dir.join(POD_FILE),
        reason: e.to_string(),
    })?;
    write_atomic(&dir.join(POD_FILE), &bytes)
}

/// Writes `bytes` to a temp name beside `path`, then renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SandboxError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            SandboxError::Io {
                op: "write",
                path: path.to_path_buf(),
                source,
            }
        })
}

/// The pod init and its supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitProcesses {
    pub init: ProcessId,
    pub supervisor: Option<ProcessId>,
}

impl InitProcesses {
    fn line(&self) -> String {
        let (sp, ss) = self.supervisor.map_or((0, 0), |s| (s.pid, s.start_time));
        format!("{} {} {sp} {ss}\n", self.init.pid, self.init.start_time)
    }

    fn parse(text: &str) -> Option<InitProcesses> {
        let v: Vec<u64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
        let [ip, is, sp, ss] = v.as_slice() else {
            return None;
        };
        let pid = |p: u64| i32::try_from(p).ok().filter(|&p| p > 0);
        Some(InitProcesses {
            init: ProcessId {
                pid: pid(*ip)?,
                start_time: *is,
            },
            supervisor: pid(*sp).map(|pid| ProcessId { pid, start_time: *ss }),
        })
    }
}

/// Records the pod init in `dir/init` (before anything else points at it).
pub fn save_init(dir: &Path, p: &InitProcesses) -> Result<(), SandboxError> {
    write_atomic(&dir.join(INIT_FILE), p.line().as_bytes())
}

/// Reads `dir/init`; `None` when absent or unreadable as a record.
pub fn load_init(dir: &Path) -> Option<InitProcesses> {
    InitProcesses::parse(&std::fs::read_to_string(dir.join(INIT_FILE)).ok()?)
}

/// How the pod init ended, as its supervisor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitExit {
    Exited(i32),
    Signaled(i32),
}

impl InitExit {
    pub fn parse(text: &str) -> Option<InitExit> {
        let (kind, n) = text.trim().split_once(' ')?;
        let n = n.parse().ok()?;
        match kind {
            "exited" => Some(InitExit::Exited(n)),
            "signaled" => Some(InitExit::Signaled(n)),
            _ => None,
        }
    }
}

/// Reads `dir/init-exit`, if the supervisor wrote it.
pub fn load_init_exit(dir: &Path) -> Option<InitExit> {
    InitExit::parse(&std::fs::read_to_string(dir.join(INIT_EXIT_FILE)).ok()?)
}

/// Whether `name` is a temp file of [`write_atomic`] (or of the
/// supervisor) whose writer is gone.
pub fn is_stale_temp(name: &str) -> bool {
    let Some((_, suffix)) = name.rsplit_once(".tmp") else {
        return false;
    };
    if suffix.is_empty() {
        return true;
    }
    match suffix.parse::<i32>() {
        Ok(pid) => crate::procfs::start_time(pid).is_none(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip_without_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(load(tmp.path()).unwrap(), None);
        let rec = PodRecord {
            id: "p".into(),
            status: RecordStatus::Creating,
            created: crate::state::now_rfc3339(),
            cgroup_path: "/berth/pods/p".into(),
            namespaces: PinnedNamespaces::default(),
            created_cgroup_parents: Vec::new(),
        };
        save(tmp.path(), &rec).unwrap();
        assert_eq!(load(tmp.path()).unwrap(), Some(rec));
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
        std::fs::write(tmp.path().join(POD_FILE), "{").unwrap();
        let err = load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains(POD_FILE), "{err}");
        // A record from before created_cgroup_parents still loads.
        std::fs::write(
            tmp.path().join(POD_FILE),
            r#"{"id":"p","status":"ready","created":"x","cgroup_path":"/berth/pods/p"}"#,
        )
        .unwrap();
        assert!(load(tmp.path()).unwrap().unwrap().created_cgroup_parents.is_empty());
    }

    #[test]
    fn init_files_roundtrip() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(load_init(tmp.path()), None);
        let p = InitProcesses {
            init: ProcessId {
                pid: 12,
                start_time: 99,
            },
            supervisor: Some(ProcessId {
                pid: 11,
                start_time: 98,
            }),
        };
        save_init(tmp.path(), &p).unwrap();
        assert_eq!(load_init(tmp.path()), Some(p));
        assert_eq!(InitProcesses::parse("1 2 0 0\n").unwrap().supervisor, None);
        assert_eq!(InitProcesses::parse("1 2 3"), None);
        assert_eq!(InitExit::parse("signaled 9\n"), Some(InitExit::Signaled(9)));
        assert_eq!(InitExit::parse("exited 0"), Some(InitExit::Exited(0)));
        assert_eq!(InitExit::parse("unknown x"), None);
    }

    #[test]
    fn stale_temp_files_are_those_of_dead_writers() {
        assert!(is_stale_temp("pod.tmp"));
        assert!(is_stale_temp(&format!("pod.tmp{}", i32::MAX)));
        assert!(!is_stale_temp(&format!("pod.tmp{}", std::process::id())));
        assert!(!is_stale_temp("pod.json"));
    }
}
