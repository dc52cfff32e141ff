//! The CRI container log writer. The kubelet reads container logs from
//! files where every record is
//!
//! ```text
//! <RFC3339Nano UTC timestamp> <stdout|stderr> <F|P> <content>\n
//! ```
//!
//! `F` marks the last piece of a line (a full line when it is the only
//! piece), `P` a partial piece the reader joins with the following records
//! of the same stream until an `F`. As containerd's `cio` CRI logger:
//!
//! - a complete line (ending in `\n`) is one `F` record (the `\n` is not
//!   part of the content; a `\r` is kept verbatim);
//! - a line longer than the maximum (16 KiB, containerd's
//!   `max_container_log_line_size` default) is cut into `P` records of
//!   exactly that many bytes, the remainder ending as `F`;
//! - an unfinished line at the end of a chunk is kept per stream until its
//!   newline arrives or it reaches the maximum;
//! - [`LogWriter::flush_stream`] (on EOF of a stream) writes what is left
//!   as a `P` record: the program never ended that line.
//!
//! Records go out in `writev(2)` calls on an `O_APPEND` file — the whole
//! lines of one read chunk together, sharing one timestamp (as conmon
//! does) — so records are never torn or interleaved, even with a second
//! writer, and a chatty container costs two system calls per chunk, not
//! per line.
//! [`LogWriter::reopen`] serves rotation: the kubelet renames the file and
//! asks for a reopen; new records go to a fresh file at the same path.
//!
//! The unfinished-line buffers live in lazily faulted pages: a container
//! that only writes whole lines never makes them resident.

use core::ffi::CStr;

use crate::sys::{self, Errno, Fd, Pages};
use crate::time;

/// Default maximum content length of one record (containerd's default).
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// Mode of a newly created log file.
pub const LOG_FILE_MODE: u32 = 0o640;

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy)]
enum Tag {
    Full,
    Partial,
}

/// Writes container output to a CRI log file; see the module doc.
pub struct LogWriter<'a> {
    path: &'a CStr,
    file: Fd,
    max_line: usize,
    /// Two buffers of `max_line` bytes: the unfinished line per stream.
    pending: Pages,
    pending_len: [usize; 2],
}

/// Opens `path` for appending, creating it with mode 0640.
pub fn open_append(path: &CStr) -> sys::Result<Fd> {
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT;
    sys::openat(sys::AT_FDCWD, path, flags, LOG_FILE_MODE)
}

impl<'a> LogWriter<'a> {
    pub fn open(path: &'a CStr) -> sys::Result<Self> {
        Self::with_max_line(path, DEFAULT_MAX_LINE)
    }

    /// Like [`LogWriter::open`] with another maximum record length (> 0).
    pub fn with_max_line(path: &'a CStr, max_line: usize) -> sys::Result<Self> {
        if max_line == 0 {
            return Err(Errno::EINVAL);
        }
        Ok(LogWriter {
            path,
            file: open_append(path)?,
            max_line,
            pending: Pages::new(2 * max_line)?,
            pending_len: [0; 2],
        })
    }

    /// Writes a chunk read from `stream`: complete lines become records
    /// now, an unfinished tail is kept.
    pub fn write(&mut self, stream: Stream, mut bytes: &[u8]) -> sys::Result<()> {
        let header = record_header(stream, Tag::Full);
        let mut batch = Batch::new(header.as_bytes());
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    let line = &bytes[..nl];
                    if self.pending_len[stream.index()] == 0 && line.len() <= self.max_line {
                        // The common case: whole lines straight from the
                        // read buffer, many per writev.
                        if batch.push(line) {
                            batch.send(self.file.raw())?;
                        }
                    } else {
                        batch.send(self.file.raw())?;
                        self.append_pending(stream, line)?;
                        self.emit_pending(stream, Tag::Full)?;
                    }
                    bytes = &bytes[nl + 1..];
                }
                None => {
                    batch.send(self.file.raw())?;
                    self.append_pending(stream, bytes)?;
                    bytes = &[];
                }
            }
        }
        batch.send(self.file.raw())
    }

    /// Writes the unfinished line of `stream`, if any, as a `P` record.
    pub fn flush_stream(&mut self, stream: Stream) -> sys::Result<()> {
        if self.pending_len[stream.index()] == 0 {
            return Ok(());
        }
        self.emit_pending(stream, Tag::Partial)
    }

    /// Flushes both streams.
    pub fn flush(&mut self) -> sys::Result<()> {
        self.flush_stream(Stream::Stdout)?;
        self.flush_stream(Stream::Stderr)
    }

    /// Reopens the file at its path (after rotation); unfinished lines
    /// are kept and go to the new file.
    pub fn reopen(&mut self) -> sys::Result<()> {
        self.file = open_append(self.path)?;
        Ok(())
    }

    /// Adds `bytes` (no newline inside) to the stream's unfinished line,
    /// cutting a `P` record whenever the line would exceed the maximum.
    fn append_pending(&mut self, stream: Stream, mut bytes: &[u8]) -> sys::Result<()> {
        let i = stream.index();
        loop {
            let have = self.pending_len[i];
            let room = self.max_line - have;
            let take = bytes.len().min(room);
            let start = i * self.max_line + have;
            self.pending[start..start + take].copy_from_slice(&bytes[..take]);
            self.pending_len[i] += take;
            bytes = &bytes[take..];
            if bytes.is_empty() {
                return Ok(());
            }
            // Only a line that goes on past the maximum is cut.
            self.emit_pending(stream, Tag::Partial)?;
        }
    }

    fn emit_pending(&mut self, stream: Stream, tag: Tag) -> sys::Result<()> {
        let i = stream.index();
        let start = i * self.max_line;
        let len = core::mem::take(&mut self.pending_len[i]);
        let file = self.file.raw();
        write_record(file, stream, tag, &self.pending[start..start + len])
    }
}

/// `<timestamp> <stream> <F|P> ` for a record written now.
fn record_header(stream: Stream, tag: Tag) -> crate::buf::Buf<48> {
    let mut header = crate::buf::Buf::<48>::new();
    header.push(time::now().as_bytes()).push(b" ").push(stream.name());
    header.push(match tag {
        Tag::Full => b" F ",
        Tag::Partial => b" P ",
    });
    header
}

/// Whole lines collected for one `writev`: header, content, newline each.
struct Batch<'h, 'b> {
    header: &'h [u8],
    lines: [&'b [u8]; BATCH_LINES],
    len: usize,
}

/// Lines per `writev` (three slices each).
const BATCH_LINES: usize = sys::MAX_IOV / 3;

impl<'h, 'b> Batch<'h, 'b> {
    fn new(header: &'h [u8]) -> Self {
        Batch {
            header,
            lines: [&[]; BATCH_LINES],
            len: 0,
        }
    }

    /// Adds a line; true when the batch is full and must be sent.
    fn push(&mut self, line: &'b [u8]) -> bool {
        self.lines[self.len] = line;
        self.len += 1;
        self.len == BATCH_LINES
    }

    fn send(&mut self, file: i32) -> sys::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let mut parts: [&[u8]; 3 * BATCH_LINES] = [&[]; 3 * BATCH_LINES];
        for (slot, line) in parts.chunks_exact_mut(3).zip(&self.lines[..self.len]) {
            slot.copy_from_slice(&[self.header, line, b"\n"]);
        }
        let n = 3 * self.len;
        self.len = 0;
        write_all(file, &mut parts[..n])
    }
}

/// One record in one `writev`.
fn write_record(file: i32, stream: Stream, tag: Tag, content: &[u8]) -> sys::Result<()> {
    let header = record_header(stream, tag);
    write_all(file, &mut [header.as_bytes(), content, b"\n"])
}

/// Writes every slice of `parts` with `writev`, in order; a short write
/// (only on a full disk) is completed with further writes.
fn write_all(file: i32, mut parts: &mut [&[u8]]) -> sys::Result<()> {
    loop {
        while parts.first().is_some_and(|p| p.is_empty()) {
            parts = &mut parts[1..];
        }
        if parts.is_empty() {
            return Ok(());
        }
        let mut left = match sys::writev(file, parts) {
            Err(Errno::EINTR) => continue,
            Ok(0) => return Err(Errno::EIO),
            other => other?,
        };
        for p in parts.iter_mut() {
            let n = left.min(p.len());
            *p = &p[n..];
            left -= n;
            if left == 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::ffi::CString;
    use std::string::{String, ToString};
    use std::vec::Vec;

    struct TmpLog {
        dir: std::path::PathBuf,
        path: CString,
    }

    impl TmpLog {
        fn new(tag: &str) -> TmpLog {
            let dir = std::env::temp_dir().join(std::format!("berth-monitor-log-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = CString::new(dir.join("0.log").to_str().unwrap()).unwrap();
            TmpLog { dir, path }
        }

        /// (stream, tag, content) of every record; timestamps checked.
        fn records(&self) -> Vec<(String, String, String)> {
            let text = std::fs::read_to_string(self.path.to_str().unwrap()).unwrap_or_default();
            text.split_terminator('\n')
                .map(|line| {
                    let mut it = line.splitn(4, ' ');
                    let ts = it.next().unwrap();
                    assert_eq!(ts.len(), 30, "{ts}");
                    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
                    let s = it.next().unwrap().to_string();
                    let t = it.next().unwrap().to_string();
                    (s, t, it.next().unwrap_or("").to_string())
                })
                .collect()
        }
    }

    impl Drop for TmpLog {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn rec(s: &str, t: &str, c: &str) -> (String, String, String) {
        (s.into(), t.into(), c.into())
    }

    #[test]
    fn full_lines_become_f_records_and_carriage_returns_stay() {
        let t = TmpLog::new("full");
        let mut w = LogWriter::open(&t.path).unwrap();
        w.write(Stream::Stdout, b"one\ntwo\r\n\n").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        assert_eq!(
            t.records(),
            [
                rec("stdout", "F", "one"),
                rec("stdout", "F", "two\r"),
                rec("stdout", "F", ""),
                rec("stderr", "F", "err")
            ]
        );
    }

    #[test]
    fn partial_lines_join_across_writes_and_streams_stay_apart() {
        let t = TmpLog::new("partial");
        let mut w = LogWriter::open(&t.path).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oo").unwrap();
        w.write(Stream::Stdout, b"lo\nwor").unwrap();
        w.write(Stream::Stderr, b"ps\n").unwrap();
        w.flush().unwrap();
        assert_eq!(
            t.records(),
            [
                rec("stdout", "F", "hello"),
                rec("stderr", "F", "oops"),
                rec("stdout", "P", "wor")
            ]
        );
    }

    #[test]
    fn long_lines_split_into_partial_records_of_the_maximum() {
        let t = TmpLog::new("long");
        let mut w = LogWriter::with_max_line(&t.path, 4).unwrap();
        w.write(Stream::Stdout, b"abcdefghij\n").unwrap();
        w.write(Stream::Stdout, b"ab").unwrap();
        w.write(Stream::Stdout, b"cdef").unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        assert_eq!(
            t.records(),
            [
                rec("stdout", "P", "abcd"),
                rec("stdout", "P", "efgh"),
                rec("stdout", "F", "ij"),
                rec("stdout", "P", "abcd"),
                rec("stdout", "F", "ef")
            ]
        );
        assert!(LogWriter::with_max_line(&t.path, 0).is_err());
    }

    #[test]
    fn many_lines_in_one_chunk_keep_their_order_around_partials() {
        let t = TmpLog::new("batch");
        let mut w = LogWriter::with_max_line(&t.path, 8).unwrap();
        w.write(Stream::Stdout, b"x").unwrap();
        let mut chunk = std::vec::Vec::new();
        chunk.extend_from_slice(b"y\n");
        for i in 0..300 {
            chunk.extend_from_slice(std::format!("{i}\n").as_bytes());
        }
        chunk.extend_from_slice(b"0123456789ab\nlast");
        w.write(Stream::Stdout, &chunk).unwrap();
        w.flush().unwrap();
        let mut want = std::vec![rec("stdout", "F", "xy")];
        want.extend((0..300).map(|i| rec("stdout", "F", &std::format!("{i}"))));
        want.push(rec("stdout", "P", "01234567"));
        want.push(rec("stdout", "F", "89ab"));
        want.push(rec("stdout", "P", "last"));
        assert_eq!(t.records(), want);
    }

    #[test]
    fn default_maximum_is_16k() {
        let t = TmpLog::new("16k");
        let mut w = LogWriter::open(&t.path).unwrap();
        let mut line = std::vec![b'x'; DEFAULT_MAX_LINE + 1];
        line.push(b'\n');
        w.write(Stream::Stdout, &line).unwrap();
        let r = t.records();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].1.as_str(), r[0].2.len()), ("P", DEFAULT_MAX_LINE));
        assert_eq!((r[1].1.as_str(), r[1].2.as_str()), ("F", "x"));
    }

    #[test]
    fn reopen_after_rename_starts_a_new_file_and_appends_to_existing() {
        let t = TmpLog::new("reopen");
        std::fs::write(
            t.path.to_str().unwrap(),
            "2026-01-01T00:00:00.000000000Z stdout F old\n",
        )
        .unwrap();
        let mut w = LogWriter::open(&t.path).unwrap();
        w.write(Stream::Stdout, b"before\nhalf").unwrap();
        let rotated = t.dir.join("0.log.1");
        std::fs::rename(t.path.to_str().unwrap(), &rotated).unwrap();
        w.reopen().unwrap();
        w.write(Stream::Stdout, b" done\n").unwrap();
        assert_eq!(t.records(), [rec("stdout", "F", "half done")]);
        let old = std::fs::read_to_string(&rotated).unwrap();
        let old: Vec<&str> = old.lines().map(|l| &l[31..]).collect();
        assert_eq!(old, ["stdout F old", "stdout F before"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.path.to_str().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777 & !LOG_FILE_MODE, 0, "never more than 0640: {mode:o}");
    }

    #[test]
    fn timestamps_do_not_go_backwards() {
        let t = TmpLog::new("mono");
        let mut w = LogWriter::open(&t.path).unwrap();
        for i in 0..50 {
            w.write(Stream::Stdout, std::format!("{i}\n").as_bytes()).unwrap();
        }
        let text = std::fs::read_to_string(t.path.to_str().unwrap()).unwrap();
        let stamps: Vec<&str> = text.lines().map(|l| &l[..30]).collect();
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    }
}
