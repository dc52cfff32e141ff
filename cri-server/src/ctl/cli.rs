//! berthctl's command line, apart from the handlers.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use super::stream::Transport;

pub const DEFAULT_ENDPOINT: &str = "unix:///run/berth/berth.sock";

#[derive(Parser, Debug)]
#[command(name = "berthctl", version, about = "Debug a berth node over CRI (crictl-style)")]
pub struct Cli {
    /// CRI endpoint: `unix:///path/to.sock` or a socket path.
    #[arg(long, short = 'r', global = true, env = "CONTAINER_RUNTIME_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Timeout for each call (pull and `logs -f` have none), e.g. `30s`, `2m`.
    /// Given before the command, as crictl's `-t`: after it, `-t` is the
    /// command's own (`stop -t SECONDS`, `exec -t`).
    #[arg(long, short = 't', default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runtime name and versions.
    Version,
    /// Runtime status conditions and effective config.
    Info {
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Json)]
        output: Format,
    },
    /// Pull an image, showing per-layer progress.
    Pull {
        image: String,
        /// Registry credentials `USER[:PASSWORD]`.
        #[arg(long)]
        creds: Option<String>,
        /// base64("user:password"), as in a docker config.json.
        #[arg(long)]
        auth: Option<String>,
        /// A bearer token sent to the registry as-is.
        #[arg(long)]
        registry_token: Option<String>,
        /// No progress, only the result.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// List images.
    Images {
        /// Only images this reference resolves to.
        image: Option<String>,
        /// Only image IDs.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Show digests.
        #[arg(long)]
        digests: bool,
        /// Full image IDs.
        #[arg(long)]
        no_trunc: bool,
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Image status, with the image config.
    #[command(name = "inspecti")]
    InspectImage {
        #[arg(required = true)]
        images: Vec<String>,
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Json)]
        output: Format,
    },
    /// Remove images by ID, tag or digest.
    Rmi {
        images: Vec<String>,
        /// Remove every image.
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// Bytes and inodes used by the image store.
    #[command(name = "imagefsinfo")]
    ImageFsInfo {
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Json)]
        output: Format,
    },
    /// Run a pod sandbox from a config file (JSON or YAML); prints its ID.
    Runp {
        /// PodSandboxConfig in crictl's JSON or YAML shape.
        config: PathBuf,
        /// Runtime handler (RuntimeClass) for the pod.
        #[arg(long)]
        runtime: Option<String>,
    },
    /// List pod sandboxes.
    Pods {
        /// Only pods whose ID starts with this.
        #[arg(long)]
        id: Option<String>,
        /// Only pods whose name contains this.
        #[arg(long)]
        name: Option<String>,
        /// Only pods whose namespace contains this.
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long, short = 's', value_enum)]
        state: Option<PodState>,
        /// Only pods with this label (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Only the most recently created pod.
        #[arg(long, short = 'l')]
        latest: bool,
        #[command(flatten)]
        out: ListOutput,
    },
    /// Pod sandbox status, with berthd's verbose info.
    Inspectp {
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        out: InspectOutput,
    },
    /// Stop pod sandboxes (and their containers).
    Stopp {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove pod sandboxes (and their containers).
    Rmp {
        ids: Vec<String>,
        /// Every pod sandbox.
        #[arg(long, short = 'a')]
        all: bool,
        /// Stop a Ready pod before removing it.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Create a container in a pod; prints its ID.
    Create {
        pod: String,
        /// ContainerConfig in crictl's JSON or YAML shape.
        container_config: PathBuf,
        /// The pod's PodSandboxConfig, as given to runp.
        pod_config: PathBuf,
        /// Pull the image first.
        #[arg(long)]
        pull: bool,
    },
    /// Start created containers.
    Start {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List containers (only running ones unless -a).
    Ps {
        /// Containers in every state.
        #[arg(long, short = 'a')]
        all: bool,
        /// Only containers whose ID starts with this.
        #[arg(long)]
        id: Option<String>,
        /// Only containers of this pod (ID or prefix).
        #[arg(long, short = 'p')]
        pod: Option<String>,
        /// Only containers whose name contains this.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_enum)]
        state: Option<ContainerStateArg>,
        /// Only containers with this label (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Only the most recently created container.
        #[arg(long, short = 'l')]
        latest: bool,
        #[command(flatten)]
        out: ListOutput,
    },
    /// Container status, with berthd's verbose info.
    Inspect {
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        out: InspectOutput,
    },
    /// Stop running containers.
    Stop {
        /// Seconds to wait after the stop signal before killing.
        #[arg(long = "timeout", short = 't', default_value_t = 0)]
        grace: i64,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove containers.
    Rm {
        ids: Vec<String>,
        /// Every container.
        #[arg(long, short = 'a')]
        all: bool,
        /// Stop a running container before removing it.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Print a container's log.
    Logs {
        id: String,
        /// Keep printing new lines until the container exits.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the last N lines (-1: all).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        tail: i64,
        /// Prefix each line with its RFC 3339 timestamp.
        #[arg(long)]
        timestamps: bool,
        /// Only lines newer than this: a duration (`5m`) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
    /// Run a command in a running container; berthctl exits with its exit
    /// code. Without -i and -t it runs to completion first (ExecSync);
    /// with either it streams (Exec).
    Exec {
        /// Seconds before the command is killed (0: none); ExecSync only.
        #[arg(long = "timeout", default_value_t = 0)]
        exec_timeout: i64,
        /// Allocate a terminal (the local one goes raw while -i forwards it).
        #[arg(long, short = 't')]
        tty: bool,
        /// Forward stdin.
        #[arg(long, short = 'i')]
        interactive: bool,
        /// Run with ExecSync even with -i or -t (no stdin, no terminal).
        #[arg(long, short = 's')]
        sync: bool,
        #[command(flatten)]
        transport: TransportArg,
        id: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Attach to a running container's stdio (and terminal, with -t).
    Attach {
        /// The container has a terminal (as created with `tty: true`).
        #[arg(long, short = 't')]
        tty: bool,
        /// Forward stdin (the container needs `stdin: true`).
        #[arg(long = "stdin", short = 'i')]
        stdin: bool,
        #[command(flatten)]
        transport: TransportArg,
        id: String,
    },
    /// Forward local ports to ports in a pod until interrupted.
    #[command(name = "port-forward")]
    PortForward {
        #[command(flatten)]
        transport: TransportArg,
        pod: String,
        /// `[LOCAL:]REMOTE`: listen on 127.0.0.1:LOCAL (0 or empty: any free
        /// port) and forward to REMOTE in the pod.
        #[arg(required = true, value_parser = parse_port_mapping)]
        ports: Vec<PortMapping>,
    },
}

/// `--transport spdy|websocket` for streaming commands.
#[derive(Args, Debug, Clone, Copy)]
pub struct TransportArg {
    /// How to reach berthd's streaming server.
    #[arg(long, value_enum, default_value_t = Transport::Spdy)]
    pub transport: Transport,
}

/// One `[LOCAL:]REMOTE` of port-forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// 0: any free port.
    pub local: u16,
    pub remote: u16,
}

/// `8080` (same port locally), `18080:8080`, `:8080` or `0:8080` (any
/// free local port), as kubectl and crictl read them.
pub fn parse_port_mapping(s: &str) -> Result<PortMapping, String> {
    let (local, remote) = match s.split_once(':') {
        None => (s, s),
        Some((local, remote)) => (if local.is_empty() { "0" } else { local }, remote),
    };
    let local: u16 = local
        .parse()
        .map_err(|_| format!("invalid local port {local:?} in {s:?}"))?;
    let remote: u16 = remote
        .parse()
        .map_err(|_| format!("invalid remote port {remote:?} in {s:?}"))?;
    if remote == 0 {
        return Err(format!("remote port must be > 0 in {s:?}"));
    }
    Ok(PortMapping { local, remote })
}

/// `-o table|json|yaml` for listings.
#[derive(Args, Debug, Clone, Copy)]
pub struct ListOutput {
    /// Only IDs, one a line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Full IDs in the table.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `-o json|yaml` for inspect commands.
#[derive(Args, Debug, Clone, Copy)]
pub struct InspectOutput {
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Json)]
    pub output: Format,
}

/// Pod sandbox state names accepted by `pods --state`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    Ready,
    #[value(name = "notready")]
    NotReady,
}

/// Container state names accepted by `ps --state`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerStateArg {
    Created,
    Running,
    Exited,
    Unknown,
}

/// `KEY=VALUE` for label selectors.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("label {s:?} is not KEY=VALUE")),
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// `500ms`, `30s`, `2m`, `1h`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = digits.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_millis(ms))
}

/// A socket path from an endpoint string.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(format!(
            "endpoint {endpoint:?} is not unix:///absolute/path (only unix sockets are supported)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_do_not_clash() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["berthctl", "-t", "5s", "stop", "-t", "3", "abc"]).unwrap();
        assert_eq!(cli.timeout, Duration::from_secs(5));
        assert!(matches!(cli.command, Command::Stop { grace: 3, .. }));
        let cli = Cli::try_parse_from(["berthctl", "exec", "-t", "abc", "ls", "-l"]).unwrap();
        assert!(matches!(cli.command, Command::Exec { tty: true, ref cmd, .. } if cmd == &["ls", "-l"]));
    }

    #[test]
    fn streaming_flags() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("berthctl").chain(args.iter().copied()));
        let cli = parse(&["exec", "-it", "abc", "sh", "-c", "exit 3"]).unwrap();
        match cli.command {
            Command::Exec {
                tty,
                interactive,
                sync,
                transport,
                ref id,
                ref cmd,
                ..
            } => {
                assert!(tty && interactive && !sync);
                assert_eq!(transport.transport, Transport::Spdy, "SPDY by default, as crictl");
                assert_eq!(id, "abc");
                assert_eq!(cmd, &["sh", "-c", "exit 3"]);
            }
            other => panic!("{other:?}"),
        }
        let cli = parse(&["exec", "--transport", "websocket", "-i", "abc", "cat"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Exec {
                interactive: true,
                tty: false,
                transport: TransportArg {
                    transport: Transport::WebSocket
                },
                ..
            }
        ));
        assert!(parse(&["exec", "--transport", "h2", "abc", "cat"]).is_err());

        let cli = parse(&["attach", "-t", "--stdin", "abc"]).unwrap();
        assert!(matches!(cli.command, Command::Attach { tty: true, stdin: true, ref id, .. } if id == "abc"));
        assert!(parse(&["attach"]).is_err());

        let cli = parse(&["port-forward", "--transport", "websocket", "pod1", "18080:8080", "9090"]).unwrap();
        match cli.command {
            Command::PortForward { transport, pod, ports } => {
                assert_eq!(transport.transport, Transport::WebSocket);
                assert_eq!(pod, "pod1");
                assert_eq!(
                    ports,
                    [
                        PortMapping {
                            local: 18080,
                            remote: 8080
                        },
                        PortMapping {
                            local: 9090,
                            remote: 9090
                        }
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["port-forward", "pod1"]).is_err(), "a port is required");
        assert!(parse(&["port-forward", "pod1", "x:80"]).is_err());
    }

    #[test]
    fn port_mappings() {
        assert_eq!(parse_port_mapping("80"), Ok(PortMapping { local: 80, remote: 80 }));
        assert_eq!(
            parse_port_mapping("8888:80"),
            Ok(PortMapping {
                local: 8888,
                remote: 80
            })
        );
        assert_eq!(parse_port_mapping(":80"), Ok(PortMapping { local: 0, remote: 80 }));
        assert_eq!(parse_port_mapping("0:80"), Ok(PortMapping { local: 0, remote: 80 }));
        assert!(parse_port_mapping("80:0").is_err());
        assert!(parse_port_mapping("0").is_err());
        assert!(parse_port_mapping("1:2:3").is_err());
        assert!(parse_port_mapping("70000").is_err());
        assert!(parse_port_mapping("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("5d").is_err() && parse_duration("x").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/berth/berth.sock").unwrap(),
            PathBuf::from("/run/berth/berth.sock")
        );
        assert_eq!(socket_path("/tmp/x.sock").unwrap(), PathBuf::from("/tmp/x.sock"));
        assert!(socket_path("tcp://1.2.3.4:5").is_err());
    }
}
