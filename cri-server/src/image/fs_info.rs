//! ImageFsInfo: bytes and inodes the image store really uses.

use std::sync::Arc;

use berth_images::ImageService as ImageStore;
use k8s_cri::v1::{FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value};

use crate::error::CriError;
use crate::services::blocking;

#[tracing::instrument(skip_all)]
pub async fn image_fs_info(
    store: Arc<ImageStore>,
    _request: ImageFsInfoRequest,
) -> Result<ImageFsInfoResponse, CriError> {
    let mountpoint = store.root().display().to_string();
    let usage = blocking(move || Ok(store.fs_usage()?)).await?;
    let timestamp = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let fs = FilesystemUsage {
        timestamp,
        fs_id: Some(FilesystemIdentifier { mountpoint }),
        used_bytes: Some(UInt64Value {
            value: usage.used_bytes,
        }),
        inodes_used: Some(UInt64Value {
            value: usage.inodes_used,
        }),
    };
    Ok(ImageFsInfoResponse {
        image_filesystems: vec![fs.clone()],
        container_filesystems: vec![fs],
    })
}
