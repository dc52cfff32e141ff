//! Choosing the manifest for our platform from an image index.
//!
//! Rules (containerd's matcher, simplified):
//! - os and architecture must be equal (after normalising names such as
//!   `x86_64` → `amd64`, `aarch64` → `arm64`);
//! - variants are normalised (`arm64` "" ≡ `v8`; `amd64` `v1` ≡ ""; `arm` "" ≡
//!   `v7`) and an exact variant match wins; failing that, an older compatible
//!   variant (arm v6 on a v7 host, amd64 v2 on a v3 host), closest first;
//! - with no variant configured, any variant of an architecture without
//!   variant levels is acceptable;
//! - `unknown/unknown` entries and Docker attestation manifests are skipped;
//! - an entry without a platform is a last resort;
//! - ties go to the entry listed first.

use oci_spec::image::{Descriptor, ImageIndex};

use super::Platform;
use crate::digest::Digest;
use crate::{ImagesError, Result};

const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const ATTESTATION: &str = "attestation-manifest";
/// Rank of an entry with no platform at all.
const NO_PLATFORM_RANK: u32 = 1000;

/// `(os, architecture, variant)` in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Normal {
    os: String,
    arch: String,
    variant: String,
}

impl Normal {
    fn new(os: &str, arch: &str, variant: Option<&str>) -> Normal {
        let os = os.to_ascii_lowercase();
        let arch = arch.to_ascii_lowercase();
        let mut variant = variant.unwrap_or("").to_ascii_lowercase();
        let arch = match arch.as_str() {
            "x86_64" | "x86-64" => "amd64".to_string(),
            "aarch64" => "arm64".to_string(),
            "i386" | "i686" => "386".to_string(),
            "armhf" => {
                variant = "v7".into();
                "arm".to_string()
            }
            "armel" => {
                variant = "v6".into();
                "arm".to_string()
            }
            _ => arch,
        };
        let variant = match (arch.as_str(), variant.as_str()) {
            ("arm64", "" | "8" | "v8") => "v8".to_string(),
            ("amd64", "v1" | "1") => String::new(),
            ("arm", "") => "v7".to_string(),
            ("arm", "5" | "6" | "7" | "8") => format!("v{variant}"),
            _ => variant,
        };
        Normal { os, arch, variant }
    }
}

/// Numeric level of a `vN` variant.
fn level(variant: &str) -> Option<u32> {
    if variant.is_empty() {
        return Some(1);
    }
    variant.strip_prefix('v')?.parse().ok()
}

/// How well an entry fits: `Some(0)` exact, higher is worse, `None` unusable.
fn rank(want: &Normal, want_has_variant: bool, have: &Normal) -> Option<u32> {
    if want.os != have.os || want.arch != have.arch {
        return None;
    }
    if want.variant == have.variant {
        return Some(0);
    }
    match want.arch.as_str() {
        // Levels where an older variant runs on a newer host.
        "arm" | "amd64" => {
            let (w, h) = (level(&want.variant)?, level(&have.variant)?);
            let floor = if want.arch == "arm" { 5 } else { 1 };
            if h < w && h >= floor {
                Some(w - h)
            } else {
                None
            }
        }
        "arm64" => None,
        _ if !want_has_variant => Some(1),
        _ => None,
    }
}

fn is_attestation(desc: &Descriptor) -> bool {
    let unknown = desc
        .platform()
        .as_ref()
        .is_some_and(|p| p.os().to_string() == "unknown" || p.architecture().to_string() == "unknown");
    let annotated = desc
        .annotations()
        .as_ref()
        .is_some_and(|a| a.get(REFERENCE_TYPE).is_some_and(|v| v == ATTESTATION));
    unknown || annotated
}

/// `os/arch[/variant]` of a platform.
pub(crate) fn describe(p: &Platform) -> String {
    match p.variant.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// The index entry for `want`, or `NoMatchingPlatform` listing what the
/// index offers.
pub(crate) fn select<'a>(index: &'a ImageIndex, want: &Platform, index_digest: &Digest) -> Result<&'a Descriptor> {
    let want_has_variant = want.variant.as_deref().is_some_and(|v| !v.is_empty());
    let wanted = Normal::new(&want.os, &want.architecture, want.variant.as_deref());
    let mut best: Option<(u32, &Descriptor)> = None;
    let mut offered = Vec::new();
    for desc in index.manifests() {
        if is_attestation(desc) {
            continue;
        }
        let rank = match desc.platform() {
            Some(p) => {
                let have = Normal::new(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                );
                offered.push(if have.variant.is_empty() {
                    format!("{}/{}", have.os, have.arch)
                } else {
                    format!("{}/{}/{}", have.os, have.arch, have.variant)
                });
                rank(&wanted, want_has_variant, &have)
            }
            None => Some(NO_PLATFORM_RANK),
        };
        if let Some(r) = rank {
            if best.is_none_or(|(b, _)| r < b) {
                best = Some((r, desc));
            }
        }
    }
    best.map(|(_, d)| d).ok_or_else(|| ImagesError::NoMatchingPlatform {
        platform: if offered.is_empty() {
            describe(want)
        } else {
            format!("{} (index offers {})", describe(want), offered.join(", "))
        },
        digest: index_digest.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, platform: Option<(&str, &str, Option<&str>)>, attestation: bool) -> serde_json::Value {
        let mut v = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", format!("{n:02x}").repeat(32)),
            "size": 100 + n as u64,
        });
        if let Some((os, arch, variant)) = platform {
            let mut p = serde_json::json!({"os": os, "architecture": arch});
            if let Some(var) = variant {
                p["variant"] = var.into();
            }
            v["platform"] = p;
        }
        if attestation {
            v["annotations"] =
                serde_json::json!({REFERENCE_TYPE: ATTESTATION, "vnd.docker.reference.digest": "sha256:00"});
        }
        v
    }

    fn index(entries: Vec<serde_json::Value>) -> ImageIndex {
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": entries})).unwrap()
    }

    fn pick(idx: &ImageIndex, os: &str, arch: &str, variant: Option<&str>) -> Result<u64> {
        let want = Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        };
        select(idx, &want, &Digest::of(b"idx")).map(|d| d.size() - 100)
    }

    fn typical() -> ImageIndex {
        index(vec![
            entry(0, Some(("unknown", "unknown", None)), true),
            entry(1, Some(("linux", "amd64", None)), false),
            entry(2, Some(("linux", "arm", Some("v6"))), false),
            entry(3, Some(("linux", "arm", Some("v7"))), false),
            entry(4, Some(("linux", "arm64", Some("v8"))), false),
            entry(5, Some(("linux", "s390x", None)), false),
            entry(6, Some(("unknown", "unknown", None)), true),
        ])
    }

    #[test]
    fn exact_os_and_architecture() {
        let idx = typical();
        assert_eq!(pick(&idx, "linux", "amd64", None).unwrap(), 1);
        assert_eq!(pick(&idx, "linux", "s390x", None).unwrap(), 5);
        assert_eq!(pick(&idx, "linux", "x86_64", None).unwrap(), 1);
        assert!(matches!(
            pick(&idx, "windows", "amd64", None),
            Err(ImagesError::NoMatchingPlatform { .. })
        ));
        let err = pick(&idx, "linux", "riscv64", None).unwrap_err();
        assert!(
            err.to_string()
                .contains("linux/riscv64 (index offers linux/amd64, linux/arm/v6"),
            "{err}"
        );
        assert!(!err.to_string().contains("unknown"), "{err}");
    }

    #[test]
    fn variants() {
        let idx = typical();
        assert_eq!(pick(&idx, "linux", "arm", Some("v7")).unwrap(), 3);
        assert_eq!(pick(&idx, "linux", "arm", Some("v6")).unwrap(), 2);
        assert_eq!(pick(&idx, "linux", "arm", None).unwrap(), 3, "arm defaults to v7");
        assert_eq!(
            pick(&idx, "linux", "arm", Some("v8")).unwrap(),
            3,
            "closest older arm variant"
        );
        assert!(pick(&idx, "linux", "arm", Some("v5")).is_err());
        // arm64: empty variant in the index or in the config means v8.
        assert_eq!(pick(&idx, "linux", "arm64", None).unwrap(), 4);
        assert_eq!(pick(&idx, "linux", "arm64", Some("v8")).unwrap(), 4);
        let bare_arm64 = index(vec![entry(7, Some(("linux", "arm64", None)), false)]);
        assert_eq!(pick(&bare_arm64, "linux", "arm64", Some("v8")).unwrap(), 7);
        assert_eq!(pick(&bare_arm64, "linux", "aarch64", None).unwrap(), 7);
        // amd64: v1 is the same as no variant; v3 hosts run v2 and v1 images.
        let amd = index(vec![
            entry(1, Some(("linux", "amd64", Some("v1"))), false),
            entry(2, Some(("linux", "amd64", Some("v2"))), false),
        ]);
        assert_eq!(pick(&amd, "linux", "amd64", None).unwrap(), 1);
        assert_eq!(pick(&amd, "linux", "amd64", Some("v2")).unwrap(), 2);
        assert_eq!(pick(&amd, "linux", "amd64", Some("v3")).unwrap(), 2);
        let only_v3 = index(vec![entry(3, Some(("linux", "amd64", Some("v3"))), false)]);
        assert!(
            pick(&only_v3, "linux", "amd64", None).is_err(),
            "a v3 image may not run on a baseline host"
        );
    }

    #[test]
    fn exact_variant_preferred_regardless_of_order() {
        let idx = index(vec![
            entry(1, Some(("linux", "arm", Some("v6"))), false),
            entry(2, Some(("linux", "arm", Some("v7"))), false),
        ]);
        assert_eq!(pick(&idx, "linux", "arm", Some("v7")).unwrap(), 2);
    }

    #[test]
    fn attestations_are_skipped_even_when_they_claim_a_platform() {
        let idx = index(vec![
            entry(1, Some(("linux", "amd64", None)), true),
            entry(2, Some(("linux", "amd64", None)), false),
        ]);
        assert_eq!(pick(&idx, "linux", "amd64", None).unwrap(), 2);
        let only = index(vec![entry(1, Some(("unknown", "unknown", None)), false)]);
        assert!(pick(&only, "linux", "amd64", None).is_err());
    }

    #[test]
    fn platformless_entry_is_last_resort() {
        let idx = index(vec![
            entry(1, None, false),
            entry(2, Some(("linux", "amd64", None)), false),
        ]);
        assert_eq!(pick(&idx, "linux", "amd64", None).unwrap(), 2);
        assert_eq!(pick(&idx, "linux", "arm64", None).unwrap(), 1);
    }
}
