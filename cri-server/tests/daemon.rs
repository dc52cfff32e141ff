//! berthd as a process: socket, locks, config errors, UNIMPLEMENTED answers,
//! graceful stop. Runs without root, in temp dirs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_cri_server::ctl::client::connect;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");

/// A berthd on private dirs; killed on drop.
struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), "");
        let child = spawn(dir.path(), extra);
        let d = Daemon {
            child: Some(child),
            dir,
        };
        d.wait_for_socket();
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("state/berth.sock")
    }

    fn wait_for_socket(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.socket().exists() {
            assert!(Instant::now() < deadline, "berthd did not create its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    fn stop(&mut self, signal: Signal) -> Output {
        kill(self.pid(), signal).unwrap();
        self.child.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(dir: &Path, extra: &[&str]) -> Child {
    Command::new(BERTHD)
        .args(["--config", &dir.join("berth.toml").display().to_string()])
        .args(["--root", &dir.join("root").display().to_string()])
        .args(["--state", &dir.join("state").display().to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn write_config(dir: &Path, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("berth.toml"), body).unwrap();
}

fn run_berthd(dir: &Path, extra: &[&str]) -> Output {
    spawn(dir, extra).wait_with_output().unwrap()
}

#[test]
fn socket_is_0660_and_second_daemon_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let child = spawn(dir.path(), &[]);
    let daemon = Daemon {
        child: Some(child),
        dir,
    };
    daemon.wait_for_socket();
    let mode = std::fs::metadata(daemon.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    // Same root dir, other socket.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("none.toml"), "").unwrap();
    let out = Command::new(BERTHD)
        .args(["--root", &daemon.dir.path().join("root").display().to_string()])
        .args(["--state", &other.path().join("state").display().to_string()])
        .args(["--config", &other.path().join("none.toml").display().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("root dir") && err.contains(&daemon.pid().to_string()),
        "{err}"
    );

    // Same socket, other root dir.
    let out = Command::new(BERTHD)
        .args(["--root", &other.path().join("root").display().to_string()])
        .args(["--state", &other.path().join("state2").display().to_string()])
        .args(["--socket", &daemon.socket().display().to_string()])
        .args(["--config", &other.path().join("none.toml").display().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("socket") && err.contains(&daemon.pid().to_string()),
        "{err}"
    );
}

#[test]
fn config_errors_stop_startup_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "[images]\nmax_concurrent_downloads = 0\n");
    let out = run_berthd(dir.path(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("berth.toml") && err.contains("images.max_concurrent_downloads"),
        "{err}"
    );
    assert!(!dir.path().join("state/berth.sock").exists());

    std::fs::create_dir_all(dir.path().join("berth.d")).unwrap();
    write_config(dir.path(), "");
    std::fs::write(
        dir.path().join("berth.d/50-x.toml"),
        "[registries.\"docker.io\"]\nmirors = []\n",
    )
    .unwrap();
    let out = run_berthd(dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("50-x.toml") && err.contains("mirors"),
        "{err}"
    );

    // A bad flag value is refused too.
    std::fs::remove_file(dir.path().join("berth.d/50-x.toml")).unwrap();
    let out = run_berthd(dir.path(), &["--socket", "relative.sock"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("socket"), "{err}");
}

#[test]
fn default_config_is_complete_and_loads_back() {
    let out = Command::new(BERTHD).args(["config", "default"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in [
        "root",
        "state",
        "log_level",
        "[images]",
        "[cni]",
        "conf_dir",
        "bin_dirs",
        "[runtime]",
        "mirrors",
    ] {
        assert!(text.contains(key), "default config lacks {key}:\n{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &text);
    let out = Command::new(BERTHD)
        .args([
            "--config",
            &dir.path().join("berth.toml").display().to_string(),
            "config",
            "show",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_version_status_and_unimplemented_naming_the_rpc() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let child = spawn(dir.path(), &[]);
    let daemon = Daemon {
        child: Some(child),
        dir,
    };
    daemon.wait_for_socket();
    let channel = connect(daemon.socket()).await.unwrap();
    let mut runtime = RuntimeServiceClient::new(channel.clone());
    let v = runtime.version(VersionRequest::default()).await.unwrap().into_inner();
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
        ("berth", "v1")
    );

    let status = runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let conditions = status.status.unwrap().conditions;
    for t in ["RuntimeReady", "NetworkReady"] {
        let c = conditions.iter().find(|c| c.r#type == t).unwrap();
        assert!(
            c.status || (!c.reason.is_empty() && !c.message.is_empty()),
            "{t} is false without a reason"
        );
    }

    let cfg = runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cfg.linux.unwrap().cgroup_driver, CgroupDriver::Cgroupfs as i32);

    let err = runtime
        .run_pod_sandbox(RunPodSandboxRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("config"), "{}", err.message());
    let err = runtime
        .checkpoint_container(CheckpointContainerRequest::default())
        .await
        .unwrap_err();
    assert!(err.code() == tonic::Code::Unimplemented && err.message().contains("CheckpointContainer"));

    let mut images = ImageServiceClient::new(channel);
    let err = images.pull_image(PullImageRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("image.image"), "{}", err.message());
    let err = images
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: "UPPER/case".into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let absent = images
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(absent.image.is_none());
    images
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

/// A fake registry that accepts a connection and answers only after `delay`.
async fn slow_registry(delay: Duration) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_calls_removes_socket_and_exits_0() {
    let (port, registry) = slow_registry(Duration::from_millis(1500)).await;
    let mut daemon = Daemon::start(&[]);
    let channel = connect(daemon.socket()).await.unwrap();
    let mut images = ImageServiceClient::new(channel);
    let reference = format!("127.0.0.1:{port}/slow/image:v1");
    let pull = tokio::spawn(async move {
        images
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: reference,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let socket = daemon.socket();
    let out = tokio::task::spawn_blocking(move || daemon.stop(Signal::SIGTERM))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!socket.exists(), "socket left behind");
    // The in-flight pull got its real answer (the registry's 404), not a reset.
    let answer = pull.await.unwrap().unwrap_err();
    assert_eq!(answer.code(), tonic::Code::NotFound, "{answer:?}");
    registry.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_also_stops_cleanly_and_a_restart_reuses_the_dirs() {
    let mut daemon = Daemon::start(&[]);
    let socket = daemon.socket();
    let out = daemon.stop(Signal::SIGINT);
    assert!(out.status.success());
    assert!(!socket.exists());
    // A new daemon on the same dirs starts (the locks were released).
    let child = spawn(daemon.dir.path(), &[]);
    daemon.child = Some(child);
    daemon.wait_for_socket();
    let channel = connect(daemon.socket()).await.unwrap();
    RuntimeServiceClient::new(channel)
        .version(VersionRequest::default())
        .await
        .unwrap();
}

/// The kubelet keeps its connection open between calls; that must not keep
/// berthd from stopping.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_an_idle_client_connection_still_exits_0() {
    let mut daemon = Daemon::start(&[]);
    let channel = connect(daemon.socket()).await.unwrap();
    let mut runtime = RuntimeServiceClient::new(channel);
    runtime.version(VersionRequest::default()).await.unwrap();
    let socket = daemon.socket();
    let pid = daemon.pid();
    let mut child = daemon.child.take().unwrap();
    kill(pid, Signal::SIGTERM).unwrap();
    // A hang guard, not a performance bound: the drain timeout is 30 s.
    let status = tokio::task::spawn_blocking(move || {
        for _ in 0..200 {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        None
    })
    .await
    .unwrap();
    let status = status.expect("berthd still running 20 s after SIGTERM with an idle client");
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists());
    // The connection is closed, not left half-alive.
    assert!(runtime.version(VersionRequest::default()).await.is_err());
}
