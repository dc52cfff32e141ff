//! HTTP clients, one per distinct TLS setting, built once and shared so
//! connections are pooled across pulls.
//!
//! Trust: the system roots (rustls-platform-verifier, via reqwest), plus the
//! PEM certificates of a host's `ca_file`; `skip_verify` turns verification
//! off for that host only. Redirects are not followed by the client (see
//! [`super::transport`]). Connecting times out after 10 s; a response that
//! stalls for 60 s between reads fails; there is no overall limit on a body,
//! so large layers can take as long as they need.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Once;
use std::time::Duration;

use super::hosts::TlsKey;
use crate::{ImagesError, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The HTTP clients of a [`super::RegistryClient`].
#[derive(Debug, Clone)]
pub(crate) struct Clients {
    by_key: HashMap<TlsKey, reqwest::Client>,
}

impl Clients {
    /// Build a client for each distinct key (the default one always).
    pub(crate) fn build(keys: impl IntoIterator<Item = TlsKey>) -> Result<Clients> {
        let mut by_key = HashMap::new();
        for key in std::iter::once(TlsKey::default()).chain(keys) {
            if let Entry::Vacant(slot) = by_key.entry(key) {
                let client = build_client(slot.key())?;
                slot.insert(client);
            }
        }
        Ok(Clients { by_key })
    }

    pub(crate) fn get(&self, key: &TlsKey) -> Result<reqwest::Client> {
        self.by_key
            .get(key)
            .cloned()
            .ok_or_else(|| ImagesError::Internal(format!("no HTTP client built for TLS settings {key:?}")))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// Make ring the process's rustls crypto provider, once. Another component
/// may have installed one already; that is fine.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn build_client(key: &TlsKey) -> Result<reqwest::Client> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_IDLE_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .tls_backend_rustls();
    if let Some(path) = &key.ca_file {
        let field = || format!("ca_file {}", path.display());
        let pem = std::fs::read(path).map_err(|e| ImagesError::io("read registry CA file", path, e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ImagesError::InvalidArgument {
            field: field(),
            reason: format!("not a PEM certificate bundle: {e}"),
        })?;
        if certs.is_empty() {
            return Err(ImagesError::InvalidArgument {
                field: field(),
                reason: "no PEM certificates in the file".into(),
            });
        }
        builder = builder.tls_certs_merge(certs);
    }
    if key.skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| {
        ImagesError::Internal(format!(
            "cannot build HTTP client for {key:?}: {}",
            super::transport::error_chain(&e)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_distinct_setting() {
        let insecure = TlsKey {
            ca_file: None,
            skip_verify: true,
        };
        let clients = Clients::build([TlsKey::default(), insecure.clone(), insecure.clone()]).unwrap();
        assert_eq!(clients.len(), 2);
        clients.get(&insecure).unwrap();
        assert!(clients
            .get(&TlsKey {
                ca_file: Some("/nope".into()),
                skip_verify: false
            })
            .is_err());
    }

    /// A throwaway self-signed CA (`openssl req -x509 -newkey ec`), public part only.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBiDCCAS2gAwIBAgIUK/ZEn9PFfJtLaVttQOUaTr2wEPgwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNYmVydGggdGVzdCBDQTAgFw0yNjExMjMwMjUxMTdaGA8yMTI2
MTAzMDAyNTExN1owGDEWMBQGA1UEAwwNYmVydGggdGVzdCBDQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABA4u0XATGmEqJhiaA3/8qVf38hl1KUJzgXdDFdZ1LKbt
nqSrfl1ym5fcAnSdgs09tcGHEJlQxawMM3TjK/DRSEmjUzBRMB0GA1UdDgQWBBSY
U/Wc/VTCoytD+OF/GDrqjo9/qjAfBgNVHSMEGDAWgBSYU/Wc/VTCoytD+OF/GDrq
jo9/qjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDyE644MmsP
EseI/hY+/Njckfjhba/QwPsnhWg14K9d2gIhAOt6qJCKItzELJITW5C69sfZGmdk
SOr0SZmIbXt85veE
-----END CERTIFICATE-----
";

    #[test]
    fn extra_ca_roots_are_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, format!("# comment lines are fine\n{TEST_CA}{TEST_CA}")).unwrap();
        let key = TlsKey {
            ca_file: Some(ca),
            skip_verify: false,
        };
        Clients::build([key.clone()]).unwrap().get(&key).unwrap();
    }

    #[test]
    fn bad_ca_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsKey {
            ca_file: Some(dir.path().join("missing.pem")),
            skip_verify: false,
        };
        assert!(matches!(Clients::build([missing]).unwrap_err(), ImagesError::Io { .. }));
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let err = Clients::build([TlsKey {
            ca_file: Some(garbage),
            skip_verify: false,
        }])
        .unwrap_err();
        assert!(matches!(err, ImagesError::InvalidArgument { .. }), "{err}");
    }
}
