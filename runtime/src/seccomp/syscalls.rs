//! System call names → numbers for the architecture berth is built for,
//! and that architecture's audit value (checked first by every filter).

#[cfg(target_arch = "aarch64")]
#[path = "table_aarch64.rs"]
mod table;
#[cfg(target_arch = "x86_64")]
#[path = "table_x86_64.rs"]
mod table;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("berth's seccomp support knows the syscall tables of x86_64 and aarch64 only");

/// `AUDIT_ARCH_*` of the native architecture (seccomp_data.arch).
#[cfg(target_arch = "x86_64")]
pub(crate) const NATIVE_AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
pub(crate) const NATIVE_AUDIT_ARCH: u32 = 0xC000_00B7;

/// x86_64 only: syscall numbers with this bit set are the x32 ABI.
#[cfg(target_arch = "x86_64")]
pub(crate) const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(target_arch = "aarch64")]
pub(crate) const X32_SYSCALL_BIT: Option<u32> = None;

/// The OCI `SCMP_ARCH_*` name of the native architecture.
#[cfg(target_arch = "x86_64")]
pub const NATIVE_ARCH: oci_spec::runtime::Arch = oci_spec::runtime::Arch::ScmpArchX86_64;
#[cfg(target_arch = "aarch64")]
pub const NATIVE_ARCH: oci_spec::runtime::Arch = oci_spec::runtime::Arch::ScmpArchAarch64;

/// The native number of syscall `name`, if this architecture has it.
pub fn syscall_number(name: &str) -> Option<u32> {
    table::SYSCALLS
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table::SYSCALLS[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_matches_libc() {
        assert!(table::SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(syscall_number("getpid"), Some(libc::SYS_getpid as u32));
        assert_eq!(syscall_number("unshare"), Some(libc::SYS_unshare as u32));
        assert_eq!(syscall_number("clone3"), Some(libc::SYS_clone3 as u32));
        assert_eq!(syscall_number("keyctl"), Some(libc::SYS_keyctl as u32));
        assert_eq!(syscall_number("openat"), Some(libc::SYS_openat as u32));
        assert_eq!(syscall_number("no_such_call"), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_specifics() {
        assert_eq!(syscall_number("mkdir"), Some(libc::SYS_mkdir as u32));
        assert_eq!(syscall_number("arch_prctl"), Some(158));
        assert_eq!(syscall_number("mseal"), Some(462));
        // 32-bit-only names are not native here.
        assert_eq!(syscall_number("stat64"), None);
    }
}
