//! `berth-pod-init`: the pod sandbox helper. Started by the engine as
//! `berth-pod-init pin …` to create a pod's namespaces (see
//! `berth_runtime::sandbox::helper`); with a shared PID namespace, forks of
//! it stay behind as the pod's PID 1 and that init's supervisor (see
//! `berth_runtime::sandbox::podinit`). Not meant to be started by hand.
//!
//! Kept small on purpose — it runs once per pod: no clap, no tracing, no
//! serde reachable from here, no async runtime.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = berth_runtime::sandbox::helper::main(std::env::args_os().skip(1));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
