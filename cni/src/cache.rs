//! On-disk cache of what ADD did, so DEL (and CHECK) work after a restart.
//!
//! One file per attachment: `<dir>/results/<network>-<containerid>-<ifname>`,
//! holding the config list used, the args, the capability args and the final
//! result — the same contents libcni keeps. Files are written to a temp name,
//! fsynced and renamed, so a crash leaves the old entry or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::CapabilityArgs;

/// Cache errors, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("CNI cache {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("CNI cache entry {} is corrupt: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
}

const KIND: &str = "cniCacheV1";

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    pub network_name: String,
    /// The netns path at ADD time (used to clean up orphans).
    #[serde(default)]
    pub netns: String,
    /// The config list (conflist form) the ADD ran with.
    pub config: Value,
    #[serde(default)]
    pub cni_args: Vec<(String, String)>,
    #[serde(default)]
    pub capability_args: CapabilityArgs,
    /// The chain's final result, in the list's cniVersion.
    pub result: Value,
}

impl CacheEntry {
    pub fn new(container_id: &str, if_name: &str, network_name: &str, config: Value, result: Value) -> Self {
        CacheEntry {
            kind: KIND.into(),
            container_id: container_id.into(),
            if_name: if_name.into(),
            network_name: network_name.into(),
            netns: String::new(),
            config,
            cni_args: Vec::new(),
            capability_args: CapabilityArgs::new(),
            result,
        }
    }
}

/// The results cache rooted at a directory the caller owns.
#[derive(Debug, Clone)]
pub struct ResultCache {
    results: PathBuf,
}

impl ResultCache {
    /// `dir` is e.g. `<state>/cni-cache`; entries live in `dir/results`.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        ResultCache {
            results: dir.as_ref().join("results"),
        }
    }

    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.results.join(format!("{network}-{container_id}-{ifname}"))
    }

    /// Atomically writes an entry (temp file, fsync, rename, fsync dir).
    pub fn save(&self, entry: &CacheEntry) -> Result<PathBuf, CacheError> {
        let path = self.path(&entry.network_name, &entry.container_id, &entry.if_name);
        let io = |source| CacheError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.results).map_err(io)?;
        let bytes = serde_json::to_vec(entry).map_err(|e| CacheError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = self.results.join(format!(
            ".tmp-{}-{}-{}",
            std::process::id(),
            entry.container_id,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.results)?.sync_all()
        };
        write()
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
            .map_err(io)?;
        Ok(path)
    }

    /// Reads an entry; `None` when there is none.
    pub fn load(&self, network: &str, container_id: &str, ifname: &str) -> Result<Option<CacheEntry>, CacheError> {
        read_entry(&self.path(network, container_id, ifname))
    }

    /// Every entry for a container and interface, whatever network it was on.
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Vec<(PathBuf, CacheEntry)>, CacheError> {
        let suffix = format!("-{container_id}-{ifname}");
        Ok(self
            .list()?
            .into_iter()
            .filter(|(path, e)| {
                e.container_id == container_id
                    && e.if_name == ifname
                    && path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(&suffix))
            })
            .collect())
    }

    /// Every readable entry; corrupt ones are logged and skipped.
    pub fn list(&self) -> Result<Vec<(PathBuf, CacheEntry)>, CacheError> {
        let dir = match std::fs::read_dir(&self.results) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CacheError::Io {
                    path: self.results.clone(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for ent in dir {
            let ent = ent.map_err(|source| CacheError::Io {
                path: self.results.clone(),
                source,
            })?;
            if ent.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = ent.path();
            match read_entry(&path) {
                Ok(Some(e)) => out.push((path, e)),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping CNI cache entry"),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Removes an entry; a missing one is fine.
    pub fn remove(&self, path: &Path) -> Result<(), CacheError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CacheError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

fn read_entry(path: &Path) -> Result<Option<CacheEntry>, CacheError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CacheError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let entry: CacheEntry = serde_json::from_slice(&bytes).map_err(|e| CacheError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if entry.kind != KIND {
        return Err(CacheError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("unknown kind {:?}", entry.kind),
        });
    }
    Ok(Some(entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(cid: &str, net: &str) -> CacheEntry {
        let mut e = CacheEntry::new(
            cid,
            "eth0",
            net,
            json!({"name": net, "plugins": []}),
            json!({"cniVersion": "1.0.0"}),
        );
        e.cni_args = vec![("K8S_POD_NAME".into(), "web".into())];
        e.capability_args
            .insert("portMappings".into(), json!([{"hostPort": 1}]));
        e.netns = "/run/netns/x".into();
        e
    }

    #[test]
    fn round_trip_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        assert!(cache.load("net", "c1", "eth0").unwrap().is_none());
        let e = entry("c1", "net");
        let path = cache.save(&e).unwrap();
        assert_eq!(path, dir.path().join("results/net-c1-eth0"));
        assert_eq!(cache.load("net", "c1", "eth0").unwrap().unwrap(), e);
        // A new instance (a restarted berthd) sees the same entry.
        let again = ResultCache::new(dir.path());
        assert_eq!(again.find("c1", "eth0").unwrap().len(), 1);
        assert!(again.find("c1", "eth1").unwrap().is_empty());
        assert!(again.find("c", "eth0").unwrap().is_empty());
        cache.save(&entry("c2", "other-net")).unwrap();
        assert_eq!(cache.list().unwrap().len(), 2);
        cache.remove(&path).unwrap();
        cache.remove(&path).unwrap();
        assert!(cache.load("net", "c1", "eth0").unwrap().is_none());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("results")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn overwrite_replaces_and_corrupt_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        let mut e = entry("c1", "net");
        cache.save(&e).unwrap();
        e.result = json!({"cniVersion": "1.0.0", "ips": []});
        cache.save(&e).unwrap();
        assert_eq!(cache.load("net", "c1", "eth0").unwrap().unwrap().result, e.result);
        std::fs::write(cache.path("bad", "c9", "eth0"), "{torn").unwrap();
        assert!(matches!(
            cache.load("bad", "c9", "eth0"),
            Err(CacheError::Corrupt { .. })
        ));
        assert_eq!(
            cache.list().unwrap().len(),
            1,
            "corrupt entries are skipped when listing"
        );
    }
}
