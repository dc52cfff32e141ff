//! The berth test images, built from the host's busybox-static.
//!
//! `build_all(out)` writes one OCI layout per image under `out/layouts/` and
//! `out/expected.json` (see [`crate::expect`]). No network, no clock: every
//! mtime is [`MTIME`], entries are sorted by path, compression is
//! deterministic, so two builds on one host give identical digests.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::expect::{self, Expected, HostileExpect, ImageExpect, LayerExpect, ManifestExpect};
use crate::oci::{self, Compression, Descriptor, Layout, Platform};
use crate::tarball::{self, Entry, Kind, LongName};

/// 2023-11-14T22:13:20Z, the mtime of every entry and the `created` time.
pub const MTIME: u64 = 1_700_000_000;
const CREATED: &str = "2023-11-14T22:13:20Z";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where busybox-static puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Size of each of the 6 layers of `berth/big:v1`.
pub const BIG_LAYER_BYTES: usize = 10 * 1024 * 1024 + 512 * 1024;

/// What the builder produced, for pushing.
#[derive(Clone, Debug)]
pub struct PushItem {
    pub layout: String,
    pub repo: String,
    pub tag: String,
    /// An image index: copy with `--all`.
    pub all: bool,
}

impl Expected {
    /// The images to push, in a stable order.
    pub fn push_items(&self) -> Vec<PushItem> {
        self.images
            .values()
            .map(|i| PushItem {
                layout: i.layout.clone(),
                repo: i.repo.clone(),
                tag: i.tag.clone(),
                all: i.top_media_type == oci::MT_INDEX,
            })
            .collect()
    }
}

fn dir(p: &str) -> Entry {
    Entry::new(p, Kind::Dir, 0o755, MTIME)
}
fn file(p: &str, data: &[u8], mode: u32) -> Entry {
    Entry::new(p, Kind::File(data.to_vec()), mode, MTIME)
}
fn symlink(p: &str, target: &str) -> Entry {
    Entry::new(p, Kind::Symlink(target.into()), 0o777, MTIME)
}

/// A layer being assembled: sorted entries plus compression.
struct LayerSpec {
    entries: Vec<Entry>,
    compression: Compression,
}

impl LayerSpec {
    fn new(mut entries: Vec<Entry>, compression: Compression) -> LayerSpec {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        LayerSpec { entries, compression }
    }
    /// Keeps the given order (hostile layers need a symlink before a write
    /// through it).
    fn ordered(entries: Vec<Entry>, compression: Compression) -> LayerSpec {
        LayerSpec { entries, compression }
    }
}

struct Builder {
    busybox: Vec<u8>,
    applets: Vec<String>,
    /// Compressed blobs by (diff ID, compression): the busybox layer is in
    /// five images and compressing it dominates the build in debug builds.
    blobs: std::cell::RefCell<BTreeMap<(String, Compression), Vec<u8>>>,
}

impl Builder {
    fn compress(&self, diff_id: &str, c: Compression, tar: &[u8]) -> Result<Vec<u8>> {
        let key = (diff_id.to_string(), c);
        if let Some(b) = self.blobs.borrow().get(&key) {
            return Ok(b.clone());
        }
        let blob = c.apply(tar, tar.len() > 4 * 1024 * 1024)?;
        self.blobs.borrow_mut().insert(key, blob.clone());
        Ok(blob)
    }
}

fn busybox_layer(b: &Builder) -> LayerSpec {
    let mut e = vec![
        dir("bin"),
        file("bin/busybox", &b.busybox, 0o755),
        dir("dev"),
        dir("etc"),
        file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\n\
              berth:x:1000:1000:berth:/home/berth:/bin/sh\n\
              nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        ),
        file("etc/group", b"root:x:0:\nberth:x:1000:\nnobody:x:65534:\n", 0o644),
        file("etc/hostname", b"berth\n", 0o644),
        file(
            "etc/os-release",
            b"NAME=\"berth busybox\"\nID=berth-busybox\nVERSION_ID=1\n",
            0o644,
        ),
        dir("home"),
        dir("proc"),
        Entry::new("root", Kind::Dir, 0o700, MTIME),
        dir("sys"),
        Entry::new("tmp", Kind::Dir, 0o1777, MTIME),
        dir("usr"),
        dir("usr/bin"),
        symlink("usr/bin/env", "/bin/busybox"),
        dir("var"),
        dir("var/www"),
        file(
            "var/www/index.html",
            b"<html><body>hello from berth</body></html>\n",
            0o644,
        ),
    ];
    for a in &b.applets {
        e.push(symlink(&format!("bin/{a}"), "busybox"));
    }
    LayerSpec::new(e, Compression::Gzip)
}

fn config(platform: &Platform, diff_ids: &[String], cfg: serde_json::Value) -> serde_json::Value {
    let history: Vec<_> = diff_ids
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"created": CREATED, "created_by": format!("berth-hack layer {i}")}))
        .collect();
    let mut c = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": CREATED,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    if let Some(v) = &platform.variant {
        c["variant"] = json!(v);
    }
    c
}

/// Writes layers, config and manifest; returns the manifest descriptor and
/// its expectations.
fn write_manifest(
    b: &Builder,
    layout: &Layout,
    platform: Platform,
    layers: &[LayerSpec],
    cfg: serde_json::Value,
) -> Result<(Descriptor, ManifestExpect)> {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut snap = Vec::new();
    for l in layers {
        let tar = tarball::write_tar(&l.entries);
        let diff_id = oci::sha256_digest(&tar);
        let blob = b.compress(&diff_id, l.compression, &tar)?;
        diff_ids.push(diff_id);
        descs.push(layout.put_blob(l.compression.media_type(), &blob)?);
        snap.push(expect::layer_entries(&l.entries));
    }
    let config = config(&platform, &diff_ids, cfg);
    let cdesc = layout.put_json(oci::MT_CONFIG, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": oci::MT_MANIFEST,
        "config": cdesc,
        "layers": descs,
    });
    let mut mdesc = layout.put_json(oci::MT_MANIFEST, &manifest)?;
    let chains = oci::chain_ids(&diff_ids);
    let merged = expect::merge(&snap);
    let layers = descs
        .iter()
        .zip(layers)
        .zip(snap)
        .enumerate()
        .map(|(i, ((d, l), entries))| LayerExpect {
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
            compression: l.compression,
            size: d.size,
            diff_id: diff_ids[i].clone(),
            chain_id: chains[i].clone(),
            entries,
        })
        .collect();
    let m = ManifestExpect {
        platform: platform.clone(),
        digest: mdesc.digest.clone(),
        config_digest: cdesc.digest,
        config,
        layers,
        merged,
    };
    mdesc.platform = Some(platform);
    Ok((mdesc, m))
}

fn amd64() -> Platform {
    Platform::new("linux", "amd64", None)
}

fn base_config(cmd: &[&str]) -> serde_json::Value {
    json!({"Env": [PATH_ENV], "Cmd": cmd})
}

/// Builds a single-manifest image into `out/layouts/<layout>`.
fn single(
    b: &Builder,
    out: &Path,
    exp: &mut Expected,
    (layout_name, repo, tag): (&str, &str, &str),
    layers: &[LayerSpec],
    cfg: serde_json::Value,
    hostile: Option<HostileExpect>,
) -> Result<()> {
    let mut layout = Layout::create(&out.join("layouts").join(layout_name))?;
    let (mut desc, m) = write_manifest(b, &layout, amd64(), layers, cfg)?;
    desc.platform = None;
    layout.tag(desc.clone(), tag);
    layout.finish()?;
    let img = ImageExpect {
        repo: repo.into(),
        tag: tag.into(),
        layout: layout_name.into(),
        top_digest: desc.digest,
        top_media_type: oci::MT_MANIFEST.into(),
        manifests: vec![m],
        hostile,
    };
    exp.images.insert(img.name(), img);
    Ok(())
}

fn layered_layers(b: &Builder) -> Vec<LayerSpec> {
    let long_dir_a = format!("long/{}", "a".repeat(60));
    let long_dir_b = format!("{long_dir_a}/{}", "b".repeat(60));
    let long_gnu = format!("{long_dir_b}/gnu-longname-file.txt");
    let long_pax = format!("{long_dir_b}/pax-path-file.txt");
    vec![
        busybox_layer(b),
        LayerSpec::new(
            vec![
                dir("data"),
                file("data/x", b"this file is deleted by a later layer\n", 0o644),
                file("data/keep", b"version 1\n", 0o644),
                dir("data/subdir"),
                file("data/subdir/file", b"the whole dir goes away\n", 0o600),
                dir("opq"),
                file("opq/a", b"a from layer 1\n", 0o644),
                file("opq/b", b"b from layer 1\n", 0o644),
                dir("opq/sub"),
                file("opq/sub/deep", b"deep\n", 0o644),
                dir("perm"),
                file("perm/owned", b"owned by berth\n", 0o640).owner(1000, 1000),
                file("perm/setuid", b"#!/bin/sh\necho setuid\n", 0o4755),
                Entry::new("perm/setgid-dir", Kind::Dir, 0o2775, MTIME).owner(0, 1000),
                Entry::new("perm/sticky", Kind::Dir, 0o1777, MTIME),
                file("perm/nobody", b"nobody's\n", 0o600).owner(65534, 65534),
            ],
            Compression::Zstd,
        ),
        LayerSpec::new(
            vec![
                dir("links"),
                file("links/target", b"hardlinked content\n", 0o644),
                Entry::new(
                    "links/target-hardlink",
                    Kind::Hardlink("links/target".into()),
                    0o644,
                    MTIME,
                ),
                symlink("links/sym", "target"),
                symlink("links/abs-sym", "/etc/passwd"),
                symlink("links/dangling", "../does/not/exist"),
                dir("dev-test"),
                Entry::new("dev-test/null", Kind::Char(1, 3), 0o666, MTIME),
                dir("fifo-test"),
                Entry::new("fifo-test/fifo", Kind::Fifo, 0o644, MTIME),
                dir("xattr"),
                file("xattr/file", b"has an xattr\n", 0o644).xattr("user.berth", b"test"),
                dir("empty"),
                dir("long"),
                dir(&long_dir_a),
                dir(&long_dir_b).long_name(LongName::Gnu),
                file(&long_gnu, b"long name, GNU style\n", 0o644).long_name(LongName::Gnu),
                file(&long_pax, b"long name, PAX style\n", 0o644),
            ],
            Compression::None,
        ),
        LayerSpec::new(
            vec![
                dir("data"),
                file("data/.wh.x", b"", 0o644),
                file("data/.wh.subdir", b"", 0o644),
                file("data/keep", b"version 3\n", 0o644),
                dir("opq"),
                file("opq/.wh..wh..opq", b"", 0o644),
                file("opq/c", b"c from layer 3\n", 0o644),
            ],
            Compression::Gzip,
        ),
        LayerSpec::new(
            vec![
                dir("etc"),
                file("etc/layered-release", b"layered v1\n", 0o644),
                // A file replacing a directory of a lower layer.
                file("perm/sticky", b"now a file\n", 0o644),
                dir("perm"),
            ],
            Compression::Zstd,
        ),
    ]
}

fn arch_layer(p: &Platform) -> LayerSpec {
    let mut name = format!("{}/{}", p.os, p.architecture);
    if let Some(v) = &p.variant {
        name = format!("{name}/{v}");
    }
    LayerSpec::new(
        vec![file("arch.txt", format!("{name}\n").as_bytes(), 0o644)],
        Compression::Gzip,
    )
}

fn multiarch(out: &Path, exp: &mut Expected, b: &Builder) -> Result<()> {
    let mut layout = Layout::create(&out.join("layouts/multiarch"))?;
    let plats = [
        Platform::new("linux", "arm64", Some("v8")),
        Platform::new("linux", "arm", Some("v7")),
        amd64(),
    ];
    let mut descs = Vec::new();
    let mut manifests = Vec::new();
    for p in &plats {
        let layers = if p.architecture == "amd64" {
            vec![busybox_layer(b), arch_layer(p)]
        } else {
            vec![arch_layer(p)]
        };
        let (d, m) = write_manifest(b, &layout, p.clone(), &layers, base_config(&["cat", "/arch.txt"]))?;
        descs.push(d);
        manifests.push(m);
    }
    // An attestation manifest as BuildKit writes it, referring to amd64.
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [{"name": "berth/multiarch", "digest": {"sha256": &descs[2].digest[7..]}}],
        "predicate": {"spdxVersion": "SPDX-2.3", "name": "berth-test"},
    });
    let mut ldesc = layout.put_json(oci::MT_IN_TOTO, &statement)?;
    ldesc.annotations = Some(BTreeMap::from([(
        "in-toto.io/predicate-type".to_string(),
        "https://spdx.dev/Document".to_string(),
    )]));
    let acfg = layout.put_json(
        oci::MT_CONFIG,
        &json!({"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers", "diff_ids": [ldesc.digest.clone()]}}),
    )?;
    let amanifest = json!({
        "schemaVersion": 2,
        "mediaType": oci::MT_MANIFEST,
        "config": acfg,
        "layers": [ldesc],
    });
    let mut adesc = layout.put_json(oci::MT_MANIFEST, &amanifest)?;
    adesc.platform = Some(Platform::new("unknown", "unknown", None));
    adesc.annotations = Some(BTreeMap::from([
        ("vnd.docker.reference.digest".to_string(), descs[2].digest.clone()),
        (
            "vnd.docker.reference.type".to_string(),
            "attestation-manifest".to_string(),
        ),
    ]));
    // amd64 last and the attestation before it: "take the first entry" and
    // "take anything that is not arm" both pick wrong.
    let index_entries = vec![descs[0].clone(), descs[1].clone(), adesc, descs[2].clone()];
    let index = json!({
        "schemaVersion": 2,
        "mediaType": oci::MT_INDEX,
        "manifests": index_entries,
    });
    let idesc = layout.put_json(oci::MT_INDEX, &index)?;
    layout.tag(idesc.clone(), "v1");
    layout.finish()?;
    let img = ImageExpect {
        repo: "berth/multiarch".into(),
        tag: "v1".into(),
        layout: "multiarch".into(),
        top_digest: idesc.digest,
        top_media_type: oci::MT_INDEX.into(),
        manifests,
        hostile: None,
    };
    exp.images.insert(img.name(), img);
    Ok(())
}

fn user_config(user: &str) -> serde_json::Value {
    json!({
        "User": user,
        "Env": [PATH_ENV, "FOO=bar"],
        "WorkingDir": "/home/berth",
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["id && pwd && echo $FOO"],
        "StopSignal": "SIGINT",
        "Labels": {"org.berth.test": "user", "maintainer": "berth"},
        "ExposedPorts": {"8080/tcp": {}},
    })
}

fn home_layer() -> LayerSpec {
    LayerSpec::new(
        vec![
            dir("home"),
            dir("home/berth").owner(1000, 1000),
            file("home/berth/.profile", b"export PS1='berth$ '\n", 0o644).owner(1000, 1000),
        ],
        Compression::Gzip,
    )
}

/// Deterministic, incompressible bytes (xorshift64*).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn big_layers() -> Vec<LayerSpec> {
    let comp = [
        Compression::Gzip,
        Compression::Zstd,
        Compression::None,
        Compression::None,
        Compression::Zstd,
        Compression::Gzip,
    ];
    comp.iter()
        .enumerate()
        .map(|(i, c)| {
            LayerSpec::new(
                vec![
                    dir("big"),
                    file(
                        &format!("big/blob-{i}"),
                        &pseudo_random(i as u64 + 1, BIG_LAYER_BYTES),
                        0o644,
                    ),
                ],
                *c,
            )
        })
        .collect()
}

/// Hostile single-layer images: (layout/repo suffix, what, entries, forbidden host paths).
fn hostile_images() -> Vec<(&'static str, &'static str, Vec<Entry>, Vec<String>)> {
    let evil = |p: &str| file(p, b"evil\n", 0o644);
    vec![
        (
            "evil-dotdot",
            "a `../` path climbing out of the snapshot",
            vec![
                dir("ok"),
                evil("../../../../../../../../../../../../tmp/berth-evil-dotdot"),
            ],
            vec!["/tmp/berth-evil-dotdot".into()],
        ),
        (
            "evil-dotdot-inner",
            "a path that climbs out through a subdirectory (`ok/../../x`)",
            vec![dir("ok"), evil("ok/../../berth-evil-dotdot-inner")],
            vec![],
        ),
        (
            "evil-abs",
            "an absolute path",
            vec![dir("ok"), evil("/tmp/berth-evil-abs")],
            vec!["/tmp/berth-evil-abs".into()],
        ),
        (
            "evil-symlink",
            "a symlink to /tmp, then a file written through it",
            vec![symlink("escape", "/tmp"), evil("escape/berth-evil-symlink")],
            vec!["/tmp/berth-evil-symlink".into()],
        ),
        (
            "evil-symlink-rel",
            "a relative symlink climbing out, then a file written through it",
            vec![
                symlink("escape", "../../../../../../../../../../../../tmp"),
                evil("escape/berth-evil-symlink-rel"),
            ],
            vec!["/tmp/berth-evil-symlink-rel".into()],
        ),
        (
            "evil-hardlink",
            "a hardlink to the host's /etc/passwd",
            vec![Entry::new(
                "berth-evil-hardlink",
                Kind::Hardlink("/etc/passwd".into()),
                0o644,
                MTIME,
            )],
            vec![],
        ),
        (
            "evil-hardlink-rel",
            "a hardlink climbing out to /etc/passwd",
            vec![Entry::new(
                "berth-evil-hardlink-rel",
                Kind::Hardlink("../../../../../../../../../../../../etc/passwd".into()),
                0o644,
                MTIME,
            )],
            vec![],
        ),
    ]
}

/// Builds every test image under `out` and writes `out/expected.json`.
pub fn build_all(out: &Path) -> Result<Expected> {
    let busybox =
        fs::read(BUSYBOX).with_context(|| format!("reading {BUSYBOX} (install the busybox-static package)"))?;
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .with_context(|| format!("running {BUSYBOX} --list"))?;
    if !list.status.success() {
        bail!("{BUSYBOX} --list failed");
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(String::from)
        .collect();
    applets.sort();
    applets.dedup();
    for needed in ["sh", "ls", "cat", "echo", "sleep", "id", "env", "httpd", "wget"] {
        if !applets.iter().any(|a| a == needed) {
            bail!("{BUSYBOX} lacks the {needed} applet");
        }
    }
    let b = Builder {
        busybox,
        applets,
        blobs: Default::default(),
    };
    fs::create_dir_all(out)?;
    let mut exp = Expected::default();

    single(
        &b,
        out,
        &mut exp,
        ("busybox", "berth/busybox", "latest"),
        &[busybox_layer(&b)],
        base_config(&["sh"]),
        None,
    )?;
    single(
        &b,
        out,
        &mut exp,
        ("layered", "berth/layered", "v1"),
        &layered_layers(&b),
        base_config(&["sh"]),
        None,
    )?;
    multiarch(out, &mut exp, &b)?;
    // A pod sandbox ("pause") image for CRI runtimes that run one
    // (containerd's `sandbox_image`): busybox sleeping forever.
    single(
        &b,
        out,
        &mut exp,
        ("pause", "berth/pause", "v1"),
        &[busybox_layer(&b)],
        json!({"Env": [PATH_ENV], "Entrypoint": ["/bin/sleep"], "Cmd": ["2147483647"]}),
        None,
    )?;
    single(
        &b,
        out,
        &mut exp,
        ("user", "berth/user", "v1"),
        &[busybox_layer(&b), home_layer()],
        user_config("1000:1000"),
        None,
    )?;
    single(
        &b,
        out,
        &mut exp,
        ("username", "berth/username", "v1"),
        &[busybox_layer(&b), home_layer()],
        user_config("berth"),
        None,
    )?;
    single(
        &b,
        out,
        &mut exp,
        ("big", "berth/big", "v1"),
        &big_layers(),
        base_config(&["sh"]),
        None,
    )?;
    for (name, what, entries, forbidden) in hostile_images() {
        single(
            &b,
            out,
            &mut exp,
            (name, &format!("berth/{name}"), "v1"),
            &[LayerSpec::ordered(entries, Compression::None)],
            base_config(&["sh"]),
            Some(HostileExpect {
                forbidden_paths: forbidden,
                what: what.into(),
            }),
        )?;
    }
    fs::write(out.join("expected.json"), serde_json::to_vec_pretty(&exp)?)?;
    Ok(exp)
}

/// Reads `dir/expected.json` written by [`build_all`].
pub fn load_expected(dir: &Path) -> Result<Expected> {
    let p = dir.join("expected.json");
    let data = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_slice(&data).with_context(|| format!("parsing {}", p.display()))
}

/// The sources whose change changes the images.
const SOURCES: &[&str] = &[
    include_str!("testimages.rs"),
    include_str!("tarball.rs"),
    include_str!("oci.rs"),
    include_str!("expect.rs"),
];

/// A key naming one build: the host's busybox and the builder's sources.
pub fn fingerprint() -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(fs::read(BUSYBOX).with_context(|| format!("reading {BUSYBOX}"))?);
    for s in SOURCES {
        h.update(s.as_bytes());
    }
    Ok(hex::encode(&h.finalize()[..12]))
}

/// Builds the images into `cache/<fingerprint>` unless already there, and
/// removes builds with other fingerprints. Safe against concurrent callers:
/// each builds into its own temp dir and renames it into place.
pub fn build_cached(cache: &Path) -> Result<(std::path::PathBuf, Expected)> {
    let key = fingerprint()?;
    let dir = cache.join(&key);
    if let Ok(exp) = load_expected(&dir) {
        return Ok((dir, exp));
    }
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let tmp = cache.join(format!(".tmp-{key}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    build_all(&tmp)?;
    if fs::rename(&tmp, &dir).is_err() {
        // Someone else finished first.
        let _ = fs::remove_dir_all(&tmp);
    }
    if let Ok(entries) = fs::read_dir(cache) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name != key && !name.starts_with(".tmp-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let exp = load_expected(&dir)?;
    Ok((dir, exp))
}
