//! Small building blocks shared by pages.

use crate::AppError;
use leptos::prelude::*;

/// Shows the errors caught by an `<ErrorBoundary>` as readable messages.
#[component]
pub fn ErrorList(errors: ArcRwSignal<Errors>) -> impl IntoView {
    view! {
        <div class="notice notice-error" role="alert">
            <ul>
                {move || {
                    errors
                        .get()
                        .into_iter()
                        .map(|(_, error)| {
                            let message = error
                                .downcast_ref::<AppError>()
                                .map(ToString::to_string)
                                .unwrap_or_else(|| error.to_string());
                            view! { <li>{message}</li> }
                        })
                        .collect_view()
                }}
            </ul>
        </div>
    }
}

/// The app's breadcrumb and tabs (Releases, Environment, Builds), with the current one marked.
#[component]
pub fn AppNav(app: String, current: &'static str) -> impl IntoView {
    use leptos_router::components::A;
    let tab = |name: &'static str, href: String| {
        let current = (name == current).then_some("page");
        view! { <a href=href class="tab" aria-current=current>{name}</a> }
    };
    view! {
        <nav class="breadcrumbs" aria-label="Breadcrumb">
            <A href="/">"Apps"</A>
            <span aria-hidden="true">" / "</span>
            <span>{app.clone()}</span>
        </nav>
        <nav class="tabs" aria-label="App">
            {tab("Releases", format!("/apps/{app}/releases"))}
            {tab("Environment", format!("/apps/{app}/env"))}
            {tab("Builds", format!("/apps/{app}/builds"))}
        </nav>
    }
}

/// The error of a form that was posted without JavaScript: the server function redirected back
/// to the page with it in the URL. (With JavaScript, a `LiveRegion` shows errors in place.)
#[component]
pub fn ActionError() -> impl IntoView {
    use leptos::server_fn::error::ServerFnUrlError;
    let message = use_context::<leptos::server::ServerActionError>()
        .map(|e| ServerFnUrlError::<AppError>::decode_err(e.err()).to_string());
    message.map(|m| {
        view! { <p class="notice notice-error" role="alert" data-testid="action-error">{m}</p> }
    })
}
