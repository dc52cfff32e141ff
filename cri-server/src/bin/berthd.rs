//! berthd: the berth CRI daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_cri_server::config::{self, Config, ConfigSource, DEFAULT_CONFIG_FILE};
use berth_cri_server::{daemon, observability};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "berthd", version, about = "berth: a Kubernetes CRI v1 container runtime")]
struct Args {
    /// Config file; drop-ins are read from `berth.d/` beside it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Persistent root dir (images, metadata). Overrides `root`.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Volatile state dir. Overrides `state`.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// CRI socket path. Overrides `socket` (default `<state>/berth.sock`).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Log filter (`info`, `debug`, …). Overrides `log_level`.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Prometheus address `ip:port`. Overrides `metrics_address`.
    #[arg(long, value_name = "ADDR")]
    metrics_address: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the full default config.
    Default,
    /// Print the effective config (file + drop-ins + flags), after validation.
    Show,
}

fn effective_config(args: &Args) -> anyhow::Result<Config> {
    let source = match &args.config {
        Some(file) => ConfigSource {
            file: file.clone(),
            explicit: true,
        },
        None => ConfigSource {
            file: PathBuf::from(DEFAULT_CONFIG_FILE),
            explicit: false,
        },
    };
    let mut config = config::load(&source)?;
    if let Some(root) = &args.root {
        config.root = root.clone();
    }
    if let Some(state) = &args.state {
        config.state = state.clone();
    }
    if let Some(socket) = &args.socket {
        config.socket = Some(socket.clone());
    }
    if let Some(address) = &args.metrics_address {
        config.metrics_address = address.clone();
    }
    if let Some(level) = &args.log_level {
        config.log_level = level.clone();
    }
    config
        .validate()
        .map_err(|(key, reason)| anyhow::anyhow!("command-line flag for `{key}`: {reason}"))?;
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match &args.command {
        Some(Command::Config {
            what: ConfigCommand::Default,
        }) => {
            let mut text = String::from("# berthd default configuration (/etc/berth/berth.toml)\n");
            text.push_str("# socket defaults to \"<state>/berth.sock\"\n");
            text.push_str("# socket = \"/run/berth/berth.sock\"\n");
            text.push_str(&toml::to_string_pretty(&Config::default())?);
            text.push_str("\n# Per registry host (as in image references):\n# [registries.\"registry.k8s.io\"]\n# mirrors = [\"http://127.0.0.1:5001\"]\n# insecure = false\n# username = \"…\"\n# password = \"…\"\n# ca_file = \"/etc/berth/certs/registry.pem\"\n");
            print!("{text}");
            Ok(())
        }
        Some(Command::Config {
            what: ConfigCommand::Show,
        }) => {
            print!("{}", toml::to_string_pretty(&effective_config(&args)?)?);
            Ok(())
        }
        None => {
            let config = effective_config(&args)?;
            observability::init(&config.log_level);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(daemon::run(config))
        }
    }
}
