//! The outcome of a remote command as read from its error stream.
//!
//! From `v4.channel.k8s.io` on, the server writes one JSON `metav1.Status`:
//! `Success`, or `Failure` with reason `NonZeroExitCode` and an `ExitCode`
//! cause whose message is the code; any other failure carries a message.
//! Before v4 the stream is empty on success and holds the error's text
//! otherwise. Either way the stream ends when the session does.

use serde::Deserialize;

use crate::streaming::RemoteCommandProtocol;

/// A remote command the server could not run, or that ended in a failure
/// other than an exit code (the server's message). Errors returned by
/// [`super::remote_command`] carry it; `downcast_ref` tells it apart from a
/// transport failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteFailure {
    pub message: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    status: String,
    message: String,
    reason: String,
    details: Option<Details>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Cause {
    /// metav1.StatusCause's `Type`, spelled `reason` in JSON.
    reason: String,
    message: String,
}

/// The outcome of a finished session from everything its error stream
/// carried: the exit code, a [`RemoteFailure`], or — for v4 and later,
/// where the server always writes a status — an error when nothing came
/// (the connection was lost before the command's end was reported).
pub fn outcome(protocol: RemoteCommandProtocol, message: &[u8]) -> anyhow::Result<i32> {
    if protocol.status_is_json() && message.is_empty() {
        anyhow::bail!("the streaming session ended without the command's status (connection lost?)");
    }
    exit_code(protocol, message).map_err(anyhow::Error::new)
}

/// The exit code the error stream's content stands for: `Ok(code)` for a
/// process that ran (0 for success or an empty stream), `Err` for a
/// session that failed otherwise.
pub fn exit_code(protocol: RemoteCommandProtocol, message: &[u8]) -> Result<i32, RemoteFailure> {
    if message.iter().all(u8::is_ascii_whitespace) {
        return Ok(0);
    }
    let text = String::from_utf8_lossy(message).trim().to_string();
    if !protocol.status_is_json() {
        return Err(RemoteFailure {
            message: format!("error executing remote command: {text}"),
        });
    }
    let status: Status = serde_json::from_slice(message).map_err(|e| RemoteFailure {
        message: format!("error stream protocol error: {e} in {text:?}"),
    })?;
    match status.status.as_str() {
        "Success" => Ok(0),
        "Failure" if status.reason == "NonZeroExitCode" => {
            let cause = status
                .details
                .unwrap_or_default()
                .causes
                .into_iter()
                .find(|c| c.reason == "ExitCode")
                .ok_or_else(|| RemoteFailure {
                    message: "error stream protocol error: no ExitCode cause given".into(),
                })?;
            // An exit status is 0-255; kubectl refuses anything else.
            cause
                .message
                .trim()
                .parse::<u8>()
                .map(i32::from)
                .map_err(|_| RemoteFailure {
                    message: format!(
                        "error stream protocol error: invalid exit code value {:?}",
                        cause.message
                    ),
                })
        }
        "Failure" if !status.message.is_empty() => Err(RemoteFailure {
            message: status.message,
        }),
        "Failure" => Err(RemoteFailure {
            message: format!("remote command failed ({})", status.reason),
        }),
        other => Err(RemoteFailure {
            message: format!("error stream protocol error: unknown status {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RemoteCommandProtocol as P;

    #[test]
    fn success_and_silence_are_zero() {
        assert_eq!(exit_code(P::V4, br#"{"metadata":{},"status":"Success"}"#), Ok(0));
        assert_eq!(exit_code(P::V5, b""), Ok(0));
        assert_eq!(exit_code(P::V2, b""), Ok(0));
        assert_eq!(exit_code(P::V4, b"\n"), Ok(0));
    }

    #[test]
    fn a_lost_status_is_an_error_from_v4_on() {
        let e = outcome(P::V4, b"").unwrap_err();
        assert!(e.downcast_ref::<RemoteFailure>().is_none(), "not the server's failure");
        assert!(e.to_string().contains("without the command's status"), "{e}");
        assert_eq!(outcome(P::V3, b"").unwrap(), 0);
        assert_eq!(outcome(P::V5, br#"{"status":"Success"}"#).unwrap(), 0);
        let e = outcome(P::V5, br#"{"status":"Failure","message":"m"}"#).unwrap_err();
        assert_eq!(e.downcast_ref::<RemoteFailure>().unwrap().message, "m");
    }

    #[test]
    fn a_non_zero_exit_is_the_exit_code_cause() {
        let status = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit code 42","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"42"}]}}"#;
        assert_eq!(exit_code(P::V4, status), Ok(42));
        assert_eq!(exit_code(P::V5, status), Ok(42));
        let signalled = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"Other","message":"x"},{"reason":"ExitCode","message":"137"}]}}"#;
        assert_eq!(exit_code(P::V5, signalled), Ok(137));
    }

    #[test]
    fn malformed_exit_codes_are_protocol_errors() {
        let no_cause = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[]}}"#;
        assert!(exit_code(P::V4, no_cause)
            .unwrap_err()
            .message
            .contains("no ExitCode cause"));
        let no_details = br#"{"status":"Failure","reason":"NonZeroExitCode"}"#;
        assert!(exit_code(P::V4, no_details).is_err());
        let big = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"300"}]}}"#;
        assert!(exit_code(P::V4, big).unwrap_err().message.contains("invalid exit code"));
        assert!(exit_code(P::V4, b"not json")
            .unwrap_err()
            .message
            .contains("protocol error"));
    }

    #[test]
    fn other_failures_carry_the_servers_message() {
        let status = br#"{"metadata":{},"status":"Failure","message":"Internal error occurred: container c is not running","reason":"InternalError","code":500}"#;
        let e = exit_code(P::V4, status).unwrap_err();
        assert_eq!(e.message, "Internal error occurred: container c is not running");
        let bare = br#"{"status":"Failure","reason":"InternalError"}"#;
        assert!(exit_code(P::V4, bare).unwrap_err().message.contains("InternalError"));
    }

    #[test]
    fn before_v4_any_text_is_a_failure() {
        let e = exit_code(P::V3, b"container not found").unwrap_err();
        assert_eq!(e.message, "error executing remote command: container not found");
        assert!(exit_code(P::V1, b"boom").is_err());
    }
}
