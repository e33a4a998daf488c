//! The Releases page (`/apps/:app/releases`): the immutable releases of one app.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{components::A, hooks::use_params_map};

#[component]
pub fn ReleasesPage() -> impl IntoView {
    let params = use_params_map();
    let app = move || params.read().get("app").unwrap_or_default();

    view! {
        <Title text=move || format!("{} releases", app()) />
        <nav class="breadcrumbs" aria-label="Breadcrumb">
            <A href="/">"Apps"</A>
            <span aria-hidden="true">" / "</span>
            <span aria-current="page">{app}</span>
        </nav>
        <div class="page-header">
            <h1>"Releases of " <code>{app}</code></h1>
        </div>
        <section class="card empty-state">
            <p>"No releases for " <code>{app}</code> " yet."</p>
        </section>
    }
}
