//! The Releases page (`/apps/:app/releases`): the app's immutable releases newest first, like
//! `convox releases`, with Promote on every release that is not active.

use crate::{components::ErrorList, AppError};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{
    components::A,
    hooks::{use_params_map, use_query_map},
};
use serde::{Deserialize, Serialize};

/// Releases per page.
pub const PAGE_SIZE: u32 = 50;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRow {
    pub id: String,
    /// `active`, `promoting`, `rolled back: <reason>`, ...
    pub status: String,
    pub active: bool,
    pub promoting: bool,
    pub build: Option<String>,
    pub created_ago: String,
    pub created_exact: String,
    pub created_by: String,
    pub promoted_by: Option<String>,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasesPage {
    pub app: String,
    pub rows: Vec<ReleaseRow>,
    /// `before` for the next (older) page, if there is one.
    pub next_before: Option<i64>,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::{ReleaseRow, ReleasesPage, PAGE_SIZE};
    use engine::time;
    use engine::{AppName, Engine, PromotionState};

    pub async fn releases_page(
        engine: &Engine,
        app: &AppName,
        before: Option<i64>,
    ) -> Result<ReleasesPage, engine::Error> {
        let items = engine.list_releases(app, before, PAGE_SIZE + 1).await?;
        let now = engine::now_ms();
        let more = items.len() > PAGE_SIZE as usize;
        let rows: Vec<ReleaseRow> = items
            .iter()
            .take(PAGE_SIZE as usize)
            .map(|i| ReleaseRow {
                id: i.release.id.to_string(),
                status: i.status(),
                active: i.active,
                promoting: i
                    .last_promotion
                    .as_ref()
                    .is_some_and(|p| p.state == PromotionState::Running),
                build: i.release.build.as_ref().map(|b| b.to_string()),
                created_ago: time::ago(i.release.created_at, now),
                created_exact: time::exact(i.release.created_at),
                created_by: i.release.created_by.clone(),
                promoted_by: i.promoted_by.clone(),
                description: i.release.description.clone(),
            })
            .collect();
        let next_before = if more {
            items.get(PAGE_SIZE as usize - 1).map(|i| i.seq)
        } else {
            None
        };
        Ok(ReleasesPage {
            app: app.to_string(),
            rows,
            next_before,
        })
    }
}

#[server(endpoint = "get_releases")]
pub async fn get_releases(app: String, before: Option<i64>) -> Result<ReleasesPage, AppError> {
    let ctx = crate::context::console_context()?;
    let app = engine::AppName::parse(&app)
        .map_err(|_| AppError::NotFound(format!("app {app}")).with_status())?;
    Ok(ssr::releases_page(&ctx.engine, &app, before).await?)
}

/// Starts a rolling update to `release`; returns the promotion's ID at once.
#[server(endpoint = "promote_release")]
pub async fn promote_release(app: String, release: String) -> Result<String, AppError> {
    let ctx = crate::context::console_context()?;
    let app = engine::AppName::parse(&app)
        .map_err(|_| AppError::NotFound(format!("app {app}")).with_status())?;
    let release = engine::ReleaseId::parse(&release)?;
    let promotion = ctx
        .engine
        .promote(
            &app,
            &release,
            &engine::PromoteOptions::default(),
            &crate::context::actor(),
        )
        .await?;
    Ok(promotion.id.to_string())
}

#[component]
pub fn ReleasesPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let app = move || params.read().get("app").unwrap_or_default();
    let before = move || {
        query
            .read()
            .get("before")
            .and_then(|b| b.parse::<i64>().ok())
    };
    let promote = ServerAction::<PromoteRelease>::new();
    let page = Resource::new(
        move || (app(), before(), promote.version().get()),
        |(app, before, _)| get_releases(app, before),
    );

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
        {move || {
            promote.value().get().map(|result| match result {
                Ok(id) => view! {
                    <p class="notice notice-success" role="status" data-testid="promote-result">
                        "Promotion " <code>{id}</code> " started."
                    </p>
                }.into_any(),
                Err(e) => view! {
                    <p class="notice notice-error" role="alert" data-testid="promote-result">{e.to_string()}</p>
                }.into_any(),
            })
        }}
        <Transition fallback=|| view! { <p class="muted">"Loading releases…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    page.await.map(|page| view! { <ReleasesTable page promote /> })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

#[component]
fn ReleasesTable(page: ReleasesPage, promote: ServerAction<PromoteRelease>) -> impl IntoView {
    if page.rows.is_empty() {
        return view! {
            <section class="card empty-state">
                <p>"No releases for " <code>{page.app}</code> " yet."</p>
            </section>
        }
        .into_any();
    }
    let app = page.app.clone();
    let next = page.next_before.map(
        |b| view! { <A href=format!("/apps/{app}/releases?before={b}")>"Older releases →"</A> },
    );
    view! {
        <div class="table-wrap card">
            <table class="table releases" data-testid="releases">
                <thead>
                    <tr>
                        <th scope="col">"ID"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Build"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Description"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {page
                        .rows
                        .into_iter()
                        .map(|r| {
                            let app = page.app.clone();
                            let status_class = if r.active {
                                "status status-active"
                            } else if r.promoting {
                                "status status-running"
                            } else if r.status.is_empty() {
                                "status"
                            } else {
                                "status status-failed"
                            };
                            let can_promote = !r.active && !r.promoting && r.build.is_some();
                            let who = match &r.promoted_by {
                                Some(p) => format!("created by {}, promoted by {p}", r.created_by),
                                None => format!("created by {}", r.created_by),
                            };
                            let rid = r.id.clone();
                                view! {
                                <tr data-release=r.id.clone() class:active-row=r.active>
                                    <td><code>{r.id.clone()}</code></td>
                                    <td><span class=status_class>{r.status.clone()}</span></td>
                                    <td><code>{r.build.clone().unwrap_or_default()}</code></td>
                                    <td>
                                        <span title=r.created_exact.clone()>{r.created_ago.clone()}</span>
                                        <br />
                                        <span class="muted small">{who}</span>
                                    </td>
                                    <td>{r.description.clone()}</td>
                                    <td>
                                        {can_promote.then(move || view! {
                                            <ActionForm action=promote>
                                                <input type="hidden" name="app" value=app.clone() />
                                                <input type="hidden" name="release" value=rid.clone() />
                                                <button type="submit" class="button"
                                                    aria-label=format!("Promote {rid}")>
                                                    "Promote"
                                                </button>
                                            </ActionForm>
                                        })}
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
        <nav class="pager" aria-label="Pages">{next}</nav>
    }
    .into_any()
}
