//! What every container gets unless its CRI config says otherwise: the
//! capability set, the masked and read-only paths, the system mounts and
//! the device cgroup rules. Values follow containerd's CRI plugin (and runc
//! for the device rules, which runc adds itself and berth's engine does not).

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, Mount};

/// `PATH` when neither the image nor the CRI config sets one.
pub const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `RLIMIT_NOFILE` (soft = hard) when the daemon is not configured otherwise:
/// what containerd's containers inherit from a systemd unit with
/// `LimitNOFILE=infinity` (the kernel's `nr_open`, 1048576 by default).
pub const DEFAULT_RLIMIT_NOFILE: u64 = 1_048_576;

/// The default capability set (defined once, in the engine).
pub use berth_runtime::capabilities::DEFAULT_CAPABILITIES;

/// Paths masked when the CRI security context gives no `masked_paths`
/// (containerd's `pkg/oci` list, the same as the kubelet's default).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only when the CRI security context gives no
/// `readonly_paths`.
pub const DEFAULT_READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into());
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// The system mounts in the order they are mounted: `/proc`, a tmpfs
/// `/dev`, a private devpts, a private `/dev/shm` (replaced by the pod's
/// when it has one), `/dev/mqueue`, sysfs and the cgroup filesystem.
/// `privileged` makes sysfs and cgroupfs writable, as containerd does.
pub fn system_mounts(privileged: bool) -> Vec<Mount> {
    let mode = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", mode]),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", mode],
        ),
    ]
}

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(typ);
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// A device cgroup rule allowing `access` to one device.
pub fn allow_device(typ: LinuxDeviceType, major: i64, minor: i64, access: &str) -> LinuxDeviceCgroup {
    rule(true, Some(typ), Some(major), Some(minor), access)
}

/// The device cgroup rules of an unprivileged container before its CRI
/// devices: deny everything, then allow mknod of any node and use of the
/// standard devices (runc's default allow list: null, zero, full, random,
/// urandom, tty, ptmx, the devpts slaves and tun).
pub fn device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    let mut rules = vec![
        rule(false, None, None, None, "rwm"),
        rule(true, Some(C), None, None, "m"),
        rule(true, Some(B), None, None, "m"),
    ];
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (10, 200)] {
        rules.push(allow_device(C, major, minor, "rwm"));
    }
    rules.push(rule(true, Some(C), Some(136), None, "rwm"));
    rules
}

/// The one rule of a privileged container: every device, every access.
pub fn allow_all_devices() -> Vec<LinuxDeviceCgroup> {
    vec![rule(true, None, None, None, "rwm")]
}
