//! The client's half of the monitor's control socket protocol. The wire
//! format, the tags and [`Request`] are the monitor's own
//! ([`berth_monitor::protocol`], which documents them); here responses are
//! parsed, with serde for the exit record.

pub use berth_monitor::protocol::{
    Request, MAX_PACKET, TAG_CONTROL, TAG_STDERR, TAG_STDIN, TAG_STDIN_CLOSE, TAG_STDOUT,
};

use crate::state::ExitRecord;

/// A control payload that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad control message {text:?}: {why}")]
pub struct ProtocolError {
    pub text: String,
    pub why: &'static str,
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

impl Response {
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
    use berth_monitor::record::{exit_json, Exit};

    #[test]
    fn the_monitors_exit_record_is_what_serde_reads_and_writes() {
        for (exit_code, signal, oom_killed) in [(0, None, false), (137, Some(9), true), (-1, None, true)] {
            let exit = Exit {
                exit_code,
                signal,
                exited_at: berth_monitor::time::now(),
                oom_killed,
            };
            let json = exit_json(&exit);
            let parsed = match Response::parse(&[b"exited ", json.as_bytes()].concat()).unwrap() {
                Response::Exited(r) => r,
                other => panic!("{other:?}"),
            };
            let want = ExitRecord {
                exit_code,
                signal,
                exited_at: String::from_utf8(exit.exited_at.as_bytes().to_vec()).unwrap(),
                oom_killed,
                error: None,
            };
            assert_eq!(parsed, want);
            assert_eq!(serde_json::to_string(&want).unwrap().as_bytes(), json.as_bytes());
        }
    }

    #[test]
    fn responses_parse_and_junk_is_refused() {
        assert_eq!(Response::parse(b"ok").unwrap(), Response::Ok);
        assert_eq!(
            Response::parse(b"error container c has no terminal").unwrap(),
            Response::Error("container c has no terminal".into())
        );
        assert!(Response::parse(b"exited {").is_err());
        assert!(Response::parse(b"okay").is_err());
    }
}
