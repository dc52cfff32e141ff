//! berthd configuration: one TOML file (default `/etc/berth/berth.toml`) plus
//! drop-ins (`berth.d/*.toml` beside it, applied in lexical order), overridden
//! by command-line flags. Every setting has a working default, so berthd runs
//! with no file at all.
//!
//! Each file is checked on its own first, so an unknown key or a bad value is
//! reported with the file that holds it; the files are then merged table by
//! table (a drop-in overrides only the keys it sets) and validated as a whole.

mod error;
mod types;

use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use types::{CniConfig, Config, ImagesConfig, RuntimeConfig, StreamingConfig};

/// Default path of the main config file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/berth.toml";

/// Where the config comes from.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The main file. When it was not named explicitly, its absence is fine.
    pub file: PathBuf,
    /// Whether the user named the file (then it must exist).
    pub explicit: bool,
}

impl ConfigSource {
    /// The drop-in directory that belongs to the main file: `berth.d` beside it.
    pub fn drop_in_dir(&self) -> PathBuf {
        self.file.parent().unwrap_or_else(|| Path::new("/")).join("berth.d")
    }
}

/// Read the main file and its drop-ins and return the merged, validated config.
pub fn load(source: &ConfigSource) -> Result<Config, ConfigError> {
    let mut merged = toml::Table::new();
    match std::fs::read_to_string(&source.file) {
        Ok(text) => merge(&mut merged, parse_file(&source.file, &text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !source.explicit => {}
        Err(e) => {
            return Err(ConfigError::Read {
                path: source.file.clone(),
                source: e,
            })
        }
    }
    for path in drop_in_files(&source.drop_in_dir())? {
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            source: e,
        })?;
        merge(&mut merged, parse_file(&path, &text)?);
    }
    let config: Config = toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Merged {
            message: e.message().to_string(),
        })?;
    config.validate().map_err(|(key, reason)| ConfigError::Invalid {
        file: describe(source),
        key,
        reason,
    })?;
    Ok(config)
}

/// Parse one file and check it on its own against the schema, so errors name it.
/// Defaults are valid, so a file checked alone fails only for what it sets.
fn parse_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let alone: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    alone.validate().map_err(|(key, reason)| ConfigError::Invalid {
        file: path.display().to_string(),
        key,
        reason,
    })?;
    Ok(table)
}

fn drop_in_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError::Read {
                path: dir.to_path_buf(),
                source: e,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConfigError::Read {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "toml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Deep-merge `overlay` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

fn describe(source: &ConfigSource) -> String {
    format!(
        "{} (with drop-ins from {})",
        source.file.display(),
        source.drop_in_dir().display()
    )
}

#[cfg(test)]
mod tests;
