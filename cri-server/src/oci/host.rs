//! Everything the translation needs to know about the node itself: device
//! nodes (CRI `devices`, privileged containers) and files it reads
//! (Localhost seccomp profiles). [`SystemHost`] is the real node; tests use
//! a fake, so the translation stays testable without root or devices.

use std::fmt::Debug;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Block or character device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
}

/// A device node of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// Its path on the host (symlinks resolved for [`Host::device`]).
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: u64,
    pub minor: u64,
    /// Permission bits (`0o666`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The node, as the translation sees it.
pub trait Host: Debug + Send + Sync {
    /// The device node at `path`, following symlinks (udev's stable names).
    /// An error of kind `InvalidInput` when it is not a device node.
    fn device(&self, path: &Path) -> std::io::Result<HostDevice>;

    /// Every device node of the host's `/dev` (for privileged containers).
    fn devices(&self) -> std::io::Result<Vec<HostDevice>>;

    /// Reads a node file of at most `max` bytes.
    fn read_file(&self, path: &Path, max: u64) -> std::io::Result<Vec<u8>>;
}

/// The real node: devices under `dev_dir` (normally `/dev`).
#[derive(Debug, Clone)]
pub struct SystemHost {
    pub dev_dir: PathBuf,
}

impl Default for SystemHost {
    fn default() -> Self {
        SystemHost {
            dev_dir: PathBuf::from("/dev"),
        }
    }
}

/// Directories of `/dev` whose nodes never belong in a container's `/dev`
/// (containerd skips the same ones).
const SKIPPED_DEV_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

fn device_of(path: PathBuf, md: &std::fs::Metadata) -> Option<HostDevice> {
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        DeviceKind::Char
    } else if ft.is_block_device() {
        DeviceKind::Block
    } else {
        return None;
    };
    let rdev = md.rdev();
    Some(HostDevice {
        path,
        kind,
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
    })
}

impl SystemHost {
    fn walk(&self, dir: &Path, out: &mut Vec<HostDevice>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let md = entry.metadata()?; // lstat: symlinks are not devices
            let path = entry.path();
            if md.is_dir() {
                let name = entry.file_name();
                if dir == self.dev_dir && SKIPPED_DEV_DIRS.iter().any(|s| name == *s) {
                    continue;
                }
                self.walk(&path, out)?;
            } else if path != self.dev_dir.join("console") {
                out.extend(device_of(path, &md));
            }
        }
        Ok(())
    }
}

impl Host for SystemHost {
    fn device(&self, path: &Path) -> std::io::Result<HostDevice> {
        let real = std::fs::canonicalize(path)?;
        let md = std::fs::metadata(&real)?;
        device_of(real, &md).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a device node"))
    }

    fn devices(&self) -> std::io::Result<Vec<HostDevice>> {
        let mut out = Vec::new();
        self.walk(&self.dev_dir, &mut out)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn read_file(&self, path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
        let mut data = Vec::new();
        std::fs::File::open(path)?.take(max + 1).read_to_end(&mut data)?;
        if data.len() as u64 > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {max} bytes"),
            ));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_host_reads_dev_null_and_refuses_non_devices() {
        let host = SystemHost::default();
        let null = host.device(Path::new("/dev/null")).unwrap();
        assert_eq!((null.kind, null.major, null.minor), (DeviceKind::Char, 1, 3));
        let err = host.device(Path::new("/")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(host.read_file(&f, 10).unwrap().len(), 10);
        assert_eq!(
            host.read_file(&f, 9).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn system_host_lists_devices_of_a_dev_dir() {
        // An empty "dev" dir with a plain file: no devices, no error.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("pts")).unwrap();
        std::fs::write(tmp.path().join("notadevice"), "").unwrap();
        let host = SystemHost {
            dev_dir: tmp.path().to_path_buf(),
        };
        assert!(host.devices().unwrap().is_empty());
    }
}
