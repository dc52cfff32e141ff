//! The outcome of an exec or attach, as the client reads it from the error
//! stream: for `v4.channel.k8s.io` and later a JSON `metav1.Status` (a
//! non-zero exit is `NonZeroExitCode` with an `ExitCode` cause, which
//! kubectl and the kubelet turn into the exit code); before v4, nothing on
//! success and the error's text on failure.

use serde::Serialize;

use super::RemoteCommandProtocol;

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited with this code (128 + n when killed by signal n).
    Exited { code: i32, cmd: Vec<String> },
    /// The session could not run (container gone, exec failed, …).
    Failed(String),
    /// An attach ended without a process exit to report.
    Detached,
}

#[derive(Serialize)]
struct Status<'a> {
    metadata: Metadata,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize)]
struct Metadata {}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Serialize)]
struct Cause {
    reason: &'static str,
    message: String,
}

/// The bytes to write on the error stream for `outcome` (empty: nothing).
pub fn encode(protocol: RemoteCommandProtocol, outcome: &Outcome) -> Vec<u8> {
    if !protocol.status_is_json() {
        return match outcome {
            Outcome::Exited { code: 0, .. } | Outcome::Detached => Vec::new(),
            Outcome::Exited { code, cmd } => non_zero_message(cmd, *code).into_bytes(),
            Outcome::Failed(message) => message.clone().into_bytes(),
        };
    }
    let status = match outcome {
        Outcome::Exited { code: 0, .. } | Outcome::Detached => Status {
            metadata: Metadata {},
            status: "Success",
            message: None,
            reason: None,
            details: None,
            code: None,
        },
        Outcome::Exited { code, cmd } => Status {
            metadata: Metadata {},
            status: "Failure",
            message: Some(non_zero_message(cmd, *code)),
            reason: Some("NonZeroExitCode"),
            details: Some(Details {
                causes: vec![Cause {
                    reason: "ExitCode",
                    message: code.to_string(),
                }],
            }),
            code: None,
        },
        Outcome::Failed(message) => Status {
            metadata: Metadata {},
            status: "Failure",
            message: Some(format!("Internal error occurred: {message}")),
            reason: Some("InternalError"),
            details: None,
            code: Some(500),
        },
    };
    serde_json::to_vec(&status).expect("a status serializes")
}

fn non_zero_message(cmd: &[String], code: i32) -> String {
    if cmd.is_empty() {
        format!("command terminated with non-zero exit code: exit code {code}")
    } else {
        format!("command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(outcome: &Outcome) -> serde_json::Value {
        serde_json::from_slice(&encode(RemoteCommandProtocol::V4, outcome)).unwrap()
    }

    #[test]
    fn success_is_a_success_status() {
        let v = json(&Outcome::Exited { code: 0, cmd: vec![] });
        assert_eq!(v, serde_json::json!({"metadata": {}, "status": "Success"}));
    }

    #[test]
    fn a_non_zero_exit_carries_the_code_as_kubectl_reads_it() {
        let v = json(&Outcome::Exited {
            code: 137,
            cmd: vec!["sleep".into(), "9".into()],
        });
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "137");
        assert!(v["message"].as_str().unwrap().contains("exit code 137"));
    }

    #[test]
    fn a_failure_is_an_internal_error() {
        let v = json(&Outcome::Failed("container c is not running".into()));
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["code"], 500);
        assert!(v["message"].as_str().unwrap().contains("container c is not running"));
    }

    #[test]
    fn before_v4_only_failures_are_written_as_text() {
        let p = RemoteCommandProtocol::V3;
        assert!(encode(p, &Outcome::Exited { code: 0, cmd: vec![] }).is_empty());
        assert!(encode(p, &Outcome::Detached).is_empty());
        let text = String::from_utf8(encode(p, &Outcome::Failed("boom".into()))).unwrap();
        assert_eq!(text, "boom");
        let text = String::from_utf8(encode(p, &Outcome::Exited { code: 2, cmd: vec![] })).unwrap();
        assert!(text.contains("exit code 2"));
    }
}
