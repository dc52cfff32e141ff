//! The one place where errors become gRPC statuses.
//!
//! Handlers return `Result<_, CriError>`; `?` on the trait boundary converts
//! with the `From<CriError> for tonic::Status` below. The message always names
//! the field, image or ID concerned.

use berth_images::error::ErrorKind;
use berth_images::ImagesError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("{rpc} is not implemented by berth yet")]
    Unimplemented { rpc: &'static str },
    #[error(transparent)]
    Images(#[from] ImagesError),
    /// An unknown pod, container or image ID.
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// A name or resource already held; the message names the holder.
    #[error("{0}")]
    AlreadyExists(String),
    /// Valid request, wrong state (e.g. starting a container twice).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The operation ran out of its own time (ExecSync's timeout): the
    /// kubelet reads this code as a timed-out probe.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bounded resource is used up (streaming URLs waiting, sessions).
    #[error("{0}")]
    ResourceExhausted(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Container(#[from] berth_runtime::container::ContainerError),
    #[error(transparent)]
    Sandbox(#[from] berth_runtime::sandbox::SandboxError),
    #[error("pod network: {0}")]
    Network(#[from] berth_cni::Error),
    #[error("{0}")]
    Internal(String),
    /// A failure whose cleanup failed too; both are kept, the code is the first's.
    #[error("{first}; cleanup also failed: {cleanup}")]
    WithCleanup {
        first: Box<CriError>,
        cleanup: Box<CriError>,
    },
}

impl CriError {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        CriError::NotFound { kind, id: id.into() }
    }

    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        CriError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// Adds `cleanup`'s failure to `self`, keeping both.
    pub fn with_cleanup(self, cleanup: Result<(), CriError>) -> CriError {
        match cleanup {
            Ok(()) => self,
            Err(c) => CriError::WithCleanup {
                first: Box::new(self),
                cleanup: Box::new(c),
            },
        }
    }

    pub fn code(&self) -> Code {
        match self {
            CriError::InvalidArgument { .. } => Code::InvalidArgument,
            CriError::Unimplemented { .. } => Code::Unimplemented,
            CriError::Images(e) => images_code(e.kind()),
            CriError::NotFound { .. } => Code::NotFound,
            CriError::AlreadyExists(_) => Code::AlreadyExists,
            CriError::FailedPrecondition(_) => Code::FailedPrecondition,
            CriError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            CriError::ResourceExhausted(_) => Code::ResourceExhausted,
            CriError::Store(crate::store::StoreError::NameInUse { .. }) => Code::AlreadyExists,
            CriError::Store(crate::store::StoreError::NotFound { .. }) => Code::NotFound,
            CriError::Container(berth_runtime::container::ContainerError::State(
                berth_runtime::state::StateError::NotFound(_),
            )) => Code::NotFound,
            CriError::Sandbox(
                berth_runtime::sandbox::SandboxError::Sysctl { .. }
                | berth_runtime::sandbox::SandboxError::InvalidRequest { .. }
                | berth_runtime::sandbox::SandboxError::InvalidId(_),
            ) => Code::InvalidArgument,
            CriError::Sandbox(berth_runtime::sandbox::SandboxError::NotFound(_)) => Code::NotFound,
            CriError::Network(berth_cni::Error::InvalidRequest(_)) => Code::InvalidArgument,
            CriError::Store(_) | CriError::Container(_) | CriError::Sandbox(_) | CriError::Network(_) => Code::Internal,
            CriError::Internal(_) => Code::Internal,
            CriError::WithCleanup { first, .. } => first.code(),
        }
    }
}

fn images_code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::DataLoss => Code::DataLoss,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unknown => Code::Unknown,
        ErrorKind::Internal => Code::Internal,
    }
}

impl From<CriError> for Status {
    fn from(e: CriError) -> Status {
        let code = e.code();
        if matches!(code, Code::Internal | Code::DataLoss) {
            tracing::error!(error = %e, "request failed");
        } else {
            tracing::debug!(error = %e, ?code, "request refused");
        }
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_errors_map_to_kubelet_codes() {
        let cases: Vec<(ImagesError, Code)> = vec![
            (ImagesError::ImageNotFound("x".into()), Code::NotFound),
            (
                ImagesError::InvalidReference {
                    reference: "A".into(),
                    reason: "r".into(),
                },
                Code::InvalidArgument,
            ),
            (
                ImagesError::RegistryUnavailable {
                    host: "h".into(),
                    detail: "d".into(),
                },
                Code::Unavailable,
            ),
            (
                ImagesError::Unauthenticated {
                    host: "h".into(),
                    detail: "d".into(),
                },
                Code::Unauthenticated,
            ),
            (
                ImagesError::PermissionDenied {
                    host: "h".into(),
                    detail: "d".into(),
                },
                Code::PermissionDenied,
            ),
            (
                ImagesError::DigestMismatch {
                    expected: "e".into(),
                    actual: "a".into(),
                },
                Code::DataLoss,
            ),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            let status: Status = CriError::from(err).into();
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), text);
        }
    }

    #[test]
    fn cleanup_failures_keep_both_errors_and_the_first_code() {
        let e = CriError::not_found("pod sandbox", "p1").with_cleanup(Err(CriError::Internal("umount /x".into())));
        assert_eq!(e.code(), Code::NotFound);
        let text = e.to_string();
        assert!(text.contains("p1") && text.contains("umount /x"), "{text}");
        assert!(matches!(
            CriError::invalid("f", "r").with_cleanup(Ok(())),
            CriError::InvalidArgument { .. }
        ));
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let status: Status = CriError::invalid("image.image", "must not be empty").into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("image.image"));
    }
}
