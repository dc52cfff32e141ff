//! berth's stand-ins for the images critest (cri-tools `pkg/validate`)
//! pulls, built from the programs `hack/standins.sh` makes (BusyBox from
//! Debian's source, and `hack/standins/*.c`), served under critest's own
//! names through berth's registry mirrors (`[registries."registry.k8s.io"]
//! mirrors = ["http://127.0.0.1:PORT"]`, same for `gcr.io` and `k8s.gcr.io`).
//!
//! | critest's reference | stand-in | what the specs look at |
//! | --- | --- | --- |
//! | `registry.k8s.io/e2e-test-images/busybox:1.29-2` | BusyBox, applets as hardlinks in `/bin` (as the upstream image: a bind mount over `/bin/ls` masks `ls` only), the upstream image's `/etc/passwd` and `/etc/group`, `Cmd sh` | every container spec's default image |
//! | `registry.k8s.io/e2e-test-images/nginx:1.14-2` | BusyBox + `nginx` (hack/standins/nginx.c) on port 80 | `/var/run/nginx.pid`, `pidof nginx`, "master process" in `/proc/1/cmdline`, HTTP 200 on port 80 (port mapping, port-forward) |
//! | `gcr.io/k8s-staging-cri-tools/hostnet-nginx-<arch>` | the same on port 12003 | port-forward in the host network |
//! | `registry.k8s.io/e2e-test-images/httpd:2.4.39-4` | BusyBox `httpd` on port 80, "httpd" in its log | multi-container network and log specs |
//! | `registry.k8s.io/e2e-test-images/nonewprivs:1.3` | BusyBox + `nnp` (setuid root, prints its effective uid) | NoNewPrivs |
//! | `registry.k8s.io/pause:3.9`, `k8s.gcr.io/pause:3.9` | `pause` alone, `USER 65535:65535` (one image, two registries) | image identity across registries |
//! | `gcr.io/k8s-staging-cri-tools/test-image-*` | BusyBox, each a distinct image (a label) except `test-image-tags:1/2/3` (one image); `test-image-user-*` with `USER 1002`, `www-data`, `1003:users`, `www-data:www-data`; `test-image-predefined-group` with `default-user` (1000) in `group-defined-in-image` (50000) | image manager, identity, volume and supplemental groups specs |
//!
//! Not reproducible offline: `gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2…`,
//! pinned to an upstream manifest digest.
//!
//! Deterministic like [`crate::testimages`]: fixed mtimes, ordered entries,
//! fixed compression; [`build_cached`] keys a build by the stand-in
//! programs and this builder.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::oci::{self, Compression, Layout};
use crate::skopeo::{self, PushOptions};
use crate::tarball::{self, Entry, Kind};
use crate::testimages::{PushItem, MTIME};

const CREATED: &str = "2023-11-14T22:13:20Z";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The tag every stand-in layout names its image with.
const LAYOUT_TAG: &str = "standin";
/// The repository prefix of cri-tools' own test images.
const CRI_TOOLS: &str = "gcr.io/k8s-staging-cri-tools";

/// The registry hosts critest pulls from: a berthd running critest needs a
/// mirror for each.
pub const MIRRORED_HOSTS: &[&str] = &["registry.k8s.io", "gcr.io", "k8s.gcr.io"];

/// The one reference critest pulls that no stand-in can serve: a manifest
/// digest of an upstream image.
pub const UNREPRODUCIBLE: &str = "gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf";

/// The files `hack/standins.sh` writes.
const PROGRAMS: &[&str] = &["busybox", "nginx", "nnp", "pause", "applets"];

/// One built stand-in and the references it is served under.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Standin {
    /// Its layout under `layouts/`.
    pub layout: String,
    /// Upstream references, `host/path:tag`.
    pub references: Vec<String>,
    /// Manifest digest.
    pub digest: String,
    /// Config digest (the CRI image ID).
    pub image_id: String,
}

/// What [`build_all`] wrote (`standins.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Built {
    pub images: Vec<Standin>,
}

/// `host`, `path` and `tag` of a `host/path:tag` reference.
pub fn split_reference(reference: &str) -> Result<(&str, &str, &str)> {
    let (host, rest) = reference
        .split_once('/')
        .with_context(|| format!("{reference}: no registry host"))?;
    let (path, tag) = rest.rsplit_once(':').with_context(|| format!("{reference}: no tag"))?;
    Ok((host, path, tag))
}

/// The Go name of this machine's architecture (critest's `runtime.GOARCH`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// berthd configuration serving every [`MIRRORED_HOSTS`] from `mirror`
/// (`http://127.0.0.1:PORT`).
pub fn mirror_config(mirror: &str) -> String {
    MIRRORED_HOSTS
        .iter()
        .map(|h| format!("[registries.\"{h}\"]\nmirrors = [\"{mirror}\"]\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn dir(p: &str) -> Entry {
    Entry::new(p, Kind::Dir, 0o755, MTIME)
}
fn file(p: &str, data: &[u8], mode: u32) -> Entry {
    Entry::new(p, Kind::File(data.to_vec()), mode, MTIME)
}

/// The stand-in programs, read from `hack/standins.sh`'s directory.
struct Programs {
    busybox: Vec<u8>,
    nginx: Vec<u8>,
    nnp: Vec<u8>,
    pause: Vec<u8>,
    applets: Vec<String>,
}

impl Programs {
    fn read(dir: &Path) -> Result<Programs> {
        let read = |n: &str| {
            let p = dir.join(n);
            fs::read(&p).with_context(|| format!("reading {} (run hack/standins.sh)", p.display()))
        };
        let applets: Vec<String> = String::from_utf8(read("applets")?)?
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
            .map(String::from)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for needed in ["sh", "ls", "pgrep", "ipcs", "httpd", "id", "sleep"] {
            if !applets.iter().any(|a| a == needed) {
                bail!("the stand-in BusyBox in {} lacks {needed}", dir.display());
            }
        }
        Ok(Programs {
            busybox: read("busybox")?,
            nginx: read("nginx")?,
            nnp: read("nnp")?,
            pause: read("pause")?,
            applets,
        })
    }
}

/// The upstream busybox image's accounts.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
";
const GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
";

/// BusyBox with every applet a hardlink to `/bin/busybox`, in tar order
/// (directories, then the binary before its links).
fn busybox_layer(p: &Programs) -> Vec<Entry> {
    let mut e = vec![
        dir("bin"),
        dir("dev"),
        dir("etc"),
        dir("home"),
        Entry::new("root", Kind::Dir, 0o700, MTIME),
        Entry::new("tmp", Kind::Dir, 0o1777, MTIME),
        dir("usr"),
        dir("usr/sbin"),
        dir("var"),
        dir("var/spool"),
        dir("var/spool/mail"),
        dir("var/www"),
        file("bin/busybox", &p.busybox, 0o755),
    ];
    for a in &p.applets {
        e.push(Entry::new(
            format!("bin/{a}"),
            Kind::Hardlink("bin/busybox".into()),
            0o755,
            MTIME,
        ));
    }
    e.push(file("etc/group", GROUP.as_bytes(), 0o644));
    e.push(file("etc/passwd", PASSWD.as_bytes(), 0o644));
    e
}

fn nginx_layer(p: &Programs) -> Vec<Entry> {
    vec![
        dir("usr"),
        dir("usr/sbin"),
        dir("usr/share"),
        dir("usr/share/nginx"),
        dir("usr/share/nginx/html"),
        dir("var"),
        dir("var/run"),
        file("usr/sbin/nginx", &p.nginx, 0o755),
        file(
            "usr/share/nginx/html/index.html",
            b"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n\
              <body><h1>Welcome to nginx!</h1><p>berth's stand-in.</p></body></html>\n",
            0o644,
        ),
    ]
}

const HTTPD_FOREGROUND: &str = r#"#!/bin/sh
# berth's stand-in for the httpd image's httpd-foreground: BusyBox httpd on
# port 80 in the foreground until SIGTERM.
echo "httpd: serving /usr/local/apache2/htdocs on port 80"
httpd -f -v -p 80 -h /usr/local/apache2/htdocs &
pid=$!
trap 'kill "$pid"; exit 0' TERM INT
wait "$pid"
"#;

fn httpd_layer() -> Vec<Entry> {
    vec![
        dir("usr"),
        dir("usr/local"),
        dir("usr/local/apache2"),
        dir("usr/local/apache2/htdocs"),
        dir("usr/local/bin"),
        file(
            "usr/local/apache2/htdocs/index.html",
            b"<html><body><h1>It works!</h1></body></html>\n",
            0o644,
        ),
        file("usr/local/bin/httpd-foreground", HTTPD_FOREGROUND.as_bytes(), 0o755),
    ]
}

fn nnp_layer(p: &Programs) -> Vec<Entry> {
    vec![
        dir("usr"),
        dir("usr/local"),
        dir("usr/local/bin"),
        file("usr/local/bin/nnp", &p.nnp, 0o4755),
    ]
}

/// cri-tools' image-predefined-group: `default-user` (1000) is a member of
/// `group-defined-in-image` (50000).
fn predefined_group_layer() -> Vec<Entry> {
    let passwd = format!("{PASSWD}default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n");
    let group = format!("{GROUP}default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n");
    vec![
        dir("etc"),
        dir("home"),
        dir("home/default-user").owner(1000, 1000),
        file("etc/group", group.as_bytes(), 0o644),
        file("etc/passwd", passwd.as_bytes(), 0o644),
    ]
}

/// One image to build.
struct Spec {
    layout: String,
    references: Vec<String>,
    layers: Vec<Vec<Entry>>,
    config: serde_json::Value,
}

/// Config of a BusyBox-based image: `sh`, the label that tells the
/// stand-ins apart, and `extra` fields over it.
fn busybox_config(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "Env": [PATH_ENV],
        "Cmd": ["sh"],
        "Labels": {"org.berth.standin": name},
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn specs(p: &Programs) -> Vec<Spec> {
    let e2e = |n: &str| format!("registry.k8s.io/e2e-test-images/{n}");
    let cri = |n: &str| format!("{CRI_TOOLS}/{n}");
    let base = || busybox_layer(p);
    let mut v = vec![
        Spec {
            layout: "busybox".into(),
            references: vec![e2e("busybox:1.29-2")],
            layers: vec![base()],
            config: busybox_config("busybox", json!({})),
        },
        Spec {
            layout: "nginx".into(),
            references: vec![e2e("nginx:1.14-2")],
            layers: vec![base(), nginx_layer(p)],
            config: busybox_config(
                "nginx",
                json!({"Cmd": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT"}),
            ),
        },
        Spec {
            layout: "hostnet-nginx".into(),
            references: vec![cri(&format!("hostnet-nginx-{}:latest", go_arch()))],
            layers: vec![base(), nginx_layer(p)],
            config: busybox_config(
                "hostnet-nginx",
                json!({"Cmd": ["nginx", "-p", "12003", "-g", "daemon off;"], "ExposedPorts": {"12003/tcp": {}}, "StopSignal": "SIGQUIT"}),
            ),
        },
        Spec {
            layout: "httpd".into(),
            references: vec![e2e("httpd:2.4.39-4")],
            layers: vec![base(), httpd_layer()],
            config: busybox_config(
                "httpd",
                json!({"Cmd": ["httpd-foreground"], "WorkingDir": "/usr/local/apache2", "ExposedPorts": {"80/tcp": {}}}),
            ),
        },
        Spec {
            layout: "nonewprivs".into(),
            references: vec![e2e("nonewprivs:1.3")],
            layers: vec![base(), nnp_layer(p)],
            config: busybox_config("nonewprivs", json!({"Cmd": null, "Entrypoint": ["/usr/local/bin/nnp"]})),
        },
        Spec {
            layout: "pause".into(),
            references: vec!["registry.k8s.io/pause:3.9".into(), "k8s.gcr.io/pause:3.9".into()],
            layers: vec![vec![file("pause", &p.pause, 0o755)]],
            config: json!({"Env": [PATH_ENV], "Entrypoint": ["/pause"], "User": "65535:65535", "WorkingDir": "/"}),
        },
        Spec {
            layout: "test-image-tags".into(),
            references: (1..=3).map(|i| cri(&format!("test-image-tags:{i}"))).collect(),
            layers: vec![base()],
            config: busybox_config("test-image-tags", json!({})),
        },
        Spec {
            layout: "test-image-predefined-group".into(),
            references: vec![cri("test-image-predefined-group:latest")],
            layers: vec![base(), predefined_group_layer()],
            config: busybox_config("test-image-predefined-group", json!({"User": "default-user"})),
        },
    ];
    let plain = [
        ("test-image-latest", "test-image-latest:latest"),
        ("test-image-tag-test", "test-image-tag:test"),
        ("test-image-tag-all", "test-image-tag:all"),
        ("test-image-1", "test-image-1:latest"),
        ("test-image-2", "test-image-2:latest"),
        ("test-image-3", "test-image-3:latest"),
    ];
    for (layout, reference) in plain {
        v.push(Spec {
            layout: layout.into(),
            references: vec![cri(reference)],
            layers: vec![base()],
            config: busybox_config(layout, json!({})),
        });
    }
    let users = [
        ("test-image-user-uid", "1002"),
        ("test-image-user-username", "www-data"),
        ("test-image-user-uid-group", "1003:users"),
        ("test-image-user-username-group", "www-data:www-data"),
    ];
    for (layout, user) in users {
        v.push(Spec {
            layout: layout.into(),
            references: vec![cri(&format!("{layout}:latest"))],
            layers: vec![base()],
            config: busybox_config(layout, json!({"User": user})),
        });
    }
    v
}

/// Compressed layers by their tar's digest: the BusyBox layer is in most
/// images and compressing it dominates the build.
type BlobCache = std::collections::BTreeMap<String, Vec<u8>>;

fn write_image(out: &Path, spec: &Spec, blobs: &mut BlobCache) -> Result<Standin> {
    let mut layout = Layout::create(&out.join("layouts").join(&spec.layout))?;
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for entries in &spec.layers {
        let tar = tarball::write_tar(entries);
        let diff_id = oci::sha256_digest(&tar);
        let blob = match blobs.get(&diff_id) {
            Some(b) => b.clone(),
            None => {
                let b = Compression::Gzip.apply(&tar, false)?;
                blobs.insert(diff_id.clone(), b.clone());
                b
            }
        };
        descs.push(layout.put_blob(Compression::Gzip.media_type(), &blob)?);
        diff_ids.push(diff_id);
    }
    let history: Vec<_> = diff_ids
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"created": CREATED, "created_by": format!("berth-hack critest stand-in layer {i}")}))
        .collect();
    let mut config = spec.config.clone();
    if let Some(c) = config.as_object_mut() {
        c.retain(|_, v| !v.is_null());
    }
    let config = json!({
        "architecture": go_arch(),
        "os": "linux",
        "created": CREATED,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    let cdesc = layout.put_json(oci::MT_CONFIG, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": oci::MT_MANIFEST,
        "config": cdesc,
        "layers": descs,
    });
    let mdesc = layout.put_json(oci::MT_MANIFEST, &manifest)?;
    layout.tag(mdesc.clone(), LAYOUT_TAG);
    layout.finish()?;
    Ok(Standin {
        layout: spec.layout.clone(),
        references: spec.references.clone(),
        digest: mdesc.digest,
        image_id: cdesc.digest,
    })
}

/// Builds every stand-in from the programs in `programs` (`hack/standins.sh`'s
/// directory) into `out/layouts/`, and writes `out/standins.json`.
pub fn build_all(programs: &Path, out: &Path) -> Result<Built> {
    let p = Programs::read(programs)?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut blobs = BlobCache::new();
    let mut built = Built::default();
    for spec in specs(&p) {
        built.images.push(write_image(out, &spec, &mut blobs)?);
    }
    let mut ids = BTreeSet::new();
    for s in &built.images {
        if !ids.insert(&s.image_id) {
            bail!("stand-in {} has the image ID of another one", s.layout);
        }
    }
    fs::write(out.join("standins.json"), serde_json::to_vec_pretty(&built)?)?;
    Ok(built)
}

/// Reads `dir/standins.json` written by [`build_all`].
pub fn load(dir: &Path) -> Result<Built> {
    let p = dir.join("standins.json");
    let data = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_slice(&data).with_context(|| format!("parsing {}", p.display()))
}

/// The sources whose change changes the images.
const SOURCES: &[&str] = &[
    include_str!("critest_images.rs"),
    include_str!("tarball.rs"),
    include_str!("oci.rs"),
];

/// A key naming one build: the stand-in programs and the builder's sources.
pub fn fingerprint(programs: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for n in PROGRAMS {
        let p = programs.join(n);
        h.update(fs::read(&p).with_context(|| format!("reading {}", p.display()))?);
    }
    for s in SOURCES {
        h.update(s.as_bytes());
    }
    Ok(hex::encode(&h.finalize()[..12]))
}

/// Builds the stand-ins into `cache/<fingerprint>` unless already there, and
/// removes builds with other fingerprints. Safe against concurrent callers:
/// each builds into its own temp dir and renames it into place.
pub fn build_cached(programs: &Path, cache: &Path) -> Result<(PathBuf, Built)> {
    let key = fingerprint(programs)?;
    let dir = cache.join(&key);
    if let Ok(built) = load(&dir) {
        return Ok((dir, built));
    }
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let tmp = cache.join(format!(".tmp-{key}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    build_all(programs, &tmp)?;
    if fs::rename(&tmp, &dir).is_err() {
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
    let built = load(&dir)?;
    Ok((dir, built))
}

/// Pushes every stand-in to the registry at `host` (`127.0.0.1:PORT`) under
/// the repository paths of its references (a mirror serves the upstream's
/// paths), each path and tag once.
pub fn push_all(dir: &Path, built: &Built, host: &str) -> Result<()> {
    let mut done = BTreeSet::new();
    for s in &built.images {
        for r in &s.references {
            let (_, path, tag) = split_reference(r)?;
            if !done.insert(format!("{path}:{tag}")) {
                continue;
            }
            let item = PushItem {
                layout: s.layout.clone(),
                repo: path.into(),
                tag: LAYOUT_TAG.into(),
                all: false,
            };
            let d = skopeo::push(dir, &item, host, path, tag, &PushOptions::default())?;
            if d != s.digest {
                bail!("pushed {r} as {d}, but the layout says {}: skopeo rewrote it", s.digest);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_host_path_and_tag() {
        assert_eq!(
            split_reference("registry.k8s.io/e2e-test-images/busybox:1.29-2").unwrap(),
            ("registry.k8s.io", "e2e-test-images/busybox", "1.29-2")
        );
        assert!(split_reference("busybox").is_err());
    }

    #[test]
    fn every_mirrored_host_gets_the_mirror() {
        let c = mirror_config("http://127.0.0.1:5000");
        for h in MIRRORED_HOSTS {
            assert!(
                c.contains(&format!("[registries.\"{h}\"]\nmirrors = [\"http://127.0.0.1:5000\"]")),
                "{c}"
            );
        }
        let parsed: toml::Value = toml::from_str(&c).unwrap();
        assert_eq!(parsed["registries"].as_table().unwrap().len(), MIRRORED_HOSTS.len());
    }

    #[test]
    fn references_are_on_mirrored_hosts_and_unique() {
        let p = Programs {
            busybox: b"bb".to_vec(),
            nginx: b"ng".to_vec(),
            nnp: b"nnp".to_vec(),
            pause: b"pause".to_vec(),
            applets: vec!["sh".into(), "ls".into()],
        };
        let mut seen = BTreeSet::new();
        for s in specs(&p) {
            for r in &s.references {
                let (host, _, _) = split_reference(r).unwrap();
                assert!(MIRRORED_HOSTS.contains(&host), "{r}");
                assert!(seen.insert(r.clone()), "{r} twice");
            }
        }
        assert!(seen.contains("registry.k8s.io/e2e-test-images/busybox:1.29-2"));
    }

    #[test]
    fn applets_are_hardlinks_after_the_binary() {
        let p = Programs {
            busybox: b"bb".to_vec(),
            nginx: Vec::new(),
            nnp: Vec::new(),
            pause: Vec::new(),
            applets: vec!["[".into(), "ls".into()],
        };
        let e = busybox_layer(&p);
        let bin = e.iter().position(|x| x.path == "bin/busybox").unwrap();
        for a in ["bin/[", "bin/ls"] {
            let i = e.iter().position(|x| x.path == a).unwrap();
            assert!(i > bin, "{a} before bin/busybox");
            assert_eq!(e[i].kind, Kind::Hardlink("bin/busybox".into()));
        }
    }
}
