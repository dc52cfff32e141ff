//! berthd's life: take the instance locks, open the stores, serve CRI on the
//! unix socket, and on SIGTERM/SIGINT stop accepting, let in-flight calls
//! finish, remove the socket and exit 0.

pub mod authority;
pub mod decode_errors;
pub mod lock;
pub mod socket;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_images::{ImageService as ImageStore, StoreOptions};
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;

use berth_cni::{AutoNetwork, BridgeConfig, BridgeNetwork, CniRunner, CniRunnerConfig};
use berth_runtime::engine::Engine;

use crate::config::Config;
use crate::image::ImageHandlers;
use crate::introspect::proto::introspect_server::IntrospectServer;
use crate::introspect::IntrospectHandlers;
use crate::runtime::RuntimeHandlers;
use crate::sandbox::files::HostFiles;
use crate::services::{IdLocks, Services};
use crate::store::CriStore;
use lock::InstanceLock;

/// The kubelet sends and accepts messages up to 16 MiB.
const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// How long in-flight calls get to finish after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// After the last call finished, how long answers get to be written out.
const FLUSH_GRACE: Duration = Duration::from_millis(200);

pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let socket_path = config.socket_path();
    make_dir(&config.root, 0o700)?;
    make_dir(&config.state, 0o711)?;
    if let Some(parent) = socket_path.parent() {
        make_dir(parent, 0o711)?;
    }
    let _root_lock = InstanceLock::acquire(
        &config.root.join("berthd.lock"),
        &format!("root dir {}", config.root.display()),
    )?;
    // Lock files stay on disk: removing one while a second berthd waits on
    // it would let two daemons each lock a different inode.
    let _socket_lock = InstanceLock::acquire(
        &socket_path.with_extension("lock"),
        &format!("socket {}", socket_path.display()),
    )?;

    let store = {
        let (root, registry) = (config.root.clone(), config.registry_config());
        let opts = StoreOptions {
            max_concurrent_downloads: config.images.max_concurrent_downloads,
            max_layer_uncompressed_bytes: config.images.max_layer_uncompressed_bytes,
        };
        tokio::task::spawn_blocking(move || ImageStore::open(&root, registry, opts))
            .await?
            .context("open image store")?
    };
    let store = Arc::new(store);
    let streaming = crate::streaming::server::bind(&config.streaming).await?;
    let streaming_handle = Arc::new(crate::streaming::Streaming::new(
        &config.streaming,
        streaming.base_url().to_string(),
    ));
    let services = Arc::new(build_services(config.clone(), store.clone(), streaming_handle)?);
    crate::container::recover(&services)
        .await
        .context("recover container records")?;
    crate::recovery::recover(&services).await.context("restart recovery")?;

    let _metrics = match config.metrics_address.parse() {
        Ok(address) => Some(
            crate::metrics_server::serve(address)
                .await
                .with_context(|| format!("metrics on {address}"))?
                .1,
        ),
        Err(_) => None,
    };
    // Handlers first: a client can reach the socket the moment it is bound,
    // and a SIGTERM before the handlers exist would kill berthd uncleanly.
    let stop_signals = StopSignals::install()?;
    tracing::info!(url = streaming.base_url(), "streaming server listening");
    let _streaming_server = AbortOnDrop(crate::streaming::server::spawn(streaming, services.clone()));
    let listener = socket::bind(&socket_path)?;
    tracing::info!(socket = %socket_path.display(), root = %config.root.display(), state = %config.state.display(), "berthd serving CRI v1");

    let runtime = RuntimeServiceServer::new(RuntimeHandlers::new(services.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let images = ImageServiceServer::new(ImageHandlers::new(store.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let introspect = IntrospectServer::new(IntrospectHandlers::new(store.clone()));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(decode_errors::DecodeErrorsLayer)
            .add_service(runtime)
            .add_service(images)
            .add_service(introspect)
            .serve_with_incoming_shutdown(incoming(listener), async {
                let _ = stop_rx.await;
            }),
    );

    let signal_name = stop_signals.wait().await;
    tracing::info!(
        signal = signal_name,
        in_flight = crate::edge::in_flight(),
        "stopping: no new connections, draining in-flight calls"
    );
    // Remove the socket first so no new client reaches this daemon, then stop
    // accepting. Open but idle connections (the kubelet keeps one) are not
    // waited for: only calls in flight are.
    let _ = std::fs::remove_file(&socket_path);
    let _ = stop_tx.send(());
    if tokio::time::timeout(DRAIN_TIMEOUT, crate::edge::wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, in_flight = crate::edge::in_flight(), "in-flight calls did not finish in time; exiting anyway");
    }
    // Let the last answers reach their clients; then close whatever is left.
    match tokio::time::timeout(FLUSH_GRACE, server).await {
        Ok(joined) => joined?.context("gRPC server")?,
        Err(_) => tracing::debug!("closing idle client connections"),
    }
    tracing::info!("berthd stopped");
    Ok(())
}

/// The engine, the pod network and the CRI store, on the configured dirs.
fn build_services(
    config: Arc<Config>,
    images: Arc<ImageStore>,
    streaming: Arc<crate::streaming::Streaming>,
) -> anyhow::Result<Services> {
    let runtime_binary = if config.runtime.binary.is_empty() {
        std::env::current_exe()
            .context("locate berthd")?
            .with_file_name("berth-runtime")
    } else {
        std::path::PathBuf::from(&config.runtime.binary)
    };
    let engine =
        Engine::new(config.state.join("runtime"), runtime_binary).with_cgroup_prefix(&config.runtime.cgroup_prefix);
    let cri = CriStore::open(&config.root.join("cri.redb")).context("open the pod/container store")?;
    let cni = CniRunner::new(CniRunnerConfig {
        conf_dir: config.cni.conf_dir.clone(),
        bin_dirs: config.cni.bin_dirs.clone(),
        cache_dir: config.state.join("cni-cache"),
        ..CniRunnerConfig::default()
    });
    let subnet = config
        .network
        .subnet
        .parse()
        .map_err(|e| anyhow::anyhow!("network.subnet: {e}"))?;
    let bridge = BridgeNetwork::new(BridgeConfig {
        bridge: config.network.bridge.clone(),
        subnet,
        ipam_dir: config.root.join("network/ipam").join(&config.network.bridge),
        chain_prefix: config.network.chain_prefix.clone(),
        ..BridgeConfig::default()
    })
    .context("built-in network")?;
    Ok(Services {
        pods_dir: config.state.join("pods"),
        containers_dir: config.root.join("containers"),
        config,
        images,
        store: Arc::new(cri),
        engine: Arc::new(engine),
        network: Arc::new(AutoNetwork::new(cni, bridge)),
        host_files: HostFiles::default(),
        locks: IdLocks::default(),
        streaming,
    })
}

/// Accepted CRI connections, each behind [`authority::AuthorityFix`] so
/// grpc-core and grpc-java clients (socket path as `:authority`) are served.
fn incoming(
    listener: tokio::net::UnixListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<authority::AuthorityFix<tokio::net::UnixStream>>> {
    use tokio_stream::StreamExt;
    UnixListenerStream::new(listener).map(|conn| conn.map(authority::AuthorityFix::new))
}

/// Aborts a background task when dropped (berthd's servers end with it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// SIGTERM and SIGINT, caught from the moment `install` returns.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the first stop signal received.
    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Create `dir` (and parents) if missing; a dir we create gets `mode`.
fn make_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .with_context(|| format!("create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", dir.display()))?;
    }
    Ok(())
}
