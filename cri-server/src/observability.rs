//! The tracing subscriber, set up once per binary.

use tracing_subscriber::EnvFilter;

/// Log to stderr with the given filter (`RUST_LOG` wins when set).
pub fn init(filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
