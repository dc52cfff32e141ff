//! `berth-hack`: developer commands for berth.
//!
//! - `build-images --out DIR`: build the OCI test images from /bin/busybox.
//! - `push --images DIR --registry HOST:PORT`: push them with skopeo.
//! - `serve-images --images DIR --port-file F`: start a local registry on
//!   127.0.0.1, push the images, write the port, run until SIGINT/SIGTERM.
//! - `serve-critest-images --standins DIR --images DIR --port-file F`: the
//!   same for berth's stand-ins of critest's images (`critest_images.rs`),
//!   printing the berthd configuration that mirrors critest's registries.
//! - `bench`: pull benchmark against a running berthd (see `bench.rs`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_hack::registry::{Auth, Registry, RegistryOptions};
use berth_hack::skopeo::{self, PushOptions};
use berth_hack::{critest_images, testimages};
use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};

mod bench;

#[derive(Parser)]
#[command(name = "berth-hack", about = "berth developer tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the OCI test image layouts and expected.json into DIR.
    BuildImages {
        #[arg(long)]
        out: PathBuf,
    },
    /// Push built images to a registry (prints repo:tag → digest as JSON).
    Push {
        #[arg(long)]
        images: PathBuf,
        /// HOST:PORT of the registry.
        #[arg(long)]
        registry: String,
        /// user:password.
        #[arg(long)]
        creds: Option<String>,
        /// Only these repo:tag names (default: all).
        #[arg(long)]
        only: Vec<String>,
    },
    /// Start a registry on 127.0.0.1, push the images (building them if
    /// IMAGES has no expected.json), write the port to PORT_FILE and serve
    /// until SIGINT or SIGTERM.
    ServeImages {
        #[arg(long)]
        images: PathBuf,
        #[arg(long)]
        port_file: PathBuf,
        /// Registry storage (default: a temp dir removed on exit).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Protect it with htpasswd basic auth for USER:PASSWORD.
        #[arg(long)]
        htpasswd: Option<String>,
        /// Only these repo:tag names (default: all).
        #[arg(long)]
        only: Vec<String>,
    },
    /// Start a registry on 127.0.0.1 with berth's stand-ins for critest's
    /// images (built into IMAGES from STANDINS, `hack/standins.sh`'s
    /// directory, unless already there), write the port to PORT_FILE, print
    /// the berthd configuration mirroring critest's registries to it and
    /// serve until SIGINT or SIGTERM.
    ServeCritestImages {
        #[arg(long)]
        standins: PathBuf,
        #[arg(long)]
        images: PathBuf,
        #[arg(long)]
        port_file: PathBuf,
    },
    /// Pull benchmark: cold and warm pull of berth/big:v1 through berthd.
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::BuildImages { out } => {
            let exp = testimages::build_all(&out)?;
            for (name, img) in &exp.images {
                println!("{name} {}", img.top_digest);
            }
            Ok(())
        }
        Cmd::Push {
            images,
            registry,
            creds,
            only,
        } => {
            let exp = testimages::load_expected(&images)?;
            let opts = PushOptions {
                creds,
                ..Default::default()
            };
            let pushed = skopeo::push_all(&images, &exp, &registry, &opts, &|n| {
                only.is_empty() || only.iter().any(|o| o == n)
            })?;
            println!("{}", serde_json::to_string_pretty(&pushed.digests)?);
            Ok(())
        }
        Cmd::ServeImages {
            images,
            port_file,
            data,
            htpasswd,
            only,
        } => serve_images(images, port_file, data, htpasswd, only),
        Cmd::ServeCritestImages {
            standins,
            images,
            port_file,
        } => serve_critest_images(standins, images, port_file),
        Cmd::Bench(args) => bench::run(args),
    }
}

fn serve_critest_images(standins: PathBuf, images: PathBuf, port_file: PathBuf) -> Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;

    let (dir, built) = critest_images::build_cached(&standins, &images)?;
    let registry = Registry::start(RegistryOptions::default())?;
    critest_images::push_all(&dir, &built, &registry.host())?;
    std::fs::write(&port_file, format!("{}\n", registry.port()))
        .with_context(|| format!("writing {}", port_file.display()))?;
    println!(
        "{}",
        critest_images::mirror_config(&format!("http://{}", registry.host()))
    );
    eprintln!("berth-hack: registry with critest's stand-ins at {}", registry.host());
    let sig = set.wait()?;
    eprintln!("berth-hack: {sig}, stopping the registry");
    drop(registry);
    let _ = std::fs::remove_file(&port_file);
    Ok(())
}

fn serve_images(
    images: PathBuf,
    port_file: PathBuf,
    data: Option<PathBuf>,
    htpasswd: Option<String>,
    only: Vec<String>,
) -> Result<()> {
    // Block the signals before any thread starts so that sigwait sees them.
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;

    let exp = if images.join("expected.json").exists() {
        testimages::load_expected(&images)?
    } else {
        testimages::build_all(&images)?
    };
    let (auth, creds) = match &htpasswd {
        Some(up) => {
            let (u, p) = up.split_once(':').context("--htpasswd wants USER:PASSWORD")?;
            (Auth::Htpasswd(vec![(u.to_string(), p.to_string())]), Some(up.clone()))
        }
        None => (Auth::None, None),
    };
    let opts = RegistryOptions { auth, tls: false };
    let registry = match &data {
        Some(d) => Registry::start_in(d, opts)?,
        None => Registry::start(opts)?,
    };
    let push_opts = PushOptions {
        creds,
        ..Default::default()
    };
    skopeo::push_all(&images, &exp, &registry.host(), &push_opts, &|n| {
        only.is_empty() || only.iter().any(|o| o == n)
    })?;
    std::fs::write(&port_file, format!("{}\n", registry.port()))
        .with_context(|| format!("writing {}", port_file.display()))?;
    eprintln!("berth-hack: registry with test images at {}", registry.host());
    let sig = set.wait()?;
    eprintln!("berth-hack: {sig}, stopping the registry");
    drop(registry);
    let _ = std::fs::remove_file(&port_file);
    Ok(())
}
