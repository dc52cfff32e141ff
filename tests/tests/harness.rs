//! The harness itself: test images, registries (anonymous, htpasswd, TLS,
//! token) and pushes, checked with skopeo. These do not need berthd.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::Ordering;

use berth_hack::oci;
use berth_hack::registry::{Registry, RegistryOptions};
use berth_tests::fixture::{self, Guard, PASSWORD, USER};
use sha2::{Digest, Sha256};

/// `skopeo inspect --raw` of `docker://REF`; Ok(manifest bytes) or Err(stderr).
fn skopeo_raw(reference: &str, extra: &[&str]) -> Result<Vec<u8>, String> {
    let authfile = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(authfile.path(), b"{\"auths\":{}}").unwrap();
    let out = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .env("REGISTRY_AUTH_FILE", authfile.path())
        .output()
        .expect("skopeo");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[test]
fn layouts_are_content_addressed_and_consistent() {
    let imgs = fixture::images();
    for (name, img) in &imgs.expected.images {
        let layout = imgs.dir.join("layouts").join(&img.layout);
        let blob = |d: &str| {
            let data = std::fs::read(layout.join("blobs/sha256").join(&d[7..]))
                .unwrap_or_else(|e| panic!("{name}: blob {d}: {e}"));
            assert_eq!(sha(&data), d, "{name}: blob content does not match its name");
            data
        };
        blob(&img.top_digest);
        for m in &img.manifests {
            let manifest: serde_json::Value = serde_json::from_slice(&blob(&m.digest)).unwrap();
            assert_eq!(manifest["config"]["digest"], m.config_digest.as_str(), "{name}");
            let config: serde_json::Value = serde_json::from_slice(&blob(&m.config_digest)).unwrap();
            let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            assert_eq!(diff_ids.len(), m.layers.len(), "{name}");
            let chains = oci::chain_ids(&diff_ids);
            for (i, l) in m.layers.iter().enumerate() {
                let data = blob(&l.digest);
                assert_eq!(data.len() as u64, l.size);
                let tar = match l.compression {
                    oci::Compression::None => data,
                    oci::Compression::Gzip => gunzip(&data),
                    oci::Compression::Zstd => zstd::decode_all(&data[..]).unwrap(),
                };
                assert_eq!(sha(&tar), l.diff_id, "{name} layer {i}: diff ID");
                assert_eq!(diff_ids[i], l.diff_id, "{name} layer {i}: config diff ID");
                assert_eq!(chains[i], l.chain_id, "{name} layer {i}: chain ID");
                assert_eq!(manifest["layers"][i]["mediaType"], l.media_type.as_str());
            }
        }
    }
    // The layered image mixes every compression and the busybox layer is shared.
    let layered = imgs.expected.image("berth/layered:v1").amd64();
    let kinds: std::collections::BTreeSet<_> = layered.layers.iter().map(|l| l.media_type.clone()).collect();
    assert_eq!(
        kinds.len(),
        3,
        "layered:v1 must mix gzip, zstd and plain layers: {kinds:?}"
    );
    let busybox = imgs.expected.image("berth/busybox:latest").amd64();
    assert_eq!(layered.layers[0].chain_id, busybox.layers[0].chain_id);
    let big: u64 = imgs
        .expected
        .image("berth/big:v1")
        .amd64()
        .layers
        .iter()
        .flat_map(|l| &l.entries)
        .map(|e| e.size)
        .sum();
    assert!(big >= 60_000_000, "big:v1 is only {big} bytes unpacked");
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn shared_registry_serves_every_pushed_image() {
    let shared = fixture::shared();
    let imgs = fixture::images();
    for (name, img) in &imgs.expected.images {
        let raw =
            skopeo_raw(&shared.reference(name), &["--tls-verify=false"]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sha(&raw), img.top_digest, "{name}: registry serves another manifest");
        let doc: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(doc["mediaType"], img.top_media_type.as_str());
    }
    // The Docker schema 2 copy of busybox.
    let raw = skopeo_raw(&shared.reference("berth/busybox:v2s2"), &["--tls-verify=false"]).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(doc["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(sha(&raw), shared.digest("berth/busybox:v2s2"));
    let busybox = imgs.expected.image("berth/busybox:latest").amd64();
    assert_eq!(
        doc["config"]["digest"],
        busybox.config_digest.as_str(),
        "v2s2 keeps the config"
    );
    // Unknown tags are unknown.
    assert!(skopeo_raw(&shared.reference("berth/busybox:nope"), &["--tls-verify=false"]).is_err());
}

#[test]
fn htpasswd_registry_wants_the_password() {
    let r = fixture::private_registry(Guard::Basic, &["berth/busybox:latest"]);
    let reference = r.reference("berth/busybox:latest");
    let err = skopeo_raw(&reference, &["--tls-verify=false"]).unwrap_err();
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );
    let err = skopeo_raw(&reference, &["--tls-verify=false", "--creds", &format!("{USER}:wrong")]).unwrap_err();
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );
    let raw = skopeo_raw(
        &reference,
        &["--tls-verify=false", "--creds", &format!("{USER}:{PASSWORD}")],
    )
    .unwrap();
    assert_eq!(sha(&raw), r.pushed.digests["berth/busybox:latest"]);
}

#[test]
fn tls_registry_is_trusted_through_its_ca() {
    let r = fixture::private_registry(Guard::BasicTls, &["berth/busybox:latest"]);
    assert!(r.registry.url().starts_with("https://"));
    let reference = r.reference("berth/busybox:latest");
    let creds = format!("{USER}:{PASSWORD}");
    // Verification against the system roots fails…
    let err = skopeo_raw(&reference, &["--creds", &creds]).unwrap_err();
    assert!(err.contains("certificate") || err.contains("x509"), "{err}");
    // …and succeeds with the generated CA.
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(r.registry.ca_pem().unwrap(), certs.path().join("ca.crt")).unwrap();
    let cert_dir = format!("--cert-dir={}", certs.path().display());
    let raw = skopeo_raw(&reference, &["--creds", &creds, &cert_dir]).unwrap();
    assert_eq!(sha(&raw), r.pushed.digests["berth/busybox:latest"]);
}

#[test]
fn token_registry_accepts_only_issued_tokens() {
    let r = fixture::private_registry(Guard::Token, &["berth/busybox:latest"]);
    let token = r.token.as_ref().unwrap();
    let pushes = token.stats.issued.load(Ordering::SeqCst);
    assert!(pushes > 0, "skopeo push must have fetched tokens");
    let reference = r.reference("berth/busybox:latest");
    // Anonymous: a token without access, so the registry refuses.
    let err = skopeo_raw(&reference, &["--tls-verify=false"]).unwrap_err();
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized") || err.to_lowercase().contains("denied"),
        "{err}"
    );
    // Wrong password: the token server refuses.
    let refused = token.stats.refused.load(Ordering::SeqCst);
    let err = skopeo_raw(&reference, &["--tls-verify=false", "--creds", &format!("{USER}:nope")]).unwrap_err();
    assert!(!err.is_empty());
    assert!(token.stats.refused.load(Ordering::SeqCst) > refused);
    // Right password.
    let raw = skopeo_raw(
        &reference,
        &["--tls-verify=false", "--creds", &format!("{USER}:{PASSWORD}")],
    )
    .unwrap();
    assert_eq!(sha(&raw), r.pushed.digests["berth/busybox:latest"]);
    let log = token.stats.log.lock().unwrap().join("\n");
    assert!(log.contains("user=berth scope=repository:berth/busybox:pull"), "{log}");
}

#[test]
fn registry_is_gone_after_drop() {
    let r = Registry::start(RegistryOptions::default()).unwrap();
    let port = r.port();
    let dir = r.dir().to_path_buf();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(r);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn readme_config_examples_are_accepted_by_berthd() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .map(|rest| &rest[..rest.find("```").expect("closed toml block")])
        .collect();
    assert!(!blocks.is_empty(), "README has no toml example");
    let dir = tempfile::tempdir().unwrap();
    let mut shown_all = String::new();
    for (i, block) in blocks.iter().enumerate() {
        let cfg = dir.path().join(format!("berth-{i}.toml"));
        std::fs::write(&cfg, block).unwrap();
        let out = Command::new(berth_tests::daemon::berthd_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["config", "show"])
            .output()
            .expect("berthd (build it first: cargo build --workspace)");
        assert!(
            out.status.success(),
            "berthd refuses the README's config example #{i}:\n{block}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        shown_all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    assert!(shown_all.contains("http://127.0.0.1:5001"), "{shown_all}");
}
