//! berthctl: debug a berth node over CRI.

use std::process::ExitCode;

use berth_cri_server::ctl::{self, cli::Cli};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berthctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ctl::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
