//! `berth-monitor`: the per-container monitor (see the library doc). The
//! engine's setup `execve`s it with the hand-over on the command line
//! ([`berth_monitor::args`]); not meant to be started by hand.
//!
//! Release builds (`panic = "abort"`) are a static executable entered at
//! our own `_start` with no libc at all; dev and test builds link std (it
//! supplies the unwinding panic runtime) and enter at C `main`. Both run
//! the same library code.

#![no_std]
#![no_main]

#[cfg(panic = "unwind")]
extern crate std;

use core::ffi::{c_char, CStr};

use berth_monitor::buf::Buf;
use berth_monitor::{args, supervise, sys};

/// Longest command line accepted (the setup writes at most 27 words).
const MAX_ARGS: usize = 64;

/// Parses the command line and supervises; returns the exit status.
///
/// # Safety
/// `argv` must hold `argc` valid C strings that live as long as the process.
unsafe fn run(argc: usize, argv: *const *const c_char) -> i32 {
    if argc > MAX_ARGS {
        let _ = sys::write(2, b"berth-monitor: too many arguments\n");
        return 2;
    }
    let mut list: [&CStr; MAX_ARGS] = [c""; MAX_ARGS];
    for (i, slot) in list.iter_mut().enumerate().take(argc) {
        // SAFETY: `i < argc`, and the caller vouches for argv[0..argc].
        *slot = unsafe { CStr::from_ptr(*argv.add(i)) };
    }
    match args::parse(list[1.min(argc)..argc].iter().copied()) {
        // SAFETY: the setup passed these descriptors across execve to us
        // and to nothing else; no other code in this process owns them.
        Ok(cfg) => unsafe { supervise::supervise(cfg) },
        Err(e) => {
            let mut line = Buf::<512>::new();
            line.push(b"berth-monitor: ")
                .push(e.arg)
                .push(b": ")
                .push(e.why.as_bytes())
                .push(b"\n");
            let _ = sys::write(2, line.as_bytes());
            2
        }
    }
}

/// The C entry point of dev and test builds (libc started the process).
#[cfg(panic = "unwind")]
#[no_mangle]
extern "C" fn main(argc: core::ffi::c_int, argv: *const *const c_char) -> core::ffi::c_int {
    // SAFETY: libc passes the process's own argument vector.
    unsafe { run(argc.max(0) as usize, argv) }
}

/// The static release build: entry point, panic handler and the memory
/// functions the compiler may call (there is no libc to provide them).
#[cfg(panic = "abort")]
mod freestanding {
    use core::ffi::c_char;

    use berth_monitor::sys;

    #[cfg(target_arch = "x86_64")]
    core::arch::global_asm!(
        ".globl _start",
        ".type _start,@function",
        "_start:",
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {entry}",
        "ud2",
        entry = sym start,
    );

    #[cfg(target_arch = "aarch64")]
    core::arch::global_asm!(
        ".globl _start",
        ".type _start,%function",
        "_start:",
        "mov x29, #0",
        "mov x30, #0",
        "mov x0, sp",
        "bl {entry}",
        "brk #0",
        entry = sym start,
    );

    /// Called by `_start` with the initial stack pointer: argc, then argv.
    ///
    /// # Safety
    /// `sp` must be the kernel's initial process stack.
    unsafe extern "C" fn start(sp: *const usize) -> ! {
        // SAFETY: the kernel lays out argc at sp and the argv array after it.
        let (argc, argv) = unsafe { (*sp, sp.add(1) as *const *const c_char) };
        // SAFETY: argv strings live on the initial stack for the process's life.
        sys::exit(unsafe { super::run(argc, argv) })
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        let _ = sys::write(2, b"berth-monitor: internal error (panic)\n");
        sys::exit(70)
    }

    // Plain byte loops: LLVM does not turn loops inside functions with
    // these names back into calls to themselves.

    /// # Safety
    /// C's `memcpy` contract.
    #[no_mangle]
    unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        for i in 0..n {
            // SAFETY: the caller guarantees both ranges are valid for n bytes.
            unsafe { *dst.add(i) = *src.add(i) };
        }
        dst
    }

    /// # Safety
    /// C's `memmove` contract.
    #[no_mangle]
    unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        if (dst as usize) < (src as usize) {
            for i in 0..n {
                // SAFETY: valid ranges (caller); forward copy is safe when dst is below src.
                unsafe { *dst.add(i) = *src.add(i) };
            }
        } else {
            for i in (0..n).rev() {
                // SAFETY: valid ranges (caller); backward copy is safe when dst is above src.
                unsafe { *dst.add(i) = *src.add(i) };
            }
        }
        dst
    }

    /// # Safety
    /// C's `memset` contract.
    #[no_mangle]
    unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
        for i in 0..n {
            // SAFETY: the caller guarantees dst is valid for n bytes.
            unsafe { *dst.add(i) = c as u8 };
        }
        dst
    }

    /// # Safety
    /// C's `memcmp` contract.
    #[no_mangle]
    unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        for i in 0..n {
            // SAFETY: the caller guarantees both ranges are valid for n bytes.
            let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
            if x != y {
                return i32::from(x) - i32::from(y);
            }
        }
        0
    }

    /// # Safety
    /// C's `strlen` contract (`CStr::from_ptr` calls it).
    #[no_mangle]
    unsafe extern "C" fn strlen(s: *const c_char) -> usize {
        let mut n = 0;
        // SAFETY: the caller guarantees a NUL-terminated string at s.
        while unsafe { *s.add(n) } != 0 {
            n += 1;
        }
        n
    }

    /// Referenced by core's unwind tables; with `panic = "abort"` nothing
    /// unwinds, so it is never called.
    #[no_mangle]
    extern "C" fn rust_eh_personality() {}

    /// # Safety
    /// C's `bcmp` contract.
    #[no_mangle]
    unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: same contract as memcmp.
        unsafe { memcmp(a, b, n) }
    }
}
