//! Who may do what, decided in one place for every request: [`guard`] is the one middleware
//! in front of the whole application. For each request it
//!
//! 1. refuses a state-changing request from another origin (CSRF: `Origin`, else `Referer`,
//!    must name this host; the session cookie is also `SameSite=Strict`);
//! 2. finds the caller: the session cookie, or an `Authorization: Bearer slw_…` API token;
//! 3. looks up what the request needs with [`access`]: the Console's server functions from
//!    `app::policy`, the JSON API's routes from their declared role (`api::routes`), pages
//!    need a signed-in user; static files and signing in need nobody;
//! 4. answers 401 (pages: a redirect to `/login`) or 403 when that is not met;
//! 5. records every state-changing action and every reveal of a secret, allowed or refused,
//!    in the audit log, with the caller, app, action, target and result.

use app::context::{Caller, ClientAddr};
use app::policy::Need;
use axum::{
    body::{to_bytes, Body},
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use engine::{Actor, AppName, AuditEntry, AuditResult, Principal, Role};
use std::net::SocketAddr;

use crate::{api, front_door, AppState};

/// Largest server-function body read for the audit log (larger ones are refused by the
/// server function's own limit anyway).
const MAX_AUDITED_BODY: usize = 2 * 1024 * 1024;

/// What kind of thing a path is, which decides how a refusal is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Console page (HTML).
    Page,
    /// A Console server function (`/api/<name>`).
    ServerFn,
    /// The JSON API (`/api/v1/...`).
    Api,
    /// Files, health check, the sign-in page.
    Public,
}

/// What a request needs, and how it is named in the audit log.
#[derive(Clone, Debug)]
pub struct Access {
    pub kind: Kind,
    pub need: Need,
    /// `Some(action)` when the request changes something or reveals a secret.
    pub audit: Option<String>,
}

/// The rule for a request. Unknown server functions are refused to everyone (fail closed).
pub fn access(method: &Method, path: &str, query: Option<&str>) -> Access {
    // HEAD answers what GET would (its length included), so it needs what GET needs.
    let method = if *method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let public = Access {
        kind: Kind::Public,
        need: Need::Anyone,
        audit: None,
    };
    if path == "/healthz" || path == "/login" || path.starts_with("/pkg/") || path == "/favicon.svg"
    {
        return public;
    }
    if let Some(rest) = path.strip_prefix(api::PREFIX) {
        return api::access(method, rest, query);
    }
    if let Some(name) = path.strip_prefix("/api/") {
        return match app::policy::rule(path) {
            Some(rule) => Access {
                kind: Kind::ServerFn,
                need: rule.need,
                audit: rule.audit.map(str::to_owned),
            },
            None => Access {
                kind: Kind::ServerFn,
                need: Need::Role(Role::Admin),
                audit: Some(format!("unknown server function {name}")),
            },
        };
    }
    Access {
        kind: Kind::Page,
        need: Need::Role(Role::Viewer),
        audit: None,
    }
}

/// Whether `method` can change state.
fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The caller, from an API token (which wins) or the session cookie. A token or session that
/// is unknown, revoked or expired is no caller at all.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Option<Principal> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        return state.auth.token(token.trim()).await.ok();
    }
    let cookie = app::pages::login::ssr::session_token(headers)?;
    state.auth.session(cookie).await.ok()
}

/// The app and target an audited request is about: from the path for the API, from the
/// form's `app`/`release`/`key`/`username`/`id`/`name` fields for server functions (never
/// any other field: values and passwords stay out of the log).
fn audit_subject(kind: Kind, path: &str, form: Option<&[u8]>) -> (Option<AppName>, Option<String>) {
    match kind {
        Kind::Api => {
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            // A JSON body's `name` (a new app or user) or `user` (signing in): names only.
            let body: Option<serde_json::Value> = form.and_then(|b| serde_json::from_slice(b).ok());
            let body_field = |field: &str| {
                body.as_ref()
                    .and_then(|v| v.get(field))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            let creates_app = segments.last() == Some(&"apps");
            let app = segments
                .iter()
                .position(|s| *s == "apps")
                .and_then(|i| segments.get(i + 1))
                .and_then(|a| AppName::parse(a).ok())
                .or_else(|| {
                    creates_app
                        .then(|| body_field("name"))
                        .flatten()
                        .and_then(|n| AppName::parse(&n).ok())
                });
            let target = segments
                .iter()
                .find(|s| {
                    engine::ReleaseId::parse(s).is_ok()
                        || engine::PromotionId::parse(s).is_ok()
                        || engine::TokenId::parse(s).is_ok()
                })
                .map(|s| s.to_string())
                .or_else(|| {
                    ["user", "name"]
                        .iter()
                        .filter(|_| !creates_app)
                        .find_map(|f| body_field(f))
                        .and_then(|n| engine::Username::parse(&n).ok())
                        .map(|u| u.to_string())
                });
            (app, target)
        }
        _ => {
            let fields: Vec<(String, String)> = form
                .map(|b| {
                    url::form_urlencoded::parse(b)
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let app = get("app").and_then(|a| AppName::parse(a).ok());
            let target = match (get("release"), get("key")) {
                (Some(r), Some(k)) => Some(format!("{r} {k}")),
                (Some(r), None) => Some(r.to_owned()),
                _ => ["id", "username", "name"]
                    .iter()
                    .find_map(|f| get(f))
                    .and_then(|v| engine::Username::parse(v).ok().map(|u| u.to_string()))
                    .or_else(|| {
                        get("id")
                            .and_then(|v| engine::TokenId::parse(v).ok())
                            .map(|t| t.to_string())
                    }),
            };
            (app, target)
        }
    }
}

/// The audit result a response stands for.
fn result_of(response: &Response) -> AuditResult {
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .unwrap_or("");
    match status.as_u16() {
        401 | 403 | 429 => AuditResult::Denied,
        // A form posted without JavaScript is redirected back; an error rides in the URL.
        300..=399 if location.contains("__err=") => AuditResult::Failed("error".into()),
        200..=399 => AuditResult::Ok,
        code => AuditResult::Failed(format!("HTTP {code}")),
    }
}

/// 401: who are you? Pages (and forms posted without JavaScript) are sent to sign in.
fn unauthorized(
    kind: Kind,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    match kind {
        Kind::Page if *method == Method::GET || *method == Method::HEAD => {
            let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            Redirect::to(&format!(
                "/login?next={}",
                url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            ))
            .into_response()
        }
        Kind::ServerFn if wants_html => Redirect::to("/login").into_response(),
        Kind::Api => {
            api::ApiError::Unauthorized("sign in first: send an API token (slipway login)".into())
                .into_response()
        }
        _ => app_error(
            StatusCode::UNAUTHORIZED,
            app::AppError::Unauthorized("sign in first".into()),
        ),
    }
}

/// 403: not with your role (or not from here).
fn forbidden(kind: Kind, message: String) -> Response {
    match kind {
        Kind::Api => api::ApiError::Forbidden(message).into_response(),
        _ => app_error(StatusCode::FORBIDDEN, app::AppError::Forbidden(message)),
    }
}

/// A server function's error, encoded the way the Console's browser code reads it.
fn app_error(status: StatusCode, error: app::AppError) -> Response {
    let body = serde_json::to_string(&error).unwrap_or_else(|_| "{}".into());
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The middleware: see the module's documentation.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        req.extensions_mut().insert(ClientAddr(addr.ip()));
    }
    let method = req.method().clone();
    let uri = req.uri().clone();
    // Before any decision: a path that a later normalisation could read differently.
    if let Some(why) = front_door::bad_path(uri.path()) {
        return (StatusCode::BAD_REQUEST, format!("bad request: {why}\n")).into_response();
    }
    // DNS rebinding: a name that is not this Console's (the health check answers anyone).
    let host = front_door::request_host(req.headers(), &uri).unwrap_or("");
    if uri.path() != "/healthz" && !state.origins.host_allowed(host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "unknown Host: reach the Console at its public URL (--public-url)\n",
        )
            .into_response();
    }
    let rule = access(&method, uri.path(), uri.query());
    if is_unsafe(&method) {
        // CSRF: a state change that says where it comes from must come from the Console
        // itself, and one that carries the session cookie must say it (browsers send
        // `Origin` with every POST). Only a caller without the cookie (the CLI, scripts
        // with an API token: nothing a browser adds by itself) may send neither header.
        let from_console = match front_door::request_source(req.headers()) {
            Some(source) => front_door::same_origin(source, host),
            None => app::pages::login::ssr::session_token(req.headers()).is_none(),
        };
        if !from_console {
            return forbidden(
                rule.kind,
                "cross-origin request refused: state-changing requests must come from the \
                 Console itself (same Origin)"
                    .into(),
            );
        }
    }
    let principal = authenticate(&state, req.headers()).await;
    req.extensions_mut().insert(Caller(principal.clone()));

    // The audit log needs the server function's form fields: read the body (bounded) and put
    // it back.
    let mut form = None;
    let small_json_api = rule.kind == Kind::Api
        && !uri.path().ends_with("/builds")
        && req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n <= api::MAX_JSON_BYTES);
    if rule.audit.is_some() && (rule.kind == Kind::ServerFn || small_json_api) {
        let (parts, body) = req.into_parts();
        let bytes = match to_bytes(body, MAX_AUDITED_BODY).await {
            Ok(b) => b,
            Err(_) => {
                return app_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    app::AppError::Invalid("the form is too large".into()),
                )
            }
        };
        form = Some(bytes.clone());
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let record = |result: AuditResult| {
        let action = rule.audit.clone();
        let (app, target) = audit_subject(rule.kind, uri.path(), form.as_deref());
        // A successful sign-in is by the user who signed in.
        let signed_in = (action.as_deref() == Some("login") && result == AuditResult::Ok)
            .then(|| target.clone())
            .flatten()
            .map(Actor::new);
        let actor = principal
            .as_ref()
            .map(Principal::actor)
            .or(signed_in)
            .unwrap_or_else(|| Actor::new("anonymous"));
        let auth = state.auth.clone();
        async move {
            let Some(action) = action else { return };
            let mut entry = AuditEntry::new(actor, action).result(result);
            if let Some(app) = &app {
                entry = entry.app(app);
            }
            if let Some(t) = target {
                entry = entry.target(t);
            }
            if let Err(e) = auth.record_audit(entry).await {
                tracing::error!(error = %e, "recording the audit log failed");
            }
        }
    };

    if let Need::Role(needed) = rule.need {
        let Some(p) = &principal else {
            // Anonymous requests to audited actions are recorded too (login attempts are
            // recorded by the server function's own outcome below).
            record(AuditResult::Denied).await;
            return unauthorized(rule.kind, &method, &uri, req.headers());
        };
        if let Err(e) = p.require(needed) {
            record(AuditResult::Denied).await;
            return forbidden(rule.kind, e.to_string());
        }
    }
    let response = next.run(req).await;
    if rule.audit.is_some() {
        record(result_of(&response)).await;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let a = access(&Method::GET, "/pkg/slipway.wasm", None);
        assert_eq!((a.kind, a.need), (Kind::Public, Need::Anyone));
        let a = access(&Method::GET, "/apps/x/releases", None);
        assert_eq!((a.kind, a.need), (Kind::Page, Need::Role(Role::Viewer)));
        let a = access(&Method::POST, "/api/promote_release", None);
        assert_eq!(a.need, Need::Role(Role::Deployer));
        assert_eq!(a.audit.as_deref(), Some("release.promote"));
        let a = access(&Method::POST, "/api/no_such_fn", None);
        assert_eq!(a.need, Need::Role(Role::Admin));
    }

    #[test]
    fn audit_subjects_never_carry_values() {
        let (app, target) = audit_subject(
            Kind::ServerFn,
            "/api/apply_env",
            Some(b"app=hello&base=RABCDEFGHIJ&rows%5B0%5D%5Bvalue%5D=s3cret&paste=TOKEN%3Dx"),
        );
        assert_eq!(app.map(|a| a.to_string()).as_deref(), Some("hello"));
        assert_eq!(target, None);
        let (_, target) = audit_subject(
            Kind::ServerFn,
            "/api/reveal_env",
            Some(b"app=hello&release=RABCDEFGHIJ&key=DB_URL"),
        );
        assert_eq!(target.as_deref(), Some("RABCDEFGHIJ DB_URL"));
        let (_, target) = audit_subject(
            Kind::ServerFn,
            "/api/login",
            Some(b"username=hunter2%20oops&password=hunter2"),
        );
        assert_eq!(target, None);
        let (app, target) =
            audit_subject(Kind::Api, "/apps/hello/releases/RABCDEFGHIJ/promote", None);
        assert_eq!(app.map(|a| a.to_string()).as_deref(), Some("hello"));
        assert_eq!(target.as_deref(), Some("RABCDEFGHIJ"));
    }
}
