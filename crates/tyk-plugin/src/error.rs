//! Handler errors and the one place they become gRPC statuses.
//!
//! An error is for when a plugin *cannot* decide (a backend is down, a bug).
//! The gateway turns any failed call into HTTP 500 `Middleware error`, or 403
//! `Key not authorised` for custom authentication. To refuse or answer a
//! request on purpose, return a response instead ([`crate::Request::respond`],
//! [`crate::AuthRequest::deny`]): a rejection is a response, not an error.

use std::fmt;

use tonic::{Code, Status};

/// What went wrong in a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A bug or an unexpected state in the plugin (gRPC `INTERNAL`).
    Internal,
    /// Something the plugin depends on is unavailable (gRPC `UNAVAILABLE`).
    Unavailable,
    /// The plugin could not finish in time (gRPC `DEADLINE_EXCEEDED`).
    Timeout,
    /// The API's configuration (`config_data`) is unusable (gRPC `FAILED_PRECONDITION`).
    Config,
    /// The Object from the gateway cannot be handled (gRPC `INVALID_ARGUMENT`).
    InvalidObject,
}

/// An error returned by a plugin handler.
#[derive(Debug)]
pub struct PluginError {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl PluginError {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An internal error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// A dependency is unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::NotConnected => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        PluginError::new(kind, "I/O error").with_source(e)
    }
}

impl From<crate::config::ConfigError> for PluginError {
    fn from(e: crate::config::ConfigError) -> Self {
        PluginError::new(ErrorKind::Config, e.to_string())
    }
}

impl From<String> for PluginError {
    fn from(message: String) -> Self {
        PluginError::internal(message)
    }
}

impl From<&str> for PluginError {
    fn from(message: &str) -> Self {
        PluginError::internal(message)
    }
}

/// The single mapping from plugin errors to gRPC statuses.
///
/// | kind | gRPC code |
/// |---|---|
/// | `Internal` (also handler panics) | `INTERNAL` |
/// | `Unavailable` | `UNAVAILABLE` |
/// | `Timeout` | `DEADLINE_EXCEEDED` |
/// | `Config` | `FAILED_PRECONDITION` |
/// | `InvalidObject` | `INVALID_ARGUMENT` |
///
/// The gateway treats every non-OK status alike (HTTP 500, or 403 for custom
/// authentication); the code tells operators what happened.
impl From<PluginError> for Status {
    fn from(e: PluginError) -> Status {
        let code = match e.kind {
            ErrorKind::Internal => Code::Internal,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Timeout => Code::DeadlineExceeded,
            ErrorKind::Config => Code::FailedPrecondition,
            ErrorKind::InvalidObject => Code::InvalidArgument,
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_codes_and_messages_keep_their_source() {
        let s: Status = PluginError::unavailable("redis down").into();
        assert_eq!(s.code(), Code::Unavailable);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let s: Status = PluginError::from(io).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unavailable, "I/O error: refused")
        );
        let s: Status = PluginError::from("bug").into();
        assert_eq!(s.code(), Code::Internal);
    }
}
