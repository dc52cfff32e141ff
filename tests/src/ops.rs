//! CRI ImageService calls as the kubelet makes them, with short names.

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{
    AuthConfig, Image, ImageFilter, ImageFsInfoRequest, ImageFsInfoResponse, ImageSpec, ImageStatusRequest,
    ImageStatusResponse, ListImagesRequest, PullImageRequest, RemoveImageRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

pub type Client = ImageServiceClient<Channel>;

pub fn spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// `PullImage`; returns the `image_ref`.
pub async fn pull(c: &mut Client, image: &str, auth: Option<AuthConfig>) -> Result<String, Status> {
    c.pull_image(PullImageRequest {
        image: Some(spec(image)),
        auth,
        sandbox_config: None,
    })
    .await
    .map(|r| r.into_inner().image_ref)
}

/// `PullImage` that must succeed.
pub async fn pull_ok(c: &mut Client, image: &str) -> String {
    pull(c, image, None)
        .await
        .unwrap_or_else(|s| panic!("pull {image}: {:?}: {}", s.code(), s.message()))
}

pub fn basic(user: &str, password: &str) -> AuthConfig {
    AuthConfig {
        username: user.into(),
        password: password.into(),
        ..Default::default()
    }
}

pub async fn status_full(c: &mut Client, image: &str, verbose: bool) -> Result<ImageStatusResponse, Status> {
    c.image_status(ImageStatusRequest {
        image: Some(spec(image)),
        verbose,
    })
    .await
    .map(|r| r.into_inner())
}

/// `ImageStatus`: the image, or None when absent.
pub async fn status(c: &mut Client, image: &str) -> Option<Image> {
    status_full(c, image, false)
        .await
        .unwrap_or_else(|s| panic!("image status {image}: {:?}: {}", s.code(), s.message()))
        .image
}

pub async fn list(c: &mut Client, filter: Option<&str>) -> Vec<Image> {
    c.list_images(ListImagesRequest {
        filter: filter.map(|f| ImageFilter { image: Some(spec(f)) }),
    })
    .await
    .unwrap_or_else(|s| panic!("list images: {:?}: {}", s.code(), s.message()))
    .into_inner()
    .images
}

pub async fn remove(c: &mut Client, image: &str) -> Result<(), Status> {
    c.remove_image(RemoveImageRequest {
        image: Some(spec(image)),
    })
    .await
    .map(|_| ())
}

pub async fn fs_info(c: &mut Client) -> ImageFsInfoResponse {
    c.image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap_or_else(|s| panic!("image fs info: {:?}: {}", s.code(), s.message()))
        .into_inner()
}

/// Panics unless `r` failed with one of `codes`; returns the message.
pub fn expect_err<T: std::fmt::Debug>(r: Result<T, Status>, codes: &[Code], what: &str) -> String {
    match r {
        Ok(v) => panic!("{what}: expected {codes:?}, got success {v:?}"),
        Err(s) => {
            assert!(
                codes.contains(&s.code()),
                "{what}: expected {codes:?}, got {:?}: {}",
                s.code(),
                s.message()
            );
            s.message().to_string()
        }
    }
}
