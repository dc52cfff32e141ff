//! version, info.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{StatusRequest, VersionRequest};
use tonic::transport::Channel;

use super::cli::Format;
use super::output::print_structured;
use super::{request, status_error};

pub async fn version(channel: Channel, timeout: Duration) -> anyhow::Result<()> {
    let v = RuntimeServiceClient::new(channel)
        .version(request(VersionRequest { version: "v1".into() }, timeout))
        .await
        .map_err(|s| status_error("Version", s))?
        .into_inner();
    println!("Version:  {}", v.version);
    println!("RuntimeName:  {}", v.runtime_name);
    println!("RuntimeVersion:  {}", v.runtime_version);
    println!("RuntimeApiVersion:  {}", v.runtime_api_version);
    Ok(())
}

pub async fn info(channel: Channel, timeout: Duration, format: Format) -> anyhow::Result<()> {
    let resp = RuntimeServiceClient::new(channel)
        .status(request(StatusRequest { verbose: true }, timeout))
        .await
        .map_err(|s| status_error("Status", s))?
        .into_inner();
    let mut out = serde_json::Map::new();
    out.insert("status".into(), serde_json::to_value(&resp.status)?);
    let info: BTreeMap<_, _> = resp.info.into_iter().collect();
    for (key, value) in info {
        let parsed = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
        out.insert(key, parsed);
    }
    print_structured(&out, format)
}
