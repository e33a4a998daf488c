//! What the server provides to every render and server function through Leptos context.

use std::path::PathBuf;
use std::time::SystemTime;

/// Server-side state the Console's server functions read with `use_context`.
/// The server provides one per request (`leptos_routes_with_context`).
#[derive(Clone)]
pub struct ConsoleContext {
    /// When this server process started.
    pub started_at: SystemTime,
    /// The deploy engine every server function hands off to.
    pub engine: engine::Engine,
    /// Users, sessions, tokens and the audit log.
    pub auth: engine::Auth,
    /// Whether the Console is served over https (the session cookie is then `Secure`).
    pub secure_cookies: bool,
    /// Where the example apps live (`hello/` inside).
    pub examples_dir: PathBuf,
}

impl ConsoleContext {
    pub fn new(
        started_at: SystemTime,
        engine: engine::Engine,
        auth: engine::Auth,
        examples_dir: PathBuf,
    ) -> Self {
        Self {
            started_at,
            engine,
            auth,
            secure_cookies: false,
            examples_dir,
        }
    }
}

/// The [`ConsoleContext`] of the current request, for a signed-in caller: every page and
/// server function goes through this (or [`console_context_for`]), so a caller who is not
/// signed in is refused here even if the server's access check were missing.
pub fn console_context() -> Result<ConsoleContext, crate::AppError> {
    console_context_for(engine::Role::Viewer)
}

/// The [`ConsoleContext`] of the current request, for a signed-in caller with at least `role`
/// (401 when nobody is signed in, 403 when the role is too low).
pub fn console_context_for(role: engine::Role) -> Result<ConsoleContext, crate::AppError> {
    signed_in_as(role)?;
    console_context_anonymous()
}

/// The signed-in caller, who must have at least `role` (401 when nobody is signed in, 403
/// when the role is too low).
pub fn signed_in_as(role: engine::Role) -> Result<engine::Principal, crate::AppError> {
    let caller = caller()
        .ok_or_else(|| crate::AppError::Unauthorized("sign in first".into()).with_status())?;
    caller
        .require(role)
        .map_err(|e| crate::AppError::from(e).with_status())?;
    Ok(caller)
}

/// The [`ConsoleContext`] without asking who is calling: only for signing in.
pub fn console_context_anonymous() -> Result<ConsoleContext, crate::AppError> {
    leptos::prelude::use_context::<ConsoleContext>().ok_or_else(|| {
        leptos::logging::error!("ConsoleContext missing from the Leptos context");
        crate::AppError::Internal
    })
}

/// Who is calling: the principal the server's authentication put on the request (session
/// cookie or API token), if any. The server has already checked the server function's rule
/// (`crate::policy`) before the function runs.
pub fn caller() -> Option<engine::Principal> {
    let parts = leptos::prelude::use_context::<http::request::Parts>()?;
    parts.extensions.get::<Caller>().and_then(|c| c.0.clone())
}

/// The signed-in user's name, recorded on what they create and promote.
pub fn actor() -> Result<engine::Actor, crate::AppError> {
    caller()
        .map(|p| p.actor())
        .ok_or_else(|| crate::AppError::Unauthorized("sign in first".into()).with_status())
}

/// Whether the caller may deploy (promote, roll back, change the environment, reveal values):
/// pages hide those controls from viewers. The server refuses them anyway.
pub fn can_deploy() -> bool {
    caller().is_some_and(|p| p.role.allows(engine::Role::Deployer))
}

/// Who made the request, as resolved by the server's authentication middleware and stored in
/// the request's extensions (`None`: nobody signed in).
#[derive(Clone, Debug, Default)]
pub struct Caller(pub Option<engine::Principal>);

/// An app name from a URL; a name that cannot exist is a 404, like an unknown app.
pub fn app_name(app: &str) -> Result<engine::AppName, crate::AppError> {
    engine::AppName::parse(app)
        .map_err(|_| crate::AppError::NotFound(format!("app {app}")).with_status())
}

/// The address of the client that made the request (the server's middleware puts it on the
/// request), for rate limiting sign-ins.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::IpAddr);
