//! seccomp: OCI `linux.seccomp` → BPF filter, and the RuntimeDefault profile.
//!
//! berth has its own small BPF generator rather than `seccompiler`:
//! seccompiler gives a filter a single match action and keeps its syscall
//! table private, while OCI profiles mix actions (ALLOW lists, ERRNO with
//! per-rule errno, …) and arguments per rule. See [`compile`]'s module for
//! the program layout and the exact OCI semantics implemented.
//!
//! # Use in the container init (and exec)
//!
//! ```text
//! let prog = seccomp::compile(spec_seccomp)?;   // before fork: allocation-free after
//! …  namespaces, rootfs, uid switch, capabilities …
//! seccomp::set_no_new_privs()?;                 // if process.noNewPrivileges
//! prog.install()?;                              // last thing before execve
//! execve(…)
//! ```
//!
//! Installing needs `no_new_privs` or `CAP_SYS_ADMIN` in the calling
//! thread. With `noNewPrivileges: false` install it while the process
//! still has `CAP_SYS_ADMIN` (before dropping capabilities), and make sure
//! the profile allows the calls the init makes afterwards (`capset`,
//! `setresuid`, `execve`, … — RuntimeDefault does).
//!
//! [`runtime_default_profile`] gives the profile containerd and CRI-O use
//! for `RuntimeDefault`; see [`profile`] for what it contains.

mod bpf;
pub mod compile;
pub mod profile;
mod syscalls;

pub use compile::compile;
use nix::errno::Errno;
pub use profile::{runtime_default_profile, runtime_default_profile_for};
pub use syscalls::{syscall_number, NATIVE_ARCH};

/// Errors of filter compilation and installation.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp action {0} is not supported")]
    UnsupportedAction(String),
    #[error("seccomp flag {0} is not supported")]
    UnsupportedFlag(String),
    #[error("seccomp rule for {syscalls}: argument index {index} is out of range (0-5)")]
    ArgIndex { syscalls: String, index: usize },
    #[error("seccomp filter has {0} instructions, above the kernel's limit of 4096")]
    TooLarge(usize),
    #[error("seccomp filter needs a conditional jump of {0} instructions (max 255)")]
    JumpTooFar(usize),
    #[error("prctl(PR_SET_NO_NEW_PRIVS): {0}")]
    NoNewPrivs(Errno),
    #[error("seccomp(SECCOMP_SET_MODE_FILTER, flags={flags:#x}): {source}")]
    Install { flags: libc::c_ulong, source: Errno },
    #[error("seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): thread {0} could not be synchronised")]
    Tsync(libc::c_long),
}

pub type Result<T, E = SeccompError> = std::result::Result<T, E>;

/// A compiled filter, ready to install.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    filter: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl SeccompProgram {
    fn new(filter: Vec<libc::sock_filter>, flags: libc::c_ulong) -> Self {
        Self { filter, flags }
    }

    /// The BPF instructions.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.filter
    }

    /// `SECCOMP_FILTER_FLAG_*` passed at install.
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// Installs the filter on the calling thread (all threads with
    /// TSYNC). Needs `no_new_privs` or `CAP_SYS_ADMIN`.
    pub fn install(&self) -> Result<()> {
        let prog = libc::sock_fprog {
            // compile() caps programs at 4096 instructions.
            len: self.filter.len() as libc::c_ushort,
            filter: self.filter.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `self.filter`, alive for the call; the
        // kernel copies the program and keeps no pointer to it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        match rc {
            0 => Ok(()),
            rc if rc > 0 => Err(SeccompError::Tsync(rc)),
            _ => match Errno::last() {
                // Kernels without seccomp(2) (before 3.17): prctl, no flags.
                Errno::ENOSYS if self.flags == 0 => {
                    // SAFETY: as above; PR_SET_SECCOMP reads the program
                    // through the pointer during the call only.
                    let rc = unsafe {
                        libc::prctl(
                            libc::PR_SET_SECCOMP,
                            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                            &prog as *const libc::sock_fprog,
                        )
                    };
                    Errno::result(rc).map(drop).map_err(|source| SeccompError::Install {
                        flags: self.flags,
                        source,
                    })
                }
                source => Err(SeccompError::Install {
                    flags: self.flags,
                    source,
                }),
            },
        }
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: execve can no longer grant privileges
/// (setuid bits, file capabilities), and seccomp filters may be installed
/// without `CAP_SYS_ADMIN`.
pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    Errno::result(rc).map(drop).map_err(SeccompError::NoNewPrivs)
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxSeccomp;

    use super::*;
    use crate::cgroups::test_support::{in_child, skip_unless_root};

    fn errno_of<T>(r: nix::Result<T>) -> Option<Errno> {
        r.err()
    }

    #[test]
    fn filter_denying_mkdir_and_getpid_in_a_child() {
        // Unprivileged is fine: no_new_privs allows installing a filter.
        in_child(|| {
            let spec: LinuxSeccomp = serde_json::from_str(
                r#"{"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [
                      {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
                      {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
                    ]}"#,
            )
            .map_err(|e| e.to_string())?;
            let prog = compile(&spec).map_err(|e| e.to_string())?;
            let dir = std::env::temp_dir().join(format!("berth-seccomp-{}", std::process::id()));
            set_no_new_privs().map_err(|e| e.to_string())?;
            prog.install().map_err(|e| e.to_string())?;
            match std::fs::create_dir(&dir) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
                other => return Err(format!("mkdir under filter: {other:?}")),
            }
            // SAFETY: getppid has no arguments and cannot fail otherwise.
            let rc = unsafe { libc::syscall(libc::SYS_getppid) };
            if rc != -1 || Errno::last() != Errno::ENOSYS {
                return Err(format!("getppid under filter returned {rc}"));
            }
            // Others still work.
            if nix::unistd::getpid().as_raw() <= 0 {
                return Err("getpid".into());
            }
            std::fs::read_to_string("/proc/self/status").map_err(|e| format!("read: {e}"))?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn root_runtime_default_profile_blocks_namespaces_and_keyrings() {
        if skip_unless_root("root_runtime_default_profile_blocks_namespaces_and_keyrings") {
            return;
        }
        in_child(|| {
            let prog = compile(&runtime_default_profile()).map_err(|e| e.to_string())?;
            set_no_new_privs().map_err(|e| e.to_string())?;
            prog.install().map_err(|e| e.to_string())?;
            // We are root with CAP_SYS_ADMIN, so only the filter says no.
            if errno_of(nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS)) != Some(Errno::EPERM) {
                return Err("unshare was not denied with EPERM".into());
            }
            let mounted = nix::mount::mount(
                Some("tmpfs"),
                "/mnt",
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            );
            if errno_of(mounted) != Some(Errno::EPERM) {
                return Err("mount was not denied with EPERM".into());
            }
            // SAFETY: keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
            // with integer arguments only.
            let rc = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) };
            if rc != -1 || Errno::last() != Errno::EPERM {
                return Err(format!("keyctl returned {rc} ({})", Errno::last()));
            }
            // Normal work: threads, fork+exec of a real program.
            let t = std::thread::spawn(|| 40 + 2).join().map_err(|_| "thread".to_string())?;
            if t != 42 {
                return Err("thread result".into());
            }
            let status = std::process::Command::new("/bin/true")
                .status()
                .map_err(|e| format!("spawn /bin/true: {e}"))?;
            if !status.success() {
                return Err(format!("/bin/true: {status}"));
            }
            let out = std::process::Command::new("/bin/sh")
                .args([
                    "-c",
                    "echo hi > /dev/null && cat /proc/self/status | grep -q Seccomp:.2",
                ])
                .status()
                .map_err(|e| format!("spawn sh: {e}"))?;
            if !out.success() {
                return Err(format!("sh under the profile: {out}"));
            }
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn root_install_without_no_new_privs_uses_cap_sys_admin() {
        if skip_unless_root("root_install_without_no_new_privs_uses_cap_sys_admin") {
            return;
        }
        in_child(|| {
            let spec: LinuxSeccomp = serde_json::from_str(
                r#"{"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["getpgrp"], "action": "SCMP_ACT_ERRNO"}]}"#,
            )
            .map_err(|e| e.to_string())?;
            compile(&spec).and_then(|p| p.install()).map_err(|e| e.to_string())?;
            // SAFETY: no arguments.
            let rc = unsafe { libc::syscall(libc::SYS_getpgrp) };
            if rc != -1 || Errno::last() != Errno::EPERM {
                return Err(format!("getpgrp returned {rc}"));
            }
            Ok(())
        })
        .unwrap();
    }
}
