//! The engine's one door to [`crate::cgroups`]: build the container's
//! `CgroupManager` from the host layout and the spec's `cgroupsPath`.

use std::path::{Path, PathBuf};

use crate::cgroups;
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
    let layout = cgroups::detect(Path::new("/proc/self/mountinfo"))?;
    let own = cgroups::ProcCgroups::read(Path::new("/proc/self/cgroup"))?;
    cgroups::new_manager(&layout, cgroups_path, Some(&own))
}
