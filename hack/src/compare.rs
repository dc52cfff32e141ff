//! What the `--compare` benchmarks (`bench-cri`, `bench-stream`) share: a
//! berthd on private dirs with its own bridge, subnet, iptables chains and
//! cgroup prefix ([`PrivateBerth`]), starting the private containerd of
//! [`crate::containerd`], the CRI channel, SIGINT/SIGTERM/SIGHUP as a
//! cancel flag, percentiles and a daemon's VmRSS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::containerd;
use crate::host_cleanup;
use crate::process::{self, Guarded};

/// A gRPC channel to a CRI endpoint, `unix:///path/to/socket`.
pub async fn connect(endpoint: &str) -> Result<Channel> {
    let path = PathBuf::from(
        endpoint
            .strip_prefix("unix://")
            .with_context(|| format!("endpoint {endpoint}: only unix:// is supported"))?,
    );
    let shown = path.display().to_string();
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .with_context(|| format!("connecting to {shown}"))
}

/// A flag set once SIGINT, SIGTERM or SIGHUP arrived (`program` names
/// the note printed then).
pub fn signal_watch(program: &'static str) -> Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        eprintln!("{program}: signal, cleaning up");
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Resolves when the flag of [`signal_watch`] is set.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// An error once the flag of [`signal_watch`] is set.
pub fn check(rx: &watch::Receiver<bool>) -> Result<()> {
    if *rx.borrow() {
        bail!("interrupted");
    }
    Ok(())
}

/// The `p` quantile (0..=1) of sorted samples (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50 and p99 in milliseconds; None without samples.
pub fn p50_p99(samples: &[Duration]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort();
    Some((ms(percentile(&s, 0.50)), ms(percentile(&s, 0.99))))
}

/// A process's resident set (`VmRSS`) in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("daemon pid {pid}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// A few digits that differ between runs (labels, pod uids).
pub fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000)
        .unwrap_or(0)
}

/// Waits up to 30 s for the daemon `d` to accept connections on `sock`
/// (an error with its log's tail if it exits first).
pub fn wait_socket(d: &mut Guarded, sock: &Path, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if d.try_wait().is_some() || Instant::now() > deadline {
            bail!("{} did not come up: {}", d.name(), process::tail(log, 4096));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A daemon started for a benchmark and the CRI endpoint it serves.
pub struct Daemon {
    pub process: Guarded,
    /// `unix:///…`
    pub endpoint: String,
    pub log: PathBuf,
}

/// A berthd on private dirs under `dir` (root, state, socket, an empty
/// CNI conf dir so the built-in bridge is used) with its own network and
/// cgroup prefix, and the removal of what it leaves behind.
pub struct PrivateBerth {
    pub dir: PathBuf,
    pub bridge: &'static str,
    pub subnet: &'static str,
    pub chain_prefix: &'static str,
    /// `[runtime] cgroup_prefix`, e.g. `/berth-bench-cri-PID`.
    pub cgroup_prefix: String,
}

impl PrivateBerth {
    /// Writes the config and starts `bin`/berthd; returns once its
    /// socket answers.
    pub fn start(&self, bin: &Path) -> Result<Daemon> {
        let cni = self.dir.join("cni");
        std::fs::create_dir_all(&cni)?;
        let cfg = self.dir.join("berth.toml");
        std::fs::write(
            &cfg,
            format!(
                "[network]\nbridge = \"{}\"\nsubnet = \"{}\"\nchain_prefix = \"{}\"\n\n\
                 [cni]\nconf_dir = \"{}\"\n\n[runtime]\ncgroup_prefix = \"{}\"\n",
                self.bridge,
                self.subnet,
                self.chain_prefix,
                cni.display(),
                self.cgroup_prefix
            ),
        )?;
        let sock = self.dir.join("state/berth.sock");
        let log = self.dir.join("berthd.log");
        let mut cmd = Command::new(bin.join("berthd"));
        cmd.arg("--config")
            .arg(&cfg)
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--state")
            .arg(self.dir.join("state"))
            .arg("--socket")
            .arg(&sock);
        let mut d = Guarded::spawn("berthd", cmd, &log)?;
        wait_socket(&mut d, &sock, &log)?;
        Ok(Daemon {
            process: d,
            endpoint: format!("unix://{}", sock.display()),
            log,
        })
    }

    /// After berthd stopped: monitors and pod helpers of pods a failed run
    /// left (their command lines name the private dirs), then whatever
    /// runs in the pod cgroups, the network, the cgroups, mounts.
    pub fn cleanup(&self) {
        host_cleanup::kill_matching(&[&self.dir.display().to_string()]);
        host_cleanup::remove_berth_network(self.bridge, self.chain_prefix, &[]);
        host_cleanup::remove_cgroups(&self.cgroup_prefix);
        host_cleanup::unmount_under(&self.dir);
    }
}

/// Writes the private containerd's config (`registry`'s pause image,
/// network `net`) and starts it; returns once its socket answers. Take a
/// [`containerd::Footprint`] before, and remove it after, also on failure.
pub fn start_containerd(layout: &containerd::Layout, registry: &str, net: &containerd::Network) -> Result<Daemon> {
    layout.write(registry, net)?;
    let sock = layout.socket();
    let log = layout.dir.join("containerd.log");
    let mut cmd = Command::new("containerd");
    cmd.arg("--config").arg(layout.config());
    let mut d = Guarded::spawn("containerd", cmd, &log)?;
    wait_socket(&mut d, &sock, &log)?;
    Ok(Daemon {
        process: d,
        endpoint: format!("unix://{}", sock.display()),
        log,
    })
}

/// Private network names of one benchmark program, so two may run at once.
pub struct Networks {
    pub berth_bridge: &'static str,
    pub berth_subnet: &'static str,
    pub berth_chains: &'static str,
    pub cni_name: &'static str,
    pub cni_bridge: &'static str,
    pub cni_subnet: &'static str,
    /// Names the cgroup prefixes (`/berth-<tag>-<pid>`, `/cri-<tag>-<pid>`).
    pub tag: &'static str,
}

/// Starts a private berthd (`bin` dir) under `tmp`, runs `bench` on its
/// endpoint and pid, stops it and removes what it left, also on failure.
pub async fn with_private_berth<T, F, Fut>(nets: &Networks, bin: &Path, tmp: &Path, bench: F) -> Result<T>
where
    F: FnOnce(String, u32) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let berth = PrivateBerth {
        dir: tmp.join("berth"),
        bridge: nets.berth_bridge,
        subnet: nets.berth_subnet,
        chain_prefix: nets.berth_chains,
        cgroup_prefix: format!("/berth-{}-{}", nets.tag, std::process::id()),
    };
    let result = async {
        let mut d = berth.start(bin)?;
        let r = bench(d.endpoint.clone(), d.process.pid()).await;
        d.process.stop(Duration::from_secs(20));
        r.map_err(|e| e.context(crate::process::tail(&d.log, 2048)))
    }
    .await;
    berth.cleanup();
    result
}

/// Starts Debian's containerd under `tmp` with images from `registry`, runs
/// `bench` on its endpoint, pid and the cgroup parent for its pods, stops it
/// and removes what it left on the host, also on failure.
pub async fn with_containerd<T, F, Fut>(nets: &Networks, tmp: &Path, registry: &str, bench: F) -> Result<T>
where
    F: FnOnce(String, u32, String) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let layout = containerd::Layout::new(&tmp.join("containerd"));
    let net = containerd::Network {
        name: nets.cni_name,
        bridge: nets.cni_bridge,
        subnet: nets.cni_subnet,
    };
    let cgroup_parent = format!("/cri-{}-{}", nets.tag, std::process::id());
    let footprint = containerd::Footprint::before();
    let result = async {
        let mut d = start_containerd(&layout, registry, &net)?;
        let r = bench(d.endpoint.clone(), d.process.pid(), cgroup_parent.clone()).await;
        d.process.stop(Duration::from_secs(20));
        r.map_err(|e| e.context(crate::process::tail(&d.log, 2048)))
    }
    .await;
    footprint.remove(&layout, &net, &cgroup_parent);
    result
}
