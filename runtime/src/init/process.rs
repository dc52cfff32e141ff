//! The container process itself: user and groups, rlimits, oom_score_adj,
//! no_new_privs, cwd, environment, executable lookup and execve. Shared by
//! the container init and `exec`.
//!
//! Order (runc's): rlimits and oom_score_adj while still privileged;
//! seccomp when no_new_privs is off (it needs CAP_SYS_ADMIN, see
//! [`super::security`]); capability bounding set; setgroups/setgid/setuid;
//! process capability sets; cwd; no_new_privs; signal dispositions reset;
//! seccomp when no_new_privs is on; execve.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process};

use super::security::{SecurityError, SecurityPlan};
use crate::procfs;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors preparing or starting the container process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process: {what} contains a NUL byte")]
    Nul { what: &'static str },
    #[error("process: unsupported rlimit {0:?}")]
    Rlimit(PosixRlimitType),
    #[error("setrlimit {resource:?} soft={soft} hard={hard}: {source}")]
    SetRlimit {
        resource: Resource,
        soft: u64,
        hard: u64,
        source: Errno,
    },
    #[error("write oom_score_adj {value}: {source}")]
    OomScoreAdj { value: i32, source: std::io::Error },
    #[error("{step} (uid {uid} gid {gid}): {source}")]
    User {
        step: &'static str,
        uid: u32,
        gid: u32,
        source: Errno,
    },
    #[error(
        "process asks for additional gids {gids:?} but setgroups is denied in its user namespace \
         (/proc/self/setgroups says \"deny\")"
    )]
    SetgroupsDenied { gids: Vec<u32> },
    #[error("chdir to cwd {cwd}: {source}")]
    Cwd { cwd: PathBuf, source: Errno },
    #[error("prctl(PR_SET_NO_NEW_PRIVS): {0}")]
    NoNewPrivs(Errno),
    #[error("exec {arg0:?}: executable file not found in $PATH")]
    NotFound { arg0: String },
    #[error("exec {path}: {source}")]
    Exec { path: PathBuf, source: Errno },
    #[error(transparent)]
    Security(#[from] SecurityError),
}

/// Everything needed to become the container process, computed before fork.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub path_env: String,
    pub cwd: PathBuf,
    pub uid: Uid,
    pub gid: Gid,
    pub additional_gids: Vec<Gid>,
    pub rlimits: Vec<(Resource, u64, u64)>,
    pub no_new_privs: bool,
    pub oom_score_adj: Option<i32>,
    pub umask: Option<u32>,
    pub security: SecurityPlan,
}

fn rlimit_resource(t: PosixRlimitType) -> Result<Resource, ProcessError> {
    Ok(match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
        #[allow(unreachable_patterns)]
        other => return Err(ProcessError::Rlimit(other)),
    })
}

fn cstring(s: &str, what: &'static str) -> Result<CString, ProcessError> {
    CString::new(s).map_err(|_| ProcessError::Nul { what })
}

impl ProcessPlan {
    pub fn from_spec(process: &Process, security: SecurityPlan) -> Result<ProcessPlan, ProcessError> {
        let args = process
            .args()
            .iter()
            .flatten()
            .map(|a| cstring(a, "args"))
            .collect::<Result<Vec<_>, _>>()?;
        let env_list: Vec<String> = process.env().clone().unwrap_or_default();
        let path_env = env_list
            .iter()
            .rev()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let env = env_list
            .iter()
            .map(|kv| cstring(kv, "env"))
            .collect::<Result<Vec<_>, _>>()?;
        let rlimits = process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| Ok((rlimit_resource(r.typ())?, r.soft(), r.hard())))
            .collect::<Result<Vec<_>, ProcessError>>()?;
        let user = process.user();
        Ok(ProcessPlan {
            args,
            env,
            path_env,
            cwd: process.cwd().clone(),
            uid: Uid::from_raw(user.uid()),
            gid: Gid::from_raw(user.gid()),
            additional_gids: user
                .additional_gids()
                .iter()
                .flatten()
                .map(|g| Gid::from_raw(*g))
                .collect(),
            rlimits,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            oom_score_adj: process.oom_score_adj(),
            umask: user.umask(),
            security,
        })
    }

    /// Sets the rlimits (before dropping privileges).
    pub fn apply_rlimits(&self) -> Result<(), ProcessError> {
        for &(resource, soft, hard) in &self.rlimits {
            setrlimit(resource, soft, hard).map_err(|source| ProcessError::SetRlimit {
                resource,
                soft,
                hard,
                source,
            })?;
        }
        Ok(())
    }

    /// Writes oom_score_adj, never below the caller's own: lowering it needs
    /// CAP_SYS_RESOURCE, which berth does not assume (containerd's
    /// `restrict_oom_score_adj`).
    pub fn apply_oom_score_adj(&self, proc_self: &Path) -> Result<(), ProcessError> {
        let Some(requested) = self.oom_score_adj else {
            return Ok(());
        };
        let value = clamp_oom_score_adj(requested, procfs::own_oom_score_adj());
        std::fs::write(proc_self.join("oom_score_adj"), value.to_string())
            .map_err(|source| ProcessError::OomScoreAdj { value, source })
    }

    /// Switches to the spec's user with its groups, keeping the capabilities
    /// the plan grants. `setgroups_allowed` is false in a user namespace
    /// whose `setgroups` file says "deny": the inherited groups then stay,
    /// and asking for additional gids is an error rather than silently
    /// ignored (runc does the same).
    pub fn switch_user(&self, setgroups_allowed: bool) -> Result<(), ProcessError> {
        let err = |step| {
            let (uid, gid) = (self.uid.as_raw(), self.gid.as_raw());
            move |source| ProcessError::User { step, uid, gid, source }
        };
        if !setgroups_allowed && !self.additional_gids.is_empty() {
            return Err(ProcessError::SetgroupsDenied {
                gids: self.additional_gids.iter().map(|g| g.as_raw()).collect(),
            });
        }
        self.security.before_setuid()?;
        if setgroups_allowed {
            nix::unistd::setgroups(&self.additional_gids).map_err(err("setgroups"))?;
        }
        nix::unistd::setresgid(self.gid, self.gid, self.gid).map_err(err("setresgid"))?;
        nix::unistd::setresuid(self.uid, self.uid, self.uid).map_err(err("setresuid"))?;
        self.security.after_setuid()?;
        // The init ran with umask 0 for exact device modes; the process
        // gets the spec's umask or the conventional 0022.
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(self.umask.unwrap_or(0o022)));
        Ok(())
    }

    /// Changes to the spec's cwd (as the container user).
    pub fn enter_cwd(&self) -> Result<(), ProcessError> {
        nix::unistd::chdir(&self.cwd).map_err(|source| ProcessError::Cwd {
            cwd: self.cwd.clone(),
            source,
        })
    }

    /// Finds the executable in the container (the current root) using the
    /// process's own `PATH`.
    pub fn lookup_executable(&self) -> Result<PathBuf, ProcessError> {
        let arg0 = String::from_utf8_lossy(self.args[0].as_bytes()).into_owned();
        lookup(&arg0, &self.path_env, &self.cwd).ok_or(ProcessError::NotFound { arg0 })
    }

    /// The last steps: no_new_privs, default signal dispositions, seccomp,
    /// execve. Returns only on failure.
    pub fn exec(&self, executable: &Path) -> Result<Infallible, ProcessError> {
        if self.no_new_privs {
            nix::sys::prctl::set_no_new_privs().map_err(ProcessError::NoNewPrivs)?;
        }
        reset_signals();
        self.security.install_seccomp()?;
        let path =
            CString::new(executable.as_os_str().as_bytes()).map_err(|_| ProcessError::Nul { what: "executable" })?;
        let e = nix::unistd::execve(&path, &self.args, &self.env).unwrap_err();
        Err(ProcessError::Exec {
            path: executable.to_path_buf(),
            source: e,
        })
    }
}

/// `requested`, raised to `current` when it would lower it.
pub fn clamp_oom_score_adj(requested: i32, current: Option<i32>) -> i32 {
    match current {
        Some(c) if requested < c => c,
        _ => requested,
    }
}

/// execvp's search: a name with a `/` is taken as is (relative to `cwd`),
/// otherwise each `PATH` entry is tried for an executable regular file.
pub fn lookup(arg0: &str, path_env: &str, cwd: &Path) -> Option<PathBuf> {
    let is_exec = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if arg0.contains('/') {
        let p = if arg0.starts_with('/') {
            PathBuf::from(arg0)
        } else {
            cwd.join(arg0)
        };
        return is_exec(&p).then_some(p);
    }
    path_env
        .split(':')
        .map(|dir| {
            if dir.is_empty() {
                cwd.to_path_buf()
            } else {
                PathBuf::from(dir)
            }
        })
        .map(|dir| dir.join(arg0))
        .find(|p| is_exec(p))
}

/// Restores default dispositions and an empty signal mask: the runtime
/// ignores SIGPIPE and the monitor blocks SIGCHLD, and both would otherwise
/// be inherited across execve.
pub fn reset_signals() {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no handler code; failures (for
        // signals the kernel refuses) are harmless and ignored.
        let _ = unsafe { sigaction(sig, &default) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_score_adj_is_never_lowered() {
        assert_eq!(clamp_oom_score_adj(-999, Some(0)), 0);
        assert_eq!(clamp_oom_score_adj(500, Some(0)), 500);
        assert_eq!(clamp_oom_score_adj(-5, Some(-10)), -5);
        assert_eq!(clamp_oom_score_adj(-5, None), -5);
    }

    #[test]
    fn lookup_follows_path_and_skips_non_executables() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("tool"), "").unwrap();
        std::fs::write(b.join("tool"), "").unwrap();
        std::fs::set_permissions(b.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", a.display(), b.display());
        assert_eq!(lookup("tool", &path, Path::new("/")), Some(b.join("tool")));
        assert_eq!(lookup("missing", &path, Path::new("/")), None);
        assert_eq!(lookup("b/tool", "", tmp.path()), Some(b.join("tool")));
    }
}
