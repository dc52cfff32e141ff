//! Root tests of pod sandboxes: pinned namespaces (alive with no process
//! in them), hostname and sysctls seen by containers that join them, a
//! refused host-wide sysctl, localhost shared between two containers, the
//! shared PID namespace (pod init as PID 1, orphans reaped), the pod's
//! /dev/shm, teardown leaving no mount, process or cgroup, and recovery
//! after a crash. A guard kills, unmounts and removes everything even when
//! a test panics.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_runtime::engine::{CreateOptions, Engine, StdioMode};
use berth_runtime::sandbox::record::{self, InitExit};
use berth_runtime::sandbox::recover::PodVerdict;
use berth_runtime::sandbox::{self, PinRequest, PodSandbox, PodSandboxSpec, PodStatus};
use common::{is_root, Bundle, Env, BIN};
use serde_json::json;

const POD_INIT: &str = env!("CARGO_BIN_EXE_berth-pod-init");
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// An engine with its own pods root and cgroup prefix; on drop, deletes
/// every container, removes every pod (killing inits and supervisors
/// recorded on disk), unmounts what is left and removes the cgroup prefix.
struct Pods {
    env: Env,
    engine: Engine,
    root: PathBuf,
    prefix: PathBuf,
}

impl Pods {
    fn new() -> Pods {
        let env = Env::new();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let prefix = PathBuf::from(format!("/berth-sbx-test-{}-{n}", std::process::id()));
        let root = env.tmp.path().join("pods");
        let engine = Engine::new(&env.root, BIN)
            .with_pod_root(&root)
            .with_pod_init_binary(POD_INIT)
            .with_cgroup_prefix(&prefix);
        Pods {
            env,
            engine,
            root,
            prefix,
        }
    }

    fn run_pod(&self, id: &str, namespaces: PinRequest) -> PodSandbox {
        self.engine
            .run_pod_sandbox(&PodSandboxSpec {
                id: id.into(),
                namespaces,
                resources: None,
                cgroup_parent: None,
            })
            .unwrap()
    }

    /// A busybox container of `pod` joining its namespaces (PID too, when
    /// pinned), mounting its /dev/shm, in a cgroup under the pod's.
    fn container(&self, pod: &PodSandbox, name: &str, script: &str) -> Bundle {
        let mut b = self.env.bundle(name, script);
        let spec = b.spec.as_object_mut().unwrap();
        spec.remove("hostname");
        let ns = &pod.namespaces;
        let mut namespaces = vec![json!({"type": "mount"})];
        for (kind, path) in [
            ("network", &ns.net),
            ("ipc", &ns.ipc),
            ("uts", &ns.uts),
            ("pid", &ns.pid),
        ] {
            match path {
                Some(p) => namespaces.push(json!({"type": kind, "path": p})),
                None if kind == "pid" => namespaces.push(json!({"type": "pid"})),
                None => {}
            }
        }
        b.spec["linux"]["namespaces"] = json!(namespaces);
        b.spec["linux"]["cgroupsPath"] = json!(pod.cgroup_path.join(name));
        if let Some(shm) = &ns.shm {
            let mounts = b.spec["mounts"].as_array_mut().unwrap();
            mounts.retain(|m| m["destination"] != "/dev/shm");
            mounts.push(json!({"destination": "/dev/shm", "type": "bind", "source": shm, "options": ["rbind", "rw"]}));
        }
        b
    }

    fn start(&self, b: &Bundle, id: &str) {
        b.write();
        self.engine
            .create(&CreateOptions {
                id: id.to_string(),
                bundle: b.dir.clone(),
                stdio: StdioMode::Monitor {
                    log_path: None,
                    stdin: false,
                    stdin_once: false,
                },
                pid_file: None,
                overlay: None,
            })
            .unwrap();
        self.engine.start(id).unwrap();
    }

    /// The pod cgroup's directory in every hierarchy that has it.
    fn cgroup_dirs(&self, rel: &Path) -> Vec<PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|e| e.path().join(rel.strip_prefix("/").unwrap()))
            .filter(|p| p.exists())
            .collect()
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for c in self.engine.list().unwrap_or_default() {
            let _ = self.engine.delete(&c.state.id, true);
        }
        for entry in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if let Some(p) = record::load_init(&entry.path()) {
                for pid in [Some(p.init), p.supervisor].into_iter().flatten() {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
            if let Err(e) = self.engine.remove_pod_sandbox(&id) {
                eprintln!("cleanup of pod {id}: {e}");
            }
        }
        let _ = sandbox::mounts::detach_all_under(&self.root);
        sandbox::mounts::forget_root(&self.root);
        // Whatever is left of our cgroup prefix, leaf-first.
        for top in self.cgroup_dirs(&self.prefix) {
            let mut dirs: Vec<PathBuf> = walk(&top);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|l| l.trim().parse().ok()) {
                        let _ =
                            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                    }
                }
                let deadline = Instant::now() + Duration::from_secs(2);
                while std::fs::remove_dir(&d).is_err() && d.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// Polls `f` until it holds or 10 s pass.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The inode in a `/proc/<pid>/ns/<kind>` link target (`net:[4026531840]`).
fn ns_inode(link: &Path) -> u64 {
    let target = std::fs::read_link(link).unwrap();
    let s = target.to_string_lossy();
    s[s.find('[').unwrap() + 1..s.len() - 1].parse().unwrap()
}

/// Host pids whose `kind` namespace has inode `ino`.
fn processes_in(kind: &str, ino: u64) -> Vec<i32> {
    let want = format!("{kind}:[{ino}]");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).is_ok_and(|t| t.to_string_lossy() == want))
        .collect()
}

fn mounts_mentioning(dir: &Path) -> Vec<String> {
    read(Path::new("/proc/self/mountinfo"))
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .map(str::to_string)
        .collect()
}

fn exec(engine: &Engine, id: &str, script: &str) -> String {
    let p = engine
        .exec_process(id, vec!["sh".into(), "-c".into(), script.into()])
        .unwrap();
    let r = engine.exec_sync(id, &p, Duration::from_secs(10), 1 << 16).unwrap();
    assert_eq!(r.exit_code, 0, "{script}: {}", String::from_utf8_lossy(&r.stderr));
    String::from_utf8_lossy(&r.stdout).into_owned()
}

#[test]
fn pinned_namespaces_stay_alive_with_no_process_and_unpin_is_idempotent() {
    if !is_root() {
        return;
    }
    let pods = Pods::new();
    let dir = pods.root.join("pin-only");
    let req = PinRequest {
        net: true,
        ipc: true,
        uts: true,
        hostname: Some("pinned".into()),
        ..Default::default()
    };
    let pinned = sandbox::pin(Path::new(POD_INIT), &dir, &req).unwrap();
    let paths: Vec<&PathBuf> = pinned.ns_paths().collect();
    assert_eq!(paths.len(), 3, "{pinned:?}");
    assert!(pinned.usable());
    assert!(pinned.init.is_none() && pinned.pid.is_none());
    for (path, kind) in [(&pinned.net, "net"), (&pinned.ipc, "ipc"), (&pinned.uts, "uts")] {
        let path = path.as_ref().unwrap();
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
        assert_ne!(
            ino,
            ns_inode(&Path::new("/proc/self/ns").join(kind)),
            "{kind} is the host's"
        );
        // The helper is gone: only the bind keeps the namespace alive.
        assert_eq!(processes_in(kind, ino), Vec::<i32>::new(), "{kind}");
    }
    // Still joinable: lo is up and the hostname is set inside.
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", pinned.net.as_ref().unwrap().display()))
        .arg(format!("--uts={}", pinned.uts.as_ref().unwrap().display()))
        .args([
            "sh",
            "-c",
            "hostname; cat /sys/class/net/lo/operstate /proc/net/dev | grep -c lo",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("pinned\n"), "{text:?}");
    assert!(pinned.shm.as_ref().is_some_and(|p| p.is_dir()));
    assert_eq!(mounts_mentioning(&dir).len(), 4, "{:?}", mounts_mentioning(&dir));
    // The pods root is a private self-bind: nothing under it propagates.
    let root_line = mounts_mentioning(&pods.root)
        .into_iter()
        .find(|l| l.split(' ').nth(4) == pods.root.to_str())
        .expect("the pods root is a mount point");
    assert!(
        !root_line.contains("shared:") && !root_line.contains("master:"),
        "{root_line}"
    );

    sandbox::unpin(&dir).unwrap();
    sandbox::unpin(&dir).unwrap();
    assert!(!dir.exists());
    assert_eq!(mounts_mentioning(&dir), Vec::<String>::new());
}

#[test]
fn containers_joining_the_pod_see_its_hostname_sysctls_and_localhost() {
    if !is_root() {
        return;
    }
    let pods = Pods::new();
    let host_port_start = read(Path::new("/proc/sys/net/ipv4/ip_unprivileged_port_start"));
    let host_shmmax = read(Path::new("/proc/sys/kernel/shmmax"));
    let pod = pods.run_pod(
        "netpod",
        PinRequest {
            net: true,
            ipc: true,
            uts: true,
            hostname: Some("pod-host".into()),
            sysctls: [
                ("net.ipv4.ip_unprivileged_port_start".to_string(), "800".to_string()),
                ("kernel.shmmax".to_string(), "12345678".to_string()),
            ]
            .into(),
            ..Default::default()
        },
    );
    let a = pods.container(
        &pod,
        "srv",
        "hostname > /facts; cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmax >> /facts; \
         echo pong | nc -l -p 8080; sleep 300",
    );
    pods.start(&a, "srv");
    let b = pods.container(
        &pod,
        "cli",
        "for i in $(seq 100); do nc -w 2 127.0.0.1 8080 </dev/null > /got; [ -s /got ] && break; sleep 0.1; done; \
         sleep 300",
    );
    pods.start(&b, "cli");
    eventually("the server's facts", || {
        read(&a.rootfs().join("facts")).lines().count() == 3
    });
    assert_eq!(read(&a.rootfs().join("facts")), "pod-host\n800\n12345678\n");
    eventually("the client to get pong over 127.0.0.1", || {
        read(&b.rootfs().join("got")) == "pong\n"
    });
    // The host kept its values.
    assert_eq!(
        read(Path::new("/proc/sys/net/ipv4/ip_unprivileged_port_start")),
        host_port_start
    );
    assert_eq!(read(Path::new("/proc/sys/kernel/shmmax")), host_shmmax);
    let state = pods.engine.pod_sandbox("netpod").unwrap();
    assert_eq!(state.status, PodStatus::Ready);
    assert!(!state.init_alive, "no PID namespace was asked");
}

#[test]
fn a_host_wide_sysctl_is_refused_naming_the_key_and_leaves_nothing() {
    if !is_root() {
        return;
    }
    let pods = Pods::new();
    let err = pods
        .engine
        .run_pod_sandbox(&PodSandboxSpec {
            id: "badsysctl".into(),
            namespaces: PinRequest {
                net: true,
                sysctls: [("vm.swappiness".to_string(), "10".to_string())].into(),
                ..Default::default()
            },
            resources: None,
            cgroup_parent: None,
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("vm.swappiness"), "{err}");
    assert!(!pods.root.join("badsysctl").exists());
    assert_eq!(
        pods.cgroup_dirs(&pods.engine.pod_cgroup_path("badsysctl")),
        Vec::<PathBuf>::new()
    );
    // A net sysctl for a pod on the host network is refused too.
    let err = pods
        .engine
        .run_pod_sandbox(&PodSandboxSpec {
            id: "hostnet".into(),
            namespaces: PinRequest {
                net: false,
                sysctls: [("net.core.somaxconn".to_string(), "10".to_string())].into(),
                ..Default::default()
            },
            resources: None,
            cgroup_parent: None,
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("net.core.somaxconn") && err.contains("host network"),
        "{err}"
    );
}

#[test]
fn shared_pid_namespace_shm_stats_and_teardown() {
    if !is_root() {
        return;
    }
    let pods = Pods::new();
    let limit: i64 = 256 << 20;
    let pod = pods
        .engine
        .run_pod_sandbox(&PodSandboxSpec {
            id: "pidpod".into(),
            namespaces: PinRequest {
                net: true,
                ipc: true,
                uts: true,
                pid: true,
                ..Default::default()
            },
            resources: Some(
                serde_json::from_value(json!({"memory": {"limit": limit}, "cpu": {"shares": 512}})).unwrap(),
            ),
            cgroup_parent: None,
        })
        .unwrap();
    let init = pod.namespaces.init.expect("a pod init");
    let supervisor = pod.namespaces.supervisor.expect("a supervisor");
    // An orphan (its subshell exits at once) is reparented to the pod init.
    let a = pods.container(
        &pod,
        "one",
        "echo from-one > /dev/shm/note; (sleep 2.345 &); exec sleep 301",
    );
    pods.start(&a, "one");
    let b = pods.container(&pod, "two", "exec sleep 302");
    pods.start(&b, "two");

    let pid1 = exec(&pods.engine, "two", "cat /proc/1/cmdline | tr '\\0' ' '");
    assert!(pid1.contains("berth-pod-init"), "PID 1 is {pid1:?}");
    let ps = exec(&pods.engine, "two", "ps -o pid,args");
    assert!(ps.contains("sleep 301") && ps.contains("sleep 302"), "{ps}");
    assert_eq!(exec(&pods.engine, "two", "cat /dev/shm/note"), "from-one\n");

    // The orphan's parent is the pod init; once it exits it is reaped.
    let orphan = processes_with_cmdline("sleep\x002.345\x00");
    assert_eq!(orphan.len(), 1, "{orphan:?}");
    let orphan = orphan[0];
    eventually("the orphan to be reparented", || {
        read(Path::new(&format!("/proc/{orphan}/stat")))
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().nth(1).map(|p| p == init.pid.to_string()))
            .unwrap_or(true)
    });
    eventually("the pod init to reap the orphan", || {
        !Path::new(&format!("/proc/{orphan}")).exists()
    });

    // Pod-level stats and resources.
    let stats = pods.engine.pod_sandbox_stats("pidpod").unwrap();
    assert_eq!(stats.memory_limit_bytes, Some(limit as u64));
    assert!(stats.pids_current.unwrap_or(0) >= 3, "{stats:?}");
    assert!(stats.memory_usage_bytes.unwrap_or(0) > 0, "{stats:?}");

    // Teardown: containers, then the pod (twice).
    for id in ["one", "two"] {
        pods.engine.delete(id, true).unwrap();
    }
    assert!(
        !pods.cgroup_dirs(&pod.cgroup_path).is_empty(),
        "deleting a container keeps its pod's cgroup"
    );
    pods.engine.stop_pod_sandbox("pidpod", Duration::from_secs(2)).unwrap();
    pods.engine.stop_pod_sandbox("pidpod", Duration::from_secs(2)).unwrap();
    let stopped = pods.engine.pod_sandbox("pidpod").unwrap();
    assert_eq!(stopped.status, PodStatus::NotReady);
    assert_eq!(
        stopped.init_exit,
        Some(InitExit::Exited(0)),
        "SIGTERM ends the init cleanly"
    );
    pods.engine.remove_pod_sandbox("pidpod").unwrap();
    pods.engine.remove_pod_sandbox("pidpod").unwrap();
    assert!(!init.is_alive() && !supervisor.is_alive());
    assert_eq!(mounts_mentioning(&pod.dir), Vec::<String>::new());
    assert!(!pod.dir.exists());
    assert_eq!(pods.cgroup_dirs(&pod.cgroup_path), Vec::<PathBuf>::new());
    // Empty parents went too, up to and including the prefix.
    assert_eq!(pods.cgroup_dirs(&pods.prefix), Vec::<PathBuf>::new());
    assert!(matches!(
        pods.engine.pod_sandbox("pidpod"),
        Err(sandbox::SandboxError::NotFound(_))
    ));
}

/// Host pids whose whole cmdline is `cmdline` (NUL-separated).
fn processes_with_cmdline(cmdline: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == cmdline.as_bytes()))
        .collect()
}

#[test]
fn recover_reports_a_killed_pod_init_and_cleans_a_half_created_pod() {
    if !is_root() {
        return;
    }
    let pods = Pods::new();
    let pod = pods.run_pod(
        "crashed",
        PinRequest {
            net: true,
            pid: true,
            ..Default::default()
        },
    );
    let live = pods.run_pod(
        "alive",
        PinRequest {
            net: true,
            ..Default::default()
        },
    );
    let init = pod.namespaces.init.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init.pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    eventually("the supervisor to record the exit", || {
        record::load_init_exit(&pod.dir).is_some()
    });
    // A half-created pod: a dir with a mount and a cgroup, but no record.
    let half = pods.root.join("half");
    std::fs::create_dir(&half).unwrap();
    sandbox::mounts::mount_shm(&half.join("shm"), 1 << 20).unwrap();
    sandbox::cgroup::PodCgroup::new(&pods.prefix, "half")
        .create(None)
        .unwrap();
    // A cgroup of a pod whose dir is gone, and a stale temp file.
    sandbox::cgroup::PodCgroup::new(&pods.prefix, "ghost")
        .create(None)
        .unwrap();
    std::fs::write(live.dir.join(format!("pod.tmp{}", i32::MAX)), "{").unwrap();

    let report = pods.engine.recover().unwrap();
    assert_eq!(report.errors, Vec::<String>::new());
    assert_eq!(
        report.pod("crashed").unwrap().verdict,
        PodVerdict::InitExited(Some(InitExit::Signaled(9)))
    );
    assert_eq!(report.pod("alive").unwrap().verdict, PodVerdict::Ready);
    assert!(matches!(
        report.pod("half").unwrap().verdict,
        PodVerdict::Cleaned { .. }
    ));
    assert!(!half.exists());
    assert_eq!(mounts_mentioning(&half), Vec::<String>::new());
    for id in ["half", "ghost"] {
        let path = pods.engine.pod_cgroup_path(id);
        assert_eq!(pods.cgroup_dirs(&path), Vec::<PathBuf>::new(), "{id}");
        assert!(report.cleaned_cgroups.contains(&path), "{report:?}");
    }
    assert_eq!(report.cleaned_temp_files.len(), 1, "{report:?}");
    assert_eq!(pods.engine.pod_sandbox("crashed").unwrap().status, PodStatus::NotReady);
    assert_eq!(pods.engine.pod_sandbox("alive").unwrap().status, PodStatus::Ready);
    // Recovering again finds nothing more to clean.
    let again = pods.engine.recover().unwrap();
    assert!(
        again.cleaned_mounts.is_empty() && again.cleaned_cgroups.is_empty(),
        "{again:?}"
    );
    pods.engine.remove_pod_sandbox("crashed").unwrap();
    pods.engine.remove_pod_sandbox("alive").unwrap();
    assert_eq!(
        mounts_mentioning(&pods.root).len(),
        1,
        "only the pods root's self-bind is left"
    );
}

#[test]
fn unpin_reaches_copies_of_the_binds_in_other_mount_namespaces() {
    if !is_root() {
        return;
    }
    let pods = Pods::new();
    let dir = pods.root.join("prop");
    let pinned = sandbox::pin(
        Path::new(POD_INIT),
        &dir,
        &PinRequest {
            net: true,
            ..Default::default()
        },
    )
    .unwrap();
    // A mount namespace made while the bind exists and remounted private
    // (unshare(1)'s default): no umount propagates into it; unpin's unlink
    // of the bind target must still free its copy.
    let mut other = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sleep", "100"])
        .spawn()
        .unwrap();
    let pid = other.id();
    let own_mnt = ns_inode(Path::new("/proc/self/ns/mnt"));
    eventually("the other mount namespace", || {
        std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
            .is_ok_and(|_| ns_inode(Path::new(&format!("/proc/{pid}/ns/mnt"))) != own_mnt)
    });
    let mountinfo = PathBuf::from(format!("/proc/{pid}/mountinfo"));
    let net = pinned.net.as_ref().unwrap().to_str().unwrap().to_string();
    assert!(read(&mountinfo).contains(&net), "the copy exists");
    sandbox::unpin(&dir).unwrap();
    let left = read(&mountinfo);
    let _ = other.kill();
    let _ = other.wait();
    assert!(!left.contains(&net), "the copy outlived unpin: {left}");
}

#[test]
fn deleting_a_container_removes_empty_parents_up_to_the_prefix() {
    if !is_root() {
        return;
    }
    let pods = Pods::new();
    let mut b = pods.env.bundle("plain", "sleep 300");
    b.spec["linux"]["cgroupsPath"] = json!(pods.prefix.join("group/plain"));
    pods.start(&b, "plain");
    assert!(!pods.cgroup_dirs(&pods.prefix.join("group/plain")).is_empty());
    pods.engine.delete("plain", true).unwrap();
    assert_eq!(pods.cgroup_dirs(&pods.prefix), Vec::<PathBuf>::new());
}
