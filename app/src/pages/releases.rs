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
    /// What promoting it would change compared with the active release.
    pub changes: Vec<String>,
}

/// The app's newest promotion, with its steps: what the rollout panel shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutView {
    pub id: String,
    pub release: String,
    /// `running`, `active`, `rolled-back`, `cancelled`, `failed`.
    pub state: String,
    pub running: bool,
    pub actor: String,
    pub reason: Option<String>,
    /// The last lines of output of the process that failed.
    pub failed_output: Option<String>,
    pub events: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasesPage {
    pub app: String,
    pub rows: Vec<ReleaseRow>,
    /// `before` for the next (older) page, if there is one.
    pub next_before: Option<i64>,
    pub latest_rollout: Option<RolloutView>,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::{ReleaseRow, ReleasesPage, RolloutView, PAGE_SIZE};
    use engine::time;
    use engine::{AppName, Engine, PromotionState};

    pub async fn releases_page(
        engine: &Engine,
        app: &AppName,
        before: Option<i64>,
    ) -> Result<ReleasesPage, engine::Error> {
        let items = engine.list_releases(app, before, PAGE_SIZE + 1).await?;
        let active = match engine.app(app).await?.active_release {
            Some(id) => Some(engine.release(app, &id).await?),
            None => None,
        };
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
                changes: active
                    .as_ref()
                    .map(|a| i.release.changes_from(a))
                    .unwrap_or_default(),
            })
            .collect();
        let next_before = if more {
            items.get(PAGE_SIZE as usize - 1).map(|i| i.seq)
        } else {
            None
        };
        let latest_rollout = match engine
            .list_promotions(app, None, 1)
            .await?
            .into_iter()
            .next()
        {
            Some(p) => {
                let events = engine.promotion_events(&p.id).await?;
                Some(RolloutView {
                    id: p.id.to_string(),
                    release: p.release.to_string(),
                    state: p.state.to_string(),
                    running: p.state == PromotionState::Running,
                    actor: p.actor,
                    reason: p.reason,
                    failed_output: p.failed_output,
                    events: events.into_iter().map(|e| e.message).collect(),
                })
            }
            None => None,
        };
        Ok(ReleasesPage {
            app: app.to_string(),
            rows,
            next_before,
            latest_rollout,
        })
    }
}

#[server(endpoint = "get_releases")]
pub async fn get_releases(app: String, before: Option<i64>) -> Result<ReleasesPage, AppError> {
    let ctx = crate::context::console_context()?;
    let app = crate::context::app_name(&app)?;
    Ok(ssr::releases_page(&ctx.engine, &app, before).await?)
}

/// Cancels the app's running rollout; returns the promotion's state once it has ended.
#[server(endpoint = "cancel_rollout")]
pub async fn cancel_rollout(app: String) -> Result<String, AppError> {
    let ctx = crate::context::console_context()?;
    let app = crate::context::app_name(&app)?;
    let p = ctx.engine.cancel(&app, &crate::context::actor()).await?;
    Ok(p.state.to_string())
}

/// Starts a rolling update to `release`; returns the promotion's ID at once.
#[server(endpoint = "promote_release")]
pub async fn promote_release(app: String, release: String) -> Result<String, AppError> {
    let ctx = crate::context::console_context()?;
    let app = crate::context::app_name(&app)?;
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
    let cancel = ServerAction::<CancelRollout>::new();
    // In the browser, every engine event of the app refetches the page: live progress.
    let live = crate::live::use_app_events(app);
    let page = Resource::new(
        move || {
            (
                app(),
                before(),
                promote.version().get(),
                cancel.version().get(),
                live.get(),
            )
        },
        |(app, before, ..)| get_releases(app, before),
    );

    view! {
        <Title text=move || format!("{} releases", app()) />
        {move || view! { <crate::components::AppNav app=app() current="Releases" /> }}
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
                    page.await.map(|page| {
                        let rollout = page.latest_rollout.clone().map(|r| view! { <RolloutPanel app=page.app.clone() rollout=r cancel /> });
                        view! { {rollout} <ReleasesTable page promote /> }
                    })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

/// The newest rollout: its steps as they happen, why it rolled back, and Cancel while it runs.
#[component]
fn RolloutPanel(
    app: String,
    rollout: RolloutView,
    cancel: ServerAction<CancelRollout>,
) -> impl IntoView {
    let (class, title) = match rollout.state.as_str() {
        "running" => (
            "card rollout rollout-running",
            format!("Promoting {}", rollout.release),
        ),
        "active" => (
            "card rollout rollout-active",
            format!("{} promoted", rollout.release),
        ),
        "rolled-back" => (
            "card rollout rollout-failed",
            format!("{} rolled back", rollout.release),
        ),
        "cancelled" => (
            "card rollout rollout-failed",
            format!("Promotion of {} cancelled", rollout.release),
        ),
        _ => (
            "card rollout rollout-failed",
            format!("Promotion of {} failed", rollout.release),
        ),
    };
    let reason = rollout
        .reason
        .clone()
        .map(|r| view! { <p class="rollout-reason" data-testid="rollout-reason">{r}</p> });
    let output = rollout.failed_output.clone().map(|o| {
        view! {
            <details open>
                <summary>"Output of the process that failed"</summary>
                <pre class="output" data-testid="failed-output">{o}</pre>
            </details>
        }
    });
    let cancel_form = rollout.running.then(|| {
        view! {
            <ActionForm action=cancel>
                <input type="hidden" name="app" value=app.clone() />
                <button type="submit" class="button button-secondary">"Cancel rollout"</button>
            </ActionForm>
        }
    });
    view! {
        <section class=class aria-labelledby="rollout-title" data-testid="rollout" data-state=rollout.state.clone()>
            <div class="card-header">
                <h2 id="rollout-title">{title}</h2>
                {cancel_form}
            </div>
            <p class="muted small">{format!("Promotion {} by {}", rollout.id, rollout.actor)}</p>
            {reason}
            <ol class="steps" aria-live="polite">
                {rollout.events.into_iter().map(|e| view! { <li>{e}</li> }).collect_view()}
            </ol>
            {output}
        </section>
    }
}

/// Promote with a confirmation that says what will change. Native `<details>`, so it works
/// without JavaScript too.
#[component]
fn PromoteConfirm(
    app: String,
    release: String,
    changes: Vec<String>,
    promote: ServerAction<PromoteRelease>,
) -> impl IntoView {
    let changes = if changes.is_empty() {
        view! { <li>"nothing: same build and environment"</li> }.into_any()
    } else {
        changes
            .into_iter()
            .map(|c| view! { <li><code>{c}</code></li> })
            .collect_view()
            .into_any()
    };
    let label = format!("Promote {release}");
    view! {
        <details class="confirm">
            <summary class="button">"Promote…"</summary>
            <div class="confirm-body">
                <p>"Compared with the active release:"</p>
                <ul>{changes}</ul>
                <ActionForm action=promote>
                    <input type="hidden" name="app" value=app />
                    <input type="hidden" name="release" value=release />
                    <button type="submit" class="button button-primary" aria-label=label.clone()>
                        {label.clone()}
                    </button>
                </ActionForm>
            </div>
        </details>
    }
    .into_any()
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
                            let href = format!("/apps/{app}/releases/{rid}");
                            let id_text = r.id.clone();
                                view! {
                                <tr data-release=r.id.clone() class:active-row=r.active>
                                    <td><A href=href><code>{id_text}</code></A></td>
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
                                            <PromoteConfirm app=app.clone() release=rid.clone() changes=r.changes.clone() promote />
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
