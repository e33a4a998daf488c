//! The Apps page (`/`): the apps Slipway knows about, and what server this Console talks to.

use crate::{components::ErrorList, AppError};
use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

/// What the Console shows about the server it runs on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Version of the `slipway-server` build.
    pub version: String,
    /// When the server process started, as an HTTP date (UTC).
    pub started_at: String,
    /// Whole seconds since the server started.
    pub uptime_secs: u64,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::ServerInfo;
    use crate::context::ConsoleContext;
    use std::time::SystemTime;

    /// The plain function behind [`super::get_server_info`].
    pub fn server_info(ctx: &ConsoleContext, now: SystemTime) -> ServerInfo {
        ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: httpdate::fmt_http_date(ctx.started_at),
            uptime_secs: now
                .duration_since(ctx.started_at)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }
}

/// Version and start time of the server.
#[server]
pub async fn get_server_info() -> Result<ServerInfo, AppError> {
    let ctx = crate::context::console_context()?;
    Ok(ssr::server_info(&ctx, std::time::SystemTime::now()))
}

#[component]
pub fn AppsPage() -> impl IntoView {
    // Bumped by the refresh button; the resource refetches whenever it changes.
    let refreshes = RwSignal::new(0u32);
    let info = Resource::new(move || refreshes.get(), |_| get_server_info());

    view! {
        <Title text="Apps" />
        <div class="page-header">
            <h1>"Apps"</h1>
        </div>

        <section class="card empty-state" aria-labelledby="no-apps">
            <h2 id="no-apps" class="visually-hidden">"Your apps"</h2>
            <p>"No apps yet. Deploy the example app: " <code>"make example"</code></p>
        </section>

        <section class="card server-info" aria-labelledby="server-heading">
            <div class="card-header">
                <h2 id="server-heading">"Server"</h2>
                <button
                    type="button"
                    class="button"
                    data-testid="refresh-server-info"
                    on:click=move |_| refreshes.update(|n| *n += 1)
                >
                    "Refresh"
                </button>
            </div>
            <Transition fallback=|| view! { <p class="muted">"Loading server info…"</p> }>
                <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                    {move || Suspend::new(async move {
                        info.await.map(|info| view! { <ServerInfoList info /> })
                    })}
                </ErrorBoundary>
            </Transition>
            <p class="muted" data-testid="refresh-count" aria-live="polite">
                {move || match refreshes.get() {
                    0 => "Not refreshed yet".to_string(),
                    1 => "Refreshed 1 time".to_string(),
                    n => format!("Refreshed {n} times"),
                }}
            </p>
        </section>
    }
}

#[component]
fn ServerInfoList(info: ServerInfo) -> impl IntoView {
    view! {
        <dl class="facts">
            <div>
                <dt>"Version"</dt>
                <dd data-testid="server-version">{info.version}</dd>
            </div>
            <div>
                <dt>"Started"</dt>
                <dd data-testid="server-started">{info.started_at}</dd>
            </div>
            <div>
                <dt>"Uptime"</dt>
                <dd>{format_uptime(info.uptime_secs)}</dd>
            </div>
        </dl>
    }
}

/// `3725` → `"1h 2m 5s"`.
pub fn format_uptime(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_is_human_readable() {
        assert_eq!(format_uptime(0), "0s");
        assert_eq!(format_uptime(59), "59s");
        assert_eq!(format_uptime(60), "1m 0s");
        assert_eq!(format_uptime(3725), "1h 2m 5s");
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn server_info_reports_version_and_uptime() {
        use crate::context::ConsoleContext;
        use std::time::{Duration, UNIX_EPOCH};

        let started = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let info = ssr::server_info(
            &ConsoleContext::new(started),
            started + Duration::from_secs(90),
        );
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.started_at, "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(info.uptime_secs, 90);

        // a clock that went backwards is not an error
        let info = ssr::server_info(&ConsoleContext::new(started), UNIX_EPOCH);
        assert_eq!(info.uptime_secs, 0);
    }
}
