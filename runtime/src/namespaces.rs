//! Which namespaces a container gets: new ones (`unshare`) or existing ones
//! joined by path (`setns`), in the order the kernel needs.
//!
//! Order: open every path first (joining a mount namespace changes what
//! paths mean), join the user namespace first (it grants the capabilities
//! the other joins need), then the rest; a new user namespace is unshared
//! before the other new namespaces so they are owned by it; a new PID
//! namespace only applies to children, so the caller forks after
//! [`NamespacePlan::unshare_rest`].

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, LinuxNamespaceType};

use crate::syscall::Syscall;

/// Errors entering namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("open {kind} namespace {path}: {source}")]
    Open {
        kind: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setns into {kind} namespace {path}: {source}")]
    Setns {
        kind: String,
        path: PathBuf,
        source: nix::errno::Errno,
    },
    #[error("unshare {flags:?}: {source}")]
    Unshare {
        flags: CloneFlags,
        source: nix::errno::Errno,
    },
}

/// Maps an OCI namespace type to its clone flag.
pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // Rejected by spec validation; mapped for completeness.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The `/proc/<pid>/ns/<name>` file name of a namespace type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// A namespace to join, already opened.
#[derive(Debug)]
pub struct Join {
    pub kind: LinuxNamespaceType,
    pub path: PathBuf,
    pub file: File,
}

/// What to do with namespaces, computed from the spec.
#[derive(Debug)]
pub struct NamespacePlan {
    /// Namespaces to join, user first.
    pub join: Vec<Join>,
    /// New namespaces to create, excluding the user namespace.
    pub unshare: CloneFlags,
    /// Whether a new user namespace is created.
    pub new_user: bool,
}

impl Default for NamespacePlan {
    fn default() -> Self {
        NamespacePlan {
            join: Vec::new(),
            unshare: CloneFlags::empty(),
            new_user: false,
        }
    }
}

impl NamespacePlan {
    /// Builds the plan for `create`, opening every path to join now.
    pub fn for_create(linux: &Linux) -> Result<NamespacePlan, NamespaceError> {
        let mut plan = NamespacePlan::default();
        for ns in linux.namespaces().iter().flatten() {
            match ns.path() {
                Some(path) => plan.join.push(open(ns.typ(), path)?),
                None if ns.typ() == LinuxNamespaceType::User => plan.new_user = true,
                None => plan.unshare |= clone_flag(ns.typ()),
            }
        }
        plan.sort();
        Ok(plan)
    }

    /// Builds the plan for `exec`: join every namespace the container has,
    /// through its init's `/proc/<pid>/ns` files, skipping those the caller
    /// already shares.
    pub fn for_exec(linux: &Linux, init_pid: i32, proc_root: &Path) -> Result<NamespacePlan, NamespaceError> {
        let mut plan = NamespacePlan::default();
        for ns in linux.namespaces().iter().flatten() {
            let name = proc_name(ns.typ());
            let theirs = proc_root.join(format!("{init_pid}/ns/{name}"));
            let ours = proc_root.join(format!("self/ns/{name}"));
            if std::fs::read_link(&theirs).ok() == std::fs::read_link(&ours).ok() {
                continue;
            }
            plan.join.push(open(ns.typ(), &theirs)?);
        }
        plan.sort();
        Ok(plan)
    }

    fn sort(&mut self) {
        // user first, mount last (so the other paths were opened in the
        // original mount namespace, which they were anyway: we opened all
        // files up front), pid anywhere (it applies to children only).
        self.join.sort_by_key(|j| match j.kind {
            LinuxNamespaceType::User => 0,
            LinuxNamespaceType::Mount => 2,
            _ => 1,
        });
    }

    /// Removes and returns the PID namespace join, for callers that enter it
    /// in the parent before forking.
    pub fn take_pid_join(&mut self) -> Option<Join> {
        let i = self.join.iter().position(|j| j.kind == LinuxNamespaceType::Pid)?;
        Some(self.join.remove(i))
    }

    /// Joins every namespace in the plan.
    pub fn join_all(&self, sys: &dyn Syscall) -> Result<(), NamespaceError> {
        for j in &self.join {
            sys.setns(j.file.as_fd(), clone_flag(j.kind))
                .map_err(|source| NamespaceError::Setns {
                    kind: proc_name(j.kind).to_string(),
                    path: j.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Creates the new user namespace, if any.
    pub fn unshare_user(&self, sys: &dyn Syscall) -> Result<(), NamespaceError> {
        if !self.new_user {
            return Ok(());
        }
        let flags = CloneFlags::CLONE_NEWUSER;
        sys.unshare(flags)
            .map_err(|source| NamespaceError::Unshare { flags, source })
    }

    /// Creates the other new namespaces.
    pub fn unshare_rest(&self, sys: &dyn Syscall) -> Result<(), NamespaceError> {
        if self.unshare.is_empty() {
            return Ok(());
        }
        sys.unshare(self.unshare).map_err(|source| NamespaceError::Unshare {
            flags: self.unshare,
            source,
        })
    }
}

fn open(kind: LinuxNamespaceType, path: &Path) -> Result<Join, NamespaceError> {
    let file = File::open(path).map_err(|source| NamespaceError::Open {
        kind: proc_name(kind).to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Join {
        kind,
        path: path.to_path_buf(),
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder};

    #[test]
    fn user_joined_first_then_new_namespaces_unshared() {
        let ns = |t, p: Option<&str>| {
            let mut b = LinuxNamespaceBuilder::default().typ(t);
            if let Some(p) = p {
                b = b.path(p);
            }
            b.build().unwrap()
        };
        let linux = LinuxBuilder::default()
            .namespaces(vec![
                ns(LinuxNamespaceType::Mount, None),
                ns(LinuxNamespaceType::Network, Some("/proc/self/ns/net")),
                ns(LinuxNamespaceType::User, Some("/proc/self/ns/user")),
                ns(LinuxNamespaceType::Pid, None),
            ])
            .build()
            .unwrap();
        let plan = NamespacePlan::for_create(&linux).unwrap();
        assert!(!plan.new_user);
        assert_eq!(plan.unshare, CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID);
        let sys = RecordingSyscall::new();
        plan.join_all(&sys).unwrap();
        plan.unshare_user(&sys).unwrap();
        plan.unshare_rest(&sys).unwrap();
        let calls = sys.calls();
        assert!(matches!(
            calls[0],
            Call::Setns {
                nstype: CloneFlags::CLONE_NEWUSER,
                ..
            }
        ));
        assert!(matches!(
            calls[1],
            Call::Setns {
                nstype: CloneFlags::CLONE_NEWNET,
                ..
            }
        ));
        assert_eq!(
            calls[2],
            Call::Unshare {
                flags: CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID
            }
        );
        assert_eq!(calls.len(), 3);
    }

    #[test]
    fn missing_namespace_path_names_it() {
        let linux = LinuxBuilder::default()
            .namespaces(vec![LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path("/nonexistent/netns")
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let err = NamespacePlan::for_create(&linux).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/netns"), "{err}");
    }
}
