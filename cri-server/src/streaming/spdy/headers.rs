//! SPDY/3 header blocks (the name/value blocks of SYN_STREAM, SYN_REPLY and
//! HEADERS frames).
//!
//! Uncompressed, a block is a big-endian `u32` pair count, then for each
//! pair a `u32`-length-prefixed name and a `u32`-length-prefixed value; a
//! header with several values carries them NUL-separated in one value.
//! Names are lower-case on the wire.
//!
//! On the wire every block is zlib-compressed with the dictionary the SPDY/3
//! specification defines (draft-mbelshe-httpbis-spdy-00, section 2.6.10.1
//! "Compression"). Each direction of a connection is ONE zlib stream for the
//! connection's whole life: the [`HeaderEncoder`] of one end and the
//! [`HeaderDecoder`] of the other share state, every block ends with a
//! `Z_SYNC_FLUSH`, and blocks must be handled in wire order. A block that
//! fails to decompress leaves the context unusable, so any error here is an
//! error for the whole connection.
//!
//! Limits (hostile peers): a block may decompress to at most
//! [`MAX_HEADER_BLOCK`] bytes and declare at most [`MAX_HEADER_PAIRS`] pairs.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::session::Headers;

/// Largest uncompressed header block accepted or produced.
pub const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Most name/value pairs a block may declare.
pub const MAX_HEADER_PAIRS: u32 = 4096;

/// Errors of header block coding. Any of them on the decoding side breaks
/// the connection's decompression context.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("header block: zlib: {0}")]
    Zlib(String),
    #[error("header block: the peer's zlib stream wants a dictionary other than SPDY/3's (adler32 {0:#010x})")]
    WrongDictionary(u32),
    #[error("header block: the peer ended its zlib stream")]
    StreamEnded,
    #[error("header block larger than {MAX_HEADER_BLOCK} bytes")]
    TooLarge,
    #[error("header block declares {0} pairs")]
    TooManyPairs(u32),
    #[error("header block truncated")]
    Truncated,
    #[error("header block has {0} bytes after its last pair")]
    Trailing(usize),
    #[error("header block has an empty header name")]
    EmptyName,
}

// ---------------------------------------------------------------------------
// The SPDY/3 dictionary.
// ---------------------------------------------------------------------------

/// The words of the dictionary's first part; each appears on the wire as a
/// big-endian `u32` length followed by the word.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's second part, raw text (status codes and phrases, dates,
/// common values), concatenated without separators.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412",
    "413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
    " 00:00:00",
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,",
    "publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

const fn dictionary_len() -> usize {
    let mut len = DICTIONARY_TAIL.len();
    let mut i = 0;
    while i < DICTIONARY_WORDS.len() {
        len += 4 + DICTIONARY_WORDS[i].len();
        i += 1;
    }
    len
}

const fn build_dictionary() -> [u8; dictionary_len()] {
    let mut out = [0u8; dictionary_len()];
    let mut at = 0;
    let mut i = 0;
    while i < DICTIONARY_WORDS.len() {
        let word = DICTIONARY_WORDS[i].as_bytes();
        let len = (word.len() as u32).to_be_bytes();
        let mut k = 0;
        while k < 4 {
            out[at] = len[k];
            at += 1;
            k += 1;
        }
        k = 0;
        while k < word.len() {
            out[at] = word[k];
            at += 1;
            k += 1;
        }
        i += 1;
    }
    let tail = DICTIONARY_TAIL.as_bytes();
    let mut k = 0;
    while k < tail.len() {
        out[at] = tail[k];
        at += 1;
        k += 1;
    }
    out
}

/// The SPDY/3 header compression dictionary (1423 bytes).
pub static DICTIONARY: [u8; dictionary_len()] = build_dictionary();

// ---------------------------------------------------------------------------
// Uncompressed blocks.
// ---------------------------------------------------------------------------

/// Serialises `headers` as an uncompressed block: names lower-cased, values
/// of repeated names joined with NUL into one pair (SPDY forbids a name
/// twice in a block), pairs in first-appearance order.
pub fn serialize(headers: &Headers) -> Result<Vec<u8>, HeaderError> {
    let pairs = merge_values(headers)?;
    let mut out = Vec::with_capacity(64);
    put_u32(&mut out, pairs.len())?;
    for (name, value) in &pairs {
        put_u32(&mut out, name.len())?;
        out.extend_from_slice(name.as_bytes());
        put_u32(&mut out, value.len())?;
        out.extend_from_slice(value.as_bytes());
        if out.len() > MAX_HEADER_BLOCK {
            return Err(HeaderError::TooLarge);
        }
    }
    Ok(out)
}

/// Groups the values of each (lower-cased) name, NUL-joined.
fn merge_values(headers: &Headers) -> Result<Vec<(String, String)>, HeaderError> {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if name.is_empty() {
            return Err(HeaderError::EmptyName);
        }
        let name = name.to_ascii_lowercase();
        match pairs.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push('\0');
                joined.push_str(value);
            }
            None => pairs.push((name, value.clone())),
        }
    }
    Ok(pairs)
}

fn put_u32(out: &mut Vec<u8>, n: usize) -> Result<(), HeaderError> {
    let n = u32::try_from(n).map_err(|_| HeaderError::TooLarge)?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Parses an uncompressed block. Names are lower-cased; a NUL-separated
/// value becomes one entry per value; invalid UTF-8 is replaced (lossy).
pub fn parse(block: &[u8]) -> Result<Headers, HeaderError> {
    let mut rest = block;
    let count = take_u32(&mut rest)?;
    // Every pair takes at least 8 bytes (two lengths): a count the block
    // cannot hold is refused before anything is allocated for it.
    if count > MAX_HEADER_PAIRS || count as usize > rest.len() / 8 {
        return Err(HeaderError::TooManyPairs(count));
    }
    let mut headers = Headers::with_capacity(count as usize);
    for _ in 0..count {
        let name = take_string(&mut rest)?;
        if name.is_empty() {
            return Err(HeaderError::EmptyName);
        }
        let name = name.to_ascii_lowercase();
        let value = take_string(&mut rest)?;
        for v in value.split('\0') {
            headers.push((name.clone(), v.to_owned()));
        }
    }
    if !rest.is_empty() {
        return Err(HeaderError::Trailing(rest.len()));
    }
    Ok(headers)
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, HeaderError> {
    let (head, tail) = rest.split_first_chunk::<4>().ok_or(HeaderError::Truncated)?;
    *rest = tail;
    Ok(u32::from_be_bytes(*head))
}

fn take_string(rest: &mut &[u8]) -> Result<String, HeaderError> {
    let len = take_u32(rest)? as usize;
    if len > rest.len() {
        return Err(HeaderError::Truncated);
    }
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

// ---------------------------------------------------------------------------
// Compression contexts.
// ---------------------------------------------------------------------------

/// The sending side's compression context: one per connection.
pub struct HeaderEncoder {
    zlib: Compress,
}

impl std::fmt::Debug for HeaderEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderEncoder")
            .field("total_in", &self.zlib.total_in())
            .finish()
    }
}

impl HeaderEncoder {
    pub fn new() -> Result<HeaderEncoder, HeaderError> {
        let mut zlib = Compress::new(Compression::best(), true);
        zlib.set_dictionary(&DICTIONARY)
            .map_err(|e| HeaderError::Zlib(e.to_string()))?;
        Ok(HeaderEncoder { zlib })
    }

    /// Serialises and compresses `headers` as the next block of this
    /// connection (ends with a sync flush).
    pub fn encode(&mut self, headers: &Headers) -> Result<Vec<u8>, HeaderError> {
        let raw = serialize(headers)?;
        self.compress(&raw)
    }

    fn compress(&mut self, raw: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.zlib.total_in();
            self.zlib
                .compress_vec(&raw[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Zlib(e.to_string()))?;
            pos += (self.zlib.total_in() - before) as usize;
            // Flushed when all input is taken and zlib left output room.
            if pos == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's decompression context: one per connection.
pub struct HeaderDecoder {
    zlib: Decompress,
}

impl std::fmt::Debug for HeaderDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecoder")
            .field("total_in", &self.zlib.total_in())
            .finish()
    }
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecoder {
    pub fn new() -> HeaderDecoder {
        HeaderDecoder {
            zlib: Decompress::new(true),
        }
    }

    /// Decompresses the connection's next block and parses it.
    pub fn decode(&mut self, compressed: &[u8]) -> Result<Headers, HeaderError> {
        if compressed.is_empty() {
            // Not a block at all; zlib state untouched.
            return Ok(Headers::new());
        }
        let raw = self.decompress(compressed)?;
        parse(&raw)
    }

    fn decompress(&mut self, input: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let mut out = Vec::with_capacity((input.len() * 4).clamp(256, 64 * 1024));
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() > MAX_HEADER_BLOCK {
                    return Err(HeaderError::TooLarge);
                }
                let room = out.capacity().min(MAX_HEADER_BLOCK + 1 - out.len());
                out.reserve_exact(room.max(1));
            }
            let (before_in, before_out) = (self.zlib.total_in(), self.zlib.total_out());
            let step = self.step(&input[pos..], &mut out)?;
            pos += (self.zlib.total_in() - before_in) as usize;
            let progressed = self.zlib.total_in() != before_in || self.zlib.total_out() != before_out;
            if out.len() > MAX_HEADER_BLOCK {
                return Err(HeaderError::TooLarge);
            }
            match step {
                Step::StreamEnd => return Err(HeaderError::StreamEnded),
                Step::Dictionary => continue,
                Step::Inflated => {}
            }
            if pos == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if !progressed {
                // Input left, output room, nothing moved: the block does
                // not end at a complete flush point.
                return Err(HeaderError::Truncated);
            }
        }
    }

    /// One inflate call; supplies the dictionary when zlib asks for it.
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Step, HeaderError> {
        match self.zlib.decompress_vec(input, out, FlushDecompress::Sync) {
            Ok(Status::StreamEnd) => Ok(Step::StreamEnd),
            Ok(_) => Ok(Step::Inflated),
            Err(e) => match e.needs_dictionary() {
                Some(adler) => {
                    self.zlib
                        .set_dictionary(&DICTIONARY)
                        .map_err(|_| HeaderError::WrongDictionary(adler))?;
                    Ok(Step::Dictionary)
                }
                None => Err(HeaderError::Zlib(e.to_string())),
            },
        }
    }
}

/// What one inflate call did.
enum Step {
    Inflated,
    /// zlib asked for the dictionary and got it; call again.
    Dictionary,
    StreamEnd,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn dictionary_has_the_spec_shape() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(DICTIONARY.ends_with(b",*,enq=0."));
        // The zlib DICTID that spdystream's framer writes in its first
        // header block (bytes 2..6 of the block in the Go fixture).
        let mut z = flate2::Decompress::new(true);
        let mut out = Vec::with_capacity(16);
        let err = z
            .decompress_vec(&[0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2], &mut out, FlushDecompress::Sync)
            .unwrap_err();
        assert_eq!(err.needs_dictionary(), Some(0xe3c6_a7c2));
        assert_eq!(z.set_dictionary(&DICTIONARY).unwrap(), 0xe3c6_a7c2);
    }

    #[test]
    fn raw_block_round_trip_merges_and_splits_values() {
        let headers = h(&[("StreamType", "error"), ("x", "1"), ("x", "2"), ("e", "")]);
        let raw = serialize(&headers).unwrap();
        // 3 pairs: "streamtype", "x" (value "1\02"), "e".
        assert_eq!(&raw[..4], &[0, 0, 0, 3]);
        assert_eq!(
            parse(&raw).unwrap(),
            h(&[("streamtype", "error"), ("x", "1"), ("x", "2"), ("e", "")])
        );
    }

    #[test]
    fn compressed_blocks_share_one_context() {
        let mut enc = HeaderEncoder::new().unwrap();
        let mut dec = HeaderDecoder::new();
        let first = h(&[("streamtype", "stdout"), ("port", "80")]);
        let a = enc.encode(&first).unwrap();
        let b = enc.encode(&first).unwrap();
        // The second block refers back into the shared window.
        assert!(b.len() < a.len(), "{} !< {}", b.len(), a.len());
        assert_eq!(dec.decode(&a).unwrap(), first);
        assert_eq!(dec.decode(&b).unwrap(), first);
        assert_eq!(dec.decode(&enc.encode(&Headers::new()).unwrap()).unwrap(), vec![]);
        // A block decoded out of order by a fresh context fails cleanly.
        assert!(HeaderDecoder::new().decode(&b).is_err());
    }

    #[test]
    fn hostile_blocks_are_errors() {
        // Absurd count.
        assert!(matches!(
            parse(&[0xff, 0xff, 0xff, 0xff]),
            Err(HeaderError::TooManyPairs(_))
        ));
        // Count that the bytes cannot hold.
        assert!(parse(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Name length past the end.
        assert!(matches!(
            parse(&[0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::Truncated)
        ));
        assert!(matches!(
            parse(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::EmptyName)
        ));
        assert!(parse(&[0, 0]).is_err());
        // Not zlib at all.
        assert!(HeaderDecoder::new().decode(b"not zlib at all").is_err());
        // zlib with another dictionary.
        let mut other = Compress::new(Compression::best(), true);
        other.set_dictionary(b"some other dictionary").unwrap();
        let mut out = Vec::with_capacity(256);
        other
            .compress_vec(&[0, 0, 0, 0], &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(matches!(
            HeaderDecoder::new().decode(&out),
            Err(HeaderError::WrongDictionary(_))
        ));
        // A truncated block.
        let mut enc = HeaderEncoder::new().unwrap();
        let block = enc
            .encode(&h(&[("streamtype", "stdout"), ("port", "8080"), ("requestid", "1")]))
            .unwrap();
        assert!(HeaderDecoder::new().decode(&block[..block.len() / 2]).is_err());
    }

    #[test]
    fn zip_bomb_is_refused() {
        // 4 MiB of zeros compresses to a few KiB; the decoder must stop at
        // its limit instead of inflating it all.
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(&DICTIONARY).unwrap();
        let zeros = vec![0u8; 4 << 20];
        let mut out = Vec::with_capacity(64 << 10);
        z.compress_vec(&zeros, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.len() < 64 << 10);
        assert!(matches!(HeaderDecoder::new().decode(&out), Err(HeaderError::TooLarge)));
    }
}
