//! The crate's error type. `cri-server` maps [`ImagesError::kind`] to gRPC codes
//! in one place; every variant names the thing it concerns.

use std::path::PathBuf;

pub type Result<T, E = ImagesError> = std::result::Result<T, E>;

/// Coarse class of an error, the only thing the CRI layer needs to choose a
/// gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input from the caller (malformed reference, bad auth config).
    InvalidArgument,
    /// The image / blob / manifest does not exist.
    NotFound,
    /// A registry (or mirror) could not be reached; retrying may help.
    Unavailable,
    /// The registry refused our credentials, or we had none and it wanted some.
    Unauthenticated,
    /// Authenticated but not allowed.
    PermissionDenied,
    /// Content from the registry is wrong: digest/size mismatch, oversized,
    /// unsupported media type, malformed manifest, hostile layer.
    DataLoss,
    /// The operation is valid but cannot be done in the current state
    /// (e.g. removing an image a container still uses).
    FailedPrecondition,
    /// The registry answered something we cannot classify (an unexpected 4xx).
    Unknown,
    /// Anything else: local I/O, store corruption.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("image {0:?} not found")]
    ImageNotFound(String),
    #[error("{what} not found in registry {host}: {detail}")]
    RegistryNotFound { host: String, what: String, detail: String },
    #[error("registry {host} unreachable: {detail}")]
    RegistryUnavailable { host: String, detail: String },
    #[error("registry {host} requires authentication: {detail}")]
    Unauthenticated { host: String, detail: String },
    #[error("registry {host} denied access: {detail}")]
    PermissionDenied { host: String, detail: String },
    #[error("registry {host} answered {status} for {url}: {detail}")]
    RegistryProtocol {
        host: String,
        url: String,
        status: u16,
        detail: String,
    },
    #[error("digest mismatch for {expected}: got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch { digest: String, expected: u64, actual: u64 },
    #[error("{what} {digest} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        what: String,
        digest: String,
        size: u64,
        limit: u64,
    },
    #[error("unsupported media type {media_type:?} for {digest}")]
    UnsupportedMediaType { media_type: String, digest: String },
    #[error("malformed {what} {digest}: {reason}")]
    Malformed {
        what: String,
        digest: String,
        reason: String,
    },
    #[error("no manifest for platform {platform} in index {digest}")]
    NoMatchingPlatform { platform: String, digest: String },
    #[error("layer {digest}: entry {entry:?} refused: {reason}")]
    HostileLayer {
        digest: String,
        entry: String,
        reason: String,
    },
    #[error("layer {digest} is non-distributable ({media_type}): berth only pulls layers the registry serves")]
    NonDistributableLayer { digest: String, media_type: String },
    #[error("image {image} is in use by {holder}")]
    InUse { image: String, holder: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata store: {0}")]
    Store(String),
    #[error("{0}")]
    Internal(String),
    /// The same failure handed to every caller that joined one shared
    /// operation (two concurrent pulls of one image, one layer needed by two
    /// pulls).
    #[error("{0}")]
    Shared(std::sync::Arc<ImagesError>),
}

impl ImagesError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImagesError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        use ImagesError::*;
        match self {
            InvalidReference { .. } | InvalidDigest { .. } | InvalidArgument { .. } => ErrorKind::InvalidArgument,
            ImageNotFound(_) | RegistryNotFound { .. } | NoMatchingPlatform { .. } => ErrorKind::NotFound,
            RegistryUnavailable { .. } => ErrorKind::Unavailable,
            Unauthenticated { .. } => ErrorKind::Unauthenticated,
            PermissionDenied { .. } => ErrorKind::PermissionDenied,
            RegistryProtocol { status, .. } if *status >= 500 => ErrorKind::Unavailable,
            RegistryProtocol { .. } => ErrorKind::Unknown,
            DigestMismatch { .. }
            | SizeMismatch { .. }
            | TooLarge { .. }
            | UnsupportedMediaType { .. }
            | Malformed { .. }
            | HostileLayer { .. }
            | NonDistributableLayer { .. } => ErrorKind::DataLoss,
            InUse { .. } => ErrorKind::FailedPrecondition,
            Io { .. } | Store(_) | Internal(_) => ErrorKind::Internal,
            Shared(inner) => inner.kind(),
        }
    }
}
