//! The CRI container log writer, used by the monitor.
//!
//! The kubelet reads container logs from files where every record is
//!
//! ```text
//! <RFC3339Nano UTC timestamp> <stdout|stderr> <F|P> <content>\n
//! ```
//!
//! `F` marks the last piece of a line (a full line when it is the only piece),
//! `P` a partial piece that the reader concatenates with the following
//! records of the same stream until an `F`. This writer follows containerd's
//! `cio` CRI logger:
//!
//! - a complete line (ending in `\n`) is written as one `F` record (the `\n`
//!   is not part of the content; a `\r` is kept verbatim);
//! - a line longer than [`LogWriter::max_line`] (16 KiB by default, the
//!   containerd `max_container_log_line_size` default) is cut into `P`
//!   records of exactly `max_line` bytes, the remainder ending as `F`;
//! - a line that is not finished at the end of a chunk is buffered per stream
//!   until its newline arrives (then it is one `F` record) or until the
//!   buffer reaches `max_line` (then a `P` record is cut);
//! - [`LogWriter::flush_stream`] (call it on EOF of a stream) writes what is
//!   left as a `P` record, as containerd does: the program never ended that
//!   line, and the kubelet prints a trailing `P` without a newline.
//!
//! Each record is written with a single `write(2)` on an `O_APPEND` file, so
//! records are never torn or interleaved, even with a second writer.
//! [`LogWriter::reopen`] serves log rotation: the kubelet renames the file
//! and asks the runtime to reopen; new records go to a fresh file at the
//! original path, the renamed file keeps the old ones.
//!
//! No async runtime and no per-record allocation after warm-up: the monitor
//! that owns this writer stays small.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Default maximum content length of one record (containerd's default).
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// File mode for a newly created log file.
pub const LOG_FILE_MODE: u32 = 0o640;

/// Errors of the log writer; each names the log file.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("open log file {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("write log file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("invalid max line length 0 for log file {path}")]
    ZeroMaxLine { path: PathBuf },
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// The stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The stream name as written in a record.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Record tag: the last piece of a line, or a partial piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Full,
    Partial,
}

impl Tag {
    fn as_str(self) -> &'static str {
        match self {
            Tag::Full => "F",
            Tag::Partial => "P",
        }
    }
}

/// Writes container output to a CRI log file. See the module documentation.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    max_line: usize,
    /// Unfinished line per stream (index: [`Stream::index`]).
    pending: [Vec<u8>; 2],
    /// Scratch buffer a record is assembled in before its single write.
    record: Vec<u8>,
}

impl LogWriter {
    /// Opens (creating with mode 0640 if needed) the log file for appending,
    /// with the default maximum line length.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::with_max_line(path, DEFAULT_MAX_LINE)
    }

    /// Like [`LogWriter::open`] with a custom maximum record content length.
    pub fn with_max_line(path: impl AsRef<Path>, max_line: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if max_line == 0 {
            return Err(LogError::ZeroMaxLine { path });
        }
        let file = open_append(&path)?;
        Ok(Self {
            path,
            file,
            max_line,
            pending: [Vec::new(), Vec::new()],
            record: Vec::new(),
        })
    }

    /// The log file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The maximum content length of one record.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Writes a chunk of output read from `stream`: complete lines become
    /// records now, an unfinished tail is buffered (see module doc).
    pub fn write(&mut self, stream: Stream, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    self.append_pending(stream, &bytes[..nl])?;
                    let line = std::mem::take(&mut self.pending[stream.index()]);
                    let res = self.write_record(stream, Tag::Full, &line);
                    self.pending[stream.index()] = recycle(line);
                    res?;
                    bytes = &bytes[nl + 1..];
                }
                None => {
                    self.append_pending(stream, bytes)?;
                    bytes = &[];
                }
            }
        }
        Ok(())
    }

    /// Writes the buffered unfinished line of `stream`, if any, as a `P`
    /// record. Call it when the stream reaches EOF.
    pub fn flush_stream(&mut self, stream: Stream) -> Result<()> {
        if self.pending[stream.index()].is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.pending[stream.index()]);
        let res = self.write_record(stream, Tag::Partial, &line);
        self.pending[stream.index()] = recycle(line);
        res
    }

    /// Flushes both streams (see [`LogWriter::flush_stream`]).
    pub fn flush(&mut self) -> Result<()> {
        self.flush_stream(Stream::Stdout)?;
        self.flush_stream(Stream::Stderr)
    }

    /// Reopens the log file at its path (after the kubelet renamed it for
    /// rotation). Buffered unfinished lines are kept and go to the new file.
    pub fn reopen(&mut self) -> Result<()> {
        self.file = open_append(&self.path)?;
        Ok(())
    }

    /// Adds `bytes` (no newline inside) to the stream's unfinished line,
    /// cutting `P` records whenever it would exceed `max_line`.
    fn append_pending(&mut self, stream: Stream, mut bytes: &[u8]) -> Result<()> {
        loop {
            let have = self.pending[stream.index()].len();
            let room = self.max_line - have;
            if bytes.len() <= room {
                self.pending[stream.index()].extend_from_slice(bytes);
                return Ok(());
            }
            // Only a line that goes on past max_line is cut: fill the
            // buffer, emit it as P, continue with the rest.
            self.pending[stream.index()].extend_from_slice(&bytes[..room]);
            bytes = &bytes[room..];
            let piece = std::mem::take(&mut self.pending[stream.index()]);
            let res = self.write_record(stream, Tag::Partial, &piece);
            self.pending[stream.index()] = recycle(piece);
            res?;
        }
    }

    fn write_record(&mut self, stream: Stream, tag: Tag, content: &[u8]) -> Result<()> {
        self.record.clear();
        push_timestamp(&mut self.record, SystemTime::now());
        self.record.push(b' ');
        self.record.extend_from_slice(stream.as_str().as_bytes());
        self.record.push(b' ');
        self.record.extend_from_slice(tag.as_str().as_bytes());
        self.record.push(b' ');
        self.record.extend_from_slice(content);
        self.record.push(b'\n');
        // One write(2) per record on an O_APPEND file: write_all only loops
        // on a short write, which regular files do not produce short of
        // ENOSPC (then the error is returned).
        self.file.write_all(&self.record).map_err(|source| LogError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Clears a buffer for reuse, keeping its capacity.
fn recycle(mut buf: Vec<u8>) -> Vec<u8> {
    buf.clear();
    buf
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(LOG_FILE_MODE)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Now as RFC 3339 with nine fractional digits, UTC — the same text as
/// `state::now_rfc3339`, without chrono (the monitor stays small).
pub fn now_rfc3339_nano() -> String {
    let mut out = Vec::with_capacity(30);
    push_timestamp(&mut out, SystemTime::now());
    String::from_utf8(out).expect("timestamps are ASCII")
}

/// Appends `t` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC, always nine
/// fractional digits; Go's `time.RFC3339Nano` parses any number of them).
fn push_timestamp(out: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    push_num(out, year, 4);
    out.push(b'-');
    push_num(out, month, 2);
    out.push(b'-');
    push_num(out, day, 2);
    out.push(b'T');
    push_num(out, rem / 3600, 2);
    out.push(b':');
    push_num(out, rem % 3600 / 60, 2);
    out.push(b':');
    push_num(out, rem % 60, 2);
    out.push(b'.');
    push_num(out, u64::from(since.subsec_nanos()), 9);
    out.push(b'Z');
}

/// Appends `n` in decimal, zero-padded to `width` digits.
fn push_num(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    while n > 0 {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = (digits.len() - width).min(i);
    out.extend_from_slice(&digits[start..]);
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A parsed record: (timestamp, stream, tag, content).
    fn records(path: &Path) -> Vec<(String, String, String, String)> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
        text.split_terminator('\n')
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().unwrap().to_string();
                let stream = it.next().unwrap().to_string();
                let tag = it.next().unwrap().to_string();
                let content = it.next().expect("content separator").to_string();
                assert_rfc3339nano(&ts);
                (ts, stream, tag, content)
            })
            .collect()
    }

    fn assert_rfc3339nano(ts: &str) {
        let b = ts.as_bytes();
        assert_eq!(b.len(), 30, "{ts}");
        for (i, c) in b.iter().enumerate() {
            match i {
                4 | 7 => assert_eq!(*c, b'-', "{ts}"),
                10 => assert_eq!(*c, b'T', "{ts}"),
                13 | 16 => assert_eq!(*c, b':', "{ts}"),
                19 => assert_eq!(*c, b'.', "{ts}"),
                29 => assert_eq!(*c, b'Z', "{ts}"),
                _ => assert!(c.is_ascii_digit(), "{ts}"),
            }
        }
        // chrono's RFC 3339 parser accepts what Go's RFC3339Nano accepts here.
        chrono::DateTime::parse_from_rfc3339(ts).unwrap();
    }

    fn short(r: &[(String, String, String, String)]) -> Vec<(&str, &str, &str)> {
        r.iter()
            .map(|(_, s, t, c)| (s.as_str(), t.as_str(), c.as_str()))
            .collect()
    }

    #[test]
    fn timestamp_format_matches_known_instants() {
        let mut out = Vec::new();
        push_timestamp(&mut out, UNIX_EPOCH);
        assert_eq!(out, b"1970-01-01T00:00:00.000000000Z");
        out.clear();
        // 2026-11-23T02:51:02.123456789Z
        let t = UNIX_EPOCH + Duration::new(1_795_402_262, 123_456_789);
        push_timestamp(&mut out, t);
        assert_eq!(out, b"2026-11-23T02:51:02.123456789Z");
        out.clear();
        // Leap day 2024-02-29T23:59:59.000000001Z
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 1);
        push_timestamp(&mut out, t);
        assert_eq!(out, b"2024-02-29T23:59:59.000000001Z");
        // Cross-check against chrono for a spread of instants.
        for secs in (0..4_102_444_800u64).step_by(86_400 * 37 + 3_601) {
            out.clear();
            push_timestamp(&mut out, UNIX_EPOCH + Duration::new(secs, 5));
            let want = chrono::DateTime::from_timestamp(secs as i64, 5)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.9fZ")
                .to_string();
            assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        }
    }

    #[test]
    fn full_lines_become_f_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"hello\nworld\n\n").unwrap();
        w.write(Stream::Stderr, b"oops \r\n").unwrap();
        assert_eq!(
            short(&records(&path)),
            vec![
                ("stdout", "F", "hello"),
                ("stdout", "F", "world"),
                ("stdout", "F", ""),
                ("stderr", "F", "oops \r"),
            ]
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777 & !0o022, 0o640 & !0o022);
    }

    #[test]
    fn partial_lines_are_joined_across_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"abc").unwrap();
        w.write(Stream::Stdout, b"def").unwrap();
        assert!(records(&path).is_empty(), "nothing before the newline");
        w.write(Stream::Stdout, b"g\nhij").unwrap();
        assert_eq!(short(&records(&path)), vec![("stdout", "F", "abcdefg")]);
        // EOF: the unfinished tail goes out as P.
        w.flush_stream(Stream::Stdout).unwrap();
        w.flush_stream(Stream::Stdout).unwrap();
        assert_eq!(
            short(&records(&path)),
            vec![("stdout", "F", "abcdefg"), ("stdout", "P", "hij")]
        );
    }

    #[test]
    fn long_lines_split_into_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::with_max_line(&path, 4).unwrap();
        w.write(Stream::Stdout, b"0123456789\n").unwrap();
        // Exactly max_line is still one full record.
        w.write(Stream::Stdout, b"abcd\n").unwrap();
        // Split across writes: the buffer fills, then is cut.
        w.write(Stream::Stderr, b"xy").unwrap();
        w.write(Stream::Stderr, b"zw").unwrap();
        w.write(Stream::Stderr, b"v").unwrap();
        w.write(Stream::Stderr, b"\n").unwrap();
        assert_eq!(
            short(&records(&path)),
            vec![
                ("stdout", "P", "0123"),
                ("stdout", "P", "4567"),
                ("stdout", "F", "89"),
                ("stdout", "F", "abcd"),
                ("stderr", "P", "xyzw"),
                ("stderr", "F", "v"),
            ]
        );
        assert!(LogWriter::with_max_line(&path, 0).is_err());
    }

    #[test]
    fn default_max_line_is_16k() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path).unwrap();
        assert_eq!(w.max_line(), 16 * 1024);
        let line = vec![b'x'; 16 * 1024 + 10];
        w.write(Stream::Stdout, &line).unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        let r = records(&path);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].2.as_str(), r[0].3.len()), ("P", 16 * 1024));
        assert_eq!((r[1].2.as_str(), r[1].3.len()), ("F", 10));
    }

    #[test]
    fn interleaved_streams_keep_separate_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"out-a").unwrap();
        w.write(Stream::Stderr, b"err-a").unwrap();
        w.write(Stream::Stderr, b"\nerr-b\n").unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        w.write(Stream::Stdout, b"tail").unwrap();
        w.write(Stream::Stderr, b"etail").unwrap();
        w.flush().unwrap();
        assert_eq!(
            short(&records(&path)),
            vec![
                ("stderr", "F", "err-a"),
                ("stderr", "F", "err-b"),
                ("stdout", "F", "out-a"),
                ("stdout", "P", "tail"),
                ("stderr", "P", "etail"),
            ]
        );
    }

    #[test]
    fn timestamps_do_not_go_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path).unwrap();
        for i in 0..50 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes()).unwrap();
        }
        let r = records(&path);
        assert_eq!(r.len(), 50);
        assert!(r.windows(2).all(|p| p[0].0 <= p[1].0));
    }

    #[test]
    fn reopen_after_rename_starts_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let rotated = dir.path().join("0.log.20261123-025102");
        let mut w = LogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"old\nhalf").unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        // Until reopen, records still go to the renamed file.
        w.write(Stream::Stdout, b"-line\n").unwrap();
        w.reopen().unwrap();
        w.write(Stream::Stderr, b"new\n").unwrap();
        assert_eq!(
            short(&records(&rotated)),
            vec![("stdout", "F", "old"), ("stdout", "F", "half-line")]
        );
        assert_eq!(short(&records(&path)), vec![("stderr", "F", "new")]);
    }

    #[test]
    fn open_appends_to_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        LogWriter::open(&path).unwrap().write(Stream::Stdout, b"one\n").unwrap();
        LogWriter::open(&path).unwrap().write(Stream::Stdout, b"two\n").unwrap();
        assert_eq!(
            short(&records(&path)),
            vec![("stdout", "F", "one"), ("stdout", "F", "two")]
        );
        let err = LogWriter::open(dir.path().join("missing/0.log")).unwrap_err();
        assert!(err.to_string().contains("missing/0.log"), "{err}");
    }
}
