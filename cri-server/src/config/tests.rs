use std::fs;

use super::*;

fn source_in(dir: &Path, body: Option<&str>) -> ConfigSource {
    let file = dir.join("berth.toml");
    if let Some(b) = body {
        fs::write(&file, b).unwrap();
    }
    ConfigSource { file, explicit: false }
}

#[test]
fn no_file_gives_working_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load(&source_in(dir.path(), None)).unwrap();
    assert_eq!(cfg, Config::default());
    assert_eq!(cfg.socket_path(), PathBuf::from("/run/berth/berth.sock"));
    assert_eq!(
        cfg.cni.bin_dirs,
        vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
    );
}

#[test]
fn explicit_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = source_in(dir.path(), None);
    src.explicit = true;
    let err = load(&src).unwrap_err().to_string();
    assert!(err.contains("berth.toml"), "{err}");
}

#[test]
fn unknown_key_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(&source_in(dir.path(), Some("[images]\nmax_parallel = 3\n")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("berth.toml") && err.contains("max_parallel"), "{err}");
}

#[test]
fn unknown_key_in_drop_in_names_the_drop_in() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_in(dir.path(), Some("log_level = \"debug\"\n"));
    fs::create_dir(dir.path().join("berth.d")).unwrap();
    fs::write(dir.path().join("berth.d/10-bad.toml"), "[cni]\nconfdir = \"/x\"\n").unwrap();
    let err = load(&src).unwrap_err().to_string();
    assert!(err.contains("10-bad.toml") && err.contains("confdir"), "{err}");
}

#[test]
fn bad_values_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (body, key) in [
        ("root = \"relative/dir\"", "root"),
        (
            "[images]\nmax_concurrent_downloads = 0",
            "images.max_concurrent_downloads",
        ),
        ("[images]\nplatform = \"linux\"", "images.platform"),
        ("[runtime]\ncgroup_driver = \"systemd\"", "runtime.cgroup_driver"),
        ("[runtime]\ncgroup_prefix = \"berth\"", "runtime.cgroup_prefix"),
        ("[runtime]\ncgroup_prefix = \"/\"", "runtime.cgroup_prefix"),
        ("[runtime]\ncgroup_prefix = \"/a/../b\"", "runtime.cgroup_prefix"),
        ("[network]\nchain_prefix = \"BAD PREFIX\"", "network.chain_prefix"),
        ("[registries.\"Bad Host\"]\nmirrors = []", "Bad Host"),
        ("[registries.\"docker.io\"]\nmirrors = [\"ftp://x\"]", "mirrors[0]"),
        ("[registries.\"docker.io\"]\nauth = \"!!!\"", ".auth"),
        ("[registries.\"docker.io\"]\nusername = \"u\"", ".username"),
        ("log_level = \"[[[\"", "log_level"),
        ("metrics_address = \"localhost\"", "metrics_address"),
        (
            "[images]\nmax_concurrent_downloads = \"three\"",
            "max_concurrent_downloads",
        ),
    ] {
        let err = load(&source_in(dir.path(), Some(body))).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains("berth.toml"), "{body:?} → {err}");
    }
}

#[test]
fn drop_ins_override_key_by_key_in_lexical_order() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_in(
        dir.path(),
        Some("root = \"/srv/berth\"\n[images]\nmax_concurrent_downloads = 5\n[registries.\"docker.io\"]\nmirrors = [\"http://127.0.0.1:5001\"]\n"),
    );
    let d = dir.path().join("berth.d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("20-b.toml"), "[images]\nplatform = \"linux/arm64/v8\"\n").unwrap();
    fs::write(
        d.join("10-a.toml"),
        "[images]\nplatform = \"linux/arm/v7\"\nmax_concurrent_downloads = 2\n",
    )
    .unwrap();
    fs::write(d.join("ignored.conf"), "garbage").unwrap();
    let cfg = load(&src).unwrap();
    assert_eq!(cfg.root, PathBuf::from("/srv/berth"));
    assert_eq!(cfg.images.max_concurrent_downloads, 2);
    assert_eq!(cfg.images.platform, "linux/arm64/v8");
    assert_eq!(
        cfg.registries["docker.io"].mirrors,
        vec!["http://127.0.0.1:5001".to_string()]
    );
    let reg = cfg.registry_config();
    assert_eq!(reg.platform.variant.as_deref(), Some("v8"));
}

#[test]
fn registry_table_shape_from_the_issue() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load(&source_in(
        dir.path(),
        Some("[registries.\"registry.k8s.io\"]\nmirrors = [\"http://127.0.0.1:5001\"]\n"),
    ))
    .unwrap();
    assert_eq!(
        cfg.registries["registry.k8s.io"].mirrors,
        vec!["http://127.0.0.1:5001".to_string()]
    );
}

#[test]
fn default_config_round_trips() {
    let text = toml::to_string(&Config::default()).unwrap();
    let back: Config = toml::from_str(&text).unwrap();
    assert_eq!(back, Config::default());
}
