//! Root tests: the spec's `linux.seccomp` confines the container process
//! (installed before execve, with and without no_new_privs) and the
//! RuntimeDefault profile denies namespace creation.

mod common;

use berth_runtime::capabilities;
use common::{is_root, Env};
use serde_json::json;

fn deny_mkdir_profile() -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    })
}

fn check_mkdir_denied(no_new_privs: bool) {
    let env = Env::new();
    let name = if no_new_privs { "sc-nnp" } else { "sc-privileged" };
    let mut b = env.bundle(
        name,
        "mkdir /tmp/denied; echo mkdir=$?; echo data > /tmp/file && cat /tmp/file; \
         grep Seccomp: /proc/self/status",
    );
    b.spec["process"]["noNewPrivileges"] = json!(no_new_privs);
    b.spec["linux"]["seccomp"] = deny_mkdir_profile();
    let (code, out, err) = env.run(&b, name);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "mkdir=1", "{out}");
    assert_eq!(lines[1], "data");
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["Seccomp:", "2"]);
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(!b.rootfs().join("tmp/denied").exists());
}

#[test]
fn profile_denies_mkdir_with_eperm_under_no_new_privs() {
    if !is_root() {
        return;
    }
    check_mkdir_denied(true);
}

#[test]
fn profile_is_installed_with_cap_sys_admin_without_no_new_privs() {
    if !is_root() {
        return;
    }
    check_mkdir_denied(false);
}

#[test]
fn runtime_default_profile_denies_unshare() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let mut b = env.bundle(
        "sc-default",
        "unshare -u true; echo unshare=$?; hostname; ls /proc/self/ns | wc -l",
    );
    let last = capabilities::read_last_cap(std::path::Path::new("/proc/sys/kernel/cap_last_cap")).unwrap();
    let mask = capabilities::parse_set(capabilities::DEFAULT_CAPABILITIES.iter(), last).unwrap();
    let caps: Vec<&str> = capabilities::DEFAULT_CAPABILITIES.to_vec();
    b.spec["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps
    });
    b.spec["linux"]["seccomp"] =
        serde_json::to_value(berth_runtime::seccomp::runtime_default_profile_for(mask)).unwrap();
    let (code, out, err) = env.run(&b, "sc-default");
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "unshare=0", "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_eq!(lines[1], "berthbox");
}

#[test]
fn a_profile_the_engine_cannot_compile_fails_create_with_its_reason() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    let mut b = env.bundle("sc-bad", "true");
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]
    });
    let (code, out, err) = env.run(&b, "sc-bad");
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("argument index 7"), "{err}");
    assert!(!env.root.join("sc-bad").exists(), "a failed create left state behind");
}
