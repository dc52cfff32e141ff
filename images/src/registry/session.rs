//! A pull session: one repository, its ordered endpoints, the credentials of
//! the request, and the tokens earned so far. It fetches manifests for
//! [`super::resolve`] and then lives on in [`super::ResolvedImage::source`]
//! as the [`BlobSource`] the store downloads layers through, possibly from
//! several tasks at once (the caches sit behind mutexes that are never held
//! across an await).
//!
//! Blobs are fetched from the endpoint that served the manifest first; if it
//! fails before sending any bytes, the other endpoints are tried in order.
//! Once bytes have reached the caller's writer a failure is final: the caller
//! discards what was written.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use oci_spec::image::Descriptor;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::{debug, Instrument};

use super::auth::{self, Secret, Token};
use super::challenge::{self, Challenge};
use super::hosts::Endpoint;
use super::manifest::ACCEPT_MANIFESTS;
use super::tls::Clients;
use super::transport::{self, Outgoing, Target};
use super::{BlobSource, BoxFuture};
use crate::digest::{Digest, Verifier};
use crate::{ImagesError, Result};

/// Whole-exchange limit for manifest requests (small bodies).
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A manifest body as received, before any interpretation.
pub(crate) struct FetchedManifest {
    pub(crate) bytes: Vec<u8>,
    pub(crate) content_type: Option<String>,
    /// `Docker-Content-Digest`, when the registry sent one.
    pub(crate) header_digest: Option<String>,
}

pub(crate) struct Session {
    repository: String,
    endpoints: Vec<Endpoint>,
    /// Parallel to `endpoints`.
    clients: Vec<reqwest::Client>,
    /// The request's own credentials; an endpoint's configured ones otherwise.
    request_secret: Option<Secret>,
    max_manifest_bytes: u64,
    /// Bearer tokens by (endpoint index, scope).
    tokens: Mutex<HashMap<(usize, String), Token>>,
    /// Endpoints that asked for Basic auth: send it up front from then on.
    basic: Mutex<HashSet<usize>>,
    /// The endpoint that served the manifest; blobs try it first.
    preferred: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Session {
    pub(crate) fn new(
        repository: &str,
        endpoints: Vec<Endpoint>,
        clients: &Clients,
        request_secret: Option<Secret>,
        max_manifest_bytes: u64,
    ) -> Result<Session> {
        let clients = endpoints
            .iter()
            .map(|e| clients.get(&e.tls))
            .collect::<Result<Vec<_>>>()?;
        Ok(Session {
            repository: repository.to_string(),
            endpoints,
            clients,
            request_secret,
            max_manifest_bytes,
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(HashSet::new()),
            preferred: AtomicUsize::new(0),
        })
    }

    pub(crate) fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    pub(crate) fn endpoint(&self, i: usize) -> &Endpoint {
        &self.endpoints[i]
    }

    /// Remember that endpoint `i` served the manifest.
    pub(crate) fn prefer(&self, i: usize) {
        self.preferred.store(i, Ordering::Relaxed);
    }

    /// Endpoint indexes for blobs: the preferred one, then the others in order.
    fn blob_order(&self) -> Vec<usize> {
        let first = self.preferred.load(Ordering::Relaxed);
        std::iter::once(first)
            .chain((0..self.endpoints.len()).filter(|&i| i != first))
            .collect()
    }

    fn scope(&self) -> String {
        format!("repository:{}:pull", self.repository)
    }

    fn secret(&self, i: usize) -> Option<&Secret> {
        self.request_secret.as_ref().or(self.endpoints[i].configured.as_ref())
    }

    /// What to send up front: a registry token, a cached bearer token, or
    /// Basic credentials for an endpoint that asked for them before.
    fn auth_header(&self, i: usize, scope: &str) -> Result<Option<HeaderValue>> {
        let secret = self.secret(i);
        if let Some(Secret::RegistryToken(token)) = secret {
            return auth::bearer_header(token).map(Some);
        }
        if let Some(token) = lock(&self.tokens).get(&(i, scope.to_string())).filter(|t| t.is_fresh()) {
            return auth::bearer_header(&token.value).map(Some);
        }
        if lock(&self.basic).contains(&i) {
            if let Some((user, pass)) = secret.and_then(Secret::basic) {
                return auth::basic_header(user, pass).map(Some);
            }
        }
        Ok(None)
    }

    /// GET `url` from endpoint `i`, answering one auth challenge, and return
    /// a success response or the error its status maps to.
    async fn get(
        &self,
        i: usize,
        url: Url,
        accept: Option<&'static str>,
        timeout: Option<Duration>,
        target: Target<'_>,
    ) -> Result<Response> {
        let client = &self.clients[i];
        let scope = self.scope();
        let secret = self.secret(i);
        let mut challenged = false;
        loop {
            let mut headers = HeaderMap::new();
            if let Some(accept) = accept {
                headers.insert(ACCEPT, HeaderValue::from_static(accept));
            }
            let auth = self.auth_header(i, &scope)?;
            let sent_auth = auth.is_some();
            if let Some(value) = auth {
                headers.insert(AUTHORIZATION, value);
            }
            let resp = transport::send(client, Outgoing::get(url.clone(), headers, timeout)).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return transport::check_status(resp, target).await;
            }
            let refused = |resp: Response| refused(resp, secret, sent_auth);
            if challenged || matches!(secret, Some(Secret::RegistryToken(_))) {
                return Err(refused(resp).await);
            }
            match preferred_challenge(&resp) {
                Some(c) if c.scheme == "bearer" => {
                    let token = auth::fetch_token(client, &c, &url, &scope, secret).await?;
                    debug!(host = %self.endpoints[i].host, "bearer token obtained");
                    lock(&self.tokens).insert((i, scope.clone()), token);
                }
                Some(c) if c.scheme == "basic" && secret.and_then(Secret::basic).is_some() => {
                    debug!(host = %self.endpoints[i].host, "registry asks for basic auth");
                    lock(&self.basic).insert(i);
                }
                _ => return Err(refused(resp).await),
            }
            challenged = true;
        }
    }

    /// Fetch the manifest `selector` (tag or digest) from endpoint `i`.
    /// `what` names it in errors. Bodies over the limit are refused by their
    /// declared length or while reading, never buffered whole.
    pub(crate) async fn fetch_manifest(&self, i: usize, selector: &str, what: &str) -> Result<FetchedManifest> {
        let ep = &self.endpoints[i];
        let url = ep.manifest_url(&self.repository, selector)?;
        debug!(endpoint = %ep.describe(), repo = %self.repository, selector, "fetching manifest");
        let resp = self
            .get(
                i,
                url,
                Some(ACCEPT_MANIFESTS),
                Some(MANIFEST_TIMEOUT),
                Target::Manifest(what),
            )
            .await?;
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(CONTENT_TYPE.as_str());
        let header_digest = header("docker-content-digest");
        let limit = self.max_manifest_bytes;
        let bytes = transport::read_capped(resp, limit, |size| ImagesError::TooLarge {
            what: "manifest".into(),
            digest: what.to_string(),
            size,
            limit,
        })
        .await?;
        Ok(FetchedManifest {
            bytes,
            content_type,
            header_digest,
        })
    }

    /// Open the blob on endpoint `i`: a success response whose declared
    /// length does not exceed `size`.
    async fn open_blob(&self, i: usize, digest: &Digest, size: u64) -> Result<Response> {
        let text = digest.to_string();
        let url = self.endpoints[i].blob_url(&self.repository, &text)?;
        let resp = self.get(i, url, None, None, Target::Blob(&text)).await?;
        if let Some(declared) = resp.content_length() {
            if declared > size {
                return Err(ImagesError::TooLarge {
                    what: "blob".into(),
                    digest: text,
                    size: declared,
                    limit: size,
                });
            }
        }
        Ok(resp)
    }

    async fn fetch_blob(
        &self,
        desc: &Descriptor,
        out: &mut (dyn AsyncWrite + Send + Unpin),
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<()> {
        let text = desc.digest().to_string();
        let digest = Digest::parse(&text).map_err(|e| ImagesError::Malformed {
            what: "blob descriptor".into(),
            digest: text.clone(),
            reason: e.to_string(),
        })?;
        let size = desc.size();
        let mut earlier = Vec::new();
        let order = self.blob_order();
        let last = order.len().saturating_sub(1);
        for (n, i) in order.into_iter().enumerate() {
            match self.open_blob(i, &digest, size).await {
                Ok(resp) => {
                    debug!(endpoint = %self.endpoints[i].describe(), digest = %digest, size, "streaming blob");
                    return stream_blob(resp, &digest, size, out, progress).await;
                }
                Err(err) if n < last => {
                    debug!(endpoint = %self.endpoints[i].describe(), error = %err, "blob fetch failed; trying the next endpoint");
                    earlier.push(format!("{}: {err}", self.endpoints[i].describe()));
                }
                Err(err) => return Err(with_earlier(err, &earlier)),
            }
        }
        Err(ImagesError::Internal("registry session has no endpoints".into()))
    }
}

impl BlobSource for Session {
    fn fetch<'a>(
        &'a self,
        desc: &'a Descriptor,
        out: &'a mut (dyn AsyncWrite + Send + Unpin),
        progress: &'a (dyn Fn(u64) + Send + Sync),
    ) -> BoxFuture<'a, Result<()>> {
        let span = tracing::debug_span!("registry_blob", repo = %self.repository, digest = %desc.digest());
        Box::pin(self.fetch_blob(desc, out, progress).instrument(span))
    }
}

/// Copy the body to `out`, hashing as it goes; refuse bytes beyond `size`,
/// then check size and digest.
async fn stream_blob(
    mut resp: Response,
    digest: &Digest,
    size: u64,
    out: &mut (dyn AsyncWrite + Send + Unpin),
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<()> {
    let url = resp.url().clone();
    let mut verifier = Verifier::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport::unavailable(&url, e))? {
        let total = verifier.len() + chunk.len() as u64;
        if total > size {
            return Err(ImagesError::TooLarge {
                what: "blob".into(),
                digest: digest.to_string(),
                size: total,
                limit: size,
            });
        }
        verifier.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(|e| ImagesError::io("write blob", digest.to_string(), e))?;
        progress(verifier.len());
    }
    out.flush()
        .await
        .map_err(|e| ImagesError::io("flush blob", digest.to_string(), e))?;
    verifier.verify(digest, Some(size))
}

/// The challenge to answer: Bearer if offered, else Basic.
fn preferred_challenge(resp: &Response) -> Option<Challenge> {
    let mut all = Vec::new();
    for value in resp.headers().get_all(WWW_AUTHENTICATE) {
        let Ok(text) = value.to_str() else { continue };
        match challenge::parse(text) {
            Ok(parsed) => all.extend(parsed),
            Err(reason) => debug!(%reason, "ignoring malformed WWW-Authenticate header"),
        }
    }
    let pick = |scheme: &str| all.iter().position(|c| c.scheme == scheme);
    let at = pick("bearer").or_else(|| pick("basic"))?;
    Some(all.swap_remove(at))
}

/// The error for a 401 we will not (or can no longer) answer.
async fn refused(resp: Response, secret: Option<&Secret>, sent_auth: bool) -> ImagesError {
    let host = transport::authority(resp.url());
    let offered = resp
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let reason = transport::error_detail(resp).await;
    let what = match (secret, sent_auth) {
        (Some(Secret::RegistryToken(_)), _) => "the registry token that was sent was refused".to_string(),
        (Some(_), true) => "credentials were sent and refused".to_string(),
        (Some(_), false) => match offered {
            Some(challenge) => {
                format!("the credentials given cannot answer challenge {challenge:?}; they were not sent")
            }
            None => "no WWW-Authenticate challenge; credentials were not sent".to_string(),
        },
        (None, true) => "anonymous token refused; no credentials were sent (none given or configured)".to_string(),
        (None, false) => "no credentials were sent (none given or configured)".to_string(),
    };
    ImagesError::Unauthenticated {
        host,
        detail: format!("{what}: {reason}"),
    }
}

/// Add what earlier endpoints answered to the last endpoint's error, so the
/// message names every host that was tried.
pub(crate) fn with_earlier(err: ImagesError, earlier: &[String]) -> ImagesError {
    use ImagesError::*;
    if earlier.is_empty() {
        return err;
    }
    let note = format!(" (tried first: {})", earlier.join("; "));
    match err {
        RegistryNotFound { host, what, detail } => RegistryNotFound {
            host,
            what,
            detail: detail + &note,
        },
        RegistryUnavailable { host, detail } => RegistryUnavailable {
            host,
            detail: detail + &note,
        },
        Unauthenticated { host, detail } => Unauthenticated {
            host,
            detail: detail + &note,
        },
        PermissionDenied { host, detail } => PermissionDenied {
            host,
            detail: detail + &note,
        },
        RegistryProtocol {
            host,
            url,
            status,
            detail,
        } => RegistryProtocol {
            host,
            url,
            status,
            detail: detail + &note,
        },
        Malformed { what, digest, reason } => Malformed {
            what,
            digest,
            reason: reason + &note,
        },
        other => other,
    }
}
