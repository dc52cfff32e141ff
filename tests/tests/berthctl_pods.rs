//! berthctl's pod and container commands against a real berthd: configs in
//! crictl's JSON and YAML shapes, listings, ID prefixes, logs and exec.
//!
//! Each test has its own berthd with its own built-in network (bridge
//! `berthk5N`, subnet `10.25N.0.0/24`, an empty CNI conf dir); every pod on
//! it is stopped and removed over CRI when the test ends, also on failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::daemon::{berthctl_bin, Berthd};
use berth_tests::fixture;
use berth_tests::require_root;

struct Env {
    d: Berthd,
    bridge: String,
    files: tempfile::TempDir,
    _cni: tempfile::TempDir,
}

impl Env {
    fn start(net: u8) -> Env {
        let cni = tempfile::tempdir().unwrap();
        let bridge = format!("berthk{net:02}");
        let config = format!(
            "[network]\nbridge = \"{bridge}\"\nsubnet = \"10.2{net:02}.0.0/24\"\nchain_prefix = \"BTK{net:02}\"\n\n[cni]\nconf_dir = \"{}\"\n",
            cni.path().display()
        );
        let d = Berthd::start(&config).unwrap_or_else(|e| panic!("{e:#}"));
        Env {
            d,
            bridge,
            files: tempfile::tempdir().unwrap(),
            _cni: cni,
        }
    }

    /// Writes a config file into the test's dir.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A pod sandbox log directory of its own.
    fn log_dir(&self, pod: &str) -> PathBuf {
        let dir = self.files.path().join("logs").join(pod);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn raw(&self, args: &[&str]) -> Output {
        Command::new(berthctl_bin())
            .arg("--endpoint")
            .arg(format!("unix://{}", self.d.socket.display()))
            .args(args)
            .output()
            .expect("run berthctl")
    }

    /// berthctl that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.raw(args);
        assert!(
            out.status.success(),
            "berthctl {args:?} failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.d.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// berthctl that must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.raw(args);
        assert!(
            !out.status.success(),
            "berthctl {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("berthctl {args:?}: not JSON ({e}):\n{text}"))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Whatever the test (or berthctl) left: every pod of this berthd,
        // over CRI, on a runtime of our own.
        self.d.remove_all_pods_blocking();
        let net = self.bridge.trim_start_matches("berthk");
        berth_tests::netclean::remove_test_network(&self.bridge, &format!("BTK{net}"), &[]);
    }
}

fn yaml_pod(name: &str, log_dir: &Path) -> String {
    // lowerCamelCase keys, as some crictl users write them.
    format!(
        "metadata:\n  name: {name}\n  namespace: berthctl\n  uid: uid-{name}\n  attempt: 1\n\
         logDirectory: {}\nhostname: {name}\nlabels:\n  app: {name}\n  tier: test\nlinux: {{}}\n",
        log_dir.display()
    )
}

fn json_pod(name: &str, log_dir: &Path) -> String {
    serde_json::json!({
        "metadata": {"name": name, "namespace": "berthctl", "uid": format!("uid-{name}"), "attempt": 0},
        "log_directory": log_dir.display().to_string(),
        "labels": {"app": name},
        "linux": {}
    })
    .to_string()
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pods_from_yaml_and_json_listed_inspected_stopped_and_removed() {
    require_root!();
    let e = Env::start(50);
    let yaml = e.file("pod.yaml", &yaml_pod("web-yaml", &e.log_dir("web-yaml")));
    let json = e.file("pod.json", &json_pod("web-json", &e.log_dir("web-json")));
    let yaml_id = e.ok(&["runp", yaml.to_str().unwrap()]).trim().to_string();
    let json_id = e.ok(&["runp", json.to_str().unwrap()]).trim().to_string();
    assert_eq!((yaml_id.len(), json_id.len()), (64, 64), "{yaml_id} {json_id}");

    let table = e.ok(&["pods"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"],
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.contains("web-yaml"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.starts_with(&yaml_id[..13]) && !row.contains(&yaml_id), "{row}");
    for cell in ["ago", "Ready", "berthctl", "(default)"] {
        assert!(row.contains(cell), "{cell:?} not in {row:?}");
    }
    assert!(
        row.split_whitespace().any(|c| c == "1"),
        "attempt 1 from the YAML: {row}"
    );
    // Newest first.
    assert!(
        table.find("web-json").unwrap() < table.find("web-yaml").unwrap(),
        "{table}"
    );

    let listed = e.json(&["pods", "-o", "json"]);
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    let yaml_item = items.iter().find(|p| p["id"] == yaml_id.as_str()).unwrap();
    assert_eq!(yaml_item["metadata"]["name"], "web-yaml");
    assert_eq!(yaml_item["labels"]["tier"], "test");
    let yaml_listing = e.ok(&["pods", "-o", "yaml", "--name", "web-yaml"]);
    assert!(
        yaml_listing.contains("name: web-yaml") && !yaml_listing.contains("web-json"),
        "{yaml_listing}"
    );

    // Filters.
    assert_eq!(e.ok(&["pods", "-q", "--name", "web-json"]).trim(), json_id);
    assert_eq!(e.ok(&["pods", "-q", "--label", "tier=test"]).trim(), yaml_id);
    assert_eq!(e.ok(&["pods", "-q", "--id", &yaml_id[..10]]).trim(), yaml_id);
    assert_eq!(e.ok(&["pods", "-q", "--namespace", "nope"]).trim(), "");
    assert_eq!(e.ok(&["pods", "-q", "--state", "notready"]).trim(), "");
    assert_eq!(e.ok(&["pods", "-q", "--latest"]).trim(), json_id);

    // inspectp by prefix, verbose info parsed into JSON.
    let inspected = e.json(&["inspectp", &yaml_id[..8]]);
    assert_eq!(inspected["status"]["id"], yaml_id.as_str());
    assert_eq!(inspected["status"]["metadata"]["uid"], "uid-web-yaml");
    assert!(
        inspected["status"]["network"]["ip"]
            .as_str()
            .unwrap()
            .starts_with("10.250.0."),
        "{inspected}"
    );
    assert!(inspected["info"]["info"].is_object(), "info parsed: {inspected}");
    let as_yaml = e.ok(&["inspectp", "-o", "yaml", &json_id[..8]]);
    assert!(as_yaml.contains("name: web-json"), "{as_yaml}");
    let err = e.fails(&["inspectp", "ffffffffffff"]);
    assert!(err.contains("no such pod sandbox ffffffffffff"), "{err}");

    // A Ready pod is not removed without --force.
    let err = e.fails(&["rmp", &yaml_id[..12]]);
    assert!(err.contains("stop it first"), "{err}");
    let out = e.ok(&["stopp", &yaml_id[..12]]);
    assert!(out.contains(&format!("Stopped sandbox {yaml_id}")), "{out}");
    assert_eq!(e.ok(&["pods", "-q", "--state", "notready"]).trim(), yaml_id);
    assert!(e
        .ok(&["pods"])
        .lines()
        .any(|l| l.contains("web-yaml") && l.contains("NotReady")));
    let out = e.ok(&["rmp", &yaml_id[..12]]);
    assert!(out.contains(&format!("Removed sandbox {yaml_id}")), "{out}");
    let out = e.ok(&["rmp", "-f", &json_id[..12]]);
    assert!(out.contains(&format!("Removed sandbox {json_id}")), "{out}");
    assert_eq!(e.ok(&["pods", "-q"]).trim(), "");

    // rmp -a -f takes every pod.
    e.ok(&["runp", yaml.to_str().unwrap()]);
    e.ok(&["runp", json.to_str().unwrap()]);
    let out = e.ok(&["rmp", "-a", "-f"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("Removed sandbox")).count(),
        2,
        "{out}"
    );
    assert_eq!(e.ok(&["pods", "-q"]).trim(), "");
}

#[test]
fn bad_config_files_are_refused_naming_the_file_and_field() {
    require_root!();
    let e = Env::start(51);
    let typo = e.file("typo.yaml", "metadata:\n  name: x\n  namspace: y\n");
    let err = e.fails(&["runp", typo.to_str().unwrap()]);
    assert!(
        err.contains("typo.yaml") && err.contains("unknown field metadata.namspace"),
        "{err}"
    );
    let wrong_type = e.file(
        "wrong.json",
        r#"{"metadata": {"name": "x"}, "port_mappings": [{"container_port": "http"}]}"#,
    );
    let err = e.fails(&["runp", wrong_type.to_str().unwrap()]);
    assert!(
        err.contains("wrong.json") && err.contains("port_mappings[0].container_port"),
        "{err}"
    );
    let broken = e.file("broken.yaml", "metadata: [name\n");
    let err = e.fails(&["runp", broken.to_str().unwrap()]);
    assert!(err.contains("broken.yaml") && err.contains("not JSON or YAML"), "{err}");
    let err = e.fails(&["runp", "/nonexistent/pod.json"]);
    assert!(err.contains("/nonexistent/pod.json"), "{err}");
    // berthd's own refusal comes back with its gRPC code.
    let no_name = e.file("noname.json", r#"{"metadata": {"namespace": "x"}}"#);
    let err = e.fails(&["runp", no_name.to_str().unwrap()]);
    assert!(err.contains("InvalidArgument"), "{err}");
    assert_eq!(e.ok(&["pods", "-q"]).trim(), "");
}

/// Echoes lines (one of 20000 bytes, beyond the 16 KiB record limit) on
/// both streams, then serves until SIGTERM. The pause keeps the two
/// streams' records in order in the file.
const SCRIPT: &str = "echo first; head -c 20000 /dev/zero | tr '\\0' x; echo; echo oops >&2; sleep 0.3; echo last; \
                      trap 'exit 0' TERM; while true; do sleep 0.1; done";

#[test]
fn containers_created_started_listed_logged_execed_stopped_and_removed() {
    require_root!();
    let e = Env::start(52);
    let image = fixture::shared().reference("berth/busybox:latest");
    let pod_path = e.file("pod.json", &json_pod("app", &e.log_dir("app")));
    let pod = e.ok(&["runp", pod_path.to_str().unwrap()]).trim().to_string();
    let container_yaml = format!(
        "metadata:\n  name: echo\nimage:\n  image: {image}\ncommand: [sh, -c, {script:?}]\n\
         envs:\n- key: GREETING\n  value: hello\nlabels: {{role: echo}}\nlogPath: echo/0.log\nlinux: {{}}\n",
        script = SCRIPT
    );
    let ctr_path = e.file("echo.yaml", &container_yaml);
    // The image is pulled by create --pull; crictl's argument order.
    let id = e
        .ok(&[
            "create",
            "--pull",
            &pod[..10],
            ctr_path.to_str().unwrap(),
            pod_path.to_str().unwrap(),
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");

    // Created: only `ps -a` shows it.
    assert_eq!(e.ok(&["ps", "-q"]).trim(), "");
    let table = e.ok(&["ps", "-a"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "CONTAINER",
            "IMAGE",
            "CREATED",
            "STATE",
            "NAME",
            "ATTEMPT",
            "POD ID",
            "POD"
        ],
        "{table}"
    );
    let row = table.lines().nth(1).unwrap_or_else(|| panic!("{table}"));
    for cell in [&id[..13], "Created", "echo", &pod[..13], "app", "ago"] {
        assert!(row.contains(cell), "{cell:?} not in {row:?}");
    }

    let out = e.ok(&["start", &id[..10]]);
    assert_eq!(out.trim(), id);
    assert_eq!(e.ok(&["ps", "-q"]).trim(), id);
    assert!(e.ok(&["ps"]).lines().nth(1).unwrap().contains("Running"));
    assert_eq!(e.ok(&["ps", "-q", "--name", "ech"]).trim(), id);
    assert_eq!(e.ok(&["ps", "-q", "--label", "role=echo"]).trim(), id);
    assert_eq!(e.ok(&["ps", "-q", "--pod", &pod[..10]]).trim(), id);
    assert_eq!(e.ok(&["ps", "-q", "--state", "exited"]).trim(), "");
    assert_eq!(e.ok(&["ps", "-q", "--label", "role=other"]).trim(), "");
    let listed = e.json(&["ps", "-o", "json"]);
    assert_eq!(listed["containers"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["containers"][0]["labels"]["role"], "echo");

    let inspected = e.json(&["inspect", &id[..10]]);
    assert_eq!(inspected["status"]["metadata"]["name"], "echo");
    let log_path = inspected["status"]["log_path"].as_str().unwrap().to_string();
    assert!(log_path.ends_with("echo/0.log"), "{inspected}");
    assert!(inspected["info"].is_object(), "{inspected}");

    // logs: long lines come back joined from their P records.
    wait_for("the last line in the log", || {
        std::fs::read_to_string(&log_path).is_ok_and(|t| t.contains(" last"))
    });
    let raw = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        raw.lines().any(|l| l.contains(" stdout P ")),
        "no partial record:\n{raw}"
    );
    let out = e.raw(&["logs", &id[..10]]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let long = "x".repeat(20000);
    assert_eq!(stdout, format!("first\n{long}\nlast\n"));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(e.ok(&["logs", "--tail", "1", &id[..10]]), "last\n");
    let stamped = e.ok(&["logs", "--timestamps", "--tail", "2", &id]);
    for line in stamped.lines() {
        let (time, content) = line.split_once(' ').unwrap();
        assert!(chrono_like(time), "{line:.80}");
        assert!(content == "last" || content == long, "{line:.80}");
    }
    assert_eq!(e.ok(&["logs", "--since", "2999-01-01T00:00:00Z", &id]), "");

    // exec: output, and the command's exit code as berthctl's.
    assert_eq!(e.ok(&["exec", &id[..10], "sh", "-c", "echo $GREETING"]), "hello\n");
    let out = e.raw(&[
        "exec",
        "-s",
        "--timeout",
        "10",
        &id[..10],
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // logs -f keeps going until the container exits.
    let mut follower = Command::new(berthctl_bin())
        .arg("--endpoint")
        .arg(format!("unix://{}", e.d.socket.display()))
        .args(["logs", "-f", "--tail", "1", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(follower.try_wait().unwrap().is_none(), "logs -f returned while running");
    assert_eq!(e.ok(&["stop", "-t", "5", &id[..10]]).trim(), id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while follower.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = follower.kill();
            panic!("logs -f did not end after the container exited");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let followed = follower.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "last\n");

    assert_eq!(e.ok(&["ps", "-q"]).trim(), "");
    assert_eq!(e.ok(&["ps", "-q", "--state", "exited"]).trim(), id);
    assert!(e.ok(&["ps", "-a"]).lines().nth(1).unwrap().contains("Exited"));

    // rm; a running one only with -f.
    assert_eq!(e.ok(&["rm", &id[..10]]).trim(), id);
    assert_eq!(e.ok(&["ps", "-a", "-q"]).trim(), "");
    let second = e
        .ok(&["create", &pod, ctr_path.to_str().unwrap(), pod_path.to_str().unwrap()])
        .trim()
        .to_string();
    e.ok(&["start", &second]);
    let err = e.fails(&["rm", &second]);
    assert!(err.contains("stop it first"), "{err}");
    assert_eq!(e.ok(&["rm", "-f", &second]).trim(), second);
    let err = e.fails(&["logs", &second]);
    assert!(err.contains("no such container"), "{err}");

    // stopp takes the pod's containers with it; rmp removes them.
    let third = e
        .ok(&["create", &pod, ctr_path.to_str().unwrap(), pod_path.to_str().unwrap()])
        .trim()
        .to_string();
    e.ok(&["start", &third]);
    e.ok(&["stopp", &pod[..10]]);
    assert_eq!(e.ok(&["ps", "-q", "-a", "--state", "exited"]).trim(), third);
    e.ok(&["rmp", &pod[..10]]);
    assert_eq!(e.ok(&["ps", "-a", "-q"]).trim(), "");
    assert_eq!(e.ok(&["pods", "-q"]).trim(), "");
}

/// `2024-05-01T12:00:00.123456789Z` or with an offset.
fn chrono_like(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.contains(':')
}
