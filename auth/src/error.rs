//! The one error type of authentication. The engine turns it into its own
//! (`engine::Error: From<auth::Error>`), and the server and the Console map that to HTTP
//! statuses, each in one place. Messages are safe to show: they never contain a password or a
//! token, and never say whether a user exists.

use types::{ErrorKind, Refusal, Role};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that can never be right: a bad name, password length, token name or role.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The change conflicts with the current state (a taken name, the last admin).
    #[error("{0}")]
    Conflict(String),
    /// Bad credentials, or a session or API token that is unknown, expired or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this; the message says why.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed sign-in attempts; try again after `retry_after_secs`.
    #[error("too many failed sign-in attempts; try again in {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> Self {
        Error::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// "this needs the admin role".
    pub fn needs(role: Role) -> Self {
        Error::Forbidden(format!("this needs the {role} role"))
    }

    /// The kind of the error, for statuses and exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid { .. } => ErrorKind::Invalid,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Database(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// A bad user name, token ID, role or lifetime; a caller without the role.
impl From<types::Error> for Error {
    fn from(e: types::Error) -> Self {
        match e {
            types::Error::Invalid { field, message } => Error::Invalid { field, message },
            types::Error::Forbidden { needed } => Error::needs(needed),
            // Not made by the values authentication parses.
            other => Error::Internal(other.to_string()),
        }
    }
}

/// Refusals of the caller are audited as `denied`, other errors as `failed`.
impl Refusal for Error {
    fn is_refusal(&self) -> bool {
        self.kind().is_refusal()
    }
}
