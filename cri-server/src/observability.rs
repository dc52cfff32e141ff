//! The tracing subscriber, set up once per binary.

use tracing_subscriber::EnvFilter;

/// Log to stderr with the given filter (`RUST_LOG` wins when set); colours
/// only on a terminal (a log file or journal gets plain text).
pub fn init(filter: &str) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
