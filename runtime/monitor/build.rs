//! Release builds (the workspace sets `panic = "abort"` there) link the
//! monitor as a static executable with its own `_start` and no libc; dev
//! and test builds (`panic = "unwind"`) link std and start from C `main`.
//! Build scripts do not see the profile's panic strategy, so the profile
//! name decides; `src/main.rs` picks the matching entry with
//! `cfg(panic = ...)`, and a mismatch fails to link rather than run.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        for arg in [
            "-nostartfiles",
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,--gc-sections",
            "-Wl,--build-id=none",
        ] {
            println!("cargo:rustc-link-arg-bin=berth-monitor={arg}");
        }
    }
}
