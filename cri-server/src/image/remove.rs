//! RemoveImage by ID, tag or digest reference; removing an absent image succeeds.

use std::sync::Arc;

use berth_images::ImageService as ImageStore;
use k8s_cri::v1::{RemoveImageRequest, RemoveImageResponse};

use super::required_image;
use crate::error::CriError;
use crate::services::blocking;

#[tracing::instrument(skip_all, fields(image = tracing::field::Empty))]
pub async fn remove_image(
    store: Arc<ImageStore>,
    request: RemoveImageRequest,
) -> Result<RemoveImageResponse, CriError> {
    let query = required_image(request.image.as_ref(), "image.image")?;
    tracing::Span::current().record("image", query.as_str());
    blocking(move || Ok(store.remove(&query)?)).await?;
    Ok(RemoveImageResponse {})
}
