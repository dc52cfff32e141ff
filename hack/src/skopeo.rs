//! Pushing the built layouts into a registry with `skopeo copy`.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::expect::Expected;
use crate::testimages::PushItem;

/// How to push.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// `user:password` for the destination.
    pub creds: Option<String>,
    /// A `--format` for skopeo (`v2s2` converts to Docker schema 2).
    pub format: Option<String>,
    /// Directory of the CA to trust (`--dest-cert-dir`); without it TLS is
    /// not verified.
    pub cert_dir: Option<std::path::PathBuf>,
}

/// Copies one layout image to `host/repo:tag`; returns the manifest digest
/// the registry stored (for an index, the index digest).
pub fn push(
    images: &Path,
    item: &PushItem,
    host: &str,
    dest_repo: &str,
    dest_tag: &str,
    opts: &PushOptions,
) -> Result<String> {
    let layout = images.join("layouts").join(&item.layout);
    let digest_file = tempfile::NamedTempFile::new()?;
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy").arg("copy").arg("--quiet");
    // Otherwise skopeo gzips the uncompressed layers on the way to a registry.
    if opts.format.is_none() {
        cmd.arg("--preserve-digests");
    }
    match &opts.cert_dir {
        Some(d) => cmd.arg(format!("--dest-cert-dir={}", d.display())),
        None => cmd.arg("--dest-tls-verify=false"),
    };
    if item.all {
        cmd.arg("--all");
    }
    if let Some(c) = &opts.creds {
        cmd.arg("--dest-creds").arg(c);
    }
    if let Some(f) = &opts.format {
        cmd.arg("--format").arg(f);
    }
    cmd.arg("--digestfile").arg(digest_file.path());
    cmd.arg(format!("oci:{}:{}", layout.display(), item.tag));
    cmd.arg(format!("docker://{host}/{dest_repo}:{dest_tag}"));
    // skopeo must not pick up the invoking user's registry credentials.
    let authfile = tempfile::NamedTempFile::new()?;
    std::fs::write(authfile.path(), b"{\"auths\":{}}")?;
    cmd.env("REGISTRY_AUTH_FILE", authfile.path());
    let out = cmd.output().context("running skopeo (install the skopeo package)")?;
    if !out.status.success() {
        bail!(
            "skopeo copy {} to {host}/{dest_repo}:{dest_tag} failed: {}",
            item.layout,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let digest = std::fs::read_to_string(digest_file.path())?.trim().to_string();
    if !digest.starts_with("sha256:") {
        bail!("skopeo wrote no digest for {dest_repo}:{dest_tag}");
    }
    Ok(digest)
}

/// What [`push_all`] stored.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Pushed {
    /// `repo:tag` → manifest (or index) digest as stored.
    pub digests: std::collections::BTreeMap<String, String>,
}

/// The image pushed a second time, converted to Docker schema 2.
pub const V2S2_REPO: &str = "berth/busybox";
pub const V2S2_TAG: &str = "v2s2";

/// Pushes every image in `exp` (optionally only the ones `filter` accepts),
/// plus `berth/busybox:v2s2`, a Docker schema 2 conversion of busybox.
pub fn push_all(
    images: &Path,
    exp: &Expected,
    host: &str,
    opts: &PushOptions,
    filter: &dyn Fn(&str) -> bool,
) -> Result<Pushed> {
    let mut pushed = Pushed::default();
    for item in exp.push_items() {
        let name = format!("{}:{}", item.repo, item.tag);
        if !filter(&name) {
            continue;
        }
        let d = push(images, &item, host, &item.repo, &item.tag, opts)?;
        let want = &exp.image(&name).top_digest;
        if &d != want {
            bail!("pushed {name} as {d}, but the layout says {want}: skopeo rewrote it");
        }
        pushed.digests.insert(name.clone(), d);
        if name == "berth/busybox:latest" {
            let v2 = PushOptions {
                format: Some("v2s2".into()),
                ..opts.clone()
            };
            let d = push(images, &item, host, V2S2_REPO, V2S2_TAG, &v2)?;
            pushed.digests.insert(format!("{V2S2_REPO}:{V2S2_TAG}"), d);
        }
    }
    Ok(pushed)
}
