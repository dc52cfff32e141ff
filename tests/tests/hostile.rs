//! Hostile input: layers that try to write outside their snapshot, blobs
//! whose bytes do not match their digest, oversized documents.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_hack::oci::{self, sha256_digest};
use berth_tests::daemon::Berthd;
use berth_tests::fake::{self, Doc, FakeImage, FakeRegistry};
use berth_tests::fixture;
use berth_tests::ops;
use berth_tests::{require_root, snapshot};
use serde_json::json;

fn berthd() -> Berthd {
    Berthd::start("").unwrap_or_else(|e| panic!("{e:#}"))
}

/// How a store may deal with a hostile layer.
#[derive(PartialEq)]
enum Outcome {
    /// The pull must fail.
    Refused,
    /// The pull may also succeed with the entry confined to the snapshot
    /// (an absolute path read as relative to the layer root, as Docker and
    /// containerd do).
    RefusedOrConfined,
}

/// Pulls a hostile image and checks that nothing escaped.
async fn hostile(name: &str, outcome: Outcome) {
    let shared = fixture::shared();
    let img = fixture::images().expected.image(name);
    let h = img.hostile.as_ref().expect("a hostile image");
    for p in &h.forbidden_paths {
        let _ = std::fs::remove_file(p);
    }
    let passwd = std::fs::metadata("/etc/passwd").unwrap();
    let d = berthd();
    let mut c = d.images().await;
    let reference = shared.reference(name);
    let r = ops::pull(&mut c, &reference, None).await;
    for p in &h.forbidden_paths {
        let exists = Path::new(p).symlink_metadata().is_ok();
        let _ = std::fs::remove_file(p);
        assert!(!exists, "{name} ({}): {p} was created on the host", h.what);
    }
    let after = std::fs::metadata("/etc/passwd").unwrap();
    assert_eq!(passwd.nlink(), after.nlink(), "{name}: /etc/passwd gained a link");
    // Nothing named berth-evil-* anywhere in berthd's private dirs (except,
    // when confined, inside the image's own snapshot), or next to them.
    let parent = d.dir().parent().unwrap().to_path_buf();
    if outcome == Outcome::RefusedOrConfined {
        if let Ok(id) = &r {
            let snap = d.snapshot_dir(&img.amd64().layers[0].chain_id);
            let found = snapshot::find_named(d.dir(), "berth-evil");
            assert!(
                !found.is_empty(),
                "{name}: pull succeeded ({id}) but the entry is nowhere"
            );
            for f in &found {
                assert!(
                    f.starts_with(&snap),
                    "{name}: {} is outside the snapshot {}",
                    f.display(),
                    snap.display()
                );
            }
            assert!(
                snapshot::leftovers(&d.root).is_empty(),
                "{name}: {:?}",
                snapshot::leftovers(&d.root)
            );
            return;
        }
    }
    let found = snapshot::find_named(d.dir(), "berth-evil");
    assert!(found.is_empty(), "{name}: {found:?}");
    let beside: Vec<_> = snapshot::names(&parent)
        .into_iter()
        .filter(|n| n.contains("berth-evil"))
        .collect();
    assert!(beside.is_empty(), "{name}: {beside:?} next to the test dir");
    let msg = match r {
        Ok(id) => panic!("{name} ({}): the pull succeeded ({id})", h.what),
        Err(s) => s.message().to_string(),
    };
    assert!(!msg.is_empty());
    assert!(
        ops::status(&mut c, &reference).await.is_none(),
        "{name}: image recorded"
    );
    assert!(
        snapshot::committed(&d.root).is_empty(),
        "{name}: a snapshot was committed"
    );
    assert!(
        snapshot::leftovers(&d.root).is_empty(),
        "{name}: {:?}",
        snapshot::leftovers(&d.root)
    );
}

#[tokio::test]
async fn layer_with_dotdot_path_is_refused() {
    require_root!();
    hostile("berth/evil-dotdot:v1", Outcome::Refused).await;
}

#[tokio::test]
async fn layer_with_dotdot_inside_a_path_is_refused() {
    require_root!();
    hostile("berth/evil-dotdot-inner:v1", Outcome::Refused).await;
}

#[tokio::test]
async fn layer_with_absolute_path_stays_inside() {
    require_root!();
    hostile("berth/evil-abs:v1", Outcome::RefusedOrConfined).await;
}

#[tokio::test]
async fn layer_writing_through_an_absolute_symlink_is_refused() {
    require_root!();
    hostile("berth/evil-symlink:v1", Outcome::Refused).await;
}

#[tokio::test]
async fn layer_writing_through_a_climbing_symlink_is_refused() {
    require_root!();
    hostile("berth/evil-symlink-rel:v1", Outcome::Refused).await;
}

#[tokio::test]
async fn layer_hardlinking_host_passwd_is_refused() {
    require_root!();
    hostile("berth/evil-hardlink:v1", Outcome::Refused).await;
}

#[tokio::test]
async fn layer_hardlinking_through_dotdot_is_refused() {
    require_root!();
    hostile("berth/evil-hardlink-rel:v1", Outcome::Refused).await;
}

/// Pulls `repo:tag` from a fake registry serving `docs`; returns the error.
async fn pull_fake(docs: BTreeMap<String, Doc>, reference_suffix: &str) -> (String, Berthd) {
    let fake = FakeRegistry::start(docs);
    let d = berthd();
    let mut c = d.images().await;
    let reference = format!("{}/{reference_suffix}", fake.host());
    let r = ops::pull(&mut c, &reference, None).await;
    let msg = match r {
        Ok(id) => panic!("pull of {reference} succeeded ({id}); requests: {:?}", fake.requests()),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    };
    assert!(ops::list(&mut c, None).await.is_empty(), "an image was recorded");
    assert!(snapshot::committed(&d.root).is_empty());
    assert!(
        snapshot::leftovers(&d.root).is_empty(),
        "{:?}",
        snapshot::leftovers(&d.root)
    );
    (msg, d)
}

#[tokio::test]
async fn layer_digest_mismatch_fails_naming_the_digest() {
    require_root!();
    let img = FakeImage::new();
    let mut docs = img.docs("fake/bad", "v1");
    docs.get_mut(&format!("/v2/fake/bad/blobs/{}", img.layer_digest))
        .unwrap()
        .body = fake::corrupt(&img.layer);
    let (msg, _d) = pull_fake(docs, "fake/bad:v1").await;
    assert!(
        msg.contains(&img.layer_digest),
        "error does not name {}: {msg}",
        img.layer_digest
    );
}

#[tokio::test]
async fn config_digest_mismatch_fails_naming_the_digest() {
    require_root!();
    let img = FakeImage::new();
    let mut docs = img.docs("fake/bad", "v1");
    docs.get_mut(&format!("/v2/fake/bad/blobs/{}", img.config_digest))
        .unwrap()
        .body = fake::corrupt(&img.config);
    let (msg, _d) = pull_fake(docs, "fake/bad:v1").await;
    assert!(
        msg.contains(&img.config_digest),
        "error does not name {}: {msg}",
        img.config_digest
    );
}

#[tokio::test]
async fn manifest_digest_mismatch_fails_naming_the_digest() {
    require_root!();
    let img = FakeImage::new();
    let mut docs = img.docs("fake/bad", "v1");
    // Asked for by digest, the registry answers with other bytes.
    docs.get_mut(&format!("/v2/fake/bad/manifests/{}", img.manifest_digest))
        .unwrap()
        .body = fake::corrupt(&img.manifest);
    let (msg, _d) = pull_fake(docs, &format!("fake/bad@{}", img.manifest_digest)).await;
    assert!(
        msg.contains(&img.manifest_digest),
        "error does not name {}: {msg}",
        img.manifest_digest
    );
}

#[tokio::test]
async fn diff_id_mismatch_fails() {
    require_root!();
    let good = FakeImage::new();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(b"not this layer")]},
    }))
    .unwrap();
    let img = FakeImage::assemble(good.layer.clone(), config);
    let (msg, _d) = pull_fake(img.docs("fake/bad", "v1"), "fake/bad:v1").await;
    let claimed = sha256_digest(b"not this layer");
    assert!(
        msg.contains(&claimed),
        "error does not name the config's diff ID {claimed}: {msg}"
    );
}

#[tokio::test]
async fn oversized_manifest_is_refused() {
    require_root!();
    let img = FakeImage::new();
    let mut docs = img.docs("fake/big", "v1");
    // A valid manifest padded with 32 MiB of whitespace.
    let mut body = img.manifest.clone();
    body.extend(std::iter::repeat_n(b' ', 32 << 20));
    docs.insert(
        "/v2/fake/big/manifests/v1".into(),
        Doc {
            media_type: oci::MT_MANIFEST.into(),
            body,
        },
    );
    let (msg, _d) = pull_fake(docs, "fake/big:v1").await;
    assert!(!msg.is_empty());
}

#[tokio::test]
async fn oversized_config_is_refused() {
    require_root!();
    let good = FakeImage::new();
    let mut config: serde_json::Value = serde_json::from_slice(&good.config).unwrap();
    config["config"]["Labels"] = json!({"padding": "x".repeat(32 << 20)});
    let img = FakeImage::assemble(good.layer.clone(), serde_json::to_vec(&config).unwrap());
    let (msg, _d) = pull_fake(img.docs("fake/big", "v1"), "fake/big:v1").await;
    assert!(!msg.is_empty());
}
