//! The pull pipeline and the store, end to end, against an in-memory registry.

use std::fs;
use std::time::Duration;

use tempfile::TempDir;

use super::*;
use crate::chain::chain_ids;
use crate::compression::Compression;
use crate::progress::LayerState;
use crate::testutil::{FakeRegistry, ImageSpec, Tar};

struct Env {
    dir: TempDir,
    fake: FakeRegistry,
    svc: Arc<ImageService>,
}

fn open(root: &Path, fake: &FakeRegistry, max_config_bytes: u64) -> Result<ImageService> {
    let opts = StoreOptions {
        max_concurrent_downloads: 2,
        ..StoreOptions::default()
    };
    ImageService::open_with_resolver(root, Arc::new(fake.clone()), max_config_bytes, opts)
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::new();
    let svc = Arc::new(open(&dir.path().join("root"), &fake, 1 << 20).unwrap());
    Env { dir, fake, svc }
}

impl Env {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn snapshots(&self) -> Vec<String> {
        names(&self.root().join("snapshots"))
    }

    fn blobs(&self) -> Vec<String> {
        names(&self.root().join("content/blobs/sha256"))
    }

    fn ingest(&self) -> Vec<String> {
        names(&self.root().join("content/ingest"))
    }

    /// Close the service and open it again on the same root.
    fn reopen(self) -> Env {
        let Env { dir, fake, svc } = self;
        drop(Arc::into_inner(svc).expect("service still shared"));
        let svc = Arc::new(open(&dir.path().join("root"), &fake, 1 << 20).unwrap());
        Env { dir, fake, svc }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn layer(name: &str) -> Vec<u8> {
    Tar::new()
        .dir(&format!("{name}/"), 0o755)
        .file(&format!("{name}/file"), 0o644, name.as_bytes())
        .finish()
}

fn hexes(digests: &[Digest]) -> Vec<String> {
    digests.iter().map(|d| d.hex().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_records_the_image_and_unpacks_its_layers() {
    let e = env();
    let pushed = e
        .fake
        .push("127.0.0.1:5000/app:v1", &[layer("base"), layer("top")], "app");
    let img = e.svc.pull("127.0.0.1:5000/app:v1", None).await.unwrap();

    assert_eq!(img.id, pushed.id);
    assert_eq!(img.repo_tags, ["127.0.0.1:5000/app:v1"]);
    assert_eq!(
        img.repo_digests,
        [format!("127.0.0.1:5000/app@{}", pushed.manifest_digest)]
    );
    assert_eq!(img.size, pushed.size);
    assert_eq!(img.manifest_digest, pushed.manifest_digest.to_string());
    let chain = chain_ids(&pushed.diff_ids);
    assert_eq!(img.chain_ids, chain.iter().map(ToString::to_string).collect::<Vec<_>>());
    chrono::DateTime::parse_from_rfc3339(&img.created_at).unwrap();
    let cmd = img.config.config().as_ref().unwrap().cmd().clone().unwrap();
    assert_eq!(cmd, ["/bin/sh"]);

    // Top layer first.
    let paths = e.svc.layer_paths(&img.id).unwrap();
    let snapshots = e.root().join("snapshots");
    assert_eq!(paths, [snapshots.join(chain[1].hex()), snapshots.join(chain[0].hex())]);
    assert_eq!(fs::read(paths[0].join("top/file")).unwrap(), b"top");
    assert_eq!(fs::read(paths[1].join("base/file")).unwrap(), b"base");

    // Config and manifest kept; layer blobs dropped once unpacked.
    let config = Digest::parse(&img.id).unwrap();
    let mut kept = hexes(&[config, pushed.manifest_digest.clone()]);
    kept.sort();
    assert_eq!(e.blobs(), kept);
    assert!(e.ingest().is_empty());

    for q in [
        img.id.clone(),
        img.id[7..].to_string(),
        img.id[7..19].to_string(),
        img.id[..30].to_string(),
        "127.0.0.1:5000/app:v1".to_string(),
        img.repo_digests[0].clone(),
    ] {
        assert_eq!(e.svc.status(&q).unwrap().map(|i| i.id), Some(img.id.clone()), "{q}");
    }
    assert_eq!(e.svc.status("127.0.0.1:5000/app:v2").unwrap(), None);
    assert_eq!(e.svc.list().unwrap(), vec![img]);
    let usage = e.svc.fs_usage().unwrap();
    assert!(usage.used_bytes > 0 && usage.inodes_used > 10, "{usage:?}");
    assert_eq!(e.svc.root(), e.root());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image_download_once() {
    let e = env();
    let pushed = e.fake.push("busybox", &[layer("a"), layer("b"), layer("c")], "busybox");
    e.fake.set_delay(Duration::from_millis(50));
    let spellings = [
        "busybox",
        "docker.io/library/busybox:latest",
        "busybox:latest",
        "library/busybox",
        "busybox",
    ];
    let handles: Vec<_> = spellings
        .iter()
        .map(|r| {
            let svc = Arc::clone(&e.svc);
            let r = r.to_string();
            tokio::spawn(async move { svc.pull(&r, None).await })
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap().unwrap().id, pushed.id);
    }
    assert_eq!(e.fake.resolves(), 1);
    for d in &pushed.layer_digests {
        assert_eq!(e.fake.fetches(d), 1, "{d}");
    }
    assert_eq!(e.fake.total_fetches(), 4);
    assert_eq!(e.svc.list().unwrap().len(), 1);
    assert_eq!(e.snapshots().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_sharing_a_base_layer_store_it_once() {
    let e = env();
    let a = e.fake.push("a:1", &[layer("base"), layer("a")], "a");
    let b = e.fake.push("b:1", &[layer("base"), layer("b")], "b");
    assert_eq!(a.layer_digests[0], b.layer_digests[0]);
    let ia = e.svc.pull("a:1", None).await.unwrap();
    let ib = e.svc.pull("b:1", None).await.unwrap();
    assert_eq!(ia.chain_ids[0], ib.chain_ids[0]);
    assert_ne!(ia.chain_ids[1], ib.chain_ids[1]);
    assert_eq!(e.fake.fetches(&a.layer_digests[0]), 1);
    assert_eq!(e.snapshots().len(), 3);

    // The same, with both pulls running at once.
    let c = e.fake.push("c:1", &[layer("base2"), layer("c")], "c");
    e.fake.push("d:1", &[layer("base2"), layer("d")], "d");
    e.fake.set_delay(Duration::from_millis(50));
    let (rc, rd) = tokio::join!(e.svc.pull("c:1", None), e.svc.pull("d:1", None));
    rc.unwrap();
    rd.unwrap();
    assert_eq!(e.fake.fetches(&c.layer_digests[0]), 1);
    assert_eq!(e.snapshots().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tag_adds_a_name_not_a_copy() {
    let e = env();
    let layers = [layer("x")];
    let one = e.fake.push("app:v1", &layers, "same");
    let two = e.fake.push("app:latest", &layers, "same");
    assert_eq!(one.id, two.id);
    e.svc.pull("app:v1", None).await.unwrap();
    let fetched = e.fake.total_fetches();
    let img = e.svc.pull("app", None).await.unwrap();
    assert_eq!(e.fake.total_fetches(), fetched, "nothing is downloaded again");
    assert_eq!(
        img.repo_tags,
        ["docker.io/library/app:v1", "docker.io/library/app:latest"]
    );
    assert_eq!(
        img.repo_digests,
        [format!("docker.io/library/app@{}", one.manifest_digest)]
    );
    assert_eq!(e.svc.list().unwrap().len(), 1);
    assert_eq!(e.snapshots().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_leaves_the_old_image_listed_without_it() {
    let e = env();
    let old = e.fake.push("app:v1", &[layer("one")], "one");
    e.svc.pull("app:v1", None).await.unwrap();
    let new = e.fake.push("app:v1", &[layer("two")], "two");
    e.svc.pull("app:v1", None).await.unwrap();

    let old_img = e.svc.status(&old.id).unwrap().unwrap();
    assert!(old_img.repo_tags.is_empty());
    assert_eq!(
        old_img.repo_digests,
        [format!("docker.io/library/app@{}", old.manifest_digest)]
    );
    let new_img = e.svc.status("app:v1").unwrap().unwrap();
    assert_eq!(new_img.id, new.id);
    assert_eq!(new_img.repo_tags, ["docker.io/library/app:v1"]);
    assert_eq!(e.svc.list().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_frees_only_unshared_layers() {
    let e = env();
    let a = e.fake.push("a:1", &[layer("base"), layer("a")], "a");
    let b = e.fake.push("b:1", &[layer("base"), layer("b")], "b");
    let ia = e.svc.pull("a:1", None).await.unwrap();
    let ib = e.svc.pull("b:1", None).await.unwrap();
    let before = e.svc.fs_usage().unwrap();

    e.svc.remove("a:1").unwrap();
    assert_eq!(e.svc.status(&a.id).unwrap(), None);
    assert_eq!(e.svc.status(&ia.repo_digests[0]).unwrap(), None);
    let mut expected = vec![ib.chain_ids[0].clone(), ib.chain_ids[1].clone()];
    expected
        .iter_mut()
        .for_each(|c| *c = c.trim_start_matches("sha256:").to_string());
    expected.sort();
    assert_eq!(e.snapshots(), expected);
    let mut kept = hexes(&[Digest::parse(&b.id).unwrap(), b.manifest_digest.clone()]);
    kept.sort();
    assert_eq!(e.blobs(), kept);
    assert!(e.svc.layer_paths(&ib.id).unwrap().iter().all(|p| p.is_dir()));
    assert!(e.svc.fs_usage().unwrap().inodes_used < before.inodes_used);

    // Absent: fine, whatever the form.
    e.svc.remove(&a.id).unwrap();
    e.svc.remove("never:pulled").unwrap();

    e.svc.remove(&ib.id[7..19]).unwrap();
    assert!(e.snapshots().is_empty());
    assert!(e.blobs().is_empty());
    assert!(e.svc.list().unwrap().is_empty());
    assert!(matches!(e.svc.layer_paths(&ib.id), Err(ImagesError::ImageNotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_during_a_pull_keeps_what_the_pull_uses() {
    let e = env();
    e.fake.push("a:1", &[layer("base"), layer("a")], "a");
    let b = e.fake.push("b:1", &[layer("base"), layer("b")], "b");
    e.svc.pull("a:1", None).await.unwrap();

    // Start b, and wait until it is downloading its own top layer (so it has
    // decided to reuse the base snapshot).
    let mut progress = e.svc.subscribe_progress();
    e.fake.set_delay(Duration::from_millis(300));
    let svc = Arc::clone(&e.svc);
    let pull_b = tokio::spawn(async move { svc.pull("b:1", None).await });
    loop {
        let ev = progress.recv().await.unwrap();
        if ev.layers.len() == 2 && ev.layers[1].state == LayerState::Downloading {
            assert_eq!(ev.layers[0].state, LayerState::Exists);
            break;
        }
    }
    e.svc.remove("a:1").unwrap();
    let ib = pull_b.await.unwrap().unwrap();
    assert!(e.svc.layer_paths(&ib.id).unwrap().iter().all(|p| p.is_dir()));
    assert_eq!(e.fake.fetches(&b.layer_digests[0]), 1);
    assert_eq!(e.snapshots().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_in_use_survive_their_image() {
    let e = env();
    e.fake.push("a:1", &[layer("base"), layer("a")], "a");
    let img = e.svc.pull("a:1", None).await.unwrap();
    let paths = e.svc.layer_paths(&img.id).unwrap();
    let in_use = paths.clone();
    e.svc.set_layers_in_use(move || in_use.clone());
    e.svc.remove(&img.id).unwrap();
    assert!(paths.iter().all(|p| p.is_dir()));
    e.svc.set_layers_in_use(Vec::new);
    let report = e.svc.collect_garbage().unwrap();
    assert_eq!(report.snapshots, 2);
    assert!(paths.iter().all(|p| !p.exists()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_cleans_what_a_crash_left() {
    let e = env();
    let pushed = e.fake.push("app:v1", &[layer("base"), layer("top")], "app");
    let img = e.svc.pull("app:v1", None).await.unwrap();
    let root = e.root();
    let orphan = Digest::of(b"orphan");
    // A download, an unpack and a delete in progress; a layer committed by a
    // pull that died before its metadata write; a stray blob.
    fs::write(
        root.join(format!("content/ingest/{}.9.9.partial", orphan.hex())),
        b"half",
    )
    .unwrap();
    fs::create_dir_all(root.join(format!("snapshots/.tmp-{}-9-9/usr/bin", orphan.hex()))).unwrap();
    fs::create_dir_all(root.join(format!("snapshots/.trash-{}-9-9/etc", orphan.hex()))).unwrap();
    fs::create_dir_all(root.join(format!("snapshots/{}/etc", orphan.hex()))).unwrap();
    fs::write(root.join(format!("content/blobs/sha256/{}", orphan.hex())), b"orphan").unwrap();

    let e = e.reopen();
    assert!(e.ingest().is_empty());
    let mut chains: Vec<String> = img.chain_ids.iter().map(|c| c[7..].to_string()).collect();
    chains.sort();
    assert_eq!(e.snapshots(), chains);
    let mut kept = hexes(&[Digest::parse(&img.id).unwrap(), pushed.manifest_digest.clone()]);
    kept.sort();
    assert_eq!(e.blobs(), kept);
    assert_eq!(e.svc.status("app:v1").unwrap().unwrap(), img);
    assert!(e.svc.layer_paths(&img.id).unwrap().iter().all(|p| p.is_dir()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_outlives_its_caller() {
    let e = env();
    e.fake.push("app:v1", &[layer("x")], "app");
    e.fake.set_delay(Duration::from_millis(100));
    let caller = e.svc.pull("app:v1", None);
    assert!(tokio::time::timeout(Duration::from_millis(10), caller).await.is_err());
    // A hang guard, not a time bound: under a loaded CI machine the pull's
    // few delayed fetches can take seconds.
    for _ in 0..1500 {
        if e.svc.status("app:v1").unwrap().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the abandoned pull did not complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_ends_with_a_finished_event() {
    let e = env();
    e.fake.push("app:v1", &[layer("x")], "app");
    let mut rx = e.svc.subscribe_progress();
    e.svc.pull("app:v1", None).await.unwrap();
    let mut events = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        events.push(ev);
    }
    let last = events.last().unwrap();
    assert!(last.finished && last.error.is_none());
    assert_eq!(last.reference, "docker.io/library/app:v1");
    assert!(events[..events.len() - 1].iter().all(|e| !e.finished));
    let states: Vec<LayerState> = events
        .iter()
        .filter_map(|e| e.layers.first().map(|l| l.state))
        .collect();
    for s in [
        LayerState::Waiting,
        LayerState::Downloading,
        LayerState::Unpacking,
        LayerState::Done,
    ] {
        assert!(states.contains(&s), "{s:?} missing from {states:?}");
    }
    assert_eq!(last.layers[0].downloaded_bytes, last.layers[0].total_bytes);

    e.svc.pull("app:v1", None).await.unwrap();
    let mut last = None;
    while let Ok(ev) = rx.try_recv() {
        last = Some(ev);
    }
    assert_eq!(last.unwrap().layers[0].state, LayerState::Exists);

    let err = e.svc.pull("missing:tag", None).await.unwrap_err();
    assert!(matches!(err, ImagesError::RegistryNotFound { .. }));
    let ev = rx.try_recv().unwrap();
    assert!(ev.finished && ev.error.is_some());
}

/// After a failed pull: no image, no committed or temp snapshot, no layer
/// blob, nothing in ingest.
fn assert_nothing_left(e: &Env, reference: &str, layer_digests: &[Digest]) {
    assert_eq!(e.svc.status(reference).unwrap(), None);
    assert!(e.snapshots().is_empty(), "{:?}", e.snapshots());
    assert!(e.ingest().is_empty());
    let blobs = e.blobs();
    for d in layer_digests {
        assert!(!blobs.contains(&d.hex().to_string()), "layer blob {d} left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_and_hostile_layers_leave_nothing_behind() {
    let e = env();
    let bad = e.fake.push("bad:1", &[layer("x")], "bad");
    e.fake
        .corrupt(&bad.layer_digests[0], b"not what the digest says".to_vec());
    let err = e.svc.pull("bad:1", None).await.unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::DataLoss, "{err:?}");
    assert_nothing_left(&e, "bad:1", &bad.layer_digests);

    let hostile = Tar::new()
        .file("ok", 0o644, b"ok")
        .file("../escape", 0o644, b"x")
        .finish();
    let evil = e.fake.push("evil:1", &[hostile], "evil");
    let err = e.svc.pull("evil:1", None).await.unwrap_err();
    assert!(matches!(err, ImagesError::HostileLayer { .. }), "{err:?}");
    assert_nothing_left(&e, "evil:1", &evil.layer_digests);
    assert!(!e.root().join("escape").exists() && !e.root().join("snapshots/escape").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inconsistent_images_are_refused() {
    let e = env();
    let layers = [layer("x"), layer("y")];

    // The config's diff IDs do not describe the layers.
    let lying = e.fake.push_with(
        "lying:1",
        ImageSpec {
            layers: &layers,
            compression: Compression::Gzip,
            label: "lying",
            media_type: None,
            diff_ids: Some(vec![Digest::of(b"1"), Digest::of(b"2")]),
        },
    );
    let err = e.svc.pull("lying:1", None).await.unwrap_err();
    assert!(
        matches!(err, ImagesError::Malformed { ref what, .. } if what == "layer"),
        "{err:?}"
    );
    assert_nothing_left(&e, "lying:1", &lying.layer_digests);

    // One diff ID for two layers.
    e.fake.push_with(
        "short:1",
        ImageSpec {
            layers: &layers,
            compression: Compression::Zstd,
            label: "short",
            media_type: None,
            diff_ids: Some(vec![Digest::of(b"1")]),
        },
    );
    let err = e.svc.pull("short:1", None).await.unwrap_err();
    assert!(
        matches!(err, ImagesError::Malformed { ref what, .. } if what == "image config"),
        "{err:?}"
    );

    // Unknown and foreign layer types are refused before anything is fetched.
    let fetched = e.fake.total_fetches();
    for (reference, media_type) in [
        ("bzip:1", "application/x-tar+bzip2"),
        ("foreign:1", "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
    ] {
        e.fake.push_with(
            reference,
            ImageSpec {
                layers: &layers,
                compression: Compression::Gzip,
                label: reference,
                media_type: Some(media_type),
                diff_ids: None,
            },
        );
        let err = e.svc.pull(reference, None).await.unwrap_err();
        assert!(
            matches!(
                err,
                ImagesError::UnsupportedMediaType { .. } | ImagesError::NonDistributableLayer { .. }
            ),
            "{err:?}"
        );
    }
    assert_eq!(e.fake.total_fetches(), fetched);
    assert!(matches!(
        e.svc.pull("Not A Reference", None).await,
        Err(ImagesError::InvalidReference { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::new();
    fake.push("app:v1", &[layer("x")], "app");
    let svc = open(dir.path(), &fake, 64).unwrap();
    let err = svc.pull("app:v1", None).await.unwrap_err();
    assert!(matches!(err, ImagesError::TooLarge { .. }), "{err:?}");
    assert_eq!(fake.total_fetches(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompressed_and_zstd_layers_pull() {
    let e = env();
    for (reference, compression) in [("plain:1", Compression::None), ("zstd:1", Compression::Zstd)] {
        let layers = [layer(reference.trim_end_matches(":1"))];
        e.fake.push_with(
            reference,
            ImageSpec {
                layers: &layers,
                compression,
                label: reference,
                media_type: None,
                diff_ids: None,
            },
        );
        let img = e.svc.pull(reference, None).await.unwrap();
        let paths = e.svc.layer_paths(&img.id).unwrap();
        let name = reference.trim_end_matches(":1");
        assert_eq!(fs::read(paths[0].join(name).join("file")).unwrap(), name.as_bytes());
    }
}

#[test]
fn a_second_service_on_the_same_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::new();
    let _first = open(dir.path(), &fake, 1 << 20).unwrap();
    assert!(matches!(open(dir.path(), &fake, 1 << 20), Err(ImagesError::Store(_))));
}

/// Unmounts on drop, so a failed assertion does not leave a mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("umount {}: {e}", self.0.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_paths_mount_as_overlayfs_with_whiteouts_applied() {
    if crate::testutil::skip_without_root("layer_paths_mount_as_overlayfs_with_whiteouts_applied") {
        return;
    }
    let e = env();
    let lower = Tar::new()
        .file("a/x", 0o644, b"x")
        .file("a/keep", 0o644, b"keep")
        .file("b/y", 0o644, b"y")
        .file("c/z", 0o644, b"z")
        .finish();
    let upper = Tar::new()
        .file("a/.wh.x", 0o644, b"")
        .dir("b/", 0o755)
        .file("b/.wh..wh..opq", 0o644, b"")
        .file("b/new", 0o644, b"new")
        .file("c/z", 0o644, b"z2")
        .finish();
    e.fake.push("ovl:1", &[lower, upper], "ovl");
    let img = e.svc.pull("ovl:1", None).await.unwrap();
    let lowerdirs: Vec<String> = e
        .svc
        .layer_paths(&img.id)
        .unwrap()
        .iter()
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    let target = e.dir.path().join("merged");
    fs::create_dir(&target).unwrap();
    let options = format!("lowerdir={}", lowerdirs.join(":"));
    if let Err(err) = nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(options.as_str()),
    ) {
        eprintln!("skipping overlay check: mount failed: {err}");
        return;
    }
    let _mounted = Mounted(target.clone());
    assert!(!target.join("a/x").exists(), "whiteout did not hide a/x");
    assert_eq!(fs::read(target.join("a/keep")).unwrap(), b"keep");
    assert!(!target.join("b/y").exists(), "opaque dir did not hide b/y");
    assert_eq!(fs::read(target.join("b/new")).unwrap(), b"new");
    assert_eq!(fs::read(target.join("c/z")).unwrap(), b"z2");
}
