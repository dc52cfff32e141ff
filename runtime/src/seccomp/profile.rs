//! The RuntimeDefault seccomp profile: the allow-list profile that
//! containerd and CRI-O apply for `seccompProfile: RuntimeDefault`, which
//! both take from moby's `profiles/seccomp/default.json`.
//!
//! - default action `SCMP_ACT_ERRNO` with EPERM;
//! - the common allow-list (file, memory, signal, socket, time, IPC … calls);
//! - `socket` allowed except for `AF_VSOCK`; `personality` only for the
//!   personas moby allows; `clone` only without namespace flags and
//!   `clone3` answered with ENOSYS (so libc falls back to `clone`), unless
//!   the container holds `CAP_SYS_ADMIN`;
//! - the capability-gated groups (mount/unshare/setns… with
//!   `CAP_SYS_ADMIN`, `reboot` with `CAP_SYS_BOOT`, `ptrace` and friends with
//!   `CAP_SYS_PTRACE`, …) are included when the given capability mask has
//!   the capability — as containerd does from the spec's bounding set.
//!
//! Simplified on purpose: one native architecture only (the arch-specific
//! groups are the native one's: `arch_prctl`/`modify_ldt` on x86_64); the
//! `minKernel` conditions are dropped (berth needs a newer kernel than any
//! of them). Names this architecture lacks are skipped at compile time.

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

use super::syscalls::NATIVE_ARCH;

/// Calls every container may make.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Native-architecture extras (moby's `arches`-gated groups).
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "aarch64")]
const ALLOWED_ARCH: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];

/// Personas `personality(2)` may select (moby: LINUX, UNAME26,
/// PER_LINUX32, UNAME26|PER_LINUX32, query).
const PERSONALITIES: &[u64] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

const AF_VSOCK: u64 = 40;

/// Calls allowed only with a capability (capability number, calls).
const BY_CAPABILITY: &[(u8, &[&str])] = &[
    (2, &["open_by_handle_at"]), // CAP_DAC_READ_SEARCH
    (
        21, // CAP_SYS_ADMIN
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (22, &["reboot"]),                                       // CAP_SYS_BOOT
    (18, &["chroot"]),                                       // CAP_SYS_CHROOT
    (16, &["delete_module", "init_module", "finit_module"]), // CAP_SYS_MODULE
    (20, &["acct"]),                                         // CAP_SYS_PACCT
    (
        19,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ), // CAP_SYS_PTRACE
    (17, &["iopl", "ioperm"]),                               // CAP_SYS_RAWIO
    (25, &["settimeofday", "stime", "clock_settime", "clock_settime64"]), // CAP_SYS_TIME
    (26, &["vhangup"]),                                      // CAP_SYS_TTY_CONFIG
    (
        23,
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    ), // CAP_SYS_NICE
    (34, &["syslog"]),                                       // CAP_SYSLOG
    (39, &["bpf"]),                                          // CAP_BPF
    (38, &["perf_event_open"]),                              // CAP_PERFMON
];

const CAP_SYS_ADMIN: u8 = 21;

/// The RuntimeDefault profile for a container with the default capability
/// set (no `CAP_SYS_ADMIN` and the like).
pub fn runtime_default_profile() -> LinuxSeccomp {
    runtime_default_profile_for(0)
}

/// The RuntimeDefault profile for a container whose bounding set is
/// `capabilities` (bit n = capability number n, as in
/// [`crate::capabilities::CapSets`]).
pub fn runtime_default_profile_for(capabilities: u64) -> LinuxSeccomp {
    let has = |cap: u8| capabilities & (1 << cap) != 0;
    let mut syscalls = vec![allow(ALLOWED.iter().chain(ALLOWED_ARCH))];
    // process_vm_* and ptrace: moby allows them on kernels >= 4.8 anyway.
    syscalls.push(allow(["process_vm_readv", "process_vm_writev", "ptrace"].iter()));
    syscalls.push(with_args(
        "socket",
        LinuxSeccompAction::ScmpActAllow,
        vec![arg(0, AF_VSOCK, None, LinuxSeccompOperator::ScmpCmpNe)],
    ));
    syscalls.push(with_args(
        "personality",
        LinuxSeccompAction::ScmpActAllow,
        PERSONALITIES
            .iter()
            .map(|&p| arg(0, p, None, LinuxSeccompOperator::ScmpCmpEq))
            .collect(),
    ));
    for (cap, names) in BY_CAPABILITY {
        if has(*cap) {
            syscalls.push(allow(names.iter()));
        }
    }
    if !has(CAP_SYS_ADMIN) {
        syscalls.push(with_args(
            "clone",
            LinuxSeccompAction::ScmpActAllow,
            vec![arg(
                0,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )],
        ));
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone3".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(libc::ENOSYS as u32)
                .build()
                .expect("static syscall rule"),
        );
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
        .architectures(vec![NATIVE_ARCH])
        .syscalls(syscalls)
        .build()
        .expect("static profile")
}

fn allow<'a>(names: impl Iterator<Item = &'a &'a str>) -> LinuxSyscall {
    LinuxSyscallBuilder::default()
        .names(names.map(|n| n.to_string()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActAllow)
        .build()
        .expect("static syscall rule")
}

fn with_args(name: &str, action: LinuxSeccompAction, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    LinuxSyscallBuilder::default()
        .names(vec![name.to_string()])
        .action(action)
        .args(args)
        .build()
        .expect("static syscall rule")
}

fn arg(index: usize, value: u64, value_two: Option<u64>, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default().index(index).value(value).op(op);
    let b = match value_two {
        Some(v) => b.value_two(v),
        None => b,
    };
    b.build().expect("static seccomp arg")
}

#[cfg(test)]
mod tests {
    use super::super::bpf::run;
    use super::super::compile;
    use super::super::syscalls::{syscall_number, NATIVE_AUDIT_ARCH};
    use super::*;

    fn eval(p: &super::super::SeccompProgram, name: &str, args: [u64; 6]) -> u32 {
        run(p.instructions(), syscall_number(name).unwrap(), NATIVE_AUDIT_ARCH, args)
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

    #[test]
    fn default_profile_allows_ordinary_calls_and_denies_dangerous_ones() {
        let p = compile(&runtime_default_profile()).unwrap();
        for ok in [
            "read",
            "write",
            "openat",
            "execve",
            "mmap",
            "futex",
            "exit_group",
            "getpid",
            "wait4",
            "rseq",
        ] {
            assert_eq!(eval(&p, ok, [0; 6]), ALLOW, "{ok}");
        }
        for denied in [
            "unshare",
            "mount",
            "keyctl",
            "add_key",
            "request_key",
            "setns",
            "reboot",
            "bpf",
            "init_module",
            "kexec_load",
            "open_by_handle_at",
            "userfaultfd",
        ] {
            assert_eq!(eval(&p, denied, [0; 6]), EPERM, "{denied}");
        }
        let clone_ns = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
        assert_eq!(eval(&p, "clone", [clone_ns, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(eval(&p, "clone", [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            eval(&p, "clone3", [0; 6]),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(eval(&p, "socket", [libc::AF_INET as u64, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(eval(&p, "socket", [AF_VSOCK, 1, 0, 0, 0, 0]), EPERM);
        assert_eq!(eval(&p, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(eval(&p, "personality", [0x0040_0000, 0, 0, 0, 0, 0]), EPERM);
        assert!(p.instructions().len() < 1200, "{}", p.instructions().len());
    }

    #[test]
    fn capabilities_open_their_groups() {
        let admin = compile(&runtime_default_profile_for(1 << CAP_SYS_ADMIN)).unwrap();
        for ok in ["unshare", "mount", "setns", "clone3"] {
            assert_eq!(eval(&admin, ok, [0; 6]), ALLOW, "{ok}");
        }
        let clone_ns = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
        assert_eq!(eval(&admin, "clone", [clone_ns, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(eval(&admin, "reboot", [0; 6]), EPERM);
        assert_eq!(eval(&admin, "keyctl", [0; 6]), EPERM);
        let ptrace = compile(&runtime_default_profile_for(1 << 19)).unwrap();
        assert_eq!(eval(&ptrace, "kcmp", [0; 6]), ALLOW);
        assert_eq!(eval(&ptrace, "mount", [0; 6]), EPERM);
    }
}
