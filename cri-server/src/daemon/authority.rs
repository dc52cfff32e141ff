//! gRPC clients built on grpc-core (Python `grpcio`, C++, Ruby) and
//! grpc-java send the unix socket path as the HTTP/2 `:authority`
//! (`tmp%2Fberth.sock`, or raw with slashes). The HTTP/2 server under tonic
//! refuses such an authority with RST_STREAM PROTOCOL_ERROR, so those
//! clients could not call berthd at all; grpc-go (kubelet, crictl) sends
//! `localhost` and works.
//!
//! [`AuthorityFix`] sits between the accepted socket and the HTTP/2 server
//! and reads the client's byte stream frame by frame until the first header
//! block:
//! - its `:authority` is valid (or absent): the connection is passed
//!   through untouched from then on (grpc-go; nothing is decoded again);
//! - it is not: every header block of the connection is decoded with the
//!   client's HPACK table and encoded again with a table of this adapter's
//!   own, which the server's decoder mirrors, with `:authority: localhost`.
//!   Frames other than HEADERS/CONTINUATION are copied as they come.
//!
//! The server-to-client direction is never touched. A header block larger
//! than [`MAX_HEADER_BLOCK`] or one that does not decode ends the
//! connection (the server would refuse it too).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Largest frame payload written (the HTTP/2 default every server accepts).
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// Largest header block accepted for rewriting.
pub const MAX_HEADER_BLOCK: usize = 1 << 20;
/// The authority put in place of an invalid one.
const REPLACEMENT: &[u8] = b"localhost";

enum Mode {
    /// The preface, then frames up to the first complete header block.
    Deciding,
    /// Every header block is rewritten.
    Rewriting {
        decoder: Box<fluke_hpack::Decoder<'static>>,
        encoder: Box<fluke_hpack::Encoder<'static>>,
    },
    /// Bytes go through as they are.
    PassThrough,
}

/// A header block being gathered from HEADERS + CONTINUATION frames.
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: BytesMut,
    /// The frames as received, for the pass-through decision.
    raw: BytesMut,
}

/// The adapter over one accepted connection (see the module doc).
pub struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    preface_left: usize,
    /// Bytes read from the client, not yet processed.
    input: BytesMut,
    /// Bytes processed, not yet handed to the server.
    output: BytesMut,
    /// Payload bytes of a non-header frame still to be copied as they come.
    copy_left: usize,
    block: Option<PendingBlock>,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> AuthorityFix<S> {
        AuthorityFix {
            inner,
            mode: Mode::Deciding,
            preface_left: PREFACE.len(),
            input: BytesMut::with_capacity(16 * 1024),
            output: BytesMut::new(),
            copy_left: 0,
            block: None,
            eof: false,
        }
    }

    /// Moves what can be processed from `input` to `output`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            if matches!(self.mode, Mode::PassThrough) {
                let all = self.input.split();
                self.output.unsplit(all);
                return Ok(());
            }
            if self.preface_left > 0 {
                let n = self.preface_left.min(self.input.len());
                let offset = PREFACE.len() - self.preface_left;
                if self.input[..n] != PREFACE[offset..offset + n] {
                    // Not HTTP/2 (or not a client): let the server answer it.
                    self.mode = Mode::PassThrough;
                    continue;
                }
                let bytes = self.input.split_to(n);
                self.output.unsplit(bytes);
                self.preface_left -= n;
                if self.preface_left > 0 {
                    return Ok(());
                }
                continue;
            }
            if self.copy_left > 0 {
                let n = self.copy_left.min(self.input.len());
                if n == 0 {
                    return Ok(());
                }
                let bytes = self.input.split_to(n);
                self.output.unsplit(bytes);
                self.copy_left -= n;
                continue;
            }
            if self.input.len() < FRAME_HEADER {
                return Ok(());
            }
            let len = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
            let kind = self.input[3];
            if kind != TYPE_HEADERS && kind != TYPE_CONTINUATION {
                if self.block.is_some() {
                    return Err(bad("a frame interleaved with a header block"));
                }
                let header = self.input.split_to(FRAME_HEADER);
                self.output.unsplit(header);
                self.copy_left = len;
                continue;
            }
            if self.input.len() < FRAME_HEADER + len {
                if FRAME_HEADER + len > MAX_HEADER_BLOCK {
                    return Err(bad("header frame too large"));
                }
                return Ok(());
            }
            let frame = self.input.split_to(FRAME_HEADER + len);
            self.header_frame(frame)?;
        }
    }

    /// Adds one HEADERS or CONTINUATION frame to the pending block and
    /// handles the block once complete.
    fn header_frame(&mut self, frame: BytesMut) -> io::Result<()> {
        let kind = frame[3];
        let flags = frame[4];
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let mut payload = &frame[FRAME_HEADER..];
        match (kind, self.block.as_mut()) {
            (TYPE_HEADERS, None) => {
                let mut pad = 0usize;
                if flags & FLAG_PADDED != 0 {
                    pad = *payload
                        .first()
                        .ok_or_else(|| bad("padded frame without a pad length"))? as usize;
                    payload = &payload[1..];
                }
                let mut priority = None;
                if flags & FLAG_PRIORITY != 0 {
                    if payload.len() < 5 {
                        return Err(bad("priority fields cut short"));
                    }
                    priority = Some(<[u8; 5]>::try_from(&payload[..5]).expect("five bytes"));
                    payload = &payload[5..];
                }
                if pad > payload.len() {
                    return Err(bad("padding longer than the frame"));
                }
                let fragment = &payload[..payload.len() - pad];
                self.block = Some(PendingBlock {
                    stream_id,
                    end_stream: flags & FLAG_END_STREAM != 0,
                    priority,
                    fragment: BytesMut::from(fragment),
                    raw: frame.clone(),
                });
            }
            (TYPE_CONTINUATION, Some(block)) if block.stream_id == stream_id => {
                block.fragment.extend_from_slice(payload);
                block.raw.extend_from_slice(&frame);
            }
            _ => return Err(bad("CONTINUATION out of place")),
        }
        let block = self.block.as_ref().expect("a block is pending");
        if block.fragment.len() > MAX_HEADER_BLOCK {
            return Err(bad("header block too large"));
        }
        if flags & FLAG_END_HEADERS == 0 {
            return Ok(());
        }
        let block = self.block.take().expect("a block is pending");
        self.finish_block(block)
    }

    fn finish_block(&mut self, block: PendingBlock) -> io::Result<()> {
        if matches!(self.mode, Mode::Deciding) {
            let mut decoder = Box::new(fluke_hpack::Decoder::new());
            let headers = decoder
                .decode(&block.fragment)
                .map_err(|e| bad(&format!("header block does not decode: {e:?}")))?;
            let needs_fix = headers
                .iter()
                .any(|(name, value)| name == b":authority" && !valid_authority(value));
            if !needs_fix {
                self.output.unsplit(block.raw);
                self.mode = Mode::PassThrough;
                return Ok(());
            }
            tracing::debug!("client sends an invalid :authority (a grpc-core client on a unix socket): rewriting it");
            self.mode = Mode::Rewriting {
                decoder,
                encoder: Box::new(fluke_hpack::Encoder::new()),
            };
            let Mode::Rewriting { encoder, .. } = &mut self.mode else {
                unreachable!("just set")
            };
            let encoded = reencode(encoder, &headers);
            write_block(&mut self.output, &block, &encoded);
            return Ok(());
        }
        let Mode::Rewriting { decoder, encoder } = &mut self.mode else {
            unreachable!("blocks are only gathered while deciding or rewriting")
        };
        let headers = decoder
            .decode(&block.fragment)
            .map_err(|e| bad(&format!("header block does not decode: {e:?}")))?;
        let encoded = reencode(encoder, &headers);
        write_block(&mut self.output, &block, &encoded);
        Ok(())
    }
}

/// True when the HTTP/2 server takes `value` as an authority.
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// The headers again, `:authority` made valid, with `encoder`'s table.
fn reencode(encoder: &mut fluke_hpack::Encoder<'static>, headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let fixed = headers.iter().map(|(name, value)| {
        if name == b":authority" && !valid_authority(value) {
            (name.as_slice(), REPLACEMENT)
        } else {
            (name.as_slice(), value.as_slice())
        }
    });
    encoder.encode(fixed)
}

/// Writes `encoded` as a HEADERS frame (+ CONTINUATIONs) for `block`'s stream.
fn write_block(out: &mut BytesMut, block: &PendingBlock, encoded: &[u8]) {
    let prefix = if block.priority.is_some() { 5 } else { 0 };
    let first = encoded.len().min(MAX_FRAME_PAYLOAD - prefix);
    let (head, mut rest) = encoded.split_at(first);
    let mut flags = 0;
    if block.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    frame_header(out, prefix + head.len(), TYPE_HEADERS, flags, block.stream_id);
    if let Some(p) = block.priority {
        out.put_slice(&p);
    }
    out.put_slice(head);
    while !rest.is_empty() {
        let n = rest.len().min(MAX_FRAME_PAYLOAD);
        let (chunk, tail) = rest.split_at(n);
        let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
        frame_header(out, n, TYPE_CONTINUATION, flags, block.stream_id);
        out.put_slice(chunk);
        rest = tail;
    }
}

fn frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    out.put_slice(&(len as u32).to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id & 0x7fff_ffff);
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2 from client: {why}"))
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if matches!(this.mode, Mode::PassThrough) && this.input.is_empty() {
                // Nothing held back any more: read straight into the caller's buffer.
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
                // What is left unprocessed (a cut frame) goes to the server as is.
                let rest = this.input.split();
                this.output.unsplit(rest);
                continue;
            }
            this.input.extend_from_slice(rb.filled());
            this.process()?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for AuthorityFix<tokio::net::UnixStream> {
    type ConnectInfo = tonic::transport::server::UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn headers_frame(stream_id: u32, block: &[u8], flags: u8) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame_header(&mut out, block.len(), TYPE_HEADERS, flags, stream_id);
        out.put_slice(block);
        out.to_vec()
    }

    fn request(authority: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":path".to_vec(), b"/runtime.v1.RuntimeService/Version".to_vec()),
            (b":authority".to_vec(), authority.to_vec()),
            (b"content-type".to_vec(), b"application/grpc".to_vec()),
        ]
    }

    fn encode(enc: &mut fluke_hpack::Encoder<'static>, h: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        enc.encode(h.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
    }

    /// Feeds `input` through the adapter (in `chunk`-sized reads) and
    /// returns what the server would read.
    async fn through(input: Vec<u8>, chunk: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move {
            for piece in input.chunks(chunk) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut fix = AuthorityFix::new(server);
        writer.await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 1000];
        // The client end is dropped: read to EOF.
        loop {
            let n = fix.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// Splits the server's view into (preface, [(type, flags, stream, payload)]).
    fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert!(bytes.starts_with(PREFACE));
        let mut rest = &bytes[PREFACE.len()..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            out.push((rest[3], rest[4], stream, rest[9..9 + len].to_vec()));
            rest = &rest[9 + len..];
        }
        out
    }

    #[tokio::test]
    async fn a_valid_authority_passes_the_connection_through_untouched() {
        let mut enc = fluke_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        // SETTINGS (empty), then two requests.
        input.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        input.extend(headers_frame(
            1,
            &encode(&mut enc, &request(b"localhost")),
            FLAG_END_HEADERS,
        ));
        input.extend(headers_frame(
            3,
            &encode(&mut enc, &request(b"localhost")),
            FLAG_END_HEADERS,
        ));
        for chunk in [1, 7, 4096] {
            assert_eq!(through(input.clone(), chunk).await, input, "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn a_socket_path_authority_becomes_localhost_on_every_request() {
        let mut enc = fluke_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        input.extend(headers_frame(
            1,
            &encode(&mut enc, &request(b"tmp%2Fberth.sock")),
            FLAG_END_HEADERS,
        ));
        // A DATA frame between, then a second request whose authority is
        // an index into the client's dynamic table.
        input.extend_from_slice(&[0, 0, 5, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
        input.extend(headers_frame(
            3,
            &encode(&mut enc, &request(b"tmp%2Fberth.sock")),
            FLAG_END_HEADERS | FLAG_END_STREAM,
        ));
        for chunk in [1, 3, 4096] {
            let out = through(input.clone(), chunk).await;
            let frames = frames(&out);
            let kinds: Vec<u8> = frames.iter().map(|f| f.0).collect();
            assert_eq!(kinds, vec![4, TYPE_HEADERS, 0, TYPE_HEADERS], "chunk {chunk}");
            // The server's decoder sees localhost both times.
            let mut dec = fluke_hpack::Decoder::new();
            for (i, f) in frames.iter().filter(|f| f.0 == TYPE_HEADERS).enumerate() {
                let h = dec.decode(&f.3).unwrap();
                let auth = h.iter().find(|(n, _)| n == b":authority").unwrap();
                assert_eq!(auth.1, b"localhost", "request {i}");
                assert!(h.iter().any(|(n, v)| n == b":path" && v.starts_with(b"/runtime.v1")));
            }
            assert_eq!(frames[3].1 & FLAG_END_STREAM, FLAG_END_STREAM);
            assert_eq!(frames[2].3, vec![0, 0, 0, 0, 0], "DATA is copied");
        }
    }

    #[tokio::test]
    async fn continuation_padding_and_priority_are_handled() {
        let mut enc = fluke_hpack::Encoder::new();
        let block = encode(&mut enc, &request(b"/run/berth/berth.sock"));
        let (a, b) = block.split_at(block.len() / 2);
        // HEADERS with padding and priority, then a CONTINUATION.
        let mut payload = vec![3u8];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        let mut h = BytesMut::new();
        frame_header(&mut h, payload.len(), TYPE_HEADERS, FLAG_PADDED | FLAG_PRIORITY, 1);
        input.extend_from_slice(&h);
        input.extend_from_slice(&payload);
        let mut c = BytesMut::new();
        frame_header(&mut c, b.len(), TYPE_CONTINUATION, FLAG_END_HEADERS, 1);
        input.extend_from_slice(&c);
        input.extend_from_slice(b);
        let out = through(input, 5).await;
        let frames = frames(&out);
        assert_eq!(frames.len(), 1);
        let (kind, flags, stream, payload) = &frames[0];
        assert_eq!((*kind, *stream), (TYPE_HEADERS, 1));
        assert_eq!(
            flags & (FLAG_PRIORITY | FLAG_END_HEADERS),
            FLAG_PRIORITY | FLAG_END_HEADERS
        );
        assert_eq!(&payload[..5], &[0, 0, 0, 0, 16]);
        let h = fluke_hpack::Decoder::new().decode(&payload[5..]).unwrap();
        assert!(h.iter().any(|(n, v)| n == b":authority" && v == b"localhost"));
    }

    #[tokio::test]
    async fn garbage_is_refused_not_panicked_on() {
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(1, &[0xff, 0xff, 0xff, 0xff, 0xff], FLAG_END_HEADERS));
        let (mut client, server) = tokio::io::duplex(1 << 16);
        client.write_all(&input).await.unwrap();
        drop(client);
        let mut fix = AuthorityFix::new(server);
        let mut out = Vec::new();
        let err = fix.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // Not HTTP/2 at all: passed through for the server to answer.
        assert_eq!(
            through(b"GET / HTTP/1.1\r\n\r\n".to_vec(), 3).await,
            b"GET / HTTP/1.1\r\n\r\n"
        );
    }
}
