//! The engine's one error type. Callers (the Console, the JSON API) map [`Error::kind`] to
//! their own status codes; messages are safe to show to users and never contain env values.

pub use types::{ErrorKind, FieldError};

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
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// A request the app's current state refuses: a rollout of a release without a build,
    /// a name that is taken, the server shutting down.
    #[error("{0}")]
    Conflict(String),
    /// An environment change that would leave the environment as it is (a conflict with the
    /// state it is based on, not a bad field: the same change to another release would do).
    #[error("env: nothing to change: the environment is already like that")]
    NothingToChange,
    #[error("a rollout is already in progress for app {app} (promotion {promotion})")]
    RolloutInProgress { app: String, promotion: String },
    /// An environment change was based on a release that is no longer the newest (`base`
    /// is empty when the change was based on the app having no release).
    #[error("the environment changed since {} (newest is {newest}): {changes}", since(.base))]
    StaleBase {
        base: String,
        newest: String,
        changes: String,
    },
    #[error("invalid manifest: {0}")]
    Manifest(String),
    #[error("{what} is too large (limit {limit} bytes)")]
    TooLarge { what: String, limit: usize },
    #[error("build failed: {0}")]
    BuildFailed(String),
    /// A source archive refused for one of its entries (a link out of the tree, a device, a
    /// path with `..`, ...); the message names the entry.
    #[error("refused source archive: {0}")]
    UnsafeArchive(String),
    /// An upload that is not a gzip-compressed tar archive (the request was well-formed; its
    /// content cannot be unpacked).
    #[error("source: not a valid .tar.gz: {0}")]
    NotAnArchive(String),
    /// A source archive over one of the server's limits; the message names the limit and the
    /// server flag that sets it.
    #[error("{0}")]
    ArchiveLimit(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
    /// Bad credentials, or a session or API token that is unknown, expired or revoked. The
    /// message never says whether a user exists.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do what it asked ("this needs the deployer role").
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed sign-in attempts; try again after `retry_after_secs`.
    #[error("too many failed sign-in attempts; try again in {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
}

/// What a stale change was based on, in words.
fn since(base: &str) -> String {
    if base.is_empty() {
        "the app had no release".into()
    } else {
        format!("release {base}")
    }
}

/// The shared values' errors (a bad name, ID, key, role, environment; packing a directory) as
/// the engine's.
impl From<types::Error> for Error {
    fn from(e: types::Error) -> Self {
        match e {
            types::Error::Invalid { field, message } => Error::Invalid { field, message },
            types::Error::Fields(fields) => Error::Fields(fields),
            types::Error::TooLarge { what, limit } => Error::TooLarge { what, limit },
            e @ types::Error::Forbidden { .. } => Error::Forbidden(e.to_string()),
            types::Error::Io { context, source } => Error::Io { context, source },
        }
    }
}

/// Authentication's errors as the engine's: what the server and the Console map to statuses.
impl From<auth::Error> for Error {
    fn from(e: auth::Error) -> Self {
        match e {
            auth::Error::Invalid { field, message } => Error::Invalid { field, message },
            auth::Error::NotFound { what, id } => Error::NotFound { what, id },
            auth::Error::Conflict(m) => Error::Conflict(m),
            auth::Error::Unauthenticated(m) => Error::Unauthenticated(m),
            auth::Error::Forbidden(m) => Error::Forbidden(m),
            auth::Error::RateLimited { retry_after_secs } => {
                Error::RateLimited { retry_after_secs }
            }
            auth::Error::Database(e) => Error::Database(e),
            auth::Error::Internal(m) => Error::Internal(m),
        }
    }
}

/// Refusals of the caller are audited as `denied`, other errors as `failed`.
impl types::Refusal for Error {
    fn is_refusal(&self) -> bool {
        self.kind().is_refusal()
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid { .. } | Error::Fields(_) => ErrorKind::Invalid,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Conflict(_)
            | Error::NothingToChange
            | Error::RolloutInProgress { .. }
            | Error::StaleBase { .. } => ErrorKind::Conflict,
            Error::TooLarge { .. } | Error::ArchiveLimit(_) => ErrorKind::TooLarge,
            Error::Manifest(_)
            | Error::BuildFailed(_)
            | Error::UnsafeArchive(_)
            | Error::NotAnArchive(_) => ErrorKind::Unprocessable,
            Error::Database(_) | Error::Migrate(_) | Error::Io { .. } | Error::Internal(_) => {
                ErrorKind::Internal
            }
            Error::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
        }
    }

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

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
