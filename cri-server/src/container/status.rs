//! ContainerStatus: the record refreshed from the engine, in CRI terms;
//! `verbose` adds `info["info"]`: pid, bundle, the runtime spec.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1::{
    ContainerResources, ContainerStatus, ContainerStatusRequest, ContainerStatusResponse, ContainerUser, ImageSpec,
    LinuxContainerUser,
};

use super::{container_dir, cri_state, record, refresh};
use crate::error::CriError;
use crate::services::{blocking, Services};
use crate::store::ContainerRecord;

#[tracing::instrument(skip_all, fields(container_id = %request.container_id))]
pub async fn status(s: &Arc<Services>, request: ContainerStatusRequest) -> Result<ContainerStatusResponse, CriError> {
    let id = request.container_id;
    record(s, &id)?;
    let rec = refresh(s, &id)
        .await?
        .ok_or_else(|| CriError::not_found("container", &id))?;
    let info = if request.verbose {
        let (s, rec) = (s.clone(), rec.clone());
        blocking(move || verbose_info(&s, &rec)).await?
    } else {
        HashMap::new()
    };
    Ok(ContainerStatusResponse {
        status: Some(cri_status(&rec)),
        info,
    })
}

pub(super) fn image_spec(rec: &ContainerRecord) -> ImageSpec {
    let mut spec = rec.config.image.clone().unwrap_or_default();
    spec.image = rec.image_ref.clone();
    spec
}

fn cri_status(rec: &ContainerRecord) -> ContainerStatus {
    let resources = rec
        .resources
        .clone()
        .or_else(|| rec.config.linux.as_ref().and_then(|l| l.resources.clone()))
        .map(|linux| ContainerResources {
            linux: Some(linux),
            windows: None,
        });
    ContainerStatus {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        state: cri_state(rec.state) as i32,
        created_at: rec.created_at,
        started_at: rec.started_at,
        finished_at: rec.finished_at,
        exit_code: rec.exit_code,
        image: Some(image_spec(rec)),
        image_ref: rec.image_id.clone(),
        reason: rec.reason.clone(),
        message: rec.message.clone(),
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
        mounts: rec.config.mounts.clone(),
        log_path: rec
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources,
        image_id: rec.image_id.clone(),
        user: cri_user(rec),
    }
}

/// The identity the container's process runs as, resolved at create
/// (unset for a record from before berth kept it).
fn cri_user(rec: &ContainerRecord) -> Option<ContainerUser> {
    rec.user.as_ref().map(|u| ContainerUser {
        linux: Some(LinuxContainerUser {
            uid: u.uid.into(),
            gid: u.gid.into(),
            supplemental_groups: u.supplemental_groups.iter().map(|&g| g.into()).collect(),
        }),
    })
}

fn verbose_info(s: &Services, rec: &ContainerRecord) -> Result<HashMap<String, String>, CriError> {
    let bundle = container_dir(s, &rec.id).join("bundle");
    let spec: serde_json::Value = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    let pid = s.engine.state(&rec.id).ok().and_then(|c| c.pid).unwrap_or(0);
    let info = serde_json::json!({
        "sandboxID": rec.pod_id,
        "pid": pid,
        "bundle": bundle,
        "logPath": rec.log_path,
        "imageID": rec.image_id,
        "config": rec.config,
        "runtimeSpec": spec,
    });
    let text = serde_json::to_string(&info).map_err(|e| CriError::Internal(format!("verbose info: {e}")))?;
    Ok(HashMap::from([("info".to_string(), text)]))
}
