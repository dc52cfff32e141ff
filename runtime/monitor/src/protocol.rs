//! The monitor's control socket protocol (`SOCK_SEQPACKET`, one message per
//! packet). Each packet starts with a tag byte:
//!
//! | tag | direction | payload |
//! |---|---|---|
//! | 0 | both | a [`Request`] (client→monitor) or a response (monitor→client), as text |
//! | 1 | client→monitor | stdin bytes (attached clients) |
//! | 2 | monitor→client | stdout bytes |
//! | 3 | monitor→client | stderr bytes |
//! | 4 | client→monitor | close the container's stdin |
//!
//! Requests: `start`, `wait`, `attach`, `resize ROWS COLS`, `reopen-log`.
//! Responses: `ok`, `error MESSAGE`, `exited EXIT-JSON` (the exit record
//! exactly as in `exit.json`, see [`crate::record::exit_json`]).

use crate::buf::{parse_u64, Buf};

pub const TAG_CONTROL: u8 = 0;
pub const TAG_STDIN: u8 = 1;
pub const TAG_STDOUT: u8 = 2;
pub const TAG_STDERR: u8 = 3;
pub const TAG_STDIN_CLOSE: u8 = 4;

/// Largest packet either side sends (tag included); larger ones are cut.
/// Small on purpose: the monitor's read buffer is this big.
pub const MAX_PACKET: usize = 8 * 1024;

/// Requests to the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Why a control payload was refused.
pub type Refusal = &'static str;

impl Request {
    /// The control packet, tag included.
    pub fn packet(&self) -> Buf<32> {
        let mut out = Buf::new();
        out.push(&[TAG_CONTROL]);
        match self {
            Request::Start => out.push(b"start"),
            Request::Wait => out.push(b"wait"),
            Request::Attach => out.push(b"attach"),
            Request::ReopenLog => out.push(b"reopen-log"),
            Request::Resize { rows, cols } => {
                out.push(b"resize ").push_u64((*rows).into());
                out.push(b" ").push_u64((*cols).into())
            }
        };
        out
    }

    /// Parses a control payload (tag stripped).
    pub fn parse(payload: &[u8]) -> Result<Request, Refusal> {
        let mut words = payload.split(|&b| b == b' ');
        let req = match words.next() {
            Some(b"start") => Request::Start,
            Some(b"wait") => Request::Wait,
            Some(b"attach") => Request::Attach,
            Some(b"reopen-log") => Request::ReopenLog,
            Some(b"resize") => {
                let mut size = || words.next().and_then(parse_u64).and_then(|n| u16::try_from(n).ok());
                match (size(), size()) {
                    (Some(rows), Some(cols)) => Request::Resize { rows, cols },
                    _ => return Err("resize needs ROWS COLS"),
                }
            }
            _ => return Err("unknown request"),
        };
        match words.next() {
            None => Ok(req),
            Some(_) => Err("trailing words"),
        }
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
            assert_eq!(p.as_bytes()[0], TAG_CONTROL);
            assert_eq!(Request::parse(&p.as_bytes()[1..]), Ok(r));
        }
        for junk in [
            &b""[..],
            b"stop",
            b"resize 1",
            b"resize 1 x",
            b"resize 1 70000",
            b"start now",
            b"\xff",
        ] {
            assert!(Request::parse(junk).is_err(), "{junk:?}");
        }
    }
}
