//! CRI `ImageService`: one file per RPC. Handlers validate and translate; the
//! image store (`berth-images`) does the work.

mod convert;
mod fs_info;
mod list;
mod pull;
mod remove;
mod status;

use std::sync::Arc;

use berth_images::ImageService as ImageStore;
use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

use crate::edge::serve;
use crate::error::CriError;

pub struct ImageHandlers {
    store: Arc<ImageStore>,
}

impl ImageHandlers {
    pub fn new(store: Arc<ImageStore>) -> Self {
        ImageHandlers { store }
    }
}

/// The image a request names, or InvalidArgument naming the field.
fn required_image(spec: Option<&ImageSpec>, field: &'static str) -> Result<String, CriError> {
    let image = spec.map(|s| s.image.trim()).unwrap_or_default();
    if image.is_empty() {
        return Err(CriError::invalid(field, "must name an image"));
    }
    Ok(image.to_string())
}

#[tonic::async_trait]
impl ImageService for ImageHandlers {
    async fn list_images(&self, request: Request<ListImagesRequest>) -> Result<Response<ListImagesResponse>, Status> {
        serve(
            "ListImages",
            list::list_images(self.store.clone(), request.into_inner()),
        )
        .await
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        serve(
            "ImageStatus",
            status::image_status(self.store.clone(), request.into_inner()),
        )
        .await
    }

    async fn pull_image(&self, request: Request<PullImageRequest>) -> Result<Response<PullImageResponse>, Status> {
        serve("PullImage", pull::pull_image(self.store.clone(), request.into_inner())).await
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        serve(
            "RemoveImage",
            remove::remove_image(self.store.clone(), request.into_inner()),
        )
        .await
    }

    async fn image_fs_info(
        &self,
        request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        serve(
            "ImageFsInfo",
            fs_info::image_fs_info(self.store.clone(), request.into_inner()),
        )
        .await
    }
}
