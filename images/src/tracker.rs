//! Builds the [`PullProgress`] events of one pull and publishes them on the
//! service's broadcast channel: on every layer state change, and at most
//! every [`BYTES_INTERVAL`] per layer while bytes arrive.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::progress::{LayerProgress, LayerState, PullProgress};

pub(crate) const BYTES_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) struct PullTracker {
    reference: String,
    tx: broadcast::Sender<PullProgress>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    layers: Vec<LayerProgress>,
    last_bytes_event: Vec<Option<Instant>>,
}

impl PullTracker {
    pub(crate) fn new(reference: String, tx: broadcast::Sender<PullProgress>) -> Self {
        PullTracker {
            reference,
            tx,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, state: &State, finished: bool, error: Option<String>) {
        // No subscriber is not an error.
        let _ = self.tx.send(PullProgress {
            reference: self.reference.clone(),
            layers: state.layers.clone(),
            finished,
            error,
        });
    }

    /// Announce the layers (digest, size), all waiting.
    pub(crate) fn set_layers(&self, layers: impl IntoIterator<Item = (String, u64)>) {
        let mut state = self.lock();
        state.layers = layers
            .into_iter()
            .map(|(digest, total_bytes)| LayerProgress {
                digest,
                total_bytes,
                downloaded_bytes: 0,
                state: LayerState::Waiting,
            })
            .collect();
        state.last_bytes_event = vec![None; state.layers.len()];
        self.publish(&state, false, None);
    }

    pub(crate) fn set_state(&self, layer: usize, new: LayerState) {
        let mut state = self.lock();
        let Some(l) = state.layers.get_mut(layer) else {
            return;
        };
        if l.state == new {
            return;
        }
        l.state = new;
        if matches!(new, LayerState::Done | LayerState::Exists) {
            l.downloaded_bytes = l.total_bytes;
        }
        self.publish(&state, false, None);
    }

    /// Running byte count of a layer download.
    pub(crate) fn bytes(&self, layer: usize, downloaded: u64) {
        let mut state = self.lock();
        let Some(l) = state.layers.get_mut(layer) else {
            return;
        };
        l.downloaded_bytes = downloaded;
        let now = Instant::now();
        let due = state.last_bytes_event[layer].is_none_or(|t| now.duration_since(t) >= BYTES_INTERVAL);
        if due {
            state.last_bytes_event[layer] = Some(now);
            self.publish(&state, false, None);
        }
    }

    /// The last event of the pull.
    pub(crate) fn finish(&self, error: Option<String>) {
        let mut state = self.lock();
        if error.is_some() {
            for l in state
                .layers
                .iter_mut()
                .filter(|l| !matches!(l.state, LayerState::Done | LayerState::Exists))
            {
                l.state = LayerState::Failed;
            }
        }
        self.publish(&state, true, error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_byte_events_but_not_state_changes() {
        let (tx, mut rx) = broadcast::channel(64);
        let t = PullTracker::new("r".into(), tx);
        t.set_layers([("sha256:a".to_string(), 10)]);
        t.set_state(0, LayerState::Downloading);
        for n in 1..=5 {
            t.bytes(0, n);
        }
        t.set_state(0, LayerState::Done);
        t.finish(None);
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        // layers, downloading, first byte event, done, finished.
        assert_eq!(events.len(), 5, "{events:?}");
        assert_eq!(events[2].layers[0].downloaded_bytes, 1);
        assert_eq!(events[3].layers[0].state, LayerState::Done);
        assert!(events[4].finished && events[4].error.is_none());
    }
}
