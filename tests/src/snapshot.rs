//! Reading unpacked snapshots back and comparing them with the builder's
//! expectations.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_hack::expect::{FileExpect, FileKind, OPAQUE_XATTR};
use sha2::{Digest, Sha256};

/// Which xattrs are compared: the ones layers carry and overlay's own.
fn compared_xattr(name: &str) -> bool {
    name.starts_with("user.") || name.starts_with("trusted.overlay.")
}

/// Every path under `root` (not `root` itself) in [`FileExpect`] form,
/// sorted by path. Hardlinked files name the first path (in sorted order)
/// of their inode as `hardlink_of`.
pub fn scan(root: &Path) -> std::io::Result<Vec<FileExpect>> {
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    let mut first_of_inode: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut result = Vec::new();
    for (mut e, dev_ino, nlink) in out {
        if e.kind == FileKind::File && nlink > 1 {
            match first_of_inode.get(&dev_ino) {
                Some(first) => e.hardlink_of = Some(first.clone()),
                None => {
                    first_of_inode.insert(dev_ino, e.path.clone());
                }
            }
        }
        result.push(e);
    }
    Ok(result)
}

type Scanned = (FileExpect, (u64, u64), u64);

fn walk(root: &Path, dir: &Path, out: &mut Vec<Scanned>) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for ent in entries {
        let path = ent.path();
        let md = fs::symlink_metadata(&path)?;
        let rel = path
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let ft = md.file_type();
        let mut xattrs = BTreeMap::new();
        if !ft.is_symlink() {
            if let Ok(names) = xattr::list(&path) {
                for n in names {
                    let n = n.to_string_lossy().into_owned();
                    if compared_xattr(&n) {
                        if let Ok(Some(v)) = xattr::get(&path, &n) {
                            xattrs.insert(n, String::from_utf8_lossy(&v).into_owned());
                        }
                    }
                }
            }
        }
        let rdev = (
            nix::sys::stat::major(md.rdev()) as u32,
            nix::sys::stat::minor(md.rdev()) as u32,
        );
        let mut e = FileExpect {
            path: rel,
            kind: FileKind::File,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime().max(0) as u64,
            size: 0,
            sha256: None,
            target: None,
            rdev: None,
            xattrs,
            hardlink_of: None,
        };
        if ft.is_dir() {
            e.kind = FileKind::Dir;
            out.push((e, (md.dev(), md.ino()), md.nlink()));
            walk(root, &path, out)?;
            continue;
        } else if ft.is_symlink() {
            let t = fs::read_link(&path)?.to_string_lossy().into_owned();
            e.kind = FileKind::Symlink;
            e.size = t.len() as u64;
            e.target = Some(t);
        } else if ft.is_file() {
            let data = fs::read(&path)?;
            e.size = data.len() as u64;
            e.sha256 = Some(format!("sha256:{}", hex::encode(Sha256::digest(&data))));
        } else if ft.is_char_device() {
            e.kind = if rdev == (0, 0) {
                FileKind::Whiteout
            } else {
                FileKind::Char
            };
            e.rdev = Some(rdev);
        } else if ft.is_block_device() {
            e.kind = FileKind::Block;
            e.rdev = Some(rdev);
        } else if ft.is_fifo() {
            e.kind = FileKind::Fifo;
        }
        out.push((e, (md.dev(), md.ino()), md.nlink()));
    }
    Ok(())
}

/// Blanks what is not compared: symlink modes (always 0777 on Linux),
/// whiteout modes and owners, mtimes of anything but regular files
/// (directory mtimes change as entries are added unless the unpacker resets
/// them, which overlayfs does not need).
pub fn normalise(mut e: FileExpect) -> FileExpect {
    match e.kind {
        FileKind::Symlink => e.mode = 0,
        FileKind::Whiteout => {
            e.mode = 0;
            e.uid = 0;
            e.gid = 0;
            e.xattrs.clear();
        }
        _ => {}
    }
    if e.kind != FileKind::File {
        e.mtime = 0;
    }
    if e.kind == FileKind::Dir {
        e.size = 0;
    }
    e.xattrs.retain(|k, _| compared_xattr(k));
    e
}

/// Differences between expected and actual entries, one line each
/// (empty when equal).
pub fn diff(expected: &[FileExpect], actual: &[FileExpect]) -> Vec<String> {
    let exp: BTreeMap<_, _> = expected
        .iter()
        .cloned()
        .map(normalise)
        .map(|e| (e.path.clone(), e))
        .collect();
    let act: BTreeMap<_, _> = actual
        .iter()
        .cloned()
        .map(normalise)
        .map(|e| (e.path.clone(), e))
        .collect();
    let mut out = Vec::new();
    for (p, e) in &exp {
        match act.get(p) {
            None => out.push(format!("missing: {p} ({:?})", e.kind)),
            Some(a) if a != e => out.push(format!("differs: {p}\n  expected {e:?}\n  actual   {a:?}")),
            Some(_) => {}
        }
    }
    for p in act.keys() {
        if !exp.contains_key(p) {
            out.push(format!("unexpected: {p}"));
        }
    }
    out
}

/// Panics with a readable list when `dir` does not hold exactly `expected`.
pub fn assert_snapshot(dir: &Path, expected: &[FileExpect]) {
    let actual = scan(dir).unwrap_or_else(|e| panic!("scanning {}: {e}", dir.display()));
    let d = diff(expected, &actual);
    assert!(
        d.is_empty(),
        "snapshot {} differs from the layer ({} problems):\n{}",
        dir.display(),
        d.len(),
        d.join("\n")
    );
}

/// Whether a directory carries the overlay opaque marker.
pub fn is_opaque(e: &FileExpect) -> bool {
    e.xattrs.get(OPAQUE_XATTR).map(String::as_str) == Some("y")
}

/// Names in `<root>/snapshots` that are chain-ID directories (64 hex).
pub fn committed(root: &Path) -> std::collections::BTreeSet<String> {
    names(&root.join("snapshots"))
        .into_iter()
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

/// Entries of a directory (empty if it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What a crash or failure must not leave behind: downloads in
/// `content/ingest/`, and anything in `snapshots/` that is not a committed
/// chain-ID directory (temp unpacks, trash).
pub fn leftovers(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = names(&root.join("content/ingest"))
        .into_iter()
        .map(|n| format!("content/ingest/{n}"))
        .collect();
    let committed = committed(root);
    out.extend(
        names(&root.join("snapshots"))
            .into_iter()
            .filter(|n| !committed.contains(n))
            .map(|n| format!("snapshots/{n}")),
    );
    out
}

/// Every path under `dir` whose file name contains `needle` (symlinks not
/// followed).
pub fn find_named(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().contains(needle) {
                out.push(p.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out
}

/// The merged view of snapshot directories, bottom first, as overlayfs
/// would show it.
pub fn merged_view(dirs: &[std::path::PathBuf]) -> std::io::Result<Vec<FileExpect>> {
    let layers = dirs.iter().map(|d| scan(d)).collect::<std::io::Result<Vec<_>>>()?;
    Ok(berth_hack::expect::merge(&layers))
}
