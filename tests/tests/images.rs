//! The CRI ImageService of a real berthd, driven as the kubelet drives it,
//! pulling the test images from a local docker-registry.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use berth_hack::expect::{FileKind, ManifestExpect};
use berth_tests::daemon::Berthd;
use berth_tests::fixture::{self, Shared};
use berth_tests::ops::{self, expect_err};
use berth_tests::{require_root, snapshot};
use tonic::Code;

fn start() -> (Berthd, &'static Shared) {
    let shared = fixture::shared();
    let d = Berthd::start("").unwrap_or_else(|e| panic!("{e:#}"));
    (d, shared)
}

fn manifest(name: &str) -> &'static ManifestExpect {
    fixture::images().expected.image(name).amd64()
}

fn chain_ids(m: &ManifestExpect) -> BTreeSet<String> {
    m.layers.iter().map(|l| l.chain_id[7..].to_string()).collect()
}

fn assert_layers_unpacked(d: &Berthd, m: &ManifestExpect) {
    for l in &m.layers {
        snapshot::assert_snapshot(&d.snapshot_dir(&l.chain_id), &l.entries);
    }
}

fn assert_merged(d: &Berthd, m: &ManifestExpect) {
    let dirs: Vec<_> = m.layers.iter().map(|l| d.snapshot_dir(&l.chain_id)).collect();
    let merged = snapshot::merged_view(&dirs).expect("scanning snapshots");
    let diff = snapshot::diff(&m.merged, &merged);
    assert!(diff.is_empty(), "merged view differs:\n{}", diff.join("\n"));
}

#[tokio::test]
async fn pull_busybox_reports_id_tags_and_digests() {
    require_root!();
    let (d, shared) = start();
    let mut c = d.images().await;
    let reference = shared.reference("berth/busybox:latest");
    let m = manifest("berth/busybox:latest");
    let image_ref = ops::pull_ok(&mut c, &reference).await;
    assert_eq!(
        image_ref, m.config_digest,
        "PullImage returns the image ID (config digest)"
    );

    let img = ops::status(&mut c, &reference)
        .await
        .expect("pulled image has a status");
    assert_eq!(img.id, m.config_digest);
    assert_eq!(img.repo_tags, vec![reference.clone()]);
    assert_eq!(
        img.repo_digests,
        vec![format!(
            "{}/berth/busybox@{}",
            shared.host,
            shared.digest("berth/busybox:latest")
        )]
    );
    assert!(img.size > 1_000_000, "size {} is not the image's", img.size);
    assert_eq!(img.username, "");
    // Status by ID and by digest reference find the same image.
    for alias in [img.id.clone(), img.repo_digests[0].clone()] {
        let by = ops::status(&mut c, &alias)
            .await
            .unwrap_or_else(|| panic!("status by {alias}"));
        assert_eq!(by.id, img.id);
    }
    assert_layers_unpacked(&d, m);
    assert_eq!(snapshot::committed(&d.root), chain_ids(m));
    assert!(
        snapshot::leftovers(&d.root).is_empty(),
        "{:?}",
        snapshot::leftovers(&d.root)
    );
}

#[tokio::test]
async fn list_images_with_and_without_filter() {
    require_root!();
    let (d, shared) = start();
    let mut c = d.images().await;
    assert!(ops::list(&mut c, None).await.is_empty(), "a fresh store lists nothing");
    let busybox = shared.reference("berth/busybox:latest");
    let user = shared.reference("berth/user:v1");
    ops::pull_ok(&mut c, &busybox).await;
    ops::pull_ok(&mut c, &user).await;
    let all = ops::list(&mut c, None).await;
    let ids: BTreeSet<_> = all.iter().map(|i| i.id.clone()).collect();
    let want: BTreeSet<_> = [
        manifest("berth/busybox:latest").config_digest.clone(),
        manifest("berth/user:v1").config_digest.clone(),
    ]
    .into();
    assert_eq!(ids, want);
    let filtered = ops::list(&mut c, Some(&user)).await;
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert_eq!(filtered[0].repo_tags, vec![user.clone()]);
    let by_id = ops::list(&mut c, Some(&manifest("berth/busybox:latest").config_digest)).await;
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].repo_tags, vec![busybox]);
    assert!(ops::list(&mut c, Some(&shared.reference("berth/nope:v1")))
        .await
        .is_empty());
}

#[tokio::test]
async fn layered_snapshots_match_the_layers_byte_for_byte() {
    require_root!();
    let (d, shared) = start();
    let mut c = d.images().await;
    let m = manifest("berth/layered:v1");
    ops::pull_ok(&mut c, &shared.reference("berth/layered:v1")).await;
    assert_layers_unpacked(&d, m);
    assert_merged(&d, m);
    // Spot checks that say what broke in plain words.
    let l2 = d.snapshot_dir(&m.layers[2].chain_id);
    let l3 = d.snapshot_dir(&m.layers[3].chain_id);
    let target = std::fs::metadata(l2.join("links/target")).unwrap();
    let link = std::fs::metadata(l2.join("links/target-hardlink")).unwrap();
    assert_eq!(target.ino(), link.ino(), "hardlink must share the inode");
    let wh = std::fs::symlink_metadata(l3.join("data/x")).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()) && wh.rdev() == 0,
        "whiteout must be a 0:0 char device"
    );
    assert!(
        !l3.join("data/.wh.x").exists(),
        "the .wh. file itself must not be unpacked"
    );
    assert_eq!(
        xattr::get(l3.join("opq"), "trusted.overlay.opaque").unwrap().as_deref(),
        Some(&b"y"[..]),
        "opaque dir marker"
    );
    assert!(!l3.join("opq/.wh..wh..opq").exists());
    assert_eq!(
        xattr::get(l2.join("xattr/file"), "user.berth").unwrap().as_deref(),
        Some(&b"test"[..])
    );
    let setuid = std::fs::metadata(d.snapshot_dir(&m.layers[1].chain_id).join("perm/setuid")).unwrap();
    assert_eq!(setuid.mode() & 0o7777, 0o4755);
}

#[tokio::test]
async fn a_layer_shared_by_two_images_is_unpacked_once() {
    require_root!();
    let (d, shared) = start();
    let mut c = d.images().await;
    ops::pull_ok(&mut c, &shared.reference("berth/busybox:latest")).await;
    let base = manifest("berth/busybox:latest");
    let bin = d.snapshot_dir(&base.layers[0].chain_id).join("bin/busybox");
    let before = std::fs::metadata(&bin).unwrap();
    ops::pull_ok(&mut c, &shared.reference("berth/user:v1")).await;
    ops::pull_ok(&mut c, &shared.reference("berth/layered:v1")).await;
    let after = std::fs::metadata(&bin).unwrap();
    assert_eq!(
        (before.ino(), before.ctime_nsec()),
        (after.ino(), after.ctime_nsec()),
        "base layer re-unpacked"
    );
    let mut want = chain_ids(base);
    want.extend(chain_ids(manifest("berth/user:v1")));
    want.extend(chain_ids(manifest("berth/layered:v1")));
    assert_eq!(snapshot::committed(&d.root), want, "one snapshot per chain ID");
}

#[tokio::test]
async fn multiarch_index_selects_linux_amd64() {
    require_root!();
    let (d, shared) = start();
    let mut c = d.images().await;
    let img = fixture::images().expected.image("berth/multiarch:v1");
    let m = img.amd64();
    let reference = shared.reference("berth/multiarch:v1");
    let id = ops::pull_ok(&mut c, &reference).await;
    assert_eq!(id, m.config_digest, "the amd64 config");
    let st = ops::status(&mut c, &reference).await.unwrap();
    assert_eq!(
        st.repo_digests,
        vec![format!("{}/berth/multiarch@{}", shared.host, img.top_digest)],
        "RepoDigests carry the index digest"
    );
    let top = d.snapshot_dir(&m.layers.last().unwrap().chain_id);
    assert_eq!(std::fs::read_to_string(top.join("arch.txt")).unwrap(), "linux/amd64\n");
    assert_eq!(
        snapshot::committed(&d.root),
        chain_ids(m),
        "only amd64 layers are unpacked"
    );
    assert_layers_unpacked(&d, m);
}

#[tokio::test]
async fn image_user_surfaces_as_uid_or_username() {
    require_root!();
    let (d, shared) = start();
    let mut c = d.images().await;
    let numeric = shared.reference("berth/user:v1");
    let named = shared.reference("berth/username:v1");
    ops::pull_ok(&mut c, &numeric).await;
    ops::pull_ok(&mut c, &named).await;
    let n = ops::status(&mut c, &numeric).await.unwrap();
    assert_eq!(n.uid.map(|u| u.value), Some(1000), "USER 1000:1000 → uid 1000");
    assert_eq!(n.username, "");
    let u = ops::status(&mut c, &named).await.unwrap();
    assert_eq!(u.username, "berth", "USER berth → username");
    assert!(u.uid.is_none(), "no uid for a user name: {:?}", u.uid);
    // The verbose status carries the image config.
    let v = ops::status_full(&mut c, &numeric, true).await.unwrap();
    let info = v.info.values().cloned().collect::<Vec<_>>().join("\n");
    assert!(info.contains("FOO=bar"), "verbose info lacks the config env: {info}");
    assert!(info.contains("/home/berth"), "verbose info lacks WorkingDir: {info}");
}

#[tokio::test]
async fn a_second_tag_adds_a_name_not_a_copy() {
    require_root!();
    let (d, shared) = start();
    let mut c = d.images().await;
    let latest = shared.reference("berth/busybox:latest");
    let v2s2 = shared.reference("berth/busybox:v2s2");
    let id1 = ops::pull_ok(&mut c, &latest).await;
    let snaps = snapshot::committed(&d.root);
    // Same config, pushed as Docker schema 2: same image, second name.
    let id2 = ops::pull_ok(&mut c, &v2s2).await;
    assert_eq!(id1, id2);
    assert_eq!(snapshot::committed(&d.root), snaps, "no new snapshots");
    let all = ops::list(&mut c, None).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let tags: BTreeSet<_> = all[0].repo_tags.iter().cloned().collect();
    assert_eq!(tags, [latest.clone(), v2s2.clone()].into());
    let digests: BTreeSet<_> = all[0].repo_digests.iter().cloned().collect();
    let want: BTreeSet<_> = ["berth/busybox:latest", "berth/busybox:v2s2"]
        .iter()
        .map(|n| format!("{}/berth/busybox@{}", shared.host, shared.digest(n)))
        .collect();
    assert_eq!(digests, want);
    // Pulling by digest adds no tag.
    let by_digest = format!(
        "{}/berth/busybox@{}",
        shared.host,
        shared.digest("berth/busybox:latest")
    );
    assert_eq!(ops::pull_ok(&mut c, &by_digest).await, id1);
    let all = ops::list(&mut c, None).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].repo_tags.len(), 2, "{:?}", all[0].repo_tags);
}

#[tokio::test]
async fn remove_by_tag_id_and_digest_frees_layers() {
    require_root!();
    let (d, shared) = start();
    let mut c = d.images().await;
    let busybox = shared.reference("berth/busybox:latest");
    let layered = shared.reference("berth/layered:v1");
    let user = shared.reference("berth/user:v1");
    for r in [&busybox, &layered, &user] {
        ops::pull_ok(&mut c, r).await;
    }
    let used_before = ops::fs_info(&mut c).await.image_filesystems[0]
        .used_bytes
        .unwrap()
        .value;

    // By tag: layered's own layers go, the shared base stays.
    ops::remove(&mut c, &layered).await.expect("remove by tag");
    assert!(ops::status(&mut c, &layered).await.is_none());
    let mut want = chain_ids(manifest("berth/busybox:latest"));
    want.extend(chain_ids(manifest("berth/user:v1")));
    assert_eq!(snapshot::committed(&d.root), want);

    // By ID.
    ops::remove(&mut c, &manifest("berth/user:v1").config_digest)
        .await
        .expect("remove by id");
    assert!(ops::status(&mut c, &user).await.is_none());
    assert_eq!(
        snapshot::committed(&d.root),
        chain_ids(manifest("berth/busybox:latest"))
    );

    // By digest reference.
    let by_digest = format!(
        "{}/berth/busybox@{}",
        shared.host,
        shared.digest("berth/busybox:latest")
    );
    ops::remove(&mut c, &by_digest).await.expect("remove by digest");
    assert!(ops::status(&mut c, &busybox).await.is_none());
    assert!(ops::list(&mut c, None).await.is_empty());
    assert!(
        snapshot::committed(&d.root).is_empty(),
        "layers left: {:?}",
        snapshot::committed(&d.root)
    );
    assert!(
        snapshot::leftovers(&d.root).is_empty(),
        "{:?}",
        snapshot::leftovers(&d.root)
    );
    let used_after = ops::fs_info(&mut c).await.image_filesystems[0]
        .used_bytes
        .unwrap()
        .value;
    assert!(
        used_after + 1_500_000 <= used_before,
        "ImageFsInfo did not drop: {used_before} → {used_after}"
    );
    // Removing again is fine.
    ops::remove(&mut c, &busybox).await.expect("second remove succeeds");
}

#[tokio::test]
async fn image_fs_info_counts_the_store() {
    require_root!();
    let (d, shared) = start();
    let mut c = d.images().await;
    ops::pull_ok(&mut c, &shared.reference("berth/layered:v1")).await;
    let info = ops::fs_info(&mut c).await;
    let fs = info.image_filesystems.first().expect("one image filesystem");
    let used = fs.used_bytes.as_ref().map(|v| v.value).unwrap_or(0);
    let inodes = fs.inodes_used.as_ref().map(|v| v.value).unwrap_or(0);
    let unpacked: u64 = manifest("berth/layered:v1")
        .layers
        .iter()
        .flat_map(|l| &l.entries)
        .filter(|e| e.kind == FileKind::File)
        .map(|e| e.size)
        .sum();
    assert!(
        used >= unpacked / 2,
        "used_bytes {used} < half of {unpacked} unpacked bytes"
    );
    assert!(inodes >= 300, "inodes_used {inodes}: busybox alone has ~280 entries");
    let mp = fs.fs_id.as_ref().map(|f| f.mountpoint.clone()).unwrap_or_default();
    assert!(
        std::path::Path::new(&mp).starts_with(&d.root),
        "mountpoint {mp} is not under the root dir {}",
        d.root.display()
    );
}

#[tokio::test]
async fn absent_images_are_not_errors() {
    require_root!();
    let (d, shared) = start();
    let mut c = d.images().await;
    let absent = shared.reference("berth/absent:v1");
    let st = ops::status_full(&mut c, &absent, false)
        .await
        .expect("status of an absent image is OK");
    assert!(st.image.is_none());
    ops::remove(&mut c, &absent)
        .await
        .expect("removing an absent image is OK");
    ops::remove(
        &mut c,
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    )
    .await
    .expect("removing an absent ID is OK");
}

#[tokio::test]
async fn bad_references_and_unknown_tags() {
    require_root!();
    let (d, shared) = start();
    let mut c = d.images().await;
    for bad in ["UPPER/Case:tag", "busybox::latest", "busybox@sha256:xyz", ""] {
        let msg = expect_err(ops::pull(&mut c, bad, None).await, &[Code::InvalidArgument], bad);
        assert!(!msg.is_empty());
    }
    let unknown = shared.reference("berth/busybox:no-such-tag");
    let msg = expect_err(ops::pull(&mut c, &unknown, None).await, &[Code::NotFound], &unknown);
    assert!(msg.contains("no-such-tag") || msg.contains("berth/busybox"), "{msg}");
}

#[tokio::test]
async fn unreachable_registry_is_unavailable_and_named() {
    require_root!();
    let (d, _) = start();
    let mut c = d.images().await;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let msg = expect_err(
        ops::pull(&mut c, &format!("{host}/berth/busybox:latest"), None).await,
        &[Code::Unavailable],
        "closed port",
    );
    assert!(msg.contains(&host), "error does not name {host}: {msg}");
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_both_succeed() {
    require_root!();
    let (d, shared) = start();
    let reference = shared.reference("berth/layered:v1");
    let mut c1 = d.images().await;
    let mut c2 = d.images().await;
    let (a, b) = tokio::join!(
        ops::pull(&mut c1, &reference, None),
        ops::pull(&mut c2, &reference, None)
    );
    let (a, b) = (a.expect("first pull"), b.expect("second pull"));
    assert_eq!(a, b);
    assert_eq!(ops::list(&mut c1, None).await.len(), 1);
    assert_layers_unpacked(&d, manifest("berth/layered:v1"));
    assert!(
        snapshot::leftovers(&d.root).is_empty(),
        "{:?}",
        snapshot::leftovers(&d.root)
    );
}

#[tokio::test]
async fn sigkill_mid_pull_then_restart_pulls_cleanly() {
    require_root!();
    let (mut d, shared) = start();
    let reference = shared.reference("berth/big:v1");
    let mut c = d.images().await;
    let pull = tokio::spawn(async move { ops::pull(&mut c, &reference, None).await });
    // Wait until the pull has written something, then kill berthd hard.
    let deadline = Instant::now() + Duration::from_secs(30);
    while snapshot::leftovers(&d.root).is_empty() && snapshot::committed(&d.root).is_empty() {
        assert!(Instant::now() < deadline, "the pull never started writing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.kill9();
    let r = pull.await.unwrap();
    assert!(r.is_err(), "the pull cannot have succeeded after SIGKILL: {r:?}");
    d.restart().unwrap();
    let mut c = d.images().await;
    let reference = shared.reference("berth/big:v1");
    assert!(
        ops::status(&mut c, &reference).await.is_none(),
        "half an image is visible"
    );
    assert!(
        snapshot::leftovers(&d.root).is_empty(),
        "restart left: {:?}",
        snapshot::leftovers(&d.root)
    );
    let m = manifest("berth/big:v1");
    assert_eq!(ops::pull_ok(&mut c, &reference).await, m.config_digest);
    assert_layers_unpacked(&d, m);
    assert_eq!(snapshot::committed(&d.root), chain_ids(m));
    assert!(
        snapshot::leftovers(&d.root).is_empty(),
        "{:?}",
        snapshot::leftovers(&d.root)
    );
}

#[tokio::test]
async fn dropped_connection_mid_pull_leaves_nothing_half_written() {
    require_root!();
    let (d, shared) = start();
    let reference = shared.reference("berth/big:v1");
    let mut c = d.images().await;
    let pull = tokio::spawn(async move { ops::pull(&mut c, &reference, None).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    while snapshot::leftovers(&d.root).is_empty() && snapshot::committed(&d.root).is_empty() {
        assert!(Instant::now() < deadline, "the pull never started writing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The client goes away (as a kubelet whose context is cancelled).
    pull.abort();
    let _ = pull.await;
    let mut c = d.images().await;
    let reference = shared.reference("berth/big:v1");
    // Whether berthd finished the pull in the background or gave up, what
    // is visible is whole, and a new pull completes.
    let m = manifest("berth/big:v1");
    assert_eq!(ops::pull_ok(&mut c, &reference).await, m.config_digest);
    assert_layers_unpacked(&d, m);
    assert!(
        snapshot::leftovers(&d.root).is_empty(),
        "{:?}",
        snapshot::leftovers(&d.root)
    );
}

#[tokio::test]
async fn sigterm_exits_zero_and_removes_the_socket() {
    require_root!();
    let (mut d, _) = start();
    // The client stays connected, as the kubelet always is: draining must
    // not wait for idle connections to go away.
    let mut c = d.images().await;
    assert!(ops::list(&mut c, None).await.is_empty());
    assert!(d.stop(), "berthd did not exit 0 on SIGTERM:\n{}", d.log_tail());
    assert!(!d.socket.exists(), "socket {} left behind", d.socket.display());
    drop(c);
}
