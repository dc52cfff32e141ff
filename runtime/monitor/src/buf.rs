//! A fixed-capacity byte buffer: the monitor's replacement for `String`
//! and `format!` (no allocator). Pushing past the capacity truncates.

use core::ffi::CStr;

#[derive(Clone)]
pub struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> core::fmt::Debug for Buf<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_bytes().escape_ascii())
    }
}

impl<const N: usize> Default for Buf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Buf<N> {
    pub const fn new() -> Self {
        Buf { bytes: [0; N], len: 0 }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends as much of `b` as fits.
    pub fn push(&mut self, b: &[u8]) -> &mut Self {
        let n = b.len().min(N - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        self
    }

    /// Appends `n` in decimal, zero-padded to at least `width` digits.
    pub fn push_padded(&mut self, mut n: u64, width: usize) -> &mut Self {
        let mut digits = [b'0'; 20];
        let mut i = digits.len();
        while n > 0 {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let start = (digits.len() - width.min(digits.len())).min(i);
        self.push(&digits[start..])
    }

    pub fn push_u64(&mut self, n: u64) -> &mut Self {
        self.push_padded(n, 1)
    }

    pub fn push_i64(&mut self, n: i64) -> &mut Self {
        if n < 0 {
            self.push(b"-");
        }
        self.push_u64(n.unsigned_abs())
    }

    /// The contents plus a NUL as a C string; `None` when the contents
    /// hold a NUL or there is no room for the terminator.
    pub fn as_cstr(&mut self) -> Option<&CStr> {
        if self.len >= N || self.as_bytes().contains(&0) {
            return None;
        }
        self.bytes[self.len] = 0;
        CStr::from_bytes_with_nul(&self.bytes[..=self.len]).ok()
    }
}

/// Parses an unsigned decimal number (no sign, no spaces).
pub fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_truncate_at_capacity_and_numbers_format() {
        let mut b = Buf::<8>::new();
        b.push(b"ab").push_padded(7, 3).push_i64(-42);
        assert_eq!(b.as_bytes(), b"ab007-42");
        b.push(b"overflow");
        assert_eq!(b.as_bytes(), b"ab007-42");
        assert!(b.as_cstr().is_none(), "no room for the NUL");
        let mut c = Buf::<16>::new();
        c.push_u64(0).push(b" ").push_u64(u64::MAX);
        assert_eq!(c.as_bytes(), b"0 18446744073709");
        let mut d = Buf::<8>::new();
        d.push(b"a/b");
        assert_eq!(d.as_cstr().unwrap().to_bytes(), b"a/b");
        d.push(b"\0");
        assert!(d.as_cstr().is_none());
    }

    #[test]
    fn numbers_parse_strictly() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"65535"), Some(65535));
        for bad in [&b""[..], b"-1", b" 1", b"1x", b"99999999999999999999"] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }
}
