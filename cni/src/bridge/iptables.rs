//! A thin async wrapper over the `iptables`, `iptables-save` and
//! `iptables-restore` binaries, plus parsing of saved rules.
//!
//! Batches go through `iptables-restore --noflush`, one process per change set,
//! which keeps a pod's hostPort rules to one or two execs.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("cannot run {}: {source}", .bin.display())]
    Spawn { bin: PathBuf, source: std::io::Error },
    #[error("{} {args} failed ({status}): {stderr}", .bin.display())]
    Failed {
        bin: PathBuf,
        args: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// The iptables binaries to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iptables {
    pub iptables: PathBuf,
    pub save: PathBuf,
    pub restore: PathBuf,
}

impl Default for Iptables {
    fn default() -> Self {
        Iptables {
            iptables: "iptables".into(),
            save: "iptables-save".into(),
            restore: "iptables-restore".into(),
        }
    }
}

impl Iptables {
    async fn exec(&self, bin: &PathBuf, args: &[&str], stdin: Option<&str>) -> Result<String, IptablesError> {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().map_err(|source| IptablesError::Spawn {
            bin: bin.clone(),
            source,
        })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .await
                .map_err(|source| IptablesError::Spawn {
                    bin: bin.clone(),
                    source,
                })?;
        }
        let out = child.wait_with_output().await.map_err(|source| IptablesError::Spawn {
            bin: bin.clone(),
            source,
        })?;
        if !out.status.success() {
            let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if let Some(input) = stdin {
                stderr.push_str(&format!(" (input: {})", input.trim().replace('\n', " | ")));
            }
            return Err(IptablesError::Failed {
                bin: bin.clone(),
                args: args.join(" "),
                status: out.status,
                stderr,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `iptables-save -t <table>`.
    pub async fn save(&self, table: &str) -> Result<String, IptablesError> {
        self.exec(&self.save, &["-t", table], None).await
    }

    /// The rules of one chain in save format, or `None` when the chain does not exist.
    pub async fn list_chain(&self, table: &str, chain: &str) -> Result<Option<Vec<String>>, IptablesError> {
        match self.exec(&self.iptables, &["-w", "-t", table, "-S", chain], None).await {
            Ok(out) => Ok(Some(
                out.lines()
                    .filter(|l| l.starts_with("-A "))
                    .map(str::to_string)
                    .collect(),
            )),
            Err(IptablesError::Failed { stderr, .. })
                if stderr.contains("No chain") || stderr.contains("does not exist") =>
            {
                Ok(None)
            }
            // iptables-nft 1.8.9 calls a missing chain "incompatible, use 'nft' tool".
            Err(e @ IptablesError::Failed { .. }) => {
                if saved_chains(&self.save(table).await?).iter().any(|c| c == chain) {
                    Err(e)
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Applies `lines` (`-A …`, `-D …`, `-I …`, `:CHAIN - [0:0]`, `-X CHAIN`) to `table`
    /// in one `iptables-restore --noflush` transaction. Empty input is a no-op.
    pub async fn apply(&self, table: &str, lines: &[String]) -> Result<(), IptablesError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut input = format!("*{table}\n");
        for l in lines {
            input.push_str(l);
            input.push('\n');
        }
        input.push_str("COMMIT\n");
        self.exec(&self.restore, &["-w", "--noflush"], Some(&input))
            .await
            .map(drop)
    }
}

/// Splits a saved rule into words, honouring double quotes.
pub fn split_rule(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The `--comment` of a saved rule.
pub fn rule_comment(line: &str) -> Option<String> {
    let words = split_rule(line);
    words
        .iter()
        .position(|w| w == "--comment")
        .and_then(|i| words.get(i + 1).cloned())
}

/// The chain a saved `-A CHAIN …` rule belongs to.
pub fn rule_chain(line: &str) -> Option<&str> {
    line.strip_prefix("-A ")?.split_whitespace().next()
}

/// User chains declared in `iptables-save` output (`:NAME - [0:0]`).
pub fn saved_chains(save: &str) -> Vec<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Turns a saved `-A` rule into the `-D` that removes it.
pub fn delete_of(line: &str) -> Option<String> {
    line.strip_prefix("-A ").map(|rest| format!("-D {rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_saved_rules() {
        let line = r#"-A BERTH-HOSTPORTS -p tcp -m tcp --dport 8080 -m comment --comment "berth-pod:abc" -j DNAT --to-destination 10.88.0.2:80"#;
        assert_eq!(rule_comment(line).as_deref(), Some("berth-pod:abc"));
        assert_eq!(rule_chain(line), Some("BERTH-HOSTPORTS"));
        assert!(delete_of(line).unwrap().starts_with("-D BERTH-HOSTPORTS -p tcp"));
        let unquoted = "-A X -m comment --comment berth-pod:abcd -j ACCEPT";
        assert_eq!(rule_comment(unquoted).as_deref(), Some("berth-pod:abcd"));
        assert_eq!(split_rule(r#"a "b c" d"#), vec!["a", "b c", "d"]);
        assert_eq!(rule_comment("-A X -j ACCEPT"), None);
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:BERTH-HOSTPORTS - [0:0]\n-A X -j Y\nCOMMIT\n";
        assert_eq!(saved_chains(save), vec!["PREROUTING", "BERTH-HOSTPORTS"]);
    }
}
