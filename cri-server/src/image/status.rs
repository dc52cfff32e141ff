//! ImageStatus: an absent image is an empty answer, not an error.

use std::sync::Arc;

use berth_images::ImageService as ImageStore;
use k8s_cri::v1::{ImageStatusRequest, ImageStatusResponse};

use super::convert::{to_cri_image, verbose_info};
use super::required_image;
use crate::error::CriError;
use crate::services::blocking;

#[tracing::instrument(skip_all, fields(image = tracing::field::Empty))]
pub async fn image_status(
    store: Arc<ImageStore>,
    request: ImageStatusRequest,
) -> Result<ImageStatusResponse, CriError> {
    let query = required_image(request.image.as_ref(), "image.image")?;
    tracing::Span::current().record("image", query.as_str());
    let found = blocking(move || Ok(store.status(&query)?)).await?;
    let Some(image) = found else {
        return Ok(ImageStatusResponse::default());
    };
    let info = if request.verbose {
        verbose_info(&image)
    } else {
        Default::default()
    };
    Ok(ImageStatusResponse {
        image: Some(to_cri_image(&image)),
        info,
    })
}
