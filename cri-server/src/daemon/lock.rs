//! One berthd per root dir and per socket: an exclusive `flock` on a lock file
//! that also records the holder's PID, so a second berthd can say who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} is in use by another berthd (pid {holder}, lock file {path})")]
    Held {
        what: String,
        holder: String,
        path: PathBuf,
    },
    #[error("lock file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held for the daemon's lifetime; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct InstanceLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl InstanceLock {
    /// Take the lock at `path`, describing the guarded thing as `what` in errors.
    pub fn acquire(path: &Path, what: &str) -> Result<InstanceLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "unknown".to_string()
                } else {
                    holder.to_string()
                };
                return Err(LockError::Held {
                    what: what.to_string(),
                    holder,
                    path: path.to_path_buf(),
                });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        locked.set_len(0).map_err(io)?;
        locked.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(locked, "{}", std::process::id()).map_err(io)?;
        Ok(InstanceLock {
            _file: locked,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_told_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berthd.lock");
        let first = InstanceLock::acquire(&path, "root dir /x").unwrap();
        let err = InstanceLock::acquire(&path, "root dir /x").unwrap_err().to_string();
        assert!(
            err.contains(&std::process::id().to_string()) && err.contains("root dir /x"),
            "{err}"
        );
        drop(first);
        InstanceLock::acquire(&path, "root dir /x").unwrap();
    }
}
