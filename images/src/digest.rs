//! Content digests (`sha256:<64 hex>`) and a writer that hashes what passes
//! through it so a blob is verified as it streams.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::{ImagesError, Result};

/// A validated `algorithm:hex` digest. Only sha256 is accepted for content we
/// store (sha512 references are refused with a clear error).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// Parse `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Digest> {
        let bad = |reason: &str| ImagesError::InvalidDigest {
            digest: s.to_string(),
            reason: reason.into(),
        };
        let (alg, hex) = s.split_once(':').ok_or_else(|| bad("missing algorithm prefix"))?;
        if alg != "sha256" {
            return Err(bad("only sha256 digests are supported"));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad("expected 64 lowercase hex characters"));
        }
        Ok(Digest { hex: hex.to_string() })
    }

    /// The hex part alone, safe to use as a file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = ImagesError;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 with a byte count; compare with [`Verifier::verify`].
#[derive(Default, Clone)]
pub struct Verifier {
    hasher: Sha256,
    len: u64,
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest {
            hex: hex::encode(self.hasher.finalize()),
        }
    }

    /// Check size then digest against what a descriptor promised.
    pub fn verify(self, expected: &Digest, expected_size: Option<u64>) -> Result<()> {
        if let Some(size) = expected_size {
            if size != self.len {
                return Err(ImagesError::SizeMismatch {
                    digest: expected.to_string(),
                    expected: size,
                    actual: self.len,
                });
            }
        }
        let actual = self.finish();
        if &actual != expected {
            return Err(ImagesError::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let d = Digest::of(b"hello");
        let again = Digest::parse(&d.to_string()).unwrap();
        assert_eq!(d, again);
        assert_eq!(d.hex().len(), 64);
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256:",
            "sha256:ABC",
            "md5:0000",
            "sha256:../../etc/passwd",
            &format!("sha256:{}", "G".repeat(64)),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn verifier_detects_mismatch() {
        let d = Digest::of(b"abc");
        let mut v = Verifier::new();
        v.update(b"abc");
        v.clone().verify(&d, Some(3)).unwrap();
        assert!(matches!(
            v.clone().verify(&d, Some(4)),
            Err(ImagesError::SizeMismatch { .. })
        ));
        let mut w = Verifier::new();
        w.update(b"abd");
        assert!(matches!(w.verify(&d, Some(3)), Err(ImagesError::DigestMismatch { .. })));
    }
}
