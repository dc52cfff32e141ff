use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use tempfile::TempDir;

use super::*;
use crate::atfs::get_xattr;
use crate::testutil::{compress, skip_without_root, Tar};

const MTIME: i64 = 1_600_000_000;

/// A snapshot dir, and a sibling "outside" dir with one sentinel file that
/// no layer may touch.
struct Fixture {
    _dir: TempDir,
    snap: PathBuf,
    outside: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    let outside = dir.path().join("outside");
    fs::create_dir(&snap).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("sentinel"), b"precious").unwrap();
    Fixture {
        _dir: dir,
        snap,
        outside,
    }
}

impl Fixture {
    fn apply(&self, tar: &[u8]) -> Result<UnpackStats> {
        self.apply_with(tar, &Limits::default())
    }

    fn apply_with(&self, tar: &[u8], limits: &Limits) -> Result<UnpackStats> {
        apply_layer(
            tar,
            Compression::None,
            &self.snap,
            &Digest::of(b"layer"),
            &Digest::of(tar),
            limits,
        )
    }

    fn outside_str(&self) -> String {
        self.outside.to_str().unwrap().to_string()
    }

    /// The outside dir holds exactly the sentinel, unchanged and unlinked.
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![OsString::from("sentinel")],
            "something was written outside the snapshot"
        );
        assert_eq!(fs::read(self.outside.join("sentinel")).unwrap(), b"precious");
        assert_eq!(fs::metadata(self.outside.join("sentinel")).unwrap().nlink(), 1);
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.snap.join(rel)
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn expect_hostile(result: Result<UnpackStats>) -> String {
    match result {
        Err(ImagesError::HostileLayer { reason, .. }) => reason,
        other => panic!("expected HostileLayer, got {other:?}"),
    }
}

#[test]
fn regular_files_dirs_modes_symlinks_and_hardlinks() {
    let fx = fixture();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let tar = Tar::new()
        .dir("./", 0o755)
        .dir("etc/", 0o750)
        .file("etc/hosts", 0o644, b"127.0.0.1 localhost\n")
        .file("bin/tool", 0o4755, b"\x7fELF")
        .file("bin/group-tool", 0o2711, b"g")
        .dir("tmp/", 0o1777)
        .symlink("bin/sh", "/bin/busybox")
        .symlink("etc/rel", "../bin/tool")
        .hardlink("etc/hosts.bak", "etc/hosts")
        .hardlink("/etc/hosts.abs", "/etc/hosts")
        .file("./usr/share/big", 0o600, &big)
        .file("empty", 0o400, b"")
        .finish();
    let stats = fx.apply(&tar).unwrap();
    assert_eq!(stats.entries, 12);
    assert_eq!(stats.file_bytes, 20 + 4 + 1 + big.len() as u64);

    assert_eq!(fs::read(fx.path("etc/hosts")).unwrap(), b"127.0.0.1 localhost\n");
    assert_eq!(fs::read(fx.path("usr/share/big")).unwrap(), big);
    assert_eq!(fs::read(fx.path("empty")).unwrap(), b"");
    assert_eq!(mode(&fx.snap), 0o755);
    assert_eq!(mode(&fx.path("etc")), 0o750);
    assert_eq!(mode(&fx.path("etc/hosts")), 0o644);
    assert_eq!(mode(&fx.path("bin/tool")), 0o4755);
    assert_eq!(mode(&fx.path("bin/group-tool")), 0o2711);
    assert_eq!(mode(&fx.path("tmp")), 0o1777);
    assert_eq!(mode(&fx.path("empty")), 0o400);
    // Created implicitly.
    assert_eq!(mode(&fx.path("bin")), 0o755);
    assert_eq!(mode(&fx.path("usr/share")), 0o755);

    assert_eq!(fs::read_link(fx.path("bin/sh")).unwrap(), Path::new("/bin/busybox"));
    assert_eq!(fs::read_link(fx.path("etc/rel")).unwrap(), Path::new("../bin/tool"));
    let hosts = fs::metadata(fx.path("etc/hosts")).unwrap();
    assert_eq!(hosts.nlink(), 3);
    assert_eq!(fs::metadata(fx.path("etc/hosts.bak")).unwrap().ino(), hosts.ino());
    assert_eq!(fs::metadata(fx.path("etc/hosts.abs")).unwrap().ino(), hosts.ino());

    // mtimes, directories' set after their contents were written.
    for p in ["etc/hosts", "etc", "tmp", "usr/share/big", ""] {
        assert_eq!(fs::symlink_metadata(fx.path(p)).unwrap().mtime(), MTIME, "{p}");
    }
    assert_eq!(fs::symlink_metadata(fx.path("bin/sh")).unwrap().mtime(), MTIME);
}

#[test]
fn later_entries_replace_earlier_ones() {
    let fx = fixture();
    let tar = Tar::new()
        .file("x", 0o644, b"file")
        .dir("x/", 0o755)
        .file("x/y", 0o644, b"y")
        .file("z", 0o644, b"z")
        .symlink("z", "target")
        .dir("d/", 0o755)
        .file("d/child", 0o644, b"c")
        .file("d", 0o600, b"now a file")
        .file("a/../b", 0o644, b"b")
        .dir("x/", 0o700)
        .finish();
    fx.apply(&tar).unwrap();
    assert!(fx.path("x").is_dir());
    assert_eq!(mode(&fx.path("x")), 0o700);
    assert_eq!(fs::read(fx.path("x/y")).unwrap(), b"y");
    assert_eq!(fs::read_link(fx.path("z")).unwrap(), Path::new("target"));
    assert_eq!(fs::read(fx.path("d")).unwrap(), b"now a file");
    // Cleaned lexically: `a` is never created.
    assert_eq!(fs::read(fx.path("b")).unwrap(), b"b");
    assert!(!fx.path("a").exists());
}

#[test]
fn compressed_layers_unpack_the_same() {
    let tar = Tar::new()
        .dir("d/", 0o755)
        .file("d/f", 0o644, &b"content ".repeat(5000))
        .finish();
    for c in [Compression::Gzip, Compression::Zstd] {
        let fx = fixture();
        let blob = compress(&tar, c);
        apply_layer(
            &blob[..],
            c,
            &fx.snap,
            &Digest::of(&blob),
            &Digest::of(&tar),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(fs::read(fx.path("d/f")).unwrap(), b"content ".repeat(5000), "{c:?}");
    }
}

#[test]
fn diff_id_mismatch_and_garbage_are_malformed() {
    let fx = fixture();
    let tar = Tar::new().file("f", 0o644, b"x").finish();
    let wrong = Digest::of(b"something else");
    let err = apply_layer(
        &tar[..],
        Compression::None,
        &fx.snap,
        &Digest::of(b"l"),
        &wrong,
        &Limits::default(),
    );
    assert!(
        matches!(err, Err(ImagesError::Malformed { ref reason, .. }) if reason.contains("image config says")),
        "{err:?}"
    );

    let fx = fixture();
    let err = apply_layer(
        &b"not gzip"[..],
        Compression::Gzip,
        &fx.snap,
        &Digest::of(b"l"),
        &wrong,
        &Limits::default(),
    );
    assert!(matches!(err, Err(ImagesError::Malformed { .. })), "{err:?}");
}

#[test]
fn owners_devices_and_fifos() {
    if skip_without_root("owners_devices_and_fifos") {
        return;
    }
    let fx = fixture();
    let tar = Tar::new()
        .raw(
            b"home/user/file",
            EntryType::Regular,
            0o640,
            (1000, 2000),
            1_600_000_000,
            b"",
            b"data",
        )
        .raw(
            b"home/user/link",
            EntryType::Symlink,
            0o777,
            (33, 34),
            1_600_000_000,
            b"file",
            b"",
        )
        .raw(
            b"home/user/",
            EntryType::Directory,
            0o700,
            (1000, 1000),
            1_600_000_000,
            b"",
            b"",
        )
        .device("dev/null", EntryType::Char, 0o666, 1, 3)
        .device("dev/loop9", EntryType::Block, 0o660, 7, 9)
        .device("run/fifo", EntryType::Fifo, 0o600, 0, 0)
        .finish();
    fx.apply(&tar).unwrap();
    let file = fs::metadata(fx.path("home/user/file")).unwrap();
    assert_eq!((file.uid(), file.gid()), (1000, 2000));
    let link = fs::symlink_metadata(fx.path("home/user/link")).unwrap();
    assert_eq!((link.uid(), link.gid()), (33, 34));
    let dir = fs::metadata(fx.path("home/user")).unwrap();
    assert_eq!((dir.uid(), dir.gid(), dir.mode() & 0o7777), (1000, 1000, 0o700));

    let null = fs::symlink_metadata(fx.path("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lo = fs::symlink_metadata(fx.path("dev/loop9")).unwrap();
    assert!(lo.file_type().is_block_device());
    assert_eq!(lo.rdev(), makedev(7, 9));
    assert_eq!(lo.mode() & 0o7777, 0o660);
    let fifo = fs::symlink_metadata(fx.path("run/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o600);
}

#[test]
fn xattrs_from_pax_records() {
    if skip_without_root("xattrs_from_pax_records") {
        return;
    }
    let fx = fixture();
    // VFS_CAP_REVISION_2 | effective, permitted = CAP_NET_BIND_SERVICE.
    let cap: [u8; 20] = [0x01, 0, 0, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let tar = Tar::new()
        .pax(&[("SCHILY.xattr.user.dir", b"d")])
        .dir("bin/", 0o755)
        .pax(&[
            ("SCHILY.xattr.user.note", b"hi"),
            ("SCHILY.xattr.security.capability", &cap),
            ("SCHILY.xattr.trusted.berth", b"t"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere"),
            ("mtime", b"1600000000.25"),
        ])
        .file("bin/ping", 0o755, b"ping")
        .finish();
    let stats = fx.apply(&tar).unwrap();
    assert_eq!(stats.xattrs_skipped, 1);
    let ping = fx.path("bin/ping");
    assert_eq!(get_xattr(&ping, "user.note").unwrap().as_deref(), Some(&b"hi"[..]));
    assert_eq!(
        get_xattr(&ping, "security.capability").unwrap().as_deref(),
        Some(&cap[..])
    );
    assert_eq!(get_xattr(&ping, "trusted.berth").unwrap().as_deref(), Some(&b"t"[..]));
    assert_eq!(get_xattr(&ping, "trusted.overlay.redirect").unwrap(), None);
    assert_eq!(
        get_xattr(&fx.path("bin"), "user.dir").unwrap().as_deref(),
        Some(&b"d"[..])
    );
    let meta = fs::metadata(&ping).unwrap();
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (MTIME, 250_000_000));
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    if skip_without_root("whiteouts_become_overlay_whiteouts") {
        return;
    }
    let fx = fixture();
    let tar = Tar::new()
        .dir("a/", 0o755)
        .file("a/.wh..wh..opq", 0o644, b"")
        .file("a/keep", 0o644, b"k")
        .file(".wh.gone", 0o644, b"")
        .file("b/.wh.c", 0o644, b"")
        .file("b/.wh..wh.plnk", 0o644, b"")
        .finish();
    fx.apply(&tar).unwrap();
    assert_eq!(
        get_xattr(&fx.path("a"), "trusted.overlay.opaque").unwrap().as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(get_xattr(&fx.path("b"), "trusted.overlay.opaque").unwrap(), None);
    assert_eq!(fs::read(fx.path("a/keep")).unwrap(), b"k");
    for w in ["gone", "b/c"] {
        let m = fs::symlink_metadata(fx.path(w)).unwrap();
        assert!(m.file_type().is_char_device(), "{w}");
        assert_eq!(m.rdev(), 0, "{w}");
    }
    let mut names: Vec<String> = walk(&fx.snap);
    names.sort();
    assert_eq!(names, ["a", "a/keep", "b", "b/c", "gone"]);
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_str().unwrap().to_string());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

// ---- hostile layers ---------------------------------------------------

#[test]
fn dotdot_escape_is_refused() {
    for path in [
        "../outside/evil",
        "a/../../outside/evil",
        "./../evil",
        "a/b/../../../evil",
    ] {
        let fx = fixture();
        let tar = Tar::new()
            .file("a/ok", 0o644, b"ok")
            .file(path, 0o644, b"pwned")
            .finish();
        let reason = expect_hostile(fx.apply(&tar));
        assert!(reason.contains(".."), "{path}: {reason}");
        fx.assert_outside_untouched();
        assert!(!fx.snap.parent().unwrap().join("evil").exists());
    }
}

#[test]
fn absolute_paths_stay_inside() {
    let fx = fixture();
    let abs = format!("{}/sentinel", fx.outside_str());
    let tar = Tar::new()
        .file(&abs, 0o644, b"pwned")
        .file("/etc/passwd", 0o644, b"root")
        .finish();
    fx.apply(&tar).unwrap();
    fx.assert_outside_untouched();
    assert_eq!(fs::read(fx.snap.join(abs.trim_start_matches('/'))).unwrap(), b"pwned");
    assert_eq!(fs::read(fx.path("etc/passwd")).unwrap(), b"root");
}

#[test]
fn symlink_then_write_is_refused() {
    type Followup = fn(&mut Tar) -> &mut Tar;
    let followups: [(&str, Followup); 6] = [
        ("file", |t| t.file("evil/file", 0o644, b"pwned")),
        ("dir", |t| t.dir("evil/sub/", 0o755)),
        ("symlink", |t| t.symlink("evil/sym", "x")),
        ("hardlink", |t| t.hardlink("evil/hl", "ok")),
        ("whiteout", |t| t.file("evil/.wh.sentinel", 0o644, b"")),
        ("opaque", |t| t.file("evil/.wh..wh..opq", 0o644, b"")),
    ];
    for absolute in [true, false] {
        for (what, then) in followups {
            let fx = fixture();
            let target = if absolute {
                fx.outside_str()
            } else {
                "../outside".to_string()
            };
            let mut tar = Tar::new();
            tar.file("ok", 0o644, b"ok").symlink("evil", &target);
            let tar = then(&mut tar).finish();
            let reason = expect_hostile(fx.apply(&tar));
            assert!(reason.contains("symlink"), "{what}: {reason}");
            fx.assert_outside_untouched();
        }
    }
}

#[test]
fn hardlinks_out_of_the_snapshot_are_refused() {
    let fx = fixture();
    let tar = Tar::new().hardlink("l", "../outside/sentinel").finish();
    assert!(expect_hostile(fx.apply(&tar)).contains(".."));
    fx.assert_outside_untouched();

    // An absolute target is taken inside the layer, where it does not exist.
    let fx = fixture();
    let abs = format!("{}/sentinel", fx.outside_str());
    let tar = Tar::new().hardlink("l", &abs).finish();
    assert!(expect_hostile(fx.apply(&tar)).contains("not in this layer"));
    fx.assert_outside_untouched();
    assert!(!fx.path("l").exists());
}

#[test]
fn hardlinks_through_symlinks_are_refused() {
    // Through a symlinked directory.
    let fx = fixture();
    let tar = Tar::new()
        .symlink("evil", &fx.outside_str())
        .hardlink("l", "evil/sentinel")
        .finish();
    assert!(expect_hostile(fx.apply(&tar)).contains("symlink"));
    fx.assert_outside_untouched();

    // To a symlink that points outside.
    let fx = fixture();
    let target = format!("{}/sentinel", fx.outside_str());
    let tar = Tar::new().symlink("s", &target).hardlink("l", "s").finish();
    assert!(expect_hostile(fx.apply(&tar)).contains("symlink"));
    fx.assert_outside_untouched();
    assert!(!fx.path("l").exists());

    // To a directory.
    let fx = fixture();
    let tar = Tar::new().dir("d/", 0o755).hardlink("l", "d").finish();
    assert!(expect_hostile(fx.apply(&tar)).contains("directory"));
}

#[test]
fn malformed_names_and_types_are_refused() {
    let fx = fixture();
    let tar = Tar::new().file("a/.wh..", 0o644, b"").finish();
    assert!(expect_hostile(fx.apply(&tar)).contains("whiteout"));

    let fx = fixture();
    let tar = Tar::new()
        .raw(b"weird", EntryType::new(b'Q'), 0o644, (0, 0), 0, b"", b"")
        .finish();
    assert!(expect_hostile(fx.apply(&tar)).contains("unsupported entry type"));

    let fx = fixture();
    let tar = Tar::new().symlink("/", "x").finish();
    assert!(expect_hostile(fx.apply(&tar)).contains("layer root"));

    let fx = fixture();
    let tar = Tar::new()
        .pax(&[("SCHILY.xattr.user.big", &vec![b'x'; 70_000])])
        .file("f", 0o644, b"")
        .finish();
    assert!(expect_hostile(fx.apply(&tar)).contains("larger than"));
}

#[test]
fn sanity_limits() {
    let fx = fixture();
    let tar = Tar::new()
        .file("a", 0o644, b"")
        .file("b", 0o644, b"")
        .file("c", 0o644, b"")
        .finish();
    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    assert!(expect_hostile(fx.apply_with(&tar, &limits)).contains("more than 2 entries"));

    let fx = fixture();
    let tar = Tar::new().file("a/very/long/path/name", 0o644, b"").finish();
    let limits = Limits {
        max_path_bytes: 10,
        ..Limits::default()
    };
    assert!(expect_hostile(fx.apply_with(&tar, &limits)).contains("longer than 10 bytes"));

    let fx = fixture();
    let long = format!("{}/{}", "d", "n".repeat(256));
    let mut t = Tar::new();
    t.pax(&[("path", long.as_bytes())]).file("placeholder", 0o644, b"");
    assert!(expect_hostile(fx.apply(&t.finish())).contains("component longer"));
}

#[test]
fn pax_times_parse() {
    assert_eq!(parse_pax_time("12"), Some(TimeSpec::new(12, 0)));
    assert_eq!(parse_pax_time("12.5"), Some(TimeSpec::new(12, 500_000_000)));
    assert_eq!(parse_pax_time("12.1234567891"), Some(TimeSpec::new(12, 123_456_789)));
    assert_eq!(parse_pax_time("-1.5"), Some(TimeSpec::new(-2, 500_000_000)));
    assert_eq!(parse_pax_time("x"), None);
    assert_eq!(parse_pax_time("1.x"), None);
}

/// A gzip bomb (64 MiB of zeros in a few dozen KiB) stops at the uncompressed
/// cap with TooLarge naming the layer, instead of filling the disk.
#[test]
fn decompression_bomb_is_refused_at_the_uncompressed_cap() {
    let fx = fixture();
    let tar = Tar::new().file("zeros", 0o644, &vec![0u8; 64 << 20]).finish();
    let gz = compress(&tar, Compression::Gzip);
    assert!(gz.len() < 1 << 20, "the bomb should be small compressed: {}", gz.len());
    let limits = Limits {
        max_uncompressed_bytes: 4 << 20,
        ..Limits::default()
    };
    let layer = Digest::of(b"bomb");
    let err = apply_layer(&gz[..], Compression::Gzip, &fx.snap, &layer, &Digest::of(&tar), &limits).unwrap_err();
    match &err {
        ImagesError::TooLarge { digest, limit, .. } => {
            assert_eq!(digest, &layer.to_string());
            assert_eq!(*limit, 4 << 20);
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    let written = fs::metadata(fx.snap.join("zeros")).map(|m| m.len()).unwrap_or(0);
    assert!(written <= 4 << 20, "wrote {written} bytes past the cap");
}
