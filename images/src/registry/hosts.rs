//! Which URLs serve a registry host: its mirrors in configured order, then
//! the upstream itself.
//!
//! - A mirror URL carries its scheme (`http://` plain, `https://` TLS) and an
//!   optional path prefix kept before `/v2/`.
//! - The upstream is HTTPS, or plain HTTP when the host is configured
//!   `insecure` or is a loopback address (`localhost`, 127.0.0.0/8, `::1`), as
//!   Docker allows — unless the host has TLS settings (`ca_file` or
//!   `skip_verify`), which always mean HTTPS. `docker.io` is served by
//!   `registry-1.docker.io`.
//! - A mirror authenticates with the request's credentials, else its own
//!   configured ones if it is listed as a host, else the upstream's. Its TLS
//!   settings are its own if listed, else the upstream's.

use std::net::IpAddr;
use std::path::PathBuf;

use reqwest::Url;

use super::auth::Secret;
use super::{HostConfig, RegistryConfig};
use crate::reference::DEFAULT_REGISTRY;
use crate::{ImagesError, Result};

/// The host that actually serves `docker.io`.
pub(crate) const DOCKER_HUB_UPSTREAM: &str = "registry-1.docker.io";

/// The TLS settings a client is built for; one HTTP client per distinct key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct TlsKey {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) skip_verify: bool,
}

impl TlsKey {
    pub(crate) fn of(host: &HostConfig) -> TlsKey {
        TlsKey {
            ca_file: host.ca_file.clone(),
            skip_verify: host.skip_verify,
        }
    }
}

/// One place that serves the repository paths of a registry host.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `scheme://authority[/prefix]`, no trailing slash.
    pub(crate) base: String,
    /// `authority` (host[:port]), for errors and logs.
    pub(crate) host: String,
    pub(crate) mirror: bool,
    pub(crate) tls: TlsKey,
    /// Credentials from the configuration, used when the request has none.
    pub(crate) configured: Option<Secret>,
}

impl Endpoint {
    pub(crate) fn manifest_url(&self, repository: &str, selector: &str) -> Result<Url> {
        self.url(&format!("/v2/{repository}/manifests/{selector}"))
    }

    pub(crate) fn blob_url(&self, repository: &str, digest: &str) -> Result<Url> {
        self.url(&format!("/v2/{repository}/blobs/{digest}"))
    }

    fn url(&self, path: &str) -> Result<Url> {
        let text = format!("{}{path}", self.base);
        Url::parse(&text).map_err(|e| ImagesError::Internal(format!("cannot build registry url {text:?}: {e}")))
    }

    pub(crate) fn describe(&self) -> String {
        if self.mirror {
            format!("mirror {}", self.host)
        } else {
            self.host.clone()
        }
    }
}

/// The configuration of `host`, looking through the Docker Hub aliases.
pub(crate) fn host_config<'a>(config: &'a RegistryConfig, host: &str) -> Option<&'a HostConfig> {
    if let Some(found) = config.hosts.get(host) {
        return Some(found);
    }
    if host == DEFAULT_REGISTRY {
        return ["index.docker.io", DOCKER_HUB_UPSTREAM]
            .iter()
            .find_map(|alias| config.hosts.get(*alias));
    }
    None
}

/// Endpoints for the upstream `host` of a normalised reference, mirrors first.
pub(crate) fn endpoints(config: &RegistryConfig, host: &str) -> Result<Vec<Endpoint>> {
    let default = HostConfig::default();
    let upstream_cfg = host_config(config, host).unwrap_or(&default);
    let upstream_secret = Secret::from_host_config(upstream_cfg, host)?;

    let mut out = Vec::with_capacity(upstream_cfg.mirrors.len() + 1);
    for (i, mirror) in upstream_cfg.mirrors.iter().enumerate() {
        let (base, authority) = parse_mirror(mirror).map_err(|reason| ImagesError::InvalidArgument {
            field: format!("registry {host} mirror #{}", i + 1),
            reason,
        })?;
        let own = config.hosts.get(&authority);
        let own_secret = match own {
            Some(cfg) => Secret::from_host_config(cfg, &authority)?,
            None => None,
        };
        out.push(Endpoint {
            base,
            host: authority,
            mirror: true,
            tls: TlsKey::of(own.unwrap_or(upstream_cfg)),
            configured: own_secret.or_else(|| upstream_secret.clone()),
        });
    }

    let served_by = if host == DEFAULT_REGISTRY {
        DOCKER_HUB_UPSTREAM
    } else {
        host
    };
    let tls_configured = upstream_cfg.ca_file.is_some() || upstream_cfg.skip_verify;
    let scheme = if !tls_configured && (upstream_cfg.insecure || is_loopback(host)) {
        "http"
    } else {
        "https"
    };
    out.push(Endpoint {
        base: format!("{scheme}://{served_by}"),
        host: served_by.to_string(),
        mirror: false,
        tls: TlsKey::of(upstream_cfg),
        configured: upstream_secret,
    });
    Ok(out)
}

/// `(base, authority)` of a mirror URL, or why it is refused.
fn parse_mirror(text: &str) -> Result<(String, String), String> {
    let url = Url::parse(text).map_err(|e| format!("invalid mirror url {text:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("mirror url {text:?} must start with http:// or https://"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("mirror url {text:?} must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("mirror url must not embed credentials; configure them for the mirror host instead".into());
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("mirror url {text:?} has no host"))?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    // A trailing `/v2` is the API root itself, not a prefix before it.
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/v2").unwrap_or(path);
    Ok((format!("{}://{authority}{path}", url.scheme()), authority))
}

/// Whether `host` (`name`, `name:port`, `[v6]:port`, bare v6) is loopback.
pub(crate) fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(inside, _)| inside)
    } else if host.matches(':').count() > 1 {
        host // bare IPv6 without brackets or port
    } else {
        host.split_once(':').map_or(host, |(name, _)| name)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entries: &[(&str, HostConfig)]) -> RegistryConfig {
        RegistryConfig {
            hosts: entries.iter().map(|(h, c)| (h.to_string(), c.clone())).collect(),
            ..RegistryConfig::default()
        }
    }

    fn bases(eps: &[Endpoint]) -> Vec<&str> {
        eps.iter().map(|e| e.base.as_str()).collect()
    }

    #[test]
    fn loopback_detection() {
        for yes in [
            "localhost",
            "localhost:5000",
            "LOCALHOST",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.9.8.7:1",
            "[::1]:5000",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "docker.io",
            "10.0.0.1:5000",
            "[::2]:5000",
            "localhost.example:5000",
            "128.0.0.1",
            "example.com:127",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn upstream_schemes() {
        let cfg = config(&[(
            "insecure.example:5000",
            HostConfig {
                insecure: true,
                ..Default::default()
            },
        )]);
        assert_eq!(bases(&endpoints(&cfg, "quay.io").unwrap()), ["https://quay.io"]);
        assert_eq!(
            bases(&endpoints(&cfg, "insecure.example:5000").unwrap()),
            ["http://insecure.example:5000"]
        );
        assert_eq!(
            bases(&endpoints(&cfg, "127.0.0.1:5000").unwrap()),
            ["http://127.0.0.1:5000"]
        );
        assert_eq!(
            bases(&endpoints(&cfg, "localhost:5000").unwrap()),
            ["http://localhost:5000"]
        );
        assert_eq!(bases(&endpoints(&cfg, "[::1]:5000").unwrap()), ["http://[::1]:5000"]);
        // TLS settings on a loopback or insecure host mean it serves HTTPS.
        let mut tls = RegistryConfig::default();
        tls.hosts.insert(
            "127.0.0.1:5443".into(),
            HostConfig {
                ca_file: Some("/etc/berth/ca.pem".into()),
                ..HostConfig::default()
            },
        );
        tls.hosts.insert(
            "insecure.example:5000".into(),
            HostConfig {
                insecure: true,
                skip_verify: true,
                ..HostConfig::default()
            },
        );
        assert_eq!(
            bases(&endpoints(&tls, "127.0.0.1:5443").unwrap()),
            ["https://127.0.0.1:5443"]
        );
        assert_eq!(
            bases(&endpoints(&tls, "insecure.example:5000").unwrap()),
            ["https://insecure.example:5000"]
        );
        let hub = endpoints(&cfg, "docker.io").unwrap();
        assert_eq!(bases(&hub), ["https://registry-1.docker.io"]);
        assert_eq!(hub[0].host, "registry-1.docker.io");
        assert!(!hub[0].mirror);
    }

    #[test]
    fn mirrors_come_first_in_order() {
        let hub = HostConfig {
            mirrors: vec![
                "http://127.0.0.1:5001".into(),
                "https://mirror.example/prefix/".into(),
                "https://other.example:8443/v2/".into(),
            ],
            username: Some("hubuser".into()),
            password: Some("hubpass".into()),
            ..Default::default()
        };
        let mirror_cfg = HostConfig {
            username: Some("m".into()),
            password: Some("p".into()),
            skip_verify: true,
            ..Default::default()
        };
        let cfg = config(&[("docker.io", hub), ("mirror.example", mirror_cfg)]);
        let eps = endpoints(&cfg, "docker.io").unwrap();
        assert_eq!(
            bases(&eps),
            [
                "http://127.0.0.1:5001",
                "https://mirror.example/prefix",
                "https://other.example:8443",
                "https://registry-1.docker.io"
            ]
        );
        assert_eq!(
            eps[0].manifest_url("library/busybox", "latest").unwrap().as_str(),
            "http://127.0.0.1:5001/v2/library/busybox/manifests/latest"
        );
        assert_eq!(
            eps[1].blob_url("a/b", "sha256:00").unwrap().as_str(),
            "https://mirror.example/prefix/v2/a/b/blobs/sha256:00"
        );
        assert!(eps[..3].iter().all(|e| e.mirror));
        assert_eq!(eps[1].host, "mirror.example");
        assert_eq!(eps[2].host, "other.example:8443");
        // Mirror listed as a host: its own credentials and TLS settings.
        assert!(matches!(&eps[1].configured, Some(Secret::Basic { username, .. }) if username == "m"));
        assert!(eps[1].tls.skip_verify);
        // Unlisted mirror: the upstream's.
        assert!(matches!(&eps[0].configured, Some(Secret::Basic { username, .. }) if username == "hubuser"));
        assert!(!eps[0].tls.skip_verify);
    }

    #[test]
    fn docker_hub_aliases_in_config() {
        let cfg = config(&[(
            "index.docker.io",
            HostConfig {
                mirrors: vec!["https://m.example".into()],
                ..Default::default()
            },
        )]);
        assert_eq!(
            bases(&endpoints(&cfg, "docker.io").unwrap()),
            ["https://m.example", "https://registry-1.docker.io"]
        );
    }

    #[test]
    fn bad_mirrors_are_refused() {
        for bad in [
            "mirror.example",
            "ftp://mirror.example",
            "https://u:p@mirror.example",
            "https://mirror.example/?x=1",
            "http://",
        ] {
            let cfg = config(&[(
                "quay.io",
                HostConfig {
                    mirrors: vec![bad.into()],
                    ..Default::default()
                },
            )]);
            let err = endpoints(&cfg, "quay.io").unwrap_err();
            assert!(matches!(err, ImagesError::InvalidArgument { .. }), "{bad}: {err}");
        }
    }
}
