//! Pull benchmark: prints figures, asserts nothing.
//!
//! Starts a local registry with `berth/big:v1` (6 layers, ~63 MiB of
//! incompressible data, gzip/zstd/plain), a berthd on private dirs, and times
//! `berthctl pull` cold (empty store), warm (image and layers present) and
//! after removing the image (layers freed, so cold again). Then samples
//! berthd's idle RSS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_hack::process::Guarded;
use berth_hack::registry::{Registry, RegistryOptions};
use berth_hack::skopeo::{self, PushOptions};
use berth_hack::testimages;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Directory with berthd and berthctl (default: target/debug next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Pulls per measurement (the median is printed).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn berthctl(bin: &Path, sock: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(bin.join("berthctl"))
        .arg("--endpoint")
        .arg(format!("unix://{}", sock.display()))
        .args(args)
        .output()
        .context("running berthctl")?;
    if !out.status.success() {
        bail!(
            "berthctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(args: BenchArgs) -> Result<()> {
    let bin = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?.parent().context("exe dir")?.to_path_buf(),
    };
    let tmp = tempfile::Builder::new().prefix("berth-bench-").tempdir()?;
    // The same cache the integration tests use (target/<profile>/berth-test-images).
    let (images, exp) = testimages::build_cached(&bin.join("berth-test-images"))?;
    let registry = Registry::start(RegistryOptions::default())?;
    skopeo::push_all(&images, &exp, &registry.host(), &PushOptions::default(), &|n| {
        n == "berth/big:v1"
    })?;
    let big = exp.image("berth/big:v1");
    let unpacked: u64 = big.amd64().layers.iter().flat_map(|l| &l.entries).map(|e| e.size).sum();
    let compressed: u64 = big.amd64().layers.iter().map(|l| l.size).sum();

    let sock = tmp.path().join("state/berth.sock");
    let cfg = tmp.path().join("berth.toml");
    std::fs::write(&cfg, "")?;
    let mut cmd = Command::new(bin.join("berthd"));
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--root")
        .arg(tmp.path().join("root"))
        .arg("--state")
        .arg(tmp.path().join("state"))
        .arg("--socket")
        .arg(&sock);
    let mut berthd = Guarded::spawn("berthd", cmd, &tmp.path().join("berthd.log"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        if berthd.try_wait().is_some() || Instant::now() > deadline {
            bail!(
                "berthd did not come up: {}",
                berth_hack::process::tail(&tmp.path().join("berthd.log"), 2048)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let image = format!("{}/berth/big:v1", registry.host());
    let time = |args: &[&str]| -> Result<Duration> {
        let t = Instant::now();
        berthctl(&bin, &sock, args)?;
        Ok(t.elapsed())
    };
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..args.runs.max(1) {
        cold.push(time(&["pull", &image])?);
        warm.push(time(&["pull", &image])?);
        berthctl(&bin, &sock, &["rmi", &image])?;
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss = rss_kib(berthd.pid())?;
    let cold = median(cold);
    let warm = median(warm);
    println!("image: berth/big:v1, 6 layers, {compressed} bytes compressed, {unpacked} bytes unpacked");
    println!(
        "cold pull+unpack: {:.3} s ({:.1} MiB/s unpacked)",
        cold.as_secs_f64(),
        unpacked as f64 / 1048576.0 / cold.as_secs_f64()
    );
    println!("warm pull (layers present): {:.3} s", warm.as_secs_f64());
    println!("berthd idle RSS: {rss} KiB");
    berthd.stop(Duration::from_secs(10));
    drop(registry);
    Ok(())
}
