//! The CRI unix socket: refuse a socket another process serves, remove a stale
//! one, and create the new one with mode 0660 atomically (bind to a temporary
//! name, chmod, rename into place), so it is never reachable with wider rights.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use tokio::net::UnixListener;

pub const SOCKET_MODE: u32 = 0o660;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("socket {path} is already served by pid {pid}")]
    InUse { path: PathBuf, pid: i32 },
    #[error("socket {path}: {op}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Bind the CRI socket at `path`; its parent directory must exist.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let io = |op, source| SocketError::Io {
        path: path.to_path_buf(),
        op,
        source,
    };
    if path.exists() || path.symlink_metadata().is_ok() {
        if let Ok(stream) = UnixStream::connect(path) {
            let pid = getsockopt(&stream, PeerCredentials).map(|c| c.pid()).unwrap_or(-1);
            return Err(SocketError::InUse {
                path: path.to_path_buf(),
                pid,
            });
        }
        std::fs::remove_file(path).map_err(|e| io("remove stale socket", e))?;
        tracing::info!(path = %path.display(), "removed stale socket");
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(|e| io("bind", e))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| io("chmod", e))
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| io("rename into place", e)));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[tokio::test]
    async fn binds_0660_replaces_stale_and_refuses_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.sock");
        // A stale socket file nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let listener = bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, SOCKET_MODE);
        let err = bind(&path).unwrap_err();
        assert!(
            matches!(err, SocketError::InUse { pid, .. } if pid == std::process::id() as i32),
            "{err}"
        );
        drop(listener);
    }
}
