//! The engine's one door to [`crate::cgroups`]: build the container's
//! `CgroupManager` from the host layout and the spec's `cgroupsPath`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cgroups::{self, CgroupLayout, ProcCgroups};
pub use crate::cgroups::{CgroupError, CgroupManager};

/// The cgroup path of a container whose spec names none.
pub fn default_path(id: &str) -> PathBuf {
    PathBuf::from(format!("/berth/{id}"))
}

/// The spec's `linux.cgroupsPath`, or the default for `id`.
pub fn path_for(spec: &oci_spec::runtime::Spec, id: &str) -> PathBuf {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| default_path(id))
}

/// The manager for `cgroups_path` on this host.
pub fn manager(cgroups_path: &Path) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let (layout, own) = host()?;
    cgroups::new_manager(layout, cgroups_path, Some(own))
}

/// The host's cgroup mounts and this process's own cgroups, read once per
/// process (a failed read is retried next time): neither changes while a
/// runtime process lives, and `/proc/self/mountinfo` grows with every
/// container rootfs, so reading it per pod or container call cost
/// milliseconds on a busy node.
fn host() -> Result<&'static (CgroupLayout, ProcCgroups), CgroupError> {
    static HOST: OnceLock<(CgroupLayout, ProcCgroups)> = OnceLock::new();
    if let Some(h) = HOST.get() {
        return Ok(h);
    }
    let layout = cgroups::detect(Path::new("/proc/self/mountinfo"))?;
    let own = ProcCgroups::read(Path::new("/proc/self/cgroup"))?;
    Ok(HOST.get_or_init(|| (layout, own)))
}
