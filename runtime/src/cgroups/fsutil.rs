//! cgroupfs file access shared by the v1 and v2 managers: reads and writes
//! that name the file in their errors, value parsing, recursive pid
//! listing and leaf-first removal.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::files::{CGROUP_PROCS, MAX};
use super::{CgroupError, Result};

/// How long [`remove_tree`] keeps retrying a busy directory.
const RMDIR_RETRY_FOR: Duration = Duration::from_secs(2);

/// v1 reports "no limit" as the largest page-aligned i64; anything at or
/// above this counts as unlimited.
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

/// Writes `value` to `dir/name` (the file must exist, as in cgroupfs).
pub(crate) fn write(dir: &Path, name: &str, value: &str) -> Result<()> {
    let path = dir.join(name);
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write {
            path,
            value: value.to_string(),
            source,
        })
}

/// Reads `dir/name`.
pub(crate) fn read(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })
}

/// Reads `dir/name`, `None` when the file does not exist.
pub(crate) fn read_opt(dir: &Path, name: &str) -> Result<Option<String>> {
    match read(dir, name) {
        Ok(s) => Ok(Some(s)),
        Err(CgroupError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `dir/name` exists.
pub(crate) fn exists(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}

fn parse_err(path: PathBuf, reason: impl Into<String>) -> CgroupError {
    CgroupError::Parse {
        path,
        reason: reason.into(),
    }
}

/// Parses a file holding one unsigned number.
pub(crate) fn parse_u64(path: &Path, content: &str) -> Result<u64> {
    content
        .trim()
        .parse()
        .map_err(|_| parse_err(path.to_path_buf(), format!("not a number: {content:?}")))
}

/// Reads a single-number file, `None` if absent.
pub(crate) fn read_u64_opt(dir: &Path, name: &str) -> Result<Option<u64>> {
    read_opt(dir, name)?.map(|c| parse_u64(&dir.join(name), &c)).transpose()
}

/// Parses a limit: `max` (v2) or the v1 "unlimited" value → `None`.
pub(crate) fn parse_limit(path: &Path, content: &str) -> Result<Option<u64>> {
    if content.trim() == MAX {
        return Ok(None);
    }
    let v = parse_u64(path, content)?;
    Ok((v < V1_UNLIMITED).then_some(v))
}

/// Reads a limit file (see [`parse_limit`]); absent → `None`.
pub(crate) fn read_limit_opt(dir: &Path, name: &str) -> Result<Option<u64>> {
    match read_opt(dir, name)? {
        Some(c) => parse_limit(&dir.join(name), &c),
        None => Ok(None),
    }
}

/// Finds `key` in a flat keyed file (`key value` per line).
pub(crate) fn keyed_value(path: &Path, content: &str, key: &str) -> Result<Option<u64>> {
    for line in content.lines() {
        let mut it = line.split_whitespace();
        if it.next() == Some(key) {
            let v = it
                .next()
                .ok_or_else(|| parse_err(path.to_path_buf(), format!("key {key} has no value")))?;
            return parse_u64(path, v).map(Some);
        }
    }
    Ok(None)
}

/// Reads `key` from the flat keyed file `dir/name`; absent file or key → `None`.
pub(crate) fn read_keyed_opt(dir: &Path, name: &str, key: &str) -> Result<Option<u64>> {
    match read_opt(dir, name)? {
        Some(c) => keyed_value(&dir.join(name), &c, key),
        None => Ok(None),
    }
}

/// Creates `dir` and its missing parents; returns the directories that
/// were created, outermost first.
pub(crate) fn mkdir_p(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    missing.reverse();
    for d in &missing {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CgroupError::Mkdir {
                    path: d.clone(),
                    source,
                })
            }
        }
    }
    Ok(missing)
}

/// Every pid in `dir`'s `cgroup.procs` and in all its descendants'.
pub(crate) fn procs_recursive(dir: &Path) -> Result<Vec<Pid>> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let content = read_opt(&d, CGROUP_PROCS)?.unwrap_or_default();
        let path = d.join(CGROUP_PROCS);
        for line in content.lines().filter(|l| !l.trim().is_empty()) {
            let pid = line
                .trim()
                .parse::<i32>()
                .map_err(|_| parse_err(path.clone(), format!("bad pid {line:?}")))?;
            pids.push(Pid::from_raw(pid));
        }
        stack.extend(subdirs(&d)?);
    }
    Ok(pids)
}

/// Child directories of `dir` (child cgroups); none if `dir` is gone.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Removes `dir` and its child cgroups, leaf-first. A directory the kernel
/// reports busy (processes still exiting) is retried for a short while; an
/// absent directory is fine.
///
/// cgroupfs directories contain only kernel files, which `rmdir` removes
/// with them; in a fake tree (tests) plain files are removed first, as the
/// kernel would.
pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    for child in subdirs(dir)? {
        remove_tree(&child)?;
    }
    let deadline = Instant::now() + RMDIR_RETRY_FOR;
    let mut pause = Duration::from_millis(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && is_fake_tree(dir) => {
                remove_plain_files(dir)?;
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::Rmdir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// A directory not on cgroupfs/cgroup2fs (statfs magic): a test tree.
fn is_fake_tree(dir: &Path) -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    match statfs(dir) {
        Ok(st) => {
            let fs = st.filesystem_type();
            fs != CGROUP_SUPER_MAGIC && fs != CGROUP2_SUPER_MAGIC
        }
        Err(_) => false,
    }
}

fn remove_plain_files(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| CgroupError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            std::fs::remove_file(entry.path()).map_err(|source| CgroupError::Rmdir {
                path: entry.path(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Keeps the first error and adds a later one to it.
pub(crate) fn chain(acc: Option<CgroupError>, next: CgroupError) -> CgroupError {
    match acc {
        None => next,
        Some(first) => CgroupError::Multiple {
            first: Box::new(first),
            second: Box::new(next),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_keyed_files_parse() {
        let p = Path::new("/x");
        assert_eq!(parse_limit(p, "max\n").unwrap(), None);
        assert_eq!(parse_limit(p, "9223372036854771712\n").unwrap(), None);
        assert_eq!(parse_limit(p, "16777216\n").unwrap(), Some(16 << 20));
        assert!(parse_limit(p, "lots").unwrap_err().to_string().contains("/x"));
        let c = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(p, c, "oom_kill").unwrap(), Some(3));
        assert_eq!(keyed_value(p, c, "nope").unwrap(), None);
        assert!(keyed_value(p, "oom_kill\n", "oom_kill").is_err());
    }

    #[test]
    fn writes_need_an_existing_file_and_name_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pids.max"), "max\n").unwrap();
        write(dir.path(), "pids.max", "10").unwrap();
        assert_eq!(read(dir.path(), "pids.max").unwrap(), "10");
        let err = write(dir.path(), "memory.max", "1").unwrap_err();
        assert!(err.to_string().contains("memory.max"), "{err}");
        assert_eq!(read_opt(dir.path(), "memory.max").unwrap(), None);
    }

    #[test]
    fn mkdir_p_reports_created_dirs_and_remove_tree_is_leaf_first() {
        let dir = tempfile::tempdir().unwrap();
        let leaf = dir.path().join("a/b/c");
        let created = mkdir_p(&leaf).unwrap();
        assert_eq!(
            created,
            vec![dir.path().join("a"), dir.path().join("a/b"), leaf.clone()]
        );
        assert!(mkdir_p(&leaf).unwrap().is_empty());
        std::fs::create_dir(leaf.join("sub")).unwrap();
        std::fs::write(leaf.join(CGROUP_PROCS), "12\n13\n").unwrap();
        std::fs::write(leaf.join("sub").join(CGROUP_PROCS), "14\n").unwrap();
        let mut pids: Vec<i32> = procs_recursive(&dir.path().join("a"))
            .unwrap()
            .into_iter()
            .map(Pid::as_raw)
            .collect();
        pids.sort();
        assert_eq!(pids, [12, 13, 14]);
        remove_tree(&dir.path().join("a/b")).unwrap();
        assert!(!dir.path().join("a/b").exists());
        assert!(dir.path().join("a").exists());
        remove_tree(&dir.path().join("a/b")).unwrap();
    }
}
