//! create, start, ps, inspect, stop, rm.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

use super::cli::{ContainerStateArg, Format, InspectOutput, ListOutput};
use super::output::{ago, parsed_info, print_structured, print_table, short_id, table_id};
use super::{config_file, request, resolve, status_error};

type Client = RuntimeServiceClient<Channel>;

fn client(channel: &Channel) -> Client {
    RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20)
}

pub struct CreateArgs<'a> {
    pub pod: &'a str,
    pub container_config: &'a Path,
    pub pod_config: &'a Path,
    pub pull: bool,
}

pub async fn create(channel: Channel, timeout: Duration, args: CreateArgs<'_>) -> anyhow::Result<()> {
    let config: ContainerConfig = config_file::load(args.container_config)?;
    let sandbox: PodSandboxConfig = config_file::load(args.pod_config)?;
    let pod = resolve::pod(&channel, timeout, args.pod).await?;
    if args.pull {
        let image = config.image.clone().unwrap_or_default();
        if image.image.is_empty() {
            anyhow::bail!("{}: no image.image to pull", args.container_config.display());
        }
        ImageServiceClient::new(channel.clone())
            .pull_image(PullImageRequest {
                image: Some(image),
                auth: None,
                sandbox_config: Some(sandbox.clone()),
            })
            .await
            .map_err(|s| status_error("PullImage", s))?;
    }
    let id = client(&channel)
        .create_container(request(
            CreateContainerRequest {
                pod_sandbox_id: pod,
                config: Some(config),
                sandbox_config: Some(sandbox),
            },
            timeout,
        ))
        .await
        .map_err(|s| status_error("CreateContainer", s))?
        .into_inner()
        .container_id;
    println!("{id}");
    Ok(())
}

pub async fn start(channel: Channel, timeout: Duration, ids: &[String]) -> anyhow::Result<()> {
    let mut c = client(&channel);
    for prefix in ids {
        let id = resolve::container(&channel, timeout, prefix).await?;
        c.start_container(request(
            StartContainerRequest {
                container_id: id.clone(),
            },
            timeout,
        ))
        .await
        .map_err(|s| status_error(&format!("StartContainer {id}"), s))?;
        println!("{id}");
    }
    Ok(())
}

/// `ps` filters: without `--all` or `--state` only running containers,
/// as crictl lists.
pub struct ListFilter {
    pub all: bool,
    pub id: Option<String>,
    pub pod: Option<String>,
    pub name: Option<String>,
    pub state: Option<ContainerStateArg>,
    pub labels: Vec<(String, String)>,
    pub latest: bool,
}

pub async fn list(channel: Channel, timeout: Duration, filter: ListFilter, out: ListOutput) -> anyhow::Result<()> {
    let state = match (filter.state, filter.all) {
        (Some(s), _) => Some(match s {
            ContainerStateArg::Created => ContainerState::ContainerCreated,
            ContainerStateArg::Running => ContainerState::ContainerRunning,
            ContainerStateArg::Exited => ContainerState::ContainerExited,
            ContainerStateArg::Unknown => ContainerState::ContainerUnknown,
        }),
        (None, false) => Some(ContainerState::ContainerRunning),
        (None, true) => None,
    };
    let pod = match &filter.pod {
        Some(prefix) => resolve::pod(&channel, timeout, prefix).await?,
        None => String::new(),
    };
    let cri_filter = ContainerFilter {
        id: filter.id.unwrap_or_default(),
        state: state.map(|s| ContainerStateValue { state: s as i32 }),
        pod_sandbox_id: pod,
        label_selector: filter.labels.into_iter().collect(),
    };
    let mut c = client(&channel);
    let mut containers = c
        .list_containers(request(
            ListContainersRequest {
                filter: Some(cri_filter),
            },
            timeout,
        ))
        .await
        .map_err(|s| status_error("ListContainers", s))?
        .into_inner()
        .containers;
    if let Some(name) = &filter.name {
        containers.retain(|c| c.metadata.as_ref().is_some_and(|m| m.name.contains(name.as_str())));
    }
    containers.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
    if filter.latest {
        containers.truncate(1);
    }
    if out.quiet {
        for container in &containers {
            println!("{}", container.id);
        }
        return Ok(());
    }
    if out.output != Format::Table {
        return print_structured(&ListContainersResponse { containers }, out.output);
    }
    let pod_names = pod_names(&mut c, timeout).await?;
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|ctr| {
            let meta = ctr.metadata.clone().unwrap_or_default();
            let image = ctr.image.as_ref().map(|i| i.image.as_str()).unwrap_or_default();
            let image = if image.starts_with("sha256:") {
                short_id(image)
            } else {
                image.to_string()
            };
            vec![
                table_id(&ctr.id, out.no_trunc),
                image,
                ago(ctr.created_at),
                state_name(ctr.state).to_string(),
                meta.name,
                meta.attempt.to_string(),
                table_id(&ctr.pod_sandbox_id, out.no_trunc),
                pod_names.get(&ctr.pod_sandbox_id).cloned().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "CONTAINER",
            "IMAGE",
            "CREATED",
            "STATE",
            "NAME",
            "ATTEMPT",
            "POD ID",
            "POD",
        ],
        &rows,
    );
    Ok(())
}

/// Pod ID → pod name, for the POD column.
async fn pod_names(c: &mut Client, timeout: Duration) -> anyhow::Result<HashMap<String, String>> {
    let items = c
        .list_pod_sandbox(request(ListPodSandboxRequest { filter: None }, timeout))
        .await
        .map_err(|s| status_error("ListPodSandbox", s))?
        .into_inner()
        .items;
    Ok(items
        .into_iter()
        .map(|p| (p.id, p.metadata.map(|m| m.name).unwrap_or_default()))
        .collect())
}

fn state_name(state: i32) -> &'static str {
    match ContainerState::try_from(state) {
        Ok(ContainerState::ContainerCreated) => "Created",
        Ok(ContainerState::ContainerRunning) => "Running",
        Ok(ContainerState::ContainerExited) => "Exited",
        Ok(ContainerState::ContainerUnknown) | Err(_) => "Unknown",
    }
}

pub async fn inspect(channel: Channel, timeout: Duration, ids: &[String], out: InspectOutput) -> anyhow::Result<()> {
    let mut c = client(&channel);
    for prefix in ids {
        let id = resolve::container(&channel, timeout, prefix).await?;
        let resp = c
            .container_status(request(
                ContainerStatusRequest {
                    container_id: id,
                    verbose: true,
                },
                timeout,
            ))
            .await
            .map_err(|s| status_error("ContainerStatus", s))?
            .into_inner();
        let mut doc = serde_json::Map::new();
        doc.insert("status".into(), serde_json::to_value(&resp.status)?);
        doc.insert("info".into(), parsed_info(resp.info).into());
        print_structured(&doc, out.output)?;
    }
    Ok(())
}

pub async fn stop(channel: Channel, timeout: Duration, grace: i64, ids: &[String]) -> anyhow::Result<()> {
    let mut c = client(&channel);
    for prefix in ids {
        let id = resolve::container(&channel, timeout, prefix).await?;
        stop_one(&mut c, timeout, grace, &id).await?;
        println!("{id}");
    }
    Ok(())
}

async fn stop_one(c: &mut Client, timeout: Duration, grace: i64, id: &str) -> anyhow::Result<()> {
    // The call lasts as long as the grace period: give it that on top.
    let call_timeout = timeout + Duration::from_secs(grace.max(0) as u64);
    c.stop_container(request(
        StopContainerRequest {
            container_id: id.to_string(),
            timeout: grace,
        },
        call_timeout,
    ))
    .await
    .map_err(|s| status_error(&format!("StopContainer {id}"), s))?;
    Ok(())
}

pub async fn remove(channel: Channel, timeout: Duration, ids: &[String], all: bool, force: bool) -> anyhow::Result<()> {
    let mut c = client(&channel);
    let listed = c
        .list_containers(request(ListContainersRequest { filter: None }, timeout))
        .await
        .map_err(|s| status_error("ListContainers", s))?
        .into_inner()
        .containers;
    let states: HashMap<String, i32> = listed.iter().map(|c| (c.id.clone(), c.state)).collect();
    let mut targets = Vec::new();
    if all {
        targets.extend(listed.iter().map(|c| c.id.clone()));
    }
    for prefix in ids {
        targets.push(resolve::container(&channel, timeout, prefix).await?);
    }
    if targets.is_empty() && !all {
        anyhow::bail!("name at least one container (or --all)");
    }
    targets.dedup();
    let mut failed = Vec::new();
    for id in targets {
        let running = states.get(&id) == Some(&(ContainerState::ContainerRunning as i32));
        if running && !force {
            eprintln!("container {id} is running: stop it first, or use --force");
            failed.push(id);
            continue;
        }
        let result = async {
            if running {
                stop_one(&mut c, timeout, 0, &id).await?;
            }
            c.remove_container(request(
                RemoveContainerRequest {
                    container_id: id.clone(),
                },
                timeout,
            ))
            .await
            .map_err(|s| status_error(&format!("RemoveContainer {id}"), s))?;
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => println!("{id}"),
            Err(e) => {
                eprintln!("{e:#}");
                failed.push(id);
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("container(s) not removed: {}", failed.join(", "));
    }
    Ok(())
}
