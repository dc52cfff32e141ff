//! berth's side service on the CRI socket (`berth.introspect.v1.Introspect`):
//! pull progress for `berthctl pull`. The kubelet never calls it.

pub mod proto {
    tonic::include_proto!("berth.introspect.v1");
}

use std::pin::Pin;
use std::sync::Arc;

use berth_images::progress::{LayerState, PullProgress};
use berth_images::reference::Reference;
use berth_images::ImageService as ImageStore;
use proto::introspect_server::Introspect;
use proto::{LayerProgress, PullProgressEvent, WatchPullsRequest};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::error::CriError;

pub struct IntrospectHandlers {
    store: Arc<ImageStore>,
}

impl IntrospectHandlers {
    pub fn new(store: Arc<ImageStore>) -> Self {
        IntrospectHandlers { store }
    }
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<PullProgressEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Introspect for IntrospectHandlers {
    type WatchPullsStream = ProgressStream;

    async fn watch_pulls(&self, request: Request<WatchPullsRequest>) -> Result<Response<ProgressStream>, Status> {
        let wanted = request.into_inner().reference;
        let wanted = if wanted.is_empty() {
            None
        } else {
            Some(
                Reference::parse(&wanted)
                    .map_err(|e| Status::from(CriError::from(e)))?
                    .to_string(),
            )
        };
        // Subscribe before answering, so a pull started after this call
        // returns is seen from its first event.
        let mut events = self.store.subscribe_progress();
        let stream = async_stream::stream! {
            loop {
                match events.recv().await {
                    Ok(p) if wanted.as_ref().is_none_or(|w| *w == p.reference) => yield Ok(to_event(&p)),
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}

fn to_event(p: &PullProgress) -> PullProgressEvent {
    PullProgressEvent {
        reference: p.reference.clone(),
        layers: p
            .layers
            .iter()
            .map(|l| LayerProgress {
                digest: l.digest.clone(),
                total_bytes: l.total_bytes,
                downloaded_bytes: l.downloaded_bytes,
                state: state_name(l.state).into(),
            })
            .collect(),
        finished: p.finished,
        error: p.error.clone().unwrap_or_default(),
    }
}

pub fn state_name(state: LayerState) -> &'static str {
    match state {
        LayerState::Waiting => "waiting",
        LayerState::Downloading => "downloading",
        LayerState::Unpacking => "unpacking",
        LayerState::Exists => "exists",
        LayerState::Done => "done",
        LayerState::Failed => "failed",
    }
}
