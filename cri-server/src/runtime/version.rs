//! Version: who we are and which CRI version we speak.

use k8s_cri::v1::{VersionRequest, VersionResponse};

use crate::error::CriError;

/// The kubelet's API version string; CRI v1 answers "0.1.0".
const KUBE_API_VERSION: &str = "0.1.0";
pub const RUNTIME_NAME: &str = "berth";
pub const RUNTIME_API_VERSION: &str = "v1";

pub async fn version(_request: VersionRequest) -> Result<VersionResponse, CriError> {
    Ok(VersionResponse {
        version: KUBE_API_VERSION.into(),
        runtime_name: RUNTIME_NAME.into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: RUNTIME_API_VERSION.into(),
    })
}
