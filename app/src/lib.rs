//! Slipway's Console: the Leptos application shared by the server (`ssr`) and the browser
//! (`hydrate`). Routes live in [`App`]; each page keeps its server functions next to it.
//!
//! The Console is rendered in islands: pages are server-rendered HTML, and only the parts
//! marked `#[island]` (forms with feedback, live panels, the environment editor) hydrate and
//! ship wasm. Tables and text stay plain HTML (see `docs/benchmarks.md` for why).

// Deep view types (tables in cards) exceed the default when compiled for wasm.
#![recursion_limit = "256"]

pub mod components;
#[cfg(feature = "ssr")]
pub mod context;
pub mod error;
pub mod live;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod policy;
pub mod rollout;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes, A},
    path, SsrMode,
};

pub use error::AppError;

/// The HTML document around [`App`], rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <AutoReload options=options.clone() />
                <HydrationScripts options islands=true />
                <MetaTags />
                // Controls that only work with JavaScript are hidden without it.
                <noscript>
                    <style>".needs-js { display: none !important; }"</style>
                </noscript>
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// Who is signed in, and Sign out (a plain form). Rendered on the server only.
#[component]
fn UserMenu() -> impl IntoView {
    use leptos::server_fn::ServerFn;
    #[cfg(feature = "ssr")]
    let who = context::caller().map(|p| (p.user.to_string(), p.role.to_string()));
    #[cfg(not(feature = "ssr"))]
    let who: Option<(String, String)> = None;
    who.map(|(user, role)| {
        view! {
            <div class="user-menu">
                <span class="whoami" data-testid="whoami">
                    {user} " " <span class="muted small">{format!("({role})")}</span>
                </span>
                <form method="post" action=pages::login::Logout::url()>
                    <button type="submit" class="button button-secondary button-small">"Sign out"</button>
                </form>
            </div>
        }
    })
}

/// The header's links for the signed-in: Audit log, Tokens, and Users for an admin.
/// Rendered on the server only.
#[component]
fn NavLinks() -> impl IntoView {
    // `Some(is_admin)` when someone is signed in.
    #[cfg(feature = "ssr")]
    let signed_in = context::caller().map(|p| p.role.allows(engine::Role::Admin));
    #[cfg(not(feature = "ssr"))]
    let signed_in: Option<bool> = None;
    signed_in.map(|admin| {
        view! {
            <A href="/audit">"Audit log"</A>
            <A href="/tokens">"Tokens"</A>
            {admin.then(|| view! { <A href="/users">"Users"</A> })}
        }
    })
}

/// The Console: header, navigation and routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Stylesheet id="leptos" href="/pkg/slipway.css" />
        <Title formatter=|page: String| {
            if page.is_empty() { "Slipway".to_string() } else { format!("{page} · Slipway") }
        } />
        <Router>
            <a class="skip-link" href="#main">"Skip to content"</a>
            <header class="topbar">
                <div class="topbar-inner">
                    <A href="/" attr:class="brand">
                        <span class="brand-mark" aria-hidden="true"></span>
                        "Slipway"
                    </A>
                    <nav aria-label="Main">
                        <A href="/" exact=true>"Apps"</A>
                        <NavLinks />
                    </nav>
                    <UserMenu />
                </div>
            </header>
            // `data-hydrated` turns "true" once the page's islands are interactive.
            <main id="main" class="container" data-hydrated="false">
                <Routes fallback=pages::not_found::NotFound>
                    // Async: the whole page (server fn data included) is in the first response,
                    // so it renders, and its forms work, without JavaScript.
                    <Route path=path!("") view=pages::apps::AppsPage ssr=SsrMode::Async />
                    <Route path=path!("login") view=pages::login::LoginPage ssr=SsrMode::Async />
                    <Route
                        path=path!("apps/:app/releases/:id")
                        view=pages::release::ReleasePage
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=path!("apps/:app/builds")
                        view=pages::builds::BuildsPage
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=path!("apps/:app/releases")
                        view=pages::releases::ReleasesPage
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=path!("apps/:app/env")
                        view=pages::env::EnvPage
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("audit") view=pages::audit::AuditPage ssr=SsrMode::Async />
                    <Route path=path!("tokens") view=pages::tokens::TokensPage ssr=SsrMode::Async />
                    <Route path=path!("users") view=pages::users::UsersPage ssr=SsrMode::Async />
                </Routes>
            </main>
            <footer class="footer container">
                <p>"Slipway — immutable releases, safe promotions."</p>
            </footer>
            <live::HydrationMark />
        </Router>
    }
}
