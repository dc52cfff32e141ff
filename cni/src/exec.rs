//! Running plugin binaries: lookup in the bin dirs, environment, stdin,
//! timeout, and decoding of failures into typed errors.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command as Process;

use crate::result::ErrorObject;

/// The CNI operation (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
    Check,
    Version,
}

impl CniCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
            CniCommand::Version => "VERSION",
        }
    }
}

impl fmt::Display for CniCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors running one plugin.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("CNI plugin {plugin:?} not found in {}", display_dirs(.dirs))]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("cannot start CNI plugin {plugin} ({}): {source}", .path.display())]
    Spawn {
        plugin: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin} {command} timed out after {timeout:?} and was killed")]
    Timeout {
        plugin: String,
        command: CniCommand,
        timeout: Duration,
    },
    #[error("CNI plugin {plugin} {command} failed: {} (code {}){}{}", .error.msg, .error.code,
        details_note(&.error.details), stderr_note(.stderr))]
    Plugin {
        plugin: String,
        command: CniCommand,
        error: Box<ErrorObject>,
        stderr: String,
    },
    #[error("CNI plugin {plugin} {command} failed with {status}: {}{}", String::from_utf8_lossy(.stdout).trim(),
        stderr_note(.stderr))]
    Failed {
        plugin: String,
        command: CniCommand,
        status: std::process::ExitStatus,
        stdout: Vec<u8>,
        stderr: String,
    },
}

impl ExecError {
    /// The plugin's error object, when it printed one.
    pub fn error_object(&self) -> Option<&ErrorObject> {
        match self {
            ExecError::Plugin { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!("[{}]", dirs.join(", "))
}

fn stderr_note(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!("; stderr: {s}")
    }
}

fn details_note(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(": {details}")
    }
}

/// The per-invocation environment (`CNI_*` variables).
#[derive(Debug, Clone, Default)]
pub struct InvokeEnv {
    pub container_id: String,
    /// Empty when the netns is gone (DEL) or not needed (VERSION).
    pub netns: String,
    pub ifname: String,
    pub args: String,
}

/// Finds and runs plugin binaries.
#[derive(Debug, Clone)]
pub struct PluginExec {
    bin_dirs: Vec<PathBuf>,
    timeout: Duration,
}

/// Most stderr kept in an error, so a chatty plugin cannot bloat logs.
const MAX_STDERR: usize = 4096;

impl PluginExec {
    pub fn new(bin_dirs: Vec<PathBuf>, timeout: Duration) -> Self {
        PluginExec { bin_dirs, timeout }
    }

    pub fn bin_dirs(&self) -> &[PathBuf] {
        &self.bin_dirs
    }

    /// The first executable file named `plugin` in the bin dirs.
    pub fn find(&self, plugin: &str) -> Result<PathBuf, ExecError> {
        let not_found = || ExecError::PluginNotFound {
            plugin: plugin.to_string(),
            dirs: self.bin_dirs.clone(),
        };
        if plugin.is_empty() || plugin.contains('/') || plugin == "." || plugin == ".." {
            return Err(not_found());
        }
        self.bin_dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| is_executable(p))
            .ok_or_else(not_found)
    }

    /// Runs `path` with the CNI environment and `stdin`; returns stdout on success.
    pub async fn run(
        &self,
        plugin: &str,
        path: &Path,
        command: CniCommand,
        env: &InvokeEnv,
        stdin: &[u8],
    ) -> Result<Vec<u8>, ExecError> {
        let cni_path = std::env::join_paths(&self.bin_dirs).unwrap_or_default();
        let mut cmd = Process::new(path);
        cmd.env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &env.container_id)
            .env("CNI_NETNS", &env.netns)
            .env("CNI_IFNAME", &env.ifname)
            .env("CNI_ARGS", &env.args)
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
            plugin: plugin.to_string(),
            path: path.into(),
            source,
        })?;
        let mut child_stdin = child.stdin.take();
        let input = stdin.to_vec();
        let run = async move {
            if let Some(pipe) = child_stdin.as_mut() {
                // A plugin that exits without reading stdin gives EPIPE; its exit status tells the story.
                let _ = pipe.write_all(&input).await;
            }
            drop(child_stdin);
            child.wait_with_output().await
        };
        let output = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(output)) => output,
            Ok(Err(source)) => {
                return Err(ExecError::Spawn {
                    plugin: plugin.to_string(),
                    path: path.into(),
                    source,
                })
            }
            // Dropping the future kills the child (kill_on_drop).
            Err(_) => {
                return Err(ExecError::Timeout {
                    plugin: plugin.to_string(),
                    command,
                    timeout: self.timeout,
                })
            }
        };
        let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if stderr.len() > MAX_STDERR {
            let mut cut = MAX_STDERR;
            while !stderr.is_char_boundary(cut) {
                cut -= 1;
            }
            stderr.truncate(cut);
            stderr.push('…');
        }
        if output.status.success() {
            if !stderr.trim().is_empty() {
                tracing::debug!(plugin, %command, stderr = %stderr.trim(), "CNI plugin stderr");
            }
            return Ok(output.stdout);
        }
        match ErrorObject::parse(&output.stdout) {
            Some(error) => Err(ExecError::Plugin {
                plugin: plugin.to_string(),
                command,
                error: Box::new(error),
                stderr,
            }),
            None => Err(ExecError::Failed {
                plugin: plugin.to_string(),
                command,
                status: output.status,
                stdout: output.stdout,
                stderr,
            }),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn find_searches_dirs_in_order_and_names_them_when_missing() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        script(b.path(), "p", "true");
        std::fs::write(a.path().join("p"), "not executable").unwrap();
        let exec = PluginExec::new(vec![a.path().into(), b.path().into()], Duration::from_secs(5));
        assert_eq!(exec.find("p").unwrap(), b.path().join("p"));
        let err = exec.find("missing").unwrap_err().to_string();
        assert!(
            err.contains("\"missing\"") && err.contains(&a.path().display().to_string()),
            "{err}"
        );
        assert!(exec.find("../p").is_err());
    }

    #[tokio::test]
    async fn env_and_stdin_reach_the_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            dir.path(),
            "echoer",
            r#"printf '{"cmd":"%s","id":"%s","netns":"%s","if":"%s","args":"%s","path":"%s","stdin":' \
                "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH"; cat; printf '}'"#,
        );
        let exec = PluginExec::new(vec![dir.path().into()], Duration::from_secs(5));
        let env = InvokeEnv {
            container_id: "c1".into(),
            netns: "/n".into(),
            ifname: "eth0".into(),
            args: "A=1".into(),
        };
        let out = exec
            .run("echoer", &p, CniCommand::Add, &env, br#"{"x":1}"#)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cmd"], "ADD");
        assert_eq!(v["id"], "c1");
        assert_eq!(v["netns"], "/n");
        assert_eq!(v["if"], "eth0");
        assert_eq!(v["args"], "A=1");
        assert_eq!(v["path"], dir.path().display().to_string());
        assert_eq!(v["stdin"]["x"], 1);
    }

    #[tokio::test]
    async fn error_object_and_stderr_become_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            dir.path(),
            "failer",
            r#"echo 'oops on stderr' >&2; echo '{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"why"}'; exit 1"#,
        );
        let exec = PluginExec::new(vec![dir.path().into()], Duration::from_secs(5));
        let err = exec
            .run("failer", &p, CniCommand::Add, &InvokeEnv::default(), b"{}")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.error_object().unwrap().code, 7);
        assert!(
            text.contains("failer") && text.contains("bad") && text.contains("why"),
            "{text}"
        );
        assert!(text.contains("oops on stderr"), "{text}");
    }

    #[tokio::test]
    async fn non_json_failure_keeps_output() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "crash", "echo panic: boom; echo trace >&2; exit 2");
        let exec = PluginExec::new(vec![dir.path().into()], Duration::from_secs(5));
        let err = exec
            .run("crash", &p, CniCommand::Del, &InvokeEnv::default(), b"{}")
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::Failed { .. }));
        let text = err.to_string();
        assert!(
            text.contains("panic: boom") && text.contains("trace") && text.contains("DEL"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "sleeper", "exec sleep 30");
        let exec = PluginExec::new(vec![dir.path().into()], Duration::from_millis(200));
        let start = std::time::Instant::now();
        let err = exec
            .run("sleeper", &p, CniCommand::Add, &InvokeEnv::default(), b"{}")
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
