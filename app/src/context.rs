//! What the server provides to every render and server function through Leptos context.

use std::time::SystemTime;

/// Server-side state the Console's server functions read with `use_context`.
/// The server provides one per request (`leptos_routes_with_context`).
#[derive(Clone, Debug)]
pub struct ConsoleContext {
    /// When this server process started.
    pub started_at: SystemTime,
}

impl ConsoleContext {
    pub fn new(started_at: SystemTime) -> Self {
        Self { started_at }
    }
}

/// The [`ConsoleContext`] of the current request, or an error if the server did not provide one.
pub fn console_context() -> Result<ConsoleContext, crate::AppError> {
    leptos::prelude::use_context::<ConsoleContext>().ok_or_else(|| {
        leptos::logging::error!("ConsoleContext missing from the Leptos context");
        crate::AppError::Internal
    })
}
