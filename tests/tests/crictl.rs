//! The real crictl (cri-tools, pinned in `hack/tools/go.mod`, built by
//! `hack/tools.sh`) against a real berthd: what an operator types on a
//! node, checked on crictl's own output. Non-streaming calls only: version,
//! info, pull, images, runp/pods/inspectp, create/start/ps/inspect, exec -s
//! (ExecSync), logs, stop/rm, stopp/rmp. Pod and container configs are
//! crictl's JSON shapes (as in the README).
//!
//! Skips with a note when crictl is absent (see [`berth_tests::tools`]).
//! The berthd has its own built-in network (`berthc38`, `10.238.0.0/24`)
//! and the pods are removed on drop, also on failure.

use std::time::{Duration, Instant};

use berth_tests::cri_env::Env;
use berth_tests::tools::Crictl;
use berth_tests::{require_root, require_tool};
use serde_json::{json, Value};

/// The pod and container configs, written for crictl.
fn write_json(c: &Crictl, name: &str, v: &Value) -> String {
    let p = c.dir().join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    p.display().to_string()
}

/// `crictl ps -a -o json`'s entry for container `id`, if listed.
fn listed(c: &Crictl, id: &str) -> Option<Value> {
    c.json(&["ps", "-a", "-o", "json"])["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .cloned()
}

#[tokio::test]
async fn crictl_runs_a_pod_through_its_life() {
    require_root!();
    let bin = require_tool!(crictl);
    let e = Env::start(38, &[]).await;
    let c = Crictl::new(bin, &e.d.socket);

    // version, info
    let v = c.ok(&["version"]);
    assert!(v.contains("RuntimeName:  berth\n"), "{v}");
    assert!(v.contains("RuntimeApiVersion:  v1\n"), "{v}");
    assert!(
        v.contains(&format!("RuntimeVersion:  {}\n", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let info = c.json(&["info"]);
    let conditions = info["status"]["conditions"].as_array().expect("status.conditions");
    for want in ["RuntimeReady", "NetworkReady"] {
        let cond = conditions.iter().find(|x| x["type"] == want);
        assert_eq!(cond.map(|x| &x["status"]), Some(&json!(true)), "{want}: {info:#}");
    }

    // pull, images, inspecti (the harness registry on loopback: plain HTTP).
    let image = Env::image("berth/busybox:latest");
    let pulled = c.ok(&["pull", &image]);
    assert!(pulled.starts_with("Image is up to date for sha256:"), "{pulled}");
    let image_id = pulled.trim().rsplit(' ').next().unwrap().to_string();
    let images = c.json(&["images", "-o", "json"]);
    let found = images["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == image_id);
    assert_eq!(found.map(|i| &i["repoTags"]), Some(&json!([image])), "{images:#}");
    let table = c.ok(&["images"]);
    let (repo, tag) = image.rsplit_once(':').unwrap();
    assert!(table.lines().any(|l| l.starts_with(repo) && l.contains(tag)), "{table}");
    let inspected = c.json(&["inspecti", &image]);
    assert_eq!(inspected["status"]["id"], image_id, "{inspected:#}");

    // runp, pods, inspectp
    let log_dir = e.logs.path().join("crictl-web");
    let pod_config = write_json(
        &c,
        "pod.json",
        &json!({
            "metadata": {"name": "crictl-web", "namespace": "default", "uid": "crictl-web-1"},
            "hostname": "crictl-web",
            "log_directory": log_dir.display().to_string(),
            "linux": {}
        }),
    );
    let pod = c.ok(&["runp", &pod_config]).trim().to_string();
    assert_eq!(pod.len(), 64, "a pod id: {pod}");
    assert_eq!(c.ok(&["pods", "-q"]).trim(), pod);
    let p = c.json(&["inspectp", &pod]);
    assert_eq!(p["status"]["state"], "SANDBOX_READY", "{p:#}");
    assert_eq!(p["status"]["metadata"]["name"], "crictl-web");
    assert!(
        p["status"]["network"]["ip"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.238.0.")),
        "{p:#}"
    );

    // create, start, ps, inspect
    let ctr_config = write_json(
        &c,
        "web.json",
        &json!({
            "metadata": {"name": "web"},
            "image": {"image": image},
            "command": ["sh", "-c", "echo hello from crictl; trap 'exit 0' TERM; while true; do sleep 0.1; done"],
            "log_path": "web.log",
            "linux": {}
        }),
    );
    let ctr = c.ok(&["create", &pod, &ctr_config, &pod_config]).trim().to_string();
    assert_eq!(ctr.len(), 64, "a container id: {ctr}");
    assert_eq!(listed(&c, &ctr).unwrap()["state"], "CONTAINER_CREATED");
    assert_eq!(c.ok(&["start", &ctr]).trim(), ctr);
    let entry = listed(&c, &ctr).unwrap();
    assert_eq!(entry["state"], "CONTAINER_RUNNING", "{entry:#}");
    assert_eq!(entry["podSandboxId"], pod);
    assert_eq!(entry["metadata"]["name"], "web");
    // The POD column shows the kubelet's pod-name label (unknown here).
    let table = c.ok(&["ps"]);
    let row = table
        .lines()
        .find(|l| l.starts_with(&ctr[..13]))
        .unwrap_or_else(|| panic!("{ctr} not in\n{table}"));
    assert!(
        row.contains(" Running ") && row.contains(" web ") && row.contains(&pod[..13]),
        "{row}"
    );
    let inspected = c.json(&["inspect", &ctr]);
    assert_eq!(inspected["status"]["state"], "CONTAINER_RUNNING");
    assert_eq!(
        inspected["status"]["logPath"],
        log_dir.join("web.log").display().to_string()
    );

    // exec -s: ExecSync. crictl prints stdout, then stderr, each followed by
    // a newline of its own.
    let out = c.ok(&["exec", "-s", &ctr, "sh", "-c", "echo out; hostname"]);
    assert_eq!(out, "out\ncrictl-web\n\n\n");
    let failed = c.run(&["exec", "-s", &ctr, "sh", "-c", "echo bad >&2; exit 3"]);
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(failed.stderr.contains("exited with 3: bad"), "{failed:?}");
    let t = Instant::now();
    let timed_out = c.run(&["exec", "-s", "--timeout", "1", &ctr, "sleep", "1300"]);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(timed_out.code, Some(1), "{timed_out:?}");
    assert!(timed_out.stderr.contains("timed out"), "{timed_out:?}");
    let ps = c.ok(&["exec", "-s", &ctr, "ps", "-o", "pid,args"]);
    assert!(!ps.contains("sleep 1300"), "the timed-out exec is gone:\n{ps}");

    // logs
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = c.run(&["logs", &ctr]);
        if logs.success() && logs.stdout == "hello from crictl\n" {
            break;
        }
        assert!(Instant::now() < deadline, "crictl logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // stop (the TERM trap exits 0), rm
    assert_eq!(c.ok(&["stop", "--timeout", "10", &ctr]).trim(), ctr);
    let inspected = c.json(&["inspect", &ctr]);
    assert_eq!(inspected["status"]["state"], "CONTAINER_EXITED", "{inspected:#}");
    assert_eq!(inspected["status"]["exitCode"], 0, "{inspected:#}");
    assert_eq!(inspected["status"]["reason"], "Completed", "{inspected:#}");
    let exited = c.ok(&["ps", "-a", "--state", "exited", "-q"]);
    assert_eq!(exited.trim(), ctr);
    assert!(c.ok(&["ps", "-q"]).trim().is_empty());
    assert_eq!(c.ok(&["rm", &ctr]).trim(), ctr);
    assert!(listed(&c, &ctr).is_none());
    let gone = c.run(&["inspect", &ctr]);
    assert!(!gone.success(), "{gone:?}");

    // stopp, rmp
    let stopped = c.ok(&["stopp", &pod]);
    assert!(stopped.contains(&format!("Stopped sandbox {pod}")), "{stopped}");
    assert_eq!(c.json(&["inspectp", &pod])["status"]["state"], "SANDBOX_NOTREADY");
    let removed = c.ok(&["rmp", &pod]);
    assert!(removed.contains(&format!("Removed sandbox {pod}")), "{removed}");
    assert!(c.ok(&["pods", "-q"]).trim().is_empty());
}
