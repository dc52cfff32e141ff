//! RunPodSandbox: validate, reserve the name, then — in a task of its own
//! so that a client going away cannot stop it half-way — record, files,
//! engine pod (pinned namespaces, cgroup, pod init), network.
//!
//! ```text
//! validate ─► lock podname/<key> ─► name held? ─ same config, Ready ─► that pod's ID (kubelet retry)
//!                                        │        otherwise ──────────► AlreadyExists naming the holder
//!                                        ▼ free
//!             spawned: insert record{NotReady, namespace paths} ─► pod files ∥ engine pod
//!                      ─► network setup ─► record{Ready, IPs}
//!             any failure: network teardown, engine remove, files, record — in that order;
//!             a failing rollback leaves the record NotReady for RemovePodSandbox to finish.
//! ```
//!
//! The pod cgroup, with the pod's `resources` plus `overhead` as its limits:
//! `<linux.cgroup_parent>/<id>` when the kubelet (cgroupfs driver) names a
//! parent — where containerd puts its sandbox; the pod init and every
//! container (`<pod cgroup>/<container id>`) sit below it, so the kubelet's
//! pod cgroup holds and accounts all of the pod — else the engine's own
//! `<cgroup_prefix>/pods/<id>` (`Engine::pod_cgroup_path`). The parent is
//! the kubelet's: berth removes only what it created in it
//! (`berth_runtime::sandbox::cgroup`).

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_runtime::sandbox::{PinRequest, PodSandboxSpec};
use k8s_cri::v1::{
    LinuxContainerResources, NamespaceMode, PodSandboxConfig, RunPodSandboxRequest, RunPodSandboxResponse,
};
use oci_spec::runtime::LinuxResources;
use tracing::Instrument;

use super::files;
use super::network::{self, host_network, namespace_options, NETWORK_TIMEOUT};
use crate::error::CriError;
use crate::services::{self, Services};
use crate::store::{pod_name_key, PodRecord, PodState};

/// Runtime handlers berth serves: only the default one.
pub const DEFAULT_HANDLER: &str = "";

#[tracing::instrument(skip_all, fields(pod_sandbox_id = tracing::field::Empty, name_key = tracing::field::Empty))]
pub async fn run(s: &Arc<Services>, request: RunPodSandboxRequest) -> Result<RunPodSandboxResponse, CriError> {
    let config = validate(&request)?;
    if let Some(parent) = cgroup_parent(&config)? {
        berth_runtime::sandbox::cgroup::validate_parent(&parent, &s.engine.sandbox_paths().cgroup_prefix)
            .map_err(|reason| CriError::invalid(CGROUP_PARENT, reason))?;
    }
    let key = PodRecord::name_key_of(&config);
    tracing::Span::current().record("name_key", key.as_str());
    let guard = s.locks.lock(&format!("podname/{key}")).await;
    if let Some(id) = earlier_run(s, &key, &config, &request.runtime_handler)? {
        tracing::Span::current().record("pod_sandbox_id", id.as_str());
        tracing::info!("same RunPodSandbox again: answering with the pod the first call made");
        return Ok(RunPodSandboxResponse { pod_sandbox_id: id });
    }
    let task = {
        let s = s.clone();
        let handler = request.runtime_handler;
        tokio::spawn(
            async move {
                let _guard = guard;
                create(&s, key, config, handler).await
            }
            .in_current_span(),
        )
    };
    let id = task
        .await
        .map_err(|e| CriError::Internal(format!("RunPodSandbox task failed: {e}")))??;
    Ok(RunPodSandboxResponse { pod_sandbox_id: id })
}

/// Checks the request; returns its config.
pub fn validate(request: &RunPodSandboxRequest) -> Result<PodSandboxConfig, CriError> {
    if request.runtime_handler != DEFAULT_HANDLER {
        return Err(CriError::invalid(
            "runtime_handler",
            format!(
                "unknown runtime handler {:?}: berth serves only the default handler \"\"",
                request.runtime_handler
            ),
        ));
    }
    let config = request
        .config
        .clone()
        .ok_or_else(|| CriError::invalid("config", "must be set"))?;
    let meta = config
        .metadata
        .as_ref()
        .ok_or_else(|| CriError::invalid("config.metadata", "must be set"))?;
    for (field, value) in [
        ("config.metadata.name", &meta.name),
        ("config.metadata.namespace", &meta.namespace),
        ("config.metadata.uid", &meta.uid),
    ] {
        if value.is_empty() {
            return Err(CriError::invalid(field, "must not be empty"));
        }
    }
    if !config.hostname.is_empty() {
        files::validate_hostname(&config.hostname)?;
    }
    if !config.log_directory.is_empty() {
        validate_log_directory(&config.log_directory)?;
    }
    if let Some(dns) = &config.dns_config {
        files::resolv_conf(dns)?;
    }
    network::port_mappings(&config)?;
    cgroup_parent(&config)?;
    pin_request(&config, "")?;
    pod_resources(&config)?;
    Ok(config)
}

/// The pod holding `key`, when this request is a repeat of the one that made it.
fn earlier_run(s: &Services, key: &str, config: &PodSandboxConfig, handler: &str) -> Result<Option<String>, CriError> {
    let Some(holder) = s.store.name_holder(&pod_name_key(key))? else {
        return Ok(None);
    };
    match s.store.pod(&holder) {
        Some(pod) if pod.config == *config && pod.runtime_handler == handler && pod.state == PodState::Ready => {
            Ok(Some(holder))
        }
        Some(pod) => Err(CriError::AlreadyExists(format!(
            "pod sandbox name {key:?} is reserved by pod sandbox {holder} ({}); remove it first",
            if pod.state == PodState::Ready {
                "with a different config"
            } else {
                "not ready"
            }
        ))),
        None => Err(CriError::AlreadyExists(format!(
            "pod sandbox name {key:?} is reserved by pod sandbox {holder}"
        ))),
    }
}

/// What a failed run has to undo, in the order it was done.
#[derive(Default)]
struct Done {
    dir: bool,
    engine: bool,
    network: bool,
}

async fn create(s: &Arc<Services>, key: String, config: PodSandboxConfig, handler: String) -> Result<String, CriError> {
    let id = services::new_id();
    tracing::Span::current().record("pod_sandbox_id", id.as_str());
    let pod_cgroup = match cgroup_parent(&config)? {
        Some(parent) => parent.join(&id),
        None => s.engine.pod_cgroup_path(&id),
    };
    // The namespace paths are known before the engine makes them: recorded
    // with the first commit, a crash or failed rollback from any later step
    // leaves what RemovePodSandbox needs (the netns path for the network
    // teardown, which tolerates a netns that was never made).
    let planned = s.engine.planned_pod_namespaces(&id, &pin_request(&config, "")?)?;
    let mut pod = PodRecord {
        name_key: key,
        dir: s.pods_dir.join(&id),
        cgroup_parent: pod_cgroup.to_string_lossy().into_owned(),
        id,
        config,
        runtime_handler: handler,
        state: PodState::NotReady,
        created_at: services::now_nanos(),
        netns: planned.net,
        ipcns: planned.ipc,
        utsns: planned.uts,
        pidns: planned.pid,
        ips: Vec::new(),
        network: None,
    };
    s.store.insert_pod(&pod)?;
    let mut done = Done::default();
    match set_up(s, &mut pod, &mut done).await {
        Ok(()) => {
            tracing::info!(ips = ?pod.ips, network = ?pod.network, "pod sandbox ready");
            Ok(pod.id)
        }
        Err(e) => {
            tracing::warn!(error = %e, "RunPodSandbox failed; rolling back");
            let cleanup = roll_back(s, &pod, &done).await;
            if let Err(c) = &cleanup {
                tracing::error!(error = %c, "rollback failed: the pod stays NotReady for RemovePodSandbox");
            }
            Err(e.with_cleanup(cleanup))
        }
    }
}

async fn set_up(s: &Arc<Services>, pod: &mut PodRecord, done: &mut Done) -> Result<(), CriError> {
    let host_net = host_network(&pod.config);
    let hostname = hostname_of(&pod.config)?;

    let spec = PodSandboxSpec {
        id: pod.id.clone(),
        namespaces: pin_request(&pod.config, &hostname)?,
        resources: pod_resources(&pod.config)?,
        cgroup_parent: cgroup_parent(&pod.config)?,
    };
    // The pod's files and the engine pod are independent of each other.
    done.dir = true;
    done.engine = true;
    let (dir, dns, host_files) = (pod.dir.clone(), pod.config.dns_config.clone(), s.host_files.clone());
    let name = hostname.clone();
    let written = services::blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| CriError::Internal(format!("create {}: {e}", dir.display())))?;
        files::write_pod_files(&dir, &name, dns.as_ref(), host_net, &host_files).map(drop)
    });
    let engine = s.engine.clone();
    let made = services::blocking(move || engine.run_pod_sandbox(&spec).map_err(CriError::from));
    let (written, made) = tokio::join!(written, made);
    let made = made?;
    written?;
    let recorded = (
        pod.netns.clone(),
        pod.ipcns.clone(),
        pod.utsns.clone(),
        pod.pidns.clone(),
    );
    pod.netns = made.namespaces.net;
    pod.ipcns = made.namespaces.ipc;
    pod.utsns = made.namespaces.uts;
    pod.pidns = made.namespaces.pid;
    let cgroup_parent = made.cgroup_path.to_string_lossy().into_owned();
    let moved = recorded
        != (
            pod.netns.clone(),
            pod.ipcns.clone(),
            pod.utsns.clone(),
            pod.pidns.clone(),
        )
        || cgroup_parent != pod.cgroup_parent;
    pod.cgroup_parent = cgroup_parent;
    if moved {
        // Not what was planned (recorded): record the real paths before
        // the network is set up.
        s.store.update_pod(pod)?;
    }

    if let Some(req) = network::request_of(pod)? {
        done.network = true;
        let result = match tokio::time::timeout(NETWORK_TIMEOUT, s.network.setup(&req)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(CriError::Internal(format!(
                    "pod network setup timed out after {}s",
                    NETWORK_TIMEOUT.as_secs()
                )))
            }
        };
        pod.ips = result.pod_ips().iter().map(|ip| ip.to_string()).collect();
        pod.network = Some(result.network);
    }
    pod.state = PodState::Ready;
    s.store.update_pod(pod)?;
    Ok(())
}

/// Undo what `done` says was started, last first. Every step runs; their
/// failures are kept together. The record goes only when everything else did.
async fn roll_back(s: &Arc<Services>, pod: &PodRecord, done: &Done) -> Result<(), CriError> {
    let mut failed: Option<CriError> = None;
    let mut keep = |r: Result<(), CriError>| {
        if let Err(e) = r {
            failed = Some(match failed.take() {
                None => e,
                Some(first) => first.with_cleanup(Err(e)),
            });
        }
    };
    if done.network {
        if let Ok(Some(req)) = network::request_of(pod) {
            keep(network::teardown(s.network.as_ref(), &req).await);
        }
    }
    if done.engine {
        let (engine, id) = (s.engine.clone(), pod.id.clone());
        keep(services::blocking(move || engine.remove_pod_sandbox(&id).map_err(CriError::from)).await);
    }
    if done.dir {
        keep(remove_dir(&pod.dir).await);
    }
    match failed {
        Some(e) => Err(e),
        None => s.store.delete_pod(&pod.id).map_err(CriError::from),
    }
}

/// Remove a pod's files dir; absent is fine.
pub async fn remove_dir(dir: &std::path::Path) -> Result<(), CriError> {
    let dir = dir.to_path_buf();
    services::blocking(move || match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CriError::Internal(format!("remove {}: {e}", dir.display()))),
    })
    .await
}

const CGROUP_PARENT: &str = "config.linux.cgroup_parent";

/// Longest `linux.cgroup_parent` accepted, in bytes.
pub const MAX_CGROUP_PARENT: usize = 2048;

/// The kubelet's `linux.cgroup_parent` (cgroupfs driver), checked: an
/// absolute, clean path (no empty, `.` or `..` components, no trailing
/// `/`), below the root, without NUL, control characters or `:` (the
/// systemd driver's `slice:prefix:name` form), at most
/// [`MAX_CGROUP_PARENT`] bytes with components of at most 255. `None`
/// when unset (empty).
pub fn cgroup_parent(config: &PodSandboxConfig) -> Result<Option<std::path::PathBuf>, CriError> {
    let Some(parent) = config.linux.as_ref().map(|l| l.cgroup_parent.as_str()) else {
        return Ok(None);
    };
    if parent.is_empty() {
        return Ok(None);
    }
    let bad = |reason: &str| Err(CriError::invalid(CGROUP_PARENT, format!("{parent:?}: {reason}")));
    if parent.len() > MAX_CGROUP_PARENT {
        return bad(&format!("longer than {MAX_CGROUP_PARENT} bytes"));
    }
    if parent.chars().any(char::is_control) {
        return bad("contains NUL or control characters");
    }
    if parent.contains(':') {
        return bad("a systemd slice:prefix:name path: berth uses the cgroupfs driver");
    }
    let Some(rest) = parent.strip_prefix('/') else {
        return bad("must be an absolute cgroup path");
    };
    if rest.is_empty() {
        return bad("names the root cgroup");
    }
    for part in rest.split('/') {
        match part {
            "" => return bad("has an empty path component"),
            "." | ".." => return bad("has a '.' or '..' component"),
            p if p.len() > 255 => return bad("has a component longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(Some(std::path::PathBuf::from(parent)))
}

/// The pod's hostname: the kubelet's, else the node's.
pub(crate) fn hostname_of(config: &PodSandboxConfig) -> Result<String, CriError> {
    if !config.hostname.is_empty() && !host_network(config) {
        return Ok(config.hostname.clone());
    }
    nix::unistd::gethostname()
        .map_err(|e| CriError::Internal(format!("read the node's hostname: {e}")))
        .map(|h| h.to_string_lossy().into_owned())
}

/// Which namespaces the pod pins, from `linux.security_context.namespace_options`:
///
/// | option | POD | CONTAINER | NODE |
/// |--------|-----|-----------|------|
/// | network | pinned netns + UTS | same as POD | host network and UTS |
/// | ipc | pinned IPC + /dev/shm | same as POD | host IPC |
/// | pid | shared PID ns with a pod init | none at pod level | host PID (containers) |
pub fn pin_request(config: &PodSandboxConfig, hostname: &str) -> Result<PinRequest, CriError> {
    let opts = namespace_options(config).cloned().unwrap_or_default();
    let mode = |value: i32, field: &'static str| {
        NamespaceMode::try_from(value).map_err(|_| CriError::invalid(field, format!("unknown namespace mode {value}")))
    };
    let net = mode(opts.network, "config.linux.security_context.namespace_options.network")?;
    let ipc = mode(opts.ipc, "config.linux.security_context.namespace_options.ipc")?;
    let pid = mode(opts.pid, "config.linux.security_context.namespace_options.pid")?;
    for (m, field) in [
        (net, "config.linux.security_context.namespace_options.network"),
        (ipc, "config.linux.security_context.namespace_options.ipc"),
    ] {
        if m == NamespaceMode::Target {
            return Err(CriError::invalid(
                field,
                "TARGET is only valid for a container's PID namespace",
            ));
        }
    }
    if pid == NamespaceMode::Target {
        return Err(CriError::invalid(
            "config.linux.security_context.namespace_options.pid",
            "TARGET is only valid for a container's PID namespace",
        ));
    }
    if let Some(userns) = &opts.userns_options {
        if userns.mode != NamespaceMode::Node as i32 {
            return Err(CriError::invalid(
                "config.linux.security_context.namespace_options.userns_options",
                "pod user namespaces are not supported by berth yet: use mode NODE",
            ));
        }
    }
    let own_net = net != NamespaceMode::Node;
    let sysctls: BTreeMap<String, String> = config
        .linux
        .as_ref()
        .map(|l| l.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(PinRequest {
        net: own_net,
        ipc: ipc != NamespaceMode::Node,
        uts: own_net,
        pid: pid == NamespaceMode::Pod,
        hostname: (own_net && !hostname.is_empty()).then(|| hostname.to_string()),
        sysctls,
        shm_size_bytes: None,
    })
}

/// The pod cgroup's limits: `resources` (the sum of the containers') plus
/// `overhead`. A zero in `resources` means unlimited and stays so.
pub fn pod_resources(config: &PodSandboxConfig) -> Result<Option<LinuxResources>, CriError> {
    let Some(linux) = &config.linux else { return Ok(None) };
    let total = match (&linux.resources, &linux.overhead) {
        (None, None) => return Ok(None),
        (Some(r), None) | (None, Some(r)) => r.clone(),
        (Some(r), Some(o)) => add_overhead(r, o),
    };
    crate::oci::linux_resources(&total).map(Some)
}

fn add_overhead(r: &LinuxContainerResources, o: &LinuxContainerResources) -> LinuxContainerResources {
    let sum = |a: i64, b: i64| if a > 0 && b > 0 { a.saturating_add(b) } else { a };
    let mut t = r.clone();
    t.cpu_quota = sum(r.cpu_quota, o.cpu_quota);
    t.cpu_shares = sum(r.cpu_shares, o.cpu_shares);
    t.memory_limit_in_bytes = sum(r.memory_limit_in_bytes, o.memory_limit_in_bytes);
    t.memory_swap_limit_in_bytes = if r.memory_swap_limit_in_bytes > 0 && o.memory_swap_limit_in_bytes > 0 {
        r.memory_swap_limit_in_bytes
            .saturating_add(o.memory_swap_limit_in_bytes)
    } else {
        0
    };
    t
}

/// The pod's log directory: absolute, no `..` (a log written outside the
/// directory the caller named), no NUL.
fn validate_log_directory(dir: &str) -> Result<(), CriError> {
    use std::path::{Component, Path};
    let path = Path::new(dir);
    if !path.is_absolute() {
        return Err(CriError::invalid(
            "config.log_directory",
            format!("{dir:?} is not an absolute path"),
        ));
    }
    if dir.contains('\0') || path.components().any(|c| c == Component::ParentDir) {
        return Err(CriError::invalid(
            "config.log_directory",
            format!("{dir:?} must not contain '..' components or NUL"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod log_directory_tests {
    use super::validate_log_directory;

    #[test]
    fn a_log_directory_must_stay_where_it_says() {
        assert!(validate_log_directory("/var/log/pods/ns_pod_uid").is_ok());
        for bad in ["/x/logs/ld/../../../elsewhere", "relative/dir", "/x/..", "/x/\0y"] {
            let e = validate_log_directory(bad).unwrap_err().to_string();
            assert!(e.contains("config.log_directory"), "{bad}: {e}");
        }
    }
}
