//! The error type of the safe layer.

use std::fmt;

use crate::abi::{Failure, FailureKind};

/// An error from a plugin or from a host service, carrying a message meant
/// for the user.
///
/// Like `anyhow::Error`, it converts from every `std::error::Error`, so `?`
/// works on I/O errors, parse errors and the like.
pub struct Error {
    kind: FailureKind,
    message: String,
}

/// Result type of the safe layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with the given message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error {
            kind: FailureKind::Error,
            message: message.to_string(),
        }
    }

    /// Prefix the message with some context: `"{context}: {message}"`.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }

    /// Whether this error stands for a panic caught at the boundary.
    pub fn is_panic(&self) -> bool {
        self.kind == FailureKind::Panic
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn panic(message: String) -> Self {
        Error {
            kind: FailureKind::Panic,
            message,
        }
    }

    pub(crate) fn into_failure(self) -> Failure {
        Failure {
            kind: self.kind,
            message: self.message.into(),
        }
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        Error {
            kind: f.kind,
            message: f.message.into_string(),
        }
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error::msg(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

/// Return early with an [`Error`] built from a format string.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Error::msg(::std::format!($($arg)*)))
    };
}
