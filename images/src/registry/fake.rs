//! Test doubles: a tiny HTTP/1.1 server on 127.0.0.1 and a fake OCI
//! registry on top of it (manifests, blobs, bearer/basic auth, redirects).
//! One request per connection (`Connection: close`), enough for reqwest.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::digest::Digest;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query (or form) parameter `name`, undecoded but for `%3A`/`%2F`/`+`.
    pub(crate) fn params(text: &str, name: &str) -> Vec<String> {
        text.split('&')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.replace("%3A", ":").replace("%2F", "/").replace('+', " "))
            .collect()
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Send no Content-Length: the body ends when the connection closes.
    pub(crate) close_delimited: bool,
}

impl Reply {
    pub(crate) fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close_delimited: false,
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub(crate) fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    pub(crate) fn close_delimited(mut self) -> Reply {
        self.close_delimited = true;
        self
    }

    pub(crate) fn oci_error(status: u16, code: &str) -> Reply {
        Reply::new(status)
            .header("Content-Type", "application/json")
            .body(format!(
                r#"{{"errors":[{{"code":"{code}","message":"{}"}}]}}"#,
                code.to_lowercase().replace('_', " ")
            ))
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// An HTTP server on 127.0.0.1:0 that records every request.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Start a server; `make` gets the server's own base URL (for realms and
    /// redirects) and returns the handler.
    pub(crate) async fn start<F>(make: impl FnOnce(String) -> F) -> Server
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let handler: Handler = Arc::new(make(format!("http://{addr}")));
        let log = Arc::new(Mutex::new(Vec::new()));
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, log) = (handler.clone(), task_log.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, handler, log).await;
                });
            }
        });
        Server { addr, log, task }
    }

    /// `127.0.0.1:port`, as a registry host in a reference.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.log.lock().expect("log lock").clone()
    }

    pub(crate) fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A local address where nothing listens (connections are refused).
pub(crate) async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr.to_string()
}

async fn serve(mut stream: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Request>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 << 10 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let (path, query) = target
        .split_once('?')
        .map_or((target.clone(), String::new()), |(p, q)| (p.to_string(), q.to_string()));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut request = Request {
        method,
        path,
        query,
        headers,
        body: buf[head_end + 4..].to_vec(),
    };
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while request.body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        request.body.extend_from_slice(&chunk[..n]);
    }
    log.lock().expect("log lock").push(request.clone());

    let reply = handler(&request);
    let mut out = format!("HTTP/1.1 {} Fake\r\nConnection: close\r\n", reply.status);
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !reply.close_delimited {
        out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    if request.method != "HEAD" {
        stream.write_all(&reply.body).await?;
    }
    stream.shutdown().await
}

/// How the fake registry wants to be authenticated.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    Anonymous,
    /// Bearer tokens from `<server>/token`; the token endpoint demands these
    /// Basic credentials when set, or accepts this refresh token by POST.
    Bearer {
        basic: Option<(String, String)>,
        refresh_token: Option<String>,
    },
    /// Basic credentials on every request.
    Basic(String, String),
}

pub(crate) const GOOD_TOKEN: &str = "fake-token-0123";

pub(crate) fn basic_value(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// Manifests and blobs served by a fake registry.
#[derive(Debug, Clone, Default)]
pub(crate) struct Content {
    /// `repo` + `:` + tag or digest → (media type, bytes).
    manifests: HashMap<String, (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
    /// Blob digest → URL to redirect to instead of serving.
    pub(crate) redirects: HashMap<String, String>,
    /// Paths answered with this status instead.
    pub(crate) failures: HashMap<String, u16>,
}

impl Content {
    /// Serve `bytes` as manifest `tag` of `repo`, and under its digest.
    pub(crate) fn manifest(&mut self, repo: &str, tag: Option<&str>, media_type: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        for key in tag
            .into_iter()
            .map(str::to_string)
            .chain(std::iter::once(digest.to_string()))
        {
            self.manifests
                .insert(format!("{repo}:{key}"), (media_type.to_string(), bytes.to_vec()));
        }
        digest
    }

    /// Serve `bytes` under `selector` only (a tag, or a digest that lies).
    pub(crate) fn raw_manifest(&mut self, repo: &str, selector: &str, media_type: &str, bytes: &[u8]) {
        self.manifests
            .insert(format!("{repo}:{selector}"), (media_type.to_string(), bytes.to_vec()));
    }

    pub(crate) fn blob(&mut self, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        self.blobs.insert(digest.to_string(), bytes.to_vec());
        digest
    }

    /// Serve `bytes` for `digest` even though they do not hash to it.
    pub(crate) fn lying_blob(&mut self, digest: &str, bytes: &[u8]) {
        self.blobs.insert(digest.to_string(), bytes.to_vec());
    }
}

/// The handler of a fake registry at `base` (its own URL).
pub(crate) fn registry(
    content: Content,
    auth: Auth,
) -> impl FnOnce(String) -> Box<dyn Fn(&Request) -> Reply + Send + Sync> {
    move |base| Box::new(move |req: &Request| answer(&content, &auth, &base, req))
}

fn answer(content: &Content, auth: &Auth, base: &str, req: &Request) -> Reply {
    if let Some(status) = content.failures.get(&req.path) {
        return Reply::oci_error(*status, "UNAVAILABLE");
    }
    if req.path == "/token" {
        return token(auth, req);
    }
    let Some(rest) = req.path.strip_prefix("/v2/") else {
        return Reply::oci_error(404, "NOT_FOUND");
    };
    let (repo, kind, selector) = match (rest.rsplit_once("/manifests/"), rest.rsplit_once("/blobs/")) {
        (Some((repo, sel)), _) => (repo, "manifests", sel),
        (None, Some((repo, sel))) => (repo, "blobs", sel),
        _ => return Reply::oci_error(404, "NOT_FOUND"),
    };
    let authorization = req.header("authorization");
    match auth {
        Auth::Anonymous => {}
        Auth::Bearer { .. } if authorization == Some(&format!("Bearer {GOOD_TOKEN}")) => {}
        Auth::Bearer { .. } => {
            let challenge =
                format!(r#"Bearer realm="{base}/token",service="fake-registry",scope="repository:{repo}:pull""#);
            return Reply::oci_error(401, "UNAUTHORIZED").header("WWW-Authenticate", &challenge);
        }
        Auth::Basic(user, pass) if authorization == Some(&basic_value(user, pass)) => {}
        Auth::Basic(..) => {
            return Reply::oci_error(401, "UNAUTHORIZED")
                .header("WWW-Authenticate", r#"Basic realm="fake, with comma""#)
        }
    }
    if kind == "manifests" {
        return match content.manifests.get(&format!("{repo}:{selector}")) {
            Some((media_type, bytes)) => Reply::new(200)
                .header("Content-Type", media_type)
                .header("Docker-Content-Digest", &Digest::of(bytes).to_string())
                .body(bytes.clone()),
            None => Reply::oci_error(404, "MANIFEST_UNKNOWN"),
        };
    }
    if let Some(location) = content.redirects.get(selector) {
        return Reply::new(307).header("Location", location);
    }
    match content.blobs.get(selector) {
        Some(bytes) => Reply::new(200)
            .header("Content-Type", "application/octet-stream")
            .body(bytes.clone()),
        None => Reply::oci_error(404, "BLOB_UNKNOWN"),
    }
}

fn token(auth: &Auth, req: &Request) -> Reply {
    let Auth::Bearer { basic, refresh_token } = auth else {
        return Reply::oci_error(404, "NOT_FOUND");
    };
    // The OAuth2 endpoint answers `access_token`, the Docker one `token`.
    let field = if req.method == "POST" { "access_token" } else { "token" };
    let granted = Reply::new(200)
        .header("Content-Type", "application/json")
        .body(format!(r#"{{"{field}":"{GOOD_TOKEN}","expires_in":300}}"#));
    if req.method == "POST" {
        let body = String::from_utf8_lossy(&req.body);
        let ok = Request::params(&body, "grant_type") == ["refresh_token"]
            && refresh_token
                .as_ref()
                .is_some_and(|t| Request::params(&body, "refresh_token") == [t.clone()]);
        return if ok {
            granted
        } else {
            Reply::oci_error(401, "UNAUTHORIZED")
        };
    }
    match basic {
        None => granted,
        Some((user, pass)) if req.header("authorization") == Some(&basic_value(user, pass)) => granted,
        Some(_) => Reply::oci_error(401, "UNAUTHORIZED"),
    }
}
