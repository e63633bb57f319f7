//! The one classification of a failed call to the coordinator, whichever
//! way it is reached: the engine's errors map to a [`CallError`], which
//! travels as a gRPC status (its code is the kind) or directly in one
//! process, and a worker decides from its kind whether to retry, drop the
//! sweep's slots or stop.

use tonic::{Code, Status};

/// What kind of failure a call had (the gRPC codes the services use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad request: retrying cannot help.
    InvalidArgument,
    /// The sweep (or lease) is not known: it was deleted.
    NotFound,
    AlreadyExists,
    /// The sweep's state does not allow the call (e.g. deleting a running
    /// sweep).
    FailedPrecondition,
    /// The coordinator or its store cannot answer now: retry.
    Unavailable,
    /// A missing or wrong token.
    Unauthenticated,
    PermissionDenied,
    /// Anything else a status may carry (treated as worth retrying).
    Other(Code),
}

impl ErrorKind {
    /// The gRPC code of the kind.
    pub fn code(self) -> Code {
        match self {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::Other(c) => c,
        }
    }

    /// The kind a gRPC code stands for.
    pub fn of_code(code: Code) -> ErrorKind {
        match code {
            Code::InvalidArgument => ErrorKind::InvalidArgument,
            Code::NotFound => ErrorKind::NotFound,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::FailedPrecondition => ErrorKind::FailedPrecondition,
            Code::Unavailable => ErrorKind::Unavailable,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            c => ErrorKind::Other(c),
        }
    }

    /// Whether retrying the call cannot help (the caller should stop):
    /// a bad request or a refused token.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorKind::InvalidArgument | ErrorKind::Unauthenticated | ErrorKind::PermissionDenied
        )
    }
}

/// A failed call: its kind and a readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CallError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> CallError {
        CallError {
            kind,
            message: message.into(),
        }
    }

    /// The message with the kind's code in front (`Unavailable: ...`), or
    /// the code alone when there is no message.
    pub fn with_code(&self) -> String {
        let code = self.kind.code();
        if self.message.is_empty() {
            format!("{code:?}")
        } else {
            format!("{code:?}: {}", self.message)
        }
    }
}

impl From<CallError> for Status {
    fn from(e: CallError) -> Status {
        Status::new(e.kind.code(), e.message)
    }
}

impl From<Status> for CallError {
    fn from(s: Status) -> CallError {
        CallError::new(ErrorKind::of_code(s.code()), s.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_round_trips_its_kind_and_message() {
        for kind in [
            ErrorKind::InvalidArgument,
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::FailedPrecondition,
            ErrorKind::Unavailable,
            ErrorKind::Unauthenticated,
            ErrorKind::PermissionDenied,
            ErrorKind::Other(Code::Internal),
        ] {
            let e = CallError::new(kind, "why");
            let back = CallError::from(Status::from(e.clone()));
            assert_eq!(back, e);
        }
        assert_eq!(
            CallError::new(ErrorKind::Unavailable, "").with_code(),
            "Unavailable"
        );
        assert_eq!(
            CallError::new(ErrorKind::NotFound, "gone").with_code(),
            "NotFound: gone"
        );
        assert!(ErrorKind::Unauthenticated.is_fatal() && !ErrorKind::FailedPrecondition.is_fatal());
    }
}
