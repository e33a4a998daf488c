//! The fallback page for unknown routes; answers with HTTP 404 on the server.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }

    view! {
        <Title text="Not found" />
        <div class="page-header">
            <h1>"Page not found"</h1>
        </div>
        <section class="card empty-state">
            <p>"There is nothing at this address. " <A href="/">"Back to your apps"</A></p>
        </section>
    }
}
