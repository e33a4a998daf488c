//! Signing in and out (`/login`). A plain HTML form that posts to the `login` server function,
//! which sets the session cookie and redirects to where the user was going.

use crate::AppError;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "slipway_session";

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::SESSION_COOKIE;

    /// The session cookie's value, if the request has one.
    pub fn session_token(headers: &http::HeaderMap) -> Option<&str> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value)
            .filter(|v| !v.is_empty())
    }

    /// Only paths on this server, written in plain characters: anything else goes home.
    /// Browsers drop tabs and newlines from URLs and read `\\` as `/`, so `/\t/evil.example`
    /// or `/\\evil.example` would become `//evil.example` (another site); control characters
    /// would not even fit in a `Location` header.
    pub fn safe_next(next: &str) -> &str {
        let plain = next
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/?#[]@!$&'()*+,;=%:".contains(&b));
        let mut chars = next.chars();
        let same_site = chars.next() == Some('/') && !matches!(chars.next(), Some('/'));
        if plain && same_site && next.len() <= 2048 {
            next
        } else {
            "/"
        }
    }

    /// `Set-Cookie` for a session: HttpOnly, SameSite=Strict, Secure over https. Empty
    /// `token` (and no age) clears it.
    pub fn session_cookie(token: &str, max_age_secs: u64, secure: bool) -> String {
        let mut cookie = format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}"
        );
        if secure {
            cookie.push_str("; Secure");
        }
        cookie
    }

    /// Whether the session cookie must be `Secure`: the server is configured so, or a TLS
    /// proxy in front says the request came over https.
    pub fn secure(configured: bool) -> bool {
        configured
            || leptos::prelude::use_context::<http::request::Parts>().is_some_and(|p| {
                p.headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.eq_ignore_ascii_case("https"))
            })
    }

    /// The client's address (for rate limiting sign-ins), as the server put it on the request.
    pub fn client_addr() -> Option<std::net::IpAddr> {
        let parts = leptos::prelude::use_context::<http::request::Parts>()?;
        parts
            .extensions
            .get::<crate::context::ClientAddr>()
            .map(|c| c.0)
    }
}

/// Signs in: checks the password (rate-limited per user and per address), starts a
/// server-side session, sets its cookie and redirects to `next`.
#[server(endpoint = "login")]
pub async fn login(
    username: String,
    password: String,
    #[server(default)] next: String,
) -> Result<(), AppError> {
    let ctx = crate::context::console_context_anonymous()?;
    let ok = ctx
        .auth
        .login(&username, &password, ssr::client_addr())
        .await?;
    let max_age = ctx.auth.config().session_max_age.as_secs();
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        if let Ok(v) = http::HeaderValue::from_str(&ssr::session_cookie(
            &ok.session_token,
            max_age,
            ssr::secure(ctx.secure_cookies),
        )) {
            res.append_header(http::header::SET_COOKIE, v);
        }
    }
    leptos_axum::redirect(ssr::safe_next(&next));
    Ok(())
}

/// Signs out: ends the session on the server and clears the cookie.
#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    let ctx = crate::context::console_context()?;
    let token = use_context::<http::request::Parts>()
        .and_then(|parts| ssr::session_token(&parts.headers).map(str::to_owned));
    if let Some(token) = token {
        ctx.auth.logout(&token).await?;
    }
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        if let Ok(v) = http::HeaderValue::from_str(&ssr::session_cookie(
            "",
            0,
            ssr::secure(ctx.secure_cookies),
        )) {
            res.append_header(http::header::SET_COOKIE, v);
        }
    }
    leptos_axum::redirect("/login");
    Ok(())
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_else(|| "/".into());
    view! {
        <Title text="Sign in" />
        <section class="card login" aria-labelledby="login-title">
            <h1 id="login-title">"Sign in to Slipway"</h1>
            <crate::components::ActionError />
            <form method="post" action=Login::url() class="stack">
                <input type="hidden" name="next" value=next />
                <label for="login-user">"User name"</label>
                <input id="login-user" class="input" name="username" autocomplete="username" required autofocus />
                <label for="login-password">"Password"</label>
                <input
                    id="login-password"
                    class="input"
                    type="password"
                    name="password"
                    autocomplete="current-password"
                    required
                />
                <button type="submit" class="button button-primary">"Sign in"</button>
            </form>
            <p class="muted small">
                "The first user is " <code>"admin"</code> ", with the password from "
                <code>"SLIPWAY_ADMIN_PASSWORD"</code> " or the one printed in the server's log at its first start."
            </p>
        </section>
    }
}
