//! What the monitor asks of the container's cgroup: is any process left,
//! and did the kernel OOM-kill one.

use core::ffi::CStr;

use crate::sys::{self, Fd};

/// Cgroups nested deeper than this below the container's are not searched.
const MAX_DEPTH: usize = 16;

fn open_dir(dir: i32, path: &CStr) -> Option<Fd> {
    sys::openat(dir, path, libc::O_RDONLY | libc::O_DIRECTORY, 0).ok()
}

/// Whether `dir/cgroup.procs`, or that of any cgroup below, lists a
/// process. A cgroup that cannot be read counts as empty (it is gone).
pub fn has_processes(dir: &CStr) -> bool {
    open_dir(sys::AT_FDCWD, dir).is_some_and(|d| has_processes_at(&d, 0))
}

fn has_processes_at(dir: &Fd, depth: usize) -> bool {
    let Ok(procs) = sys::openat(dir.raw(), c"cgroup.procs", libc::O_RDONLY, 0) else {
        return false;
    };
    let mut head = [0u8; 32];
    if sys::read(procs.raw(), &mut head).is_ok_and(|n| head[..n].iter().any(u8::is_ascii_digit)) {
        return true;
    }
    drop(procs);
    if depth >= MAX_DEPTH {
        return false;
    }
    let mut buf = [0u8; 1024];
    loop {
        let n = match sys::getdents64(dir.raw(), &mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let mut off = 0;
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        while off + 19 < n {
            let reclen = usize::from(u16::from_ne_bytes([buf[off + 16], buf[off + 17]]));
            if reclen == 0 || off + reclen > n {
                return false;
            }
            let d_type = buf[off + 18];
            let name = CStr::from_bytes_until_nul(&buf[off + 19..off + reclen]).unwrap_or(c".");
            let is_child = d_type == libc::DT_DIR && name != c"." && name != c"..";
            if is_child && open_dir(dir.raw(), name).is_some_and(|d| has_processes_at(&d, depth + 1)) {
                return true;
            }
            off += reclen;
        }
    }
}

/// The `oom_kill` counter in `memory.oom_control` (v1) or `memory.events`
/// (v2); absent or unreadable counts as none.
pub fn oom_kills(file: &CStr) -> u64 {
    let Ok(f) = sys::openat(sys::AT_FDCWD, file, libc::O_RDONLY, 0) else {
        return 0;
    };
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match sys::read(f.raw(), &mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    buf[..len]
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"oom_kill "))
        .and_then(|n| crate::buf::parse_u64(n.trim_ascii()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::ffi::CString;

    fn c(p: &std::path::Path) -> CString {
        CString::new(p.to_str().unwrap()).unwrap()
    }

    #[test]
    fn emptiness_looks_into_child_cgroups() {
        let root = std::env::temp_dir().join(std::format!("berth-monitor-cg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        for d in ["", "sub", "sub/deeper", "other"] {
            std::fs::write(root.join(d).join("cgroup.procs"), "").unwrap();
        }
        assert!(!has_processes(&c(&root)));
        std::fs::write(root.join("sub/deeper/cgroup.procs"), "123\n").unwrap();
        assert!(has_processes(&c(&root)));
        std::fs::write(root.join("sub/deeper/cgroup.procs"), "").unwrap();
        std::fs::write(root.join("cgroup.procs"), "7\n").unwrap();
        assert!(has_processes(&c(&root)));
        assert!(!has_processes(&c(&root.join("gone"))));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn oom_counter_is_read_from_v1_and_v2_files() {
        let dir = std::env::temp_dir().join(std::format!("berth-monitor-oom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let v1 = dir.join("memory.oom_control");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert_eq!(oom_kills(&c(&v1)), 2);
        let v2 = dir.join("memory.events");
        std::fs::write(&v2, "low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\noom_group_kill 0\n").unwrap();
        assert_eq!(oom_kills(&c(&v2)), 0);
        assert_eq!(oom_kills(&c(&dir.join("missing"))), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
