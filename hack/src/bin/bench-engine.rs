//! Engine benchmark: prints figures, asserts nothing.
//!
//! Builds one busybox bundle and runs it under `berth-runtime`, `runc` and
//! `crun` in the same run:
//!
//! - create+start: `create --pid-file`, `start`, then wait until the pid
//!   has exec'd busybox (read from `/proc/PID/exe`, the same check for every
//!   runtime); kill and delete happen outside the timed section.
//! - exec: `exec ID /bin/true` into one running container.
//! - monitor memory: PSS (`/proc/PID/smaps_rollup`) of berth's monitors
//!   with 1, 5, 10 and 100 containers running (runc and crun leave no
//!   monitor behind; conmon measures about 270 KiB per container).
//! - CRI log throughput of berth's monitor: a container writing 2-byte
//!   lines (`yes | head -c N`) until its exit is recorded.
//!
//! Build release binaries first: `cargo build --release -p berth-runtime -p berth-monitor
//! -p berth-hack`, then run `target/release/bench-engine` as root. Every
//! container, state root and temp dir is removed again, also on failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(about = "create+start / exec latency of berth-runtime vs runc vs crun, and berth's monitor PSS")]
struct Args {
    /// Directory holding berth-runtime and berth-monitor (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Containers created and started per runtime.
    #[arg(long, default_value_t = 100)]
    containers: usize,
    /// Execs per runtime.
    #[arg(long, default_value_t = 100)]
    execs: usize,
    /// Container counts at which berth's monitor PSS is measured.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,100")]
    pss_at: Vec<usize>,
    /// Bytes of `y\n` lines the log-throughput container writes.
    #[arg(long, default_value_t = 20_000_000)]
    log_bytes: usize,
    /// Only these runtimes (berth, runc, crun).
    #[arg(long, value_delimiter = ',', default_value = "berth,runc,crun")]
    runtimes: Vec<String>,
}

/// Set by SIGINT/SIGTERM/SIGHUP: stop at the next step and clean up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: std::ffi::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn catch_signals() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// One OCI runtime command line on its own state root.
struct Runtime {
    name: String,
    exe: PathBuf,
    root: PathBuf,
    /// berth: the CRI log directory (its monitor holds the stdio).
    cri_logs: Option<PathBuf>,
    /// The runtime's stderr goes here, never into a pipe: a container
    /// created without a terminal inherits it and would hold a pipe open.
    stderr_file: PathBuf,
}

impl Runtime {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--root").arg(&self.root);
        c.stdin(Stdio::null()).stdout(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Result<()> {
        check_interrupted()?;
        let err = std::fs::File::create(&self.stderr_file)
            .with_context(|| format!("create {}", self.stderr_file.display()))?;
        let status = self
            .cmd()
            .args(args)
            .stderr(err)
            .status()
            .with_context(|| format!("running {}", self.name))?;
        if !status.success() {
            bail!(
                "{} {}: {status}: {}",
                self.name,
                args.join(" "),
                std::fs::read_to_string(&self.stderr_file).unwrap_or_default().trim()
            );
        }
        Ok(())
    }

    /// `create` with a pid file; returns the init's pid.
    fn create(&self, bundle: &Path, id: &str, pid_file: &Path) -> Result<i32> {
        let mut args = vec![
            "create".to_string(),
            "--bundle".into(),
            bundle.display().to_string(),
            "--pid-file".into(),
            pid_file.display().to_string(),
        ];
        if let Some(dir) = &self.cri_logs {
            args.extend(["--cri-log".into(), dir.join(format!("{id}.log")).display().to_string()]);
        }
        args.push(id.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args)?;
        let text = std::fs::read_to_string(pid_file).with_context(|| format!("{} pid file", self.name))?;
        text.trim()
            .parse()
            .with_context(|| format!("{} pid file {text:?}", self.name))
    }

    /// Force-deletes `id`; a failure is printed, not returned (cleanup).
    fn remove(&self, id: &str) {
        if let Err(e) = self.run(&["delete", "--force", id]) {
            eprintln!("warning: {e:#}");
        }
    }

    fn exec_true(&self, id: &str) -> Result<()> {
        if self.name == "berth" {
            self.run(&["exec", id, "--", "/bin/true"])
        } else {
            self.run(&["exec", id, "/bin/true"])
        }
    }
}

/// Removes every container a runtime may still hold, its state root and
/// the temp dir, even when the benchmark fails half-way.
struct Cleanup {
    runtimes: Vec<Runtime>,
    state_base: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for rt in &self.runtimes {
            if let Ok(entries) = std::fs::read_dir(&rt.root) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        rt.remove(&e.file_name().to_string_lossy());
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&rt.root);
        }
        let _ = std::fs::remove_dir(&self.state_base);
    }
}

/// crun (1.8) refuses a hybrid host whose cgroup2 hierarchy has any
/// controller ("drop all controllers from cgroupv2"). Such a controller
/// (here: hugetlb, which no v1 hierarchy binds) is bound to a v1 hierarchy
/// mounted for the run and unmounted again when this guard drops; berth's
/// hybrid manager enables it in cgroup2 on each create, so it is disabled
/// there first, deepest cgroup first.
struct V1Bindings {
    mounts: Vec<PathBuf>,
}

impl V1Bindings {
    fn bind(cgroup_root: &Path, unified: &Path) -> Result<V1Bindings> {
        let mut guard = V1Bindings { mounts: Vec::new() };
        let controllers = std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
        if controllers.trim().is_empty() {
            return Ok(guard);
        }
        let mut dirs = vec![unified.to_path_buf()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
                dirs.extend(entries.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
            i += 1;
        }
        for dir in dirs.iter().rev() {
            let file = dir.join("cgroup.subtree_control");
            for ctrl in std::fs::read_to_string(&file).unwrap_or_default().split_whitespace() {
                std::fs::write(&file, format!("-{ctrl}"))
                    .with_context(|| format!("disable {ctrl} in {}", file.display()))?;
            }
        }
        for ctrl in controllers.split_whitespace() {
            let target = cgroup_root.join(ctrl);
            std::fs::create_dir_all(&target)?;
            nix::mount::mount(
                Some("cgroup"),
                &target,
                Some("cgroup"),
                nix::mount::MsFlags::empty(),
                Some(ctrl),
            )
            .with_context(|| format!("mount the {ctrl} cgroup v1 hierarchy at {}", target.display()))?;
            println!(
                "note: {ctrl} bound to a v1 hierarchy at {} for this run (crun needs an empty cgroup2)",
                target.display()
            );
            guard.mounts.push(target);
        }
        Ok(guard)
    }
}

impl Drop for V1Bindings {
    fn drop(&mut self) {
        for target in self.mounts.drain(..).rev() {
            if let Err(e) = nix::mount::umount(&target) {
                eprintln!("warning: unmount {}: {e}", target.display());
            }
            let _ = std::fs::remove_dir(&target);
        }
    }
}

fn write_bundle(dir: &Path) -> Result<()> {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).context("copy /bin/busybox (busybox-static)")?;
    for applet in ["sh", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sleep", "100000"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "noNewPrivileges": true,
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
            }
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;
    Ok(())
}

/// Waits until `pid` runs busybox (has passed its execve).
fn wait_running(pid: i32) -> Result<()> {
    let exe = format!("/proc/{pid}/exe");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if std::fs::read_link(&exe).is_ok_and(|p| p.file_name().is_some_and(|n| n == "busybox")) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pid {pid} did not exec busybox within 10s");
        }
        check_interrupted()?;
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:7.2} ms  p99 {:7.2} ms  (min {:.2}, max {:.2}, n={})",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

fn create_start(rt: &Runtime, bundle: &Path, tmp: &Path, n: usize) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("bench-{}-{i}", rt.name);
        let pid_file = tmp.join(format!("{id}.pid"));
        let t0 = Instant::now();
        let pid = rt.create(bundle, &id, &pid_file)?;
        rt.run(&["start", &id])?;
        wait_running(pid)?;
        out.push(t0.elapsed());
        rt.remove(&id);
    }
    Ok(out)
}

fn execs(rt: &Runtime, bundle: &Path, tmp: &Path, n: usize) -> Result<Vec<Duration>> {
    let id = format!("bench-{}-exec", rt.name);
    let pid = rt.create(bundle, &id, &tmp.join(format!("{id}.pid")))?;
    rt.run(&["start", &id])?;
    wait_running(pid)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        rt.exec_true(&id)?;
        out.push(t0.elapsed());
    }
    rt.remove(&id);
    Ok(out)
}

fn pss_kib(pid: i32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no Pss line in smaps_rollup")
}

fn monitor_pid(rt: &Runtime, id: &str) -> Result<i32> {
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(rt.root.join(id).join("state.json"))?)?;
    state["monitor"]["pid"]
        .as_i64()
        .map(|p| p as i32)
        .context("state.json has no monitor pid")
}

/// Per-monitor PSS (KiB) with `n` containers running at once.
fn monitor_pss(rt: &Runtime, bundle: &Path, tmp: &Path, n: usize) -> Result<Vec<u64>> {
    let ids: Vec<String> = (0..n).map(|i| format!("bench-pss-{i}")).collect();
    let result = (|| {
        let mut monitors = Vec::new();
        for id in &ids {
            let pid = rt.create(bundle, id, &tmp.join(format!("{id}.pid")))?;
            rt.run(&["start", id])?;
            wait_running(pid)?;
            monitors.push(monitor_pid(rt, id)?);
        }
        // Let every monitor finish its hand-over and settle.
        std::thread::sleep(Duration::from_millis(300));
        monitors.iter().map(|&m| pss_kib(m)).collect::<Result<Vec<u64>>>()
    })();
    for id in &ids {
        rt.remove(id);
    }
    result
}

/// Time until a container writing `bytes` of `y\n` lines has exited and
/// its exit is recorded, and the number of CRI log records written.
fn log_throughput(rt: &Runtime, bundle: &Path, tmp: &Path, bytes: usize) -> Result<(Duration, usize)> {
    let chatty = tmp.join("bundle-chatty");
    std::fs::create_dir_all(&chatty)?;
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
    spec["process"]["args"] = serde_json::json!(["sh", "-c", format!("yes | head -c {bytes}")]);
    spec["root"]["path"] = serde_json::json!(bundle.join("rootfs"));
    std::fs::write(chatty.join("config.json"), serde_json::to_vec(&spec)?)?;
    let id = "bench-log";
    rt.create(&chatty, id, &tmp.join("bench-log.pid"))?;
    let t0 = Instant::now();
    let result = (|| {
        rt.run(&["start", id])?;
        let exit = rt.root.join(id).join("exit.json");
        while !exit.exists() {
            check_interrupted()?;
            if t0.elapsed() > Duration::from_secs(300) {
                bail!("log container did not exit within 300s");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(t0.elapsed())
    })();
    rt.remove(id);
    let log = rt
        .cri_logs
        .as_ref()
        .context("berth has a CRI log dir")?
        .join(format!("{id}.log"));
    let records = std::fs::read(&log).map(|b| b.iter().filter(|&&c| c == b'\n').count())?;
    std::fs::remove_file(&log)?;
    Ok((result?, records))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("bench-engine needs root");
    }
    catch_signals()?;
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .context("own directory")?
            .to_path_buf(),
    };
    let tmp = tempfile::Builder::new().prefix("berth-bench-engine").tempdir()?;
    let bundle = tmp.path().join("bundle");
    write_bundle(&bundle)?;
    let state_base = PathBuf::from("/run/berth-bench-engine");
    let _v1 = match args.runtimes.iter().any(|r| r == "crun") {
        true => V1Bindings::bind(Path::new("/sys/fs/cgroup"), Path::new("/sys/fs/cgroup/unified"))?,
        false => V1Bindings { mounts: Vec::new() },
    };
    let mut runtimes = Vec::new();
    for name in &args.runtimes {
        let exe = match name.as_str() {
            "berth" => bin_dir.join("berth-runtime"),
            "runc" => PathBuf::from("/usr/sbin/runc"),
            "crun" => PathBuf::from("/usr/bin/crun"),
            other => bail!("unknown runtime {other}"),
        };
        if !exe.exists() {
            bail!(
                "{} not found (apt-get install -y runc crun; cargo build --release -p berth-runtime -p berth-monitor)",
                exe.display()
            );
        }
        let cri_logs = (name == "berth").then(|| tmp.path().join("logs"));
        if let Some(d) = &cri_logs {
            std::fs::create_dir_all(d)?;
        }
        runtimes.push(Runtime {
            name: name.clone(),
            exe,
            root: state_base.join(name),
            cri_logs,
            stderr_file: tmp.path().join(format!("{name}.stderr")),
        });
    }
    let cleanup = Cleanup {
        runtimes,
        state_base: state_base.clone(),
        _tmp: tmp,
    };
    let tmp = cleanup._tmp.path();
    println!("bundle: busybox `sleep`, pid/ipc/uts/mount/net namespaces, read-only rootfs, 5 mounts");
    println!(
        "state roots under {}; berth writes a CRI log per container",
        state_base.display()
    );
    println!();
    println!(
        "create+start (until the init has exec'd), {} containers each:",
        args.containers
    );
    for rt in &cleanup.runtimes {
        // One warm-up container: page cache, cgroup parents.
        create_start(rt, &bundle, tmp, 1)?;
        let samples = create_start(rt, &bundle, tmp, args.containers)?;
        println!("  {:<6} {}", rt.name, summary(samples));
    }
    println!();
    println!("exec /bin/true into a running container, {} times each:", args.execs);
    for rt in &cleanup.runtimes {
        let samples = execs(rt, &bundle, tmp, args.execs)?;
        println!("  {:<6} {}", rt.name, summary(samples));
    }
    if let Some(berth) = cleanup.runtimes.iter().find(|r| r.name == "berth") {
        println!();
        println!("berth monitor PSS per container (runc/crun: no monitor; conmon ≈ 270 KiB/container):");
        for &n in &args.pss_at {
            let mut pss = monitor_pss(berth, &bundle, tmp, n)?;
            pss.sort_unstable();
            let total: u64 = pss.iter().sum();
            println!(
                "  {n:>3} running: avg {:>4} KiB  min {:>4}  max {:>4}  total {:>6} KiB",
                total / n as u64,
                pss[0],
                pss[pss.len() - 1],
                total
            );
        }
        println!();
        let (took, records) = log_throughput(berth, &bundle, tmp, args.log_bytes)?;
        let secs = took.as_secs_f64();
        println!(
            "berth CRI log throughput: {} bytes of 2-byte lines → {records} records in {secs:.2} s \
             ({:.0} records/s, {:.1} MiB/s of output)",
            args.log_bytes,
            records as f64 / secs,
            args.log_bytes as f64 / secs / 1048576.0
        );
    }
    drop(cleanup);
    Ok(())
}
