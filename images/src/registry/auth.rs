//! Registry credentials and the bearer-token exchange.
//!
//! The flow (Docker registry token spec, OAuth2 refresh for identity tokens):
//! 1. A request goes out anonymously (or with a cached token / known Basic
//!    credentials, or a caller-supplied registry token as-is).
//! 2. On `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` the
//!    session calls [`fetch_token`]: `GET realm?service=…&scope=…` (with Basic
//!    credentials when we have them), or `POST realm` with
//!    `grant_type=refresh_token` for an identity token. The JSON answer's
//!    `token` or `access_token` is cached until `expires_in` runs out.
//! 3. On `401` with a `Basic` challenge the request is retried with Basic
//!    credentials.
//!
//! Nothing here logs a credential or a token; [`Secret`]'s `Debug` is redacted.

use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};
use tracing::debug;

use super::challenge::Challenge;
use super::transport::{self, authority, redact, Outgoing, Target};
use super::{Credentials, HostConfig};
use crate::{ImagesError, Result};

/// Tokens without `expires_in` (or with less) last this long (token spec).
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A cached token is dropped this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
const TOKEN_RESPONSE_LIMIT: u64 = 1 << 20;
const TOKEN_TIMEOUT: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "berth";

/// Credentials for one registry endpoint.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Secret {
    /// Username and password: Basic auth, or exchanged for a bearer token.
    Basic { username: String, password: String },
    /// OAuth2 refresh token, exchanged at the token endpoint.
    IdentityToken(String),
    /// A bearer token sent as-is.
    RegistryToken(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
            Secret::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Secret::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl Secret {
    /// Credentials carried by a request; `None` when every field is empty.
    pub(crate) fn from_request(c: &Credentials) -> Result<Option<Secret>> {
        Secret::from_fields(
            Fields {
                username: c.username.as_deref(),
                password: c.password.as_deref(),
                auth: c.auth.as_deref(),
                identity_token: c.identity_token.as_deref(),
                registry_token: c.registry_token.as_deref(),
            },
            "credentials",
        )
    }

    /// Credentials configured for `host`, if any.
    pub(crate) fn from_host_config(h: &HostConfig, host: &str) -> Result<Option<Secret>> {
        Secret::from_fields(
            Fields {
                username: h.username.as_deref(),
                password: h.password.as_deref(),
                auth: h.auth.as_deref(),
                identity_token: h.identity_token.as_deref(),
                registry_token: None,
            },
            &format!("registry {host} auth"),
        )
    }

    /// Precedence inside one set: registry token, identity token,
    /// username/password, then `auth`.
    fn from_fields(f: Fields<'_>, field: &str) -> Result<Option<Secret>> {
        let present = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_string);
        if let Some(token) = present(f.registry_token) {
            return Ok(Some(Secret::RegistryToken(token)));
        }
        if let Some(token) = present(f.identity_token) {
            return Ok(Some(Secret::IdentityToken(token)));
        }
        if let Some(username) = present(f.username) {
            return Ok(Some(Secret::Basic {
                username,
                password: f.password.unwrap_or_default().to_string(),
            }));
        }
        if let Some(auth) = present(f.auth) {
            let (username, password) = decode_auth(&auth).map_err(|reason| ImagesError::InvalidArgument {
                field: field.to_string(),
                reason,
            })?;
            return Ok(Some(Secret::Basic { username, password }));
        }
        Ok(None)
    }

    /// Username and password, when this secret has them.
    pub(crate) fn basic(&self) -> Option<(&str, &str)> {
        match self {
            Secret::Basic { username, password } => Some((username, password)),
            _ => None,
        }
    }
}

struct Fields<'a> {
    username: Option<&'a str>,
    password: Option<&'a str>,
    auth: Option<&'a str>,
    identity_token: Option<&'a str>,
    registry_token: Option<&'a str>,
}

/// base64("user:password") → (user, password).
fn decode_auth(auth: &str) -> Result<(String, String), String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| format!("auth is not valid base64: {e}"))?;
    let text = String::from_utf8(raw).map_err(|_| "decoded auth is not UTF-8".to_string())?;
    let (user, pass) = text
        .split_once(':')
        .ok_or_else(|| "decoded auth is not \"user:password\"".to_string())?;
    if user.is_empty() {
        return Err("decoded auth has an empty username".into());
    }
    Ok((user.to_string(), pass.to_string()))
}

/// `Authorization: Basic …`, marked sensitive.
pub(crate) fn basic_header(username: &str, password: &str) -> Result<HeaderValue> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    sensitive(&format!("Basic {encoded}"))
}

/// `Authorization: Bearer …`, marked sensitive.
pub(crate) fn bearer_header(token: &str) -> Result<HeaderValue> {
    sensitive(&format!("Bearer {token}"))
}

fn sensitive(value: &str) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ImagesError::InvalidArgument {
        field: "credentials".into(),
        reason: "contain characters not allowed in an HTTP header".into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) value: String,
    pub(crate) expires: Instant,
}

impl Token {
    pub(crate) fn is_fresh(&self) -> bool {
        Instant::now() < self.expires
    }
}

/// Exchange credentials (or nothing) for a bearer token at the realm a
/// `Bearer` challenge names. `endpoint_url` is the registry URL that sent the
/// challenge; `scope` is the scope we need (the challenge's own is asked too).
pub(crate) async fn fetch_token(
    client: &reqwest::Client,
    challenge: &Challenge,
    endpoint_url: &Url,
    scope: &str,
    secret: Option<&Secret>,
) -> Result<Token> {
    let registry = authority(endpoint_url);
    let bad_challenge = |detail: String| ImagesError::RegistryProtocol {
        host: registry.clone(),
        url: redact(endpoint_url),
        status: 401,
        detail,
    };
    let realm = challenge
        .param("realm")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| bad_challenge("bearer challenge without a realm".into()))?;
    let mut realm =
        Url::parse(realm).map_err(|e| bad_challenge(format!("bearer realm {realm:?} is not a URL: {e}")))?;
    if !matches!(realm.scheme(), "http" | "https") {
        return Err(bad_challenge(format!(
            "bearer realm scheme {:?} is not http(s)",
            realm.scheme()
        )));
    }
    if realm.scheme() == "http" && endpoint_url.scheme() == "https" && secret.is_some() {
        return Err(bad_challenge(format!(
            "refusing to send credentials to plain-http token realm {}",
            redact(&realm)
        )));
    }
    let mut scopes = vec![scope.to_string()];
    if let Some(asked) = challenge.param("scope").filter(|s| !s.is_empty() && *s != scope) {
        scopes.push(asked.to_string());
    }
    let service = challenge.param("service").unwrap_or_default();
    debug!(registry = %registry, realm = %redact(&realm), ?scopes, with_credentials = secret.is_some(), "fetching bearer token");

    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let request = match secret {
        Some(Secret::IdentityToken(refresh)) => {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("service", service),
                ("client_id", CLIENT_ID),
            ];
            form.extend(scopes.iter().map(|s| ("scope", s.as_str())));
            Outgoing {
                method: Method::POST,
                url: realm.clone(),
                headers,
                body: Some(form_encode(&form).into_bytes()),
                timeout: Some(TOKEN_TIMEOUT),
            }
        }
        other => {
            {
                let mut query = realm.query_pairs_mut();
                if !service.is_empty() {
                    query.append_pair("service", service);
                }
                for s in &scopes {
                    query.append_pair("scope", s);
                }
                if let Some((user, _)) = other.and_then(Secret::basic) {
                    query.append_pair("account", user);
                }
            }
            if let Some((user, pass)) = other.and_then(Secret::basic) {
                headers.insert(AUTHORIZATION, basic_header(user, pass)?);
            }
            Outgoing::get(realm.clone(), headers, Some(TOKEN_TIMEOUT))
        }
    };

    let resp = transport::send(client, request).await?;
    let resp = match transport::check_status(resp, Target::Token).await {
        Ok(resp) => resp,
        Err(ImagesError::Unauthenticated { host, detail }) => {
            let sent = if secret.is_some() {
                "credentials were sent and refused"
            } else {
                "no credentials were sent"
            };
            return Err(ImagesError::Unauthenticated {
                host,
                detail: format!("token endpoint for {registry}: {sent} ({detail})"),
            });
        }
        Err(other) => return Err(other),
    };
    let realm_host = authority(&realm);
    let body = transport::read_capped(resp, TOKEN_RESPONSE_LIMIT, |size| ImagesError::TooLarge {
        what: "token response".into(),
        digest: realm_host.clone(),
        size,
        limit: TOKEN_RESPONSE_LIMIT,
    })
    .await?;
    parse_token_response(&body, Instant::now()).map_err(|reason| ImagesError::Malformed {
        what: "token response from".into(),
        digest: redact(&realm),
        reason,
    })
}

fn parse_token_response(body: &[u8], now: Instant) -> Result<Token, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| format!("not a token JSON object: {e}"))?;
    let value = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .ok_or("neither \"token\" nor \"access_token\" is set")?;
    let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(0)).max(MIN_TOKEN_LIFETIME);
    Ok(Token {
        value,
        expires: now + lifetime - EXPIRY_MARGIN,
    })
}

/// `application/x-www-form-urlencoded` encoding of `pairs`.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn encode(out: &mut String, s: &str) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(&mut out, k);
        out.push('=');
        encode(&mut out, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn credential_precedence_within_a_set() {
        let all = Credentials {
            username: Some("u".into()),
            password: Some("p".into()),
            auth: Some(b64("a:b")),
            identity_token: Some("id".into()),
            registry_token: Some("rt".into()),
        };
        assert_eq!(
            Secret::from_request(&all).unwrap(),
            Some(Secret::RegistryToken("rt".into()))
        );
        let no_rt = Credentials {
            registry_token: None,
            ..all.clone()
        };
        assert_eq!(
            Secret::from_request(&no_rt).unwrap(),
            Some(Secret::IdentityToken("id".into()))
        );
        let userpass = Credentials {
            identity_token: Some(String::new()),
            ..no_rt.clone()
        };
        assert_eq!(
            Secret::from_request(&userpass).unwrap(),
            Some(Secret::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        let auth_only = Credentials {
            auth: Some(b64("alice:pa:ss")),
            ..Credentials::default()
        };
        assert_eq!(
            Secret::from_request(&auth_only).unwrap(),
            Some(Secret::Basic {
                username: "alice".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(Secret::from_request(&Credentials::default()).unwrap(), None);
    }

    #[test]
    fn bad_auth_is_invalid_argument() {
        for bad in ["!!!", &b64("nocolon"), &b64(":pass")] {
            let c = Credentials {
                auth: Some(bad.to_string()),
                ..Credentials::default()
            };
            let err = Secret::from_request(&c).unwrap_err();
            assert!(matches!(err, ImagesError::InvalidArgument { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let text = format!(
            "{:?} {:?} {:?}",
            Secret::Basic {
                username: "u".into(),
                password: "hunter2".into()
            },
            Secret::IdentityToken("idtok".into()),
            Secret::RegistryToken("regtok".into())
        );
        assert!(
            !text.contains("hunter2") && !text.contains("idtok") && !text.contains("regtok"),
            "{text}"
        );
    }

    #[test]
    fn token_responses() {
        let now = Instant::now();
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.value, "abc");
        assert_eq!(t.expires, now + Duration::from_secs(290));
        let t = parse_token_response(br#"{"access_token":"xyz"}"#, now).unwrap();
        assert_eq!(t.value, "xyz");
        assert_eq!(t.expires, now + MIN_TOKEN_LIFETIME - EXPIRY_MARGIN);
        let t = parse_token_response(br#"{"token":"","access_token":"xyz","expires_in":5}"#, now).unwrap();
        assert_eq!(t.value, "xyz");
        assert!(parse_token_response(br#"{"expires_in":5}"#, now).is_err());
        assert!(parse_token_response(b"nope", now).is_err());
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("a", "x y"), ("scope", "repository:a/b:pull")]),
            "a=x+y&scope=repository%3Aa%2Fb%3Apull"
        );
    }
}
