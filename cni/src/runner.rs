//! The CNI runner: ADD/DEL/CHECK of a config list's plugin chain.
//!
//! - ADD runs the plugins in order, each getting the previous one's result as
//!   `prevResult`; the final result is cached (see [`crate::cache`]). A failed ADD
//!   is rolled back with a DEL of the whole chain.
//! - DEL runs the plugins in reverse with the cached config and result, so it
//!   works after a restart and after the conf dir changed. A gone netns is passed
//!   as an empty `CNI_NETNS`; a plugin binary that disappeared, or a plugin
//!   answering "container unknown" (code 3), does not fail it.
//! - CHECK is skipped for lists older than 0.4.0, lists with `disableCheck`, and
//!   plugins whose `VERSION` answer does not include the list's version.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::json;
use tracing::Instrument;

use crate::args::{format_args, pod_args};
use crate::cache::{CacheEntry, ResultCache};
use crate::config::{CapabilityArgs, ConfigError, ConfigLoader, NetworkConfigList};
use crate::error::{Error, Result};
use crate::exec::{CniCommand, ExecError, InvokeEnv, PluginExec};
use crate::result::{CniResult, ErrorObject, VersionInfo};
use crate::types::{NetworkStatus, OrphanReport, PodNetworkRequest, PodNetworkResult};
use crate::version::CniVersion;
use crate::{validate_request, PodNetwork};

/// Where the runner finds configs and plugins and keeps its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniRunnerConfig {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    /// Cache root, e.g. `<state>/cni-cache`.
    pub cache_dir: PathBuf,
    /// How long one plugin invocation may take before it is killed.
    pub plugin_timeout: Duration,
}

impl Default for CniRunnerConfig {
    fn default() -> Self {
        CniRunnerConfig {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            cache_dir: "/run/berth/cni-cache".into(),
            plugin_timeout: Duration::from_secs(60),
        }
    }
}

/// Runs CNI plugin chains for pods.
#[derive(Debug)]
pub struct CniRunner {
    loader: ConfigLoader,
    exec: PluginExec,
    cache: ResultCache,
    versions: Mutex<HashMap<PathBuf, (SystemTime, VersionInfo)>>,
}

/// What a teardown request overrides in a cached entry.
struct DelOverride<'a> {
    req: &'a PodNetworkRequest,
    args: &'a [(String, String)],
    caps: &'a CapabilityArgs,
}

/// The per-call parameters of one chain run.
struct Invocation<'a> {
    env: InvokeEnv,
    caps: &'a CapabilityArgs,
}

impl CniRunner {
    pub fn new(config: CniRunnerConfig) -> Self {
        CniRunner {
            loader: ConfigLoader::new(config.conf_dir),
            exec: PluginExec::new(config.bin_dirs, config.plugin_timeout),
            cache: ResultCache::new(config.cache_dir),
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// The config list currently in force (re-read when the conf dir changes).
    pub fn config(&self) -> Result<Arc<NetworkConfigList>, ConfigError> {
        self.loader.load()
    }

    /// Whether the conf dir holds a usable config.
    pub fn has_config(&self) -> bool {
        self.loader.load().is_ok()
    }

    /// Whether an ADD for this pod and interface is cached (i.e. CNI set it up).
    pub fn has_cached(&self, pod_id: &str, ifname: &str) -> bool {
        self.cache.find(pod_id, ifname).is_ok_and(|e| !e.is_empty())
    }

    /// The cache this runner writes.
    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// Asks a plugin which spec versions it speaks (cached per binary and mtime).
    pub async fn plugin_versions(&self, list: &NetworkConfigList, plugin: &str) -> Result<VersionInfo> {
        let exec_err = |source| Error::Exec {
            network: list.name.clone(),
            source,
        };
        let path = self.exec.find(plugin).map_err(exec_err)?;
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some((seen, info)) = self.versions.lock().unwrap_or_else(|p| p.into_inner()).get(&path) {
            if *seen == mtime {
                return Ok(info.clone());
            }
        }
        let stdin = serde_json::to_vec(&json!({ "cniVersion": list.cni_version })).unwrap_or_default();
        let info = match self
            .exec
            .run(plugin, &path, CniCommand::Version, &InvokeEnv::default(), &stdin)
            .await
        {
            Ok(out) => serde_json::from_slice::<VersionInfo>(&out).unwrap_or_else(|_| VersionInfo::legacy()),
            // Plugins older than VERSION fail it; they speak 0.1.0/0.2.0 only.
            Err(ExecError::Plugin { .. } | ExecError::Failed { .. }) => VersionInfo::legacy(),
            Err(e) => return Err(exec_err(e)),
        };
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path, (mtime, info.clone()));
        Ok(info)
    }

    async fn setup_inner(&self, req: &PodNetworkRequest) -> Result<PodNetworkResult> {
        validate_request(req)?;
        let list = self.loader.load()?;
        let args = pod_args(req)?;
        let caps = capability_args(req);
        let inv = Invocation {
            env: env_for(req, &args, true),
            caps: &caps,
        };
        // Every binary must exist before anything is changed (and rolled back).
        let paths = list
            .plugins
            .iter()
            .map(|p| self.exec.find(&p.plugin_type))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Exec {
                network: list.name.clone(),
                source,
            })?;
        let mut partial = None;
        let added = self.add_chain(&list, &inv, &paths, &mut partial).await;
        let result = match added {
            Ok(result) => result,
            Err(primary) => return Err(self.rollback(&list, &inv, partial.as_ref(), primary).await),
        };
        let mut entry = CacheEntry::new(
            &req.pod_id,
            &req.ifname,
            &list.name,
            list.raw.clone(),
            result.to_value(&list.cni_version),
        );
        entry.netns = req.netns.display().to_string();
        entry.cni_args = args;
        entry.capability_args = caps.clone();
        if let Err(e) = self.cache.save(&entry) {
            return Err(self.rollback(&list, &inv, Some(&result), e.into()).await);
        }
        tracing::info!(ips = ?result.pod_ips(), "CNI ADD done");
        Ok(PodNetworkResult {
            network: list.name.clone(),
            result,
        })
    }

    async fn rollback(
        &self,
        list: &NetworkConfigList,
        inv: &Invocation<'_>,
        partial: Option<&CniResult>,
        primary: Error,
    ) -> Error {
        tracing::warn!(error = %primary, "CNI ADD failed; rolling back with DEL");
        match self.del_chain(list, inv, partial).await {
            Ok(()) => primary,
            Err(rollback) => Error::Rollback {
                primary: Box::new(primary),
                rollback: Box::new(rollback),
            },
        }
    }

    /// Runs ADD through the chain. `partial` holds the last successful result.
    async fn add_chain(
        &self,
        list: &NetworkConfigList,
        inv: &Invocation<'_>,
        paths: &[PathBuf],
        partial: &mut Option<CniResult>,
    ) -> Result<CniResult> {
        let exec_err = |source| Error::Exec {
            network: list.name.clone(),
            source,
        };
        for (i, (plugin, path)) in list.plugins.iter().zip(paths).enumerate() {
            let stdin = serde_json::to_vec(&list.plugin_stdin(i, partial.as_ref(), inv.caps)).unwrap_or_default();
            let out = self
                .exec
                .run(&plugin.plugin_type, path, CniCommand::Add, &inv.env, &stdin)
                .await
                .map_err(exec_err)?;
            let result = CniResult::parse(&out, &list.cni_version).map_err(|source| Error::Result {
                network: list.name.clone(),
                plugin: plugin.plugin_type.clone(),
                command: CniCommand::Add,
                source,
            })?;
            *partial = Some(result);
        }
        partial
            .clone()
            .ok_or_else(|| Error::InvalidRequest(format!("network {} has no plugins", list.name)))
    }

    /// Runs DEL through the chain in reverse. Keeps going after a failure so
    /// every plugin gets its chance to clean up; returns the first error.
    async fn del_chain(&self, list: &NetworkConfigList, inv: &Invocation<'_>, prev: Option<&CniResult>) -> Result<()> {
        let mut first_err = None;
        for (i, plugin) in list.plugins.iter().enumerate().rev() {
            let path = match self.exec.find(&plugin.plugin_type) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping DEL of missing CNI plugin");
                    continue;
                }
            };
            let stdin = serde_json::to_vec(&list.plugin_stdin(i, prev, inv.caps)).unwrap_or_default();
            match self
                .exec
                .run(&plugin.plugin_type, &path, CniCommand::Del, &inv.env, &stdin)
                .await
            {
                Ok(_) => {}
                Err(e)
                    if e.error_object()
                        .is_some_and(|o| o.code == ErrorObject::CONTAINER_UNKNOWN) =>
                {
                    tracing::debug!(error = %e, "CNI DEL: container already unknown to plugin");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "CNI DEL failed");
                    first_err.get_or_insert(Error::Exec {
                        network: list.name.clone(),
                        source: e,
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn teardown_inner(&self, req: &PodNetworkRequest) -> Result<()> {
        validate_request(req)?;
        let args = pod_args(req)?;
        let caps = capability_args(req);
        let entries = self.cache.find(&req.pod_id, &req.ifname)?;
        if entries.is_empty() {
            // Nothing cached: maybe ADD never finished. DEL with the current config.
            let list = match self.loader.load() {
                Ok(list) => list,
                Err(ConfigError::NoConfig { .. }) => {
                    tracing::debug!("no cached CNI result and no config; nothing to tear down");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let inv = Invocation {
                env: env_for(req, &args, false),
                caps: &caps,
            };
            return self.del_chain(&list, &inv, None).await;
        }
        for (path, entry) in entries {
            self.del_cached(
                &path,
                &entry,
                Some(DelOverride {
                    req,
                    args: &args,
                    caps: &caps,
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// DEL from a cache entry, then drop the entry. `req` overrides the cached
    /// args and capability args when it carries them.
    async fn del_cached(&self, path: &Path, entry: &CacheEntry, req: Option<DelOverride<'_>>) -> Result<()> {
        let list = match NetworkConfigList::from_list(path, entry.config.clone()) {
            Ok(list) => list,
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "cached CNI config unusable; using the current config");
                (*self.loader.load()?).clone()
            }
        };
        let prev = match CniResult::from_value(entry.result.clone(), &list.cni_version) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cached CNI result unusable; DEL without prevResult");
                None
            }
        };
        let (env, caps) = match req {
            Some(DelOverride { req, args, caps }) => {
                let args = if req.pod_name.is_empty() && !entry.cni_args.is_empty() {
                    &entry.cni_args[..]
                } else {
                    args
                };
                let caps = if caps.is_empty() { &entry.capability_args } else { caps };
                (env_for(req, args, false), caps)
            }
            None => {
                let netns = if !entry.netns.is_empty() && Path::new(&entry.netns).exists() {
                    entry.netns.clone()
                } else {
                    String::new()
                };
                let env = InvokeEnv {
                    container_id: entry.container_id.clone(),
                    netns,
                    ifname: entry.if_name.clone(),
                    args: format_args(&entry.cni_args),
                };
                (env, &entry.capability_args)
            }
        };
        let inv = Invocation { env, caps };
        self.del_chain(&list, &inv, prev.as_ref()).await?;
        self.cache.remove(path)?;
        tracing::info!(network = %list.name, "CNI DEL done");
        Ok(())
    }

    async fn check_inner(&self, req: &PodNetworkRequest) -> Result<()> {
        validate_request(req)?;
        let list = self.loader.load()?;
        if list.version() < CniVersion::V0_4_0 {
            tracing::debug!(version = %list.cni_version, "CNI CHECK skipped: config older than 0.4.0");
            return Ok(());
        }
        if list.disable_check {
            tracing::debug!("CNI CHECK skipped: disableCheck");
            return Ok(());
        }
        let no_cache = || Error::NoCachedResult {
            network: list.name.clone(),
            pod_id: req.pod_id.clone(),
            ifname: req.ifname.clone(),
        };
        let entry = self
            .cache
            .load(&list.name, &req.pod_id, &req.ifname)?
            .ok_or_else(no_cache)?;
        let prev = CniResult::from_value(entry.result, &list.cni_version).map_err(|source| Error::Result {
            network: list.name.clone(),
            plugin: "cache".into(),
            command: CniCommand::Check,
            source,
        })?;
        let args = pod_args(req)?;
        let caps = capability_args(req);
        let caps = if caps.is_empty() { entry.capability_args } else { caps };
        let env = env_for(req, &args, true);
        for (i, plugin) in list.plugins.iter().enumerate() {
            let versions = self.plugin_versions(&list, &plugin.plugin_type).await?;
            if !versions.supports(&list.cni_version) {
                tracing::debug!(plugin = %plugin.plugin_type, "CNI CHECK skipped: plugin does not speak {}", list.cni_version);
                continue;
            }
            let exec_err = |source| Error::Exec {
                network: list.name.clone(),
                source,
            };
            let path = self.exec.find(&plugin.plugin_type).map_err(exec_err)?;
            let stdin = serde_json::to_vec(&list.plugin_stdin(i, Some(&prev), &caps)).unwrap_or_default();
            self.exec
                .run(&plugin.plugin_type, &path, CniCommand::Check, &env, &stdin)
                .await
                .map_err(exec_err)?;
        }
        Ok(())
    }

    fn status_inner(&self) -> NetworkStatus {
        let list = match self.loader.load() {
            Ok(list) => list,
            Err(e) => return NetworkStatus::not_ready(e.to_string()),
        };
        for plugin in &list.plugins {
            if let Err(e) = self.exec.find(&plugin.plugin_type) {
                return NetworkStatus::not_ready(format!("network {}: {e}", list.name));
            }
        }
        NetworkStatus::ready(list.name.clone())
    }

    async fn cleanup_inner(&self, live: &HashSet<String>) -> Result<OrphanReport> {
        let mut report = OrphanReport::default();
        for (path, entry) in self.cache.list()? {
            if live.contains(&entry.container_id) {
                continue;
            }
            let span = tracing::info_span!("cni_orphan", pod_id = %entry.container_id);
            match self.del_cached(&path, &entry, None).instrument(span).await {
                Ok(()) => report.pods.push(entry.container_id.clone()),
                Err(e) => report.failures.push(format!("pod {}: {e}", entry.container_id)),
            }
        }
        Ok(report)
    }
}

/// The capability args a request carries (only those set).
pub fn capability_args(req: &PodNetworkRequest) -> CapabilityArgs {
    let mut caps = CapabilityArgs::new();
    if !req.port_mappings.is_empty() {
        caps.insert("portMappings".into(), json!(req.port_mappings));
    }
    if let Some(bw) = &req.bandwidth {
        caps.insert("bandwidth".into(), json!(bw));
    }
    if let Some(dns) = &req.dns {
        caps.insert("dns".into(), json!(dns));
    }
    if !req.ip_ranges.is_empty() {
        caps.insert("ipRanges".into(), json!(req.ip_ranges));
    }
    caps
}

/// The `CNI_*` environment. For DEL a netns that no longer exists is passed empty.
fn env_for(req: &PodNetworkRequest, args: &[(String, String)], netns_required: bool) -> InvokeEnv {
    let netns = if netns_required || req.netns.exists() {
        req.netns.display().to_string()
    } else {
        String::new()
    };
    InvokeEnv {
        container_id: req.pod_id.clone(),
        netns,
        ifname: req.ifname.clone(),
        args: format_args(args),
    }
}

impl PodNetwork for CniRunner {
    fn setup<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<PodNetworkResult>> {
        let span = tracing::info_span!("cni_setup", pod_id = %req.pod_id);
        self.setup_inner(req).instrument(span).boxed()
    }

    fn teardown<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<()>> {
        let span = tracing::info_span!("cni_teardown", pod_id = %req.pod_id);
        self.teardown_inner(req).instrument(span).boxed()
    }

    fn check<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<()>> {
        let span = tracing::info_span!("cni_check", pod_id = %req.pod_id);
        self.check_inner(req).instrument(span).boxed()
    }

    fn status(&self) -> BoxFuture<'_, NetworkStatus> {
        let status = self.status_inner();
        async move { status }.boxed()
    }

    fn cleanup_orphans<'a>(&'a self, live_pod_ids: &'a HashSet<String>) -> BoxFuture<'a, Result<OrphanReport>> {
        self.cleanup_inner(live_pod_ids).boxed()
    }
}
