//! The monitor's control socket protocol (`SOCK_SEQPACKET`, one message per
//! packet). Each packet starts with a tag byte:
//!
//! | tag | direction | payload |
//! |---|---|---|
//! | 0 | both | a [`Request`] (client→monitor) or [`Response`] (monitor→client), as text |
//! | 1 | client→monitor | stdin bytes (attached clients) |
//! | 2 | monitor→client | stdout bytes |
//! | 3 | monitor→client | stderr bytes |
//! | 4 | client→monitor | close the container's stdin |
//!
//! Control text: requests are `start`, `wait`, `attach`, `resize ROWS COLS`
//! and `reopen-log`; responses are `ok`, `error MESSAGE` and
//! `exited EXIT-JSON` (the exit record exactly as in `exit.json`). No serde
//! on the monitor's side: it only encodes the exit record
//! ([`super::record::exit_json`]); the client parses it.

use crate::state::ExitRecord;

pub const TAG_CONTROL: u8 = 0;
pub const TAG_STDIN: u8 = 1;
pub const TAG_STDOUT: u8 = 2;
pub const TAG_STDERR: u8 = 3;
pub const TAG_STDIN_CLOSE: u8 = 4;

/// Largest packet either side sends (tag included); larger ones are cut.
/// Small on purpose: the monitor's read buffer is this big, per container.
pub const MAX_PACKET: usize = 8 * 1024;

/// A control payload that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad control message {text:?}: {why}")]
pub struct ProtocolError {
    pub text: String,
    pub why: &'static str,
}

/// Requests to the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Release the init (created → running).
    Start,
    /// Reply with the exit record once every process is gone.
    Wait,
    /// Stream stdout/stderr to this connection, accept stdin from it.
    Attach,
    /// Resize the terminal.
    Resize { rows: u16, cols: u16 },
    /// Reopen the CRI log file (after rotation).
    ReopenLog,
}

/// Replies from the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Ok,
    Error(String),
    Exited(ExitRecord),
}

fn bad(payload: &[u8], why: &'static str) -> ProtocolError {
    ProtocolError {
        text: String::from_utf8_lossy(payload).into_owned(),
        why,
    }
}

impl Request {
    /// The control packet (tag included).
    pub fn packet(&self) -> Vec<u8> {
        let text = match self {
            Request::Start => "start".to_string(),
            Request::Wait => "wait".to_string(),
            Request::Attach => "attach".to_string(),
            Request::Resize { rows, cols } => format!("resize {rows} {cols}"),
            Request::ReopenLog => "reopen-log".to_string(),
        };
        [&[TAG_CONTROL][..], text.as_bytes()].concat()
    }

    /// Parses a control payload (tag stripped).
    pub fn parse(payload: &[u8]) -> Result<Request, ProtocolError> {
        let text = std::str::from_utf8(payload).map_err(|_| bad(payload, "not UTF-8"))?;
        let mut words = text.split(' ');
        let req = match words.next() {
            Some("start") => Request::Start,
            Some("wait") => Request::Wait,
            Some("attach") => Request::Attach,
            Some("reopen-log") => Request::ReopenLog,
            Some("resize") => {
                let mut size = || words.next().and_then(|w| w.parse::<u16>().ok());
                match (size(), size()) {
                    (Some(rows), Some(cols)) => Request::Resize { rows, cols },
                    _ => return Err(bad(payload, "resize needs ROWS COLS")),
                }
            }
            _ => return Err(bad(payload, "unknown request")),
        };
        match words.next() {
            None => Ok(req),
            Some(_) => Err(bad(payload, "trailing words")),
        }
    }
}

impl Response {
    /// The control packet (tag included).
    pub fn packet(&self) -> Vec<u8> {
        let mut out = vec![TAG_CONTROL];
        match self {
            Response::Ok => out.extend_from_slice(b"ok"),
            Response::Error(e) => {
                out.extend_from_slice(b"error ");
                out.extend_from_slice(e.as_bytes());
            }
            Response::Exited(exit) => {
                out.extend_from_slice(b"exited ");
                out.extend_from_slice(super::record::exit_json(exit).as_bytes());
            }
        }
        out
    }

    /// Parses a control payload (tag stripped).
    pub fn parse(payload: &[u8]) -> Result<Response, ProtocolError> {
        if payload == b"ok" {
            return Ok(Response::Ok);
        }
        if let Some(e) = payload.strip_prefix(b"error ") {
            return Ok(Response::Error(String::from_utf8_lossy(e).into_owned()));
        }
        if let Some(json) = payload.strip_prefix(b"exited ") {
            return serde_json::from_slice(json)
                .map(Response::Exited)
                .map_err(|_| bad(payload, "malformed exit record"));
        }
        Err(bad(payload, "unknown response"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_roundtrip_and_junk_is_refused() {
        for r in [
            Request::Start,
            Request::Wait,
            Request::Attach,
            Request::Resize { rows: 24, cols: 80 },
            Request::ReopenLog,
        ] {
            let p = r.packet();
            assert_eq!(p[0], TAG_CONTROL);
            assert_eq!(Request::parse(&p[1..]).unwrap(), r);
        }
        for junk in [&b""[..], b"stop", b"resize 1", b"resize 1 x", b"start now", b"\xff"] {
            assert!(Request::parse(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn responses_roundtrip_including_exit_records() {
        let exit = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            exited_at: "2026-01-02T03:04:05.000000006Z".into(),
            oom_killed: true,
            error: Some("say \"hi\"\n\\ \u{1}".into()),
        };
        for r in [
            Response::Ok,
            Response::Error("container c has no terminal".into()),
            Response::Exited(exit),
        ] {
            let p = r.packet();
            assert_eq!(Response::parse(&p[1..]).unwrap(), r);
        }
        assert!(Response::parse(b"exited {").is_err());
        assert!(Response::parse(b"okay").is_err());
    }
}
