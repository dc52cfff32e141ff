//! Restart recovery of the CRI layer: run once by berthd before it serves,
//! to make the store (what exists) and the engine and network (what runs)
//! agree again after a crash, SIGKILL or upgrade.
//!
//! What it assumes:
//! - Nothing else uses this root and state dir meanwhile (the instance
//!   locks are held) and no request is served yet.
//! - The store is the truth for *which pods exist*: a record is written
//!   before any engine or network step, and removed only after all of them
//!   are undone. So an engine pod without a record is a leftover of a
//!   RunPodSandbox that crashed before its record was written, or of a
//!   RemovePodSandbox that crashed after deleting it: it is torn down.
//! - The engine is the truth for *what runs*: `Engine::recover` has already
//!   removed half-created pods and containers and kept the rest. A record
//!   whose engine pod is gone (half-created, or lost with a reboot of the
//!   volatile state dir) is marked NotReady; the kubelet then stops and
//!   removes it through the CRI, which tolerates every missing part.
//! - A pod's network is torn down by its netns path; leftovers of pods the
//!   store no longer knows (veths, IPAM leases, CNI cache entries) are
//!   removed by `PodNetwork::cleanup_orphans` with the surviving IDs.
//! - Container records are reconciled by [`crate::container::recover`]
//!   (its own assumptions are written there), which the daemon runs just
//!   before this.
//!
//! Steps that fail are logged and skipped: a partially recovered node that
//! serves is better than one that does not start (every leftover can still
//! be removed through the CRI, or by the next start).

use std::collections::HashSet;
use std::sync::Arc;

use berth_runtime::sandbox::recover::PodVerdict;

use crate::error::CriError;
use crate::sandbox::network;
use crate::services::{self, Services};
use crate::store::PodState;

/// What recovery found and did, for the log and for tests.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Stored pods whose engine pod is gone, now NotReady.
    pub marked_not_ready: Vec<String>,
    /// Engine pods without a record, torn down.
    pub removed_orphans: Vec<String>,
    /// Steps that failed (recovery went on past them).
    pub errors: Vec<String>,
}

/// Reconcile the store with the engine and the network (see the module doc).
/// Only failing to read the engine's state at all is an error.
#[tracing::instrument(skip_all)]
pub async fn recover(s: &Arc<Services>) -> Result<Recovered, CriError> {
    let engine = s.engine.clone();
    let report = services::blocking(move || engine.recover().map_err(CriError::from)).await?;
    // Containers first: their records are brought up to date and
    // containers without one removed, before pods are judged.
    let mut out = Recovered {
        errors: report.errors.clone(),
        ..Recovered::default()
    };
    let engine_pods: HashSet<String> = report
        .pods
        .iter()
        .filter(|p| !matches!(p.verdict, PodVerdict::Cleaned { .. }))
        .map(|p| p.id.clone())
        .collect();

    for mut pod in s.store.pods() {
        if engine_pods.contains(&pod.id) || pod.state == PodState::NotReady {
            continue;
        }
        pod.state = PodState::NotReady;
        match s.store.update_pod(&pod) {
            Ok(()) => out.marked_not_ready.push(pod.id),
            Err(e) => out.errors.push(e.to_string()),
        }
    }

    for id in engine_pods.iter().filter(|id| s.store.pod(id).is_none()) {
        match remove_orphan(s, id).await {
            Ok(()) => out.removed_orphans.push(id.clone()),
            Err(e) => out.errors.push(format!("pod sandbox {id}: {e}")),
        }
    }

    let live: HashSet<String> = s.store.pods().into_iter().map(|p| p.id).collect();
    match s.network.cleanup_orphans(&live).await {
        Ok(orphans) => {
            if !orphans.pods.is_empty() {
                tracing::info!(pods = ?orphans.pods, "removed network leftovers of unknown pods");
            }
            out.errors.extend(orphans.failures);
        }
        Err(e) => out.errors.push(format!("network cleanup: {e}")),
    }

    tracing::info!(
        pods = live.len(),
        marked_not_ready = ?out.marked_not_ready,
        removed_orphans = ?out.removed_orphans,
        errors = ?out.errors,
        "restart recovery done"
    );
    Ok(out)
}

/// Tear down an engine pod the store does not know: its network (found by
/// its pinned netns), then the engine pod itself.
async fn remove_orphan(s: &Arc<Services>, id: &str) -> Result<(), CriError> {
    let (engine, engine_id) = (s.engine.clone(), id.to_string());
    let state = services::blocking(move || engine.pod_sandbox(&engine_id).map_err(CriError::from)).await?;
    if let Some(netns) = &state.record.namespaces.net {
        let req = berth_cni::PodNetworkRequest::new(id, netns);
        network::teardown(s.network.as_ref(), &req).await?;
    }
    let (engine, engine_id) = (s.engine.clone(), id.to_string());
    services::blocking(move || engine.remove_pod_sandbox(&engine_id).map_err(CriError::from)).await?;
    tracing::info!(pod_sandbox_id = %id, "removed a pod sandbox the store did not know");
    Ok(())
}
