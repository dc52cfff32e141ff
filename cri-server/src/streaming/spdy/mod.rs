//! SPDY/3.1 as the kubelet, crictl and kubectl speak it (through
//! `github.com/moby/spdystream`) after an HTTP `Upgrade: SPDY/3.1`.
//!
//! ```text
//!  io ──▶ reader task ── FrameDecoder (zlib ctx, peer→us) ──▶ per-stream
//!                         │                                  bounded queues
//!                         └─ SYN_STREAM ──▶ SYN_REPLY + Stream on the
//!                                           accept channel
//!  StreamWriter / control ──▶ bounded out queue ──▶ writer task ──
//!                              FrameEncoder (zlib ctx, us→peer) ──▶ io
//! ```
//!
//! - [`frame`]: the SPDY/3 frame codec.
//! - [`headers`]: header blocks, zlib with the SPDY/3 dictionary, one
//!   compression context per direction per connection.
//! - [`session`]: the connection: streams, their readers and writers,
//!   PING, GOAWAY, backpressure, teardown.
//!
//! As in spdystream, there is no flow control (WINDOW_UPDATE and SETTINGS
//! are read and ignored): backpressure is TCP's.

pub mod frame;
pub mod headers;
pub mod session;

pub use session::{header, Headers, Role, Session, SessionError, Stream, StreamReader, StreamWriter};
