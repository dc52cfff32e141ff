//! Small readers of `/proc/<pid>/…` facts the engine needs.

use std::fs;

/// Parses `/proc/<pid>/stat` after the `comm` field (which may hold spaces
/// and parentheses), returning fields 3.. (state is index 0).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// Start time of `pid` in clock ticks since boot (field 22), if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether `pid` runs (exists and is not a zombie) with start time
/// `start_time`: one read of its stat file.
pub fn is_running_since(pid: i32, start_time: u64) -> bool {
    stat_fields(pid).is_some_and(|f| {
        f.get(19).and_then(|t| t.parse::<u64>().ok()) == Some(start_time)
            && f.first().is_some_and(|s| s != "Z" && s != "X")
    })
}

/// Whether `pid` is a zombie (or dead) process.
pub fn is_zombie(pid: i32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|s| s == "Z" || s == "X")
}

/// The state letter of `pid` (field 3: `R`, `S`, `D`, `T`, `t`, `Z`, …),
/// if it exists.
pub fn state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The parent of `pid` (field 4), if it exists.
pub fn parent_pid(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Every descendant of `pid` (zombies included), parents before their
/// children.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut children: std::collections::HashMap<i32, Vec<i32>> = std::collections::HashMap::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
            if let Some(pp) = parent_pid(p) {
                children.entry(pp).or_default().push(p);
            }
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            out.push(c);
            queue.push(c);
        }
    }
    out
}

/// The calling process's current `oom_score_adj`.
pub fn own_oom_score_adj() -> Option<i32> {
    fs::read_to_string("/proc/self/oom_score_adj").ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_stat() {
        let pid = std::process::id() as i32;
        let start = super::start_time(pid).unwrap();
        assert!(!super::is_zombie(pid));
        assert!(super::is_running_since(pid, start));
        assert!(!super::is_running_since(pid, start + 1));
        assert!(!super::is_running_since(i32::MAX, start));
        assert!(super::start_time(i32::MAX).is_none());
        assert!(super::own_oom_score_adj().is_some());
        assert!(matches!(super::state(pid), Some('R' | 'S')));
        assert_eq!(super::state(i32::MAX), None);
        assert_eq!(super::parent_pid(pid), Some(nix::unistd::getppid().as_raw()));
    }

    #[test]
    fn finds_descendants() {
        let mut child = std::process::Command::new("sleep").arg("10").spawn().unwrap();
        let me = std::process::id() as i32;
        assert!(super::descendants(me).contains(&(child.id() as i32)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
