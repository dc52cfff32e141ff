//! Test images and the shared registry.
//!
//! [`images`] builds the test images once per checkout (cached under
//! `target/<profile>/berth-test-images/<fingerprint>`, rebuilt when the host
//! busybox or the builder changes). [`shared`] starts one anonymous
//! registry per test binary and pushes every image into it; tests in the
//! binary share it. It is stopped and its storage removed when the binary
//! exits (an `atexit` hook; the registry's watchdog kills it even if the
//! binary is SIGKILLed).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use berth_hack::expect::Expected;
use berth_hack::registry::{Auth, Registry, RegistryOptions};
use berth_hack::skopeo::{self, PushOptions, Pushed};
use berth_hack::testimages;
use berth_hack::token::{TokenConfig, TokenKeys, TokenServer};

/// `target/<profile>` of this build: test binaries live in its `deps/`.
pub fn target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            if dir.file_name().is_some_and(|n| n == "deps") {
                if let Some(t) = dir.parent() {
                    return t.to_path_buf();
                }
            }
            return dir.to_path_buf();
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug")
}

/// The built test images: layout dir and expectations.
pub struct Images {
    pub dir: PathBuf,
    pub expected: Expected,
}

static IMAGES: OnceLock<Images> = OnceLock::new();

/// The test images (`BERTH_TEST_IMAGES=DIR` uses a prebuilt dir instead).
pub fn images() -> &'static Images {
    IMAGES.get_or_init(|| {
        if let Some(dir) = std::env::var_os("BERTH_TEST_IMAGES") {
            let dir = PathBuf::from(dir);
            let expected = testimages::load_expected(&dir).unwrap_or_else(|e| panic!("BERTH_TEST_IMAGES: {e:#}"));
            return Images { dir, expected };
        }
        let (dir, expected) = testimages::build_cached(&target_dir().join("berth-test-images"))
            .unwrap_or_else(|e| panic!("building the test images: {e:#}"));
        Images { dir, expected }
    })
}

/// The per-binary registry. Images are pushed on first use, so a test
/// binary pays only for the images it pulls.
pub struct Shared {
    /// `127.0.0.1:PORT`.
    pub host: String,
    pushed: Mutex<Pushed>,
    registry: Mutex<Option<Registry>>,
}

impl Shared {
    /// Pushes `name` (`repo:tag`, or `berth/busybox:v2s2`) unless done.
    fn ensure(&self, name: &str) -> String {
        let mut pushed = self.pushed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = pushed.digests.get(name) {
            return d.clone();
        }
        let imgs = images();
        let source = if name == "berth/busybox:v2s2" {
            "berth/busybox:latest"
        } else {
            name
        };
        if !imgs.expected.images.contains_key(source) {
            // Not a test image: tests use such names for absent images.
            return String::new();
        }
        let more = skopeo::push_all(&imgs.dir, &imgs.expected, &self.host, &PushOptions::default(), &|n| {
            n == source
        })
        .unwrap_or_else(|e| panic!("pushing {source}: {e:#}\n{}", self.log_tail()));
        pushed.digests.extend(more.digests);
        pushed.digests.get(name).cloned().unwrap_or_default()
    }

    /// `127.0.0.1:PORT/repo:tag`, pushed to the registry if it is a test image.
    pub fn reference(&self, name: &str) -> String {
        self.ensure(name);
        format!("{}/{name}", self.host)
    }

    /// The digest the registry stores for `repo:tag` (pushing it if needed).
    pub fn digest(&self, name: &str) -> String {
        let d = self.ensure(name);
        assert!(!d.is_empty(), "{name} is not a test image");
        d
    }

    /// The registry's log tail.
    pub fn log_tail(&self) -> String {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| r.log_tail())
            .unwrap_or_default()
    }
}

static SHARED: OnceLock<Shared> = OnceLock::new();

extern "C" fn stop_shared_registry() {
    // Never unwind out of an atexit hook.
    let _ = std::panic::catch_unwind(|| {
        if let Some(s) = SHARED.get() {
            if let Ok(mut g) = s.registry.lock() {
                drop(g.take());
            }
        }
    });
}

/// The shared registry, started by the first caller.
pub fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let registry =
            Registry::start(RegistryOptions::default()).unwrap_or_else(|e| panic!("starting docker-registry: {e:#}"));
        // SAFETY: `atexit` only records the function pointer; the hook is an
        // `extern "C"` fn that catches every panic.
        unsafe {
            libc::atexit(stop_shared_registry);
        }
        Shared {
            host: registry.host(),
            pushed: Mutex::new(Pushed::default()),
            registry: Mutex::new(Some(registry)),
        }
    })
}

/// A registry of its own for one test, with only the named images pushed.
pub struct PrivateRegistry {
    pub registry: Registry,
    pub pushed: Pushed,
    /// The token server, for [`Auth::Token`] registries.
    pub token: Option<TokenServer>,
    _keys_dir: Option<tempfile::TempDir>,
}

impl PrivateRegistry {
    pub fn host(&self) -> String {
        self.registry.host()
    }
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.registry.host())
    }
}

/// The user and password the auth registries accept.
pub const USER: &str = "berth";
pub const PASSWORD: &str = "s3cret-berth";
/// An identity (refresh) token the token server accepts for [`USER`].
pub const IDENTITY_TOKEN: &str = "berth-identity-token-0123456789";
pub const TOKEN_SERVICE: &str = "berth-test-registry";
pub const TOKEN_ISSUER: &str = "berth-test-token-issuer";

/// How a private registry is guarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    Anonymous,
    Basic,
    BasicTls,
    Token,
}

/// Starts a registry guarded as asked and pushes `names` into it.
pub fn private_registry(guard: Guard, names: &[&str]) -> PrivateRegistry {
    let imgs = images();
    let mut keys_dir = None;
    let mut token = None;
    let (auth, tls) = match guard {
        Guard::Anonymous => (Auth::None, false),
        Guard::Basic | Guard::BasicTls => (
            Auth::Htpasswd(vec![(USER.into(), PASSWORD.into())]),
            guard == Guard::BasicTls,
        ),
        Guard::Token => {
            let dir = tempfile::Builder::new()
                .prefix("berth-token-")
                .tempdir()
                .expect("tempdir");
            let keys = TokenKeys::generate(dir.path()).expect("token keys");
            let server = TokenServer::start(
                &keys,
                TokenConfig {
                    service: TOKEN_SERVICE.into(),
                    issuer: TOKEN_ISSUER.into(),
                    users: [(USER.to_string(), PASSWORD.to_string())].into(),
                    identity_tokens: [(IDENTITY_TOKEN.to_string(), USER.to_string())].into(),
                    anonymous_pull: false,
                },
            )
            .expect("token server");
            let auth = Auth::Token {
                realm: server.realm(),
                service: TOKEN_SERVICE.into(),
                issuer: TOKEN_ISSUER.into(),
                rootcertbundle: keys.cert_pem.clone(),
            };
            keys_dir = Some(dir);
            token = Some(server);
            (auth, false)
        }
    };
    let registry = Registry::start(RegistryOptions { auth, tls })
        .unwrap_or_else(|e| panic!("starting docker-registry ({guard:?}): {e:#}"));
    let creds = (guard != Guard::Anonymous).then(|| format!("{USER}:{PASSWORD}"));
    let opts = PushOptions {
        creds,
        ..Default::default()
    };
    let pushed = skopeo::push_all(&imgs.dir, &imgs.expected, &registry.host(), &opts, &|n| {
        names.contains(&n)
    })
    .unwrap_or_else(|e| panic!("pushing to the {guard:?} registry: {e:#}\n{}", registry.log_tail()));
    PrivateRegistry {
        registry,
        pushed,
        token,
        _keys_dir: keys_dir,
    }
}
