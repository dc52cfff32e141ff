//! A minimal blocking HTTP/1.1 server for test fixtures (the token server, a
//! fake registry): one thread, one request per connection, `Connection:
//! close`. Not a general server; just enough for registry clients.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Query parameters in order (keys may repeat, e.g. `scope`).
    pub query: Vec<(String, String)>,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
    pub fn query_all(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn query_one(&self, key: &str) -> Option<&str> {
        self.query_all(key).into_iter().next()
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Announce this Content-Length instead of the body's (for tests of
    /// clients that must refuse oversized documents before reading them).
    pub content_length: Option<u64>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
            content_length: None,
        }
    }
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response::new(status, serde_json::to_vec(v).expect("json")).header("Content-Type", "application/json")
    }
    pub fn header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// Decodes `%XX` and `+` in a form or query component.
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `a=b&c=d`.
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

pub fn read_request(stream: &mut TcpStream) -> Result<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = match (parts.next(), parts.next()) {
        (Some(m), Some(t)) => (m.to_string(), t.to_string()),
        _ => bail!("bad request line {line:?}"),
    };
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len.min(16 << 20)];
    r.read_exact(&mut body)?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), parse_form(q)),
        None => (target, Vec::new()),
    };
    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

pub fn write_response(stream: &mut TcpStream, req_method: &str, resp: &Response) -> Result<()> {
    let len = resp.content_length.unwrap_or(resp.body.len() as u64);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {len}\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status)
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if req_method != "HEAD" {
        // A client may hang up early (e.g. on an oversized body): not an error.
        let _ = stream.write_all(&resp.body);
    }
    let _ = stream.flush();
    Ok(())
}

pub type Handler = dyn Fn(&Request) -> Response + Send + Sync + 'static;

/// A running server; stops (and joins its thread) on drop.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `handler` on 127.0.0.1 at a free port, one thread per connection.
    pub fn start(handler: Arc<Handler>) -> Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                let h = handler.clone();
                std::thread::spawn(move || {
                    if let Ok(req) = read_request(&mut s) {
                        let resp = h(&req);
                        let _ = write_response(&mut s, &req.method, &resp);
                    }
                });
            }
        });
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms() {
        let f = parse_form("scope=repository%3Aberth%2Fbusybox%3Apull&x=a+b&flag");
        assert_eq!(f[0], ("scope".into(), "repository:berth/busybox:pull".into()));
        assert_eq!(f[1], ("x".into(), "a b".into()));
        assert_eq!(f[2], ("flag".into(), String::new()));
    }

    #[test]
    fn serves_requests() {
        let srv = Server::start(Arc::new(|r: &Request| {
            Response::new(200, format!("{} {}", r.method, r.query_one("q").unwrap_or("-")))
        }))
        .unwrap();
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"GET /x?q=hi HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("GET hi"), "{out}");
    }
}
