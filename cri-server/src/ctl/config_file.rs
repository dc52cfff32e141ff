//! Pod and container config files in crictl's shapes, JSON or YAML.
//!
//! crictl decodes these files with Go's `encoding/json` into the CRI
//! structs: snake_case keys (matched case-insensitively), every field
//! optional, enums as numbers. The k8s_cri serde types require every field
//! and know only snake_case, so the file is read into a `serde_json::Value`
//! and deserialized through [`Lenient`], which:
//!
//! - accepts `snake_case`, `lowerCamelCase` and Go's case-insensitive keys
//!   (`logDirectory`, `log_directory`, `Log_Directory`) for struct fields,
//!   never touching the keys of maps (`labels`, `annotations`, `sysctls`);
//! - fills absent fields with their zero value (`""`, `0`, `false`, empty
//!   list or map, absent message);
//! - refuses unknown fields, naming the path of the bad field;
//! - takes enum fields as numbers or as their proto names (`protocol: UDP`,
//!   `network: NODE`).

use std::path::Path;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: not JSON or YAML: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {source}")]
    Field { path: String, source: serde_json::Error },
}

/// Read `path` (JSON or YAML, by content) into a CRI config type.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        ParseError::Syntax(message) => ConfigFileError::Syntax { path: shown, message },
        ParseError::Field(source) => ConfigFileError::Field { path: shown, source },
    })
}

#[derive(Debug)]
enum ParseError {
    Syntax(String),
    Field(serde_json::Error),
}

fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        // YAML is a superset of JSON; report YAML's complaint when neither parses.
        Err(_) => serde_yaml::from_str(text).map_err(|e| ParseError::Syntax(e.to_string()))?,
    };
    if !value.is_object() {
        return Err(ParseError::Syntax("the top level is not a mapping".into()));
    }
    T::deserialize(Lenient {
        value: Some(value),
        path: String::new(),
        field: "",
    })
    .map_err(ParseError::Field)
}

/// `logDirectory` / `LogDirectory` / `log_directory` → `log_directory`.
fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An enum field's proto name → its number, for the CRI enums that appear
/// in pod and container configs.
fn enum_number(field: &str, name: &str) -> Option<i32> {
    use k8s_cri::v1::{security_profile::ProfileType, MountPropagation, NamespaceMode, Protocol};
    let upper = name.to_ascii_uppercase();
    match field {
        "protocol" => Protocol::from_str_name(&upper).map(|p| p as i32),
        "network" | "pid" | "ipc" => NamespaceMode::from_str_name(&upper).map(|m| m as i32),
        "propagation" => MountPropagation::from_str_name(&upper).map(|m| m as i32),
        "profile_type" => ProfileType::from_str_name(&upper).map(|t| t as i32),
        _ => None,
    }
}

/// A JSON value (or an absent field, `None`) seen through crictl's lenient
/// decoding rules; `path` names it in errors (`linux.security_context`).
struct Lenient {
    value: Option<Value>,
    path: String,
    field: &'static str,
}

impl Lenient {
    fn error(&self, message: impl std::fmt::Display) -> serde_json::Error {
        let at = if self.path.is_empty() {
            "(top level)"
        } else {
            &self.path
        };
        de::Error::custom(format!("field {at}: {message}"))
    }

    fn child(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Absent or null: the zero value.
    fn is_zero(&self) -> bool {
        matches!(self.value, None | Some(Value::Null))
    }

    /// Hand a present scalar to serde_json, naming the field on error.
    fn scalar<'de, V: Visitor<'de>>(
        self,
        visitor: V,
        f: impl FnOnce(Value, V) -> Result<V::Value, serde_json::Error>,
    ) -> Result<V::Value, serde_json::Error> {
        let value = self.value.clone().unwrap_or(Value::Null);
        f(value, visitor).map_err(|e| self.error(e))
    }
}

macro_rules! integer {
    ($method:ident, $visit:ident, $t:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            if self.is_zero() {
                return visitor.$visit(0);
            }
            if let Some(Value::String(name)) = &self.value {
                if let Some(n) = enum_number(self.field, name) {
                    return visitor.$visit(n as $t);
                }
                if let Ok(n) = name.parse::<$t>() {
                    return visitor.$visit(n);
                }
            }
            self.scalar(visitor, |v, visitor| de::Deserializer::$method(v, visitor))
        }
    };
}

impl<'de> de::Deserializer<'de> for Lenient {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            None => visitor.visit_unit(),
            Some(v) => v.deserialize_any(visitor),
        }
    }

    integer!(deserialize_i32, visit_i32, i32);
    integer!(deserialize_i64, visit_i64, i64);
    integer!(deserialize_u32, visit_u32, u32);
    integer!(deserialize_u64, visit_u64, u64);
    integer!(deserialize_u8, visit_u8, u8);

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.is_zero() {
            return visitor.visit_f64(0.0);
        }
        self.scalar(visitor, |v, visitor| v.deserialize_f64(visitor))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.is_zero() {
            return visitor.visit_bool(false);
        }
        self.scalar(visitor, |v, visitor| v.deserialize_bool(visitor))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match &self.value {
            None | Some(Value::Null) => visitor.visit_string(String::new()),
            // YAML `name: 3` or `value: true` means the string.
            Some(Value::Number(n)) => visitor.visit_string(n.to_string()),
            Some(Value::Bool(b)) => visitor.visit_string(b.to_string()),
            _ => self.scalar(visitor, |v, visitor| v.deserialize_string(visitor)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.is_zero() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            None | Some(Value::Null) => visitor.visit_seq(Items {
                items: Vec::new().into_iter(),
                path: self.path,
                index: 0,
                field: self.field,
            }),
            Some(Value::Array(items)) => visitor.visit_seq(Items {
                items: items.into_iter(),
                path: self.path,
                index: 0,
                field: self.field,
            }),
            Some(other) => Err(de::Error::custom(format!(
                "field {}: expected a list, found {other}",
                self.path
            ))),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            None | Some(Value::Null) => Value::Object(serde_json::Map::new()).deserialize_map(visitor),
            Some(Value::Object(map)) => {
                // Map values are strings in the configs (labels, annotations,
                // sysctls); YAML may have typed them as numbers or booleans.
                let map: serde_json::Map<String, Value> = map
                    .into_iter()
                    .map(|(k, v)| match v {
                        Value::Number(n) => (k, Value::String(n.to_string())),
                        Value::Bool(b) => (k, Value::String(b.to_string())),
                        v => (k, v),
                    })
                    .collect();
                Value::Object(map)
                    .deserialize_map(visitor)
                    .map_err(|e| de::Error::custom(format!("field {}: {e}", self.path)))
            }
            Some(other) => Err(de::Error::custom(format!(
                "field {}: expected a mapping, found {other}",
                self.path
            ))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let mut given = match &self.value {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(other) => return Err(self.error(format!("expected a mapping, found {other}"))),
        };
        let mut values: Vec<Option<Value>> = vec![None; fields.len()];
        let mut keys: Vec<String> = given.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let wanted = snake_case(&key);
            let Some(index) = fields.iter().position(|f| f.eq_ignore_ascii_case(&wanted)) else {
                return Err(de::Error::custom(format!(
                    "unknown field {} (known here: {})",
                    self.child(&key),
                    fields.join(", ")
                )));
            };
            if values[index].is_some() {
                return Err(de::Error::custom(format!(
                    "field {} given twice (as {key} and another spelling)",
                    self.child(fields[index])
                )));
            }
            values[index] = given.remove(&key);
        }
        visitor.visit_map(Fields {
            fields,
            values: values.into_iter(),
            index: 0,
            pending: None,
            path: self.path,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.scalar(visitor, |v, visitor| v.deserialize_enum(name, variants, visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        i8 i16 i128 u16 u128 f32 char bytes byte_buf unit unit_struct tuple tuple_struct identifier ignored_any
    }
}

/// A struct's fields in declaration order, present or absent.
struct Fields {
    fields: &'static [&'static str],
    values: std::vec::IntoIter<Option<Value>>,
    index: usize,
    pending: Option<Option<Value>>,
    path: String,
}

impl<'de> MapAccess<'de> for Fields {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let Some(value) = self.values.next() else {
            return Ok(None);
        };
        self.pending = Some(value);
        let key = self.fields[self.index];
        self.index += 1;
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        let field = self.fields[self.index - 1];
        let path = if self.path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.path)
        };
        seed.deserialize(Lenient {
            value: self.pending.take().flatten(),
            path,
            field,
        })
    }
}

/// A list's items; each item keeps the list's field name (for enum names).
struct Items {
    items: std::vec::IntoIter<Value>,
    path: String,
    index: usize,
    field: &'static str,
}

impl<'de> SeqAccess<'de> for Items {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        seed.deserialize(Lenient {
            value: Some(item),
            path,
            field: self.field,
        })
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};

    use super::*;

    fn pod(text: &str) -> Result<PodSandboxConfig, String> {
        parse(text).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn crictl_json_with_absent_fields() {
        let p = pod(
            r#"{"metadata": {"name": "nginx", "namespace": "default", "attempt": 1, "uid": "u1"},
                       "log_directory": "/tmp", "linux": {}}"#,
        )
        .unwrap();
        let m = p.metadata.unwrap();
        assert_eq!(
            (m.name.as_str(), m.namespace.as_str(), m.attempt),
            ("nginx", "default", 1)
        );
        assert_eq!(p.log_directory, "/tmp");
        assert!(p.linux.unwrap().security_context.is_none());
        assert!(p.dns_config.is_none() && p.labels.is_empty());
    }

    #[test]
    fn yaml_camel_case_and_enum_names() {
        let p = pod("metadata: {name: web, namespace: ns}\nlogDirectory: /var/log/pods/x\n\
                     portMappings:\n- {protocol: UDP, containerPort: 53, hostPort: 5353}\n- {container_port: 80}\n\
                     labels: {App_Name: web, version: 2}\n\
                     linux:\n  securityContext:\n    namespaceOptions: {network: NODE, pid: 1}\n\
                     dns_config: {servers: [1.1.1.1], options: [ndots:2]}\n")
        .unwrap();
        assert_eq!(p.log_directory, "/var/log/pods/x");
        assert_eq!(p.port_mappings[0].protocol, k8s_cri::v1::Protocol::Udp as i32);
        assert_eq!(
            (p.port_mappings[0].container_port, p.port_mappings[0].host_port),
            (53, 5353)
        );
        assert_eq!(
            (p.port_mappings[1].protocol, p.port_mappings[1].container_port),
            (0, 80)
        );
        assert_eq!(p.labels["App_Name"], "web", "map keys are kept as written");
        assert_eq!(p.labels["version"], "2");
        let ns = p.linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!((ns.network, ns.pid), (2, 1));
        assert_eq!(p.dns_config.unwrap().options, ["ndots:2"]);
    }

    #[test]
    fn container_config() {
        let c: ContainerConfig = parse(
            r#"{"metadata": {"name": "c"}, "image": {"image": "busybox"}, "command": ["sh", "-c", "echo hi"],
                "envs": [{"key": "A", "value": "1"}], "log_path": "c.log",
                "linux": {"security_context": {"run_as_user": {"value": 1000}, "capabilities": {"add_capabilities": ["NET_ADMIN"]}}}}"#,
        )
        .unwrap();
        assert_eq!(c.image.unwrap().image, "busybox");
        assert_eq!(c.envs[0].value, "1");
        let sc = c.linux.unwrap().security_context.unwrap();
        assert_eq!(sc.run_as_user.unwrap().value, 1000);
        assert_eq!(sc.capabilities.unwrap().add_capabilities, ["NET_ADMIN"]);
    }

    #[test]
    fn errors_name_the_field() {
        let e = pod(r#"{"metadata": {"name": "x", "nmespace": "y"}}"#).unwrap_err();
        assert!(e.contains("unknown field metadata.nmespace"), "{e}");
        let e = pod("port_mappings:\n- {container_port: eighty}\n").unwrap_err();
        assert!(e.contains("field port_mappings[0].container_port"), "{e}");
        let e = pod(r#"{"labels": ["a"]}"#).unwrap_err();
        assert!(e.contains("labels"), "{e}");
        let e = pod(r#"{"log_directory": "/a", "logDirectory": "/b"}"#).unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        assert!(matches!(parse::<PodSandboxConfig>("a: [b"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse::<PodSandboxConfig>("[1]"), Err(ParseError::Syntax(_))));
    }
}
