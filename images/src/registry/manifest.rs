//! Manifest media types and parsing.
//!
//! The kind of a manifest comes from the response `Content-Type`, falling back
//! to the descriptor that pointed at it and to the JSON `mediaType` field; a
//! body whose `mediaType` contradicts its `Content-Type` is refused. OCI image
//! manifests and Docker schema 2 manifests share one JSON shape and both parse
//! into [`ImageManifest`] (media types are kept as the registry sent them);
//! OCI indexes and Docker manifest lists both parse into [`ImageIndex`].
//! Docker schema 1 is refused.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::de::IgnoredAny;

use crate::digest::Digest;
use crate::{ImagesError, Result};

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The `Accept` header for manifest requests: every kind we can use.
pub(crate) const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Image,
    Index,
}

enum Known {
    Kind(Kind),
    Schema1,
}

fn known(media_type: &str) -> Option<Known> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Known::Kind(Kind::Image)),
        OCI_INDEX | DOCKER_LIST => Some(Known::Kind(Kind::Index)),
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Some(Known::Schema1),
        _ => None,
    }
}

/// Content types that say nothing about the manifest kind.
fn is_generic(content_type: &str) -> bool {
    matches!(
        content_type,
        "" | "application/json" | "text/plain" | "application/octet-stream"
    )
}

/// `type/subtype` of a `Content-Type` value, lowercased, parameters dropped.
pub(crate) fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Just enough of any manifest to tell what it is.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<IgnoredAny>,
    #[serde(default)]
    config: Option<IgnoredAny>,
}

/// Decide what `bytes` are. `what` names the manifest in errors (a reference
/// or a digest); `hint` is the media type of the descriptor that led here.
pub(crate) fn classify(content_type: Option<&str>, hint: Option<&str>, bytes: &[u8], what: &str) -> Result<Kind> {
    let malformed = |reason: String| ImagesError::Malformed {
        what: "manifest".into(),
        digest: what.to_string(),
        reason,
    };
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(malformed("not a JSON object".into()));
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| malformed(format!("not a JSON object: {e}")))?;
    let header = content_type.map(essence).unwrap_or_default();
    let body = probe.media_type.as_deref().filter(|m| !m.is_empty());

    let declared = if !is_generic(&header) {
        Some(header.as_str())
    } else {
        body.or(hint)
    };
    let kind = match declared {
        Some(media_type) => match known(media_type) {
            Some(Known::Kind(kind)) => kind,
            Some(Known::Schema1) => return Err(schema1(media_type, what)),
            None => {
                return Err(ImagesError::UnsupportedMediaType {
                    media_type: media_type.to_string(),
                    digest: what.to_string(),
                })
            }
        },
        None if probe.schema_version == Some(1) => return Err(schema1("(schema version 1)", what)),
        None if probe.manifests.is_some() => Kind::Index,
        None if probe.config.is_some() => Kind::Image,
        None => {
            return Err(malformed(
                "no media type, and neither \"manifests\" nor \"config\"".into(),
            ))
        }
    };
    if let Some(body_type) = body {
        let agrees = matches!(known(body_type), Some(Known::Kind(body_kind)) if body_kind == kind);
        if !agrees {
            return Err(malformed(format!(
                "served as {} but its mediaType is {body_type:?}",
                declared.unwrap_or("?")
            )));
        }
    }
    Ok(kind)
}

fn schema1(media_type: &str, what: &str) -> ImagesError {
    ImagesError::UnsupportedMediaType {
        media_type: media_type.to_string(),
        digest: format!(
            "{what}: Docker image manifest schema 1 is deprecated and not supported; \
             re-push the image with a current client (schema 2 or OCI)"
        ),
    }
}

/// Parse and check an image manifest: schema version 2, sha256 descriptor
/// digests (they become file names), a container image config no larger
/// than `max_config_bytes`.
pub(crate) fn parse_image(bytes: &[u8], digest: &Digest, max_config_bytes: u64) -> Result<ImageManifest> {
    let malformed = |reason: String| ImagesError::Malformed {
        what: "image manifest".into(),
        digest: digest.to_string(),
        reason,
    };
    let manifest: ImageManifest = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    if manifest.schema_version() != 2 {
        return Err(malformed(format!(
            "schemaVersion {} (want 2)",
            manifest.schema_version()
        )));
    }
    let config = manifest.config();
    descriptor_digest(config, "config", digest)?;
    let config_type = config.media_type().to_string();
    if config_type != OCI_CONFIG && config_type != DOCKER_CONFIG {
        return Err(ImagesError::UnsupportedMediaType {
            media_type: config_type,
            digest: format!("config of {digest} (not a container image)"),
        });
    }
    if config.size() > max_config_bytes {
        return Err(ImagesError::TooLarge {
            what: "image config".into(),
            digest: config.digest().to_string(),
            size: config.size(),
            limit: max_config_bytes,
        });
    }
    for layer in manifest.layers() {
        descriptor_digest(layer, "layer", digest)?;
    }
    Ok(manifest)
}

/// Parse an index (or Docker manifest list).
pub(crate) fn parse_index(bytes: &[u8], digest: &Digest) -> Result<ImageIndex> {
    let malformed = |reason: String| ImagesError::Malformed {
        what: "image index".into(),
        digest: digest.to_string(),
        reason,
    };
    let index: ImageIndex = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    if index.schema_version() != 2 {
        return Err(malformed(format!("schemaVersion {} (want 2)", index.schema_version())));
    }
    Ok(index)
}

/// The descriptor's digest as a [`Digest`]; anything but `sha256:<64 hex>` is
/// refused. `role` and `parent` name it in the error.
pub(crate) fn descriptor_digest(desc: &Descriptor, role: &str, parent: &Digest) -> Result<Digest> {
    let text = desc.digest().to_string();
    Digest::parse(&text).map_err(|e| ImagesError::Malformed {
        what: format!("{role} descriptor in"),
        digest: parent.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG_DIGEST: &str = "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7";
    const LAYER_DIGEST: &str = "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f";

    fn docker_v2s2() -> String {
        format!(
            r#"{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {{"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023, "digest": "{CONFIG_DIGEST}"}},
   "layers": [
      {{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654, "digest": "{LAYER_DIGEST}"}},
      {{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "size": 1, "digest": "{LAYER_DIGEST}",
        "urls": ["https://example/layer"]}}
   ]
}}"#
        )
    }

    #[test]
    fn docker_schema2_parses_as_image_manifest() {
        let bytes = docker_v2s2();
        let d = Digest::of(bytes.as_bytes());
        assert_eq!(
            classify(Some(DOCKER_MANIFEST), None, bytes.as_bytes(), "x").unwrap(),
            Kind::Image
        );
        let m = parse_image(bytes.as_bytes(), &d, 1 << 20).unwrap();
        assert_eq!(m.config().digest().to_string(), CONFIG_DIGEST);
        assert_eq!(m.config().size(), 7023);
        assert_eq!(m.layers().len(), 2);
        assert_eq!(
            m.layers()[0].media_type().to_string(),
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(
            m.media_type().as_ref().map(|t| t.to_string()).as_deref(),
            Some(DOCKER_MANIFEST)
        );
    }

    #[test]
    fn kind_from_content_type_body_hint_or_shape() {
        let image = br#"{"schemaVersion":2,"config":{}}"#;
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let typed_index =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert_eq!(
            classify(
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                None,
                image,
                "x"
            )
            .unwrap(),
            Kind::Image
        );
        assert_eq!(
            classify(Some("application/json"), None, typed_index, "x").unwrap(),
            Kind::Index
        );
        assert_eq!(classify(None, Some(DOCKER_LIST), index, "x").unwrap(), Kind::Index);
        assert_eq!(classify(Some("text/plain"), None, index, "x").unwrap(), Kind::Index);
        assert_eq!(classify(None, None, image, "x").unwrap(), Kind::Image);
    }

    #[test]
    fn contradictions_and_unknown_types_are_refused() {
        let typed_index =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let err = classify(Some(OCI_MANIFEST), None, typed_index, "x").unwrap_err();
        assert!(matches!(err, ImagesError::Malformed { .. }), "{err}");
        let err = classify(Some("application/vnd.oci.artifact.manifest.v1+json"), None, b"{}", "x").unwrap_err();
        assert!(matches!(err, ImagesError::UnsupportedMediaType { .. }), "{err}");
        assert!(matches!(
            classify(None, None, b"[1]", "x").unwrap_err(),
            ImagesError::Malformed { .. }
        ));
        assert!(matches!(
            classify(None, None, b"{}", "x").unwrap_err(),
            ImagesError::Malformed { .. }
        ));
    }

    #[test]
    fn schema1_is_refused_clearly() {
        let body = br#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}"#;
        for ct in [Some(DOCKER_SCHEMA1_SIGNED), Some(DOCKER_SCHEMA1), None] {
            let err = classify(ct, None, body, "docker.io/library/old:1").unwrap_err();
            assert!(matches!(err, ImagesError::UnsupportedMediaType { .. }), "{err}");
            assert!(err.to_string().contains("schema 1"), "{err}");
            assert!(err.to_string().contains("docker.io/library/old:1"), "{err}");
        }
    }

    #[test]
    fn bad_descriptors_are_refused() {
        let d = Digest::of(b"m");
        let sha512 = format!("sha512:{}", "a".repeat(128));
        let bytes = docker_v2s2().replacen(LAYER_DIGEST, &sha512, 1);
        let err = parse_image(bytes.as_bytes(), &d, 1 << 20).unwrap_err();
        assert!(matches!(err, ImagesError::Malformed { .. }), "{err}");
        let err = parse_image(docker_v2s2().as_bytes(), &d, 100).unwrap_err();
        assert!(
            matches!(
                err,
                ImagesError::TooLarge {
                    size: 7023,
                    limit: 100,
                    ..
                }
            ),
            "{err}"
        );
        let helm = docker_v2s2().replace(DOCKER_CONFIG, "application/vnd.cncf.helm.config.v1+json");
        assert!(matches!(
            parse_image(helm.as_bytes(), &d, 1 << 20).unwrap_err(),
            ImagesError::UnsupportedMediaType { .. }
        ));
    }
}
