//! The versioned JSON API under `/api/v1`. Handlers are thin: they parse input with the
//! engine's newtypes, call the same [`engine::Engine`] functions the Console uses, and shape
//! the answer. Every route is listed once, in [`routes`], which both [`router`] and the tests
//! (against the OpenAPI document in [`openapi`]) use.

mod apps;
mod auth;
mod builds;
mod env;
pub mod error;
mod events;
pub mod openapi;
mod promotions;
mod releases;
mod whole;

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request},
    handler::Handler,
    http::{request::Parts, Method},
    routing::{self, MethodRouter},
    Router,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

use app::policy::Need;
use engine::Role;
pub use error::{ApiError, ApiResult};

use crate::AppState;

/// Where the API is mounted.
pub const PREFIX: &str = "/api/v1";
/// Largest JSON body accepted (build uploads have their own limit).
pub const MAX_JSON_BYTES: usize = 1024 * 1024;
/// The signed-in caller of an API handler (the middleware in `crate::auth` has already
/// checked the route's role); its user name is what the engine records.
pub struct Who(pub engine::Principal);

impl Who {
    pub fn actor(&self) -> engine::Actor {
        self.0.actor()
    }

    /// Whether the caller may see the apps' environment values, and so what the apps print
    /// as it is (deployers and admins); a viewer gets output with the values masked
    /// ([`engine::Redactor`]).
    pub fn sees_values(&self) -> bool {
        self.0.role.allows(Role::Deployer)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<app::context::Caller>()
            .and_then(|c| c.0.clone())
            .map(Who)
            .ok_or_else(|| ApiError::Unauthorized("sign in first".into()))
    }
}

/// One route of the API: a method and a path (relative to [`PREFIX`], axum syntax), and what
/// calling it needs. GET routes need a viewer, POST routes a deployer, unless said otherwise.
/// `audit` (or the method and path) names a POST route's refusals by the access check in the
/// audit log; what the handler does is recorded by the engine under the same name.
pub struct ApiRoute {
    pub method: Method,
    pub path: &'static str,
    pub need: Need,
    pub audit: Option<&'static str>,
    handler: MethodRouter<AppState>,
}

impl ApiRoute {
    fn get<H: Handler<T, AppState>, T: 'static>(path: &'static str, handler: H) -> Self {
        ApiRoute {
            method: Method::GET,
            path,
            need: Need::Role(Role::Viewer),
            audit: None,
            handler: routing::get(handler),
        }
    }

    fn post<H: Handler<T, AppState>, T: 'static>(path: &'static str, handler: H) -> Self {
        ApiRoute {
            method: Method::POST,
            path,
            need: Need::Role(Role::Deployer),
            audit: None,
            handler: routing::post(handler),
        }
    }

    /// What calling the route needs.
    fn needs(mut self, need: Need) -> Self {
        self.need = need;
        self
    }

    /// The audit log's name for the route.
    fn audit(mut self, action: &'static str) -> Self {
        self.audit = Some(action);
        self
    }
}

/// Every route of the API.
pub fn routes() -> Vec<ApiRoute> {
    let mut all = Vec::new();
    all.push(ApiRoute::get("/openapi.json", openapi::handler));
    all.extend(apps::routes());
    all.extend(builds::routes());
    all.extend(releases::routes());
    all.extend(env::routes());
    all.extend(promotions::routes());
    all.extend(events::routes());
    all.extend(auth::routes());
    all
}

/// What an API request needs (see [`ApiRoute`]); unknown routes need a viewer, so that
/// nothing about the API is answered to strangers. Revealing environment values
/// (`?reveal=true`) needs a deployer and is audited.
pub fn access(method: &Method, path: &str, query: Option<&str>) -> crate::auth::Access {
    use crate::auth::{Access, Kind};
    let route = rules().iter().find(|r| r.matches(method, path));
    let reveal = query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "reveal" && v == "true")
    });
    match route {
        Some(_) if reveal && *method == Method::GET => Access {
            kind: Kind::Api,
            need: Need::Role(Role::Deployer),
            audit: Some("env.reveal".into()),
        },
        Some(r) => Access {
            kind: Kind::Api,
            need: r.need,
            audit: r.audit.clone(),
        },
        None => Access {
            kind: Kind::Api,
            need: Need::Role(Role::Viewer),
            audit: None,
        },
    }
}

/// What [`access`] needs of a route, without its handler.
struct RouteRule {
    method: Method,
    path: &'static str,
    need: Need,
    /// The audit log's name; `None` for reads.
    audit: Option<String>,
}

impl RouteRule {
    /// Whether `path` (relative to [`PREFIX`]) is this route's: `{x}` matches one segment.
    fn matches(&self, method: &Method, path: &str) -> bool {
        let mut want = self.path.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return self.method == *method,
                (Some(w), Some(g)) if w.starts_with('{') || w == g => {}
                _ => return false,
            }
        }
    }
}

/// The rules of [`routes`], made once (every request is checked against them).
fn rules() -> &'static [RouteRule] {
    static RULES: std::sync::OnceLock<Vec<RouteRule>> = std::sync::OnceLock::new();
    RULES.get_or_init(|| {
        routes()
            .into_iter()
            .map(|r| RouteRule {
                audit: match r.method {
                    Method::GET => None,
                    _ => Some(
                        r.audit
                            .map(str::to_owned)
                            .unwrap_or_else(|| format!("{} {}", r.method, r.path)),
                    ),
                },
                method: r.method,
                path: r.path,
                need: r.need,
            })
            .collect()
    })
}

/// `(method, full path)` of every route, for tests and the OpenAPI check.
pub fn route_table() -> Vec<(Method, String)> {
    routes()
        .into_iter()
        .map(|r| (r.method, format!("{PREFIX}{}", r.path)))
        .collect()
}

/// The API, to be merged into the application's router (paths include [`PREFIX`]).
pub fn router() -> Router<AppState> {
    let mut api = Router::new();
    for route in routes() {
        // Routes on the same path merge their methods.
        api = api.route(route.path, route.handler);
    }
    let api = api
        .fallback(|| async { ApiError::NotFound("no such API route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES));
    Router::new().nest(PREFIX, api)
}

/// A JSON body, with axum's rejections turned into [`ApiError`]. The content type is not
/// checked, and an empty body counts as `{}` (so that bodies with only optional fields may be
/// left out).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let axum::Json(value) = axum::Json::<T>::from_bytes(bytes)?;
        Ok(ApiJson(value))
    }
}

/// Path parameters, with axum's rejections turned into [`ApiError`].
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

/// A query string, with axum's rejections turned into [`ApiError`].
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// Parses an app name from the path.
fn app_name(s: &str) -> ApiResult<engine::AppName> {
    Ok(engine::AppName::parse(s)?)
}

/// A model value as JSON.
fn to_json(value: &impl serde::Serialize) -> ApiResult<Value> {
    serde_json::to_value(value).map_err(|e| {
        tracing::error!("serializing an API answer: {e}");
        ApiError::Internal
    })
}

const MASK: &str = "****";

/// A release as JSON, its environment's values masked unless `reveal`.
fn release_json(release: &engine::Release, reveal: bool) -> ApiResult<Value> {
    let mut value = to_json(release)?;
    if !reveal {
        if let Value::Object(map) = &mut value {
            map.insert("env".into(), masked_env(&release.env));
        }
    }
    Ok(value)
}

/// An environment with every value masked: its keys, each with `****`.
fn masked_env(env: &engine::Environment) -> Value {
    Value::Object(
        env.iter()
            .map(|(k, _)| (k.to_string(), Value::String(MASK.into())))
            .collect(),
    )
}

/// Fires once the server starts shutting down, so that endless responses (event streams)
/// end and graceful shutdown can finish.
#[derive(Clone, Debug)]
pub struct ShutdownSignal(watch::Receiver<bool>);

/// The sending side of [`ShutdownSignal`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownSignal {
    pub fn new() -> (ShutdownTrigger, ShutdownSignal) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), ShutdownSignal(rx))
    }

    /// Completes when shutdown starts; never if the trigger was dropped without firing.
    pub async fn fired(&mut self) {
        loop {
            if *self.0.borrow_and_update() {
                return;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        // Nobody listening is fine.
        let _ = self.0.send(true);
    }
}
