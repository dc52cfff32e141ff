//! One HTTP exchange with redirects followed by hand, and the mapping of
//! transport failures and error statuses to [`ImagesError`].
//!
//! Redirects are followed here rather than by reqwest so the rule is explicit:
//! once a redirect leaves the origin the request was sent to (scheme, host,
//! port), the `Authorization` header is dropped for the rest of the chain — a
//! registry's token must never reach blob storage on another host. A redirect
//! from HTTPS down to plain HTTP is refused.

use std::error::Error as StdError;
use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};
use tracing::debug;

use super::hosts::is_loopback;
use crate::{ImagesError, Result};

const MAX_REDIRECTS: usize = 10;
/// How much of an error response body is read to explain the failure.
const ERROR_BODY_LIMIT: usize = 4 << 10;

/// A request to send, possibly more than once (redirects).
pub(crate) struct Outgoing {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Vec<u8>>,
    /// Whole-exchange timeout (headers and body); `None` for blob bodies,
    /// which rely on the client's read-idle timeout instead.
    pub(crate) timeout: Option<Duration>,
}

impl Outgoing {
    pub(crate) fn get(url: Url, headers: HeaderMap, timeout: Option<Duration>) -> Outgoing {
        Outgoing {
            method: Method::GET,
            url,
            headers,
            body: None,
            timeout,
        }
    }
}

/// Send `req`, following redirects. Returns the first non-redirect response
/// (whatever its status).
pub(crate) async fn send(client: &reqwest::Client, mut req: Outgoing) -> Result<Response> {
    for _ in 0..=MAX_REDIRECTS {
        let mut builder = client
            .request(req.method.clone(), req.url.clone())
            .headers(req.headers.clone());
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        if let Some(timeout) = req.timeout {
            builder = builder.timeout(timeout);
        }
        let resp = builder.send().await.map_err(|e| unavailable(&req.url, e))?;
        let status = resp.status();
        if !is_followed_redirect(status) {
            return Ok(resp);
        }
        let Some(location) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) else {
            return Err(protocol(&resp, "redirect without a usable Location header".into()));
        };
        let next = req
            .url
            .join(location)
            .map_err(|e| protocol(&resp, format!("bad redirect location: {e}")))?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(protocol(
                &resp,
                format!("redirect to unsupported scheme {:?}", next.scheme()),
            ));
        }
        if req.url.scheme() == "https" && next.scheme() == "http" && !is_loopback(&authority(&next)) {
            return Err(protocol(
                &resp,
                format!("refusing redirect from https to plain http ({})", redact(&next)),
            ));
        }
        if !same_origin(&req.url, &next) && req.headers.remove(AUTHORIZATION).is_some() {
            debug!(from = %authority(&req.url), to = %authority(&next), "redirect leaves the origin: authorization dropped");
        }
        if status == StatusCode::SEE_OTHER || (req.method == Method::POST && status.as_u16() <= 302) {
            req.method = Method::GET;
            req.body = None;
            req.headers.remove(CONTENT_TYPE);
            req.headers.remove(CONTENT_LENGTH);
        }
        debug!(status = status.as_u16(), to = %redact(&next), "following redirect");
        req.url = next;
    }
    Err(ImagesError::RegistryProtocol {
        host: authority(&req.url),
        url: redact(&req.url),
        status: 0,
        detail: format!("more than {MAX_REDIRECTS} redirects"),
    })
}

fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// `host[:port]` of a URL, for errors and logs.
pub(crate) fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// A URL without query or fragment: presigned blob-storage URLs carry
/// signatures in the query, which must not reach logs or error messages.
pub(crate) fn redact(url: &Url) -> String {
    format!("{}://{}{}", url.scheme(), authority(url), url.path())
}

/// `err` and its sources, joined: reqwest's own message alone is terse.
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// A failure to exchange with `url`'s host: connect error, timeout, reset.
pub(crate) fn unavailable(url: &Url, err: reqwest::Error) -> ImagesError {
    if err.is_builder() {
        return ImagesError::Internal(format!(
            "cannot build request for {}: {}",
            redact(url),
            error_chain(&err.without_url())
        ));
    }
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connect failed"
    } else {
        "request failed"
    };
    ImagesError::RegistryUnavailable {
        host: authority(url),
        detail: format!("{what} for {}: {}", redact(url), error_chain(&err.without_url())),
    }
}

fn protocol(resp: &Response, detail: String) -> ImagesError {
    ImagesError::RegistryProtocol {
        host: authority(resp.url()),
        url: redact(resp.url()),
        status: resp.status().as_u16(),
        detail,
    }
}

/// What a request was for, to name it in a 404.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Manifest(&'a str),
    Blob(&'a str),
    Token,
}

/// Pass a success through; turn an error status into the matching error,
/// explained by the registry's error body when it sent one.
pub(crate) async fn check_status(resp: Response, target: Target<'_>) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let host = authority(resp.url());
    let url = redact(resp.url());
    let detail = error_detail(resp).await;
    Err(match (status.as_u16(), target) {
        (401, _) => ImagesError::Unauthenticated { host, detail },
        (403, _) => ImagesError::PermissionDenied { host, detail },
        (404, Target::Manifest(what)) => ImagesError::RegistryNotFound {
            host,
            what: format!("manifest {what}"),
            detail,
        },
        (404, Target::Blob(digest)) => ImagesError::RegistryNotFound {
            host,
            what: format!("blob {digest}"),
            detail,
        },
        // Throttled or timed out: retrying later may help.
        (408 | 429, _) => ImagesError::RegistryUnavailable {
            host,
            detail: format!("{url}: {detail}"),
        },
        (code, _) => ImagesError::RegistryProtocol {
            host,
            url,
            status: code,
            detail,
        },
    })
}

/// A short explanation from an error response: the OCI `errors` array when
/// the body has one, else the start of the body, else the status text.
pub(crate) async fn error_detail(mut resp: Response) -> String {
    let status = resp.status();
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_LIMIT);
    if let Some(explained) = oci_errors(&body) {
        return explained;
    }
    let text = String::from_utf8_lossy(&body);
    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    let text = text.trim();
    if text.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {text}")
    }
}

fn oci_errors(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let parsed: Body = serde_json::from_slice(body).ok()?;
    let parts: Vec<String> = parsed
        .errors
        .iter()
        .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
            (false, false) => format!("{}: {}", e.code, e.message),
            (false, true) => e.code.clone(),
            _ => e.message.clone(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Read a whole body of at most `limit` bytes; `too_large(size)` builds the
/// error when the declared length or the bytes read go over it. The body is
/// never buffered beyond `limit`.
pub(crate) async fn read_capped(
    mut resp: Response,
    limit: u64,
    too_large: impl Fn(u64) -> ImagesError,
) -> Result<Vec<u8>> {
    if let Some(declared) = resp.content_length() {
        if declared > limit {
            return Err(too_large(declared));
        }
    }
    let url = resp.url().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(&url, e))? {
        let total = body.len() as u64 + chunk.len() as u64;
        if total > limit {
            return Err(too_large(total));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_query() {
        let url = Url::parse("https://s3.example:8443/bucket/blob?X-Amz-Signature=secret#frag").unwrap();
        assert_eq!(redact(&url), "https://s3.example:8443/bucket/blob");
        assert_eq!(authority(&url), "s3.example:8443");
    }

    #[test]
    fn origins() {
        let a = Url::parse("https://r.example/v2/x").unwrap();
        assert!(same_origin(&a, &Url::parse("https://r.example:443/other").unwrap()));
        assert!(!same_origin(&a, &Url::parse("http://r.example/v2/x").unwrap()));
        assert!(!same_origin(&a, &Url::parse("https://cdn.example/v2/x").unwrap()));
        assert!(!same_origin(&a, &Url::parse("https://r.example:8443/v2/x").unwrap()));
    }

    #[test]
    fn oci_error_bodies() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(oci_errors(body).unwrap(), "MANIFEST_UNKNOWN: manifest unknown");
        assert!(oci_errors(b"<html>").is_none());
        assert!(oci_errors(br#"{"errors":[]}"#).is_none());
    }
}
