//! Raw Linux system calls. The monitor links no libc: every call it makes
//! goes through [`syscall`] here, wrapped in a small function that states
//! what the kernel reads and writes. This is the crate's only `unsafe`
//! besides the entry point.

use core::ffi::CStr;

/// A failed system call's error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
}

pub type Result<T> = core::result::Result<T, Errno>;

/// `AT_FDCWD`: paths relative to the working directory.
pub const AT_FDCWD: i32 = libc::AT_FDCWD;

/// Issues system call `nr` with six arguments; returns the raw result.
///
/// # Safety
/// The arguments must be valid for `nr`: every pointer points to memory of
/// the size and mutability the call expects, for the whole call.
#[cfg(target_arch = "x86_64")]
unsafe fn syscall(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the `syscall` instruction clobbers only rax, rcx and r11
    // (declared); memory effects are the caller's contract.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// See the x86_64 variant.
///
/// # Safety
/// As for the x86_64 variant.
#[cfg(target_arch = "aarch64")]
unsafe fn syscall(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: `svc 0` returns in x0 and clobbers nothing else; memory
    // effects are the caller's contract.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("berth-monitor issues raw system calls for x86_64 and aarch64 only");

fn check(ret: isize) -> Result<usize> {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// Issues a call whose pointer arguments (if any) are valid; see [`syscall`].
macro_rules! sys {
    ($nr:expr $(, $arg:expr)* $(,)?) => {{
        let mut a = [0usize; 6];
        let args: &[usize] = &[$($arg as usize),*];
        a[..args.len()].copy_from_slice(args);
        // SAFETY: each wrapper below passes only pointers derived from
        // live references of the sizes the call reads or writes.
        check(unsafe { syscall($nr, a) })
    }};
}

/// An owned file descriptor, closed on drop.
#[derive(Debug)]
pub struct Fd(i32);

impl Fd {
    /// Takes ownership of `fd`.
    ///
    /// # Safety
    /// `fd` must be open and owned by nothing else in this process.
    pub unsafe fn from_raw(fd: i32) -> Fd {
        Fd(fd)
    }

    pub fn raw(&self) -> i32 {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = sys!(libc::SYS_close, self.0);
    }
}

pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize> {
    sys!(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len())
}

pub fn write(fd: i32, buf: &[u8]) -> Result<usize> {
    sys!(libc::SYS_write, fd, buf.as_ptr(), buf.len())
}

/// Most slices one [`writev`] takes (the rest are left for the caller).
pub const MAX_IOV: usize = 192;

/// `writev` of up to [`MAX_IOV`] slices.
pub fn writev(fd: i32, parts: &[&[u8]]) -> Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: core::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOV];
    let n = parts.len().min(MAX_IOV);
    for (v, p) in iov.iter_mut().zip(&parts[..n]) {
        v.iov_base = p.as_ptr() as *mut libc::c_void;
        v.iov_len = p.len();
    }
    sys!(libc::SYS_writev, fd, iov.as_ptr(), n)
}

/// Opens `path` (relative to `dir`), always close-on-exec.
pub fn openat(dir: i32, path: &CStr, flags: i32, mode: u32) -> Result<Fd> {
    let fd = sys!(libc::SYS_openat, dir, path.as_ptr(), flags | libc::O_CLOEXEC, mode)?;
    Ok(Fd(fd as i32))
}

pub fn renameat(old_dir: i32, old: &CStr, new_dir: i32, new: &CStr) -> Result<()> {
    sys!(libc::SYS_renameat, old_dir, old.as_ptr(), new_dir, new.as_ptr()).map(drop)
}

pub fn unlinkat(dir: i32, path: &CStr) -> Result<()> {
    sys!(libc::SYS_unlinkat, dir, path.as_ptr(), 0).map(drop)
}

pub fn fsync(fd: i32) -> Result<()> {
    sys!(libc::SYS_fsync, fd).map(drop)
}

/// Directory entries of `fd` into `buf` (`struct linux_dirent64` records).
pub fn getdents64(fd: i32, buf: &mut [u8]) -> Result<usize> {
    sys!(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len())
}

/// Whether `fd` is an open descriptor.
pub fn is_open(fd: i32) -> bool {
    fd >= 0 && sys!(libc::SYS_fcntl, fd, libc::F_GETFD).is_ok()
}

pub fn set_nonblocking(fd: i32) -> Result<()> {
    let flags = sys!(libc::SYS_fcntl, fd, libc::F_GETFL)?;
    sys!(libc::SYS_fcntl, fd, libc::F_SETFL, flags | libc::O_NONBLOCK as usize).map(drop)
}

/// `ppoll` without a signal mask; `timeout_ms` of `None` waits forever.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: Option<u32>) -> Result<usize> {
    let ts = timeout_ms.map(|ms| libc::timespec {
        tv_sec: (ms / 1000) as _,
        tv_nsec: ((ms % 1000) * 1_000_000) as _,
    });
    let ts_ptr = ts.as_ref().map_or(core::ptr::null(), |t| t as *const libc::timespec);
    sys!(libc::SYS_ppoll, fds.as_mut_ptr(), fds.len(), ts_ptr, 0, 8)
}

/// The kernel's signal set: one bit per signal, 64 signals.
fn sigmask(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Blocks `sig` and returns a nonblocking signalfd for it.
pub fn block_into_signalfd(sig: i32) -> Result<Fd> {
    let mask = sigmask(sig);
    sys!(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK, &mask as *const u64, 0, 8)?;
    let flags = libc::SFD_NONBLOCK | libc::SFD_CLOEXEC;
    let fd = sys!(libc::SYS_signalfd4, -1i32, &mask as *const u64, 8, flags)?;
    Ok(Fd(fd as i32))
}

/// Sets `sig` to be ignored (`SIG_IGN`, no handler, no restorer needed).
pub fn ignore_signal(sig: i32) -> Result<()> {
    // The kernel's `struct sigaction` on x86_64 and arm64: handler, flags,
    // restorer, mask.
    let action: [usize; 4] = [libc::SIG_IGN, 0, 0, 0];
    sys!(libc::SYS_rt_sigaction, sig, action.as_ptr(), 0, 8).map(drop)
}

/// How a child ended, as `wait4` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStatus {
    Exited(i32),
    Signaled(i32),
    /// Stopped or continued (not asked for; never expected).
    Other,
}

impl ChildStatus {
    pub fn decode(status: i32) -> ChildStatus {
        let low = status & 0x7f;
        if low == 0 {
            ChildStatus::Exited((status >> 8) & 0xff)
        } else if ((low + 1) as i8 >> 1) > 0 {
            // glibc's WIFSIGNALED: not 0 (exited) and not 0x7f (stopped).
            ChildStatus::Signaled(low)
        } else {
            ChildStatus::Other
        }
    }
}

/// Reaps one exited child without blocking: `Ok(None)` when none has
/// exited, `Err(ECHILD)` when there are no children.
pub fn reap_any() -> Result<Option<(i32, ChildStatus)>> {
    let mut status: i32 = 0;
    let pid = sys!(libc::SYS_wait4, -1i32, &mut status as *mut i32, libc::WNOHANG, 0)?;
    Ok((pid != 0).then(|| (pid as i32, ChildStatus::decode(status))))
}

pub fn set_child_subreaper() -> Result<()> {
    sys!(libc::SYS_prctl, libc::PR_SET_CHILD_SUBREAPER, 1).map(drop)
}

pub fn accept(listener: i32) -> Result<Fd> {
    let fd = sys!(libc::SYS_accept4, listener, 0, 0, libc::SOCK_CLOEXEC)?;
    Ok(Fd(fd as i32))
}

pub const MSG_NOSIGNAL: i32 = libc::MSG_NOSIGNAL;
pub const MSG_DONTWAIT: i32 = libc::MSG_DONTWAIT;

pub fn send(fd: i32, buf: &[u8], flags: i32) -> Result<usize> {
    sys!(libc::SYS_sendto, fd, buf.as_ptr(), buf.len(), flags, 0, 0)
}

pub fn recv(fd: i32, buf: &mut [u8], flags: i32) -> Result<usize> {
    sys!(libc::SYS_recvfrom, fd, buf.as_mut_ptr(), buf.len(), flags, 0, 0)
}

pub fn set_winsize(fd: i32, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    sys!(libc::SYS_ioctl, fd, libc::TIOCSWINSZ, &ws as *const libc::winsize).map(drop)
}

/// Wall-clock time as (seconds, nanoseconds) since the Unix epoch.
pub fn realtime() -> (u64, u32) {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    match sys!(
        libc::SYS_clock_gettime,
        libc::CLOCK_REALTIME,
        &mut ts as *mut libc::timespec
    ) {
        Ok(_) => (ts.tv_sec.max(0) as u64, ts.tv_nsec as u32),
        Err(_) => (0, 0),
    }
}

pub fn getpid() -> i32 {
    sys!(libc::SYS_getpid).unwrap_or(0) as i32
}

/// Anonymous private memory, zero-filled and faulted in page by page as
/// it is written (so an unused buffer costs no resident memory).
#[derive(Debug)]
pub struct Pages {
    ptr: *mut u8,
    len: usize,
}

impl Pages {
    pub fn new(len: usize) -> Result<Pages> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let addr = sys!(libc::SYS_mmap, 0, len, prot, flags, -1i32, 0)?;
        Ok(Pages {
            ptr: addr as *mut u8,
            len,
        })
    }
}

impl core::ops::Deref for Pages {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live private mapping of `len` bytes owned by
        // this value (unmapped only on drop).
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl core::ops::DerefMut for Pages {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        let _ = sys!(libc::SYS_munmap, self.ptr, self.len);
    }
}

/// Ends the process with `code`.
pub fn exit(code: i32) -> ! {
    loop {
        let _ = sys!(libc::SYS_exit_group, code);
    }
}
