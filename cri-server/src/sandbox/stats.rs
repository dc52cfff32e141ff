//! PodSandboxStats and ListPodSandboxStats: usage of the pod cgroup (its
//! containers included) from the engine. Network usage is not reported
//! (the field stays unset); per-container stats are ContainerStats' job.

use std::sync::Arc;

use berth_runtime::cgroups::CgroupStats;
use k8s_cri::v1::{
    CpuUsage, LinuxPodSandboxStats, ListPodSandboxStatsRequest, ListPodSandboxStatsResponse, MemoryUsage,
    PodSandboxAttributes, PodSandboxStats, PodSandboxStatsRequest, PodSandboxStatsResponse, ProcessUsage, UInt64Value,
};

use crate::error::CriError;
use crate::services::{self, Services};
use crate::store::PodRecord;

#[tracing::instrument(skip_all, fields(pod_sandbox_id = %request.pod_sandbox_id))]
pub async fn stats(s: &Arc<Services>, request: PodSandboxStatsRequest) -> Result<PodSandboxStatsResponse, CriError> {
    let pod = super::get(s, &request.pod_sandbox_id)?;
    let s = s.clone();
    let stats = services::blocking(move || {
        let usage = s.engine.pod_sandbox_stats(&pod.id)?;
        Ok(pod_stats(&pod, &usage, services::now_nanos()))
    })
    .await?;
    Ok(PodSandboxStatsResponse { stats: Some(stats) })
}

#[tracing::instrument(skip_all)]
pub async fn list_stats(
    s: &Arc<Services>,
    request: ListPodSandboxStatsRequest,
) -> Result<ListPodSandboxStatsResponse, CriError> {
    let filter = request.filter.unwrap_or_default();
    let pods: Vec<PodRecord> = s
        .store
        .pods()
        .into_iter()
        .filter(|p| p.id.starts_with(&filter.id) && super::labels_match(&p.config.labels, &filter.label_selector))
        .collect();
    let s = s.clone();
    let stats = services::blocking(move || {
        Ok(pods
            .iter()
            .filter_map(|pod| match s.engine.pod_sandbox_stats(&pod.id) {
                Ok(usage) => Some(pod_stats(pod, &usage, services::now_nanos())),
                Err(e) => {
                    // A pod being removed, or one lost in a crash: not listed.
                    tracing::debug!(pod_sandbox_id = %pod.id, error = %e, "no stats");
                    None
                }
            })
            .collect())
    })
    .await?;
    Ok(ListPodSandboxStatsResponse { stats })
}

pub fn pod_stats(pod: &PodRecord, usage: &CgroupStats, timestamp: i64) -> PodSandboxStats {
    let value = |v: Option<u64>| v.map(|value| UInt64Value { value });
    PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: pod.id.clone(),
            metadata: pod.config.metadata.clone(),
            labels: pod.config.labels.clone(),
            annotations: pod.config.annotations.clone(),
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu: Some(CpuUsage {
                timestamp,
                usage_core_nano_seconds: value(usage.cpu_usage_ns),
                usage_nano_cores: None,
            }),
            memory: Some(MemoryUsage {
                timestamp,
                working_set_bytes: value(usage.memory_working_set_bytes),
                available_bytes: value(
                    usage
                        .memory_limit_bytes
                        .zip(usage.memory_working_set_bytes)
                        .map(|(limit, ws)| limit.saturating_sub(ws)),
                ),
                usage_bytes: value(usage.memory_usage_bytes),
                ..Default::default()
            }),
            network: None,
            process: Some(ProcessUsage {
                timestamp,
                process_count: value(usage.pids_current),
            }),
            containers: Vec::new(),
        }),
        windows: None,
    }
}
