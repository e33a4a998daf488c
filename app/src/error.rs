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
            AppError::Internal | AppError::ServerFn(_) => 500,
        }
    }
}
