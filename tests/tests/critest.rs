//! The real critest (cri-tools `pkg/validate` v1.37.0, pinned in
//! `hack/tools/go.mod`, built by `hack/tools.sh`) against a real berthd:
//! every spec, serially, then the Streaming specs again over WebSocket
//! (`-websocket-exec -websocket-attach -websocket-portforward`).
//!
//! critest pulls its images by their upstream names (`registry.k8s.io/…`,
//! `gcr.io/k8s-staging-cri-tools/…`, `k8s.gcr.io/pause`). berthd gets them
//! from a local registry through its registry mirrors: the registry serves
//! berth's stand-ins for them ([`berth_hack::critest_images`], made of the
//! programs `hack/standins.sh` builds: BusyBox from Debian's source and
//! small static helpers). berthd's upstream fallback goes to a dead proxy on
//! 127.0.0.1, so nothing is fetched from anywhere else.
//!
//! What must come out: every spec passes, except
//! - [`ALLOWED_FAILURES`]: the spec that pulls an upstream manifest digest;
//! - [`host_skips`]: specs critest skips itself because this host cannot
//!   run them (AppArmor is off);
//! - [`NOT_IN_BERTH`]: specs critest skips itself because berth does not
//!   (yet) offer what they test, each with the reason.
//!
//! Any other failure or skip fails the test, and so does a listed spec that
//! now passes (update the lists). The counts are printed.
//!
//! `BERTH_CRITEST_FOCUS=REGEX` runs only the matching specs (one run, SPDY)
//! and checks only that none of them failed unexpectedly: for debugging.
//!
//! Skips with a note without root, critest, or the stand-in programs
//! (`BERTH_STANDINS`, set by `hack/test.sh`). berthd has its own built-in
//! network (`berthc54`, `10.254.0.0/24`); critest needs host ports
//! 12000-12003 free.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_hack::critest_images;
use berth_hack::process::Guarded;
use berth_hack::registry::{Registry, RegistryOptions};
use berth_tests::daemon::{unmount_everything_under, Berthd};
use berth_tests::fixture::target_dir;
use berth_tests::{require_root, require_tool, tools};

/// Specs that fail here by design, with the reason.
const ALLOWED_FAILURES: &[(&str, &str)] = &[(
    "[k8s.io] Image Manager public image with digest should be pulled and removed [Conformance]",
    "pulls gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2…, an upstream manifest digest no stand-in can reproduce offline",
)];

/// critest's AppArmor specs: it skips them itself when the kernel has no
/// AppArmor (`/sys/module/apparmor/parameters/enabled`).
const APPARMOR_SPECS: &[&str] = &[
    "[k8s.io] AppArmor runtime should support deprecated apparmor_profile field should fail with an unloaded apparmor_profile",
    "[k8s.io] AppArmor runtime should support deprecated apparmor_profile field should enforce a apparmor_profile blocking writes",
    "[k8s.io] AppArmor runtime should support deprecated apparmor_profile field should enforce a permissive deprecated profile",
    "[k8s.io] AppArmor runtime should support apparmor field should fail with an unloaded apparmor_profile",
    "[k8s.io] AppArmor runtime should support apparmor field should enforce a apparmor_profile blocking writes",
    "[k8s.io] AppArmor runtime should support apparmor field should enforce a permissive deprecated profile",
    "[k8s.io] AppArmor runtime should prefer new apparmor field should fail with an unloaded apparmor_profile",
    "[k8s.io] AppArmor runtime should prefer new apparmor field should enforce a apparmor_profile blocking writes",
    "[k8s.io] AppArmor runtime should prefer new apparmor field should work with apparmor profile",
];

/// Specs critest skips itself because berth lacks what they test, with the
/// reason. (Each spec checks the runtime's own answer: a feature flag in
/// Status, an UNIMPLEMENTED error, or no NRI socket to give it.)
const NOT_IN_BERTH: &[(&str, &str)] = &[
    (
        "[k8s.io] Image Volume [Feature:ImageVolume] should correctly mount image and enforce read-only",
        IMAGE_VOLUMES,
    ),
    (
        "[k8s.io] Image Volume [Feature:ImageVolume] should reject Image Volume with Readonly set to false",
        IMAGE_VOLUMES,
    ),
    (
        "[k8s.io] Image Volume [Feature:ImageVolume] should return image digest in ContainerStatus mounts",
        IMAGE_VOLUMES,
    ),
    (
        "[k8s.io] Image Volume [Feature:ImageVolume] subPath should fail when subPath does not exist in the image",
        IMAGE_VOLUMES,
    ),
    (
        "[k8s.io] Image Volume [Feature:ImageVolume] subPath should succeed when using a valid subPath",
        IMAGE_VOLUMES,
    ),
    (
        "[k8s.io] NRI CreateContainer contract should fail CreateContainer when the NRI hook errors, leak nothing, and allow retry",
        NRI,
    ),
    (
        "[k8s.io] NRI CreateContainer contract should not expose container while CreateContainer hook is in progress",
        NRI,
    ),
    (
        "[k8s.io] NRI RunPodSandbox contract should fail RunPodSandbox and clean up when the NRI hook errors, then allow retry",
        NRI,
    ),
    (
        "[k8s.io] NRI RunPodSandbox contract should not expose sandbox while RunPodSandbox hook is in progress",
        NRI,
    ),
    (
        "[k8s.io] NRI RunPodSandbox contract should not start workload containers until RunPodSandbox hook completes",
        NRI,
    ),
    (
        "[k8s.io] NRI StopPodSandbox contract should handle StopPodSandbox idempotently and never reuse sandbox",
        NRI,
    ),
    (
        "[k8s.io] NRI StopPodSandbox contract should stop all workload containers and keep sandbox accessible while StopPodSandbox hook is in progress",
        NRI,
    ),
    (
        "[k8s.io] NRI container lifecycle (failed container) should receive CreateContainer, StartContainer, StopContainer, and RemoveContainer for a container that exits with a non-zero code",
        NRI,
    ),
    (
        "[k8s.io] NRI container lifecycle should receive CreateContainer, StartContainer, StopContainer, and RemoveContainer in strict order with correct metadata",
        NRI,
    ),
    (
        "[k8s.io] NRI plugin synchronization should receive a callback for container created during the Synchronize call",
        NRI,
    ),
    (
        "[k8s.io] NRI plugin synchronization should receive information about all containers without the race condition during initialization",
        NRI,
    ),
    (
        "[k8s.io] NRI plugin synchronization should synchronize a newly connected plugin with existing pods and containers",
        NRI,
    ),
    (
        "[k8s.io] NRI pod sandbox lifecycle should receive RunPodSandbox, StopPodSandbox, and RemovePodSandbox in strict order with correct metadata",
        NRI,
    ),
    (
        "[k8s.io] PodSandbox runtime should support metrics operations runtime should support listing pod sandbox metrics [Conformance]",
        METRICS,
    ),
    (
        "[k8s.io] PodSandbox runtime should support metrics operations runtime should support returning metrics descriptors [Conformance]",
        METRICS,
    ),
    (
        "[k8s.io] Security Context UserNamespaces when Host idmap mount support is needed runtime should support NamespaceMode_POD",
        USERNS,
    ),
    (
        "[k8s.io] Security Context UserNamespaces when Host idmap mount support is not needed runtime should fail if container ID 0 is not mapped",
        USERNS,
    ),
    (
        "[k8s.io] Security Context UserNamespaces when Host idmap mount support is not needed runtime should fail if more than one mapping provided",
        USERNS,
    ),
    (
        "[k8s.io] Security Context UserNamespaces when Host idmap mount support is not needed runtime should fail with NamespaceMode_CONTAINER",
        USERNS,
    ),
    (
        "[k8s.io] Security Context UserNamespaces when Host idmap mount support is not needed runtime should fail with NamespaceMode_TARGET",
        USERNS,
    ),
    (
        "[k8s.io] Security Context UserNamespaces when Host idmap mount support is not needed runtime should support NamespaceMode_NODE",
        USERNS,
    ),
];

const IMAGE_VOLUMES: &str =
    "berth has no image volumes (Mount.image): CreateContainer answers UNIMPLEMENTED, critest skips";
const NRI: &str = "berth has no NRI (Node Resource Interface) socket for plugins: critest skips without -nri-socket";
const METRICS: &str =
    "berth has no CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics): UNIMPLEMENTED, critest skips";
const USERNS: &str = "berth has no user namespaces: its runtime handler says user_namespaces = false, critest skips";

fn apparmor_enabled() -> bool {
    std::fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|b| b.first() == Some(&b'Y'))
}

/// Specs this host cannot run, with the reason. (On a kernel with AppArmor
/// the AppArmor specs run instead, and those that need a profile applied
/// fail: berth refuses localhost AppArmor profiles, see the README.)
fn host_skips() -> Vec<(&'static str, &'static str)> {
    if apparmor_enabled() {
        return Vec::new();
    }
    APPARMOR_SPECS
        .iter()
        .map(|s| (*s, "AppArmor is off on this host (critest reads /sys/module/apparmor)"))
        .collect()
}

/// One spec's outcome from critest's JSON report.
#[derive(Debug, Clone)]
struct Outcome {
    state: String,
    /// The failure or skip message.
    message: String,
    location: String,
    seconds: f64,
}

/// The specs of one critest run, by full name.
#[derive(Debug, Default)]
struct Report {
    specs: BTreeMap<String, Outcome>,
    wall: Duration,
}

impl Report {
    fn with_state(&self, pred: impl Fn(&str) -> bool) -> BTreeSet<String> {
        self.specs
            .iter()
            .filter(|(_, o)| pred(&o.state))
            .map(|(n, _)| n.clone())
            .collect()
    }
    fn passed(&self) -> BTreeSet<String> {
        self.with_state(|s| s == "passed")
    }
    /// Skipped by critest while running (a `Skip()` with a message), not
    /// left out by a filter.
    fn skipped(&self) -> BTreeSet<String> {
        self.specs
            .iter()
            .filter(|(_, o)| o.state == "skipped" && !o.message.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }
    fn failed(&self) -> BTreeSet<String> {
        self.with_state(|s| !matches!(s, "passed" | "skipped" | "pending"))
    }
    fn not_run(&self) -> usize {
        self.specs
            .values()
            .filter(|o| o.state == "skipped" && o.message.is_empty())
            .count()
    }
    fn summary(&self, what: &str) -> String {
        format!(
            "critest {what}: {} specs ran in {:.0?}: {} passed, {} failed, {} skipped by critest ({} not selected)",
            self.specs.len() - self.not_run(),
            self.wall,
            self.passed().len(),
            self.failed().len(),
            self.skipped().len(),
            self.not_run(),
        )
    }
    fn describe(&self, names: &BTreeSet<String>) -> String {
        names
            .iter()
            .map(|n| {
                let o = &self.specs[n];
                format!(
                    "  - {n}\n    {} after {:.1}s at {}: {}",
                    o.state,
                    o.seconds,
                    o.location,
                    o.message.trim().replace('\n', "\n      ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads ginkgo's `--json-report` (a list of suite reports).
fn parse_report(path: &Path) -> Report {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let suites: serde_json::Value =
        serde_json::from_slice(&data).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    let mut r = Report::default();
    for suite in suites.as_array().expect("a list of suite reports") {
        for spec in suite["SpecReports"].as_array().into_iter().flatten() {
            if spec["LeafNodeType"] != "It" {
                continue;
            }
            let mut parts: Vec<String> = spec["ContainerHierarchyTexts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(String::from))
                .collect();
            parts.push(spec["LeafNodeText"].as_str().unwrap_or_default().to_string());
            // The name as ginkgo prints it, without the decorators and
            // labels it adds ([Serial]): containers' texts, then the spec's.
            let name = parts.join(" ");
            let failure = &spec["Failure"];
            let location = &failure["Location"];
            r.specs.insert(
                name,
                Outcome {
                    state: spec["State"].as_str().unwrap_or("unknown").to_string(),
                    message: failure["Message"].as_str().unwrap_or_default().to_string(),
                    location: format!(
                        "{}:{}",
                        location["FileName"]
                            .as_str()
                            .unwrap_or("?")
                            .rsplit("pkg/")
                            .next()
                            .unwrap_or("?"),
                        location["LineNumber"]
                    ),
                    seconds: spec["RunTime"].as_f64().unwrap_or(0.0) / 1e9,
                },
            );
        }
    }
    r
}

/// Shared memory segments on the host, by id (critest's HostIpc specs make
/// 1 MiB ones with `ipcmk` and never remove them).
fn shm_segments() -> BTreeMap<String, (String, String)> {
    let out = Command::new("ipcs").arg("-m").output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // key shmid owner perms bytes nattch status
            (f.len() >= 6 && f[0].starts_with("0x")).then(|| (f[1].to_string(), (f[4].to_string(), f[5].to_string())))
        })
        .collect()
}

/// What the test made on the host, removed on drop (also on failure).
struct Cleanup {
    d: Option<Berthd>,
    tmp: PathBuf,
    shm_before: BTreeMap<String, (String, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(d) = &self.d {
            d.remove_all_pods_blocking();
        }
        drop(self.d.take());
        berth_tests::netclean::remove_test_network("berthc54", "BTC54", &[]);
        for (id, (bytes, nattch)) in shm_segments() {
            if !self.shm_before.contains_key(&id) && bytes == "1048576" && nattch == "0" {
                let _ = Command::new("ipcrm").args(["-m", &id]).status();
            }
        }
        unmount_everything_under(&self.tmp);
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// Runs critest with `extra` arguments; its report.
fn run_critest(critest: &Path, socket: &Path, work: &Path, name: &str, extra: &[&str]) -> Report {
    let report = work.join(format!("{name}.json"));
    let log = work.join(format!("{name}.log"));
    let tmp = work.join(format!("{name}-tmp"));
    std::fs::create_dir_all(&tmp).unwrap();
    let endpoint = format!("unix://{}", socket.display());
    let mut cmd = Command::new(critest);
    cmd.current_dir(work)
        .env("TMPDIR", &tmp)
        .arg(format!("--runtime-endpoint={endpoint}"))
        .arg(format!("--image-endpoint={endpoint}"))
        .arg("-ginkgo.no-color")
        .arg("-ginkgo.v")
        .arg("-ginkgo.timeout=40m")
        .arg(format!("-ginkgo.json-report={}", report.display()))
        .args(extra);
    eprintln!("critest {name}: {cmd:?} (log: {})", log.display());
    let start = Instant::now();
    let mut p = Guarded::spawn("critest", cmd, &log).expect("starting critest");
    let status = p.wait_timeout(Duration::from_secs(35 * 60));
    let wall = start.elapsed();
    if status.is_none() {
        p.kill_now();
        panic!(
            "critest {name} did not finish within 35 minutes:\n{}",
            berth_hack::process::tail(&log, 16 * 1024)
        );
    }
    if !report.exists() {
        panic!(
            "critest {name} exited ({status:?}) without a report:\n{}",
            berth_hack::process::tail(&log, 16 * 1024)
        );
    }
    let mut r = parse_report(&report);
    r.wall = wall;
    r
}

/// Checks one run against what is expected: returns the problems.
fn check(r: &Report, what: &str, focused: bool) -> Vec<String> {
    let allowed_fail: BTreeSet<String> = ALLOWED_FAILURES.iter().map(|(n, _)| n.to_string()).collect();
    let allowed_skip: BTreeSet<String> = host_skips()
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(NOT_IN_BERTH.iter().map(|(n, _)| n.to_string()))
        .collect();
    let ran: BTreeSet<String> = r
        .specs
        .iter()
        .filter(|(_, o)| !(o.state == "skipped" && o.message.is_empty()))
        .map(|(n, _)| n.clone())
        .collect();
    let mut problems = Vec::new();
    let failed = r.failed();
    let bad: BTreeSet<String> = failed.difference(&allowed_fail).cloned().collect();
    if !bad.is_empty() {
        problems.push(format!("{what}: unexpected failures:\n{}", r.describe(&bad)));
    }
    let skipped = r.skipped();
    let bad: BTreeSet<String> = skipped.difference(&allowed_skip).cloned().collect();
    if !bad.is_empty() {
        problems.push(format!("{what}: unexpected skips:\n{}", r.describe(&bad)));
    }
    if !focused {
        // A listed spec that ran and did not fail or skip as listed.
        let passing: BTreeSet<String> = r.passed();
        let stale: Vec<&String> = allowed_fail
            .iter()
            .chain(allowed_skip.iter())
            .filter(|n| ran.contains(*n) && passing.contains(*n))
            .collect();
        if !stale.is_empty() {
            problems.push(format!(
                "{what}: listed as failing or skipped but passed now: {stale:#?}"
            ));
        }
        // A listed name critest does not have (renamed in a new version).
        let unknown: Vec<&String> = allowed_fail
            .iter()
            .chain(allowed_skip.iter())
            .filter(|n| !r.specs.contains_key(*n))
            .collect();
        if !unknown.is_empty() {
            problems.push(format!("{what}: listed but not among critest's specs: {unknown:#?}"));
        }
    }
    problems
}

/// The listed failures and skips, grouped by reason, with what each did.
fn allowed_summary(r: &Report) -> String {
    let mut by_reason: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    let host = host_skips();
    let lists = [
        ("failing", ALLOWED_FAILURES),
        ("skipped: the host cannot", &host[..]),
        ("skipped: berth lacks it", NOT_IN_BERTH),
    ];
    for (kind, list) in lists {
        for (name, why) in list {
            by_reason.entry((kind, why)).or_default().push(name);
        }
    }
    let mut out = String::from("allowed failures and skips:");
    for ((kind, why), names) in by_reason {
        out.push_str(&format!("\n  {kind} ({}): {why}", names.len()));
        for n in names {
            let state = r.specs.get(n).map(|o| o.state.as_str()).unwrap_or("not run");
            out.push_str(&format!("\n    - {n} ({state})"));
        }
    }
    out
}

#[test]
fn critest_passes_against_berthd() {
    require_root!();
    let critest = require_tool!(critest);
    let Some(standins) = tools::standins() else {
        eprintln!(
            "SKIPPED {}: no stand-in programs (run hack/standins.sh and set BERTH_STANDINS to the directory it prints, or use hack/test.sh)",
            module_path!()
        );
        return;
    };
    let focus = std::env::var("BERTH_CRITEST_FOCUS").ok().filter(|f| !f.is_empty());

    let t = Instant::now();
    let (images, built) = critest_images::build_cached(&standins, &target_dir().join("berth-critest-images"))
        .unwrap_or_else(|e| panic!("building the stand-ins: {e:#}"));
    let registry = Registry::start(RegistryOptions::default()).unwrap_or_else(|e| panic!("docker-registry: {e:#}"));
    critest_images::push_all(&images, &built, &registry.host())
        .unwrap_or_else(|e| panic!("pushing the stand-ins: {e:#}\n{}", registry.log_tail()));
    eprintln!(
        "stand-ins: {} images built and pushed to {} in {:.1?}",
        built.images.len(),
        registry.host(),
        t.elapsed()
    );

    let work = tempfile::Builder::new()
        .prefix("berth-test-critest-")
        .tempdir()
        .unwrap()
        .keep();
    let mut cleanup = Cleanup {
        d: None,
        tmp: work.clone(),
        shm_before: shm_segments(),
    };
    let cni = work.join("cni");
    std::fs::create_dir_all(&cni).unwrap();
    let config = format!(
        "[network]\nbridge = \"berthc54\"\nsubnet = \"10.254.0.0/24\"\nchain_prefix = \"BTC54\"\n\n[cni]\nconf_dir = \"{}\"\n\n{}",
        cni.display(),
        critest_images::mirror_config(&format!("http://{}", registry.host())),
    );
    // Anything not served by the mirror would be fetched from the upstream
    // registry: send that to a closed port on loopback instead.
    let dead_proxy = "http://127.0.0.1:9";
    let d = Berthd::start_with_env(
        &config,
        &[
            ("HTTPS_PROXY", dead_proxy),
            ("HTTP_PROXY", dead_proxy),
            ("ALL_PROXY", dead_proxy),
            ("NO_PROXY", "127.0.0.1,localhost,::1"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let socket = d.socket.clone();
    cleanup.d = Some(d);

    let mut problems = Vec::new();
    let mut summaries = Vec::new();
    match &focus {
        Some(f) => {
            let r = run_critest(&critest, &socket, &work, "focus", &[&format!("-ginkgo.focus={f}")]);
            summaries.push(r.summary(&format!("(focus {f})")));
            problems.extend(check(&r, "focused run", true));
        }
        None => {
            let r = run_critest(&critest, &socket, &work, "spdy", &[]);
            summaries.push(r.summary("(all specs, SPDY streaming)"));
            problems.extend(check(&r, "all specs", false));
            summaries.push(allowed_summary(&r));

            let ws = run_critest(
                &critest,
                &socket,
                &work,
                "websocket",
                &[
                    "-websocket-exec",
                    "-websocket-attach",
                    "-websocket-portforward",
                    "-ginkgo.focus=\\[k8s.io\\] Streaming",
                ],
            );
            summaries.push(ws.summary("(Streaming specs, WebSocket)"));
            problems.extend(check(&ws, "websocket streaming", true));
            if ws.passed().len() < 5 {
                problems.push(format!("websocket streaming: only {} specs passed", ws.passed().len()));
            }
        }
    }
    let summary = summaries.join("\n");
    eprintln!("{summary}");
    // critest's output and reports outlive the run (the last run's only).
    let keep = target_dir().join("berth-critest-logs");
    let _ = std::fs::remove_dir_all(&keep);
    let _ = std::fs::create_dir_all(&keep);
    for e in std::fs::read_dir(&work).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log" || x == "json") {
            let _ = std::fs::copy(&p, keep.join(e.file_name()));
        }
    }
    let _ = std::fs::copy(
        cleanup.d.as_ref().unwrap().dir().join("berthd.log"),
        keep.join("berthd.log"),
    );
    if !problems.is_empty() {
        panic!(
            "{}\n\n{summary}\n\ncritest's output, reports and berthd's log: {}",
            problems.join("\n\n"),
            keep.display()
        );
    }
    drop(cleanup);
    drop(registry);
}
