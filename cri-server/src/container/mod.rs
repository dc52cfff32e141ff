//! Containers over CRI: one file per RPC. CreateContainer builds an OCI
//! bundle ([`crate::oci`]) over the image's layers and hands it to the
//! engine; the rest translate to engine calls and keep the store's record
//! current.
//!
//! # Where a container lives
//!
//! ```text
//! <root>/containers/<id>/bundle/config.json   the OCI spec
//! <root>/containers/<id>/bundle/rootfs        overlay mounted by the engine
//! <root>/containers/<id>/fs/{upper,work}      the writable layer
//! <log_directory>/<log_path>                  CRI log, written by the monitor
//! <state>/runtime/<id>/                       the engine's state (volatile)
//! ```
//!
//! # Records and the engine
//!
//! The record ([`ContainerRecord`]) is what exists; the engine is what runs.
//! A record in `Created`/`Running` is refreshed from the engine before it is
//! shown ([`refresh`]): an exit the monitor recorded makes it `Exited` with
//! the real code and reason; a monitor gone without an exit record makes it
//! `Unknown`; an engine that never heard of it (state dir lost with a
//! reboot) makes it `Exited` with reason `Unknown`. `Exited` is final.
//!
//! Every change of one container's record runs under the `ctr/<id>` lock;
//! calls that change things run detached from the request ([`detached`]) so
//! a client that goes away cannot leave a half-made or half-removed
//! container behind.

mod attach;
mod create;
mod exec;
mod exec_sync;
mod list;
mod pod;
mod remove;
mod reopen_log;
mod start;
mod stats;
mod status;
mod stop;
mod update;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use berth_runtime::container::ContainerError;
use berth_runtime::state::{ExitRecord, StateError, Status as EngineStatus};
use k8s_cri::v1::ContainerState as CriState;
use nix::sys::signal::Signal;

pub use attach::attach;
pub use create::create;
pub use exec::exec;
pub use exec_sync::exec_sync;
pub use list::list;
pub use pod::{recover, remove_all_in_pod, stop_all_in_pod};
pub use remove::remove;
pub use reopen_log::reopen_log;
pub use start::start;
pub use stats::{list_stats, stats};
pub use status::status;
pub use stop::stop;
pub use update::update_resources;

use crate::error::CriError;
use crate::services::{blocking, Services};
use crate::store::{ContainerRecord, ContainerState};

/// The lock key of container `id`.
fn lock_key(id: &str) -> String {
    format!("ctr/{id}")
}

/// `<root>/containers/<id>`.
fn container_dir(s: &Services, id: &str) -> PathBuf {
    s.containers_dir.join(id)
}

/// Runs `f` as its own task, so a cancelled request (client gone) does
/// not stop it half-way; the caller still gets its result when it waits.
async fn detached<T: Send + 'static>(
    f: impl Future<Output = Result<T, CriError>> + Send + 'static,
) -> Result<T, CriError> {
    tokio::spawn(f)
        .await
        .map_err(|e| CriError::Internal(format!("container task failed: {e}")))?
}

/// The record of `id`, or NotFound naming it.
fn record(s: &Services, id: &str) -> Result<ContainerRecord, CriError> {
    if id.is_empty() {
        return Err(CriError::invalid("container_id", "must be set"));
    }
    s.store
        .container(id)
        .ok_or_else(|| CriError::not_found("container", id))
}

/// What the engine says about a container, reduced to what a record needs.
#[derive(Debug)]
enum EngineView {
    Created,
    Running {
        started: Option<String>,
    },
    /// The exit, and when the container started (RFC 3339), if it did.
    Exited(ExitRecord, Option<String>),
    /// Stopped without an exit record: the monitor died.
    Lost,
    /// The engine has no such container.
    Gone,
}

fn engine_view(s: &Services, id: &str) -> Result<EngineView, CriError> {
    match s.engine.state(id) {
        Ok(c) => Ok(match (c.status, c.exit) {
            (_, Some(exit)) => EngineView::Exited(exit, c.state.started),
            (EngineStatus::Stopped, None) => EngineView::Lost,
            (EngineStatus::Running, None) => EngineView::Running {
                started: c.state.started,
            },
            (EngineStatus::Created | EngineStatus::Creating, None) => EngineView::Created,
        }),
        Err(ContainerError::State(StateError::NotFound(_))) => Ok(EngineView::Gone),
        Err(e) => Err(e.into()),
    }
}

/// Whether [`apply_view`] would change `rec` (without touching it): the
/// common answer for a listed container is no.
fn view_changes(rec: &ContainerRecord, view: &EngineView) -> bool {
    match rec.state {
        ContainerState::Created => !matches!(view, EngineView::Created),
        ContainerState::Running => !matches!(view, EngineView::Created | EngineView::Running { .. }),
        _ => false,
    }
}

/// Applies what the engine says to a record; returns whether it changed.
/// `Exited` records are final.
fn apply_view(rec: &mut ContainerRecord, view: EngineView) -> bool {
    if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
        return false;
    }
    match view {
        EngineView::Created => false,
        EngineView::Running { started } => {
            if rec.state == ContainerState::Running {
                return false;
            }
            rec.state = ContainerState::Running;
            rec.started_at = started
                .as_deref()
                .and_then(rfc3339_nanos)
                .unwrap_or_else(crate::services::now_nanos);
            true
        }
        EngineView::Exited(exit, started) => {
            // A start whose record update was lost (see `start`) still
            // gets its time.
            if rec.started_at == 0 {
                if let Some(t) = started.as_deref().and_then(rfc3339_nanos) {
                    rec.started_at = t;
                }
            }
            record_exit(rec, &exit);
            true
        }
        EngineView::Lost => {
            rec.state = ContainerState::Unknown;
            rec.reason = "Unknown".into();
            rec.message = "the container's monitor is gone without recording an exit".into();
            true
        }
        EngineView::Gone => {
            rec.state = ContainerState::Exited;
            rec.finished_at = crate::services::now_nanos();
            rec.exit_code = 255;
            rec.reason = "Unknown".into();
            rec.message = "the runtime lost the container (state lost with a reboot?)".into();
            true
        }
    }
}

/// Marks `rec` exited as `exit` says.
fn record_exit(rec: &mut ContainerRecord, exit: &ExitRecord) {
    rec.state = ContainerState::Exited;
    rec.exit_code = exit.exit_code;
    rec.finished_at = rfc3339_nanos(&exit.exited_at).unwrap_or_else(crate::services::now_nanos);
    rec.reason = exit_reason(exit).into();
    rec.message = exit.error.clone().unwrap_or_default();
}

/// The CRI reason of an exit, as containerd gives it.
fn exit_reason(exit: &ExitRecord) -> &'static str {
    if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Refreshes a record the caller holds the `ctr/<id>` lock of, storing a
/// change. Engine queries read a few small files: run off the async threads.
async fn refresh_locked(s: &Arc<Services>, mut rec: ContainerRecord) -> Result<ContainerRecord, CriError> {
    if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
        return Ok(rec);
    }
    let view = {
        let (s, id) = (s.clone(), rec.id.clone());
        blocking(move || engine_view(&s, &id)).await?
    };
    if apply_view(&mut rec, view) {
        s.store.update_container(&rec)?;
    }
    Ok(rec)
}

/// Refreshes container `id` under its lock; `None` when it is gone.
/// The refreshed record of `id` if it is running; NotFound or
/// FailedPrecondition naming it otherwise (`rpc` names the caller).
pub(crate) async fn running_record(s: &Arc<Services>, id: &str, rpc: &str) -> Result<ContainerRecord, CriError> {
    record(s, id)?;
    let rec = refresh(s, id)
        .await?
        .ok_or_else(|| CriError::not_found("container", id))?;
    if rec.state != ContainerState::Running {
        return Err(CriError::FailedPrecondition(format!(
            "container {id} is {:?}: {rpc} needs it running",
            rec.state
        )));
    }
    Ok(rec)
}

async fn refresh(s: &Arc<Services>, id: &str) -> Result<Option<ContainerRecord>, CriError> {
    let _lock = s.locks.lock(&lock_key(id)).await;
    match s.store.container(id) {
        Some(rec) => refresh_locked(s, rec).await.map(Some),
        None => Ok(None),
    }
}

fn cri_state(state: ContainerState) -> CriState {
    match state {
        ContainerState::Created => CriState::ContainerCreated,
        ContainerState::Running => CriState::ContainerRunning,
        ContainerState::Exited => CriState::ContainerExited,
        ContainerState::Unknown => CriState::ContainerUnknown,
    }
}

/// Unix nanoseconds of an RFC 3339 time.
fn rfc3339_nanos(t: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t).ok()?.timestamp_nanos_opt()
}

/// A stop signal as images name it: `SIGINT`, `INT` or `2`.
fn parse_signal(name: &str) -> Option<Signal> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse().ok()
}

/// The signal StopContainer sends first: the image's StopSignal, else SIGTERM.
fn stop_signal(rec: &ContainerRecord) -> Signal {
    rec.stop_signal
        .as_deref()
        .and_then(parse_signal)
        .unwrap_or(Signal::SIGTERM)
}

#[cfg(test)]
mod tests;
