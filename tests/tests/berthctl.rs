//! berthctl against a real berthd: the commands an operator runs on a node.

use berth_tests::daemon::Berthd;
use berth_tests::fixture;
use berth_tests::require_root;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn pull_with_progress_list_inspect_fsinfo_and_remove() {
    require_root!();
    let shared = fixture::shared();
    let d = Berthd::start("").unwrap_or_else(|e| panic!("{e:#}"));
    let reference = shared.reference("berth/layered:v1");
    let expected = fixture::images().expected.image("berth/layered:v1").amd64();

    let (ok, out, err) = d.berthctl(&["pull", &reference]).unwrap();
    assert!(ok, "pull failed: {err}");
    // Per-layer progress: every layer of the image shows up, and ends done.
    for layer in &expected.layers {
        let short: String = layer.digest.trim_start_matches("sha256:").chars().take(12).collect();
        assert!(
            out.lines().any(|l| l.starts_with(&short) && l.contains("done")),
            "no progress for {short}:\n{out}"
        );
    }
    assert!(
        out.contains(&format!("Image is up to date for {}", expected.config_digest)),
        "{out}"
    );

    let (ok, table, _) = d.berthctl(&["images"]).unwrap();
    assert!(ok);
    let repo = reference.rsplit_once(':').unwrap().0;
    let short_id: String = expected.config_digest[7..].chars().take(13).collect();
    assert!(table.lines().next().unwrap().starts_with("IMAGE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains(repo) && l.contains("v1") && l.contains(&short_id)),
        "{table}"
    );

    let (ok, listed, _) = d.berthctl(&["images", "-o", "json"]).unwrap();
    assert!(ok);
    let listed = json(&listed);
    assert_eq!(listed["images"][0]["id"], expected.config_digest.as_str());

    let (ok, quiet, _) = d.berthctl(&["images", "-q"]).unwrap();
    assert!(ok);
    assert_eq!(quiet.trim(), expected.config_digest);

    let (ok, inspected, _) = d.berthctl(&["inspecti", &reference]).unwrap();
    assert!(ok);
    let inspected = json(&inspected);
    assert_eq!(inspected["status"]["repo_tags"][0], reference.as_str());
    assert_eq!(inspected["info"]["info"]["imageSpec"]["rootfs"]["type"], "layers");

    let (ok, fsinfo, _) = d.berthctl(&["imagefsinfo"]).unwrap();
    assert!(ok);
    let used = json(&fsinfo)["image_filesystems"][0]["used_bytes"]["value"]
        .as_u64()
        .unwrap();
    assert!(used > 1_000_000, "image store uses {used} bytes after a 1 MB pull");

    let (ok, removed, _) = d.berthctl(&["rmi", &reference]).unwrap();
    assert!(ok);
    assert!(removed.contains(&format!("Deleted: {reference}")), "{removed}");
    let (ok, _, err) = d.berthctl(&["inspecti", &reference]).unwrap();
    assert!(!ok && err.contains("no such image"), "{err}");
    let (ok, _, err) = d.berthctl(&["rmi", &reference]).unwrap();
    assert!(!ok && err.contains("no such image"), "{err}");
}

#[test]
fn version_info_and_endpoint_from_the_environment() {
    require_root!();
    let d = Berthd::start("").unwrap_or_else(|e| panic!("{e:#}"));
    let (ok, out, _) = d.berthctl(&["version"]).unwrap();
    assert!(
        ok && out.contains("RuntimeName:  berth") && out.contains("RuntimeApiVersion:  v1"),
        "{out}"
    );
    let (ok, out, _) = d.berthctl(&["info"]).unwrap();
    assert!(ok);
    let info = json(&out);
    let conditions = info["status"]["conditions"].as_array().unwrap();
    assert!(conditions.iter().any(|c| c["type"] == "RuntimeReady"));

    // crictl's environment variable names the endpoint when --endpoint is absent.
    let socket = &d.socket;
    let out = std::process::Command::new(berth_tests::daemon::berthctl_bin())
        .arg("version")
        .env("CONTAINER_RUNTIME_ENDPOINT", format!("unix://{}", socket.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A bad pull is reported with its gRPC code and a non-zero exit.
    let (ok, _, err) = d.berthctl(&["pull", "Not A Reference"]).unwrap();
    assert!(!ok && err.contains("InvalidArgument"), "{err}");
}
