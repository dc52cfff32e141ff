//! ContainerStats / ListContainerStats: CPU and memory from the
//! container's cgroup (through the engine), the writable layer's bytes and
//! inodes from `fs/upper`.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use k8s_cri::v1::{
    ContainerAttributes, ContainerStats, ContainerStatsRequest, ContainerStatsResponse, CpuUsage, FilesystemIdentifier,
    FilesystemUsage, ListContainerStatsRequest, ListContainerStatsResponse, MemoryUsage, UInt64Value,
};

use super::list::{refresh_all, select};
use super::{container_dir, record};
use crate::error::CriError;
use crate::services::{blocking, now_nanos, Services};
use crate::store::{ContainerRecord, ContainerState};

#[tracing::instrument(skip_all, fields(container_id = %request.container_id))]
pub async fn stats(s: &Arc<Services>, request: ContainerStatsRequest) -> Result<ContainerStatsResponse, CriError> {
    let rec = record(s, &request.container_id)?;
    let s = s.clone();
    let stats = blocking(move || Ok(container_stats(&s, &rec))).await?;
    Ok(ContainerStatsResponse { stats: Some(stats) })
}

#[tracing::instrument(skip_all)]
pub async fn list_stats(
    s: &Arc<Services>,
    request: ListContainerStatsRequest,
) -> Result<ListContainerStatsResponse, CriError> {
    let filter = request.filter.unwrap_or_default();
    let records = select(s, &filter.id, &filter.pod_sandbox_id, &filter.label_selector);
    // Like containerd: the containers that may use resources.
    let records: Vec<_> = refresh_all(s, records)
        .await?
        .into_iter()
        .filter(|r| matches!(r.state, ContainerState::Created | ContainerState::Running))
        .collect();
    let s = s.clone();
    let stats = blocking(move || Ok(records.iter().map(|r| container_stats(&s, r)).collect())).await?;
    Ok(ListContainerStatsResponse { stats })
}

fn container_stats(s: &Services, rec: &ContainerRecord) -> ContainerStats {
    let now = now_nanos();
    let cg = s.engine.stats(&rec.id).ok();
    let upper = container_dir(s, &rec.id).join("fs/upper");
    let (bytes, inodes) = usage(&upper);
    ContainerStats {
        attributes: Some(ContainerAttributes {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
        }),
        cpu: Some(CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: cg.and_then(|c| c.cpu_usage_ns).map(|value| UInt64Value { value }),
            usage_nano_cores: None,
        }),
        memory: Some(MemoryUsage {
            timestamp: now,
            working_set_bytes: cg
                .and_then(|c| c.memory_working_set_bytes)
                .map(|value| UInt64Value { value }),
            usage_bytes: cg.and_then(|c| c.memory_usage_bytes).map(|value| UInt64Value { value }),
            ..Default::default()
        }),
        writable_layer: Some(FilesystemUsage {
            timestamp: now,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: s.containers_dir.display().to_string(),
            }),
            used_bytes: Some(UInt64Value { value: bytes }),
            inodes_used: Some(UInt64Value { value: inodes }),
        }),
        swap: None,
    }
}

/// Allocated bytes (`st_blocks` × 512) and distinct inodes under `dir`,
/// the directory itself excluded; a hardlinked file counts once. Symlinks
/// are not followed.
pub(super) fn usage(dir: &Path) -> (u64, u64) {
    let mut seen = HashSet::new();
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if seen.insert((meta.dev(), meta.ino())) {
                bytes += meta.blocks() * 512;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    (bytes, seen.len() as u64)
}
