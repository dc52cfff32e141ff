//! RuntimeConfig: the cgroup driver the kubelet must match.

use k8s_cri::v1::{CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse};

use crate::config::Config;
use crate::error::CriError;

pub async fn runtime_config(
    _config: &Config,
    _request: RuntimeConfigRequest,
) -> Result<RuntimeConfigResponse, CriError> {
    // Config validation admits only "cgroupfs".
    Ok(RuntimeConfigResponse {
        linux: Some(LinuxRuntimeConfiguration {
            cgroup_driver: CgroupDriver::Cgroupfs as i32,
        }),
    })
}
