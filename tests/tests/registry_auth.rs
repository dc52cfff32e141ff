//! Registry authentication and mirrors through berthd: basic auth (plain
//! HTTP and TLS with a private CA), token auth (the Docker Hub /
//! registry.k8s.io flow), credentials from the request and from the config,
//! and mirrors tried before the upstream.

use std::sync::atomic::Ordering;

use base64::Engine as _;
use berth_tests::daemon::Berthd;
use berth_tests::fixture::{self, Guard, IDENTITY_TOKEN, PASSWORD, USER};
use berth_tests::ops::{self, expect_err};
use berth_tests::require_root;
use k8s_cri::v1::AuthConfig;
use tonic::Code;

const BUSYBOX: &str = "berth/busybox:latest";
const DENIED: &[Code] = &[Code::Unauthenticated, Code::PermissionDenied];

fn berthd(config: &str) -> Berthd {
    Berthd::start(config).unwrap_or_else(|e| panic!("{e:#}"))
}

fn busybox_id() -> String {
    fixture::images().expected.image(BUSYBOX).amd64().config_digest.clone()
}

#[tokio::test]
async fn basic_auth_credentials_from_the_request() {
    require_root!();
    let r = fixture::private_registry(Guard::Basic, &[BUSYBOX]);
    let d = berthd("");
    let mut c = d.images().await;
    let image = r.reference(BUSYBOX);
    expect_err(ops::pull(&mut c, &image, None).await, DENIED, "anonymous");
    expect_err(
        ops::pull(&mut c, &image, Some(ops::basic(USER, "wrong"))).await,
        DENIED,
        "wrong password",
    );
    assert!(ops::status(&mut c, &image).await.is_none());
    let id = ops::pull(&mut c, &image, Some(ops::basic(USER, PASSWORD)))
        .await
        .expect("right password");
    assert_eq!(id, busybox_id());
    // The `auth` field (base64 user:password), as the kubelet fills it from
    // a docker config.
    ops::remove(&mut c, &image).await.unwrap();
    let auth = AuthConfig {
        auth: base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")),
        ..Default::default()
    };
    ops::pull(&mut c, &image, Some(auth)).await.expect("auth field");
}

#[tokio::test]
async fn basic_auth_credentials_from_the_config() {
    require_root!();
    let r = fixture::private_registry(Guard::Basic, &[BUSYBOX]);
    let d = berthd(&format!(
        "[registries.\"{}\"]\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n",
        r.host()
    ));
    let mut c = d.images().await;
    assert_eq!(ops::pull_ok(&mut c, &r.reference(BUSYBOX)).await, busybox_id());
}

#[tokio::test]
async fn tls_registry_trusted_through_ca_file() {
    require_root!();
    let r = fixture::private_registry(Guard::BasicTls, &[BUSYBOX]);
    let image = r.reference(BUSYBOX);
    let ca = r.registry.ca_pem().unwrap();
    // Without the CA the certificate cannot be verified.
    {
        let d = berthd(&format!(
            "[registries.\"{}\"]\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n",
            r.host()
        ));
        let mut c = d.images().await;
        let r = ops::pull(&mut c, &image, None).await;
        assert!(r.is_err(), "an unverifiable certificate was accepted");
    }
    let d = berthd(&format!(
        "[registries.\"{}\"]\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\nca_file = \"{}\"\n",
        r.host(),
        ca.display()
    ));
    let mut c = d.images().await;
    assert_eq!(ops::pull_ok(&mut c, &image).await, busybox_id());
}

#[tokio::test]
async fn token_auth_with_password_and_identity_token() {
    require_root!();
    let r = fixture::private_registry(Guard::Token, &[BUSYBOX]);
    let token = r.token.as_ref().unwrap();
    let d = berthd("");
    let mut c = d.images().await;
    let image = r.reference(BUSYBOX);
    expect_err(ops::pull(&mut c, &image, None).await, DENIED, "anonymous");
    let refused = token.stats.refused.load(Ordering::SeqCst);
    expect_err(
        ops::pull(&mut c, &image, Some(ops::basic(USER, "wrong"))).await,
        DENIED,
        "wrong password",
    );
    assert!(
        token.stats.refused.load(Ordering::SeqCst) > refused,
        "the token server was not asked"
    );
    let issued = token.stats.issued.load(Ordering::SeqCst);
    assert_eq!(
        ops::pull(&mut c, &image, Some(ops::basic(USER, PASSWORD)))
            .await
            .expect("password"),
        busybox_id()
    );
    assert!(
        token.stats.issued.load(Ordering::SeqCst) > issued,
        "no token was issued"
    );
    ops::remove(&mut c, &image).await.unwrap();
    let auth = AuthConfig {
        identity_token: IDENTITY_TOKEN.into(),
        ..Default::default()
    };
    ops::pull(&mut c, &image, Some(auth)).await.expect("identity token");
    let log = token.stats.log.lock().unwrap().join("\n");
    assert!(log.contains("scope=repository:berth/busybox:pull"), "{log}");
}

#[tokio::test]
async fn token_auth_credentials_from_the_config() {
    require_root!();
    let r = fixture::private_registry(Guard::Token, &[BUSYBOX]);
    let d = berthd(&format!(
        "[registries.\"{}\"]\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n",
        r.host()
    ));
    let mut c = d.images().await;
    assert_eq!(ops::pull_ok(&mut c, &r.reference(BUSYBOX)).await, busybox_id());
}

#[tokio::test]
async fn mirror_first_then_upstream() {
    require_root!();
    // The upstream has busybox and user; the mirror has busybox and layered
    // under the same repository paths.
    let upstream = fixture::private_registry(Guard::Anonymous, &[BUSYBOX, "berth/user:v1"]);
    let mirror = fixture::private_registry(Guard::Anonymous, &[BUSYBOX, "berth/layered:v1"]);
    let d = berthd(&format!(
        "[registries.\"{}\"]\nmirrors = [\"http://{}\"]\n",
        upstream.host(),
        mirror.host()
    ));
    let mut c = d.images().await;
    // Only the mirror has it: served from the mirror, named after the upstream.
    let layered = upstream.reference("berth/layered:v1");
    ops::pull_ok(&mut c, &layered).await;
    let st = ops::status(&mut c, &layered).await.unwrap();
    assert_eq!(st.repo_tags, vec![layered.clone()]);
    let want = fixture::images().expected.image("berth/layered:v1").top_digest.clone();
    assert_eq!(
        st.repo_digests,
        vec![format!("{}/berth/layered@{want}", upstream.host())]
    );
    // Both have it: the mirror answers.
    ops::pull_ok(&mut c, &upstream.reference(BUSYBOX)).await;
    let mlog = mirror.registry.log_tail();
    assert!(
        mlog.contains("/v2/berth/busybox/manifests/latest"),
        "mirror not asked for busybox:\n{mlog}"
    );
    // Only the upstream has it: the upstream answers.
    ops::pull_ok(&mut c, &upstream.reference("berth/user:v1")).await;
    let ulog = upstream.registry.log_tail();
    assert!(
        ulog.contains("/v2/berth/user/manifests/v1"),
        "upstream not asked:\n{ulog}"
    );
}

#[tokio::test]
async fn dead_mirror_falls_back_to_upstream() {
    require_root!();
    let upstream = fixture::private_registry(Guard::Anonymous, &[BUSYBOX]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = berthd(&format!(
        "[registries.\"{}\"]\nmirrors = [\"http://127.0.0.1:{port}\"]\n",
        upstream.host()
    ));
    let mut c = d.images().await;
    assert_eq!(ops::pull_ok(&mut c, &upstream.reference(BUSYBOX)).await, busybox_id());
}
