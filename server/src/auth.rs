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
//! 5. records the refusals it makes of audited actions (state changes, reveals of secrets)
//!    in the audit log: a signed-in caller's always, an anonymous caller's within the bounds
//!    of [`crate::refusals`]. The subject is read from the URL path only, never from the
//!    body. What is allowed is recorded by the engine's use case itself, with its real
//!    subject and outcome.

use app::context::{Caller, ClientAddr};
use app::policy::Need;
use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use engine::{Actor, AppName, AuditEntry, AuditResult, Principal, Role};
use std::net::SocketAddr;

use crate::{api, front_door, AppState};

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

/// The app and target an audited request is about, from the URL path only (never the body):
/// for the API, the app after `apps/` and the first release, promotion or token ID (else the
/// user after `users/`); a server function's path names nothing.
fn audit_subject(kind: Kind, path: &str) -> (Option<AppName>, Option<String>) {
    if kind != Kind::Api {
        return (None, None);
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let app = segments
        .iter()
        .position(|s| *s == "apps")
        .and_then(|i| segments.get(i + 1))
        .and_then(|a| AppName::parse(a).ok());
    let target = segments
        .iter()
        .find(|s| {
            engine::ReleaseId::parse(s).is_ok()
                || engine::PromotionId::parse(s).is_ok()
                || engine::TokenId::parse(s).is_ok()
        })
        .map(|s| s.to_string())
        .or_else(|| {
            segments
                .iter()
                .position(|s| *s == "users")
                .and_then(|i| segments.get(i + 1))
                .and_then(|u| engine::Username::parse(u).ok())
                .map(|u| u.to_string())
        });
    (app, target)
}

/// Records the refusal of the audited `action` at `path`: a signed-in caller's always, an
/// anonymous one's within [`crate::refusals`]' bounds (and never for a server function that
/// does not exist: its name is whatever the caller made up). A failure to record is logged.
async fn record_refusal(
    state: &AppState,
    action: &str,
    kind: Kind,
    path: &str,
    caller: Option<&Principal>,
    client: Option<std::net::IpAddr>,
) {
    let (app, target) = audit_subject(kind, path);
    let (actor, target) = match caller {
        Some(p) => (p.actor(), target),
        None => {
            if kind == Kind::ServerFn && app::policy::rule(path).is_none() {
                return;
            }
            let now = std::time::Instant::now();
            let Some(left_out) = state.refusals.admit(client, action, now) else {
                return;
            };
            let mut note = match client {
                Some(addr) => format!("from {addr}"),
                None => "from an unknown address".to_owned(),
            };
            if left_out > 0 {
                note.push_str(&format!(
                    "; {left_out} earlier anonymous refusals not recorded"
                ));
            }
            let target = match target {
                Some(t) => format!("{t} {note}"),
                None => note,
            };
            (Actor::new("anonymous"), Some(target))
        }
    };
    let mut entry = AuditEntry::new(actor, action).result(AuditResult::Denied);
    if let Some(app) = &app {
        entry = entry.app(app);
    }
    if let Some(t) = target {
        entry = entry.target(t);
    }
    if let Err(e) = state.auth.record_audit(entry).await {
        tracing::error!(error = %e, "recording a refusal in the audit log failed");
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
        // The API answers its own way ({"error": ...}), like every other refusal of it.
        if uri.path().starts_with(api::PREFIX) {
            return api::ApiError::BadRequest(format!("path: {why}")).into_response();
        }
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

    if let Need::Role(needed) = rule.need {
        let refusal = match &principal {
            None => Some(unauthorized(rule.kind, &method, &uri, req.headers())),
            Some(p) => p
                .require(needed)
                .err()
                .map(|e| forbidden(rule.kind, e.to_string())),
        };
        if let Some(refusal) = refusal {
            if let Some(action) = &rule.audit {
                let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
                record_refusal(
                    &state,
                    action,
                    rule.kind,
                    uri.path(),
                    principal.as_ref(),
                    client,
                )
                .await;
            }
            return refusal;
        }
    }
    next.run(req).await
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
    fn audit_subjects_come_from_the_path_only() {
        let (app, target) = audit_subject(Kind::ServerFn, "/api/reveal_env");
        assert_eq!((app, target), (None, None));
        let (app, target) = audit_subject(Kind::Api, "/apps/hello/releases/RABCDEFGHIJ/promote");
        assert_eq!(app.map(|a| a.to_string()).as_deref(), Some("hello"));
        assert_eq!(target.as_deref(), Some("RABCDEFGHIJ"));
        let (app, target) = audit_subject(Kind::Api, "/apps");
        assert_eq!((app, target), (None, None));
        let (_, target) = audit_subject(Kind::Api, "/api/v1/users/bob");
        assert_eq!(target.as_deref(), Some("bob"));
    }
}
