//! A real `berthd` for one test.
//!
//! Started as `berthd --config FILE --root DIR --state DIR --socket PATH`
//! with every path inside a private temp dir; stopped (SIGTERM, then
//! SIGKILL) and the temp dir removed on drop. The binary is the one cargo
//! built next to the test binary (`target/<profile>/berthd`), or `$BERTHD`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_hack::process::{self, Guarded};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ListPodSandboxRequest, RemovePodSandboxRequest, StopPodSandboxRequest};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::fixture::target_dir;

/// Path of the berthd binary under test.
pub fn berthd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTHD") {
        return PathBuf::from(p);
    }
    target_dir().join("berthd")
}

/// Path of berthctl, next to berthd.
pub fn berthctl_bin() -> PathBuf {
    berthd_bin().with_file_name("berthctl")
}

pub struct Berthd {
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    log: PathBuf,
    /// Extra environment for the berthd process.
    env: Vec<(String, String)>,
    proc: Option<Guarded>,
}

impl Berthd {
    /// Starts berthd with `config` (TOML) as its config file.
    pub fn start(config: &str) -> Result<Berthd> {
        Berthd::start_with_env(config, &[])
    }

    /// [`Berthd::start`] with `env` added to berthd's environment (kept
    /// across [`Berthd::restart`]).
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Result<Berthd> {
        let bin = berthd_bin();
        if !bin.exists() {
            bail!(
                "{} does not exist: build it first (cargo build -p berth-cri-server -p berth-runtime -p berth-monitor, or hack/test.sh)",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new().prefix("berth-test-").tempdir()?;
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let socket = state.join("berth.sock");
        let cfg = dir.path().join("berth.toml");
        std::fs::write(&cfg, config)?;
        if !config.contains("cgroup_prefix") {
            // berthd's restart recovery removes pod cgroups under its prefix
            // that its own state does not know: parallel test daemons each
            // need their own. A drop-in, so the test's [runtime] table stays intact.
            let drop_ins = dir.path().join("berth.d");
            std::fs::create_dir_all(&drop_ins)?;
            let name = dir.path().file_name().and_then(|n| n.to_str()).unwrap_or("berth-test");
            std::fs::write(
                drop_ins.join("00-test-harness.toml"),
                format!("[runtime]\ncgroup_prefix = \"/{name}\"\n"),
            )?;
        }
        let mut d = Berthd {
            log: dir.path().join("berthd.log"),
            dir: Some(dir),
            root,
            state,
            socket,
            config: cfg,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            proc: None,
        };
        d.spawn()?;
        Ok(d)
    }

    /// The private temp dir holding root, state, config and log.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(berthd_bin());
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--log-level")
            .arg("debug,h2=info,hyper=info,tower=info")
            .env("RUST_BACKTRACE", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut p = Guarded::spawn("berthd", cmd, &self.log)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = p.try_wait() {
                bail!("berthd exited ({status}) during startup:\n{}", self.log_tail());
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "berthd did not serve {} within 30s:\n{}",
                    self.socket.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.proc = Some(p);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid())
    }

    /// The last 16 KiB of berthd's log (stdout and stderr).
    pub fn log_tail(&self) -> String {
        process::tail(&self.log, 16 * 1024)
    }

    /// SIGKILL, no cleanup chance for berthd.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill_now();
        }
    }

    /// SIGTERM and wait; returns whether berthd exited 0.
    pub fn stop(&mut self) -> bool {
        self.stop_within(Duration::from_secs(15))
    }

    fn stop_within(&mut self, grace: Duration) -> bool {
        match self.proc.take() {
            Some(mut p) => {
                let t = Instant::now();
                let ok = p.stop(grace).is_some_and(|s| s.success());
                if !ok {
                    eprintln!("berthd did not exit 0 within {:?} of SIGTERM", t.elapsed());
                }
                ok
            }
            None => true,
        }
    }

    /// Starts berthd again on the same dirs and config.
    pub fn restart(&mut self) -> Result<()> {
        if self.proc.is_some() {
            self.stop();
        }
        self.spawn()
    }

    async fn channel(&self) -> Result<Channel> {
        let path = self.socket.clone();
        let ch = Endpoint::try_from("http://[::]:50051")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
            .with_context(|| format!("connecting to {}", self.socket.display()))?;
        Ok(ch)
    }

    /// A CRI ImageService client, as the kubelet's.
    pub async fn images(&self) -> ImageServiceClient<Channel> {
        let ch = self.channel().await.expect("CRI channel");
        ImageServiceClient::new(ch).max_decoding_message_size(16 << 20)
    }

    /// A CRI RuntimeService client.
    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        let ch = self.channel().await.expect("CRI channel");
        RuntimeServiceClient::new(ch).max_decoding_message_size(16 << 20)
    }

    /// Runs `berthctl --endpoint unix://SOCKET ARGS…`, returning (success, stdout, stderr).
    pub fn berthctl(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let out = Command::new(berthctl_bin())
            .arg("--endpoint")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .output()
            .context("running berthctl")?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Stop and remove every pod of this berthd over CRI, from a synchronous
    /// context (a test's Drop guard, while its own runtime is blocked or
    /// panicking): on a thread with its own runtime and connection. Errors
    /// are printed, not raised.
    pub fn remove_all_pods_blocking(&self) {
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                rt.block_on(async {
                    let Ok(ch) = self.channel().await else { return };
                    let mut c = RuntimeServiceClient::new(ch);
                    let Ok(listed) = c.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await else {
                        return;
                    };
                    for pod in listed.into_inner().items {
                        let id = pod.id;
                        let _ = c
                            .stop_pod_sandbox(StopPodSandboxRequest {
                                pod_sandbox_id: id.clone(),
                            })
                            .await;
                        if let Err(e) = c
                            .remove_pod_sandbox(RemovePodSandboxRequest {
                                pod_sandbox_id: id.clone(),
                            })
                            .await
                        {
                            eprintln!("cleanup: RemovePodSandbox {id}: {e}");
                        }
                    }
                });
            });
        });
    }

    /// `<root>/snapshots/<hex>` for a `sha256:<hex>` chain ID.
    pub fn snapshot_dir(&self, chain_id: &str) -> PathBuf {
        self.root
            .join("snapshots")
            .join(chain_id.strip_prefix("sha256:").unwrap_or(chain_id))
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        let clean = self.stop_within(Duration::from_secs(5));
        if std::thread::panicking() || !clean {
            // Leave a trace for the failing test's output.
            eprintln!("--- berthd log ({}) ---\n{}", self.log.display(), self.log_tail());
        }
        if let Some(d) = self.dir.take() {
            let path = d.path().to_path_buf();
            unmount_everything_under(&path);
            if let Err(e) = d.close() {
                eprintln!("could not remove {}: {e}", path.display());
            }
        }
    }
}

/// Detach every mount under `dir` (deepest first): the engine's private
/// self-bind of its pods root and anything a failed test left, so the temp
/// dir can be removed.
pub fn unmount_everything_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut targets: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|t| PathBuf::from(t.replace("\\040", " ")))
        .filter(|t| t.starts_with(dir))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
    targets.dedup();
    for t in targets {
        let _ = nix::mount::umount2(&t, nix::mount::MntFlags::MNT_DETACH);
    }
}
