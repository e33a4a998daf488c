//! The Apps page (`/`): every app with its active release, rollout state and last change, and
//! for a newcomer the example app in one click.

use crate::{components::ErrorList, AppError};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};
use types::PromotionState;

/// One row of the Apps page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRow {
    pub name: String,
    pub active_release: Option<String>,
    pub release_count: i64,
    /// The state of the newest promotion (running while one runs).
    pub rollout: Option<PromotionState>,
    pub last_change: Option<String>,
    pub last_change_ago: Option<String>,
    pub last_change_exact: Option<String>,
}

/// What the Console shows about the server it runs on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Version of the `slipway-server` build.
    pub version: String,
    /// When the server process started, as an HTTP date (UTC).
    pub started_at: String,
    /// Whole seconds since the server started.
    pub uptime_secs: u64,
    /// Where the apps' router listens (`http://APP.localhost:PORT`).
    pub router_port: u16,
    /// How builds and apps are confined (`app-users`, `landlock`, `environment-only`), in a
    /// few words, and in full.
    pub isolation: String,
    pub isolation_summary: String,
    pub isolation_detail: String,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::{AppRow, PromotionState, ServerInfo};
    use engine::time;
    use engine::{Actor, AppName, BuildSource, Engine, PromoteOptions};
    use std::path::Path;
    use std::time::SystemTime;

    /// The plain function behind [`super::get_server_info`].
    pub fn server_info(
        started_at: SystemTime,
        now: SystemTime,
        router_port: u16,
        isolation: &engine::sandbox::Isolation,
    ) -> ServerInfo {
        ServerInfo {
            isolation: isolation.name().to_owned(),
            isolation_summary: isolation.summary().to_owned(),
            isolation_detail: isolation.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: httpdate::fmt_http_date(started_at),
            uptime_secs: now
                .duration_since(started_at)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            router_port,
        }
    }

    pub async fn list_apps(engine: &Engine) -> Result<Vec<AppRow>, engine::Error> {
        let now = engine::now_ms();
        Ok(engine
            .list_apps()
            .await?
            .into_iter()
            .map(|a| AppRow {
                name: a.app.name.to_string(),
                active_release: a.app.active_release.map(|r| r.to_string()),
                release_count: a.release_count,
                rollout: if a.running_promotion.is_some() {
                    Some(PromotionState::Running)
                } else {
                    a.last_promotion_state
                },
                last_change: a.last_change,
                last_change_ago: a.last_change_at.map(|t| time::ago(t, now)),
                last_change_exact: a.last_change_at.map(time::exact),
            })
            .collect())
    }

    /// Creates the app `hello` (if it does not exist yet), builds `examples_dir/hello` and
    /// promotes the build's release. Returns the app's name.
    pub async fn deploy_example(
        engine: &Engine,
        examples_dir: &Path,
        actor: &Actor,
    ) -> Result<String, engine::Error> {
        let dir = examples_dir.join("hello");
        if !dir.join(engine::manifest::FILE_NAME).is_file() {
            return Err(engine::Error::Invalid {
                field: "examples dir".into(),
                message: format!(
                    "{} has no example app; start the server from the repository or set --examples-dir",
                    dir.display()
                ),
            });
        }
        let name = AppName::parse("hello")?;
        engine
            .deploy(
                &name,
                BuildSource::Directory(dir),
                Some("the example app"),
                &PromoteOptions::default(),
                actor,
            )
            .await?;
        Ok(name.to_string())
    }
}

/// Version and start time of the server.
#[server(endpoint = "get_server_info")]
pub async fn get_server_info() -> Result<ServerInfo, AppError> {
    let ctx = crate::context::console_context()?;
    Ok(ssr::server_info(
        ctx.started_at,
        std::time::SystemTime::now(),
        ctx.engine.router_addr().port(),
        ctx.engine.isolation(),
    ))
}

#[server(endpoint = "list_apps")]
pub async fn list_apps() -> Result<Vec<AppRow>, AppError> {
    let ctx = crate::context::console_context()?;
    Ok(ssr::list_apps(&ctx.engine).await?)
}

/// Builds and promotes the example app; the Releases page then shows the rollout.
#[server(endpoint = "deploy_example")]
pub async fn deploy_example() -> Result<String, AppError> {
    let ctx = crate::context::console_context_for(engine::Role::Deployer)?;
    let actor = crate::context::actor()?;
    Ok(ssr::deploy_example(&ctx.engine, &ctx.examples_dir, &actor).await?)
}

/// Whether the caller may deploy (the page is rendered on the server only).
fn can_deploy() -> bool {
    #[cfg(feature = "ssr")]
    return crate::context::can_deploy();
    #[cfg(not(feature = "ssr"))]
    false
}

#[component]
pub fn AppsPage() -> impl IntoView {
    let apps = Resource::new(|| (), |_| list_apps());
    let info = Resource::new(|| (), |_| get_server_info());

    view! {
        <Title text="Apps" />
        <div class="page-header">
            <h1>"Apps"</h1>
        </div>
        <crate::components::ActionError />
        <Suspense fallback=|| view! { <p class="muted">"Loading apps…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    apps.await.map(|apps| {
                        let can_deploy = can_deploy();
                        view! {
                            <crate::live::LiveRegion app=None id="apps-live".to_string()>
                                <AppsContent apps can_deploy />
                            </crate::live::LiveRegion>
                        }
                    })
                })}
            </ErrorBoundary>
        </Suspense>

        <section class="card server-info" aria-labelledby="server-heading">
            <div class="card-header">
                <h2 id="server-heading">"Server"</h2>
            </div>
            <Suspense fallback=|| view! { <p class="muted">"Loading server info…"</p> }>
                <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                    {move || Suspend::new(async move {
                        info.await.map(|info| view! { <ServerInfoList info /> })
                    })}
                </ErrorBoundary>
            </Suspense>
        </section>
    }
}

/// The apps or, with none, how to get a first one.
#[component]
fn AppsContent(apps: Vec<AppRow>, can_deploy: bool) -> impl IntoView {
    if apps.is_empty() {
        view! { <EmptyState can_deploy /> }.into_any()
    } else {
        view! { <AppsTable apps /> }.into_any()
    }
}

#[component]
fn EmptyState(can_deploy: bool) -> impl IntoView {
    let deploy = can_deploy.then(|| {
        view! {
            <form
                method="post"
                action=DeployExample::url()
                data-success="Deploying {}: follow the rollout on its Releases page."
                data-result="deploy-result"
            >
                <button type="submit" class="button button-primary" data-testid="deploy-example">
                    "Deploy the example app"
                </button>
            </form>
        }
    });
    view! {
        <section class="card empty-state" aria-labelledby="no-apps">
            <h2 id="no-apps">"No apps yet"</h2>
            <p>
                "Slipway runs each app from a directory with a " <code>"slipway.yml"</code>
                ". Try it with the example app: it is built from " <code>"examples/hello"</code>
                ", promoted, and served at " <code>"http://hello.localhost:8080"</code> "."
            </p>
            {deploy}
            <p class="muted small">
                "Or from a shell: " <code>"slipway apps create hello && slipway -a hello deploy examples/hello"</code>
            </p>
        </section>
    }
}

/// The Rollout column: `promoting` while one runs, else the newest promotion's state.
fn rollout_word(state: PromotionState) -> &'static str {
    match state {
        PromotionState::Running => "promoting",
        other => other.as_str(),
    }
}

#[component]
fn AppsTable(apps: Vec<AppRow>) -> impl IntoView {
    view! {
        <div class="table-wrap card">
            <table class="table" data-testid="apps">
                <thead>
                    <tr>
                        <th scope="col">"App"</th>
                        <th scope="col">"Active release"</th>
                        <th scope="col">"Rollout"</th>
                        <th scope="col">"Last change"</th>
                    </tr>
                </thead>
                <tbody>
                    {apps
                        .into_iter()
                        .map(|a| {
                            let href = format!("/apps/{}/releases", a.name);
                            view! {
                                <tr>
                                    <th scope="row"><a href=href>{a.name.clone()}</a></th>
                                    <td><code>{a.active_release.unwrap_or_else(|| "none".into())}</code></td>
                                    <td>{a.rollout.map(rollout_word).unwrap_or_default()}</td>
                                    <td>
                                        {a.last_change.unwrap_or_default()} " "
                                        <span class="muted" title=a.last_change_exact.unwrap_or_default()>
                                            {a.last_change_ago.unwrap_or_default()}
                                        </span>
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn ServerInfoList(info: ServerInfo) -> impl IntoView {
    let isolation_title = info.isolation_detail.clone();
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
            <div>
                <dt>"Apps' router"</dt>
                <dd><code>{format!("http://APP.localhost:{}", info.router_port)}</code></dd>
            </div>
            <div>
                <dt>"Isolation"</dt>
                <dd data-testid="server-isolation" title=isolation_title>
                    <code>{info.isolation}</code>
                    <div class="muted small">{info.isolation_summary}</div>
                </dd>
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
        use std::time::{Duration, UNIX_EPOCH};

        let started = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let info = ssr::server_info(
            started,
            started + Duration::from_secs(90),
            8080,
            &engine::sandbox::Isolation::EnvironmentOnly,
        );
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.started_at, "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(info.uptime_secs, 90);
        assert_eq!(info.router_port, 8080);

        // a clock that went backwards is not an error
        let info = ssr::server_info(
            started,
            UNIX_EPOCH,
            8080,
            &engine::sandbox::Isolation::EnvironmentOnly,
        );
        assert_eq!(info.uptime_secs, 0);
    }
}
