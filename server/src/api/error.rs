//! The API's one error type: every failure is answered as
//! `{"error":{"code":"...","message":"..."}}` with a fitting status, and axum's own rejections
//! (malformed JSON, bad path or query values, bodies over the limit) are turned into it so that
//! no plain-text error ever leaks out of `/api/v1`.

use axum::{
    extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

#[derive(Debug)]
pub enum ApiError {
    /// 400: input that can never be right; the message names the field.
    BadRequest(String),
    /// 401: no credentials, or a session or token that is no longer valid.
    Unauthorized(String),
    /// 403: the caller's role does not allow this, or a cross-origin request.
    Forbidden(String),
    /// 404
    NotFound(String),
    /// 405: a known path asked with a method it does not have.
    MethodNotAllowed,
    /// 409: a well-formed request the current state refuses: a name taken, a rollout in
    /// progress, a stale base, a release without a build, a change that changes nothing.
    Conflict(String),
    /// 413: a body or value over its limit.
    TooLarge(String),
    /// 422: well-formed but unusable content: an upload that is not a .tar.gz, an unsafe
    /// archive, an invalid manifest, a failed build.
    Unprocessable(String),
    /// 429: too many failed logins; `retry_after` in seconds.
    TooManyRequests { message: String, retry_after: u64 },
    /// 500: logged where it is made; the client only gets a generic message.
    Internal,
}

impl ApiError {
    pub fn bad_request(field: &str, message: impl std::fmt::Display) -> Self {
        ApiError::BadRequest(format!("{field}: {message}"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid",
            ApiError::Unauthorized(_) => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "too_large",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Internal => "internal",
        }
    }

    fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::TooLarge(m)
            | ApiError::Unprocessable(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::TooManyRequests { message: m, .. } => m,
            ApiError::MethodNotAllowed => "method not allowed on this path",
            ApiError::Internal => "internal server error; the cause is in the server's log",
        }
    }

    /// From one of axum's rejections: its status decides 413 or 400, its text names the cause.
    fn from_rejection(what: &str, status: StatusCode, text: String) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("the {what} is too large"))
        } else if status.is_server_error() {
            tracing::error!(%status, "{what} rejected: {text}");
            ApiError::Internal
        } else {
            ApiError::BadRequest(format!("{what}: {text}"))
        }
    }
}

impl From<engine::Error> for ApiError {
    fn from(e: engine::Error) -> Self {
        use engine::ErrorKind;
        match e.kind() {
            ErrorKind::Invalid => ApiError::BadRequest(e.to_string()),
            ErrorKind::NotFound => ApiError::NotFound(e.to_string()),
            ErrorKind::Conflict => ApiError::Conflict(e.to_string()),
            ErrorKind::TooLarge => ApiError::TooLarge(e.to_string()),
            ErrorKind::Unprocessable => ApiError::Unprocessable(e.to_string()),
            ErrorKind::Unauthenticated => ApiError::Unauthorized(e.to_string()),
            ErrorKind::Forbidden => ApiError::Forbidden(e.to_string()),
            ErrorKind::RateLimited => ApiError::TooManyRequests {
                retry_after: match &e {
                    engine::Error::RateLimited { retry_after_secs } => *retry_after_secs,
                    _ => 60,
                },
                message: e.to_string(),
            },
            ErrorKind::Internal => {
                tracing::error!(error = %e, "API request failed");
                ApiError::Internal
            }
        }
    }
}

/// A bad name, ID, role or value in a request, answered as the engine's error would be.
impl From<types::Error> for ApiError {
    fn from(e: types::Error) -> Self {
        ApiError::from(engine::Error::from(e))
    }
}

/// Authentication's refusals and failures, answered as the engine's error would be.
impl From<auth::Error> for ApiError {
    fn from(e: auth::Error) -> Self {
        ApiError::from(engine::Error::from(e))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::from_rejection("JSON body", r.status(), r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::from_rejection("path", r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::from_rejection("query", r.status(), r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        ApiError::from_rejection("body", r.status(), r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = types::api::ErrorBody::new(self.code(), self.message());
        let mut response = (self.status(), Json(body)).into_response();
        let header = match &self {
            ApiError::Unauthorized(_) => Some((
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"slipway\""),
            )),
            ApiError::TooManyRequests { retry_after, .. } => {
                axum::http::HeaderValue::from_str(&retry_after.to_string())
                    .ok()
                    .map(|v| (axum::http::header::RETRY_AFTER, v))
            }
            _ => None,
        };
        if let Some((name, value)) = header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
