//! What every RuntimeService handler works with: the config, the stores, the
//! engine and the pod network. Built once by the daemon.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_cni::PodNetwork;
use berth_images::ImageService as ImageStore;
use berth_runtime::engine::Engine;

use crate::config::Config;
use crate::error::CriError;
use crate::sandbox::files::HostFiles;
use crate::store::CriStore;

pub struct Services {
    pub config: Arc<Config>,
    pub images: Arc<ImageStore>,
    pub store: Arc<CriStore>,
    pub engine: Arc<Engine>,
    pub network: Arc<dyn PodNetwork>,
    /// `<state>/pods/<pod id>/`: resolv.conf, hosts, hostname of each pod.
    pub pods_dir: PathBuf,
    /// `<root>/containers/<container id>/`: bundle, writable layer (upper, work).
    pub containers_dir: PathBuf,
    pub host_files: HostFiles,
    /// One async lock per pod or container ID: lifecycle calls on the same
    /// object run one at a time (a kubelet retry waits for the first call).
    pub locks: IdLocks,
    /// The streaming server's token table and URL (Exec, Attach, PortForward).
    pub streaming: Arc<crate::streaming::Streaming>,
}

/// Per-ID async mutexes, created on demand.
#[derive(Default)]
pub struct IdLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl IdLocks {
    /// Wait for and hold the lock of `key` (e.g. `pod/<id>`, `name/<key>`).
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.locks.lock().expect("id locks");
            // Drop the locks nobody holds or waits for.
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(key.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// Run blocking work (engine calls, file I/O) off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CriError> + Send + 'static,
) -> Result<T, CriError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CriError::Internal(format!("blocking task failed: {e}")))?
}

/// A new random 64-hex-digit ID, as containerd and CRI-O hand out.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fills `buf` from the kernel's CSPRNG.
pub fn fill_random(buf: &mut [u8]) {
    use std::io::Read;
    // /dev/urandom never blocks after boot and is always there on Linux.
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("read /dev/urandom");
}

/// Unix nanoseconds now.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }

    #[tokio::test]
    async fn id_locks_serialise_one_key_not_others() {
        let locks = Arc::new(IdLocks::default());
        let held = locks.lock("pod/a").await;
        let other = tokio::time::timeout(std::time::Duration::from_millis(100), locks.lock("pod/b")).await;
        assert!(other.is_ok(), "another key must not wait");
        let same = tokio::time::timeout(std::time::Duration::from_millis(100), locks.lock("pod/a")).await;
        assert!(same.is_err(), "the same key must wait");
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(5), locks.lock("pod/a"))
            .await
            .unwrap();
    }
}
