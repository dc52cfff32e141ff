//! berthd under the real kubelet: `hack/cluster.sh up` brings up a one-node
//! cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler
//! and a kubelet from `hack/tools.sh k8s`, pinned in
//! `hack/tools/k8s/go.mod`) whose runtime is a berthd built from this
//! checkout; `hack/cluster.sh check` runs a Deployment of the test web
//! server and drives it with kubectl (Ready, logs, exec, exec -i, exec -it,
//! cp, stats, port-forward, rollout restart, delete); `down` takes it all
//! away, also when a step failed.
//!
//! Opt-in: set `BERTH_CLUSTER_TEST=1`. A cold build of the Kubernetes
//! binaries takes about ten minutes on two cores (cached afterwards), and
//! the cluster listens on fixed ports, so it runs only when asked for.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::require_root;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/cluster.sh")
}

fn run(step: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg(script())
        .arg(step)
        .output()
        .expect("run hack/cluster.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Takes the cluster down when dropped, also on a failed assertion.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let (ok, text) = run("down");
        if !ok {
            eprintln!("hack/cluster.sh down failed:\n{text}");
        }
    }
}

#[test]
fn kubelet_runs_a_deployment_on_berthd() {
    require_root!();
    if std::env::var("BERTH_CLUSTER_TEST").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED {}: set BERTH_CLUSTER_TEST=1 to run a one-node cluster on berthd (hack/cluster.sh)",
            module_path!()
        );
        return;
    }
    let dir = std::env::var_os("BERTH_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/berth-cluster"));
    assert!(
        !dir.join("state.env").exists(),
        "a cluster is already up ({}): hack/cluster.sh down first",
        dir.display()
    );
    let _down = Down;
    let (ok, text) = run("up");
    assert!(ok, "hack/cluster.sh up failed:\n{text}");
    assert!(
        text.contains(" Ready ") && text.contains("berth://"),
        "node not Ready on berth:\n{text}"
    );
    let (ok, text) = run("check");
    assert!(ok, "hack/cluster.sh check failed:\n{text}");
    assert!(text.contains(" 0 failed"), "{text}");
}
