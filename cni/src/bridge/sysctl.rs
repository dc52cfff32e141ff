//! The few sysctls the bridge needs, written under a root passed in (`/proc/sys`).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("sysctl {}: {source}", .path.display())]
pub struct SysctlError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Sets `key` (slash-separated, e.g. `net/ipv4/ip_forward`) to `value` unless it
/// already has it.
pub fn ensure(root: &Path, key: &str, value: &str) -> Result<(), SysctlError> {
    let path = root.join(key);
    let err = |source| SysctlError {
        path: path.clone(),
        source,
    };
    let current = std::fs::read_to_string(&path).map_err(err)?;
    if current.trim() != value {
        std::fs::write(&path, value).map_err(err)?;
        tracing::debug!(key, value, "sysctl set");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_when_different() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net/ipv4")).unwrap();
        let f = dir.path().join("net/ipv4/ip_forward");
        std::fs::write(&f, "0\n").unwrap();
        ensure(dir.path(), "net/ipv4/ip_forward", "1").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "1");
        assert!(ensure(dir.path(), "net/ipv4/missing", "1")
            .unwrap_err()
            .to_string()
            .contains("missing"));
    }
}
