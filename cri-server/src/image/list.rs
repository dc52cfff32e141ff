//! ListImages, optionally filtered to the image one reference resolves to.

use std::sync::Arc;

use berth_images::ImageService as ImageStore;
use k8s_cri::v1::{ListImagesRequest, ListImagesResponse};

use super::convert::to_cri_image;
use crate::error::CriError;
use crate::services::blocking;

#[tracing::instrument(skip_all)]
pub async fn list_images(store: Arc<ImageStore>, request: ListImagesRequest) -> Result<ListImagesResponse, CriError> {
    let filter = request
        .filter
        .and_then(|f| f.image)
        .map(|s| s.image)
        .filter(|s| !s.trim().is_empty());
    let images = blocking(move || match filter {
        Some(query) => Ok(store.status(query.trim())?.into_iter().collect()),
        None => Ok(store.list()?),
    })
    .await?;
    Ok(ListImagesResponse {
        images: images.iter().map(to_cri_image).collect(),
    })
}
