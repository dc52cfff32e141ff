//! The API edge: every CRI handler runs through [`serve`], which counts the
//! request, times it, tracks it as in flight (for a graceful stop), and turns
//! `CriError` into a gRPC status in one place.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::Notify;
use tonic::{Response, Status};

use crate::error::CriError;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static IDLE: Notify = Notify::const_new();

/// Marks one call in flight until dropped (also when the client goes away
/// and tonic drops the handler).
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if IN_FLIGHT.fetch_sub(1, Ordering::SeqCst) == 1 {
            IDLE.notify_waiters();
        }
    }
}

/// Calls being handled right now.
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::SeqCst)
}

/// Resolves once no call is in flight. Idle client connections (the kubelet
/// keeps one open forever) do not count.
pub async fn wait_idle() {
    loop {
        // Registered before the check, so a wake-up in between is not lost.
        let notified = IDLE.notified();
        if in_flight() == 0 {
            return;
        }
        notified.await;
    }
}

pub async fn serve<T>(
    method: &'static str,
    handler: impl Future<Output = Result<T, CriError>>,
) -> Result<Response<T>, Status> {
    let _in_flight = InFlight::enter();
    let start = Instant::now();
    let result = handler.await;
    crate::metrics::observe(method, start.elapsed(), result.as_ref().err().map(CriError::code));
    result.map(Response::new).map_err(Status::from)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn wait_idle_waits_for_calls_not_connections() {
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let call = tokio::spawn(serve("Version", async move {
            let _ = held.await;
            Ok::<_, CriError>(())
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(in_flight() >= 1);
        let waiter = tokio::spawn(wait_idle());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "idle before the call ended");
        release.send(()).unwrap();
        call.await.unwrap().unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
