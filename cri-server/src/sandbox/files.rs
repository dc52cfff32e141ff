//! The files a pod's containers see at /etc/resolv.conf, /etc/hosts and
//! /etc/hostname: written once per pod under its state dir (temp + rename),
//! bind-mounted into each container.
//!
//! Not fsynced: they live in the volatile state dir (`/run`), where a
//! berthd crash leaves them intact in the page cache and a machine crash
//! takes the pods that use them too (a pod whose files are gone is
//! NotReady after a reboot and gets recreated).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_cri::v1::DnsConfig;

use crate::error::CriError;

/// The three files of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    pub hostname: PathBuf,
}

/// Where the host keeps the originals (passed in so tests use temp files).
#[derive(Debug, Clone)]
pub struct HostFiles {
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
}

impl Default for HostFiles {
    fn default() -> Self {
        HostFiles {
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hosts: PathBuf::from("/etc/hosts"),
        }
    }
}

const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";
/// The resolver reads at most this many search domains (glibc's MAXDNSRCH).
const MAX_SEARCHES: usize = 32;

/// Write the pod's files into `dir`. Host-network pods get the host's
/// resolv.conf and hosts; others get a resolv.conf from `dns` (the host's when
/// the kubelet sends none) and a localhost-only hosts file.
pub fn write_pod_files(
    dir: &Path,
    hostname: &str,
    dns: Option<&DnsConfig>,
    host_network: bool,
    host: &HostFiles,
) -> Result<PodFiles, CriError> {
    let files = PodFiles {
        resolv_conf: dir.join("resolv.conf"),
        hosts: dir.join("hosts"),
        hostname: dir.join("hostname"),
    };
    let resolv = match dns {
        Some(dns) if !host_network => resolv_conf(dns)?,
        _ => read_host(&host.resolv_conf)?,
    };
    let hosts = if host_network {
        read_host(&host.hosts)?
    } else {
        DEFAULT_HOSTS.to_string()
    };
    write_atomic(&files.resolv_conf, resolv.as_bytes())?;
    write_atomic(&files.hosts, hosts.as_bytes())?;
    write_atomic(&files.hostname, format!("{hostname}\n").as_bytes())?;
    Ok(files)
}

/// resolv.conf text from the kubelet's DNS config, validated field by field.
pub fn resolv_conf(dns: &DnsConfig) -> Result<String, CriError> {
    let mut out = String::new();
    if dns.searches.len() > MAX_SEARCHES {
        return Err(CriError::invalid(
            "config.dns_config.searches",
            format!("{} search domains, at most {MAX_SEARCHES}", dns.searches.len()),
        ));
    }
    for (i, s) in dns.searches.iter().enumerate() {
        if s.is_empty()
            || s.len() > 253
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(CriError::invalid(
                "config.dns_config.searches",
                format!("[{i}] {s:?} is not a domain name"),
            ));
        }
    }
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for (i, server) in dns.servers.iter().enumerate() {
        if server.parse::<IpAddr>().is_err() {
            return Err(CriError::invalid(
                "config.dns_config.servers",
                format!("[{i}] {server:?} is not an IP address"),
            ));
        }
        out.push_str(&format!("nameserver {server}\n"));
    }
    for (i, option) in dns.options.iter().enumerate() {
        if option.is_empty() || option.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CriError::invalid(
                "config.dns_config.options",
                format!("[{i}] {option:?} is not a resolver option"),
            ));
        }
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(out)
}

/// RFC 1123 hostname, as the kernel accepts it (at most 64 bytes).
pub fn validate_hostname(hostname: &str) -> Result<(), CriError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if hostname.is_empty() || hostname.len() > 64 || !hostname.split('.').all(label_ok) {
        return Err(CriError::invalid(
            "config.hostname",
            format!("{hostname:?} is not a valid hostname"),
        ));
    }
    Ok(())
}

fn read_host(path: &Path) -> Result<String, CriError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(CriError::Internal(format!("read {}: {e}", path.display()))),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CriError> {
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| CriError::Internal(format!("write {}: {e}", path.display()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(servers: &[&str], searches: &[&str], options: &[&str]) -> DnsConfig {
        DnsConfig {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            searches: searches.iter().map(|s| s.to_string()).collect(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn resolv_conf_carries_the_kubelet_dns_config() {
        let text = resolv_conf(&dns(
            &["10.96.0.10", "fd00::a"],
            &["ns.svc.cluster.local", "cluster.local"],
            &["ndots:5"],
        ))
        .unwrap();
        assert_eq!(
            text,
            "search ns.svc.cluster.local cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5\n"
        );
    }

    #[test]
    fn bad_dns_fields_are_named() {
        for (d, field) in [
            (dns(&["not-an-ip"], &[], &[]), "servers"),
            (dns(&[], &["bad domain"], &[]), "searches"),
            (dns(&[], &[], &["ndots:5\nnameserver 1.2.3.4"]), "options"),
        ] {
            let err = resolv_conf(&d).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn pod_files_for_pod_and_host_network() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostFiles {
            resolv_conf: dir.path().join("host-resolv"),
            hosts: dir.path().join("host-hosts"),
        };
        std::fs::write(&host.resolv_conf, "nameserver 192.0.2.1\n").unwrap();
        std::fs::write(&host.hosts, "127.0.0.1 localhost node1\n").unwrap();
        let pod = dir.path().join("pod");
        std::fs::create_dir(&pod).unwrap();

        let f = write_pod_files(&pod, "web-0", Some(&dns(&["10.96.0.10"], &[], &[])), false, &host).unwrap();
        assert_eq!(
            std::fs::read_to_string(&f.resolv_conf).unwrap(),
            "nameserver 10.96.0.10\n"
        );
        assert!(std::fs::read_to_string(&f.hosts)
            .unwrap()
            .starts_with("127.0.0.1\tlocalhost\n"));
        assert_eq!(std::fs::read_to_string(&f.hostname).unwrap(), "web-0\n");

        let f = write_pod_files(&pod, "node1", None, true, &host).unwrap();
        assert_eq!(
            std::fs::read_to_string(&f.resolv_conf).unwrap(),
            "nameserver 192.0.2.1\n"
        );
        assert_eq!(
            std::fs::read_to_string(&f.hosts).unwrap(),
            "127.0.0.1 localhost node1\n"
        );

        // No DNS config: the host's resolver settings.
        let f = write_pod_files(&pod, "web-0", None, false, &host).unwrap();
        assert_eq!(
            std::fs::read_to_string(&f.resolv_conf).unwrap(),
            "nameserver 192.0.2.1\n"
        );
    }

    #[test]
    fn hostnames() {
        for ok in ["a", "web-0", "a.b.c", &"x".repeat(63)] {
            validate_hostname(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "a_b", "a b", &"x".repeat(65), "a..b"] {
            assert!(validate_hostname(bad).is_err(), "{bad:?}");
        }
    }
}
