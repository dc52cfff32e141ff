//! The API edge: every CRI handler runs through [`serve`], which counts the
//! request, times it, and turns `CriError` into a gRPC status in one place.

use std::future::Future;
use std::time::Instant;

use tonic::{Response, Status};

use crate::error::CriError;

pub async fn serve<T>(
    method: &'static str,
    handler: impl Future<Output = Result<T, CriError>>,
) -> Result<Response<T>, Status> {
    let start = Instant::now();
    let result = handler.await;
    crate::metrics::observe(method, start.elapsed(), result.as_ref().err().map(CriError::code));
    result.map(Response::new).map_err(Status::from)
}
