//! CNI results and error objects as plugins print them on stdout.
//!
//! Plugins answer in the `cniVersion` of their config. We parse 1.x, 0.4.0 and
//! 0.3.x results (and the legacy 0.1/0.2 `ip4`/`ip6` shape) into one [`CniResult`]
//! (the 1.x shape), and serialise it back in the version the next plugin of a
//! chain expects as its `prevResult` (`ips[].version` exists only before 1.0.0).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::ipnet::IpNetwork;
use crate::version::CniVersion;

/// Errors decoding a plugin's stdout.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("plugin output is not JSON: {reason}")]
    NotJson { reason: String },
    #[error("plugin result (cniVersion {version}) is malformed: {reason}")]
    Malformed { version: String, reason: String },
    #[error("plugin result has unsupported cniVersion {0:?}")]
    UnsupportedVersion(String),
}

/// An interface a plugin created or configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the pod; empty on the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route installed in the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub dst: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

/// DNS settings a plugin suggests for the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.domain.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// A CNI ADD result in the 1.x shape, whatever version the plugin spoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniResult {
    /// The version the plugin answered in.
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Deserialize)]
struct Current {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Deserialize)]
struct LegacyIp {
    ip: IpNetwork,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    routes: Vec<Route>,
}

#[derive(Deserialize)]
struct Legacy {
    #[serde(default)]
    ip4: Option<LegacyIp>,
    #[serde(default)]
    ip6: Option<LegacyIp>,
    #[serde(default)]
    dns: Dns,
}

impl CniResult {
    /// Parses a result. `fallback_version` is used when the output has no `cniVersion`.
    pub fn parse(bytes: &[u8], fallback_version: &str) -> Result<CniResult, ResultError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ResultError::NotJson { reason: e.to_string() })?;
        Self::from_value(value, fallback_version)
    }

    pub fn from_value(value: Value, fallback_version: &str) -> Result<CniResult, ResultError> {
        let version_text = value
            .get("cniVersion")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .unwrap_or(fallback_version)
            .to_string();
        let version: CniVersion = version_text
            .parse()
            .map_err(|_| ResultError::UnsupportedVersion(version_text.clone()))?;
        let malformed = |e: serde_json::Error| ResultError::Malformed {
            version: version_text.clone(),
            reason: e.to_string(),
        };
        if version >= CniVersion::V0_3_0 {
            if version > CniVersion::LATEST {
                return Err(ResultError::UnsupportedVersion(version_text));
            }
            // 0.3.x/0.4.0 carry `ips[].version`, which serde ignores here.
            let cur: Current = serde_json::from_value(value).map_err(malformed)?;
            if let Some(bad) = cur
                .ips
                .iter()
                .find(|ip| ip.interface.is_some_and(|i| i >= cur.interfaces.len()))
            {
                return Err(ResultError::Malformed {
                    version: version_text,
                    reason: format!(
                        "ip {} names interface index {:?} out of range",
                        bad.address, bad.interface
                    ),
                });
            }
            Ok(CniResult {
                cni_version: version_text,
                interfaces: cur.interfaces,
                ips: cur.ips,
                routes: cur.routes,
                dns: cur.dns,
            })
        } else {
            let legacy: Legacy = serde_json::from_value(value).map_err(malformed)?;
            let mut result = CniResult {
                cni_version: version_text,
                interfaces: Vec::new(),
                ips: Vec::new(),
                routes: Vec::new(),
                dns: legacy.dns,
            };
            for ip in [legacy.ip4, legacy.ip6].into_iter().flatten() {
                result.ips.push(IpConfig {
                    address: ip.ip,
                    gateway: ip.gateway,
                    interface: None,
                });
                result.routes.extend(ip.routes);
            }
            Ok(result)
        }
    }

    /// Serialises the result as `version` expects it (for `prevResult` and the cache).
    pub fn to_value(&self, version: &str) -> Value {
        let v: CniVersion = version.parse().unwrap_or(CniVersion::LATEST);
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version));
        if v < CniVersion::V0_3_0 {
            // Legacy shape: first v4 and first v6 address.
            for (key, is_v4) in [("ip4", true), ("ip6", false)] {
                if let Some(ip) = self.ips.iter().find(|ip| ip.address.addr.is_ipv4() == is_v4) {
                    let routes: Vec<&Route> = self.routes.iter().filter(|r| r.dst.addr.is_ipv4() == is_v4).collect();
                    let mut o = json!({ "ip": ip.address, "routes": routes });
                    if let Some(gw) = ip.gateway {
                        o["gateway"] = json!(gw);
                    }
                    out.insert(key.into(), o);
                }
            }
        } else {
            if !self.interfaces.is_empty() {
                out.insert("interfaces".into(), json!(self.interfaces));
            }
            let ips: Vec<Value> = self
                .ips
                .iter()
                .map(|ip| {
                    let mut o = json!(ip);
                    if v < CniVersion::V1_0_0 {
                        o["version"] = json!(if ip.address.addr.is_ipv4() { "4" } else { "6" });
                    }
                    o
                })
                .collect();
            if !ips.is_empty() {
                out.insert("ips".into(), Value::Array(ips));
            }
            if !self.routes.is_empty() {
                out.insert("routes".into(), json!(self.routes));
            }
        }
        if !self.dns.is_empty() {
            out.insert("dns".into(), json!(self.dns));
        }
        Value::Object(out)
    }

    /// Addresses on interfaces inside the pod (those with a `sandbox`), or every
    /// address when the plugin did not say which interface it belongs to.
    pub fn pod_ips(&self) -> Vec<IpNetwork> {
        self.ips
            .iter()
            .filter(|ip| match ip.interface {
                Some(i) => self.interfaces.get(i).is_some_and(|iface| !iface.sandbox.is_empty()),
                None => true,
            })
            .map(|ip| ip.address)
            .collect()
    }
}

/// The error object a failing plugin prints (`code`, `msg`, `details`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    #[serde(default, rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

impl ErrorObject {
    /// Code 3: "container unknown or does not exist" — a DEL treats it as done.
    pub const CONTAINER_UNKNOWN: u32 = 3;
    /// Code 11: "try again later".
    pub const TRY_AGAIN_LATER: u32 = 11;

    /// Parses stdout as an error object, if it is one.
    pub fn parse(bytes: &[u8]) -> Option<ErrorObject> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        value.get("code")?.as_u64()?;
        serde_json::from_value(value).ok()
    }
}

/// The answer to `CNI_COMMAND=VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionInfo {
    #[serde(default, rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default, rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// Legacy plugins that predate VERSION only speak 0.1.0 and 0.2.0.
    pub fn legacy() -> VersionInfo {
        VersionInfo {
            cni_version: "0.1.0".into(),
            supported_versions: vec!["0.1.0".into(), "0.2.0".into()],
        }
    }

    pub fn supports(&self, version: &str) -> bool {
        let Ok(want) = version.parse::<CniVersion>() else {
            return false;
        };
        self.supported_versions
            .iter()
            .any(|v| v.parse::<CniVersion>().is_ok_and(|v| v == want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V100: &str = r#"{
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "veth1", "mac": "aa:bb:cc:dd:ee:02"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/p1"}
        ],
        "ips": [{"address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}],
        "dns": {"nameservers": ["10.22.0.1"], "search": ["svc.local"]}
    }"#;

    #[test]
    fn parses_1_0_0() {
        let r = CniResult::parse(V100.as_bytes(), "1.0.0").unwrap();
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.ips[0].address.to_string(), "10.22.0.5/16");
        assert_eq!(r.ips[0].gateway, Some("10.22.0.1".parse().unwrap()));
        assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(r.dns.nameservers, vec!["10.22.0.1"]);
        assert_eq!(r.pod_ips(), vec!["10.22.0.5/16".parse().unwrap()]);
        let v = r.to_value("1.0.0");
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(CniResult::from_value(v, "1.0.0").unwrap(), r);
    }

    #[test]
    fn parses_0_4_0_and_converts_both_ways() {
        let text = r#"{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
            "ips":[{"version":"4","address":"10.1.0.2/24","gateway":"10.1.0.1","interface":0},
                   {"version":"6","address":"fd00::2/64","interface":0}]}"#;
        let r = CniResult::parse(text.as_bytes(), "0.4.0").unwrap();
        assert_eq!(r.cni_version, "0.4.0");
        assert_eq!(r.ips.len(), 2);
        let old = r.to_value("0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        let new = r.to_value("1.0.0");
        assert!(new["ips"][1].get("version").is_none());
        assert_eq!(new["cniVersion"], "1.0.0");
    }

    #[test]
    fn parses_0_3_1_without_version_in_output() {
        let text = r#"{"ips":[{"version":"4","address":"10.1.0.2/24"}]}"#;
        let r = CniResult::parse(text.as_bytes(), "0.3.1").unwrap();
        assert_eq!(r.cni_version, "0.3.1");
        assert_eq!(r.pod_ips().len(), 1);
    }

    #[test]
    fn parses_legacy_0_2_0() {
        let text = r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.9.0.3/16","gateway":"10.9.0.1",
            "routes":[{"dst":"0.0.0.0/0"}]}}"#;
        let r = CniResult::parse(text.as_bytes(), "0.2.0").unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.9.0.3/16");
        assert_eq!(r.routes.len(), 1);
        let back = r.to_value("0.2.0");
        assert_eq!(back["ip4"]["ip"], "10.9.0.3/16");
    }

    #[test]
    fn rejects_malformed_results() {
        assert!(matches!(
            CniResult::parse(b"not json", "1.0.0"),
            Err(ResultError::NotJson { .. })
        ));
        let bad_addr = r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1"}]}"#;
        assert!(matches!(
            CniResult::parse(bad_addr.as_bytes(), "1.0.0"),
            Err(ResultError::Malformed { .. })
        ));
        let bad_index = r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","interface":4}]}"#;
        assert!(matches!(
            CniResult::parse(bad_index.as_bytes(), "1.0.0"),
            Err(ResultError::Malformed { .. })
        ));
        let future = r#"{"cniVersion":"9.0.0"}"#;
        assert!(matches!(
            CniResult::parse(future.as_bytes(), "1.0.0"),
            Err(ResultError::UnsupportedVersion(_))
        ));
    }

    #[test]
    fn parses_error_objects() {
        let e =
            ErrorObject::parse(br#"{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"no ipam"}"#).unwrap();
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_str()),
            (7, "bad config", "no ipam")
        );
        assert!(ErrorObject::parse(V100.as_bytes()).is_none());
        assert!(ErrorObject::parse(b"garbage").is_none());
    }

    #[test]
    fn version_info_supports() {
        let v: VersionInfo =
            serde_json::from_str(r#"{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}"#).unwrap();
        assert!(v.supports("0.4.0"));
        assert!(v.supports("1.0"));
        assert!(!v.supports("1.1.0"));
        assert!(VersionInfo::legacy().supports("0.2.0"));
    }
}
