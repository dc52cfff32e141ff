//! End-to-end tests of the registry client against fake registries on
//! 127.0.0.1 (see [`super::fake`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use oci_spec::image::Descriptor;

use super::fake::{self, Auth, Content, Reply, Request, Server, GOOD_TOKEN};
use super::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use super::*;
use crate::digest::Digest;
use crate::error::ErrorKind;

const REPO: &str = "test/app";

/// A small image: its manifest bytes and the descriptors in it.
struct Image {
    manifest: Vec<u8>,
    config: Descriptor,
    layer: Descriptor,
    layer_bytes: Vec<u8>,
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    serde_json::from_value(serde_json::json!({
        "mediaType": media_type,
        "digest": Digest::of(bytes).to_string(),
        "size": bytes.len(),
    }))
    .unwrap()
}

/// Put an image's blobs into `content` and return it (manifest not served yet).
fn image(content: &mut Content, seed: &str, manifest_type: &str) -> Image {
    let config_bytes = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"seed":"{seed}"}}"#
    );
    let layer_bytes = format!("layer bytes of {seed}").repeat(100).into_bytes();
    content.blob(config_bytes.as_bytes());
    content.blob(&layer_bytes);
    let (config_type, layer_type) = if manifest_type == DOCKER_MANIFEST {
        (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let config = descriptor(config_type, config_bytes.as_bytes());
    let layer = descriptor(layer_type, &layer_bytes);
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config,
        "layers": [layer],
    }))
    .unwrap();
    Image {
        manifest,
        config,
        layer,
        layer_bytes,
    }
}

fn index(media_type: &str, entries: &[(&[u8], &str, &str, Option<&str>)]) -> Vec<u8> {
    let manifests: Vec<_> = entries
        .iter()
        .map(|(bytes, os, arch, variant)| {
            let mut d = serde_json::json!({
                "mediaType": if media_type == DOCKER_LIST { DOCKER_MANIFEST } else { OCI_MANIFEST },
                "digest": Digest::of(bytes).to_string(),
                "size": bytes.len(),
                "platform": {"os": os, "architecture": arch},
            });
            if let Some(v) = variant {
                d["platform"]["variant"] = (*v).into();
            }
            d
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}))
        .unwrap()
}

fn config_with(host: &str, host_config: HostConfig) -> RegistryConfig {
    RegistryConfig {
        hosts: BTreeMap::from([(host.to_string(), host_config)]),
        ..RegistryConfig::default()
    }
}

fn reference(host: &str, rest: &str) -> Reference {
    Reference::parse(&format!("{host}/{REPO}{rest}")).unwrap()
}

async fn fetch(source: &dyn BlobSource, desc: &Descriptor) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    source.fetch(desc, &mut out, &|_| {}).await?;
    Ok(out)
}

async fn anonymous_registry(content: Content) -> Server {
    Server::start(fake::registry(content, Auth::Anonymous)).await
}

#[tokio::test]
async fn resolves_by_tag_and_streams_verified_blobs() {
    let mut content = Content::default();
    let img = image(&mut content, "tag", OCI_MANIFEST);
    let digest = content.manifest(REPO, Some("v1"), OCI_MANIFEST, &img.manifest);
    let server = anonymous_registry(content).await;

    let client = RegistryClient::new(RegistryConfig::default()).unwrap();
    let resolved = client.resolve(&reference(&server.host(), ":v1"), None).await.unwrap();
    assert_eq!(resolved.manifest_digest, digest);
    assert_eq!(resolved.platform_manifest_digest, digest);
    assert_eq!(resolved.manifest_bytes, img.manifest);
    assert_eq!(resolved.manifest.layers(), &vec![img.layer.clone()]);

    let seen = AtomicU64::new(0);
    let mut out = Vec::new();
    resolved
        .source
        .fetch(&img.layer, &mut out, &|n| seen.store(n, Ordering::SeqCst))
        .await
        .unwrap();
    assert_eq!(out, img.layer_bytes);
    assert_eq!(seen.load(Ordering::SeqCst), img.layer_bytes.len() as u64);
    assert!(fetch(resolved.source.as_ref(), &img.config)
        .await
        .unwrap()
        .starts_with(b"{"));

    let accept = server.requests()[0].header("accept").unwrap_or_default().to_string();
    for media_type in [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST] {
        assert!(accept.contains(media_type), "Accept {accept:?} lacks {media_type}");
    }
    assert_eq!(server.paths()[0], format!("/v2/{REPO}/manifests/v1"));
}

#[tokio::test]
async fn resolves_by_digest_and_refuses_a_lying_registry() {
    let mut content = Content::default();
    let img = image(&mut content, "digest", DOCKER_MANIFEST);
    let digest = content.manifest(REPO, None, DOCKER_MANIFEST, &img.manifest);
    let wanted = Digest::of(b"some other manifest");
    content.raw_manifest(REPO, &wanted.to_string(), DOCKER_MANIFEST, &img.manifest);
    let server = anonymous_registry(content).await;
    let client = RegistryClient::new(RegistryConfig::default()).unwrap();

    let resolved = client
        .resolve(&reference(&server.host(), &format!("@{digest}")), None)
        .await
        .unwrap();
    assert_eq!(resolved.manifest_digest, digest);
    assert_eq!(server.paths()[0], format!("/v2/{REPO}/manifests/{digest}"));

    let err = client
        .resolve(&reference(&server.host(), &format!("@{wanted}")), None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, ImagesError::DigestMismatch { expected, .. } if *expected == wanted.to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn docker_content_digest_header_must_agree() {
    let mut content = Content::default();
    let img = image(&mut content, "hdr", OCI_MANIFEST);
    content.manifest(REPO, Some("v1"), OCI_MANIFEST, &img.manifest);
    let wrong = Digest::of(b"wrong").to_string();
    let inner = fake::registry(content, Auth::Anonymous);
    let server = Server::start(move |base| {
        let handler = inner(base);
        move |req: &Request| {
            let mut reply = handler(req);
            for (name, value) in &mut reply.headers {
                if name == "Docker-Content-Digest" {
                    *value = wrong.clone();
                }
            }
            reply
        }
    })
    .await;
    let client = RegistryClient::new(RegistryConfig::default()).unwrap();
    let err = client
        .resolve(&reference(&server.host(), ":v1"), None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, ImagesError::DigestMismatch { expected, .. } if *expected == Digest::of(b"wrong").to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn index_resolves_to_the_platform_manifest() {
    let mut content = Content::default();
    let amd = image(&mut content, "amd64", OCI_MANIFEST);
    let arm = image(&mut content, "arm64", OCI_MANIFEST);
    let amd_digest = content.manifest(REPO, None, OCI_MANIFEST, &amd.manifest);
    let arm_digest = content.manifest(REPO, None, OCI_MANIFEST, &arm.manifest);
    let attestation = b"{\"schemaVersion\":2}".to_vec();
    let idx = index(
        OCI_INDEX,
        &[
            (&attestation, "unknown", "unknown", None),
            (&amd.manifest, "linux", "amd64", None),
            (&arm.manifest, "linux", "arm64", Some("v8")),
        ],
    );
    let idx_digest = content.manifest(REPO, Some("multi"), OCI_INDEX, &idx);
    let server = anonymous_registry(content).await;

    let arm64 = RegistryConfig {
        platform: Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: None,
        },
        ..RegistryConfig::default()
    };
    let resolved = RegistryClient::new(arm64)
        .unwrap()
        .resolve(&reference(&server.host(), ":multi"), None)
        .await
        .unwrap();
    assert_eq!(resolved.manifest_digest, idx_digest);
    assert_eq!(resolved.platform_manifest_digest, arm_digest);
    assert_eq!(resolved.manifest_bytes, arm.manifest);
    assert_eq!(
        fetch(resolved.source.as_ref(), &arm.layer).await.unwrap(),
        arm.layer_bytes
    );

    let resolved = RegistryClient::new(RegistryConfig::default())
        .unwrap()
        .resolve(&reference(&server.host(), ":multi"), None)
        .await
        .unwrap();
    assert_eq!(resolved.platform_manifest_digest, amd_digest);

    let s390x = RegistryConfig {
        platform: Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        },
        ..RegistryConfig::default()
    };
    let err = RegistryClient::new(s390x)
        .unwrap()
        .resolve(&reference(&server.host(), ":multi"), None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ImagesError::NoMatchingPlatform { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn docker_manifest_list_and_nested_index() {
    let mut content = Content::default();
    let img = image(&mut content, "list", DOCKER_MANIFEST);
    let digest = content.manifest(REPO, None, DOCKER_MANIFEST, &img.manifest);
    let list = index(DOCKER_LIST, &[(&img.manifest, "linux", "amd64", None)]);
    content.manifest(REPO, Some("list"), DOCKER_LIST, &list);
    // An index whose entry is itself an index.
    let inner = index(OCI_INDEX, &[(&img.manifest, "linux", "amd64", None)]);
    content.manifest(REPO, None, OCI_INDEX, &inner);
    let mut outer: serde_json::Value =
        serde_json::from_slice(&index(OCI_INDEX, &[(&inner, "linux", "amd64", None)])).unwrap();
    outer["manifests"][0]["mediaType"] = OCI_INDEX.into();
    let outer = serde_json::to_vec(&outer).unwrap();
    let outer_digest = content.manifest(REPO, Some("nested"), OCI_INDEX, &outer);
    let server = anonymous_registry(content).await;
    let client = RegistryClient::new(RegistryConfig::default()).unwrap();

    let resolved = client.resolve(&reference(&server.host(), ":list"), None).await.unwrap();
    assert_eq!(resolved.platform_manifest_digest, digest);
    let resolved = client
        .resolve(&reference(&server.host(), ":nested"), None)
        .await
        .unwrap();
    assert_eq!(resolved.manifest_digest, outer_digest);
    assert_eq!(resolved.platform_manifest_digest, digest);
}

#[tokio::test]
async fn index_entry_is_verified_against_its_descriptor() {
    let mut content = Content::default();
    let img = image(&mut content, "entry", OCI_MANIFEST);
    let claimed = Digest::of(&img.manifest);
    // The registry serves other bytes under the digest the index names.
    let other = image(&mut content, "other", OCI_MANIFEST);
    content.raw_manifest(REPO, &claimed.to_string(), OCI_MANIFEST, &other.manifest);
    content.manifest(
        REPO,
        Some("v1"),
        OCI_INDEX,
        &index(OCI_INDEX, &[(&img.manifest, "linux", "amd64", None)]),
    );
    let server = anonymous_registry(content).await;
    let err = RegistryClient::new(RegistryConfig::default())
        .unwrap()
        .resolve(&reference(&server.host(), ":v1"), None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ImagesError::SizeMismatch { .. } | ImagesError::DigestMismatch { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&claimed.to_string()), "{err}");
}

#[tokio::test]
async fn bearer_token_flow() {
    let mut content = Content::default();
    let img = image(&mut content, "bearer", OCI_MANIFEST);
    content.manifest(REPO, Some("v1"), OCI_MANIFEST, &img.manifest);
    let server = Server::start(fake::registry(
        content,
        Auth::Bearer {
            basic: None,
            refresh_token: None,
        },
    ))
    .await;

    let resolved = RegistryClient::new(RegistryConfig::default())
        .unwrap()
        .resolve(&reference(&server.host(), ":v1"), None)
        .await
        .unwrap();
    assert_eq!(
        fetch(resolved.source.as_ref(), &img.layer).await.unwrap(),
        img.layer_bytes
    );
    fetch(resolved.source.as_ref(), &img.config).await.unwrap();

    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    let manifest = format!("/v2/{REPO}/manifests/v1");
    // 401, token, retry; then the blobs reuse the cached token.
    assert_eq!(paths[..3], [manifest.as_str(), "/token", manifest.as_str()]);
    assert_eq!(paths.iter().filter(|p| **p == "/token").count(), 1, "{paths:?}");
    let token = &requests[1];
    assert_eq!(token.method, "GET");
    assert_eq!(Request::params(&token.query, "service"), ["fake-registry"]);
    assert_eq!(
        Request::params(&token.query, "scope"),
        [format!("repository:{REPO}:pull")]
    );
    assert_eq!(token.header("authorization"), None, "anonymous token request");
    let bearer = format!("Bearer {GOOD_TOKEN}");
    assert!(requests[2..]
        .iter()
        .all(|r| r.header("authorization") == Some(bearer.as_str())));
}

#[tokio::test]
async fn bearer_token_with_credentials_and_refusals() {
    let mut content = Content::default();
    let img = image(&mut content, "private", OCI_MANIFEST);
    content.manifest(REPO, Some("v1"), OCI_MANIFEST, &img.manifest);
    let auth = Auth::Bearer {
        basic: Some(("alice".into(), "s3cret".into())),
        refresh_token: Some("refresh-me".into()),
    };
    let server = Server::start(fake::registry(content, auth)).await;
    let host = server.host();
    let r = reference(&host, ":v1");

    // Configured host credentials.
    let configured = config_with(
        &host,
        HostConfig {
            username: Some("alice".into()),
            password: Some("s3cret".into()),
            ..Default::default()
        },
    );
    RegistryClient::new(configured.clone())
        .unwrap()
        .resolve(&r, None)
        .await
        .unwrap();
    let token = server.requests().into_iter().find(|q| q.path == "/token").unwrap();
    assert_eq!(
        token.header("authorization"),
        Some(fake::basic_value("alice", "s3cret").as_str())
    );
    assert_eq!(Request::params(&token.query, "account"), ["alice"]);

    // Request credentials take precedence over configured ones.
    let wrong = Credentials {
        username: Some("alice".into()),
        password: Some("wrong".into()),
        ..Default::default()
    };
    let err = RegistryClient::new(configured)
        .unwrap()
        .resolve(&r, Some(&wrong))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ImagesError::Unauthenticated { .. }), "{err}");
    assert!(err.to_string().contains("credentials were sent"), "{err}");
    assert!(!err.to_string().contains("wrong"), "password leaked: {err}");

    // `auth` (base64 user:pass) works as well.
    let client = RegistryClient::new(RegistryConfig::default()).unwrap();
    let auth = Credentials {
        auth: Some("YWxpY2U6czNjcmV0".into()),
        ..Default::default()
    };
    client.resolve(&r, Some(&auth)).await.unwrap();

    // Identity token: OAuth2 refresh grant by POST.
    let identity = Credentials {
        identity_token: Some("refresh-me".into()),
        ..Default::default()
    };
    client.resolve(&r, Some(&identity)).await.unwrap();
    let post = server.requests().into_iter().find(|q| q.method == "POST").unwrap();
    let form = String::from_utf8(post.body.clone()).unwrap();
    assert_eq!(Request::params(&form, "grant_type"), ["refresh_token"]);
    assert_eq!(Request::params(&form, "refresh_token"), ["refresh-me"]);
    assert_eq!(Request::params(&form, "scope"), [format!("repository:{REPO}:pull")]);

    // No credentials at all.
    let err = client.resolve(&r, None).await.err().unwrap();
    assert!(matches!(err, ImagesError::Unauthenticated { .. }), "{err}");
    assert!(err.to_string().contains("no credentials were sent"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);

    // A registry token goes out as-is, with no token exchange.
    let before = server.requests().len();
    let token = Credentials {
        registry_token: Some(GOOD_TOKEN.into()),
        ..Default::default()
    };
    client.resolve(&r, Some(&token)).await.unwrap();
    let after = &server.requests()[before..];
    assert!(after.iter().all(|q| q.path != "/token"));
    assert_eq!(
        after[0].header("authorization"),
        Some(format!("Bearer {GOOD_TOKEN}").as_str())
    );
}

#[tokio::test]
async fn basic_auth() {
    let mut content = Content::default();
    let img = image(&mut content, "basic", OCI_MANIFEST);
    content.manifest(REPO, Some("v1"), OCI_MANIFEST, &img.manifest);
    let server = Server::start(fake::registry(content, Auth::Basic("bob".into(), "pw".into()))).await;
    let host = server.host();
    let client = RegistryClient::new(config_with(
        &host,
        HostConfig {
            username: Some("bob".into()),
            password: Some("pw".into()),
            ..Default::default()
        },
    ))
    .unwrap();
    let resolved = client.resolve(&reference(&host, ":v1"), None).await.unwrap();
    assert_eq!(
        fetch(resolved.source.as_ref(), &img.layer).await.unwrap(),
        img.layer_bytes
    );
    let requests = server.requests();
    assert_eq!(requests[0].header("authorization"), None);
    let basic = fake::basic_value("bob", "pw");
    assert!(
        requests[1..]
            .iter()
            .all(|r| r.header("authorization") == Some(basic.as_str())),
        "{requests:?}"
    );
    // The blob went out with Basic up front: 401, retry, blob.
    assert_eq!(requests.len(), 3);

    let anonymous = RegistryClient::new(RegistryConfig::default()).unwrap();
    let err = anonymous.resolve(&reference(&host, ":v1"), None).await.err().unwrap();
    assert!(matches!(err, ImagesError::Unauthenticated { .. }), "{err}");
}

#[tokio::test]
async fn status_codes_map_to_error_kinds() {
    let mut content = Content::default();
    content.failures.insert(format!("/v2/{REPO}/manifests/denied"), 403);
    content.failures.insert(format!("/v2/{REPO}/manifests/broken"), 500);
    content.failures.insert(format!("/v2/{REPO}/manifests/teapot"), 418);
    content.failures.insert(format!("/v2/{REPO}/manifests/throttled"), 429);
    let server = anonymous_registry(content).await;
    let client = RegistryClient::new(RegistryConfig::default()).unwrap();
    let host = server.host();

    let err = client.resolve(&reference(&host, ":missing"), None).await.err().unwrap();
    assert!(
        matches!(&err, ImagesError::RegistryNotFound { what, .. } if what.contains(&format!("{host}/{REPO}:missing"))),
        "{err}"
    );
    assert!(err.to_string().contains("MANIFEST_UNKNOWN"), "{err}");
    let err = client.resolve(&reference(&host, ":denied"), None).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let err = client.resolve(&reference(&host, ":broken"), None).await.err().unwrap();
    assert!(
        matches!(err, ImagesError::RegistryProtocol { status: 500, .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let err = client.resolve(&reference(&host, ":teapot"), None).await.err().unwrap();
    assert!(
        matches!(err, ImagesError::RegistryProtocol { status: 418, .. }),
        "{err}"
    );

    let err = client
        .resolve(&reference(&host, ":throttled"), None)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    let nowhere = fake::closed_port().await;
    let err = client.resolve(&reference(&nowhere, ":v1"), None).await.err().unwrap();
    assert!(
        matches!(&err, ImagesError::RegistryUnavailable { host, .. } if *host == nowhere),
        "{err}"
    );
}

#[tokio::test]
async fn mirrors_fall_through_to_upstream() {
    let mut content = Content::default();
    let img = image(&mut content, "mirrored", OCI_MANIFEST);
    content.manifest(REPO, Some("v1"), OCI_MANIFEST, &img.manifest);
    let upstream = anonymous_registry(content.clone()).await;
    let empty_mirror = anonymous_registry(Content::default()).await;
    let mut broken = Content::default();
    broken.failures.insert(format!("/prefix/v2/{REPO}/manifests/v1"), 503);
    let broken_mirror = anonymous_registry(broken).await;
    let dead = fake::closed_port().await;

    let mirrors = vec![
        format!("http://{dead}"),
        format!("{}/prefix/", broken_mirror.url()),
        empty_mirror.url(),
    ];
    let client = RegistryClient::new(config_with(
        &upstream.host(),
        HostConfig {
            mirrors,
            ..Default::default()
        },
    ))
    .unwrap();
    let resolved = client.resolve(&reference(&upstream.host(), ":v1"), None).await.unwrap();
    assert_eq!(
        fetch(resolved.source.as_ref(), &img.layer).await.unwrap(),
        img.layer_bytes
    );
    assert_eq!(
        broken_mirror.paths(),
        [format!("/prefix/v2/{REPO}/manifests/v1")],
        "prefix kept, no blobs asked"
    );
    assert_eq!(empty_mirror.paths(), [format!("/v2/{REPO}/manifests/v1")]);
    assert_eq!(upstream.paths().len(), 2);

    // When everything fails, the error names every host tried.
    let err = client
        .resolve(&reference(&upstream.host(), ":nope"), None)
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    for host in [dead.clone(), broken_mirror.host(), empty_mirror.host(), upstream.host()] {
        assert!(text.contains(&host), "{host} missing from {text}");
    }
    assert!(matches!(err, ImagesError::RegistryNotFound { .. }), "{err}");
}

#[tokio::test]
async fn mirror_serves_and_blobs_fall_back() {
    let mut content = Content::default();
    let img = image(&mut content, "fallback", OCI_MANIFEST);
    content.manifest(REPO, Some("v1"), OCI_MANIFEST, &img.manifest);
    let upstream = anonymous_registry(content.clone()).await;
    // The mirror has the manifest, but its blob store is broken.
    let mut flaky = content.clone();
    flaky
        .failures
        .insert(format!("/v2/{REPO}/blobs/{}", img.layer.digest()), 500);
    let mirror = anonymous_registry(flaky).await;

    let client = RegistryClient::new(config_with(
        &upstream.host(),
        HostConfig {
            mirrors: vec![mirror.url()],
            ..Default::default()
        },
    ))
    .unwrap();
    let resolved = client.resolve(&reference(&upstream.host(), ":v1"), None).await.unwrap();
    assert_eq!(
        fetch(resolved.source.as_ref(), &img.config).await.unwrap().len() as u64,
        img.config.size()
    );
    assert_eq!(
        fetch(resolved.source.as_ref(), &img.layer).await.unwrap(),
        img.layer_bytes
    );
    assert_eq!(upstream.paths(), [format!("/v2/{REPO}/blobs/{}", img.layer.digest())]);
    assert_eq!(
        mirror.paths().len(),
        3,
        "manifest and config from the mirror, layer tried there first"
    );
}

#[tokio::test]
async fn blob_digest_and_size_are_enforced() {
    let mut content = Content::default();
    let img = image(&mut content, "blob", OCI_MANIFEST);
    content.manifest(REPO, Some("v1"), OCI_MANIFEST, &img.manifest);
    let layer_digest = img.layer.digest().to_string();
    let mut tampered = img.layer_bytes.clone();
    tampered[0] ^= 1;
    content.lying_blob(&layer_digest, &tampered);
    let server = anonymous_registry(content).await;
    let resolved = RegistryClient::new(RegistryConfig::default())
        .unwrap()
        .resolve(&reference(&server.host(), ":v1"), None)
        .await
        .unwrap();

    let err = fetch(resolved.source.as_ref(), &img.layer).await.unwrap_err();
    assert!(
        matches!(&err, ImagesError::DigestMismatch { expected, .. } if *expected == layer_digest),
        "{err}"
    );
    assert!(err.to_string().contains(&layer_digest), "{err}");

    // More bytes than the descriptor promises.
    let mut short: Descriptor = img.layer.clone();
    short.set_size(img.layer.size() - 10);
    let err = fetch(resolved.source.as_ref(), &short).await.unwrap_err();
    assert!(matches!(err, ImagesError::TooLarge { .. }), "{err}");

    // Fewer bytes than promised.
    let mut long: Descriptor = img.layer.clone();
    long.set_size(img.layer.size() + 10);
    let err = fetch(resolved.source.as_ref(), &long).await.unwrap_err();
    assert!(matches!(err, ImagesError::SizeMismatch { .. }), "{err}");

    // Digests that are not sha256 never reach a URL (or a file name).
    let bad: Descriptor = serde_json::from_value(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": format!("sha512:{}", "a".repeat(128)),
        "size": 1,
    }))
    .unwrap();
    assert!(matches!(
        fetch(resolved.source.as_ref(), &bad).await.unwrap_err(),
        ImagesError::Malformed { .. }
    ));
}

#[tokio::test]
async fn oversized_manifests_are_refused() {
    let mut content = Content::default();
    let img = image(&mut content, "big", OCI_MANIFEST);
    content.manifest(REPO, Some("v1"), OCI_MANIFEST, &img.manifest);
    let limit = img.manifest.len() as u64 - 1;
    let small = RegistryConfig {
        max_manifest_bytes: limit,
        ..RegistryConfig::default()
    };

    // Declared by Content-Length.
    let server = anonymous_registry(content.clone()).await;
    let err = RegistryClient::new(small.clone())
        .unwrap()
        .resolve(&reference(&server.host(), ":v1"), None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, ImagesError::TooLarge { limit: l, .. } if l == limit),
        "{err}"
    );

    // Not declared: the body ends when the connection closes.
    let inner = fake::registry(content, Auth::Anonymous);
    let undeclared = Server::start(move |base| {
        let handler = inner(base);
        move |req: &Request| handler(req).close_delimited()
    })
    .await;
    let err = RegistryClient::new(small)
        .unwrap()
        .resolve(&reference(&undeclared.host(), ":v1"), None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, ImagesError::TooLarge { limit: l, .. } if l == limit),
        "{err}"
    );
    let fine = RegistryClient::new(RegistryConfig::default()).unwrap();
    fine.resolve(&reference(&undeclared.host(), ":v1"), None).await.unwrap();
}

#[tokio::test]
async fn redirect_to_storage_drops_authorization() {
    let mut content = Content::default();
    let img = image(&mut content, "redirect", OCI_MANIFEST);
    content.manifest(REPO, Some("v1"), OCI_MANIFEST, &img.manifest);
    let layer_bytes = img.layer_bytes.clone();
    let storage = Server::start(move |_| move |_: &Request| Reply::new(200).body(layer_bytes.clone())).await;
    let layer_digest = img.layer.digest().to_string();
    content.redirects.insert(
        layer_digest.clone(),
        format!("{}/blobs/layer?X-Signature=s3cr3t", storage.url()),
    );
    // Same-host redirect: the config blob moves to another path on the registry.
    content
        .redirects
        .insert(img.config.digest().to_string(), format!("/v2/{REPO}/blobs/moved"));
    let server = Server::start(fake::registry(
        content,
        Auth::Bearer {
            basic: None,
            refresh_token: None,
        },
    ))
    .await;

    let resolved = RegistryClient::new(RegistryConfig::default())
        .unwrap()
        .resolve(&reference(&server.host(), ":v1"), None)
        .await
        .unwrap();
    assert_eq!(
        fetch(resolved.source.as_ref(), &img.layer).await.unwrap(),
        img.layer_bytes
    );
    let at_storage = storage.requests();
    assert_eq!(at_storage.len(), 1);
    assert_eq!(at_storage[0].query, "X-Signature=s3cr3t");
    assert_eq!(at_storage[0].header("authorization"), None, "token leaked to storage");
    let blob_request = server
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(&layer_digest))
        .unwrap();
    assert_eq!(
        blob_request.header("authorization"),
        Some(format!("Bearer {GOOD_TOKEN}").as_str())
    );

    // Same origin keeps the token (and a 404 there names the blob).
    let err = fetch(resolved.source.as_ref(), &img.config).await.unwrap_err();
    assert!(matches!(err, ImagesError::RegistryNotFound { .. }), "{err}");
    let moved = server
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/blobs/moved"))
        .unwrap();
    assert_eq!(
        moved.header("authorization"),
        Some(format!("Bearer {GOOD_TOKEN}").as_str())
    );
}

#[tokio::test]
async fn schema1_and_unknown_media_types_are_refused() {
    let mut content = Content::default();
    content.manifest(
        REPO,
        Some("old"),
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        br#"{"schemaVersion":1,"fsLayers":[]}"#,
    );
    content.manifest(
        REPO,
        Some("art"),
        "application/vnd.example.thing+json",
        br#"{"schemaVersion":2}"#,
    );
    let server = anonymous_registry(content).await;
    let client = RegistryClient::new(RegistryConfig::default()).unwrap();
    let err = client
        .resolve(&reference(&server.host(), ":old"), None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, ImagesError::UnsupportedMediaType { .. }) && err.to_string().contains("schema 1"),
        "{err}"
    );
    let err = client
        .resolve(&reference(&server.host(), ":art"), None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ImagesError::UnsupportedMediaType { .. }), "{err}");
}

#[tokio::test]
async fn blob_source_is_shared_across_tasks() {
    let mut content = Content::default();
    let img = image(&mut content, "parallel", OCI_MANIFEST);
    content.manifest(REPO, Some("v1"), OCI_MANIFEST, &img.manifest);
    let server = Server::start(fake::registry(
        content,
        Auth::Bearer {
            basic: None,
            refresh_token: None,
        },
    ))
    .await;
    let resolved = RegistryClient::new(RegistryConfig::default())
        .unwrap()
        .resolve(&reference(&server.host(), ":v1"), None)
        .await
        .unwrap();
    let source: Arc<dyn BlobSource> = Arc::from(resolved.source);
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (source, desc) = (
                source.clone(),
                if i % 2 == 0 {
                    img.layer.clone()
                } else {
                    img.config.clone()
                },
            );
            tokio::spawn(async move {
                fetch(source.as_ref(), &desc)
                    .await
                    .map(|b| b.len() as u64 == desc.size())
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap());
    }
}

#[tokio::test]
async fn bad_configuration_is_refused_up_front() {
    let bad_mirror = config_with(
        "quay.io",
        HostConfig {
            mirrors: vec!["mirror.example".into()],
            ..Default::default()
        },
    );
    assert_eq!(
        RegistryClient::new(bad_mirror).err().unwrap().kind(),
        ErrorKind::InvalidArgument
    );
    let bad_auth = config_with(
        "quay.io",
        HostConfig {
            auth: Some("not base64!".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        RegistryClient::new(bad_auth).err().unwrap().kind(),
        ErrorKind::InvalidArgument
    );
    let no_platform = RegistryConfig {
        platform: Platform {
            os: String::new(),
            architecture: "amd64".into(),
            variant: None,
        },
        ..RegistryConfig::default()
    };
    assert!(RegistryClient::new(no_platform).is_err());
}
