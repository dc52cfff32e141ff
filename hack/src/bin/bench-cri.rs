//! CRI benchmark: prints figures, asserts nothing.
//!
//! Pointed at any CRI endpoint (`--endpoint unix:///…`), so the same run
//! measures berth and containerd:
//!
//! - RunPodSandbox (a networked pod), N times;
//! - pod + one busybox container (`sleep 3600`) to Running: RunPodSandbox,
//!   CreateContainer, StartContainer, N times;
//! - ExecSync `true` into one running container, N times;
//! - the daemon's VmRSS (`--daemon-pid`) with 100 pods ready;
//! - ListContainers with 500 containers (50 of those pods × 10, Created).
//!
//! Stopping and removing pods happens outside the timed sections. Every pod
//! it made is stopped and removed again, also on failure or SIGINT/SIGTERM
//! (pods are labelled with the run, and a final sweep lists them).
//!
//! `--compare` drives both: a local registry with the test images, a berthd
//! on private dirs and its own bridge/subnet/chains/cgroups, then Debian's
//! containerd (runc, Debian's CNI plugins, a private config, root and state:
//! see `berth_hack::containerd`) with `berth/pause:v1` as its sandbox image;
//! each is stopped and what it left on the host (processes, bridge, iptables
//! rules, cgroups, mounts, netns, shim sockets, CNI cache) removed, also
//! after a failure (`berth_hack::host_cleanup`). `--berth-only` and
//! `--containerd-only` run one side; `--keep-logs` keeps the dir with the
//! daemons' logs. Build first: `cargo build --release -p berth-cri-server
//! -p berth-runtime -p berth-monitor -p berth-hack`, then run `target/release/bench-cri
//! --compare` as root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_hack::compare::{self, check, connect, p50_p99, rand_suffix, rss_kib, signal_watch, stopped};
use berth_hack::registry::{Registry, RegistryOptions};
use berth_hack::skopeo::{self, PushOptions};
use berth_hack::testimages;
use clap::Parser;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tokio::sync::watch;
use tonic::transport::Channel;

#[derive(Parser, Clone)]
#[command(about = "CRI latency and memory benchmark for any CRI endpoint (berth, containerd)")]
struct Args {
    /// CRI endpoint, `unix:///path/to/socket` (not with --compare).
    #[arg(long)]
    endpoint: Option<String>,
    /// Image for the containers, pulled first (with --compare: the local
    /// registry's berth/busybox:latest).
    #[arg(long)]
    image: Option<String>,
    /// Samples per latency measurement.
    #[arg(short = 'n', long, default_value_t = 50)]
    n: usize,
    /// Pods held while the daemon's RSS is read.
    #[arg(long, default_value_t = 100)]
    rss_pods: usize,
    /// Pods × containers per pod for the ListContainers measurement.
    #[arg(long, default_value_t = 50)]
    list_pods: usize,
    #[arg(long, default_value_t = 10)]
    containers_per_pod: usize,
    /// PID of the daemon whose VmRSS is reported.
    #[arg(long)]
    daemon_pid: Option<u32>,
    /// Cgroup parent for the pods (LinuxPodSandboxConfig.cgroup_parent).
    #[arg(long)]
    cgroup_parent: Option<String>,
    /// Start a registry, berthd and containerd and benchmark both.
    #[arg(long)]
    compare: bool,
    /// Directory with berthd (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Only berth in --compare mode.
    #[arg(long, conflicts_with = "containerd_only")]
    berth_only: bool,
    /// Only containerd in --compare mode.
    #[arg(long)]
    containerd_only: bool,
    /// Keep containerd's config, logs and state dirs (under /var/tmp) after
    /// a --compare run, for a post-mortem; mounts, processes and network are
    /// still removed.
    #[arg(long)]
    keep_logs: bool,
}

type Rt = RuntimeServiceClient<Channel>;

/// Latency samples and memory of one run against one endpoint.
#[derive(Default)]
struct Figures {
    lat: Vec<(&'static str, Vec<Duration>)>,
    rss_kib: Option<u64>,
    listed: usize,
}

/// One benchmark run on one endpoint; remembers every pod it made.
struct Bench {
    rt: Rt,
    image: String,
    run_label: String,
    logs: PathBuf,
    cgroup_parent: Option<String>,
    pods: Vec<String>,
    seq: usize,
    stop: watch::Receiver<bool>,
}

const LABEL: &str = "berth-bench-cri";

impl Bench {
    fn pod_config(&mut self, kind: &str) -> Result<PodSandboxConfig> {
        self.seq += 1;
        let name = format!("{kind}-{}", self.seq);
        let log_dir = self.logs.join(&name);
        std::fs::create_dir_all(&log_dir)?;
        Ok(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.clone(),
                uid: format!("{}-{name}", self.run_label),
                namespace: "berth-bench-cri".into(),
                attempt: 0,
            }),
            hostname: name,
            log_directory: log_dir.display().to_string(),
            labels: HashMap::from([(LABEL.to_string(), self.run_label.clone())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone().unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn run_pod(&mut self, config: &PodSandboxConfig) -> Result<String> {
        check(&self.stop)?;
        let id = self
            .rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .context("RunPodSandbox")?
            .into_inner()
            .pod_sandbox_id;
        self.pods.push(id.clone());
        Ok(id)
    }

    async fn create(&mut self, pod: &str, config: &PodSandboxConfig, name: &str) -> Result<String> {
        check(&self.stop)?;
        let c = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        };
        Ok(self
            .rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(c),
                sandbox_config: Some(config.clone()),
            })
            .await
            .with_context(|| format!("CreateContainer {name}"))?
            .into_inner()
            .container_id)
    }

    async fn start(&mut self, id: &str) -> Result<()> {
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .with_context(|| format!("StartContainer {id}"))?;
        Ok(())
    }

    /// Stops and removes one pod; errors are printed (cleanup).
    async fn remove_pod(&mut self, id: &str) {
        if let Err(e) = self
            .rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
        {
            eprintln!("warning: StopPodSandbox {id}: {}", e.message());
        }
        match self
            .rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
        {
            Ok(_) => self.pods.retain(|p| p != id),
            Err(e) => eprintln!("warning: RemovePodSandbox {id}: {}", e.message()),
        }
    }

    async fn remove_all(&mut self) {
        for id in self.pods.clone() {
            self.remove_pod(&id).await;
        }
    }

    /// Removes every pod labelled with this run (also ones whose
    /// RunPodSandbox was cut short by a signal).
    async fn sweep(&mut self) {
        self.remove_all().await;
        let filter = PodSandboxFilter {
            label_selector: HashMap::from([(LABEL.to_string(), self.run_label.clone())]),
            ..Default::default()
        };
        match self
            .rt
            .list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) })
            .await
        {
            Ok(r) => {
                for p in r.into_inner().items {
                    self.remove_pod(&p.id).await;
                }
            }
            Err(e) => eprintln!("warning: ListPodSandbox: {}", e.message()),
        }
    }

    async fn measure(&mut self, args: &Args, daemon_pid: Option<u32>, figs: &mut Figures) -> Result<()> {
        // Warm-up: a pod and a container (sandbox image, page cache, cgroup parents).
        let cfg = self.pod_config("warm")?;
        let pod = self.run_pod(&cfg).await?;
        let c = self.create(&pod, &cfg, "warm").await?;
        self.start(&c).await?;
        self.remove_pod(&pod).await;

        let mut samples = Vec::new();
        for _ in 0..args.n {
            let cfg = self.pod_config("pod")?;
            let t = Instant::now();
            let pod = self.run_pod(&cfg).await?;
            samples.push(t.elapsed());
            self.remove_pod(&pod).await;
        }
        figs.lat.push(("RunPodSandbox", samples));

        let mut samples = Vec::new();
        for _ in 0..args.n {
            let cfg = self.pod_config("podc")?;
            let t = Instant::now();
            let pod = self.run_pod(&cfg).await?;
            let c = self.create(&pod, &cfg, "sleep").await?;
            self.start(&c).await?;
            samples.push(t.elapsed());
            self.remove_pod(&pod).await;
        }
        figs.lat.push(("pod + container Running", samples));

        let cfg = self.pod_config("exec")?;
        let pod = self.run_pod(&cfg).await?;
        let c = self.create(&pod, &cfg, "sleep").await?;
        self.start(&c).await?;
        let mut samples = Vec::new();
        for _ in 0..args.n {
            check(&self.stop)?;
            let t = Instant::now();
            let r = self
                .rt
                .exec_sync(ExecSyncRequest {
                    container_id: c.clone(),
                    cmd: vec!["true".into()],
                    timeout: 30,
                })
                .await
                .context("ExecSync")?
                .into_inner();
            samples.push(t.elapsed());
            if r.exit_code != 0 {
                bail!(
                    "ExecSync true exited {}: {}",
                    r.exit_code,
                    String::from_utf8_lossy(&r.stderr)
                );
            }
        }
        figs.lat.push(("ExecSync true", samples));
        self.remove_pod(&pod).await;

        let mut pods = Vec::new();
        for _ in 0..args.rss_pods.max(args.list_pods) {
            let cfg = self.pod_config("many")?;
            let id = self.run_pod(&cfg).await?;
            pods.push((id, cfg));
        }
        if let Some(pid) = daemon_pid {
            tokio::time::sleep(Duration::from_secs(1)).await;
            figs.rss_kib = Some(rss_kib(pid)?);
        }
        for (i, (pod, cfg)) in pods.iter().take(args.list_pods).enumerate() {
            for j in 0..args.containers_per_pod {
                self.create(pod, cfg, &format!("c{i}-{j}")).await?;
            }
        }
        let mut samples = Vec::new();
        for _ in 0..args.n {
            check(&self.stop)?;
            let t = Instant::now();
            let r = self
                .rt
                .list_containers(ListContainersRequest { filter: None })
                .await
                .context("ListContainers")?
                .into_inner();
            samples.push(t.elapsed());
            figs.listed = r.containers.len();
        }
        figs.lat.push(("ListContainers", samples));
        Ok(())
    }
}

/// Pulls the image, runs every measurement, removes every pod it made.
async fn bench_endpoint(
    args: &Args,
    endpoint: &str,
    image: &str,
    daemon_pid: Option<u32>,
    cgroup_parent: Option<String>,
    stop: watch::Receiver<bool>,
) -> Result<Figures> {
    let ch = connect(endpoint).await?;
    let mut ic = ImageServiceClient::new(ch.clone());
    let rt = RuntimeServiceClient::new(ch).max_decoding_message_size(64 << 20);
    ic.pull_image(PullImageRequest {
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .with_context(|| format!("PullImage {image}"))?;
    let logs = tempfile::Builder::new().prefix("berth-bench-cri-logs").tempdir()?;
    let mut b = Bench {
        rt,
        image: image.into(),
        run_label: format!("run{}-{}", std::process::id(), rand_suffix()),
        logs: logs.path().to_path_buf(),
        cgroup_parent,
        pods: Vec::new(),
        seq: 0,
        stop: stop.clone(),
    };
    let mut figs = Figures::default();
    let mut s = stop.clone();
    let result = tokio::select! {
        r = b.measure(args, daemon_pid, &mut figs) => r,
        _ = stopped(&mut s) => Err(anyhow::anyhow!("interrupted")),
    };
    if result.is_err() {
        // A RunPodSandbox cut short may still be finishing in the daemon.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    b.sweep().await;
    result.map(|()| figs)
}

fn print_one(name: &str, f: &Figures) {
    println!("{name}:");
    for (metric, s) in &f.lat {
        if let Some((p50, p99)) = p50_p99(s) {
            println!("  {metric:<26} p50 {p50:8.2} ms  p99 {p99:8.2} ms  (n={})", s.len());
        }
    }
    if let Some(r) = f.rss_kib {
        println!("  daemon VmRSS with pods     {r} KiB");
    }
    println!("  ListContainers returned    {} containers", f.listed);
}

fn print_table(a: &Figures, b: &Figures, args: &Args) {
    println!();
    println!(
        "{:<34} | {:>21} | {:>21} | {:>13}",
        "metric (ms)", "berth p50/p99", "containerd p50/p99", "ratio p50/p99"
    );
    println!("{}", "-".repeat(98));
    for (metric, s) in &a.lat {
        let other = b.lat.iter().find(|(m, _)| m == metric).and_then(|(_, s)| p50_p99(s));
        let (Some(x), Some(y)) = (p50_p99(s), other) else {
            continue;
        };
        let label = if *metric == "ListContainers" {
            format!("ListContainers ({} / {})", a.listed, b.listed)
        } else {
            metric.to_string()
        };
        println!(
            "{label:<34} | {:>9.2} / {:>9.2} | {:>9.2} / {:>9.2} | {:>5.2} / {:>5.2}",
            x.0,
            x.1,
            y.0,
            y.1,
            x.0 / y.0,
            x.1 / y.1
        );
    }
    if let (Some(x), Some(y)) = (a.rss_kib, b.rss_kib) {
        println!(
            "{:<34} | {:>17} KiB | {:>17} KiB | {:>13.2}",
            format!("daemon VmRSS, {} pods", args.rss_pods),
            x,
            y,
            x as f64 / y as f64
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let stop = signal_watch("bench-cri")?;
    if args.compare {
        if !nix::unistd::geteuid().is_root() {
            bail!("bench-cri --compare needs root");
        }
        return compare(&args, stop).await;
    }
    let endpoint = args.endpoint.clone().context("--endpoint or --compare")?;
    let image = args.image.clone().context("--image")?;
    let figs = bench_endpoint(
        &args,
        &endpoint,
        &image,
        args.daemon_pid,
        args.cgroup_parent.clone(),
        stop,
    )
    .await?;
    print_one(&endpoint, &figs);
    Ok(())
}

// ---------------------------------------------------------------------------
// --compare: the daemons and what they leave on the host.

const NETWORKS: compare::Networks = compare::Networks {
    berth_bridge: "berthbench0",
    berth_subnet: "10.231.240.0/24",
    berth_chains: "BTBENCH",
    cni_name: "cnibench",
    cni_bridge: "cnibench0",
    cni_subnet: "10.231.241.0/24",
    tag: "bench-cri",
};

async fn run_berth(args: &Args, bin: &Path, tmp: &Path, image: &str, stop: watch::Receiver<bool>) -> Result<Figures> {
    compare::with_private_berth(&NETWORKS, bin, tmp, |endpoint, pid| async move {
        bench_endpoint(args, &endpoint, image, Some(pid), None, stop).await
    })
    .await
}

async fn run_containerd(
    args: &Args,
    tmp: &Path,
    registry: &str,
    image: &str,
    stop: watch::Receiver<bool>,
) -> Result<Figures> {
    compare::with_containerd(&NETWORKS, tmp, registry, |endpoint, pid, cgroup_parent| async move {
        bench_endpoint(args, &endpoint, image, Some(pid), Some(cgroup_parent), stop).await
    })
    .await
}

async fn compare(args: &Args, stop: watch::Receiver<bool>) -> Result<()> {
    let bin = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?.parent().context("exe dir")?.to_path_buf(),
    };
    let (images, exp) = testimages::build_cached(&bin.join("berth-test-images"))?;
    let registry = Registry::start(RegistryOptions::default())?;
    skopeo::push_all(&images, &exp, &registry.host(), &PushOptions::default(), &|n| {
        n == "berth/busybox:latest" || n == "berth/pause:v1"
    })?;
    let image = args
        .image
        .clone()
        .unwrap_or_else(|| format!("{}/berth/busybox:latest", registry.host()));
    let tmp = tempfile::Builder::new()
        .prefix("berth-bench-cri")
        .tempdir_in("/var/tmp")?;
    let result = compare_in(args, &bin, tmp.path(), &registry.host(), &image, stop).await;
    if args.keep_logs {
        eprintln!("bench-cri: kept {}", tmp.keep().display());
    }
    drop(registry);
    result
}

/// Both runs of `--compare` (or one: `--berth-only`, `--containerd-only`)
/// with their dirs under `tmp`; prints each and the table.
async fn compare_in(
    args: &Args,
    bin: &Path,
    tmp: &Path,
    registry: &str,
    image: &str,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    println!(
        "image {image}, n={}, {} pods for RSS, {}×{} containers listed",
        args.n, args.rss_pods, args.list_pods, args.containers_per_pod
    );
    let berth = if args.containerd_only {
        None
    } else {
        let f = run_berth(args, bin, tmp, image, stop.clone()).await?;
        print_one("berth", &f);
        Some(f)
    };
    if args.berth_only || *stop.borrow() {
        return Ok(());
    }
    if Command::new("containerd").arg("--version").output().is_err() {
        bail!("containerd not found (apt-get install -y containerd runc)");
    }
    let ctrd = run_containerd(args, tmp, registry, image, stop).await?;
    print_one("containerd", &ctrd);
    if let Some(berth) = &berth {
        print_table(berth, &ctrd, args);
    }
    Ok(())
}
