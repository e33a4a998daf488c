//! The one error type that crosses the wire between server functions and the browser.

use leptos::server_fn::{
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};
use serde::{Deserialize, Serialize};

/// Errors returned by Slipway's server functions. Serialized as JSON, so the browser gets the
/// same variant the server produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AppError {
    /// The thing asked for does not exist.
    #[error("{0} was not found")]
    NotFound(String),
    /// The request was understood but is not acceptable (bad name, bad value, ...).
    #[error("{0}")]
    Invalid(String),
    /// Several fields of a form are wrong; each message belongs next to its field.
    #[error("{}", .0.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; "))]
    Fields(Vec<FieldMessage>),
    /// Nobody is logged in, or the session or token is no longer valid.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts; try again later.
    #[error("{0}")]
    RateLimited(String),
    /// The request conflicts with the current state (a rollout in progress, nothing to change).
    #[error("{0}")]
    Conflict(String),
    /// An edit based on a release that is no longer the newest; the message says what
    /// changed since. The editor keeps the user's edits and offers to start again.
    #[error("{0}")]
    Stale(String),
    /// Something failed on the server; details are in the server log, not here.
    #[error("the server could not complete the request")]
    Internal,
    /// The server function machinery failed (network, encoding, missing context, ...).
    #[error("{0}")]
    ServerFn(ServerFnErrorErr),
}

/// What is wrong with one field of a form (`rows.2.key`, `paste`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMessage {
    pub field: String,
    pub message: String,
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::ServerFn(value)
    }
}

impl AppError {
    /// The HTTP status that best describes this error.
    pub fn status_code(&self) -> u16 {
        match self {
            AppError::NotFound(_) => 404,
            AppError::Invalid(_) | AppError::Fields(_) => 422,
            AppError::Unauthorized(_) => 401,
            AppError::Forbidden(_) => 403,
            AppError::RateLimited(_) => 429,
            AppError::Conflict(_) | AppError::Stale(_) => 409,
            AppError::Internal | AppError::ServerFn(_) => 500,
        }
    }
}

#[cfg(feature = "ssr")]
impl From<engine::Error> for AppError {
    /// Engine errors become readable messages; internal ones are logged and answered generically.
    fn from(e: engine::Error) -> Self {
        use engine::ErrorKind;
        if let engine::Error::Fields(fields) = e {
            let fields = fields
                .into_iter()
                .map(|f| FieldMessage {
                    field: f.field,
                    message: f.message,
                })
                .collect();
            return AppError::Fields(fields).with_status();
        }
        if let engine::Error::StaleBase { .. } = e {
            return AppError::Stale(e.to_string()).with_status();
        }
        let error = match e.kind() {
            ErrorKind::NotFound => AppError::NotFound(match &e {
                engine::Error::NotFound { what, id } => format!("{what} {id}"),
                other => other.to_string(),
            }),
            ErrorKind::Invalid | ErrorKind::TooLarge | ErrorKind::Unprocessable => {
                AppError::Invalid(e.to_string())
            }
            ErrorKind::Conflict => AppError::Conflict(e.to_string()),
            ErrorKind::Unauthenticated => AppError::Unauthorized(e.to_string()),
            ErrorKind::Forbidden => AppError::Forbidden(e.to_string()),
            ErrorKind::RateLimited => AppError::RateLimited(e.to_string()),
            ErrorKind::Internal => {
                tracing::error!(error = %e, "server function failed");
                AppError::Internal
            }
        };
        error.with_status()
    }
}

/// A bad name, ID, role or value, as the engine would report it.
#[cfg(feature = "ssr")]
impl From<types::Error> for AppError {
    fn from(e: types::Error) -> Self {
        AppError::from(engine::Error::from(e))
    }
}

/// Authentication's refusals and failures, as the engine would report them.
#[cfg(feature = "ssr")]
impl From<engine::auth::Error> for AppError {
    fn from(e: engine::auth::Error) -> Self {
        AppError::from(engine::Error::from(e))
    }
}

#[cfg(feature = "ssr")]
impl AppError {
    /// Sets the HTTP status of the server function's response to match this error.
    pub fn with_status(self) -> Self {
        // A form posted without JavaScript is answered with a redirect back to its page (the
        // error rides in the URL); a status here would replace that redirect.
        let plain_form_post =
            leptos::prelude::use_context::<http::request::Parts>().is_some_and(|p| {
                p.method == http::Method::POST
                    && p.headers
                        .get(http::header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.contains("text/html"))
            });
        if plain_form_post {
            return self;
        }
        if let Some(res) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
            if let Ok(status) = http::StatusCode::from_u16(self.status_code()) {
                res.set_status(status);
            }
        }
        self
    }
}
