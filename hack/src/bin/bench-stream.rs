//! Streaming benchmark (CRI Exec, PortForward, Attach): prints figures,
//! asserts nothing.
//!
//! Pointed at any CRI endpoint (`--endpoint unix:///…`), and driving every
//! runtime with the same client, berth's own (`berth_cri_server::ctl::stream`,
//! what berthctl runs on), so the client's cost is the same for each:
//!
//! - exec round trip: from the CRI `Exec` call to the exit status received,
//!   for `exec -i true` (stdin opened and closed at once, stdout and stderr
//!   streamed), N times over SPDY and N times over WebSocket;
//! - port-forward throughput: `--pf-mib` MiB (1 GiB) from port 9000 in the
//!   pod to the client through one forwarded connection, over SPDY and over
//!   SPDY tunnelled in WebSocket, `--pf-runs` times each (the median is
//!   reported). In the pod, busybox `nc -ll -p 9000 -e sh -c "dd
//!   if=/dev/zero bs=1M count=…"`: nc forks per connection and hands it to
//!   dd, which writes 1 MiB blocks (`nc -l < /dev/zero` would copy through
//!   nc's small buffer and cap the source near 500 MB/s). The same
//!   transfer straight to the pod's IP from the host, with no runtime in
//!   the path, is printed as the reference of what the source and loopback
//!   allow. A transfer that gets no data for 15 s counts as stalled and
//!   ends its series (the runs before it are kept);
//! - the daemon's VmRSS with the pod running (two containers: the source
//!   and `sleep`), then with `--attach-sessions` (100) idle attach
//!   sessions open on the `sleep` container (stdin, stdout, stderr, no
//!   terminal; over SPDY, or `--attach-transport websocket`).
//!
//! Each connection the client opens ends before the next measurement;
//! the stream's write side stays open until the read side ended (the
//! kubelet-era containerd ends both directions once one has ended).
//!
//! `--compare` drives both, as `bench-cri --compare` does: a local registry
//! with the test images, a berthd on private dirs with its own bridge,
//! subnet, chains and cgroups, then Debian's containerd (see
//! `berth_hack::containerd`); each is stopped and what it left on the host
//! removed, also after a failure or SIGINT/SIGTERM. A transport the daemon
//! refuses is reported as `fails: …` instead of ending the run: containerd
//! 1.6 refuses the WebSocket port-forward tunnel (403); its WebSocket exec
//! fails for a client offering only v5 (crictl, containerd#11136) but this
//! client offers v4 too. `--berth-only` and `--containerd-only` run one
//! side. Build first (two commands: a `--bin` filter applies to every `-p`):
//! `cargo build --release -p berth-cri-server -p berth-runtime -p
//! berth-monitor` and `cargo build --release -p berth-hack --bin
//! bench-stream`, then run `target/release/bench-stream --compare` as root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_cri_server::ctl::stream::{
    remote_command_with, LocalIo, PortForwarder, RemoteCommandOptions, RemoteCommandProtocol, Transport,
};
use berth_hack::compare::{self, check, connect, p50_p99, rand_suffix, rss_kib, signal_watch, stopped};
use berth_hack::registry::{Registry, RegistryOptions};
use berth_hack::skopeo::{self, PushOptions};
use berth_hack::testimages;
use clap::Parser;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::Channel;

#[derive(Parser, Clone)]
#[command(about = "CRI streaming benchmark (exec, port-forward, attach) for any CRI endpoint (berth, containerd)")]
struct Args {
    /// CRI endpoint, `unix:///path/to/socket` (not with --compare).
    #[arg(long)]
    endpoint: Option<String>,
    /// Image for the containers, pulled first (with --compare: the local
    /// registry's berth/busybox:latest). Needs busybox sh, sleep, nc, dd.
    #[arg(long)]
    image: Option<String>,
    /// Exec round trips per transport.
    #[arg(short = 'n', long, default_value_t = 50)]
    n: usize,
    /// MiB per port-forward transfer.
    #[arg(long, default_value_t = 1024)]
    pf_mib: u64,
    /// Port-forward transfers per transport (the median is reported).
    #[arg(long, default_value_t = 3)]
    pf_runs: usize,
    /// Idle attach sessions held while the daemon's RSS is read.
    #[arg(long, default_value_t = 100)]
    attach_sessions: usize,
    /// Transport of the attach sessions.
    #[arg(long, value_enum, default_value_t = Transport::Spdy)]
    attach_transport: Transport,
    /// PID of the daemon whose VmRSS is reported.
    #[arg(long)]
    daemon_pid: Option<u32>,
    /// Cgroup parent for the pod (LinuxPodSandboxConfig.cgroup_parent).
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
    /// Keep the daemons' config, logs and state dirs (under /var/tmp) after
    /// a --compare run; mounts, processes and network are still removed.
    #[arg(long)]
    keep_logs: bool,
}

type Rt = RuntimeServiceClient<Channel>;

/// The port the source listens on in the pod.
const PF_PORT: u16 = 9000;
/// Longest a single exec round trip or port-forward dial may take before
/// it counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one port-forward transfer may take (1 GiB at 3.6 MB/s).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest a transfer may go without data before it counts as stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(15);
const LABEL: &str = "berth-bench-stream";

/// A series of measurements, or why it could not be taken.
type Series<T> = std::result::Result<Vec<T>, String>;

/// Transfer rates in MB/s, and why the series ended early if it did.
#[derive(Default)]
struct Rates {
    rates: Vec<f64>,
    error: Option<String>,
}

/// What one run against one endpoint measured.
#[derive(Default)]
struct Figures {
    /// Exec round trips per transport, and the protocol the server chose.
    exec: Vec<(Transport, Option<RemoteCommandProtocol>, Series<Duration>)>,
    /// Port-forward transfers in MB/s per path ("SPDY", "WebSocket
    /// tunnel", "direct").
    pf: Vec<(&'static str, Rates)>,
    rss_before_kib: Option<u64>,
    rss_attached_kib: Option<u64>,
    /// Attach sessions that were open when the RSS was read.
    attached: usize,
    attach_error: Option<String>,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run started and ended.
    load: [String; 2],
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Spdy => "SPDY",
        Transport::WebSocket => "WebSocket",
    }
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    Some(s[(s.len() - 1) / 2])
}

/// An error as one line, its causes joined.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// One run on one endpoint: the pod it made, for the sweep.
struct Bench {
    rt: Rt,
    image: String,
    run_label: String,
    logs: PathBuf,
    cgroup_parent: Option<String>,
    pods: Vec<String>,
    stop: watch::Receiver<bool>,
}

impl Bench {
    fn pod_config(&self, name: &str) -> Result<PodSandboxConfig> {
        let log_dir = self.logs.join(name);
        std::fs::create_dir_all(&log_dir)?;
        Ok(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("{}-{name}", self.run_label),
                namespace: LABEL.into(),
                attempt: 0,
            }),
            hostname: name.into(),
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

    /// Creates and starts a container running `command`; `stdin` keeps
    /// its stdin open (attach -i needs it).
    async fn container(
        &mut self,
        pod: &str,
        config: &PodSandboxConfig,
        name: &str,
        command: &[&str],
        stdin: bool,
    ) -> Result<String> {
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
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            stdin,
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        };
        let id = self
            .rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(c),
                sandbox_config: Some(config.clone()),
            })
            .await
            .with_context(|| format!("CreateContainer {name}"))?
            .into_inner()
            .container_id;
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("StartContainer {name}"))?;
        Ok(id)
    }

    async fn pod_ip(&mut self, pod: &str) -> Result<String> {
        let status = self
            .rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod.into(),
                verbose: false,
            })
            .await
            .context("PodSandboxStatus")?
            .into_inner();
        status
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty())
            .context("the pod has no IP")
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

    /// Removes every pod labelled with this run (also one whose
    /// RunPodSandbox was cut short by a signal).
    async fn sweep(&mut self) {
        for id in self.pods.clone() {
            self.remove_pod(&id).await;
        }
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

    /// One `exec -i true`: CRI Exec, then the session to its exit status.
    async fn exec_once(&mut self, container: &str, transport: Transport) -> Result<(Duration, RemoteCommandProtocol)> {
        let t = Instant::now();
        let url = self
            .rt
            .exec(ExecRequest {
                container_id: container.into(),
                cmd: vec!["true".into()],
                tty: false,
                stdin: true,
                stdout: true,
                stderr: true,
            })
            .await
            .context("Exec")?
            .into_inner()
            .url;
        let io = LocalIo {
            stdin: Some(Box::pin(tokio::io::empty())),
            stdout: Some(Box::pin(tokio::io::sink())),
            stderr: Some(Box::pin(tokio::io::sink())),
            resize: None,
        };
        let options = RemoteCommandOptions {
            transport,
            tty: false,
            protocols: Vec::new(),
        };
        let finished = tokio::time::timeout(STEP_TIMEOUT, remote_command_with(&url, &options, io))
            .await
            .context("timed out")??;
        let elapsed = t.elapsed();
        if finished.exit_code != 0 {
            bail!("true exited {}", finished.exit_code);
        }
        Ok((elapsed, finished.protocol))
    }

    /// A warm-up exec, then `n` timed ones; the first failure ends the
    /// series (reported with how many succeeded before it).
    async fn exec_series(
        &mut self,
        container: &str,
        transport: Transport,
        n: usize,
    ) -> Result<(Option<RemoteCommandProtocol>, Series<Duration>)> {
        let protocol = match self.exec_once(container, transport).await {
            Ok((_, p)) => p,
            Err(e) => return Ok((None, Err(one_line(&e)))),
        };
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            check(&self.stop)?;
            match self.exec_once(container, transport).await {
                Ok((d, _)) => samples.push(d),
                Err(e) => return Ok((Some(protocol), Err(format!("{} (after {i} of {n})", one_line(&e))))),
            }
        }
        Ok((Some(protocol), Ok(samples)))
    }

    /// `runs` transfers of `bytes` through one port-forward session.
    async fn pf_series(&mut self, pod: &str, transport: Transport, bytes: u64, runs: usize) -> Result<Rates> {
        let url = self
            .rt
            .port_forward(PortForwardRequest {
                pod_sandbox_id: pod.into(),
                port: vec![PF_PORT.into()],
            })
            .await
            .context("PortForward")?
            .into_inner()
            .url;
        let mut out = Rates::default();
        let pf = match tokio::time::timeout(STEP_TIMEOUT, PortForwarder::connect(&url, transport)).await {
            Ok(Ok(pf)) => pf,
            Ok(Err(e)) => {
                out.error = Some(one_line(&e));
                return Ok(out);
            }
            Err(_) => {
                out.error = Some("connect timed out".into());
                return Ok(out);
            }
        };
        for i in 0..runs {
            check(&self.stop)?;
            eprintln!("bench-stream:   transfer {}", i + 1);
            match tokio::time::timeout(TRANSFER_TIMEOUT, pf_transfer(&pf, bytes)).await {
                Ok(Ok(rate)) => out.rates.push(rate),
                Ok(Err(e)) => out.error = Some(format!("transfer {} of {runs}: {}", i + 1, one_line(&e))),
                Err(_) => out.error = Some(format!("transfer {} of {runs} timed out", i + 1)),
            }
            if out.error.is_some() {
                break;
            }
        }
        pf.close();
        Ok(out)
    }

    /// Opens `count` idle attach sessions (stdin held open, output
    /// discarded) to `container` over `transport` and reads the daemon's RSS
    /// before and with them.
    async fn attach_rss(
        &mut self,
        container: &str,
        count: usize,
        transport: Transport,
        pid: u32,
        figs: &mut Figures,
    ) -> Result<()> {
        eprintln!("bench-stream: {count} attach sessions");
        tokio::time::sleep(Duration::from_secs(1)).await;
        figs.rss_before_kib = Some(rss_kib(pid)?);
        let mut sessions = JoinSet::new();
        // The other ends of the sessions' stdin: held, so stdin stays open.
        let mut stdin_writers = Vec::with_capacity(count);
        for _ in 0..count {
            check(&self.stop)?;
            let url = self
                .rt
                .attach(AttachRequest {
                    container_id: container.into(),
                    stdin: true,
                    tty: false,
                    stdout: true,
                    stderr: true,
                })
                .await
                .context("Attach")?
                .into_inner()
                .url;
            let (writer, reader) = tokio::io::duplex(64);
            stdin_writers.push(writer);
            let io = LocalIo {
                stdin: Some(Box::pin(reader)),
                stdout: Some(Box::pin(tokio::io::sink())),
                stderr: Some(Box::pin(tokio::io::sink())),
                resize: None,
            };
            sessions.spawn(async move {
                let options = RemoteCommandOptions {
                    transport,
                    tty: false,
                    protocols: Vec::new(),
                };
                remote_command_with(&url, &options, io).await
            });
        }
        // Loopback upgrades take well under this; a session that ended
        // meanwhile is reported.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut ended = Vec::new();
        while let Some(r) = sessions.try_join_next() {
            ended.push(match r {
                Ok(Ok(f)) => format!("ended with exit code {}", f.exit_code),
                Ok(Err(e)) => one_line(&e),
                Err(e) => e.to_string(),
            });
        }
        figs.attached = sessions.len();
        figs.rss_attached_kib = Some(rss_kib(pid)?);
        if !ended.is_empty() {
            figs.attach_error = Some(format!("{} of {count} sessions ended early: {}", ended.len(), ended[0]));
        }
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
        drop(stdin_writers);
        Ok(())
    }

    async fn measure(&mut self, args: &Args, daemon_pid: Option<u32>, figs: &mut Figures) -> Result<()> {
        let cfg = self.pod_config("stream")?;
        let pod = self.run_pod(&cfg).await?;
        let idle = self.container(&pod, &cfg, "idle", &["sleep", "3600"], true).await?;
        let port = PF_PORT.to_string();
        let dd = format!("dd if=/dev/zero bs=1M count={} 2>/dev/null", args.pf_mib);
        let source = ["nc", "-ll", "-p", &port, "-e", "sh", "-c", &dd];
        self.container(&pod, &cfg, "source", &source, false).await?;

        if let Some(pid) = daemon_pid {
            self.attach_rss(&idle, args.attach_sessions, args.attach_transport, pid, figs)
                .await?;
        }

        for transport in [Transport::Spdy, Transport::WebSocket] {
            eprintln!("bench-stream: exec round trips over {}", transport_name(transport));
            let (protocol, series) = self.exec_series(&idle, transport, args.n).await?;
            figs.exec.push((transport, protocol, series));
        }

        let bytes = args.pf_mib << 20;
        let ip = self.pod_ip(&pod).await?;
        for (label, transport) in [("SPDY", Transport::Spdy), ("WebSocket tunnel", Transport::WebSocket)] {
            eprintln!("bench-stream: port-forward over {label}");
            let series = self.pf_series(&pod, transport, bytes, args.pf_runs).await?;
            figs.pf.push((label, series));
        }
        eprintln!("bench-stream: direct transfers from {ip}");
        let mut direct = Rates::default();
        for i in 0..args.pf_runs {
            check(&self.stop)?;
            match tokio::time::timeout(TRANSFER_TIMEOUT, direct_transfer(&ip, bytes)).await {
                Ok(Ok(rate)) => direct.rates.push(rate),
                Ok(Err(e)) => direct.error = Some(format!("transfer {} of {}: {}", i + 1, args.pf_runs, one_line(&e))),
                Err(_) => direct.error = Some(format!("transfer {} of {} timed out", i + 1, args.pf_runs)),
            }
            if direct.error.is_some() {
                break;
            }
        }
        figs.pf.push(("direct", direct));
        Ok(())
    }
}

/// Reads one connection's `bytes` from the pod's source through `pf`;
/// returns MB/s (10^6 bytes) from the stream's opening to its end. Until
/// the source listens the connection is refused: retried.
async fn pf_transfer(pf: &PortForwarder, bytes: u64) -> Result<f64> {
    let mut refused = 0;
    loop {
        let t = Instant::now();
        let conn = pf.open(PF_PORT).await?;
        // Held (not shut down) until the read side ended.
        let writer = conn.writer;
        let mut reader = conn.reader;
        let got = read_all(&mut reader).await?;
        let elapsed = t.elapsed();
        drop(writer);
        let error = conn.error.message().await?;
        if got == 0 && error.is_some() && refused < 50 {
            refused += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if let Some(e) = error {
            bail!("{e} (after {got} bytes)");
        }
        if got != bytes {
            bail!("got {got} bytes, expected {bytes}");
        }
        return Ok(bytes as f64 / 1e6 / elapsed.as_secs_f64());
    }
}

/// The same transfer straight from the pod's IP, no runtime in the path.
async fn direct_transfer(ip: &str, bytes: u64) -> Result<f64> {
    let addr = format!("{ip}:{PF_PORT}");
    let mut refused = 0;
    loop {
        let t = Instant::now();
        let mut tcp = match tokio::net::TcpStream::connect(&addr).await {
            Ok(tcp) => tcp,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && refused < 50 => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("connect {addr}")),
        };
        let got = read_all(&mut tcp).await?;
        let elapsed = t.elapsed();
        if got != bytes {
            bail!("got {got} bytes from {addr}, expected {bytes}");
        }
        return Ok(bytes as f64 / 1e6 / elapsed.as_secs_f64());
    }
}

/// Bytes read to EOF, discarded; an error when no data came for
/// [`STALL_TIMEOUT`].
async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        match tokio::time::timeout(STALL_TIMEOUT, r.read(&mut buf)).await {
            Ok(n) => match n? {
                0 => return Ok(got),
                n => got += n as u64,
            },
            Err(_) => bail!("stalled: no data for {} s after {got} bytes", STALL_TIMEOUT.as_secs()),
        }
    }
}

/// The load averages, `1min 5min 15min`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Pulls the image, runs every measurement, removes the pod it made.
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
    let rt = RuntimeServiceClient::new(ch);
    ic.pull_image(PullImageRequest {
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .with_context(|| format!("PullImage {image}"))?;
    let logs = tempfile::Builder::new().prefix("berth-bench-stream-logs").tempdir()?;
    let mut b = Bench {
        rt,
        image: image.into(),
        run_label: format!("run{}-{}", std::process::id(), rand_suffix()),
        logs: logs.path().to_path_buf(),
        cgroup_parent,
        pods: Vec::new(),
        stop: stop.clone(),
    };
    let mut figs = Figures::default();
    figs.load[0] = loadavg();
    let mut s = stop.clone();
    let result = tokio::select! {
        r = b.measure(args, daemon_pid, &mut figs) => r,
        _ = stopped(&mut s) => Err(anyhow::anyhow!("interrupted")),
    };
    figs.load[1] = loadavg();
    if result.is_err() {
        // A RunPodSandbox cut short may still be finishing in the daemon.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    b.sweep().await;
    result.map(|()| figs)
}

// ---------------------------------------------------------------------------
// Output.

fn exec_label(t: Transport) -> String {
    format!("exec -i true, {} (ms)", transport_name(t))
}

fn pf_label(path: &str, mib: u64) -> String {
    let (gib, rest) = (mib / 1024, mib % 1024);
    let size = if gib > 0 && rest == 0 {
        format!("{gib} GiB")
    } else {
        format!("{mib} MiB")
    };
    match path {
        "direct" => format!("{size} direct to pod IP (MB/s, ref)"),
        p => format!("port-forward {size}, {p} (MB/s)"),
    }
}

fn print_one(name: &str, f: &Figures, args: &Args) {
    println!("{name}:");
    for (t, protocol, series) in &f.exec {
        let proto = protocol.map_or(String::new(), |p| format!(" [{}]", p.name()));
        match series {
            Ok(s) => {
                let (p50, p99) = p50_p99(s).unwrap_or_default();
                println!(
                    "  {:<46} p50 {p50:8.2} ms  p99 {p99:8.2} ms  (n={}){proto}",
                    exec_label(*t),
                    s.len()
                );
            }
            Err(e) => println!("  {:<46} fails: {e}{proto}", exec_label(*t)),
        }
    }
    for (path, r) in &f.pf {
        let label = pf_label(path, args.pf_mib);
        if let Some(m) = median(&r.rates) {
            let all: Vec<String> = r.rates.iter().map(|r| format!("{r:.0}")).collect();
            println!("  {label:<46} median {m:8.0} MB/s  (runs: {})", all.join(", "));
        }
        if let Some(e) = &r.error {
            println!("  {label:<46} fails: {e}");
        }
    }
    if let Some(r) = f.rss_before_kib {
        println!("  {:<46} {r} KiB", "daemon VmRSS, 1 pod (2 containers), no sessions");
    }
    if let Some(r) = f.rss_attached_kib {
        println!(
            "  {:<46} {r} KiB",
            format!("daemon VmRSS, {} idle attach sessions", f.attached)
        );
    }
    if let Some(e) = &f.attach_error {
        println!("  attach: {e}");
    }
    println!(
        "  load average (1/5/15 min) at start: {}, at end: {}",
        f.load[0], f.load[1]
    );
}

/// A table cell: at most `width` characters.
fn cell(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let cut: String = s.chars().take(width - 1).collect();
        format!("{cut}…")
    }
}

fn print_table(a: &Figures, b: &Figures, args: &Args) {
    const L: usize = 46;
    const W: usize = 24;
    println!();
    println!(
        "{:<L$} | {:>W$} | {:>W$} | {:>13}",
        "metric", "berth p50/p99 or value", "containerd", "ratio"
    );
    println!("{}", "-".repeat(L + 2 * (W + 3) + 3 + 13));
    let row = |label: &str, x: String, y: String, ratio: String| {
        println!("{label:<L$} | {:>W$} | {:>W$} | {ratio:>13}", cell(&x, W), cell(&y, W));
    };
    let mut targets = Vec::new();
    let mut notes = Vec::new();
    for (t, _, xs) in &a.exec {
        let ys = b.exec.iter().find(|(u, _, _)| u == t).map(|(_, _, s)| s);
        let show = |s: Option<&Series<Duration>>| match s {
            Some(Ok(s)) => p50_p99(s).map_or("-".into(), |(p50, p99)| format!("{p50:.2} / {p99:.2}")),
            Some(Err(e)) => format!("fails: {e}"),
            None => "-".into(),
        };
        let ratio = match (
            xs.as_ref().ok().and_then(|s| p50_p99(s)),
            ys.and_then(|s| s.as_ref().ok()).and_then(|s| p50_p99(s)),
        ) {
            (Some(x), Some(y)) => {
                targets.push(format!(
                    "exec round trip p50 over {} at most half of containerd's: {} ({:.2}×)",
                    transport_name(*t),
                    if x.0 <= 0.5 * y.0 { "met" } else { "NOT met" },
                    x.0 / y.0
                ));
                format!("{:.2} / {:.2}", x.0 / y.0, x.1 / y.1)
            }
            _ => "-".into(),
        };
        row(&exec_label(*t), show(Some(xs)), show(ys), ratio);
    }
    for (path, xs) in &a.pf {
        let ys = b.pf.iter().find(|(p, _)| p == path).map(|(_, s)| s);
        // A series that ended early shows the median of the runs before
        // (marked *), or only the failure.
        let show = |s: Option<&Rates>| match s {
            Some(r) => match (median(&r.rates), &r.error) {
                (Some(m), None) => format!("{m:.0}"),
                (Some(m), Some(_)) => format!("{m:.0}* ({} runs)", r.rates.len()),
                (None, Some(e)) => format!("fails: {e}"),
                (None, None) => "-".into(),
            },
            None => "-".into(),
        };
        for (side, r) in [("berth", Some(xs)), ("containerd", ys)] {
            if let Some(Rates {
                error: Some(e), rates, ..
            }) = r
            {
                if !rates.is_empty() {
                    notes.push(format!("* {side}, {}: {e}", pf_label(path, args.pf_mib)));
                }
            }
        }
        let x = median(&xs.rates);
        let y = ys.and_then(|r| median(&r.rates));
        let ratio = match (x, y) {
            (Some(x), Some(y)) => {
                if *path != "direct" {
                    targets.push(format!(
                        "port-forward throughput over {path} at least containerd's: {} ({:.2}×)",
                        if x >= y { "met" } else { "NOT met" },
                        x / y
                    ));
                }
                format!("{:.2}", x / y)
            }
            _ => "-".into(),
        };
        row(&pf_label(path, args.pf_mib), show(Some(xs)), show(ys), ratio);
    }
    if let (Some(x), Some(y)) = (a.rss_before_kib, b.rss_before_kib) {
        row(
            "daemon VmRSS, 1 pod, no sessions (KiB)",
            x.to_string(),
            y.to_string(),
            format!("{:.2}", x as f64 / y as f64),
        );
    }
    if let (Some(x), Some(y), Some(x0), Some(y0)) = (
        a.rss_attached_kib,
        b.rss_attached_kib,
        a.rss_before_kib,
        b.rss_before_kib,
    ) {
        row(
            &format!("daemon VmRSS, +{}/{} attach sessions (KiB)", a.attached, b.attached),
            x.to_string(),
            y.to_string(),
            format!("{:.2}", x as f64 / y as f64),
        );
        let per = |after: u64, before: u64, n: usize| (after as f64 - before as f64) / n.max(1) as f64;
        let (px, py) = (per(x, x0, a.attached), per(y, y0, b.attached));
        row(
            "  growth per attach session (KiB)",
            format!("{px:.1}"),
            format!("{py:.1}"),
            if py > 0.0 {
                format!("{:.2}", px / py)
            } else {
                "-".into()
            },
        );
    }
    for n in notes {
        println!("{n}");
    }
    println!();
    for t in targets {
        println!("target: {t}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let stop = signal_watch("bench-stream")?;
    if args.compare {
        if !nix::unistd::geteuid().is_root() {
            bail!("bench-stream --compare needs root");
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
    print_one(&endpoint, &figs, &args);
    Ok(())
}

// ---------------------------------------------------------------------------
// --compare: the daemons and what they leave on the host (networks of
// their own, distinct from bench-cri's, so both may run at once).

const NETWORKS: compare::Networks = compare::Networks {
    berth_bridge: "berthstrm0",
    berth_subnet: "10.231.242.0/24",
    berth_chains: "BTSTRM",
    cni_name: "cnistrm",
    cni_bridge: "cnistrm0",
    cni_subnet: "10.231.243.0/24",
    tag: "bench-stream",
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
        .prefix("berth-bench-stream")
        .tempdir_in("/var/tmp")?;
    let result = compare_in(args, &bin, tmp.path(), &registry.host(), &image, stop).await;
    if args.keep_logs {
        eprintln!("bench-stream: kept {}", tmp.keep().display());
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
        "image {image}, n={} exec round trips per transport, {} × {} MiB port-forward transfers per path, \
         {} idle attach sessions ({}, stdin+stdout+stderr) to one container",
        args.n,
        args.pf_runs,
        args.pf_mib,
        args.attach_sessions,
        transport_name(args.attach_transport)
    );
    let berth = if args.containerd_only {
        None
    } else {
        let f = run_berth(args, bin, tmp, image, stop.clone()).await?;
        print_one("berth", &f, args);
        Some(f)
    };
    if args.berth_only || *stop.borrow() {
        return Ok(());
    }
    if Command::new("containerd").arg("--version").output().is_err() {
        bail!("containerd not found (apt-get install -y containerd runc)");
    }
    let ctrd = run_containerd(args, tmp, registry, image, stop).await?;
    print_one("containerd", &ctrd, args);
    if let Some(berth) = &berth {
        print_table(berth, &ctrd, args);
    }
    Ok(())
}
