//! Root tests: user namespaces. Container root is host uid 100000; the
//! rootfs is chowned into that range, as an image unpacked for a userns
//! container would be.

mod common;

use std::path::Path;

use common::{is_root, Env};
use serde_json::json;

const HOST_BASE: u32 = 100_000;
const SIZE: u32 = 65_536;

/// Shifts ownership of everything under `dir` by `HOST_BASE` (symlinks
/// themselves, not their targets).
fn chown_tree(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).unwrap();
    std::os::unix::fs::lchown(dir, Some(HOST_BASE + meta.uid()), Some(HOST_BASE + meta.gid())).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            chown_tree(&e.unwrap().path());
        }
    }
}

fn userns_bundle(env: &Env, name: &str, script: &str) -> common::Bundle {
    let mut b = env.bundle(name, script);
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": HOST_BASE, "size": SIZE}]);
    b.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": HOST_BASE, "size": SIZE}]);
    chown_tree(&b.rootfs());
    b
}

fn host_ids(pid: i64) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    (field("Uid:"), field("Gid:"))
}

#[test]
fn container_root_is_an_unprivileged_host_uid() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let b = userns_bundle(
        &env,
        "userns",
        "id -u; id -g; cat /proc/self/uid_map; hostname; \
         echo x > /dev/null && echo devnull-ok; head -c 4 /dev/urandom | wc -c; \
         ls /sys/kernel > /dev/null && echo sysfs-ok; touch /root/mine && echo rootfs-writable; \
         sleep 300",
    );
    b.write();
    let log = env.tmp.path().join("userns.log");
    let (ok, err) = env.rt_detached(&[
        "run",
        "-d",
        "--cri-log",
        log.to_str().unwrap(),
        "--bundle",
        b.path(),
        "userns",
    ]);
    assert!(ok, "{err}");
    let pid = env.state("userns")["pid"].as_i64().unwrap();
    assert_eq!(host_ids(pid), (HOST_BASE.to_string(), HOST_BASE.to_string()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
            .collect();
        if lines.len() >= 8 || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(lines.len(), 8, "{lines:?}");
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1], "0");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["0", &HOST_BASE.to_string(), &SIZE.to_string()]
    );
    assert_eq!(lines[3], "berthbox");
    assert_eq!(&lines[4..], ["devnull-ok", "4", "sysfs-ok", "rootfs-writable"]);
    // The file the container made belongs to its root: host uid 100000.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(b.rootfs().join("root/mine")).unwrap().uid(),
        HOST_BASE
    );
    assert!(env.rt(&["delete", "--force", "userns"]).status.success());
}

#[test]
fn userns_without_netns_groups_and_exec() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let mut b = userns_bundle(
        &env,
        "userns-host-net",
        "id -u; id -G; cat /proc/self/setgroups; ls /sys/kernel > /dev/null && echo sysfs-ok",
    );
    // The host's network namespace: sysfs cannot be mounted fresh there
    // from a user namespace and is bound from the host instead.
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20]});
    let (code, out, err) = env.run(&b, "userns-host-net");
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000");
    let mut groups: Vec<&str> = lines[1].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["10", "1000", "20"]);
    assert_eq!(lines[2], "allow");
    assert_eq!(lines[3], "sysfs-ok");

    // exec joins the user namespace: root inside, 100000 outside.
    let b = userns_bundle(&env, "userns-exec", "sleep 300");
    b.write();
    let (ok, err) = env.rt_detached(&["run", "-d", "--bundle", b.path(), "userns-exec"]);
    assert!(ok, "{err}");
    let pidfile = env.tmp.path().join("exec.pid");
    let out = env.rt(&[
        "exec",
        "--pid-file",
        pidfile.to_str().unwrap(),
        "userns-exec",
        "--",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1].split_whitespace().nth(1), Some("100000"));
    assert!(pidfile.exists());
    assert!(env.rt(&["delete", "--force", "userns-exec"]).status.success());
}

/// A user namespace made by `unshare -U -r` (uid 0 ↔ 0, setgroups
/// "deny"), held by a sleeping process; killed on drop.
struct DenyingUserns(std::process::Child);

impl DenyingUserns {
    fn new() -> DenyingUserns {
        let child = std::process::Command::new("/bin/busybox")
            .args(["unshare", "-U", "-r", "/bin/busybox", "sleep", "300"])
            .spawn()
            .unwrap();
        let path = format!("/proc/{}/setgroups", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&path).unwrap_or_default().trim() != "deny" {
            assert!(std::time::Instant::now() < deadline, "unshare -U -r did not set up");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        DenyingUserns(child)
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/user", self.0.id())
    }
}

impl Drop for DenyingUserns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn joined_userns_with_setgroups_denied() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let holder = DenyingUserns::new();
    let mut b = env.bundle("userns-deny", "id -u; cat /proc/self/setgroups; hostname");
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user", "path": holder.path()}));
    let (code, out, err) = env.run(&b, "userns-deny");
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "deny", "berthbox"]);

    // Additional gids cannot be honoured there: refused, naming why.
    b.spec["process"]["user"] = json!({"uid": 0, "gid": 0, "additionalGids": [10]});
    let (code, out, err) = env.run(&b, "userns-deny2");
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("setgroups is denied"), "{err}");
}
