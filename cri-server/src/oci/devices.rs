//! CRI `devices` → `linux.devices` plus their device cgroup rules.
//!
//! Each device's host node is looked up through [`Host::device`] (symlinks
//! followed); its type, numbers, mode and owner are copied, as containerd
//! does. `container_path` defaults to `host_path`; `permissions` (any of
//! `rwm`) default to `rwm`. An unprivileged container starts from the
//! default rules (deny all, allow the standard devices) and gets one allow
//! rule per device; a privileged one gets every host device and one
//! allow-all rule. With a tty and the host's `/dev` bind-mounted, the host's
//! `/dev/console` is added (containerd does the same).

use std::path::Path;

use k8s_cri::v1::ContainerConfig;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::clean_container_path;
use super::defaults;
use super::host::{DeviceKind, Host, HostDevice};
use crate::error::CriError;

const FIELD: &str = "devices";

/// The devices of a container and the device cgroup rules that go with them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Devices {
    pub devices: Vec<LinuxDevice>,
    pub rules: Vec<LinuxDeviceCgroup>,
}

fn oci_type(kind: DeviceKind) -> LinuxDeviceType {
    match kind {
        DeviceKind::Char => LinuxDeviceType::C,
        DeviceKind::Block => LinuxDeviceType::B,
    }
}

fn linux_device(container_path: &str, d: &HostDevice) -> LinuxDevice {
    let mut dev = LinuxDevice::default();
    dev.set_path(container_path.into());
    dev.set_typ(oci_type(d.kind));
    dev.set_major(d.major as i64);
    dev.set_minor(d.minor as i64);
    dev.set_file_mode(Some(d.mode));
    dev.set_uid(Some(d.uid));
    dev.set_gid(Some(d.gid));
    dev
}

fn permissions(i: usize, p: &str) -> Result<String, CriError> {
    if p.is_empty() {
        return Ok("rwm".into());
    }
    if !p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(CriError::invalid(
            FIELD,
            format!("[{i}].permissions {p:?} may only contain r, w and m"),
        ));
    }
    Ok(p.to_string())
}

/// Translates the devices of `config` (see the module doc).
pub fn devices(config: &ContainerConfig, privileged: bool, host: &dyn Host) -> Result<Devices, CriError> {
    let mut out = Devices {
        rules: if privileged {
            defaults::allow_all_devices()
        } else {
            defaults::device_rules()
        },
        ..Devices::default()
    };
    let mut requested: Vec<(String, String, String)> = Vec::new();
    for (i, d) in config.devices.iter().enumerate() {
        if !d.host_path.starts_with('/') {
            return Err(CriError::invalid(
                FIELD,
                format!("[{i}].host_path {:?} must be an absolute path", d.host_path),
            ));
        }
        let cpath = if d.container_path.is_empty() {
            &d.host_path
        } else {
            &d.container_path
        };
        let cpath = clean_container_path(cpath)
            .map_err(|reason| CriError::invalid(FIELD, format!("[{i}].container_path {reason}")))?;
        requested.push((d.host_path.clone(), cpath, permissions(i, &d.permissions)?));
    }
    let host_dev_mounted = config
        .mounts
        .iter()
        .any(|m| m.container_path == "/dev" && m.host_path == "/dev");
    if config.tty && host_dev_mounted && !requested.iter().any(|(_, c, _)| c == "/dev/console") {
        requested.push(("/dev/console".into(), "/dev/console".into(), "rwm".into()));
    }
    for (i, (host_path, cpath, perms)) in requested.iter().enumerate() {
        let d = host
            .device(Path::new(host_path))
            .map_err(|e| CriError::invalid(FIELD, format!("[{i}].host_path {host_path}: {e}")))?;
        out.devices.push(linux_device(cpath, &d));
        if !privileged {
            out.rules.push(defaults::allow_device(
                oci_type(d.kind),
                d.major as i64,
                d.minor as i64,
                perms,
            ));
        }
    }
    if privileged {
        let all = host
            .devices()
            .map_err(|e| CriError::Internal(format!("list host devices for a privileged container: {e}")))?;
        for d in all {
            let path = d.path.to_string_lossy().into_owned();
            if !out.devices.iter().any(|x| x.path().as_path() == d.path) {
                out.devices.push(linux_device(&path, &d));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::{Device, Mount};

    use super::*;
    use crate::oci::test_support::FakeHost;

    fn cfg(devices: Vec<Device>) -> ContainerConfig {
        ContainerConfig {
            devices,
            ..Default::default()
        }
    }

    fn dev(host: &str, container: &str, perms: &str) -> Device {
        Device {
            host_path: host.into(),
            container_path: container.into(),
            permissions: perms.into(),
        }
    }

    #[test]
    fn devices_are_stat_ed_and_allowed() {
        let host = FakeHost::default();
        let d = devices(
            &cfg(vec![dev("/dev/fuse", "/dev/fuse", "rw"), dev("/dev/sda", "", "")]),
            false,
            &host,
        )
        .unwrap();
        assert_eq!(d.devices.len(), 2);
        assert_eq!(d.devices[0].path().to_str(), Some("/dev/fuse"));
        assert_eq!((d.devices[0].major(), d.devices[0].minor()), (10, 229));
        assert_eq!(d.devices[0].typ(), LinuxDeviceType::C);
        assert_eq!(d.devices[0].file_mode(), Some(0o666));
        assert_eq!(d.devices[1].path().to_str(), Some("/dev/sda"));
        assert_eq!(d.devices[1].typ(), LinuxDeviceType::B);
        // Default rules first (deny all…), then one allow per device.
        assert!(!d.rules[0].allow());
        let fuse = &d.rules[d.rules.len() - 2];
        assert_eq!(
            (fuse.major(), fuse.minor(), fuse.access().as_deref()),
            (Some(10), Some(229), Some("rw"))
        );
        let sda = d.rules.last().unwrap();
        assert_eq!(
            (sda.typ(), sda.access().as_deref()),
            (Some(LinuxDeviceType::B), Some("rwm"))
        );
    }

    #[test]
    fn bad_devices_are_refused_naming_the_index() {
        let host = FakeHost::default();
        for (d, needle) in [
            (dev("/dev/fuse", "dev/fuse", "rwm"), "[0].container_path"),
            (dev("/dev/fuse", "/dev/../etc/x", "rwm"), "[0].container_path"),
            (dev("/dev/fuse", "/dev/fuse", "rwx"), "[0].permissions"),
            (dev("fuse", "/dev/fuse", "rwm"), "[0].host_path"),
            (dev("/dev/missing", "/dev/x", "rwm"), "[0].host_path /dev/missing"),
        ] {
            let err = devices(&cfg(vec![d]), false, &host).unwrap_err();
            assert!(matches!(err, CriError::InvalidArgument { field: "devices", .. }));
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn privileged_gets_every_host_device_and_allow_all() {
        let host = FakeHost::default();
        let d = devices(&cfg(vec![dev("/dev/fuse", "/dev/myfuse", "r")]), true, &host).unwrap();
        assert_eq!(d.rules, defaults::allow_all_devices());
        let paths: Vec<_> = d.devices.iter().map(|x| x.path().display().to_string()).collect();
        assert_eq!(paths, ["/dev/myfuse", "/dev/fuse", "/dev/null", "/dev/sda"]);
    }

    #[test]
    fn tty_with_host_dev_adds_console() {
        let host = FakeHost::default();
        let mut c = cfg(vec![]);
        c.tty = true;
        c.mounts = vec![Mount {
            container_path: "/dev".into(),
            host_path: "/dev".into(),
            ..Default::default()
        }];
        let d = devices(&c, false, &host).unwrap();
        assert_eq!(d.devices[0].path().to_str(), Some("/dev/console"));
    }
}
