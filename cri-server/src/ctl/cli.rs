//! berthctl's command line, apart from the handlers.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub const DEFAULT_ENDPOINT: &str = "unix:///run/berth/berth.sock";

#[derive(Parser, Debug)]
#[command(name = "berthctl", version, about = "Debug a berth node over CRI (crictl-style)")]
pub struct Cli {
    /// CRI endpoint: `unix:///path/to.sock` or a socket path.
    #[arg(long, short = 'r', global = true, env = "CONTAINER_RUNTIME_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Timeout for each call (pull has none), e.g. `30s`, `2m`.
    #[arg(long, short = 't', global = true, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runtime name and versions.
    Version,
    /// Runtime status conditions and effective config.
    Info {
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Json)]
        output: Format,
    },
    /// Pull an image, showing per-layer progress.
    Pull {
        image: String,
        /// Registry credentials `USER[:PASSWORD]`.
        #[arg(long)]
        creds: Option<String>,
        /// base64("user:password"), as in a docker config.json.
        #[arg(long)]
        auth: Option<String>,
        /// A bearer token sent to the registry as-is.
        #[arg(long)]
        registry_token: Option<String>,
        /// No progress, only the result.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// List images.
    Images {
        /// Only images this reference resolves to.
        image: Option<String>,
        /// Only image IDs.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Show digests.
        #[arg(long)]
        digests: bool,
        /// Full image IDs.
        #[arg(long)]
        no_trunc: bool,
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Image status, with the image config.
    #[command(name = "inspecti")]
    InspectImage {
        #[arg(required = true)]
        images: Vec<String>,
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Json)]
        output: Format,
    },
    /// Remove images by ID, tag or digest.
    Rmi {
        images: Vec<String>,
        /// Remove every image.
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// Bytes and inodes used by the image store.
    #[command(name = "imagefsinfo")]
    ImageFsInfo {
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Json)]
        output: Format,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// `500ms`, `30s`, `2m`, `1h`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = digits.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_millis(ms))
}

/// A socket path from an endpoint string.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(format!(
            "endpoint {endpoint:?} is not unix:///absolute/path (only unix sockets are supported)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("5d").is_err() && parse_duration("x").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/berth/berth.sock").unwrap(),
            PathBuf::from("/run/berth/berth.sock")
        );
        assert_eq!(socket_path("/tmp/x.sock").unwrap(), PathBuf::from("/tmp/x.sock"));
        assert!(socket_path("tcp://1.2.3.4:5").is_err());
    }
}
