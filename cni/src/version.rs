//! CNI spec versions (`cniVersion`), compared numerically.

use std::fmt;
use std::str::FromStr;

/// A semantic `cniVersion` such as `1.0.0` or `0.3.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CniVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl CniVersion {
    pub const V0_1_0: CniVersion = CniVersion::new(0, 1, 0);
    pub const V0_3_0: CniVersion = CniVersion::new(0, 3, 0);
    pub const V0_4_0: CniVersion = CniVersion::new(0, 4, 0);
    pub const V1_0_0: CniVersion = CniVersion::new(1, 0, 0);
    /// The newest version this crate speaks; results are produced in this shape.
    pub const LATEST: CniVersion = CniVersion::new(1, 1, 0);

    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        CniVersion { major, minor, patch }
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The text was not a `major.minor.patch` version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cniVersion {0:?}")]
pub struct InvalidVersion(pub String);

impl FromStr for CniVersion {
    type Err = InvalidVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidVersion(s.to_string());
        let mut parts = s.trim().split('.');
        let mut next = |required: bool| -> Result<u32, InvalidVersion> {
            match parts.next() {
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().map_err(|_| bad()),
                None if !required => Ok(0),
                _ => Err(bad()),
            }
        };
        let major = next(true)?;
        let minor = next(true)?;
        let patch = next(false)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(CniVersion::new(major, minor, patch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        let v: CniVersion = "0.3.1".parse().unwrap();
        assert_eq!(v, CniVersion::new(0, 3, 1));
        assert!(v < CniVersion::V0_4_0);
        assert!(CniVersion::V0_4_0 < CniVersion::V1_0_0);
        assert_eq!("1.0".parse::<CniVersion>().unwrap(), CniVersion::V1_0_0);
        assert_eq!(CniVersion::V1_0_0.to_string(), "1.0.0");
        for bad in ["", "1", "a.b.c", "1.0.0.0", "1..0", "-1.0.0"] {
            assert!(bad.parse::<CniVersion>().is_err(), "{bad}");
        }
    }
}
