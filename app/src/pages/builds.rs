//! The Builds tab (`/apps/:app/builds`): ID, status, description, created, and the release
//! each build made.

use crate::{
    components::{AppNav, ErrorList},
    AppError,
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{components::A, hooks::use_params_map};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRow {
    pub id: String,
    pub status: String,
    pub description: String,
    pub created_ago: String,
    pub created_exact: String,
    pub created_by: String,
    pub release: Option<String>,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::BuildRow;
    use engine::{time, AppName, Engine};

    pub async fn builds(engine: &Engine, app: &AppName) -> Result<Vec<BuildRow>, engine::Error> {
        let now = engine::now_ms();
        Ok(engine
            .list_builds(app, 100)
            .await?
            .into_iter()
            .map(|b| BuildRow {
                id: b.id.to_string(),
                status: b.status,
                description: b.description,
                created_ago: time::ago(b.created_at, now),
                created_exact: time::exact(b.created_at),
                created_by: b.created_by,
                release: b.release.map(|r| r.to_string()),
            })
            .collect())
    }
}

#[server(endpoint = "get_builds")]
pub async fn get_builds(app: String) -> Result<Vec<BuildRow>, AppError> {
    let ctx = crate::context::console_context()?;
    let app = crate::context::app_name(&app)?;
    Ok(ssr::builds(&ctx.engine, &app).await?)
}

#[component]
pub fn BuildsPage() -> impl IntoView {
    let params = use_params_map();
    let app = move || params.read().get("app").unwrap_or_default();
    let builds = Resource::new(app, get_builds);
    // The title is fixed for the page: a plain string, never read after the render ended.
    let app_now = params.read_untracked().get("app").unwrap_or_default();
    let title = format!("{} builds", app_now);
    view! {
        <Title text=title />
        {move || view! { <AppNav app=app() current="Builds" /> }}
        <div class="page-header">
            <h1>"Builds of " <code>{app}</code></h1>
        </div>
        <Transition fallback=|| view! { <p class="muted">"Loading builds…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    builds.await.map(|rows| view! { <BuildsTable app=app() rows /> })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

#[component]
fn BuildsTable(app: String, rows: Vec<BuildRow>) -> impl IntoView {
    if rows.is_empty() {
        return view! {
            <section class="card empty-state">
                <p>"No builds yet. " <code>{format!("slipway -a {app} build DIR")}</code> " makes one."</p>
            </section>
        }
        .into_any();
    }
    view! {
        <div class="table-wrap card">
            <table class="table" data-testid="builds">
                <thead>
                    <tr>
                        <th scope="col">"ID"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Description"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Release"</th>
                    </tr>
                </thead>
                <tbody>
                    {rows
                        .into_iter()
                        .map(|b| {
                            let release = b.release.clone().map(|r| {
                                let href = format!("/apps/{app}/releases/{r}");
                                view! { <A href=href><code>{r}</code></A> }
                            });
                            let id = b.id.clone();
                            view! {
                                <tr data-build=id>
                                    <td><code>{b.id}</code></td>
                                    <td>{b.status}</td>
                                    <td>{b.description}</td>
                                    <td>
                                        <span title=b.created_exact>{b.created_ago}</span>
                                        <br />
                                        <span class="muted small">{format!("by {}", b.created_by)}</span>
                                    </td>
                                    <td>{release}</td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}
