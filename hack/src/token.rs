//! A registry token server, as Docker Hub and registry.k8s.io run one.
//!
//! The registry (`auth.token` in its config) answers unauthenticated calls
//! with `401` and `WWW-Authenticate: Bearer realm=…,service=…,scope=…`; the
//! client asks this server for a JWT covering the scope and retries with
//! `Authorization: Bearer <jwt>`. The registry trusts tokens signed by the
//! key whose certificate is in its `rootcertbundle`; we put the certificate
//! into each token's `x5c` header, as Docker Hub does.
//!
//! Supported requests (the two ways clients ask for tokens):
//! - `GET /token?service=…&scope=…` with optional HTTP basic credentials;
//! - `POST /token` with a form: `grant_type=password` (username, password) or
//!   `grant_type=refresh_token` (an identity token); the answer carries a
//!   `refresh_token` (the identity token for the user).
//!
//! Bad credentials get `401`. Anonymous requests get a token without any
//! access unless `anonymous_pull` is set, so the registry then refuses them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

use crate::http::{self, Request, Response};

/// The signing key and its self-signed certificate (the registry's
/// `rootcertbundle`).
pub struct TokenKeys {
    pub cert_pem: PathBuf,
    key_pkcs8: Vec<u8>,
    cert_der: Vec<u8>,
}

/// Extracts and decodes the first PEM block labelled `label`.
pub fn pem_block(pem: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).ok_or_else(|| anyhow!("no {label} block"))? + begin.len();
    let stop = pem[start..]
        .find(&end)
        .ok_or_else(|| anyhow!("unterminated {label} block"))?
        + start;
    let b64: String = pem[start..stop].split_whitespace().collect();
    Ok(STANDARD.decode(b64)?)
}

pub fn run_openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (install the openssl package)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl TokenKeys {
    /// Generates a P-256 key and a self-signed certificate in `dir`.
    pub fn generate(dir: &Path) -> Result<TokenKeys> {
        let key = dir.join("token.key");
        let cert = dir.join("token.pem");
        run_openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "3",
            "-subj",
            "/CN=berth test token issuer",
            "-keyout",
            key.to_str().context("utf-8 path")?,
            "-out",
            cert.to_str().context("utf-8 path")?,
        ])?;
        let key_pkcs8 = pem_block(&std::fs::read_to_string(&key)?, "PRIVATE KEY")?;
        let cert_der = pem_block(&std::fs::read_to_string(&cert)?, "CERTIFICATE")?;
        Ok(TokenKeys {
            cert_pem: cert,
            key_pkcs8,
            cert_der,
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct TokenConfig {
    pub service: String,
    pub issuer: String,
    /// username → password.
    pub users: BTreeMap<String, String>,
    /// identity (refresh) token → username.
    pub identity_tokens: BTreeMap<String, String>,
    pub anonymous_pull: bool,
}

/// What the server did, for tests to assert on.
#[derive(Debug, Default)]
pub struct TokenStats {
    pub issued: AtomicU64,
    pub refused: AtomicU64,
    /// `"<METHOD> user=<who> scope=<scopes>"` per request.
    pub log: Mutex<Vec<String>>,
}

pub struct TokenServer {
    server: http::Server,
    pub stats: Arc<TokenStats>,
}

impl TokenServer {
    pub fn start(keys: &TokenKeys, cfg: TokenConfig) -> Result<TokenServer> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &keys.key_pkcs8, &rng)
            .map_err(|e| anyhow!("token key: {e}"))?;
        let signer = Signer {
            pair,
            rng,
            x5c: STANDARD.encode(&keys.cert_der),
            jti: AtomicU64::new(1),
        };
        let stats = Arc::new(TokenStats::default());
        let st = stats.clone();
        let handler = move |req: &Request| handle(req, &cfg, &signer, &st);
        let server = http::Server::start(Arc::new(handler))?;
        Ok(TokenServer { server, stats })
    }

    /// The `realm` for the registry config.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr())
    }
}

struct Signer {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    x5c: String,
    jti: AtomicU64,
}

impl Signer {
    fn sign(&self, claims: &serde_json::Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [self.x5c]});
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("json"));
        let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("json"));
        let input = format!("{h}.{c}");
        let sig = self.pair.sign(&self.rng, input.as_bytes()).expect("ecdsa signing");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn unauthorized(msg: &str) -> Response {
    Response::json(401, &json!({"errors": [{"code": "UNAUTHORIZED", "message": msg}]}))
}

/// Who is asking: `Ok(None)` anonymous, `Ok(Some(user))`, `Err` bad credentials.
fn authenticate(
    req: &Request,
    form: &[(String, String)],
    cfg: &TokenConfig,
) -> std::result::Result<Option<String>, String> {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if req.method == "POST" {
        match get("grant_type") {
            Some("password") => {
                let (u, p) = (get("username").unwrap_or(""), get("password").unwrap_or(""));
                return match cfg.users.get(u) {
                    Some(pw) if pw == p => Ok(Some(u.to_string())),
                    _ => Err(format!("bad password for {u:?}")),
                };
            }
            Some("refresh_token") => {
                let t = get("refresh_token").unwrap_or("");
                return match cfg.identity_tokens.get(t) {
                    Some(u) => Ok(Some(u.clone())),
                    None => Err("unknown refresh token".into()),
                };
            }
            other => return Err(format!("unsupported grant_type {other:?}")),
        }
    }
    let Some(auth) = req.header("authorization") else {
        return Ok(None);
    };
    let Some(b64) = auth.strip_prefix("Basic ") else {
        return Err("unsupported authorization scheme".into());
    };
    let raw = STANDARD
        .decode(b64.trim())
        .map_err(|_| "bad basic credentials".to_string())?;
    let raw = String::from_utf8_lossy(&raw);
    let (u, p) = raw.split_once(':').unwrap_or((&raw, ""));
    // An identity token may be sent as the password of the `<token>` user,
    // as docker does.
    if u == "<token>" {
        return match cfg.identity_tokens.get(p) {
            Some(user) => Ok(Some(user.clone())),
            None => Err("unknown identity token".into()),
        };
    }
    match cfg.users.get(u) {
        Some(pw) if pw == p => Ok(Some(u.to_string())),
        _ => Err(format!("bad password for {u:?}")),
    }
}

/// `repository:berth/busybox:pull,push` → access entry.
fn access_entry(scope: &str, user: Option<&str>, anonymous_pull: bool) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let wanted: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    let granted: Vec<&str> = match user {
        Some(_) => wanted,
        None if anonymous_pull => wanted.into_iter().filter(|a| *a == "pull").collect(),
        None => Vec::new(),
    };
    Some(json!({"type": kind, "name": name, "actions": granted}))
}

fn handle(req: &Request, cfg: &TokenConfig, signer: &Signer, stats: &TokenStats) -> Response {
    if req.path != "/token" {
        return Response::new(404, "not found");
    }
    let form: Vec<(String, String)> = if req.method == "POST" {
        http::parse_form(&String::from_utf8_lossy(&req.body))
    } else {
        req.query.clone()
    };
    let get_all = |k: &str| {
        form.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let scopes: Vec<String> = get_all("scope")
        .iter()
        .flat_map(|s| s.split(' ').map(String::from).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let who = authenticate(req, &form, cfg);
    stats.log.lock().expect("lock").push(format!(
        "{} user={} scope={}",
        req.method,
        match &who {
            Ok(Some(u)) => u.clone(),
            Ok(None) => "<anonymous>".into(),
            Err(e) => format!("<refused: {e}>"),
        },
        scopes.join(" ")
    ));
    let user = match who {
        Ok(u) => u,
        Err(e) => {
            stats.refused.fetch_add(1, Ordering::SeqCst);
            return unauthorized(&e);
        }
    };
    if let Some(s) = get_all("service").first() {
        if *s != cfg.service {
            stats.refused.fetch_add(1, Ordering::SeqCst);
            return Response::json(
                400,
                &json!({"errors": [{"code": "DENIED", "message": format!("unknown service {s}")}]}),
            );
        }
    }
    let access: Vec<_> = scopes
        .iter()
        .filter_map(|s| access_entry(s, user.as_deref(), cfg.anonymous_pull))
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = json!({
        "iss": cfg.issuer,
        "sub": user.clone().unwrap_or_default(),
        "aud": cfg.service,
        "exp": now + 300,
        "nbf": now.saturating_sub(60),
        "iat": now,
        "jti": format!("berth-{}", signer.jti.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let token = signer.sign(&claims);
    stats.issued.fetch_add(1, Ordering::SeqCst);
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": 300,
        "issued_at": "2023-11-14T22:13:20Z",
    });
    if req.method == "POST" {
        if let Some(u) = &user {
            if let Some((t, _)) = cfg.identity_tokens.iter().find(|(_, owner)| *owner == u) {
                body["refresh_token"] = json!(t);
            }
        }
    }
    Response::json(200, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_for_users_and_anonymous() {
        let e = access_entry("repository:berth/busybox:pull,push", Some("u"), false).unwrap();
        assert_eq!(e["name"], "berth/busybox");
        assert_eq!(e["actions"], json!(["pull", "push"]));
        let e = access_entry("repository:berth/busybox:pull,push", None, true).unwrap();
        assert_eq!(e["actions"], json!(["pull"]));
        let e = access_entry("repository:berth/busybox:pull", None, false).unwrap();
        assert_eq!(e["actions"], json!([]));
        assert!(access_entry("nonsense", None, false).is_none());
    }

    #[test]
    fn pem_blocks() {
        let pem = "x\n-----BEGIN CERTIFICATE-----\naGVs\nbG8=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_block(pem, "CERTIFICATE").unwrap(), b"hello");
        assert!(pem_block(pem, "PRIVATE KEY").is_err());
    }
}
