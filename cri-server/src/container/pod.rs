//! What pod calls and berthd's start need of containers: stop or remove
//! every container of a pod, and reconcile records with the engine after
//! a restart.
//!
//! # What restart recovery assumes
//!
//! - A record exists iff CreateContainer finished (the record is written
//!   after the engine created the container, and removed last).
//! - The engine's state dir tells what runs: a live monitor is a live
//!   container; an exit that happened while berthd was down is in its exit
//!   record. Records are refreshed from it (see [`super::refresh`]); one the
//!   engine lost (state dir gone with a reboot) becomes Exited, reason
//!   `Unknown`.
//! - An engine container or a `<root>/containers/<id>` dir without a
//!   record is a CreateContainer cut short by the crash: both are removed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use super::create::{creating_layers, remove_dir};
use super::list::refresh_all;
use super::remove::remove_one;
use super::stop::stop_one;
use crate::error::CriError;
use crate::services::{blocking, Services};

/// Stop every container of a pod (StopPodSandbox): stop signal, `timeout`, then kill.
#[tracing::instrument(skip(s))]
pub async fn stop_all_in_pod(s: &Arc<Services>, pod_id: &str, timeout: Duration) -> Result<(), CriError> {
    let ids: Vec<String> = s.store.containers_of(pod_id).into_iter().map(|c| c.id).collect();
    let results = join_all(ids.iter().map(|id| {
        let (s, id) = (s.clone(), id.clone());
        super::detached(async move { stop_one(&s, &id, timeout).await.map(drop) })
    }))
    .await;
    results.into_iter().collect()
}

/// Remove every container of a pod (RemovePodSandbox), stopping running ones.
#[tracing::instrument(skip(s))]
pub async fn remove_all_in_pod(s: &Arc<Services>, pod_id: &str) -> Result<(), CriError> {
    let ids: Vec<String> = s.store.containers_of(pod_id).into_iter().map(|c| c.id).collect();
    let results = join_all(ids.iter().map(|id| {
        let (s, id) = (s.clone(), id.clone());
        super::detached(async move { remove_one(&s, &id).await })
    }))
    .await;
    results.into_iter().collect()
}

/// At berthd start, before serving: tells image garbage collection which
/// layers containers use, brings every record up to date with the engine
/// and removes what a cut-short CreateContainer left (see the module doc).
#[tracing::instrument(skip_all)]
pub async fn recover(s: &Arc<Services>) -> Result<(), CriError> {
    let store = s.store.clone();
    s.images.set_layers_in_use(move || {
        let mut dirs: Vec<_> = store.containers().into_iter().flat_map(|c| c.lower_dirs).collect();
        dirs.extend(
            creating_layers()
                .lock()
                .expect("creating layers")
                .values()
                .flatten()
                .cloned(),
        );
        dirs
    });

    let records = s.store.containers();
    let known: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
    let before: std::collections::HashMap<_, _> = records.iter().map(|r| (r.id.clone(), r.state)).collect();
    let refreshed = refresh_all(s, records).await?;
    for rec in &refreshed {
        let old = before.get(&rec.id);
        if old != Some(&rec.state) {
            tracing::info!(container_id = %rec.id, from = ?old, to = ?rec.state, exit_code = rec.exit_code, reason = %rec.reason, "container state recovered");
        }
    }

    let s2 = s.clone();
    blocking(move || {
        let engine_ids = s2.engine.state_dir().list().unwrap_or_default();
        for id in engine_ids.iter().filter(|id| !known.contains(*id)) {
            tracing::info!(container_id = %id, "removing a container without a record (create cut short)");
            if let Err(e) = s2.engine.delete(id, true) {
                tracing::warn!(container_id = %id, error = %e, "cannot remove leftover container");
            }
        }
        if let Ok(entries) = std::fs::read_dir(&s2.containers_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    tracing::info!(container_id = %name, "removing a container dir without a record");
                    remove_dir(&entry.path());
                }
            }
        }
        Ok(())
    })
    .await
}
