//! Image references, normalised as the kubelet and containerd expect.
//!
//! `busybox` → `docker.io/library/busybox:latest`;
//! `quay.io/a/b@sha256:…` keeps its digest and gets no tag;
//! `repo:tag@sha256:…` keeps both (the digest is what is pulled).

use std::fmt;

use crate::digest::Digest;
use crate::{ImagesError, Result};

pub const DEFAULT_REGISTRY: &str = "docker.io";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalise a reference. A reference with neither tag nor digest
    /// gets the `latest` tag.
    pub fn parse(input: &str) -> Result<Reference> {
        let bad = |reason: &str| ImagesError::InvalidReference {
            reference: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(bad("empty reference"));
        }
        if input.len() > 4096 || input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or control characters, or is too long"));
        }
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("a 64-character hex string is an image ID, not a reference"));
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (rest, Some(Digest::parse(d).map_err(|e| bad(&e.to_string()))?)),
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|r| bad(&r))?;
        }

        let (registry, path) = match name.split_once('/') {
            Some((first, remainder)) if looks_like_registry(first) => (first.to_string(), remainder.to_string()),
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let registry = if registry == LEGACY_DEFAULT_REGISTRY {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        validate_registry(&registry).map_err(|r| bad(&r))?;
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        validate_repository(&repository).map_err(|r| bad(&r))?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(bad("repository name longer than 255 characters"));
        }

        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Registry host (with port), e.g. `docker.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path within the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag`, if the reference has a tag (a RepoTag).
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{}", self.name(), t))
    }

    /// `registry/repository@digest` for a given manifest digest (a RepoDigest).
    pub fn digested_name(&self, digest: &Digest) -> String {
        format!("{}@{}", self.name(), digest)
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let mut bytes = tag.bytes();
    let ok_first = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok_first || tag.len() > MAX_TAG_LEN || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        return Err(format!(
            "invalid tag {tag:?}: must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
        ));
    }
    Ok(())
}

fn validate_registry(host: &str) -> std::result::Result<(), String> {
    let (h, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("unterminated IPv6 registry address")?;
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(format!("invalid IPv6 registry address {host:?}"));
        }
        (None, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(h) = h {
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if h.is_empty() || !h.split('.').all(label_ok) {
            return Err(format!("invalid registry host {host:?}"));
        }
    }
    if let Some(p) = port {
        if p.is_empty()
            || p.len() > 5
            || !p.bytes().all(|b| b.is_ascii_digit())
            || p.parse::<u32>().map_or(true, |n| n > 65535)
        {
            return Err(format!("invalid registry port in {host:?}"));
        }
    }
    Ok(())
}

fn validate_repository(repo: &str) -> std::result::Result<(), String> {
    if repo.is_empty() {
        return Err("empty repository name".into());
    }
    for component in repo.split('/') {
        if !component_ok(component) {
            return Err(format!(
                "invalid repository component {component:?}: lowercase letters, digits and single separators (., _, __, -) only"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let dashes = sep.bytes().all(|x| x == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_the_kubelet() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("index.docker.io/foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(norm("registry.k8s.io/pause:3.9"), "registry.k8s.io/pause:3.9");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("127.0.0.1:5000/berth/test:v1"), "127.0.0.1:5000/berth/test:v1");
        assert_eq!(norm("[::1]:5000/a"), "[::1]:5000/a:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(norm(&format!("busybox@{d}")), format!("docker.io/library/busybox@{d}"));
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
    }

    #[test]
    fn accessors() {
        let r = Reference::parse("127.0.0.1:5000/berth/multi:v2").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "berth/multi");
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.tagged_name().unwrap(), "127.0.0.1:5000/berth/multi:v2");
        assert_eq!(r.manifest_selector(), "v2");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a/../b",
            "busybox@sha256:short",
            "bad host/x",
            "host:99999/x",
            "docker.io/library/busybox:tag with space",
            &"a".repeat(64).replace('a', "b"),
            &format!("x/{}", "a".repeat(300)),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
