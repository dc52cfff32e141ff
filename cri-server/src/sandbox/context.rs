//! What a container needs of its pod, for CreateContainer's spec builder
//! ([`crate::oci::container_spec`]): the pinned namespaces to join, the
//! pod's files to bind, its `/dev/shm`, cgroup parent and sysctls.

use std::collections::BTreeMap;

use crate::error::CriError;
use crate::oci::SandboxContext;
use crate::services::Services;
use crate::store::{PodRecord, PodState};

/// The context of `pod`'s containers. A pod that is not Ready takes no new
/// containers (FailedPrecondition naming it). Blocking: reads the engine's
/// pod record.
pub fn container_context(s: &Services, pod: &PodRecord) -> Result<SandboxContext, CriError> {
    if pod.state != PodState::Ready {
        return Err(CriError::FailedPrecondition(format!(
            "pod sandbox {} is not ready: stopped, or never finished starting",
            pod.id
        )));
    }
    let engine_pod = s.engine.pod_sandbox(&pod.id)?;
    let sysctls: BTreeMap<String, String> = pod
        .config
        .linux
        .as_ref()
        .map(|l| l.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(SandboxContext {
        id: pod.id.clone(),
        hostname: super::run::hostname_of(&pod.config)?,
        netns: pod.netns.clone(),
        ipcns: pod.ipcns.clone(),
        utsns: pod.utsns.clone(),
        pidns: pod.pidns.clone(),
        cgroup_parent: pod.cgroup_parent.clone(),
        resolv_conf: Some(pod.dir.join("resolv.conf")),
        hosts: pod.dir.join("hosts"),
        hostname_file: pod.dir.join("hostname"),
        shm: engine_pod.record.namespaces.shm,
        sysctls,
        config: pod.config.clone(),
    })
}
