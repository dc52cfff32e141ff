//! Single-use, expiring tokens: what CRI `Exec`, `Attach` and
//! `PortForward` put in the URL they return. A token is 128 random bits
//! (hex), maps to the validated request, works once, and is gone after its
//! time to live. The number waiting at once is bounded: a caller that asks
//! for URLs and never uses them cannot grow berthd's memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a token stands for, checked when the CRI call was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    Exec(ExecTarget),
    Attach(AttachTarget),
    PortForward(PortForwardTarget),
}

impl StreamRequest {
    /// The URL path segment: `exec`, `attach`, `portforward`.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamRequest::Exec(_) => "exec",
            StreamRequest::Attach(_) => "attach",
            StreamRequest::PortForward(_) => "portforward",
        }
    }
}

/// Which of the process's streams the client wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StdioWanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub stdio: StdioWanted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachTarget {
    pub container_id: String,
    pub stdio: StdioWanted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardTarget {
    pub pod_id: String,
    /// Ports named in the CRI request; clients may still ask for others
    /// per stream (the kubelet does), as containerd allows.
    pub ports: Vec<u16>,
}

/// The cache is full: too many URLs handed out and not used yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} streaming URLs are already waiting to be used; try again later")]
pub struct TooManyTokens(pub usize);

struct Entry {
    request: StreamRequest,
    expires: Instant,
}

/// The token table.
pub struct Tokens {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Tokens {
    pub fn new(ttl: Duration, capacity: usize) -> Tokens {
        Tokens {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `request` under a new token and returns the token.
    pub fn insert(&self, request: StreamRequest) -> Result<String, TooManyTokens> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("token table");
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.capacity {
                return Err(TooManyTokens(entries.len()));
            }
        }
        let token = new_token();
        entries.insert(
            token.clone(),
            Entry {
                request,
                expires: now + self.ttl,
            },
        );
        Ok(token)
    }

    /// Takes the request of `token` if it exists and has not expired; a
    /// token works once.
    pub fn take(&self, token: &str) -> Option<StreamRequest> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("token table");
        let entry = entries.remove(token)?;
        (entry.expires > now).then_some(entry.request)
    }

    /// Tokens waiting (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.entries.lock().expect("token table").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 128 bits from the kernel's CSPRNG, as 32 hex digits.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    crate::services::fill_random(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True for what [`new_token`] makes: refuse anything else before a lookup.
pub fn well_formed(token: &str) -> bool {
    token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach(id: &str) -> StreamRequest {
        StreamRequest::Attach(AttachTarget {
            container_id: id.into(),
            stdio: StdioWanted::default(),
        })
    }

    #[test]
    fn a_token_works_once() {
        let t = Tokens::new(Duration::from_secs(60), 10);
        let token = t.insert(attach("c1")).unwrap();
        assert!(well_formed(&token), "{token}");
        assert_eq!(t.take(&token), Some(attach("c1")));
        assert_eq!(t.take(&token), None);
    }

    #[test]
    fn tokens_are_distinct_and_unguessable_in_shape() {
        let t = Tokens::new(Duration::from_secs(60), 1000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            assert!(seen.insert(t.insert(attach("c")).unwrap()));
        }
        assert!(!well_formed("../../etc/passwd"));
        assert!(!well_formed(&"A".repeat(32)));
        assert_eq!(t.take("nope"), None);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let t = Tokens::new(Duration::from_millis(20), 10);
        let token = t.insert(attach("c1")).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(t.take(&token), None);
    }

    #[test]
    fn the_table_is_bounded_and_expired_entries_make_room() {
        let t = Tokens::new(Duration::from_millis(30), 3);
        for _ in 0..3 {
            t.insert(attach("c")).unwrap();
        }
        assert_eq!(t.insert(attach("c")), Err(TooManyTokens(3)));
        std::thread::sleep(Duration::from_millis(50));
        t.insert(attach("c")).unwrap();
        assert_eq!(t.len(), 1);
    }
}
