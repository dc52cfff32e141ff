//! runp, pods, inspectp, stopp, rmp.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

use super::cli::{Format, InspectOutput, ListOutput, PodState};
use super::output::{ago, parsed_info, print_structured, print_table, table_id};
use super::{config_file, request, resolve, status_error};

type Client = RuntimeServiceClient<Channel>;

fn client(channel: &Channel) -> Client {
    RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20)
}

pub async fn run(channel: Channel, timeout: Duration, config: &Path, runtime: Option<String>) -> anyhow::Result<()> {
    let config: PodSandboxConfig = config_file::load(config)?;
    let id = client(&channel)
        .run_pod_sandbox(request(
            RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: runtime.unwrap_or_default(),
            },
            timeout,
        ))
        .await
        .map_err(|s| status_error("RunPodSandbox", s))?
        .into_inner()
        .pod_sandbox_id;
    println!("{id}");
    Ok(())
}

/// `pods` filters; the ones CRI has are passed to berthd, the others
/// (name, namespace) applied here.
pub struct ListFilter {
    pub id: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub state: Option<PodState>,
    pub labels: Vec<(String, String)>,
    pub latest: bool,
}

pub async fn list(channel: Channel, timeout: Duration, filter: ListFilter, out: ListOutput) -> anyhow::Result<()> {
    let state = filter.state.map(|s| PodSandboxStateValue {
        state: match s {
            PodState::Ready => PodSandboxState::SandboxReady as i32,
            PodState::NotReady => PodSandboxState::SandboxNotready as i32,
        },
    });
    let cri_filter = PodSandboxFilter {
        id: filter.id.unwrap_or_default(),
        state,
        label_selector: filter.labels.into_iter().collect(),
    };
    let mut items = client(&channel)
        .list_pod_sandbox(request(
            ListPodSandboxRequest {
                filter: Some(cri_filter),
            },
            timeout,
        ))
        .await
        .map_err(|s| status_error("ListPodSandbox", s))?
        .into_inner()
        .items;
    let meta = |p: &PodSandbox| p.metadata.clone().unwrap_or_default();
    items.retain(|p| {
        filter.name.as_deref().is_none_or(|n| meta(p).name.contains(n))
            && filter
                .namespace
                .as_deref()
                .is_none_or(|n| meta(p).namespace.contains(n))
    });
    // Newest first, as crictl lists.
    items.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
    if filter.latest {
        items.truncate(1);
    }
    if out.quiet {
        for pod in &items {
            println!("{}", pod.id);
        }
        return Ok(());
    }
    if out.output != Format::Table {
        return print_structured(&ListPodSandboxResponse { items }, out.output);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|p| {
            let m = meta(p);
            vec![
                table_id(&p.id, out.no_trunc),
                ago(p.created_at),
                state_name(p.state).to_string(),
                m.name,
                m.namespace,
                m.attempt.to_string(),
                runtime_name(&p.runtime_handler),
            ]
        })
        .collect();
    print_table(
        &["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"],
        &rows,
    );
    Ok(())
}

fn state_name(state: i32) -> &'static str {
    match PodSandboxState::try_from(state) {
        Ok(PodSandboxState::SandboxReady) => "Ready",
        Ok(PodSandboxState::SandboxNotready) => "NotReady",
        Err(_) => "Unknown",
    }
}

fn runtime_name(handler: &str) -> String {
    if handler.is_empty() {
        "(default)".into()
    } else {
        handler.into()
    }
}

pub async fn inspect(channel: Channel, timeout: Duration, ids: &[String], out: InspectOutput) -> anyhow::Result<()> {
    let mut c = client(&channel);
    for prefix in ids {
        let id = resolve::pod(&channel, timeout, prefix).await?;
        let resp = c
            .pod_sandbox_status(request(
                PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: true,
                },
                timeout,
            ))
            .await
            .map_err(|s| status_error("PodSandboxStatus", s))?
            .into_inner();
        let mut doc = serde_json::Map::new();
        doc.insert("status".into(), serde_json::to_value(&resp.status)?);
        doc.insert("info".into(), parsed_info(resp.info).into());
        if !resp.containers_statuses.is_empty() {
            doc.insert(
                "containers_statuses".into(),
                serde_json::to_value(&resp.containers_statuses)?,
            );
        }
        print_structured(&doc, out.output)?;
    }
    Ok(())
}

pub async fn stop(channel: Channel, timeout: Duration, ids: &[String]) -> anyhow::Result<()> {
    let mut c = client(&channel);
    for prefix in ids {
        let id = resolve::pod(&channel, timeout, prefix).await?;
        stop_one(&mut c, timeout, &id).await?;
        println!("Stopped sandbox {id}");
    }
    Ok(())
}

async fn stop_one(c: &mut Client, timeout: Duration, id: &str) -> anyhow::Result<()> {
    c.stop_pod_sandbox(request(
        StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        },
        timeout,
    ))
    .await
    .map_err(|s| status_error(&format!("StopPodSandbox {id}"), s))?;
    Ok(())
}

pub async fn remove(channel: Channel, timeout: Duration, ids: &[String], all: bool, force: bool) -> anyhow::Result<()> {
    let mut c = client(&channel);
    let listed = c
        .list_pod_sandbox(request(ListPodSandboxRequest { filter: None }, timeout))
        .await
        .map_err(|s| status_error("ListPodSandbox", s))?
        .into_inner()
        .items;
    let states: HashMap<String, i32> = listed.iter().map(|p| (p.id.clone(), p.state)).collect();
    let mut targets = Vec::new();
    if all {
        targets.extend(listed.iter().map(|p| p.id.clone()));
    }
    for prefix in ids {
        targets.push(resolve::pod(&channel, timeout, prefix).await?);
    }
    if targets.is_empty() && !all {
        anyhow::bail!("name at least one pod sandbox (or --all)");
    }
    targets.dedup();
    let mut failed = Vec::new();
    for id in targets {
        let ready = states.get(&id) == Some(&(PodSandboxState::SandboxReady as i32));
        if ready && !force {
            eprintln!("pod sandbox {id} is Ready: stop it first, or use --force");
            failed.push(id);
            continue;
        }
        let result = async {
            if ready {
                stop_one(&mut c, timeout, &id).await?;
            }
            c.remove_pod_sandbox(request(
                RemovePodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                },
                timeout,
            ))
            .await
            .map_err(|s| status_error(&format!("RemovePodSandbox {id}"), s))?;
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => println!("Removed sandbox {id}"),
            Err(e) => {
                eprintln!("{e:#}");
                failed.push(id);
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("pod sandbox(es) not removed: {}", failed.join(", "));
    }
    Ok(())
}
