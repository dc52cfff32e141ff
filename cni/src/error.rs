//! The crate's error, rolling up each module's own.

use crate::args::InvalidArg;
use crate::bridge::BridgeError;
use crate::cache::CacheError;
use crate::config::ConfigError;
use crate::exec::{CniCommand, ExecError};
use crate::result::ResultError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("network {network}: {source}")]
    Exec {
        network: String,
        #[source]
        source: ExecError,
    },
    #[error("network {network}: CNI plugin {plugin} {command}: {source}")]
    Result {
        network: String,
        plugin: String,
        command: CniCommand,
        #[source]
        source: ResultError,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Args(#[from] InvalidArg),
    #[error("invalid pod network request: {0}")]
    InvalidRequest(String),
    #[error("network {network}: no cached ADD result for pod {pod_id} interface {ifname}")]
    NoCachedResult {
        network: String,
        pod_id: String,
        ifname: String,
    },
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// A failed setup whose rollback failed too; both are kept.
    #[error("{primary}; rollback also failed: {rollback}")]
    Rollback { primary: Box<Error>, rollback: Box<Error> },
}

impl Error {
    /// The plugin error object's code, when a plugin reported one.
    pub fn plugin_code(&self) -> Option<u32> {
        match self {
            Error::Exec { source, .. } => source.error_object().map(|e| e.code),
            Error::Rollback { primary, .. } => primary.plugin_code(),
            _ => None,
        }
    }
}

impl From<crate::bridge::ipam::IpamError> for Error {
    fn from(e: crate::bridge::ipam::IpamError) -> Self {
        Error::Bridge(e.into())
    }
}

impl From<crate::bridge::iptables::IptablesError> for Error {
    fn from(e: crate::bridge::iptables::IptablesError) -> Self {
        Error::Bridge(e.into())
    }
}

impl From<crate::bridge::sysctl::SysctlError> for Error {
    fn from(e: crate::bridge::sysctl::SysctlError) -> Self {
        Error::Bridge(e.into())
    }
}
