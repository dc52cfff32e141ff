//! Container state on disk, under the runtime root (`--root`).
//!
//! ```text
//! <root>/<id>/state.json     State: written by `create` and the monitor's setup
//! <root>/<id>/started        start time: written by the monitor once the init execs
//! <root>/<id>/exit.json      ExitRecord: written once by the monitor, last
//! <root>/<id>/monitor.sock   the monitor's control socket
//! <root>/<id>/monitor.log    the monitor's own warnings and errors
//! ```
//!
//! Every file is written to a temp name and renamed into place, so a crash
//! of any process at any instant leaves the old or the new content, never a
//! torn one. Only `exit.json` is also fsynced: the state dir is volatile
//! (`/run`), a machine crash ends every container anyway, and an fsync costs
//! milliseconds on the create and start paths; the exit record is the one
//! fact a restarting caller must find.
//!
//! `running` is not written into `state.json` either: it is `created` plus
//! the `started` file, which the monitor's supervisor writes without
//! rewriting the state (see [`crate::monitor::record`]).
//!
//! ```text
//!            create                 init ready            start
//!   (none) ─────────▶ creating ─────────────────▶ created ──────▶ running
//!                        │ setup failed              │               │ every process
//!                        ▼                           │ killed/exited │ of the container gone
//!                    (removed)                       ▼               ▼
//!                                                 stopped ◀──────────┘
//!                                                    │ delete
//!                                                    ▼
//!                                                 (none)
//! ```
//!
//! `stopped` is never written into `state.json`: it is derived from the
//! presence of `exit.json` (the monitor writes it only when every process of
//! the container is gone), or, if the monitor died without writing it, from
//! the init process no longer existing. Recovery after a caller restart
//! therefore needs nothing but this directory: a live monitor is found by its
//! pid + start time, an exit that happened meanwhile by `exit.json`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::procfs;

/// OCI runtime spec version reported by `state`.
pub const OCI_VERSION: &str = "1.2.0";

const STATE_FILE: &str = "state.json";
/// A file name the monitor defines (`berth_monitor::record`), as `&str`.
const fn monitor_name(name: &'static std::ffi::CStr) -> &'static str {
    match std::str::from_utf8(name.to_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("monitor file names are ASCII"),
    }
}

/// File name of the exit record in the container directory.
pub const EXIT_FILE: &str = monitor_name(berth_monitor::record::EXIT_FILE);
/// File name of the start record in the container directory.
pub const STARTED_FILE: &str = monitor_name(berth_monitor::record::STARTED_FILE);
/// File name of the monitor's control socket in the container directory.
pub const MONITOR_SOCKET: &str = monitor_name(berth_monitor::record::MONITOR_SOCKET);
/// File name of the monitor's own log in the container directory.
pub const MONITOR_LOG: &str = "monitor.log";

/// Errors reading or writing container state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid container id {0:?}: use [A-Za-z0-9][A-Za-z0-9_.-]*, at most 1024 bytes")]
    InvalidId(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {id}: {path}: {source}")]
    Io {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: {path}: malformed: {source}")]
    Malformed {
        id: String,
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Lifecycle status as the OCI runtime spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        })
    }
}

/// A process identified robustly: pid plus its start time (clock ticks
/// since boot), so a recycled pid is never mistaken for ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    /// Identifies a live process now.
    pub fn of(pid: i32) -> Option<ProcessId> {
        procfs::start_time(pid).map(|start_time| ProcessId { pid, start_time })
    }

    /// Whether this very process still exists (zombies count as gone).
    pub fn is_alive(&self) -> bool {
        procfs::is_running_since(self.pid, self.start_time)
    }
}

/// An overlayfs mounted by the engine as the rootfs; unmounted on delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayMount {
    pub target: PathBuf,
}

/// Persistent record of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 start time, once started.
    #[serde(default)]
    pub started: Option<String>,
    /// The container's init process, once it exists.
    #[serde(default)]
    pub init: Option<ProcessId>,
    /// The monitor process supervising the container.
    #[serde(default)]
    pub monitor: Option<ProcessId>,
    /// cgroup path (relative to the hierarchy roots) the container runs in.
    #[serde(default)]
    pub cgroup_path: Option<PathBuf>,
    /// Overlay rootfs the engine mounted, to unmount on delete.
    #[serde(default)]
    pub overlay: Option<OverlayMount>,
    /// Whether the init has a terminal (the monitor holds the master).
    #[serde(default)]
    pub terminal: bool,
}

/// How a container's init ended; written by the monitor when every process
/// of the container is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit status as a shell reports it: the code, or 128 + signal.
    pub exit_code: i32,
    /// The signal that killed init, if any.
    pub signal: Option<i32>,
    /// RFC 3339 (nanoseconds) time the exit was observed.
    pub exited_at: String,
    /// The cgroup recorded an OOM kill during the container's life.
    #[serde(default)]
    pub oom_killed: bool,
    /// Set when the container never ran its process (setup or exec failed).
    #[serde(default)]
    pub error: Option<String>,
}

/// The runtime root directory holding one directory per container.
///
/// Parsed `state.json` files are kept in memory, keyed by the file's
/// identity (device, inode, size, mtime): every save renames a new file
/// into place, so a changed file never matches and is read again. A
/// `started` record, once seen, is kept too (it is written once). A list
/// of hundreds of containers then costs a `stat` per container instead of
/// a read and a JSON parse.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    cache: std::sync::Arc<std::sync::Mutex<HashMap<String, CachedState>>>,
}

/// A parsed `state.json` and the identity of the file it came from.
#[derive(Debug, Clone)]
struct CachedState {
    file: FileIdentity,
    state: State,
}

/// What tells one `state.json` from its replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileIdentity {
    fn of(meta: &fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// Checks a container ID is safe as a single path component.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir {
            root: root.into(),
            cache: Default::default(),
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedState>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of container `id` (which must be valid).
    pub fn container_dir(&self, id: &str) -> Result<PathBuf, StateError> {
        validate_id(id)?;
        Ok(self.root.join(id))
    }

    /// Creates the directory of a new container; fails if it exists.
    pub fn create_container_dir(&self, id: &str) -> Result<PathBuf, StateError> {
        let dir = self.container_dir(id)?;
        let io = |source| StateError::Io {
            id: id.to_string(),
            path: self.root.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .map_err(io)?;
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(StateError::Exists(id.to_string())),
            Err(source) => Err(StateError::Io {
                id: id.to_string(),
                path: dir,
                source,
            }),
        }
    }

    pub fn exists(&self, id: &str) -> bool {
        self.container_dir(id).is_ok_and(|d| d.join(STATE_FILE).exists())
    }

    /// The container's state; `created` with a `started` record reads as
    /// `running` with that start time.
    pub fn load(&self, id: &str) -> Result<State, StateError> {
        let dir = self.container_dir(id)?;
        let path = dir.join(STATE_FILE);
        let file = match fs::metadata(&path) {
            Ok(meta) => FileIdentity::of(&meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.cached().remove(id);
                return Err(StateError::NotFound(id.to_string()));
            }
            Err(source) => {
                return Err(StateError::Io {
                    id: id.to_string(),
                    path,
                    source,
                })
            }
        };
        let hit = self
            .cached()
            .get(id)
            .filter(|c| c.file == file)
            .map(|c| c.state.clone());
        let mut state = match hit {
            // Running here means the `started` record was seen: final.
            Some(state) if state.status != Status::Created => return Ok(state),
            Some(state) => state,
            None => match read_json(id, &path)? {
                Some(s) => s,
                None => return Err(StateError::NotFound(id.to_string())),
            },
        };
        let resolved = self.resolve_started(id, &dir, &mut state);
        if resolved.is_ok() {
            self.cached().insert(
                id.to_string(),
                CachedState {
                    file,
                    state: state.clone(),
                },
            );
        }
        resolved.map(|()| state)
    }

    /// A `created` state with a `started` record becomes `running`.
    fn resolve_started(&self, id: &str, dir: &Path, state: &mut State) -> Result<(), StateError> {
        if state.status == Status::Created {
            let path = dir.join(STARTED_FILE);
            match fs::read_to_string(&path) {
                Ok(at) => {
                    state.status = Status::Running;
                    state.started = Some(at.trim().to_string());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StateError::Io {
                        id: id.to_string(),
                        path,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Replaces `state.json` atomically (not fsynced: see the module doc).
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let dir = self.container_dir(&state.id)?;
        write_json_atomic(&state.id, &dir.join(STATE_FILE), state, false)
    }

    pub fn load_exit(&self, id: &str) -> Result<Option<ExitRecord>, StateError> {
        read_json(id, &self.container_dir(id)?.join(EXIT_FILE))
    }

    pub fn save_exit(&self, id: &str, exit: &ExitRecord) -> Result<(), StateError> {
        write_json_atomic(id, &self.container_dir(id)?.join(EXIT_FILE), exit, true)
    }

    /// Removes the container's directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        let dir = self.container_dir(id)?;
        self.cached().remove(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                id: id.to_string(),
                path: dir,
                source,
            }),
        }
    }

    /// IDs of every container with a state file.
    pub fn list(&self) -> Result<Vec<String>, StateError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StateError::Io {
                    id: String::new(),
                    path: self.root.clone(),
                    source,
                })
            }
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| self.exists(id))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(id: &str, path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Malformed {
                id: id.to_string(),
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            id: id.to_string(),
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `value` as JSON to `path` via temp file + rename; `durable` adds
/// an fsync of the file before the rename and of the directory after.
pub fn write_json_atomic<T: Serialize>(id: &str, path: &Path, value: &T, durable: bool) -> Result<(), StateError> {
    let io = |p: &Path, source| StateError::Io {
        id: id.to_string(),
        path: p.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec(value).map_err(|source| StateError::Malformed {
        id: id.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| io(&tmp, e))?;
    if durable {
        f.sync_all().map_err(|e| io(&tmp, e))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Some(parent) = path.parent().filter(|_| durable) {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(parent, e))?;
    }
    Ok(())
}

/// Now as RFC 3339 with nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str) -> State {
        State {
            id: id.to_string(),
            status: Status::Created,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            annotations: HashMap::new(),
            created: now_rfc3339(),
            started: None,
            init: None,
            monitor: None,
            cgroup_path: None,
            overlay: None,
            terminal: false,
        }
    }

    #[test]
    fn ids_are_single_safe_components() {
        for ok in ["a", "abc-1.2_3", "0"] {
            validate_id(ok).unwrap();
        }
        for bad in ["", "..", ".a", "a/b", "a b", "-x", &"x".repeat(1025)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn save_load_exit_remove_roundtrip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path().join("root"));
        dir.create_container_dir("c1").unwrap();
        assert!(matches!(dir.create_container_dir("c1"), Err(StateError::Exists(_))));
        assert!(matches!(dir.load("c1"), Err(StateError::NotFound(_))));
        dir.save(&sample("c1")).unwrap();
        assert_eq!(dir.load("c1").unwrap().status, Status::Created);
        std::fs::write(
            dir.container_dir("c1").unwrap().join(STARTED_FILE),
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        let running = dir.load("c1").unwrap();
        assert_eq!(running.status, Status::Running);
        assert_eq!(running.started.as_deref(), Some("2026-01-01T00:00:00Z"));
        std::fs::remove_file(dir.container_dir("c1").unwrap().join(STARTED_FILE)).unwrap();
        assert_eq!(dir.list().unwrap(), vec!["c1".to_string()]);
        assert!(dir.load_exit("c1").unwrap().is_none());
        let exit = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            exited_at: now_rfc3339(),
            oom_killed: false,
            error: None,
        };
        dir.save_exit("c1", &exit).unwrap();
        assert_eq!(dir.load_exit("c1").unwrap(), Some(exit));
        // no temp files left behind
        let names: Vec<_> = fs::read_dir(tmp.path().join("root/c1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        dir.remove("c1").unwrap();
        assert!(dir.list().unwrap().is_empty());
    }

    #[test]
    fn cached_states_follow_every_save_start_and_removal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path().join("root"));
        // A second StateDir on the same root stands for another process
        // (berth-runtime) changing the files behind the first one's cache.
        let other = StateDir::new(tmp.path().join("root"));
        dir.create_container_dir("c1").unwrap();
        let mut st = sample("c1");
        dir.save(&st).unwrap();
        assert_eq!(dir.load("c1").unwrap().monitor, None);
        assert_eq!(dir.load("c1").unwrap().status, Status::Created);
        st.monitor = ProcessId::of(std::process::id() as i32);
        other.save(&st).unwrap();
        assert_eq!(
            dir.load("c1").unwrap().monitor,
            st.monitor,
            "a replaced state.json is read again"
        );
        std::fs::write(dir.container_dir("c1").unwrap().join(STARTED_FILE), "t1").unwrap();
        assert_eq!(dir.load("c1").unwrap().started.as_deref(), Some("t1"));
        assert_eq!(dir.load("c1").unwrap().status, Status::Running, "from the cache");
        other.remove("c1").unwrap();
        assert!(matches!(dir.load("c1"), Err(StateError::NotFound(_))));
        other.create_container_dir("c1").unwrap();
        other.save(&sample("c1")).unwrap();
        let fresh = dir.load("c1").unwrap();
        assert_eq!(
            (fresh.status, fresh.monitor, fresh.started),
            (Status::Created, None, None)
        );
    }

    #[test]
    fn own_process_is_alive_and_recycled_pid_is_not() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let other = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.is_alive());
    }
}
