//! Pull progress: the CRI `PullImage` call has no progress of its own, so the
//! image service publishes per-layer byte counts here and `cri-server` streams
//! them to `berthctl pull` over its introspection service.

use serde::{Deserialize, Serialize};

/// Where one layer (or the config blob) of a pull stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerState {
    Waiting,
    Downloading,
    Unpacking,
    /// Already present in the store: nothing to download.
    Exists,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerProgress {
    /// Compressed blob digest (`sha256:…`).
    pub digest: String,
    pub total_bytes: u64,
    pub downloaded_bytes: u64,
    pub state: LayerState,
}

/// A snapshot of one pull, published on every state change and at most every
/// ~100 ms while bytes arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    /// The normalised reference being pulled.
    pub reference: String,
    pub layers: Vec<LayerProgress>,
    /// Set on the last event of a pull.
    pub finished: bool,
    /// Set when the pull failed.
    pub error: Option<String>,
}
