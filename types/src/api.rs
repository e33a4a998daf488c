//! The body of every error the JSON API (`/api/v1`) answers:
//! `{"error":{"code":"...","message":"..."}}`. The server writes it; the CLI reads it.

use serde::{Deserialize, Serialize};

/// `{"error": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable `code` (`invalid`, `not_found`, `conflict`, `too_large`,
/// `unprocessable`, `unauthenticated`, `forbidden`, `rate_limited`, `method_not_allowed`,
/// `internal`) and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}
