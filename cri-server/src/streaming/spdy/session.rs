//! A SPDY/3.1 connection: streams over one byte stream.
//!
//! [`Session::start`] splits the connection's io and spawns two tokio tasks:
//!
//! - the **reader** decodes frames and dispatches them: a peer's SYN_STREAM
//!   is answered at once with an empty SYN_REPLY (what the Kubernetes server
//!   side does; spdystream drops DATA for streams it has no reply for) and
//!   the [`Stream`] goes to the accept channel; DATA goes to the stream's
//!   bounded queue (the reader waits when it is full: TCP backpressure; a
//!   dropped [`StreamReader`]'s data is discarded); PING is echoed; RST_STREAM
//!   and FIN end the stream's reading side; GOAWAY stops new streams and ends
//!   the session once the open streams are done.
//! - the **writer** encodes frames from the out queue, batching small ones,
//!   and on shutdown writes what was queued, then GOAWAY, then shuts the io
//!   down (bounded by [`CLOSE_GRACE`]).
//!
//! The out queue is unbounded as a channel but bounded by a semaphore of
//! [`OUT_QUEUE_FRAMES`] permits that DATA frames and the reader's control
//! frames must take, so a peer that never reads makes writers wait instead
//! of buffering without bound. Only frames the API must send without
//! waiting (a reset, the FIN of a dropped writer) skip the budget; there is
//! at most one of each per stream.
//!
//! When the connection ends (peer closed, I/O or protocol error, GOAWAY
//! handled, or [`Session::close`]), every stream's reader sees EOF after
//! the data already queued for it, writers fail with `BrokenPipe`, pending
//! opens and pings fail with [`SessionError::Closed`], and both tasks end,
//! dropping the io; then [`Session::closed`] resolves.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, PollSemaphore};
use tracing::{debug, trace, Instrument};

use super::frame::{goaway, Frame, FrameDecoder, FrameEncoder, FrameError, RstStatus, FLAG_FIN, FLAG_UNIDIRECTIONAL};
use super::headers::{self, HeaderError};

/// Header name/value pairs, names lower-case as on the wire. A header with
/// several values appears once per value.
pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (case-insensitive).
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Largest DATA frame a [`StreamWriter`] sends (larger writes are split).
pub const MAX_WRITE_FRAME: usize = 32 << 10;
/// Frames that may wait in the out queue (DATA of at most
/// [`MAX_WRITE_FRAME`], so at most 512 KiB of data).
pub const OUT_QUEUE_FRAMES: usize = 16;
/// DATA pieces (of at most [`super::frame::DATA_PIECE`]) queued per stream
/// before the reader task waits for the stream's reader.
pub const STREAM_QUEUE_PIECES: usize = 8;
/// Accepted streams waiting for the application.
pub const ACCEPT_QUEUE: usize = 32;
/// Open streams per connection; more are refused (REFUSED_STREAM).
pub const MAX_STREAMS: usize = 1024;
/// How long the writer may take, once the session ends, to write what was
/// queued and the GOAWAY.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);

const MAX_STREAM_ID: u32 = 0x7fff_ffff;
const WRITE_BATCH: usize = 64 << 10;
const READ_CHUNK: usize = 16 << 10;
/// Stream ids reset lately, whose in-flight DATA is dropped silently.
const RECENTLY_RESET: usize = 128;

/// Which end of the connection this is: the server opens even stream ids,
/// the client odd ones (and the same for PING ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    fn first_id(self) -> u32 {
        match self {
            Role::Server => 2,
            Role::Client => 1,
        }
    }

    /// Whether this end chose `id` (a stream or ping id).
    fn is_local(self, id: u32) -> bool {
        (id % 2 == 1) == (self == Role::Client)
    }
}

/// Errors of [`Session`] operations.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the SPDY connection is closed")]
    Closed,
    #[error("the peer sent GOAWAY: no new streams on this connection")]
    GoingAway,
    #[error("stream {id} reset by the peer ({status})")]
    Reset { id: u32, status: RstStatus },
    #[error("no stream ids left on this connection")]
    StreamIdsExhausted,
    #[error("SPDY protocol error: {0}")]
    Protocol(&'static str),
    #[error(transparent)]
    Headers(#[from] HeaderError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("SPDY connection i/o: {0}")]
    Io(#[from] io::Error),
}

fn broken_pipe(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, what)
}

// ---------------------------------------------------------------------------
// Shared state.
// ---------------------------------------------------------------------------

/// A frame on its way to the writer task, with the budget permit it holds
/// until written.
struct Outgoing {
    frame: Frame,
    permit: Option<OwnedSemaphorePermit>,
}

/// What the session handles, streams and both tasks share.
struct Shared {
    role: Role,
    out: mpsc::UnboundedSender<Outgoing>,
    /// Bounds the out queue (see the module doc).
    budget: Arc<Semaphore>,
    state: Mutex<State>,
    /// Cancelled when the session starts ending.
    shutdown: CancellationToken,
    /// Cancelled when both tasks have ended and dropped the io.
    ended: CancellationToken,
    tasks: AtomicUsize,
}

struct State {
    streams: HashMap<u32, StreamState>,
    next_stream_id: u32,
    next_ping_id: u32,
    /// Highest stream id the peer opened (ids must grow).
    last_peer_stream_id: u32,
    /// Highest stream id of the peer's that was accepted (for GOAWAY).
    last_accepted_stream_id: u32,
    pings: HashMap<u32, oneshot::Sender<()>>,
    recently_reset: VecDeque<u32>,
    peer_going_away: bool,
    /// Set once when the session starts ending: nothing more is queued.
    closing: bool,
    goaway_status: u32,
}

struct StreamState {
    /// To the stream's reader; `None` once the peer finished or the reader
    /// is gone.
    data_tx: Option<mpsc::Sender<Bytes>>,
    remote_fin: bool,
    local_fin: bool,
    /// A stream this end opened, waiting for its SYN_REPLY.
    reply: Option<oneshot::Sender<Result<(), SessionError>>>,
}

impl State {
    fn new(role: Role) -> State {
        State {
            streams: HashMap::new(),
            next_stream_id: role.first_id(),
            next_ping_id: role.first_id(),
            last_peer_stream_id: 0,
            last_accepted_stream_id: 0,
            pings: HashMap::new(),
            recently_reset: VecDeque::with_capacity(RECENTLY_RESET),
            peer_going_away: false,
            closing: false,
            goaway_status: goaway::OK,
        }
    }

    /// Removes a stream that was reset (either way); its reader sees EOF,
    /// a pending open gets `err`.
    fn remove_reset(&mut self, id: u32, err: impl FnOnce() -> SessionError) -> bool {
        if self.recently_reset.len() == RECENTLY_RESET {
            self.recently_reset.pop_front();
        }
        self.recently_reset.push_back(id);
        match self.streams.remove(&id) {
            Some(s) => {
                if let Some(reply) = s.reply {
                    let _ = reply.send(Err(err()));
                }
                true
            }
            None => false,
        }
    }

    /// The peer finished its side of `id`; removes the stream when both
    /// sides are done.
    fn remote_finished(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.remote_fin = true;
            s.data_tx = None;
            if s.local_fin {
                self.streams.remove(&id);
            }
        }
    }

    /// After GOAWAY from the peer, the session ends with its last stream.
    fn should_end(&self) -> bool {
        self.peer_going_away && self.streams.is_empty() && !self.closing
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent in
        // a way that matters more than stopping would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame` unless the session is ending. Called with the state
    /// locked, so queue order matches the state changes.
    fn queue(&self, st: &State, frame: Frame, permit: Option<OwnedSemaphorePermit>) -> bool {
        if st.closing {
            return false;
        }
        trace!(frame = frame.name(), "spdy: queued");
        self.out.send(Outgoing { frame, permit }).is_ok()
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, SessionError> {
        Arc::clone(&self.budget)
            .acquire_owned()
            .await
            .map_err(|_| SessionError::Closed)
    }

    /// Starts ending the session (idempotent): nothing more is queued,
    /// readers see EOF, opens and pings fail, the writer sends what was
    /// queued and a GOAWAY with `status`, and both tasks stop.
    fn teardown(&self, status: u32, why: &str) {
        let (streams, pings) = {
            let mut st = self.state();
            if !st.closing {
                debug!(why, status, streams = st.streams.len(), "spdy: session ending");
                st.closing = true;
                st.goaway_status = status;
            }
            (std::mem::take(&mut st.streams), std::mem::take(&mut st.pings))
        };
        drop((streams, pings));
        self.budget.close();
        self.shutdown.cancel();
    }

    fn end_if_done(&self, end: bool) {
        if end {
            self.teardown(goaway::OK, "peer went away and its last stream ended");
        }
    }

    /// This end resets stream `id` (RST_STREAM `status`), if it is open.
    fn reset_stream(&self, id: u32, status: RstStatus) {
        let end = {
            let mut st = self.state();
            if st.streams.contains_key(&id) {
                debug!(id, %status, "spdy: resetting stream");
                st.remove_reset(id, || SessionError::Closed);
                self.queue(&st, Frame::RstStream { stream_id: id, status }, None);
            }
            st.should_end()
        };
        self.end_if_done(end);
    }

    /// Fails fast when stream `id` cannot be written to.
    fn check_writable(&self, id: u32) -> io::Result<()> {
        let st = self.state();
        writable(&st, id)
    }

    fn send_data(&self, id: u32, data: Bytes, permit: OwnedSemaphorePermit) -> io::Result<()> {
        let st = self.state();
        writable(&st, id)?;
        let frame = Frame::Data {
            stream_id: id,
            flags: 0,
            data,
        };
        if self.queue(&st, frame, Some(permit)) {
            Ok(())
        } else {
            Err(broken_pipe("SPDY connection closed"))
        }
    }

    /// Sends this end's FIN on `id` (an empty DATA frame with FLAG_FIN).
    fn finish_local(&self, id: u32, permit: Option<OwnedSemaphorePermit>) -> io::Result<()> {
        let end = {
            let mut st = self.state();
            writable(&st, id)?;
            let frame = Frame::Data {
                stream_id: id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            };
            if !self.queue(&st, frame, permit) {
                return Err(broken_pipe("SPDY connection closed"));
            }
            if let Some(s) = st.streams.get_mut(&id) {
                s.local_fin = true;
                if s.remote_fin {
                    st.streams.remove(&id);
                }
            }
            st.should_end()
        };
        self.end_if_done(end);
        Ok(())
    }
}

fn writable(st: &State, id: u32) -> io::Result<()> {
    if st.closing {
        return Err(broken_pipe("SPDY connection closed"));
    }
    match st.streams.get(&id) {
        Some(s) if !s.local_fin => Ok(()),
        Some(_) => Err(broken_pipe("SPDY stream already finished")),
        None => Err(broken_pipe("SPDY stream reset or closed")),
    }
}

/// Counts a task's end; the last one marks the session ended.
struct TaskDone(Arc<Shared>);

impl Drop for TaskDone {
    fn drop(&mut self) {
        if self.0.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            debug!("spdy: connection ended");
            self.0.ended.cancel();
        }
    }
}

// ---------------------------------------------------------------------------
// The public handle.
// ---------------------------------------------------------------------------

/// A SPDY connection (a cheap, cloneable handle). The connection lives
/// until the peer closes it, an error, a handled GOAWAY, or [`close`]
/// (dropping every handle does not close it).
///
/// [`close`]: Session::close
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.shared.role)
            .field("ending", &self.shared.shutdown.is_cancelled())
            .finish()
    }
}

impl Session {
    /// Starts the connection over `io` (reader task + writer task on tokio;
    /// call from within a runtime). Streams the peer opens arrive on the
    /// receiver; each is answered at once with an empty SYN_REPLY (what the
    /// k8s server side does; spdystream clients drop DATA on streams that
    /// have no reply yet). Drop the receiver to refuse further streams
    /// (RST_STREAM REFUSED_STREAM).
    pub fn start<IO: AsyncRead + AsyncWrite + Send + 'static>(io: IO, role: Role) -> (Session, mpsc::Receiver<Stream>) {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            role,
            out: out_tx,
            budget: Arc::new(Semaphore::new(OUT_QUEUE_FRAMES)),
            state: Mutex::new(State::new(role)),
            shutdown: CancellationToken::new(),
            ended: CancellationToken::new(),
            tasks: AtomicUsize::new(2),
        });
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_QUEUE);
        let (r, w) = tokio::io::split(io);
        let span = tracing::debug_span!("spdy", ?role);
        tokio::spawn(reader_task(Arc::clone(&shared), r, accept_tx).instrument(span.clone()));
        tokio::spawn(writer_task(Arc::clone(&shared), w, out_rx).instrument(span));
        (Session { shared }, accept_rx)
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// Opens a stream (SYN_STREAM with `headers`) and waits for the peer's
    /// SYN_REPLY. Fails with [`SessionError::Reset`] if the peer refuses it,
    /// [`SessionError::GoingAway`] after the peer's GOAWAY,
    /// [`SessionError::Closed`] when the connection ends first. Dropping the
    /// future before the reply resets the stream.
    pub async fn open_stream(&self, headers: Headers) -> Result<Stream, SessionError> {
        // Refuse here what the writer task could not encode.
        headers::serialize(&headers)?;
        let permit = self.shared.permit().await?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let (data_tx, data_rx) = mpsc::channel(STREAM_QUEUE_PIECES);
        let id = {
            let mut st = self.shared.state();
            if st.closing {
                return Err(SessionError::Closed);
            }
            if st.peer_going_away {
                return Err(SessionError::GoingAway);
            }
            let id = st.next_stream_id;
            if id > MAX_STREAM_ID {
                return Err(SessionError::StreamIdsExhausted);
            }
            st.next_stream_id += 2;
            st.streams.insert(
                id,
                StreamState {
                    data_tx: Some(data_tx),
                    remote_fin: false,
                    local_fin: false,
                    reply: Some(reply_tx),
                },
            );
            let frame = Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers: headers.clone(),
            };
            self.shared.queue(&st, frame, Some(permit));
            id
        };
        debug!(id, "spdy: opening stream");
        let mut guard = OpenGuard {
            shared: &self.shared,
            id,
            armed: true,
        };
        let reply = reply_rx.await;
        guard.armed = false;
        match reply {
            Ok(Ok(())) => Ok(Stream::new(Arc::clone(&self.shared), id, headers, data_rx, false)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SessionError::Closed),
        }
    }

    /// Sends a PING and waits for the peer's echo; returns the round trip.
    pub async fn ping(&self) -> Result<Duration, SessionError> {
        let permit = self.shared.permit().await?;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.state();
            if st.closing {
                return Err(SessionError::Closed);
            }
            let id = st.next_ping_id;
            st.next_ping_id = id.checked_add(2).unwrap_or(self.shared.role.first_id());
            st.pings.insert(id, tx);
            self.shared.queue(&st, Frame::Ping { id }, Some(permit));
        }
        let start = Instant::now();
        rx.await.map_err(|_| SessionError::Closed)?;
        Ok(start.elapsed())
    }

    /// Resolves when the connection has ended (peer closed, I/O error,
    /// GOAWAY handled and all streams done, or [`close`](Session::close))
    /// and both tasks have dropped the io.
    pub async fn closed(&self) {
        self.shared.ended.cancelled().await;
    }

    /// Whether the session has started ending.
    pub fn is_closing(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Sends GOAWAY (after what is already queued) and shuts the
    /// connection down; every stream's reader sees EOF, writers fail with
    /// `BrokenPipe`. Does not wait: see [`closed`](Session::closed).
    pub fn close(&self) {
        self.shared.teardown(goaway::OK, "closed by this end");
    }
}

/// Resets a stream whose `open_stream` was dropped before the reply.
struct OpenGuard<'a> {
    shared: &'a Arc<Shared>,
    id: u32,
    armed: bool,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.reset_stream(self.id, RstStatus::CANCEL);
        }
    }
}

// ---------------------------------------------------------------------------
// Streams.
// ---------------------------------------------------------------------------

/// One SPDY stream: readable (the peer's DATA) and writable (ours).
/// Dropping it (or its [`StreamWriter`]) without a shutdown sends FIN.
pub struct Stream {
    headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.writer.id)
            .field("headers", &self.headers)
            .finish()
    }
}

impl Stream {
    fn new(shared: Arc<Shared>, id: u32, headers: Headers, data_rx: mpsc::Receiver<Bytes>, local_fin: bool) -> Stream {
        let budget = PollSemaphore::new(Arc::clone(&shared.budget));
        Stream {
            headers,
            reader: StreamReader {
                id,
                rx: data_rx,
                pending: Bytes::new(),
            },
            writer: StreamWriter {
                id,
                shared,
                budget,
                finished: local_fin,
            },
        }
    }

    pub fn id(&self) -> u32 {
        self.writer.id
    }

    /// The headers of the SYN_STREAM that opened the stream (the peer's, or
    /// the ones [`Session::open_stream`] sent).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// RST_STREAM (status CANCEL): both directions end at once.
    pub fn reset(&self) {
        self.writer.reset();
    }

    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}

/// The peer's DATA on one stream. EOF on the peer's FIN, on RST_STREAM, or
/// when the connection ends (after the data already received). Dropping it
/// discards the stream's further data without blocking other streams.
#[derive(Debug)]
pub struct StreamReader {
    id: u32,
    rx: mpsc::Receiver<Bytes>,
    pending: Bytes,
}

impl StreamReader {
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(data) => this.pending = data,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// Sends DATA on one stream, in frames of at most [`MAX_WRITE_FRAME`]
/// bytes; waits (Pending) while the connection's out queue is full.
/// `poll_shutdown` sends FIN once; dropping it unfinished sends FIN too.
/// Writes fail with `BrokenPipe` after FIN, a reset or the connection's
/// end. `poll_flush` only hands data to the connection (the writer task
/// flushes the io when its queue is empty).
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
    budget: PollSemaphore,
    /// FIN sent (or never allowed: the peer opened the stream
    /// unidirectional).
    finished: bool,
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("id", &self.id)
            .field("finished", &self.finished)
            .finish()
    }
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// RST_STREAM (status CANCEL) for the whole stream.
    pub fn reset(&self) {
        self.shared.reset_stream(self.id, RstStatus::CANCEL);
    }

    fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<OwnedSemaphorePermit>> {
        match ready!(self.budget.poll_acquire(cx)) {
            Some(permit) => Poll::Ready(Ok(permit)),
            None => Poll::Ready(Err(broken_pipe("SPDY connection closed"))),
        }
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.finished {
            return Poll::Ready(Err(broken_pipe("SPDY stream already finished")));
        }
        this.shared.check_writable(this.id)?;
        let permit = ready!(this.poll_permit(cx))?;
        let n = buf.len().min(MAX_WRITE_FRAME);
        this.shared
            .send_data(this.id, Bytes::copy_from_slice(&buf[..n]), permit)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(Ok(()));
        }
        this.shared.check_writable(this.id)?;
        let permit = ready!(this.poll_permit(cx))?;
        this.shared.finish_local(this.id, Some(permit))?;
        this.finished = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Half-close, like dropping a TCP write half. Fails quietly
            // when the stream or connection is already gone.
            let _ = self.shared.finish_local(self.id, None);
        }
    }
}

// ---------------------------------------------------------------------------
// The reader task.
// ---------------------------------------------------------------------------

async fn reader_task<R: AsyncRead + Unpin + Send + 'static>(shared: Arc<Shared>, io: R, accept: mpsc::Sender<Stream>) {
    let _done = TaskDone(Arc::clone(&shared));
    let mut reader = Reader {
        shared: Arc::clone(&shared),
        accept,
    };
    let result = tokio::select! {
        biased;
        _ = shared.shutdown.cancelled() => Ok(()),
        r = reader.run(io) => r,
    };
    drop(reader);
    let (status, why) = match &result {
        Ok(()) => (goaway::OK, "connection closed by the peer".to_string()),
        Err(SessionError::Io(e)) => (goaway::OK, format!("read: {e}")),
        Err(e) => (goaway::PROTOCOL_ERROR, e.to_string()),
    };
    if let Err(e) = &result {
        debug!(error = %e, "spdy: reader stopped");
    }
    shared.teardown(status, &why);
}

/// What to do with a DATA frame, decided under the state lock.
enum DataAction {
    Deliver(Option<mpsc::Sender<Bytes>>),
    Drop,
    Reset(RstStatus),
}

struct Reader {
    shared: Arc<Shared>,
    accept: mpsc::Sender<Stream>,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(&mut self, mut io: R) -> Result<(), SessionError> {
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            while let Some(frame) = decoder.decode(&mut buf)? {
                self.handle(frame).await?;
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            if io.read_buf(&mut buf).await? == 0 {
                decoder.finish(&buf)?;
                return Ok(());
            }
        }
    }

    async fn handle(&mut self, frame: Frame) -> Result<(), SessionError> {
        trace!(frame = frame.name(), "spdy: received");
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => self.on_syn_stream(stream_id, flags, headers).await,
            Frame::SynReply { stream_id, flags, .. } => {
                self.on_syn_reply(stream_id, flags);
                Ok(())
            }
            Frame::RstStream { stream_id, status } => {
                self.on_rst_stream(stream_id, status);
                Ok(())
            }
            Frame::Ping { id } => self.on_ping(id).await,
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                self.on_goaway(last_good_stream_id, status);
                Ok(())
            }
            Frame::Headers { stream_id, flags, .. } => {
                if flags & FLAG_FIN != 0 {
                    self.on_remote_fin(stream_id);
                }
                Ok(())
            }
            Frame::Data { stream_id, flags, data } => self.on_data(stream_id, flags, data).await,
            Frame::Settings { .. } | Frame::WindowUpdate { .. } => Ok(()),
        }
    }

    /// Queues a control frame, waiting for room in the out queue.
    async fn send_control(&self, frame: Frame) -> Result<(), SessionError> {
        let permit = self.shared.permit().await?;
        let st = self.shared.state();
        self.shared.queue(&st, frame, Some(permit));
        Ok(())
    }

    /// Stream error: RST_STREAM `status` for `id`, closing the stream here
    /// too if it is open.
    async fn reset_peer_stream(&self, id: u32, status: RstStatus) -> Result<(), SessionError> {
        debug!(id, %status, "spdy: stream error");
        let permit = self.shared.permit().await?;
        let end = {
            let mut st = self.shared.state();
            st.remove_reset(id, || SessionError::Reset { id, status });
            self.shared
                .queue(&st, Frame::RstStream { stream_id: id, status }, Some(permit));
            st.should_end()
        };
        self.shared.end_if_done(end);
        Ok(())
    }

    /// Whether the peer may open stream `id` now; the RST status if not.
    fn check_new_stream(&self, st: &mut State, id: u32) -> Result<(), RstStatus> {
        if self.shared.role.is_local(id) || id <= st.last_peer_stream_id {
            // Wrong parity, reused or decreasing id.
            return Err(RstStatus::PROTOCOL_ERROR);
        }
        st.last_peer_stream_id = id;
        if st.closing || st.peer_going_away || self.accept.is_closed() {
            return Err(RstStatus::REFUSED_STREAM);
        }
        if st.streams.len() >= MAX_STREAMS {
            return Err(RstStatus::REFUSED_STREAM);
        }
        Ok(())
    }

    async fn on_syn_stream(&mut self, id: u32, flags: u8, headers: Headers) -> Result<(), SessionError> {
        if id == 0 {
            return Err(SessionError::Protocol("SYN_STREAM for stream 0"));
        }
        let verdict = {
            let mut st = self.shared.state();
            self.check_new_stream(&mut st, id)
        };
        if let Err(status) = verdict {
            return self.reset_peer_stream(id, status).await;
        }
        let permit = self.shared.permit().await?;
        let (data_tx, data_rx) = mpsc::channel(STREAM_QUEUE_PIECES);
        let remote_fin = flags & FLAG_FIN != 0;
        let local_fin = flags & FLAG_UNIDIRECTIONAL != 0;
        {
            let mut st = self.shared.state();
            if st.closing {
                return Ok(());
            }
            if !(remote_fin && local_fin) {
                st.streams.insert(
                    id,
                    StreamState {
                        data_tx: (!remote_fin).then_some(data_tx),
                        remote_fin,
                        local_fin,
                        reply: None,
                    },
                );
            }
            st.last_accepted_stream_id = id;
            let reply = Frame::SynReply {
                stream_id: id,
                flags: 0,
                headers: Headers::new(),
            };
            self.shared.queue(&st, reply, Some(permit));
        }
        debug!(id, ?headers, "spdy: peer opened stream");
        let stream = Stream::new(Arc::clone(&self.shared), id, headers, data_rx, local_fin);
        if let Err(refused) = self.accept.send(stream).await {
            // Nobody accepts streams any more.
            let stream = refused.0;
            self.shared.reset_stream(stream.id(), RstStatus::REFUSED_STREAM);
        }
        Ok(())
    }

    fn on_syn_reply(&self, id: u32, flags: u8) {
        {
            let mut st = self.shared.state();
            match st.streams.get_mut(&id).map(|s| s.reply.take()) {
                Some(Some(reply)) => {
                    let _ = reply.send(Ok(()));
                }
                Some(None) => debug!(id, "spdy: ignoring a second SYN_REPLY"),
                None => {
                    debug!(id, "spdy: ignoring SYN_REPLY for a stream not open");
                    return;
                }
            }
        }
        if flags & FLAG_FIN != 0 {
            self.on_remote_fin(id);
        }
    }

    /// FIN on SYN_REPLY or HEADERS.
    fn on_remote_fin(&self, id: u32) {
        let end = {
            let mut st = self.shared.state();
            st.remote_finished(id);
            st.should_end()
        };
        self.shared.end_if_done(end);
    }

    fn on_rst_stream(&self, id: u32, status: RstStatus) {
        debug!(id, %status, "spdy: peer reset stream");
        let end = {
            let mut st = self.shared.state();
            st.remove_reset(id, || SessionError::Reset { id, status });
            st.should_end()
        };
        self.shared.end_if_done(end);
    }

    async fn on_ping(&self, id: u32) -> Result<(), SessionError> {
        if id == 0 {
            return Ok(());
        }
        if !self.shared.role.is_local(id) {
            return self.send_control(Frame::Ping { id }).await;
        }
        if let Some(waiter) = self.shared.state().pings.remove(&id) {
            let _ = waiter.send(());
        }
        Ok(())
    }

    fn on_goaway(&self, last_good: u32, status: u32) {
        debug!(last_good, status, "spdy: peer sent GOAWAY");
        let role = self.shared.role;
        let end = {
            let mut st = self.shared.state();
            st.peer_going_away = true;
            // Our streams above last_good were never seen by the peer.
            let unseen: Vec<u32> = st
                .streams
                .keys()
                .copied()
                .filter(|id| role.is_local(*id) && *id > last_good)
                .collect();
            for id in unseen {
                st.remove_reset(id, || SessionError::GoingAway);
            }
            st.should_end()
        };
        self.shared.end_if_done(end);
    }

    fn data_action(&self, id: u32, fin: bool) -> (DataAction, bool) {
        let mut guard = self.shared.state();
        let st = &mut *guard;
        let action = match st.streams.get_mut(&id) {
            None if st.closing || st.recently_reset.contains(&id) => DataAction::Drop,
            None => DataAction::Reset(RstStatus::INVALID_STREAM),
            Some(s) if s.remote_fin => DataAction::Reset(RstStatus::STREAM_ALREADY_CLOSED),
            Some(s) => {
                let tx = s.data_tx.clone();
                if fin {
                    st.remote_finished(id);
                }
                DataAction::Deliver(tx)
            }
        };
        (action, st.should_end())
    }

    async fn on_data(&self, id: u32, flags: u8, data: Bytes) -> Result<(), SessionError> {
        if id == 0 {
            debug!("spdy: ignoring DATA for stream 0");
            return Ok(());
        }
        let (action, end) = self.data_action(id, flags & FLAG_FIN != 0);
        match action {
            DataAction::Drop => {}
            DataAction::Reset(status) => self.reset_peer_stream(id, status).await?,
            DataAction::Deliver(Some(tx)) if !data.is_empty() => {
                // Waits while the stream's reader is behind; fails only
                // when the reader is gone, and then its data is dropped.
                if tx.send(data).await.is_err() {
                    if let Some(s) = self.shared.state().streams.get_mut(&id) {
                        s.data_tx = None;
                    }
                }
            }
            DataAction::Deliver(_) => {}
        }
        self.shared.end_if_done(end);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The writer task.
// ---------------------------------------------------------------------------

async fn writer_task<W: AsyncWrite + Unpin + Send + 'static>(
    shared: Arc<Shared>,
    mut io: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let _done = TaskDone(Arc::clone(&shared));
    let mut outbox = match Outbox::new() {
        Ok(outbox) => outbox,
        Err(e) => {
            shared.teardown(goaway::INTERNAL_ERROR, &e.to_string());
            return;
        }
    };
    match outbox.run(&shared, &mut io, &mut rx).await {
        Ok(()) => outbox.finish(&shared, &mut io, &mut rx).await,
        Err(e) => {
            debug!(error = %e, "spdy: writer stopped");
            shared.teardown(goaway::INTERNAL_ERROR, &format!("write: {e}"));
        }
    }
}

/// The writer task's encoder and pending bytes.
struct Outbox {
    encoder: FrameEncoder,
    buf: BytesMut,
    /// Budget permits of the frames in `buf`, released once written.
    held: Vec<OwnedSemaphorePermit>,
}

impl Outbox {
    fn new() -> Result<Outbox, SessionError> {
        Ok(Outbox {
            encoder: FrameEncoder::new()?,
            buf: BytesMut::with_capacity(WRITE_BATCH + MAX_WRITE_FRAME),
            held: Vec::new(),
        })
    }

    fn push(&mut self, item: Outgoing) -> Result<(), SessionError> {
        self.encoder.encode(&item.frame, &mut self.buf)?;
        self.held.extend(item.permit);
        Ok(())
    }

    /// Writes queued frames until the session starts ending (Ok) or the
    /// io fails. Cancel-safe on `buf`: what is left is written by
    /// [`Outbox::finish`].
    async fn run<W: AsyncWrite + Unpin>(
        &mut self,
        shared: &Shared,
        io: &mut W,
        rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    ) -> Result<(), SessionError> {
        loop {
            if self.buf.is_empty() {
                self.held.clear();
                tokio::select! {
                    biased;
                    _ = shared.shutdown.cancelled() => return Ok(()),
                    item = rx.recv() => match item {
                        Some(item) => self.push(item)?,
                        None => return Ok(()),
                    },
                }
                while self.buf.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(item) => self.push(item)?,
                        Err(_) => break,
                    }
                }
            }
            tokio::select! {
                biased;
                _ = shared.shutdown.cancelled() => return Ok(()),
                n = io.write_buf(&mut self.buf) => {
                    if n? == 0 {
                        return Err(io::Error::from(io::ErrorKind::WriteZero).into());
                    }
                }
            }
            if self.buf.is_empty() && rx.is_empty() {
                tokio::select! {
                    biased;
                    _ = shared.shutdown.cancelled() => return Ok(()),
                    r = io.flush() => r?,
                }
            }
        }
    }

    /// The session is ending: writes what was queued, then GOAWAY, then
    /// shuts the io down, within [`CLOSE_GRACE`].
    async fn finish<W: AsyncWrite + Unpin>(
        &mut self,
        shared: &Shared,
        io: &mut W,
        rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    ) {
        while let Ok(item) = rx.try_recv() {
            if self.push(item).is_err() {
                break;
            }
        }
        let (last_good_stream_id, status) = {
            let st = shared.state();
            (st.last_accepted_stream_id, st.goaway_status)
        };
        let goaway = Frame::GoAway {
            last_good_stream_id,
            status,
        };
        if let Err(e) = self.encoder.encode(&goaway, &mut self.buf) {
            debug!(error = %e, "spdy: GOAWAY not encoded");
        }
        let buf = &mut self.buf;
        let drain = async {
            while !buf.is_empty() {
                if io.write_buf(buf).await? == 0 {
                    return Err(io::Error::from(io::ErrorKind::WriteZero));
                }
            }
            io.flush().await?;
            io.shutdown().await
        };
        match tokio::time::timeout(CLOSE_GRACE, drain).await {
            Ok(Ok(())) => debug!("spdy: GOAWAY sent, connection shut down"),
            Ok(Err(e)) => debug!(error = %e, "spdy: final writes failed"),
            Err(_) => debug!("spdy: peer not reading; dropping the connection"),
        }
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tokio::io::{duplex, DuplexStream};
    use tokio::time::timeout;

    use super::*;

    const T: Duration = Duration::from_secs(10);

    async fn within<F: std::future::Future>(f: F) -> F::Output {
        timeout(T, f).await.expect("timed out")
    }

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// A client and a server session over one in-memory pipe.
    fn pair() -> (Session, mpsc::Receiver<Stream>, Session, mpsc::Receiver<Stream>) {
        let (a, b) = duplex(64 << 10);
        let (client, client_rx) = Session::start(a, Role::Client);
        let (server, server_rx) = Session::start(b, Role::Server);
        (client, client_rx, server, server_rx)
    }

    async fn read_all(r: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
        let mut out = Vec::new();
        within(r.read_to_end(&mut out)).await.unwrap();
        out
    }

    /// The far end of a session, speaking frames by hand.
    struct RawPeer {
        io: DuplexStream,
        enc: FrameEncoder,
        dec: FrameDecoder,
        buf: BytesMut,
    }

    impl RawPeer {
        fn new(io: DuplexStream) -> RawPeer {
            RawPeer {
                io,
                enc: FrameEncoder::new().unwrap(),
                dec: FrameDecoder::new(),
                buf: BytesMut::new(),
            }
        }

        async fn send(&mut self, frame: Frame) {
            let mut out = BytesMut::new();
            self.enc.encode(&frame, &mut out).unwrap();
            within(self.io.write_all(&out)).await.unwrap();
        }

        /// The next frame, or None at EOF.
        async fn recv(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                    return Some(f);
                }
                if within(self.io.read_buf(&mut self.buf)).await.unwrap() == 0 {
                    return None;
                }
            }
        }

        async fn syn(&mut self, id: u32, headers: Headers) {
            self.send(Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers,
            })
            .await;
        }

        async fn data(&mut self, id: u32, flags: u8, data: &[u8]) {
            self.send(Frame::Data {
                stream_id: id,
                flags,
                data: Bytes::copy_from_slice(data),
            })
            .await;
        }
    }

    /// A server session whose peer is a [`RawPeer`] client.
    fn raw_server() -> (RawPeer, Session, mpsc::Receiver<Stream>) {
        let (a, b) = duplex(64 << 10);
        let (server, rx) = Session::start(b, Role::Server);
        (RawPeer::new(a), server, rx)
    }

    #[test]
    fn handles_are_send_and_unpin() {
        fn send_unpin<T: Send + Unpin + 'static>() {}
        fn send_sync<T: Send + Sync + 'static>() {}
        send_unpin::<Stream>();
        send_unpin::<StreamReader>();
        send_unpin::<StreamWriter>();
        send_sync::<Session>();
        send_sync::<SessionError>();
    }

    #[test]
    fn header_lookup_ignores_case() {
        let headers = h(&[("streamtype", "error"), ("port", "80")]);
        assert_eq!(header(&headers, "streamType"), Some("error"));
        assert_eq!(header(&headers, "PORT"), Some("80"));
        assert_eq!(header(&headers, "requestid"), None);
    }

    #[tokio::test]
    async fn streams_carry_data_both_ways_with_half_close() {
        let (client, _crx, _server, mut srx) = pair();
        let opened = within(client.open_stream(h(&[("streamType", "stdin")])));
        let (c, s) = tokio::join!(opened, async { within(srx.recv()).await.unwrap() });
        let c = c.unwrap();
        assert_eq!(c.id(), 1);
        assert_eq!(s.id(), 1);
        // Names are lower-case on the wire.
        assert_eq!(s.headers(), &h(&[("streamtype", "stdin")]));
        let (mut cr, mut cw) = c.split();
        let (mut sr, mut sw) = s.split();

        // Client → server, then the client's FIN: EOF on the server.
        cw.write_all(b"hello ").await.unwrap();
        cw.write_all(b"server").await.unwrap();
        cw.shutdown().await.unwrap();
        assert_eq!(read_all(&mut sr).await, b"hello server");
        assert_eq!(cw.write(b"more").await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);

        // The server's side is still open: server → client, then FIN.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let send = async {
            sw.write_all(&big).await.unwrap();
            sw.shutdown().await.unwrap();
            sw.shutdown().await.unwrap(); // once is enough; again is a no-op
        };
        let (_, got) = tokio::join!(send, read_all(&mut cr));
        assert_eq!(got, big);
    }

    #[tokio::test]
    async fn server_opened_streams_use_even_ids() {
        let (_client, mut crx, server, _srx) = pair();
        let (s, c) = tokio::join!(within(server.open_stream(h(&[("x", "1")]))), async {
            within(crx.recv()).await.unwrap()
        });
        let s = s.unwrap();
        assert_eq!((s.id(), c.id()), (2, 2));
        let (_, mut sw) = s.split();
        let (mut cr, _) = c.split();
        sw.write_all(b"from server").await.unwrap();
        drop(sw); // dropping a writer sends FIN
        assert_eq!(read_all(&mut cr).await, b"from server");
    }

    #[tokio::test]
    async fn reset_ends_both_directions() {
        let (client, _crx, _server, mut srx) = pair();
        let (c, s) = tokio::join!(within(client.open_stream(Headers::new())), async {
            within(srx.recv()).await.unwrap()
        });
        let c = c.unwrap();
        c.reset();
        let (mut sr, mut sw) = s.split();
        assert_eq!(read_all(&mut sr).await, b"");
        // The server's writer fails once the RST has arrived.
        within(async {
            loop {
                match sw.write(b"x").await {
                    Err(e) => break assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
                    Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        })
        .await;
        let (mut cr, mut cw) = c.split();
        assert_eq!(read_all(&mut cr).await, b"");
        assert_eq!(cw.write(b"x").await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn refused_open_fails_with_reset() {
        let (client, _crx, _server, srx) = pair();
        drop(srx); // nobody accepts: streams are refused
        match within(client.open_stream(Headers::new())).await {
            Err(SessionError::Reset { id: 1, status }) => {
                assert_eq!(status, RstStatus::REFUSED_STREAM)
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_streams_echo() {
        let (client, _crx, _server, mut srx) = pair();
        // Server: echo every stream.
        tokio::spawn(async move {
            while let Some(s) = srx.recv().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    tokio::io::copy(&mut r, &mut w).await.unwrap();
                    w.shutdown().await.unwrap();
                });
            }
        });
        let mut tasks = Vec::new();
        for n in 0..64u32 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let s = client.open_stream(h(&[("n", &n.to_string())])).await.unwrap();
                let (mut r, mut w) = s.split();
                let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 + n) as u8).collect();
                let expected = data.clone();
                let writer = tokio::spawn(async move {
                    w.write_all(&data).await.unwrap();
                    w.shutdown().await.unwrap();
                });
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.unwrap();
                writer.await.unwrap();
                assert_eq!(got, expected, "stream {n}");
            }));
        }
        for t in tasks {
            within(t).await.unwrap();
        }
    }

    #[tokio::test]
    async fn writer_to_a_peer_that_never_reads_blocks() {
        let (mut peer, server, mut rx) = raw_server();
        peer.syn(1, Headers::new()).await;
        let s = within(rx.recv()).await.unwrap();
        let (_r, mut w) = s.split();
        // The peer reads nothing from now on.
        let chunk = vec![7u8; 64 << 10];
        let mut written = 0usize;
        loop {
            match timeout(Duration::from_millis(300), w.write(&chunk)).await {
                Ok(n) => written += n.unwrap(),
                Err(_) => break, // blocked
            }
            assert!(written < 4 << 20, "buffered {written} bytes without blocking");
        }
        // Out queue (512 KiB) + pipe (64 KiB) + one write batch.
        assert!(written <= 1 << 20, "buffered {written} bytes");
        // Dropping the connection unblocks everything.
        drop(peer);
        within(server.closed()).await;
        assert_eq!(
            within(w.write(&chunk)).await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }

    #[tokio::test]
    async fn slow_reader_holds_the_peer_back_and_a_dropped_reader_does_not() {
        let (mut peer, _server, mut rx) = raw_server();
        peer.syn(1, Headers::new()).await;
        peer.syn(3, Headers::new()).await;
        let s1 = within(rx.recv()).await.unwrap();
        let s3 = within(rx.recv()).await.unwrap();
        assert!(matches!(peer.recv().await, Some(Frame::SynReply { stream_id: 1, .. })));
        assert!(matches!(peer.recv().await, Some(Frame::SynReply { stream_id: 3, .. })));

        // Stream 1's reader is dropped: 4 MiB for it are discarded, and
        // stream 3 still gets its data.
        let (r1, _w1) = s1.split();
        drop(r1);
        let chunk = vec![1u8; 32 << 10];
        for _ in 0..128 {
            peer.data(1, 0, &chunk).await;
        }
        peer.data(3, FLAG_FIN, b"still flowing").await;
        let (mut r3, _w3) = s3.split();
        assert_eq!(read_all(&mut r3).await, b"still flowing");

        // A stream whose reader does not read: the session stops reading
        // the connection instead of buffering.
        peer.syn(5, Headers::new()).await;
        let s5 = within(rx.recv()).await.unwrap();
        let mut sent = 0usize;
        loop {
            let mut out = BytesMut::new();
            peer.enc
                .encode(
                    &Frame::Data {
                        stream_id: 5,
                        flags: 0,
                        data: Bytes::from(chunk.clone()),
                    },
                    &mut out,
                )
                .unwrap();
            match timeout(Duration::from_millis(300), peer.io.write_all(&out)).await {
                Ok(r) => {
                    r.unwrap();
                    sent += chunk.len();
                }
                Err(_) => break, // the session stopped reading
            }
            assert!(sent < 8 << 20, "session buffered {sent} bytes");
        }
        // Per-stream queue (8 × 64 KiB) + pipe + read buffer, roughly.
        assert!(sent <= 2 << 20, "session took {sent} bytes");
        // Reading resumes the flow.
        let (mut r5, _w5) = s5.split();
        let mut got = vec![0u8; sent];
        within(r5.read_exact(&mut got)).await.unwrap();
    }

    #[tokio::test]
    async fn ping_is_echoed_both_ways() {
        let (client, _crx, server, _srx) = pair();
        within(client.ping()).await.unwrap();
        within(server.ping()).await.unwrap();
        // And by hand: a client ping id (odd) comes back unchanged.
        let (mut peer, _server, _rx) = raw_server();
        peer.send(Frame::Ping { id: 7 }).await;
        assert_eq!(peer.recv().await, Some(Frame::Ping { id: 7 }));
    }

    #[tokio::test]
    async fn settings_window_update_and_unknown_frames_are_ignored() {
        let (mut peer, _server, mut rx) = raw_server();
        peer.send(Frame::Settings {
            flags: 0,
            entries: vec![super::super::frame::Setting {
                flags: 0,
                id: 7,
                value: 1,
            }],
        })
        .await;
        peer.send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 100,
        })
        .await;
        // A CREDENTIAL frame (type 10), unknown to berth.
        within(peer.io.write_all(&[0x80, 3, 0, 10, 0, 0, 0, 2, 0, 0]))
            .await
            .unwrap();
        peer.syn(1, Headers::new()).await;
        assert_eq!(within(rx.recv()).await.unwrap().id(), 1);
    }

    #[tokio::test]
    async fn goaway_from_the_peer_ends_the_session_with_its_last_stream() {
        let (mut peer, server, mut rx) = raw_server();
        peer.syn(1, h(&[("streamtype", "stdout")])).await;
        let s = within(rx.recv()).await.unwrap();
        assert!(matches!(peer.recv().await, Some(Frame::SynReply { stream_id: 1, .. })));
        peer.send(Frame::GoAway {
            last_good_stream_id: 0,
            status: goaway::OK,
        })
        .await;
        // A PING round trip: the GOAWAY has been handled.
        peer.send(Frame::Ping { id: 1 }).await;
        assert_eq!(peer.recv().await, Some(Frame::Ping { id: 1 }));
        // No new streams either way...
        assert!(matches!(
            server.open_stream(Headers::new()).await,
            Err(SessionError::GoingAway)
        ));
        peer.syn(3, Headers::new()).await;
        assert_eq!(
            peer.recv().await,
            Some(Frame::RstStream {
                stream_id: 3,
                status: RstStatus::REFUSED_STREAM
            })
        );
        // ...but the open stream still works.
        let (mut r, mut w) = s.split();
        peer.data(1, FLAG_FIN, b"last words").await;
        assert_eq!(read_all(&mut r).await, b"last words");
        assert!(!server.is_closing());
        w.write_all(b"reply").await.unwrap();
        w.shutdown().await.unwrap();
        // The stream is done both ways: the session ends.
        within(server.closed()).await;
        assert_eq!(
            peer.recv().await,
            Some(Frame::Data {
                stream_id: 1,
                flags: 0,
                data: Bytes::from_static(b"reply")
            })
        );
        assert_eq!(
            peer.recv().await,
            Some(Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Bytes::new()
            })
        );
        assert!(matches!(peer.recv().await, Some(Frame::GoAway { .. })));
        assert_eq!(peer.recv().await, None);
    }

    #[tokio::test]
    async fn close_sends_queued_data_then_goaway() {
        let (client, _crx, server, mut srx) = pair();
        let (c, s) = tokio::join!(within(client.open_stream(Headers::new())), async {
            within(srx.recv()).await.unwrap()
        });
        let (mut cr, _cw) = c.unwrap().split();
        let (mut sr, mut sw) = s.split();
        sw.write_all(b"exit status").await.unwrap();
        sw.shutdown().await.unwrap();
        server.close();
        assert_eq!(sw.write(b"x").await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(read_all(&mut sr).await, b"");
        assert_eq!(read_all(&mut cr).await, b"exit status");
        within(server.closed()).await;
        within(client.closed()).await;
        assert!(matches!(
            client.open_stream(Headers::new()).await,
            Err(SessionError::Closed)
        ));
        assert!(matches!(client.ping().await, Err(SessionError::Closed)));
    }

    #[tokio::test]
    async fn connection_drop_ends_every_stream() {
        let (mut peer, server, mut rx) = raw_server();
        let mut streams = Vec::new();
        for id in [1, 3, 5] {
            peer.syn(id, Headers::new()).await;
            streams.push(within(rx.recv()).await.unwrap());
        }
        peer.data(3, 0, b"partial").await;
        drop(peer);
        within(server.closed()).await;
        for s in streams {
            let id = s.id();
            let (mut r, mut w) = s.split();
            let expected: &[u8] = if id == 3 { b"partial" } else { b"" };
            assert_eq!(read_all(&mut r).await, expected);
            assert_eq!(w.write(b"x").await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        }
        assert!(within(rx.recv()).await.is_none());
    }

    /// An io that records being dropped.
    struct Tracked {
        io: DuplexStream,
        dropped: Arc<AtomicBool>,
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    impl AsyncRead for Tracked {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Tracked {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.io).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn close_drops_the_io() {
        let (a, b) = duplex(64 << 10);
        let dropped = Arc::new(AtomicBool::new(false));
        let (server, _rx) = Session::start(
            Tracked {
                io: b,
                dropped: Arc::clone(&dropped),
            },
            Role::Server,
        );
        let (client, _crx) = Session::start(a, Role::Client);
        within(client.ping()).await.unwrap();
        // Streams still held by the application do not keep it alive.
        let _held = within(client.open_stream(Headers::new())).await.unwrap();
        server.close();
        within(server.closed()).await;
        assert!(dropped.load(Ordering::SeqCst));
        // The client saw GOAWAY and the end of the connection.
        within(client.closed()).await;
    }

    #[tokio::test]
    async fn bad_stream_ids_are_stream_errors_only() {
        let (mut peer, _server, mut rx) = raw_server();
        peer.syn(1, Headers::new()).await;
        let s1 = within(rx.recv()).await.unwrap();
        assert!(matches!(peer.recv().await, Some(Frame::SynReply { stream_id: 1, .. })));

        // DATA for a stream never opened.
        peer.data(99, 0, b"?").await;
        assert_eq!(
            peer.recv().await,
            Some(Frame::RstStream {
                stream_id: 99,
                status: RstStatus::INVALID_STREAM
            })
        );
        // A second DATA for it is dropped quietly (no RST storm).
        peer.data(99, 0, b"?").await;
        // An even (server-side) id from the client.
        peer.syn(4, Headers::new()).await;
        assert_eq!(
            peer.recv().await,
            Some(Frame::RstStream {
                stream_id: 4,
                status: RstStatus::PROTOCOL_ERROR
            })
        );
        // Stream 3, then a SYN_STREAM reusing 3, then a lower id (2 is even,
        // so 1 again).
        peer.syn(3, Headers::new()).await;
        let s3 = within(rx.recv()).await.unwrap();
        assert!(matches!(peer.recv().await, Some(Frame::SynReply { stream_id: 3, .. })));
        peer.syn(3, Headers::new()).await;
        assert_eq!(
            peer.recv().await,
            Some(Frame::RstStream {
                stream_id: 3,
                status: RstStatus::PROTOCOL_ERROR
            })
        );
        // Stream 3 is closed by the stream error...
        let (mut r3, _w3) = s3.split();
        assert_eq!(read_all(&mut r3).await, b"");
        // ...and stream 1 is untouched.
        peer.data(1, FLAG_FIN, b"ok").await;
        let (mut r1, mut w1) = s1.split();
        assert_eq!(read_all(&mut r1).await, b"ok");
        w1.write_all(b"fine").await.unwrap();
        assert_eq!(
            peer.recv().await,
            Some(Frame::Data {
                stream_id: 1,
                flags: 0,
                data: Bytes::from_static(b"fine")
            })
        );
        // And new streams still open.
        peer.syn(5, Headers::new()).await;
        assert_eq!(within(rx.recv()).await.unwrap().id(), 5);
    }

    #[tokio::test]
    async fn fin_on_syn_stream_means_nothing_to_read() {
        let (mut peer, _server, mut rx) = raw_server();
        peer.send(Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: FLAG_FIN,
            headers: Headers::new(),
        })
        .await;
        let s = within(rx.recv()).await.unwrap();
        let (mut r, mut w) = s.split();
        assert_eq!(read_all(&mut r).await, b"");
        w.write_all(b"answer").await.unwrap();
        drop(w);
        assert!(matches!(peer.recv().await, Some(Frame::SynReply { stream_id: 1, .. })));
        assert!(matches!(
            peer.recv().await,
            Some(Frame::Data {
                stream_id: 1,
                flags: 0,
                ..
            })
        ));
        assert!(matches!(
            peer.recv().await,
            Some(Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn hostile_bytes_end_the_session_with_a_protocol_error() {
        for garbage in [
            // SPDY/2 control frame.
            vec![0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1],
            // Huge SYN_STREAM.
            vec![0x80, 3, 0, 1, 0, 0xff, 0xff, 0xff],
            // SYN_STREAM whose header block is not zlib.
            vec![0x80, 3, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
            // PING of the wrong length.
            vec![0x80, 3, 0, 6, 0, 0, 0, 2, 0, 0],
        ] {
            let (mut peer, server, _rx) = raw_server();
            within(peer.io.write_all(&garbage)).await.unwrap();
            within(server.closed()).await;
            assert_eq!(
                peer.recv().await,
                Some(Frame::GoAway {
                    last_good_stream_id: 0,
                    status: goaway::PROTOCOL_ERROR
                }),
                "{garbage:?}"
            );
        }
        // A frame cut short by the end of the connection.
        let (mut peer, server, _rx) = raw_server();
        within(peer.io.write_all(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0]))
            .await
            .unwrap();
        within(peer.io.shutdown()).await.unwrap();
        within(server.closed()).await;
    }

    #[tokio::test]
    async fn dropping_open_stream_future_resets_the_stream() {
        let (mut peer, server, _rx) = raw_server();
        // The peer never replies; give up on the open.
        let open = server.open_stream(h(&[("a", "b")]));
        assert!(timeout(Duration::from_millis(50), open).await.is_err());
        assert!(matches!(peer.recv().await, Some(Frame::SynStream { stream_id: 2, .. })));
        assert_eq!(
            peer.recv().await,
            Some(Frame::RstStream {
                stream_id: 2,
                status: RstStatus::CANCEL
            })
        );
    }
}
