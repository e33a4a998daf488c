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
    /// Where the example apps live (`hello/` inside).
    pub examples_dir: PathBuf,
}

impl ConsoleContext {
    pub fn new(started_at: SystemTime, engine: engine::Engine, examples_dir: PathBuf) -> Self {
        Self {
            started_at,
            engine,
            examples_dir,
        }
    }
}

/// The [`ConsoleContext`] of the current request, or an error if the server did not provide one.
pub fn console_context() -> Result<ConsoleContext, crate::AppError> {
    leptos::prelude::use_context::<ConsoleContext>().ok_or_else(|| {
        leptos::logging::error!("ConsoleContext missing from the Leptos context");
        crate::AppError::Internal
    })
}

/// Who is calling. Until users and sessions exist every Console action is by `console`.
pub fn actor() -> engine::Actor {
    engine::Actor::new("console")
}

/// An app name from a URL; a name that cannot exist is a 404, like an unknown app.
pub fn app_name(app: &str) -> Result<engine::AppName, crate::AppError> {
    engine::AppName::parse(app)
        .map_err(|_| crate::AppError::NotFound(format!("app {app}")).with_status())
}
