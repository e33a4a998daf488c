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
    /// The request conflicts with the current state (a rollout in progress, a stale edit).
    #[error("{0}")]
    Conflict(String),
    /// Something failed on the server; details are in the server log, not here.
    #[error("the server could not complete the request")]
    Internal,
    /// The server function machinery failed (network, encoding, missing context, ...).
    #[error("{0}")]
    ServerFn(ServerFnErrorErr),
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
            AppError::Invalid(_) => 422,
            AppError::Conflict(_) => 409,
            AppError::Internal | AppError::ServerFn(_) => 500,
        }
    }
}

#[cfg(feature = "ssr")]
impl From<engine::Error> for AppError {
    /// Engine errors become readable messages; internal ones are logged and answered generically.
    fn from(e: engine::Error) -> Self {
        use engine::ErrorKind;
        let error = match e.kind() {
            ErrorKind::NotFound => AppError::NotFound(match &e {
                engine::Error::NotFound { what, id } => format!("{what} {id}"),
                other => other.to_string(),
            }),
            ErrorKind::Invalid | ErrorKind::TooLarge | ErrorKind::Unprocessable => {
                AppError::Invalid(e.to_string())
            }
            ErrorKind::Conflict => AppError::Conflict(e.to_string()),
            ErrorKind::Internal => {
                tracing::error!(error = %e, "server function failed");
                AppError::Internal
            }
        };
        error.with_status()
    }
}

#[cfg(feature = "ssr")]
impl AppError {
    /// Sets the HTTP status of the server function's response to match this error.
    pub fn with_status(self) -> Self {
        if let Some(res) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
            if let Ok(status) = http::StatusCode::from_u16(self.status_code()) {
                res.set_status(status);
            }
        }
        self
    }
}
