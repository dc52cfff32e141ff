//! Do a piece of work once for everyone who asks for it at the same time.
//!
//! Used twice: pulls are keyed by normalised reference (two `PullImage` calls
//! for `busybox` share one pull), and layer imports by chain ID (two images
//! that share a base layer, pulled at once, download and unpack it once).
//!
//! The work runs in its own tokio task, so it finishes (and cleans up after
//! itself) even when every caller has given up — tonic drops a handler's
//! future when the kubelet's deadline passes, and a half-finished pull must
//! not be abandoned in the middle of an unpack.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::{BoxFuture, FutureExt, Shared};

use crate::{ImagesError, Result};

type SharedResult<T> = std::result::Result<T, Arc<ImagesError>>;
type Flight<T> = Shared<BoxFuture<'static, SharedResult<T>>>;
type FlightMap<T> = Arc<Mutex<HashMap<String, (u64, Flight<T>)>>>;

pub(crate) struct SingleFlight<T: Clone> {
    inflight: FlightMap<T>,
    next_id: AtomicU64,
}

fn lock<T: Clone>(map: &FlightMap<T>) -> MutexGuard<'_, HashMap<String, (u64, Flight<T>)>> {
    // Only single inserts/removes happen under the lock: a poisoned map is
    // still consistent.
    map.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    pub(crate) fn new() -> Self {
        SingleFlight {
            inflight: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
        }
    }

    /// Run `work()` for `key`, or join the run for `key` already in flight.
    /// Every caller gets the result; a failure reaches the callers that joined
    /// as [`ImagesError::Shared`].
    pub(crate) async fn run<F>(&self, key: &str, work: impl FnOnce() -> F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let flight = {
            let mut map = lock(&self.inflight);
            match map.get(key) {
                Some((_, flight)) => flight.clone(),
                None => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let registry = Arc::clone(&self.inflight);
                    let owned_key = key.to_string();
                    let fut = work();
                    let task = tokio::spawn(async move {
                        let result = fut.await.map_err(Arc::new);
                        // Forget this run before anyone sees its result, so a
                        // caller arriving later starts afresh.
                        let mut map = lock(&registry);
                        if map.get(&owned_key).is_some_and(|(i, _)| *i == id) {
                            map.remove(&owned_key);
                        }
                        result
                    });
                    let flight = async move {
                        match task.await {
                            Ok(result) => result,
                            Err(e) => Err(Arc::new(ImagesError::Internal(format!("background task failed: {e}")))),
                        }
                    }
                    .boxed()
                    .shared();
                    map.insert(key.to_string(), (id, flight.clone()));
                    flight
                }
            }
        };
        flight.await.map_err(unshare)
    }

    /// How many keys are in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.inflight).len()
    }
}

/// The original error when this caller is its only holder.
fn unshare(e: Arc<ImagesError>) -> ImagesError {
    Arc::try_unwrap(e).unwrap_or_else(ImagesError::Shared)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights: Arc<SingleFlight<u32>> = Arc::new(SingleFlight::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..5 {
            let (flights, runs) = (Arc::clone(&flights), Arc::clone(&runs));
            handles.push(tokio::spawn(async move {
                flights
                    .run("k", || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(7)
                    })
                    .await
            }));
        }
        for h in handles {
            assert_eq!(h.await.unwrap().unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);

        // A later call runs again.
        let again = flights.run("k", || async { Ok(8) }).await.unwrap();
        assert_eq!(again, 8);
    }

    #[tokio::test]
    async fn a_lone_caller_gets_the_original_error_and_work_survives_cancellation() {
        let flights: Arc<SingleFlight<()>> = Arc::new(SingleFlight::new());
        let err = flights
            .run("k", || async { Err(ImagesError::ImageNotFound("x".into())) })
            .await
            .unwrap_err();
        assert!(matches!(err, ImagesError::ImageNotFound(_)), "{err:?}");

        let done = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&done);
        let caller = flights.run("slow", || async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            d.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        // Give up on the call almost at once.
        let _ = tokio::time::timeout(Duration::from_millis(1), caller).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
    }
}
