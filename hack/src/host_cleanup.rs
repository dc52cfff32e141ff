//! Removing what a daemon under test left on the host: iptables rules and
//! chains, cgroups (with the processes still in them), mounts under a dir,
//! stray processes, and files that appeared in a shared dir during a run.
//! Every step is best effort and reports problems on stderr: it runs after
//! failures too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn quiet(cmd: &str, args: &[&str]) {
    let _ = Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Deletes a network interface; absent is fine.
pub fn delete_link(name: &str) {
    quiet("ip", &["link", "del", name]);
}

const TABLES: [&str; 2] = ["nat", "filter"];

/// Chain names per table (`iptables-save`), to tell later which ones a run
/// created.
#[derive(Debug, Default, Clone)]
pub struct IptablesChains(Vec<(String, BTreeSet<String>)>);

impl IptablesChains {
    pub fn snapshot() -> IptablesChains {
        IptablesChains(
            TABLES
                .iter()
                .map(|t| (t.to_string(), chains_of(&sh("iptables-save", &["-t", t]))))
                .collect(),
        )
    }

    fn has(&self, table: &str, chain: &str) -> bool {
        self.0.iter().any(|(t, cs)| t == table && cs.contains(chain))
    }
}

fn chains_of(saved: &str) -> BTreeSet<String> {
    saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn delete_rule(table: &str, line: &str) {
    quiet("sh", &["-c", &format!("iptables -w -t {table} -D {}", &line[3..])]);
}

fn delete_chain(table: &str, chain: &str) {
    quiet("iptables", &["-w", "-t", table, "-F", chain]);
    quiet("iptables", &["-w", "-t", table, "-X", chain]);
}

/// Deletes every iptables rule containing one of `needles`, the `CNI-*`
/// chains they jump to and the chains named `<chain_prefix>-*`.
pub fn remove_iptables(needles: &[String], chain_prefix: Option<&str>) {
    for table in TABLES {
        let saved = sh("iptables-save", &["-t", table]);
        let mut chains = Vec::new();
        for line in saved
            .lines()
            .filter(|l| l.starts_with("-A ") && needles.iter().any(|n| l.contains(n.as_str())))
        {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(t) = words.iter().position(|w| *w == "-j").and_then(|i| words.get(i + 1)) {
                if t.starts_with("CNI-") {
                    chains.push(t.to_string());
                }
            }
            delete_rule(table, line);
        }
        if let Some(p) = chain_prefix {
            chains.extend(
                chains_of(&saved)
                    .into_iter()
                    .filter(|c| c.starts_with(&format!("{p}-"))),
            );
        }
        for c in chains {
            delete_chain(table, &c);
        }
    }
}

/// Deletes the chains starting with `prefix` that are not in `before`, and
/// every rule jumping to them (e.g. the CNI portmap plugin's shared
/// `CNI-HOSTPORT-*` chains, when this run created them).
pub fn remove_new_chains(before: &IptablesChains, prefix: &str) {
    for table in TABLES {
        let saved = sh("iptables-save", &["-t", table]);
        let new: Vec<String> = chains_of(&saved)
            .into_iter()
            .filter(|c| c.starts_with(prefix) && !before.has(table, c))
            .collect();
        if new.is_empty() {
            continue;
        }
        for line in saved.lines().filter(|l| l.starts_with("-A ")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let target = words.iter().position(|w| *w == "-j").and_then(|i| words.get(i + 1));
            if target.is_some_and(|t| new.iter().any(|c| c == t)) {
                delete_rule(table, line);
            }
        }
        for c in &new {
            delete_chain(table, c);
        }
    }
}

/// Removes a berthd's built-in network: the bridge, every iptables rule
/// tagged with it (berth tags its rules `berth:<bridge>:…` /
/// `berth:<chain prefix>:jump`) or containing one of `extra_needles`, the
/// `CNI-*` chains those rules jump to, and the chains `<chain_prefix>-*`.
pub fn remove_berth_network(bridge: &str, chain_prefix: &str, extra_needles: &[String]) {
    delete_link(bridge);
    let mut needles = extra_needles.to_vec();
    needles.push(format!("berth:{bridge}:"));
    needles.push(format!("berth:{chain_prefix}:jump"));
    needles.push(format!("-j {chain_prefix}-"));
    remove_iptables(&needles, Some(chain_prefix));
}

/// Every cgroup dir at or below `rel` in every hierarchy, parents first.
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for root in roots.flatten() {
        let top = root.path().join(rel);
        if !top.is_dir() {
            continue;
        }
        let start = dirs.len();
        dirs.push(top);
        let mut i = start;
        while i < dirs.len() {
            if let Ok(es) = std::fs::read_dir(&dirs[i]) {
                dirs.extend(es.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
            i += 1;
        }
    }
    dirs
}

/// SIGKILLs every process in `rel` (a cgroup path, any hierarchy) and
/// removes it, deepest first.
pub fn remove_cgroups(rel: &str) {
    let dirs = cgroup_dirs(rel);
    for _ in 0..50 {
        let mut alive = false;
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                alive = true;
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for d in dirs.iter().rev() {
        if let Err(e) = std::fs::remove_dir(d) {
            eprintln!("warning: rmdir {}: {e}", d.display());
        }
    }
}

/// Unmounts everything mounted under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let d = format!("{}/", dir.display());
    let mut targets: Vec<String> = sh("findmnt", &["-rn", "-o", "TARGET"])
        .lines()
        .filter(|t| t.starts_with(&d))
        .map(str::to_string)
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        quiet("umount", &["-l", &t]);
    }
}

/// SIGKILLs every process whose command line contains all of `needles`.
pub fn kill_matching(needles: &[&str]) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if needles.iter().all(|n| cmdline.contains(n)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// What existed at and under a shared dir (e.g. `/run/containerd`) before a
/// run, so that afterwards only what the run added is removed.
#[derive(Debug)]
pub struct DirSnapshot {
    root: PathBuf,
    existed: BTreeSet<PathBuf>,
}

fn walk(root: &Path, out: &mut BTreeSet<PathBuf>) {
    if std::fs::symlink_metadata(root).is_err() {
        return;
    }
    out.insert(root.to_path_buf());
    if let Ok(es) = std::fs::read_dir(root) {
        for e in es.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out);
            } else {
                out.insert(e.path());
            }
        }
    }
}

impl DirSnapshot {
    pub fn take(root: &Path) -> DirSnapshot {
        let mut existed = BTreeSet::new();
        walk(root, &mut existed);
        DirSnapshot {
            root: root.to_path_buf(),
            existed,
        }
    }

    /// Removes the files and (then empty) dirs that appeared since
    /// [`DirSnapshot::take`], deepest first.
    pub fn remove_new(&self) {
        let mut now = BTreeSet::new();
        walk(&self.root, &mut now);
        let added: Vec<&PathBuf> = now.difference(&self.existed).collect();
        for p in added.into_iter().rev() {
            let r = if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                std::fs::remove_dir(p)
            } else {
                std::fs::remove_file(p)
            };
            if let Err(e) = r {
                eprintln!("warning: remove {}: {e}", p.display());
            }
        }
    }
}

/// Removes the files in `dir` whose names start with `prefix`.
pub fn remove_files_with_prefix(dir: &Path, prefix: &str) {
    let Ok(es) = std::fs::read_dir(dir) else { return };
    for e in es.flatten() {
        if e.file_name().to_string_lossy().starts_with(prefix) {
            if let Err(err) = std::fs::remove_file(e.path()) {
                eprintln!("warning: remove {}: {err}", e.path().display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_removes_only_what_appeared_after_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("shared");
        std::fs::create_dir_all(root.join("old")).unwrap();
        std::fs::write(root.join("old/keep"), "").unwrap();
        let snap = DirSnapshot::take(&root);
        std::fs::create_dir_all(root.join("old/new/deeper")).unwrap();
        std::fs::write(root.join("old/new/deeper/f"), "").unwrap();
        std::fs::write(root.join("added"), "").unwrap();
        snap.remove_new();
        assert!(root.join("old/keep").exists());
        assert!(!root.join("old/new").exists());
        assert!(!root.join("added").exists());

        let absent = tmp.path().join("absent");
        let snap = DirSnapshot::take(&absent);
        std::fs::create_dir_all(absent.join("s")).unwrap();
        snap.remove_new();
        assert!(!absent.exists());
    }

    #[test]
    fn chains_are_read_from_iptables_save() {
        let saved =
            "*nat\n:PREROUTING ACCEPT [0:0]\n:CNI-HOSTPORT-DNAT - [0:0]\n-A PREROUTING -j CNI-HOSTPORT-DNAT\nCOMMIT\n";
        let c = chains_of(saved);
        assert!(c.contains("PREROUTING") && c.contains("CNI-HOSTPORT-DNAT") && c.len() == 2);
    }
}
