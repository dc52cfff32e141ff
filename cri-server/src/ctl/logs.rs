//! logs: a container's CRI log file, read as the kubelet reads it.
//!
//! Each record is `RFC3339Nano STREAM TAG CONTENT`; a `P` tag is a partial
//! piece of a long line, joined with the pieces that follow on the same
//! stream up to the `F` that ends it. Lines go to stdout or stderr by their
//! stream. `-f` keeps reading, across berthd rotating or reopening the file
//! (a new inode, or a file shorter than what was read), until the container
//! is no longer running.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ContainerState, ContainerStatus, ContainerStatusRequest};
use tonic::transport::Channel;

use super::{request, resolve, status_error};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// One whole line: the timestamp of its first piece, and its content.
#[derive(Debug, PartialEq, Eq)]
struct Line {
    time: String,
    stream: Stream,
    content: Vec<u8>,
}

/// Assembles records into lines; keeps what is unfinished between reads.
#[derive(Default)]
struct Assembler {
    /// Bytes after the last newline read.
    rest: Vec<u8>,
    /// Per stream: (timestamp, content so far) of a line still in `P` pieces.
    partial: [Option<(String, Vec<u8>)>; 2],
}

impl Assembler {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<Line>) {
        self.rest.extend_from_slice(bytes);
        let Some(last) = self.rest.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.rest.drain(..=last).collect();
        for record in complete.split(|&b| b == b'\n') {
            if !record.is_empty() {
                self.record(record, out);
            }
        }
    }

    fn record(&mut self, record: &[u8], out: &mut Vec<Line>) {
        let mut fields = record.splitn(4, |&b| b == b' ');
        let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next()) else {
            return self.malformed(record, out);
        };
        let content = fields.next().unwrap_or_default();
        let stream = match stream {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return self.malformed(record, out),
        };
        let time = String::from_utf8_lossy(time).into_owned();
        // Tags are `:`-separated; the first says partial or full.
        let partial = tag.split(|&b| b == b':').next() == Some(b"P");
        let slot = &mut self.partial[stream as usize];
        let (first_time, mut joined) = slot.take().unwrap_or((time, Vec::new()));
        joined.extend_from_slice(content);
        if partial {
            *slot = Some((first_time, joined));
        } else {
            out.push(Line {
                time: first_time,
                stream,
                content: joined,
            });
        }
    }

    /// Not a CRI record: shown as it is, on stdout.
    fn malformed(&self, record: &[u8], out: &mut Vec<Line>) {
        out.push(Line {
            time: String::new(),
            stream: Stream::Stdout,
            content: record.to_vec(),
        });
    }
}

/// The log file being read, reopened when berthd rotates or reopens it.
struct LogFile {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    pos: u64,
}

impl LogFile {
    fn new(path: PathBuf) -> LogFile {
        LogFile {
            path,
            file: None,
            inode: 0,
            pos: 0,
        }
    }

    /// Everything written since the last call, including the rest of a
    /// file that was replaced since.
    fn read_new(&mut self) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        if let Some(f) = &mut self.file {
            self.pos += f.read_to_end(&mut bytes)? as u64;
        }
        match std::fs::metadata(&self.path) {
            Ok(meta) if self.file.is_none() || meta.ino() != self.inode || meta.len() < self.pos => {
                let mut f = File::open(&self.path)?;
                let inode = f.metadata()?.ino();
                if inode == self.inode && self.file.is_some() {
                    // Truncated in place: start over.
                    f.seek(SeekFrom::Start(0))?;
                }
                self.inode = inode;
                self.pos = f.read_to_end(&mut bytes)? as u64;
                self.file = Some(f);
            }
            Ok(_) => {}
            // Between a rename and the new file: the next poll finds it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.file.is_some() => {}
            Err(e) => return Err(e),
        }
        Ok(bytes)
    }
}

pub struct LogArgs {
    pub follow: bool,
    pub tail: i64,
    pub timestamps: bool,
    pub since: Option<String>,
}

pub async fn logs(channel: Channel, timeout: Duration, prefix: &str, args: LogArgs) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let id = resolve::container(&channel, timeout, prefix).await?;
    let mut client = RuntimeServiceClient::new(channel);
    let status = container_status(&mut client, timeout, &id).await?;
    if status.log_path.is_empty() {
        anyhow::bail!("container {id} has no log file (no log_path in its config)");
    }
    let mut file = LogFile::new(PathBuf::from(&status.log_path));
    let mut assembler = Assembler::default();
    let mut lines = Vec::new();
    let first = file
        .read_new()
        .map_err(|e| anyhow::anyhow!("read {}: {e}", status.log_path))?;
    assembler.push(&first, &mut lines);
    let printer = Printer {
        timestamps: args.timestamps,
        since,
    };
    lines.retain(|l| printer.wanted(l));
    if args.tail >= 0 {
        let keep = args.tail as usize;
        lines.drain(..lines.len().saturating_sub(keep));
    }
    printer.print(&lines)?;
    if !args.follow {
        return Ok(());
    }
    follow(&mut client, timeout, &id, &mut file, &mut assembler, &printer).await
}

async fn follow(
    client: &mut RuntimeServiceClient<Channel>,
    timeout: Duration,
    id: &str,
    file: &mut LogFile,
    assembler: &mut Assembler,
    printer: &Printer,
) -> anyhow::Result<()> {
    const POLL: Duration = Duration::from_millis(100);
    const STATUS_EVERY: u32 = 10;
    let mut idle = 0u32;
    let mut exited = false;
    loop {
        let bytes = file
            .read_new()
            .map_err(|e| anyhow::anyhow!("read {}: {e}", path(file)))?;
        if bytes.is_empty() {
            if exited {
                return Ok(());
            }
            idle += 1;
            if idle.is_multiple_of(STATUS_EVERY) {
                // Read once more after seeing it stop: its last lines may
                // have landed in between.
                exited = match container_status(client, timeout, id).await {
                    Ok(s) => s.state != ContainerState::ContainerRunning as i32,
                    Err(_) => true,
                };
                continue;
            }
            tokio::time::sleep(POLL).await;
            continue;
        }
        idle = 0;
        let mut lines = Vec::new();
        assembler.push(&bytes, &mut lines);
        lines.retain(|l| printer.wanted(l));
        printer.print(&lines)?;
    }
}

fn path(file: &LogFile) -> String {
    file.path.display().to_string()
}

async fn container_status(
    client: &mut RuntimeServiceClient<Channel>,
    timeout: Duration,
    id: &str,
) -> anyhow::Result<ContainerStatus> {
    client
        .container_status(request(
            ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            },
            timeout,
        ))
        .await
        .map_err(|s| status_error("ContainerStatus", s))?
        .into_inner()
        .status
        .ok_or_else(|| anyhow::anyhow!("container {id}: no status"))
}

/// `--since`: a duration back from now (`10s`, `5m`) or an RFC 3339 time.
fn parse_since(s: &str) -> anyhow::Result<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    let back = super::cli::parse_duration(s)
        .map_err(|_| anyhow::anyhow!("--since {s:?}: neither a duration (5m) nor an RFC 3339 time"))?;
    let back = chrono::Duration::from_std(back)?;
    Ok((chrono::Utc::now() - back).fixed_offset())
}

struct Printer {
    timestamps: bool,
    since: Option<DateTime<FixedOffset>>,
}

impl Printer {
    fn wanted(&self, line: &Line) -> bool {
        match (&self.since, DateTime::parse_from_rfc3339(&line.time)) {
            (Some(since), Ok(t)) => t >= *since,
            _ => true,
        }
    }

    fn print(&self, lines: &[Line]) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        let mut stderr = std::io::stderr().lock();
        for line in lines {
            let out: &mut dyn Write = match line.stream {
                Stream::Stdout => &mut stdout,
                Stream::Stderr => &mut stderr,
            };
            if self.timestamps && !line.time.is_empty() {
                write!(out, "{} ", line.time)?;
            }
            out.write_all(&line.content)?;
            out.write_all(b"\n")?;
        }
        stdout.flush()?;
        stderr.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The lines of a whole log file.
    fn read_all(path: &Path) -> Vec<Line> {
        let mut lines = Vec::new();
        let mut a = Assembler::default();
        a.push(&std::fs::read(path).unwrap(), &mut lines);
        lines
    }

    fn line(time: &str, stream: Stream, content: &str) -> Line {
        Line {
            time: time.into(),
            stream,
            content: content.into(),
        }
    }

    #[test]
    fn partials_join_per_stream_and_records_may_split_across_reads() {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        a.push(
            b"2024-01-01T00:00:00.1Z stdout P abc\n2024-01-01T00:00:00.2Z stderr F oops\n2024-01-01T00:00:00.3Z std",
            &mut out,
        );
        assert_eq!(out, [line("2024-01-01T00:00:00.2Z", Stream::Stderr, "oops")]);
        out.clear();
        a.push(
            b"out F def\n2024-01-01T00:00:00.4Z stdout F  spaced \nnot a record\n",
            &mut out,
        );
        assert_eq!(
            out,
            [
                line("2024-01-01T00:00:00.1Z", Stream::Stdout, "abcdef"),
                line("2024-01-01T00:00:00.4Z", Stream::Stdout, " spaced "),
                line("", Stream::Stdout, "not a record"),
            ]
        );
        // An empty line: `F` with nothing after it.
        out.clear();
        a.push(b"2024-01-01T00:00:00.5Z stdout F\n", &mut out);
        assert_eq!(out, [line("2024-01-01T00:00:00.5Z", Stream::Stdout, "")]);
    }

    #[test]
    fn a_replaced_file_is_read_to_its_end_then_the_new_one_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, "t stdout F one\n").unwrap();
        let mut f = LogFile::new(p.clone());
        assert_eq!(f.read_new().unwrap(), b"t stdout F one\n");
        assert!(f.read_new().unwrap().is_empty());
        // Rotation: the old file renamed, a new one created.
        std::fs::rename(&p, dir.path().join("0.log.1")).unwrap();
        std::fs::write(&p, "t stdout F two\n").unwrap();
        assert_eq!(f.read_new().unwrap(), b"t stdout F two\n");
        // Truncated in place.
        std::fs::write(&p, "t stdout F 3\n").unwrap();
        assert_eq!(f.read_new().unwrap(), b"t stdout F 3\n");
        assert_eq!(read_all(&p), [line("t", Stream::Stdout, "3")]);
    }

    #[test]
    fn since_takes_durations_and_times() {
        assert!(parse_since("2024-01-01T00:00:00Z").is_ok());
        let t = parse_since("1m").unwrap();
        assert!(chrono::Utc::now().fixed_offset() - t >= chrono::Duration::seconds(59));
        assert!(parse_since("yesterday").is_err());
    }
}
