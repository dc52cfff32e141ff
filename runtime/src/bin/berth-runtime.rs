//! `berth-runtime`: the engine as an OCI runtime command line following
//! runc's contract (`create`, `start`, `state`, `kill`, `delete`, `run`,
//! `exec`, `list`), plus the hidden `monitor` mode the engine re-executes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use berth_runtime::container;
use berth_runtime::container::exec::ExecOptions;
use berth_runtime::engine::{CreateOptions, Engine, StdioMode};
use berth_runtime::monitor::{self, MonitorArgs};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "berth-runtime", version, about = "berth's OCI runtime")]
struct Cli {
    /// State directory (one subdirectory per container).
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// Log file for the runtime's own messages (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format (accepted for runc compatibility; berth writes text).
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Debug logging.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Bundle directory (holding config.json).
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    /// Write the init's pid here.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket receiving the pty master (terminal containers).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Let the monitor hold stdio and write this CRI log file.
    #[arg(long = "cri-log")]
    cri_log: Option<PathBuf>,
    id: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Set a container up; its process waits for `start`.
    Create(CreateArgs),
    /// Run the process of a created container.
    Start { id: String },
    /// Print the container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the init, or with --all to every process.
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// Remove a stopped container (--force: kill it first).
    Delete {
        id: String,
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// create + start, then wait for the exit (unless --detach).
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(long, short = 'd')]
        detach: bool,
    },
    /// Run a process in a running container.
    Exec {
        /// process.json (an OCI Process) instead of the arguments.
        #[arg(long, short = 'p')]
        process: Option<PathBuf>,
        #[arg(long, short = 't')]
        tty: bool,
        /// Unix socket receiving the pty master (with --tty).
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        /// Write the process's pid here once it runs.
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// uid[:gid]
        #[arg(long, short = 'u')]
        user: Option<String>,
        id: String,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// List containers.
    List,
    /// The per-container monitor (internal).
    #[command(hide = true)]
    Monitor {
        #[arg(long)]
        bundle: PathBuf,
        /// JSON StdioMode.
        #[arg(long)]
        stdio: String,
        id: String,
    },
}

fn init_tracing(cli: &Cli) {
    let level = if cli.debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| level.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    match &cli.log {
        Some(path) => {
            if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                // runc's --log-format json is accepted; records are text.
                builder.with_writer(std::sync::Mutex::new(f)).with_ansi(false).init();
            }
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
}

fn stdio_mode(a: &CreateArgs) -> StdioMode {
    if let Some(s) = &a.console_socket {
        StdioMode::ConsoleSocket(s.clone())
    } else if let Some(l) = &a.cri_log {
        StdioMode::Monitor {
            log_path: Some(l.clone()),
            stdin: false,
            stdin_once: false,
        }
    } else {
        StdioMode::Inherit
    }
}

fn create_opts(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        stdio: stdio_mode(a),
        pid_file: a.pid_file.clone(),
        overlay: None,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Monitor { bundle, stdio, id } = cli.command {
        // No tracing subscriber: the monitor stays small; its stderr goes
        // to monitor.log once it runs.
        let stdio: StdioMode = match serde_json::from_str(&stdio) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("berth-runtime monitor: bad --stdio: {e}");
                return ExitCode::from(2);
            }
        };
        monitor::run(MonitorArgs {
            root: cli.root,
            id,
            bundle,
            stdio,
        });
    }
    init_tracing(&cli);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("berth-runtime: {e:#}");
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let exe = std::env::current_exe().context("locate own executable")?;
    let engine = Engine::new(&cli.root, exe);
    match cli.command {
        Command::Create(a) => {
            engine.create(&create_opts(&a))?;
        }
        Command::Start { id } => engine.start(&id)?,
        Command::State { id } => {
            let c = engine.state(&id)?;
            println!("{}", serde_json::to_string_pretty(&c.oci())?);
        }
        Command::Kill { id, signal, all } => {
            let sig = container::kill::parse_signal(&signal).with_context(|| format!("unknown signal {signal:?}"))?;
            engine.kill(&id, sig, all)?;
        }
        Command::Delete { id, force } => engine.delete(&id, force)?,
        Command::Run { create, detach } => {
            let id = create.id.clone();
            engine.create(&create_opts(&create))?;
            if let Err(e) = engine.start(&id) {
                let _ = engine.delete(&id, true);
                return Err(e.into());
            }
            if detach {
                return Ok(0);
            }
            let exit = engine.wait(&id)?;
            engine.delete(&id, true)?;
            return Ok(exit.exit_code.clamp(0, 255) as u8);
        }
        Command::Exec {
            process,
            tty,
            console_socket,
            pid_file,
            env,
            cwd,
            user,
            id,
            command,
        } => {
            let p = exec_process(&engine, &id, process, tty, env, cwd, user, command)?;
            let opts = ExecOptions {
                console_socket: console_socket.as_deref(),
                pid_file: pid_file.as_deref(),
            };
            let code = container::exec::exec(engine.state_dir(), &id, &p, &opts)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::List => {
            println!("{:<40} {:<8} {:<10} BUNDLE", "ID", "PID", "STATUS");
            for c in engine.list()? {
                println!(
                    "{:<40} {:<8} {:<10} {}",
                    c.state.id,
                    c.pid.unwrap_or(0),
                    c.status,
                    c.state.bundle.display()
                );
            }
        }
        Command::Monitor { .. } => unreachable!("handled before tracing is set up"),
    }
    Ok(0)
}

/// The process for `exec`: process.json, or the container's own process
/// (user, env, caps…) with the given overrides.
#[allow(clippy::too_many_arguments)]
fn exec_process(
    engine: &Engine,
    id: &str,
    process: Option<PathBuf>,
    tty: bool,
    env: Vec<String>,
    cwd: Option<PathBuf>,
    user: Option<String>,
    command: Vec<String>,
) -> anyhow::Result<oci_spec::runtime::Process> {
    if let Some(path) = process {
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let mut p: oci_spec::runtime::Process =
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        if tty {
            p.set_terminal(Some(true));
        }
        return Ok(p);
    }
    if command.is_empty() {
        bail!("exec: no command given");
    }
    let c = engine.state(id)?;
    let spec = oci_spec::runtime::Spec::load(c.state.bundle.join("config.json"))?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(command));
    p.set_terminal(Some(tty));
    let mut all_env = p.env().clone().unwrap_or_default();
    all_env.extend(env);
    p.set_env(Some(all_env));
    if let Some(cwd) = cwd {
        p.set_cwd(cwd);
    }
    if let Some(u) = user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u.parse()?, g.parse()?),
            None => (u.parse()?, 0),
        };
        let mut usr = p.user().clone();
        usr.set_uid(uid);
        usr.set_gid(gid);
        usr.set_additional_gids(None);
        p.set_user(usr);
    }
    Ok(p)
}
