//! The config schema. Unknown keys are refused (`deny_unknown_fields`) and
//! every field has a default that works on a fresh machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use berth_images::reference::Reference;
use berth_images::registry::{HostConfig, Platform, RegistryConfig};
use serde::{Deserialize, Serialize};

/// Result of a validation: `Err((key, reason))`.
pub type Check = Result<(), (String, String)>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent store: image blobs, snapshots, metadata.
    pub root: PathBuf,
    /// Volatile state: socket, pinned namespaces, bundles.
    pub state: PathBuf,
    /// CRI socket; defaults to `<state>/berth.sock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// `tracing` filter: `info`, `debug`, `berth_images=debug,info`, …
    pub log_level: String,
    /// Address for Prometheus `GET /metrics` (e.g. `127.0.0.1:9464`); empty disables.
    pub metrics_address: String,
    pub images: ImagesConfig,
    pub cni: CniConfig,
    /// The built-in pod network, used when no CNI config exists.
    pub network: NetworkConfig,
    pub runtime: RuntimeConfig,
    /// The streaming server (CRI Exec, Attach, PortForward).
    pub streaming: StreamingConfig,
    /// Per upstream registry host: mirrors, plain-HTTP, credentials, TLS.
    pub registries: BTreeMap<String, HostConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/var/lib/berth"),
            state: PathBuf::from("/run/berth"),
            socket: None,
            log_level: "info".into(),
            metrics_address: String::new(),
            images: ImagesConfig::default(),
            cni: CniConfig::default(),
            network: NetworkConfig::default(),
            runtime: RuntimeConfig::default(),
            streaming: StreamingConfig::default(),
            registries: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Layers downloaded at once, across all pulls.
    pub max_concurrent_downloads: usize,
    /// Platform selected from multi-arch images: `os/arch[/variant]`.
    pub platform: String,
    /// Manifests and indexes above this size are refused.
    pub max_manifest_bytes: u64,
    /// Image configs above this size are refused.
    pub max_config_bytes: u64,
    /// A layer whose uncompressed content exceeds this is refused (decompression bombs).
    pub max_layer_uncompressed_bytes: u64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        let registry = RegistryConfig::default();
        ImagesConfig {
            max_concurrent_downloads: 3,
            platform: "linux/amd64".into(),
            max_manifest_bytes: registry.max_manifest_bytes,
            max_config_bytes: registry.max_config_bytes,
            max_layer_uncompressed_bytes: berth_images::StoreOptions::default().max_layer_uncompressed_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Directory of CNI network configs (the lexically first is used).
    pub conf_dir: PathBuf,
    /// Directories searched for CNI plugin binaries, in order.
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Bridge of the built-in network.
    pub bridge: String,
    /// IPv4 subnet pods get addresses from; the bridge takes the first host address.
    pub subnet: String,
    /// Prefix of the iptables chains the built-in network owns (`BERTH` →
    /// `BERTH-HOSTPORTS`, …). On start berthd removes hostPort rules in its
    /// chains that name pods it does not know, so berthds sharing a machine
    /// (tests) need their own.
    pub chain_prefix: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bridge: "berth0".into(),
            subnet: "10.88.0.0/16".into(),
            chain_prefix: "BERTH".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Only `cgroupfs` is supported.
    pub cgroup_driver: String,
    /// The `berth-runtime` binary; empty means next to `berthd`.
    pub binary: String,
    /// cgroup path under which pods get `<prefix>/pods/<id>`. Restart
    /// recovery removes pod cgroups under it that this berthd does not know,
    /// so two berthds on one machine (tests) need different prefixes.
    pub cgroup_prefix: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cgroup_driver: "cgroupfs".into(),
            binary: String::new(),
            cgroup_prefix: "/berth".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// `ip:port` the streaming server listens on. Port 0 (the default) takes
    /// a free port; keep it on loopback unless the kubelet is elsewhere
    /// (the URLs carry a secret token, and without TLS travel in clear).
    pub address: String,
    /// PEM certificate chain and key: serve HTTPS. Both or neither.
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// Seconds a URL handed out by Exec/Attach/PortForward stays usable.
    pub token_ttl_seconds: u64,
    /// Seconds a session may pass with no data either way before it is
    /// ended (the kubelet's default: 4 hours).
    pub idle_timeout_seconds: u64,
    /// Sessions served at once; more are refused with 503.
    pub max_sessions: usize,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1:0".into(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            token_ttl_seconds: 60,
            idle_timeout_seconds: 4 * 3600,
            max_sessions: 1024,
        }
    }
}

impl StreamingConfig {
    fn validate(&self) -> Check {
        if self.address.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                "streaming.address".into(),
                format!("{:?} is not an ip:port address", self.address),
            ));
        }
        if self.tls_cert_file.is_empty() != self.tls_key_file.is_empty() {
            return Err((
                "streaming.tls_cert_file".into(),
                "tls_cert_file and tls_key_file go together: set both or neither".into(),
            ));
        }
        for (key, file) in [
            ("streaming.tls_cert_file", &self.tls_cert_file),
            ("streaming.tls_key_file", &self.tls_key_file),
        ] {
            if !file.is_empty() {
                absolute(key, Path::new(file))?;
            }
        }
        if !(1..=86_400).contains(&self.token_ttl_seconds) {
            return Err((
                "streaming.token_ttl_seconds".into(),
                format!("{} is out of range 1..=86400", self.token_ttl_seconds),
            ));
        }
        if self.idle_timeout_seconds == 0 {
            return Err(("streaming.idle_timeout_seconds".into(), "must be at least 1".into()));
        }
        if !(1..=65_536).contains(&self.max_sessions) {
            return Err((
                "streaming.max_sessions".into(),
                format!("{} is out of range 1..=65536", self.max_sessions),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The CRI socket path in effect.
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| self.state.join("berth.sock"))
    }

    /// The registry client's settings.
    pub fn registry_config(&self) -> RegistryConfig {
        RegistryConfig {
            hosts: self.registries.clone(),
            platform: parse_platform(&self.images.platform).unwrap_or_default(),
            max_manifest_bytes: self.images.max_manifest_bytes,
            max_config_bytes: self.images.max_config_bytes,
        }
    }

    /// Check every value; `Err((key, reason))` names the first bad one.
    pub fn validate(&self) -> Check {
        absolute("root", &self.root)?;
        absolute("state", &self.state)?;
        if let Some(s) = &self.socket {
            absolute("socket", s)?;
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| ("log_level".to_string(), format!("not a valid log filter: {e}")))?;
        if !self.metrics_address.is_empty() && self.metrics_address.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                "metrics_address".into(),
                format!("{:?} is not an ip:port address", self.metrics_address),
            ));
        }
        let n = self.images.max_concurrent_downloads;
        if !(1..=64).contains(&n) {
            return Err((
                "images.max_concurrent_downloads".into(),
                format!("{n} is out of range 1..=64"),
            ));
        }
        parse_platform(&self.images.platform).ok_or_else(|| {
            (
                "images.platform".to_string(),
                format!("{:?} is not os/arch[/variant]", self.images.platform),
            )
        })?;
        for (key, value) in [
            ("images.max_manifest_bytes", self.images.max_manifest_bytes),
            ("images.max_config_bytes", self.images.max_config_bytes),
            (
                "images.max_layer_uncompressed_bytes",
                self.images.max_layer_uncompressed_bytes,
            ),
        ] {
            if value < 1024 {
                return Err((key.into(), format!("{value} is below the 1024-byte minimum")));
            }
        }
        self.streaming.validate()?;
        absolute("cni.conf_dir", &self.cni.conf_dir)?;
        for (i, dir) in self.cni.bin_dirs.iter().enumerate() {
            absolute(&format!("cni.bin_dirs[{i}]"), dir)?;
        }
        if self.runtime.cgroup_driver != "cgroupfs" {
            return Err((
                "runtime.cgroup_driver".into(),
                format!(
                    "{:?} is not supported; berth drives cgroups directly (\"cgroupfs\")",
                    self.runtime.cgroup_driver
                ),
            ));
        }
        let bridge = &self.network.bridge;
        if bridge.is_empty()
            || bridge.len() > 15
            || !bridge.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err((
                "network.bridge".into(),
                format!("{bridge:?} is not an interface name (1-15 of [A-Za-z0-9._-])"),
            ));
        }
        if self
            .network
            .subnet
            .parse::<berth_cni::IpNetwork>()
            .map_or(true, |n| !n.addr.is_ipv4())
        {
            return Err((
                "network.subnet".into(),
                format!("{:?} is not an IPv4 CIDR", self.network.subnet),
            ));
        }
        let chains = &self.network.chain_prefix;
        if chains.is_empty()
            || chains.len() > 15
            || !chains.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err((
                "network.chain_prefix".into(),
                format!("{chains:?} must be 1-15 of [A-Za-z0-9_-]"),
            ));
        }
        if !self.runtime.binary.is_empty() {
            absolute("runtime.binary", Path::new(&self.runtime.binary))?;
        }
        let prefix = Path::new(&self.runtime.cgroup_prefix);
        absolute("runtime.cgroup_prefix", prefix)?;
        if prefix.components().count() < 2 || prefix.components().any(|c| c == std::path::Component::ParentDir) {
            return Err((
                "runtime.cgroup_prefix".into(),
                format!("{prefix:?} must be a cgroup below the root, without \"..\""),
            ));
        }
        for (host, cfg) in &self.registries {
            validate_registry(host, cfg)?;
        }
        Ok(())
    }
}

fn absolute(key: &str, path: &Path) -> Check {
    if path.is_absolute() {
        Ok(())
    } else {
        Err((key.into(), format!("{} is not an absolute path", path.display())))
    }
}

/// `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> Option<Platform> {
    let mut parts = s.split('/');
    let os = parts.next().filter(|p| !p.is_empty())?;
    let architecture = parts.next().filter(|p| !p.is_empty())?;
    let variant = match parts.next() {
        Some(v) if !v.is_empty() => Some(v.to_string()),
        Some(_) => return None,
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Platform {
        os: os.into(),
        architecture: architecture.into(),
        variant,
    })
}

fn validate_registry(host: &str, cfg: &HostConfig) -> Check {
    let key = |field: &str| format!("registries.\"{host}\"{field}");
    let parsed = Reference::parse(&format!("{host}/probe")).ok();
    if parsed.as_ref().map(|r| r.registry()) != Some(host) {
        return Err((
            key(""),
            format!("{host:?} is not a registry host[:port] as it appears in image references"),
        ));
    }
    for (i, mirror) in cfg.mirrors.iter().enumerate() {
        let rest = mirror
            .strip_prefix("http://")
            .or_else(|| mirror.strip_prefix("https://"));
        let host_part = rest.map(|r| r.split('/').next().unwrap_or(""));
        if host_part.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
            return Err((
                key(&format!(".mirrors[{i}]")),
                format!("{mirror:?} is not an http:// or https:// URL"),
            ));
        }
    }
    if let Some(auth) = &cfg.auth {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        if !decoded.is_some_and(|d| d.contains(':')) {
            return Err((key(".auth"), "must be base64 of \"user:password\"".into()));
        }
    }
    if cfg.username.is_some() != cfg.password.is_some() {
        return Err((key(".username"), "username and password must be set together".into()));
    }
    if let Some(ca) = &cfg.ca_file {
        absolute(&key(".ca_file"), ca)?;
    }
    Ok(())
}
