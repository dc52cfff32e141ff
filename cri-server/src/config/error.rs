use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {file}: key `{key}`: {reason}")]
    Invalid { file: String, key: String, reason: String },
    #[error("merged config: {message}")]
    Merged { message: String },
}
