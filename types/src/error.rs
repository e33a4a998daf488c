//! The one error type of these values: what is wrong with an input (a name, an ID, an
//! environment, a role), or why a directory could not be packed. The engine turns it into its
//! own error (`engine::Error: From<types::Error>`); messages are safe to show and never contain
//! env values.

use std::fmt;

use crate::auth::Role;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that can never be right: a bad name, key, line or option. `field` names where.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Several fields of one submission are wrong (the Console's environment editor): each
    /// names its field, so that the message can be shown next to it.
    #[error("{}", FieldError::join(.0))]
    Fields(Vec<FieldError>),
    /// A value over its limit.
    #[error("{what} is too large (limit {limit} bytes)")]
    TooLarge { what: String, limit: usize },
    /// The caller's role is too low for what it asked.
    #[error("this needs the {needed} role")]
    Forbidden { needed: Role },
    /// Reading or packing files failed (feature `pack`).
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Io`] with `context` (`reading x`), for `map_err`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// What is wrong with one field of a submission. `field` is the submission's own name for it
/// (`rows.2.key`, `paste`, ...); `message` is for people and never contains a secret value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The messages, separated by `; `.
    pub fn join(errors: &[FieldError]) -> String {
        errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The kind of an error (the engine's, authentication's), for mapping to HTTP statuses or exit
/// codes in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Invalid,
    NotFound,
    Conflict,
    TooLarge,
    Unprocessable,
    Internal,
    Unauthenticated,
    Forbidden,
    RateLimited,
}

impl ErrorKind {
    /// A refusal of the caller (not signed in, role too low, rate limited) rather than a
    /// failure: audited as `denied`.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            ErrorKind::Unauthenticated | ErrorKind::Forbidden | ErrorKind::RateLimited
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Unprocessable => "unprocessable",
            ErrorKind::Internal => "internal",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::RateLimited => "rate_limited",
        })
    }
}
