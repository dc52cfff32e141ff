//! Network configuration from a CNI conf dir.
//!
//! Files ending in `.conflist`, `.conf` or `.json` are considered in lexical
//! order of their names; the first one that parses and validates wins, as in
//! containerd and CRI-O. A `.conf`/`.json` file holding a single plugin is wrapped
//! into a one-plugin list. Invalid files are skipped with a logged reason.
//!
//! [`ConfigLoader`] re-reads the directory on every call, but only re-parses
//! when a `stat` of the candidate files (name, size, mtime, inode) differs from
//! the previous call, so config changes are picked up without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::result::CniResult;
use crate::version::CniVersion;

/// Errors finding a usable network config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no network config found in {}{}", .dir.display(), skipped_note(.skipped))]
    NoConfig { dir: PathBuf, skipped: Vec<String> },
    #[error("cannot read network config dir {}: {reason}", .dir.display())]
    ReadDir { dir: PathBuf, reason: String },
    #[error("invalid network config {}: {reason}", .path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn skipped_note(skipped: &[String]) -> String {
    if skipped.is_empty() {
        String::new()
    } else {
        format!(" (skipped: {})", skipped.join("; "))
    }
}

/// One plugin of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The plugin binary's name (`type`).
    pub plugin_type: String,
    /// Capabilities the plugin declared `true` (portMappings, bandwidth, dns, ipRanges…).
    pub capabilities: BTreeSet<String>,
    /// The plugin's config object as written.
    pub conf: Map<String, Value>,
}

/// A validated network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub plugins: Vec<PluginConfig>,
    /// The file it came from.
    pub source: PathBuf,
    /// The list in conflist form (single-plugin files wrapped), as cached for DEL.
    pub raw: Value,
}

/// Capability arguments by capability name (`portMappings` → its JSON value).
pub type CapabilityArgs = BTreeMap<String, Value>;

impl NetworkConfigList {
    /// Parses a file's bytes; `.conflist` is a list, `.conf`/`.json` a single plugin
    /// (or a list, if it has `plugins`).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(invalid("not a JSON object".into()));
        };
        let is_list = path.extension().is_some_and(|e| e == "conflist") || obj.contains_key("plugins");
        let list = if is_list {
            obj
        } else {
            let mut list = Map::new();
            for key in ["cniVersion", "name"] {
                if let Some(v) = obj.get(key) {
                    list.insert(key.into(), v.clone());
                }
            }
            list.insert("plugins".into(), Value::Array(vec![Value::Object(obj)]));
            list
        };
        Self::from_list(path, Value::Object(list)).map_err(invalid)
    }

    /// Validates a list in conflist form.
    pub fn from_list(source: &Path, raw: Value) -> Result<Self, String> {
        let obj = raw.as_object().ok_or("not a JSON object")?;
        let name = obj.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        if !valid_network_name(&name) {
            return Err(format!("invalid or missing network name {name:?}"));
        }
        let cni_version = match obj.get("cniVersion") {
            None => "0.1.0".to_string(),
            Some(Value::String(v)) => v.clone(),
            Some(other) => return Err(format!("cniVersion {other} is not a string")),
        };
        let parsed: CniVersion = cni_version.parse().map_err(|e| format!("{e}"))?;
        if parsed > CniVersion::LATEST {
            return Err(format!(
                "cniVersion {cni_version} is newer than supported {}",
                CniVersion::LATEST
            ));
        }
        let disable_check = obj.get("disableCheck").and_then(Value::as_bool).unwrap_or(false);
        let plugins = obj
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or("missing \"plugins\" list")?;
        if plugins.is_empty() {
            return Err("\"plugins\" list is empty".into());
        }
        let plugins = plugins
            .iter()
            .enumerate()
            .map(|(i, p)| PluginConfig::from_value(p).map_err(|e| format!("plugin {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetworkConfigList {
            name,
            cni_version,
            disable_check,
            plugins,
            source: source.to_path_buf(),
            raw,
        })
    }

    pub fn version(&self) -> CniVersion {
        self.cni_version.parse().unwrap_or(CniVersion::V0_1_0)
    }

    /// The stdin config for plugin `index`: its own config plus the list's `name`
    /// and `cniVersion`, the `prevResult` converted to that version, and
    /// `runtimeConfig` holding only the capabilities this plugin declared.
    pub fn plugin_stdin(&self, index: usize, prev: Option<&CniResult>, caps: &CapabilityArgs) -> Value {
        let plugin = &self.plugins[index];
        let mut conf = plugin.conf.clone();
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.to_value(&self.cni_version));
        }
        let granted: Map<String, Value> = caps
            .iter()
            .filter(|(cap, _)| plugin.capabilities.contains(*cap))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !granted.is_empty() {
            let rc = conf.entry("runtimeConfig").or_insert_with(|| Value::Object(Map::new()));
            if !rc.is_object() {
                *rc = Value::Object(Map::new());
            }
            if let Value::Object(rc) = rc {
                rc.extend(granted);
            }
        }
        Value::Object(conf)
    }
}

impl PluginConfig {
    fn from_value(value: &Value) -> Result<Self, String> {
        let conf = value.as_object().ok_or("not a JSON object")?.clone();
        let plugin_type = conf.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
        if plugin_type.is_empty() || plugin_type.contains('/') || plugin_type == "." || plugin_type == ".." {
            return Err(format!("invalid or missing plugin type {plugin_type:?}"));
        }
        let capabilities = match conf.get("capabilities") {
            None | Some(Value::Null) => BTreeSet::new(),
            Some(Value::Object(caps)) => caps
                .iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect(),
            Some(other) => return Err(format!("capabilities {other} is not an object")),
        };
        Ok(PluginConfig {
            plugin_type,
            capabilities,
            conf,
        })
    }
}

/// Network names as the spec allows them: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    name: String,
    len: u64,
    mtime_ns: i128,
    ino: u64,
}

type Loaded = Result<Arc<NetworkConfigList>, ConfigError>;

/// Loads the winning config of a conf dir, re-parsing only when the files changed.
pub struct ConfigLoader {
    dir: PathBuf,
    cached: Mutex<Option<(Vec<FileStamp>, Loaded)>>,
}

impl fmt::Debug for ConfigLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigLoader").field("dir", &self.dir).finish()
    }
}

impl ConfigLoader {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ConfigLoader {
            dir: dir.into(),
            cached: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current winning config.
    pub fn load(&self) -> Loaded {
        let stamps = match self.stamp() {
            Ok(s) => s,
            // A missing dir is simply "no config".
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(ConfigError::ReadDir {
                    dir: self.dir.clone(),
                    reason: e.to_string(),
                })
            }
        };
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((old, loaded)) = cached.as_ref() {
            if *old == stamps {
                return loaded.clone();
            }
        }
        let loaded = self.parse_first(&stamps);
        *cached = Some((stamps, loaded.clone()));
        loaded
    }

    fn stamp(&self) -> std::io::Result<Vec<FileStamp>> {
        let mut stamps = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !is_config_name(&name) {
                continue;
            }
            // Follows symlinks; a dangling one is skipped at parse time.
            let (len, mtime_ns, ino) = match std::fs::metadata(entry.path()) {
                Ok(m) if m.is_file() => (
                    m.len(),
                    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                    m.ino(),
                ),
                Ok(_) => continue,
                Err(_) => (0, 0, 0),
            };
            stamps.push(FileStamp {
                name,
                len,
                mtime_ns,
                ino,
            });
        }
        stamps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(stamps)
    }

    fn parse_first(&self, stamps: &[FileStamp]) -> Loaded {
        let mut skipped = Vec::new();
        for stamp in stamps {
            let path = self.dir.join(&stamp.name);
            let parsed = std::fs::read(&path)
                .map_err(|e| ConfigError::Invalid {
                    path: path.clone(),
                    reason: e.to_string(),
                })
                .and_then(|bytes| NetworkConfigList::from_bytes(&path, &bytes));
            match parsed {
                Ok(list) => {
                    tracing::info!(network = %list.name, file = %path.display(), "using CNI network config");
                    return Ok(Arc::new(list));
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping CNI network config");
                    skipped.push(e.to_string());
                }
            }
        }
        Err(ConfigError::NoConfig {
            dir: self.dir.clone(),
            skipped,
        })
    }
}

fn is_config_name(name: &str) -> bool {
    !name.starts_with('.') && [".conflist", ".conf", ".json"].iter().any(|ext| name.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    const LIST_A: &str = r#"{"cniVersion":"1.0.0","name":"alpha","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn lexically_first_valid_wins_and_invalid_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "00-broken.conflist", "{not json");
        write(
            dir.path(),
            "05-noplugins.conflist",
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#,
        );
        write(dir.path(), "10-alpha.conflist", LIST_A);
        write(dir.path(), "20-beta.conflist", &LIST_A.replace("alpha", "beta"));
        write(dir.path(), "01-ignored.txt", LIST_A);
        let loader = ConfigLoader::new(dir.path());
        let list = loader.load().unwrap();
        assert_eq!(list.name, "alpha");
        assert_eq!(list.plugins.len(), 2);
        assert_eq!(list.source, dir.path().join("10-alpha.conflist"));
    }

    #[test]
    fn single_plugin_conf_is_wrapped() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "10-one.conf",
            r#"{"cniVersion":"0.4.0","name":"one","type":"bridge","bridge":"cni0"}"#,
        );
        let list = ConfigLoader::new(dir.path()).load().unwrap();
        assert_eq!(list.name, "one");
        assert_eq!(list.cni_version, "0.4.0");
        assert_eq!(list.plugins[0].plugin_type, "bridge");
        assert_eq!(list.raw["plugins"][0]["bridge"], "cni0");
    }

    #[test]
    fn json_file_with_plugins_is_a_list() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "10-a.json", LIST_A);
        assert_eq!(ConfigLoader::new(dir.path()).load().unwrap().plugins.len(), 2);
    }

    #[test]
    fn no_config_reason_names_dir_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let loader = ConfigLoader::new(dir.path());
        let err = loader.load().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no network config found in {}", dir.path().display())
        );
        write(
            dir.path(),
            "10-bad.conflist",
            r#"{"cniVersion":"1.0.0","name":"-bad","plugins":[{"type":"x"}]}"#,
        );
        let err = loader.load().unwrap_err().to_string();
        assert!(err.contains("10-bad.conflist") && err.contains("network name"), "{err}");
        let missing = ConfigLoader::new(dir.path().join("nope"));
        assert!(matches!(missing.load(), Err(ConfigError::NoConfig { .. })));
    }

    #[test]
    fn changes_are_picked_up_without_restart() {
        let dir = tempfile::tempdir().unwrap();
        let loader = ConfigLoader::new(dir.path());
        assert!(loader.load().is_err());
        write(dir.path(), "20-beta.conflist", &LIST_A.replace("alpha", "beta"));
        assert_eq!(loader.load().unwrap().name, "beta");
        let first = loader.load().unwrap();
        assert!(
            Arc::ptr_eq(&first, &loader.load().unwrap()),
            "unchanged dir is not re-parsed"
        );
        write(dir.path(), "10-alpha.conflist", LIST_A);
        assert_eq!(loader.load().unwrap().name, "alpha");
        std::fs::remove_file(dir.path().join("10-alpha.conflist")).unwrap();
        assert_eq!(loader.load().unwrap().name, "beta");
    }

    #[test]
    fn invalid_plugins_and_versions_rejected() {
        let p = Path::new("/x.conflist");
        for bad in [
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../evil"}]}"#,
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"notype":1}]}"#,
            r#"{"cniVersion":"7.0.0","name":"n","plugins":[{"type":"a"}]}"#,
            r#"{"cniVersion":"x","name":"n","plugins":[{"type":"a"}]}"#,
            r#"{"cniVersion":"1.0.0","plugins":[{"type":"a"}]}"#,
            r#"[1,2]"#,
        ] {
            assert!(NetworkConfigList::from_bytes(p, bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn capability_args_reach_only_declaring_plugins() {
        let list = NetworkConfigList::from_bytes(Path::new("/a.conflist"), LIST_A.as_bytes()).unwrap();
        let mut caps = CapabilityArgs::new();
        caps.insert(
            "portMappings".into(),
            json!([{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]),
        );
        caps.insert("bandwidth".into(), json!({"ingressRate": 1}));
        let bridge = list.plugin_stdin(0, None, &caps);
        assert!(bridge.get("runtimeConfig").is_none());
        assert_eq!(bridge["name"], "alpha");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        let portmap = list.plugin_stdin(1, None, &caps);
        assert_eq!(portmap["runtimeConfig"]["portMappings"][0]["hostPort"], 80);
        assert!(portmap["runtimeConfig"].get("bandwidth").is_none());
    }

    #[test]
    fn prev_result_is_converted_to_list_version() {
        let list = NetworkConfigList::from_bytes(
            Path::new("/a.conflist"),
            br#"{"cniVersion":"0.4.0","name":"n","plugins":[{"type":"a"},{"type":"b"}]}"#,
        )
        .unwrap();
        let prev = CniResult::parse(br#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}"#, "1.0.0").unwrap();
        let stdin = list.plugin_stdin(1, Some(&prev), &CapabilityArgs::new());
        assert_eq!(stdin["prevResult"]["cniVersion"], "0.4.0");
        assert_eq!(stdin["prevResult"]["ips"][0]["version"], "4");
    }

    #[test]
    fn network_names() {
        assert!(valid_network_name("cbr0"));
        assert!(valid_network_name("my_net.v1-2"));
        assert!(!valid_network_name(""));
        assert!(!valid_network_name("_x"));
        assert!(!valid_network_name("a/b"));
    }
}
