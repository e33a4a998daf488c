//! The Releases page (`/apps/:app/releases`): the app's immutable releases newest first, like
//! `convox releases`, with Promote on every release that is not active.

use crate::live::LiveRegion;
use crate::rollout::{RolloutPanel, RolloutView};
use crate::{components::ErrorList, AppError};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use serde::{Deserialize, Serialize};
use types::PromotionState;

/// Releases per page.
pub const PAGE_SIZE: u32 = 50;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRow {
    pub id: String,
    /// `active`, `promoting`, `rolled back: <reason>`, ...
    pub status: String,
    pub active: bool,
    /// The state of its newest promotion, if it was ever promoted.
    pub last_state: Option<PromotionState>,
    pub build: Option<String>,
    pub created_ago: String,
    pub created_exact: String,
    pub created_by: String,
    pub promoted_by: Option<String>,
    pub description: String,
    /// What promoting it would change compared with the active release, as far as the list
    /// knows: the build (`build B… → B…`), and whether the environment differs.
    pub build_change: Option<String>,
    pub env_differs: bool,
}

impl ReleaseRow {
    /// Whether a promotion of it is running.
    pub fn promoting(&self) -> bool {
        self.last_state == Some(PromotionState::Running)
    }

    /// The class of its STATUS: active, promoting, nothing to say (never promoted, or active
    /// once), or how its last promotion failed.
    fn status_class(&self) -> &'static str {
        match (self.active, self.last_state) {
            (true, _) => "status status-active",
            (false, Some(PromotionState::Running)) => "status status-running",
            (false, None | Some(PromotionState::Active)) => "status",
            (false, Some(_)) => "status status-failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasesPage {
    pub app: String,
    /// The `before` this page was asked for (keyset paging).
    pub before: Option<i64>,
    pub rows: Vec<ReleaseRow>,
    /// `before` for the next (older) page, if there is one.
    pub next_before: Option<i64>,
    pub latest_rollout: Option<RolloutView>,
    /// Whether the caller may promote (viewers see no Promote button).
    pub can_deploy: bool,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::{ReleaseRow, ReleasesPage, PAGE_SIZE};
    use engine::time;
    use engine::{AppName, Engine};

    pub async fn releases_page(
        engine: &Engine,
        app: &AppName,
        before: Option<i64>,
    ) -> Result<ReleasesPage, engine::Error> {
        let items = engine.list_releases(app, before, PAGE_SIZE + 1).await?;
        // The active release's build: from the page when the active release is on it.
        let active_build = match engine.app(app).await?.active_release {
            None => None,
            Some(id) => Some(match items.iter().find(|i| i.release.id == id) {
                Some(i) => i.release.build.clone(),
                None => engine.release(app, &id).await?.build,
            }),
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
                last_state: i.last_promotion.as_ref().map(|p| p.state),
                build: i.release.build.as_ref().map(|b| b.to_string()),
                created_ago: time::ago(i.release.created_at, now),
                created_exact: time::exact(i.release.created_at),
                created_by: i.release.created_by.clone(),
                promoted_by: i.promoted_by.clone(),
                description: i.release.description.clone(),
                build_change: active_build
                    .as_ref()
                    .and_then(|b| i.build_change(b.as_ref())),
                env_differs: active_build.is_some() && !i.same_env_as_active,
            })
            .collect();
        let next_before = if more {
            items.get(PAGE_SIZE as usize - 1).map(|i| i.seq)
        } else {
            None
        };
        let latest_rollout = crate::rollout::ssr::latest_rollout(engine, app).await?;
        Ok(ReleasesPage {
            can_deploy: false,
            app: app.to_string(),
            before,
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
    let mut page = ssr::releases_page(&ctx.engine, &app, before).await?;
    page.can_deploy = crate::context::can_deploy();
    if let (Some(r), false) = (&mut page.latest_rollout, page.can_deploy) {
        crate::rollout::ssr::mask_output(&ctx.engine, &app, r).await?;
    }
    Ok(page)
}

/// Starts a rolling update to `release`; returns the promotion's ID at once.
#[server(endpoint = "promote_release")]
pub async fn promote_release(app: String, release: String) -> Result<String, AppError> {
    let ctx = crate::context::console_context_for(engine::Role::Deployer)?;
    let app = crate::context::app_name(&app)?;
    let release = engine::ReleaseId::parse(&release)?;
    let promotion = ctx
        .engine
        .promote(
            &app,
            &release,
            &engine::PromoteOptions::default(),
            &crate::context::actor()?,
        )
        .await?;
    Ok(promotion.id.to_string())
}

/// The page around the live part: title and tabs are plain server-rendered HTML.
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
    let page = Resource::new(
        move || (app(), before()),
        |(app, before)| get_releases(app, before),
    );
    // The title is fixed for the page: a plain string, never read after the render ended.
    let app_now = params.read_untracked().get("app").unwrap_or_default();
    let title = format!("{} releases", app_now);
    view! {
        <Title text=title />
        {move || view! { <crate::components::AppNav app=app() current="Releases" /> }}
        <div class="page-header">
            <h1>"Releases of " <code>{app}</code></h1>
        </div>
        <crate::components::ActionError />
        <Suspense fallback=|| view! { <p class="muted">"Loading releases…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    page.await.map(|page| {
                        let app = Some(page.app.clone());
                        view! {
                            <LiveRegion app id="releases-live".to_string()>
                                <ReleasesContent page />
                            </LiveRegion>
                        }
                    })
                })}
            </ErrorBoundary>
        </Suspense>
    }
}

/// The newest rollout and the table; server-rendered, kept live by the `LiveRegion` around it.
#[component]
fn ReleasesContent(page: ReleasesPage) -> impl IntoView {
    let rollout = page
        .latest_rollout
        .clone()
        .map(|r| view! { <RolloutPanel app=page.app.clone() rollout=r /> });
    view! { {rollout} <ReleasesTable page /> }
}

/// Promote with a confirmation that says what will change. Native `<details>`, so it works
/// without JavaScript too. The list knows the build line and whether the environment differs;
/// which variables differ is on the release's page (`#changes`), which the live region
/// fetches into the confirmation when it is opened (without JavaScript: a link to it). So a
/// page of releases never diffs environments.
#[component]
fn PromoteConfirm(
    app: String,
    release: String,
    build_change: Option<String>,
    env_differs: bool,
) -> impl IntoView {
    let page = format!("/apps/{app}/releases/{release}");
    let env = env_differs.then(|| {
        view! {
            <li class="env-differs">
                "the environment: "
                <a href=format!("{page}#diff-title")>"see which variables"</a>
            </li>
        }
    });
    let nothing = (build_change.is_none() && !env_differs)
        .then(|| view! { <li>"nothing: same build and environment"</li> });
    let build = build_change.map(|c| view! { <li><code>{c}</code></li> });
    let label = format!("Promote {release}");
    let changes_from = env_differs.then_some(page);
    view! {
        <details class="confirm" data-keep=format!("promote-{release}")>
            <summary class="button">"Promote…"</summary>
            <div class="confirm-body">
                <p>"Compared with the active release:"</p>
                <ul class="diff" data-changes-from=changes_from>{build}{env}{nothing}</ul>
                <form
                    method="post"
                    action=PromoteRelease::url()
                    data-success="Promotion {} started."
                    data-result="promote-result"
                >
                    <input type="hidden" name="app" value=app />
                    <input type="hidden" name="release" value=release.clone() />
                    <button type="submit" class="button button-primary" aria-label=label.clone()>
                        {label.clone()}
                    </button>
                </form>
            </div>
        </details>
    }
    .into_any()
}

#[component]
fn ReleasesTable(page: ReleasesPage) -> impl IntoView {
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
        |b| view! { <a href=format!("/apps/{app}/releases?before={b}")>"Older releases →"</a> },
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
                            let status_class = r.status_class();
                            let can_promote = page.can_deploy && !r.active && !r.promoting() && r.build.is_some();
                            let who = match &r.promoted_by {
                                Some(p) => format!("created by {}, promoted by {p}", r.created_by),
                                None => format!("created by {}", r.created_by),
                            };
                            let rid = r.id.clone();
                            let href = format!("/apps/{app}/releases/{rid}");
                            let id_text = r.id.clone();
                                view! {
                                <tr data-release=r.id.clone() class:active-row=r.active>
                                    <td data-label="ID"><a href=href><code>{id_text}</code></a></td>
                                    <td data-label="Status"><span class=status_class>{r.status.clone()}</span></td>
                                    <td data-label="Build"><code>{r.build.clone().unwrap_or_default()}</code></td>
                                    <td data-label="Created">
                                        <span>
                                            <span title=r.created_exact.clone()>{r.created_ago.clone()}</span>
                                            <br />
                                            <span class="muted small">{who}</span>
                                        </span>
                                    </td>
                                    <td data-label="Description">{r.description.clone()}</td>
                                    <td class="actions">
                                        {can_promote.then(move || view! {
                                            <PromoteConfirm app=app.clone() release=rid.clone() build_change=r.build_change.clone() env_differs=r.env_differs />
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
