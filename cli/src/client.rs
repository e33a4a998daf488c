//! The HTTP side: requests to `/api/v1`, and the API's JSON errors turned into messages.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use types::api::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// `Retry-After` of a 429, in seconds.
        retry_after: Option<u64>,
    },
    /// 401: no credentials, or a token the server no longer accepts. `message` is the
    /// server's; `hint` (if not empty) says where the credentials came from.
    #[error("not signed in (or the token was revoked or expired): run slipway login{hint}")]
    NotSignedIn { message: String, hint: String },
    #[error("cannot reach the Slipway server at {host}: {reason} (is it running? `make run` starts one; --host or SLIPWAY_HOST points elsewhere)")]
    Unreachable { host: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl From<types::Error> for CliError {
    fn from(e: types::Error) -> Self {
        CliError::Usage(e.to_string())
    }
}

pub struct Client {
    host: String,
    http: reqwest::Client,
    token: Option<String>,
    /// Appended to the "not signed in" message (starts with a separator, or is empty).
    hint: String,
}

impl Client {
    pub fn new(host: &str, token: Option<String>) -> Result<Client, CliError> {
        let host = host.trim_end_matches('/').to_owned();
        if !host.starts_with("http://") && !host.starts_with("https://") {
            return Err(CliError::Usage(format!(
                "--host {host:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| CliError::Failed(format!("HTTP client: {e}")))?;
        Ok(Client {
            host,
            http,
            token,
            hint: String::new(),
        })
    }

    /// Says more on a 401: where the token came from, or why none was sent.
    pub fn with_hint(mut self, hint: String) -> Client {
        self.hint = hint;
        self
    }

    /// The server, without a trailing slash.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.host)
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, CliError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let res = req.send().await.map_err(|e| CliError::Unreachable {
            host: self.host.clone(),
            reason: root_cause(&e),
        })?;
        let status = res.status();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = res
            .bytes()
            .await
            .map_err(|e| CliError::Protocol(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| CliError::Protocol(e.to_string()));
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (
                "http".into(),
                format!(
                    "the server answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            ),
        };
        Err(match status.as_u16() {
            401 => CliError::NotSignedIn {
                message,
                hint: self.hint.clone(),
            },
            403 => CliError::Api {
                status: 403,
                code,
                message: format!("not allowed: {message}"),
                retry_after,
            },
            status => CliError::Api {
                status,
                code,
                message,
                retry_after,
            },
        })
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, CliError> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    pub async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<T, CliError> {
        self.send(
            self.http
                .post(self.url(path))
                .query(query)
                .header("content-type", "application/gzip")
                .body(body),
        )
        .await
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
