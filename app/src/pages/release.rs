//! The Release detail page (`/apps/:app/releases/:id`): build, description, environment
//! (masked), how it differs from the active release, every promotion of it with its steps,
//! and Rollback to this release.

use crate::{
    components::{AppNav, ErrorList},
    AppError,
};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use leptos_router::{components::A, hooks::use_params_map};
use serde::{Deserialize, Serialize};
use types::PromotionState;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionView {
    pub id: String,
    pub state: PromotionState,
    pub actor: String,
    pub started_exact: String,
    pub reason: Option<String>,
    pub failed_output: Option<String>,
    pub events: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseDetail {
    pub app: String,
    pub id: String,
    pub active: bool,
    pub build: Option<String>,
    pub description: String,
    pub created_ago: String,
    pub created_exact: String,
    pub created_by: String,
    pub rollback_of: Option<String>,
    /// Keys only: values stay masked.
    pub env_keys: Vec<String>,
    /// The active release, and what promoting this one would change (build, env keys).
    pub active_release: Option<String>,
    pub changes: Vec<String>,
    pub promotions: Vec<PromotionView>,
    /// Whether the caller may roll back (viewers see no button).
    pub can_deploy: bool,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::{PromotionView, ReleaseDetail};
    use engine::{time, AppName, Engine, ReleaseId};

    pub async fn detail(
        engine: &Engine,
        app: &AppName,
        id: &ReleaseId,
    ) -> Result<ReleaseDetail, engine::Error> {
        let release = engine.release(app, id).await?;
        let active_id = engine.app(app).await?.active_release;
        let active = match &active_id {
            Some(a) if a != id => Some(engine.release(app, a).await?),
            _ => None,
        };
        let changes = active
            .as_ref()
            .map(|a| release.changes_from(a))
            .unwrap_or_default();
        let promotions = engine
            .release_promotions(app, id)
            .await?
            .into_iter()
            .map(|d| PromotionView {
                id: d.promotion.id.to_string(),
                state: d.promotion.state,
                actor: d.promotion.actor,
                started_exact: time::exact(d.promotion.started_at),
                reason: d.promotion.reason,
                failed_output: d.promotion.failed_output,
                events: d.events.into_iter().map(|e| e.step.to_string()).collect(),
            })
            .collect();
        Ok(ReleaseDetail {
            app: app.to_string(),
            id: release.id.to_string(),
            active: active_id.as_ref() == Some(id),
            build: release.build.as_ref().map(|b| b.to_string()),
            description: release.description.clone(),
            created_ago: time::ago(release.created_at, engine::now_ms()),
            created_exact: time::exact(release.created_at),
            created_by: release.created_by.clone(),
            rollback_of: release.rollback_of.as_ref().map(|r| r.to_string()),
            env_keys: release.env.iter().map(|(k, _)| k.to_string()).collect(),
            active_release: active.as_ref().map(|a| a.id.to_string()),
            changes,
            promotions,
            can_deploy: false,
        })
    }
}

#[server(endpoint = "get_release")]
pub async fn get_release(app: String, id: String) -> Result<ReleaseDetail, AppError> {
    let ctx = crate::context::console_context()?;
    let app = crate::context::app_name(&app)?;
    let id = engine::ReleaseId::parse(&id)
        .map_err(|_| AppError::NotFound(format!("release {id}")).with_status())?;
    let mut detail = ssr::detail(&ctx.engine, &app, &id).await?;
    detail.can_deploy = crate::context::can_deploy();
    if !detail.can_deploy && detail.promotions.iter().any(|p| p.failed_output.is_some()) {
        // Every promotion here ran this release, with its environment.
        let redactor = ctx
            .engine
            .output_redactor(&app, std::slice::from_ref(&id))
            .await?;
        for p in &mut detail.promotions {
            if let Some(output) = &mut p.failed_output {
                *output = redactor.redact(output);
            }
        }
    }
    Ok(detail)
}

/// Creates a new release with this release's build and environment and promotes it.
#[server(endpoint = "rollback_release")]
pub async fn rollback_release(app: String, release: String) -> Result<String, AppError> {
    let ctx = crate::context::console_context_for(engine::Role::Deployer)?;
    let app = crate::context::app_name(&app)?;
    let release = engine::ReleaseId::parse(&release)?;
    let (new, _) = ctx
        .engine
        .rollback(
            &app,
            &release,
            &engine::PromoteOptions::default(),
            &crate::context::actor()?,
        )
        .await?;
    Ok(new.id.to_string())
}

#[component]
pub fn ReleasePage() -> impl IntoView {
    let params = use_params_map();
    let app = move || params.read().get("app").unwrap_or_default();
    let id = move || params.read().get("id").unwrap_or_default();
    let detail = Resource::new(move || (app(), id()), |(app, id)| get_release(app, id));
    // The title is fixed for the page: a plain string, never read after the render ended.
    let title = {
        let params = params.read_untracked();
        format!(
            "{} · {}",
            params.get("id").unwrap_or_default(),
            params.get("app").unwrap_or_default()
        )
    };
    view! {
        <Title text=title />
        {move || view! { <AppNav app=app() current="Releases" /> }}
        <div class="page-header">
            <h1>"Release " <code>{id}</code></h1>
        </div>
        <crate::components::ActionError />
        <Suspense fallback=|| view! { <p class="muted">"Loading the release…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    detail.await.map(|detail| {
                        let app = Some(detail.app.clone());
                        view! {
                            <crate::live::LiveRegion app id="release-live".to_string()>
                                <ReleaseView detail />
                            </crate::live::LiveRegion>
                        }
                    })
                })}
            </ErrorBoundary>
        </Suspense>
    }
}

#[component]
fn ReleaseView(detail: ReleaseDetail) -> impl IntoView {
    let rollback_form = (detail.can_deploy && !detail.active && detail.build.is_some()).then(|| {
        let (app, release) = (detail.app.clone(), detail.id.clone());
        view! {
            <form
                method="post"
                action=RollbackRelease::url()
                data-success="Created {} from this release and started promoting it: follow it on the Releases tab."
                data-result="rollback-result"
            >
                <input type="hidden" name="app" value=app />
                <input type="hidden" name="release" value=release />
                <button type="submit" class="button">"Rollback to this release"</button>
            </form>
        }
    });
    let diff = detail.active_release.clone().map(|active| {
        let changes = detail.changes.clone();
        let same = changes
            .is_empty()
            .then(|| view! { <li>"nothing: same build and environment"</li> });
        view! {
            <section class="card" aria-labelledby="diff-title" data-testid="diff">
                <h2 id="diff-title">"Compared with the active release " <code>{active}</code></h2>
                <ul class="diff" id="changes">
                    {changes.into_iter().map(|k| view! { <li><code>{k}</code></li> }).collect_view()}
                    {same}
                </ul>
            </section>
        }
    });
    let env = if detail.env_keys.is_empty() {
        view! { <p class="muted">"No variables."</p> }.into_any()
    } else {
        view! {
            <ul class="env-list" data-testid="env">
                {detail.env_keys.iter().map(|k| view! { <li><code>{format!("{k}=****")}</code></li> }).collect_view()}
            </ul>
        }
        .into_any()
    };
    let promotions = if detail.promotions.is_empty() {
        view! { <p class="muted">"Never promoted."</p> }.into_any()
    } else {
        detail
            .promotions
            .iter()
            .cloned()
            .map(|p| {
                let reason = p.reason.map(|r| view! { <p class="rollout-reason">{r}</p> });
                let output = p.failed_output.map(|o| view! { <pre class="output">{o}</pre> });
                let state = p.state.as_str();
                view! {
                    <details class="promotion" data-state=state>
                        <summary>
                            <code>{p.id}</code> " " <strong>{state}</strong>
                            {format!(" — by {}, {}", p.actor, p.started_exact)}
                        </summary>
                        {reason}
                        <ol class="steps">{p.events.into_iter().map(|e| view! { <li>{e}</li> }).collect_view()}</ol>
                        {output}
                    </details>
                }
            })
            .collect_view()
            .into_any()
    };
    let rollback_of = detail.rollback_of.clone().map(|r| {
        let href = format!("/apps/{}/releases/{r}", detail.app);
        view! { <div><dt>"Rollback of"</dt><dd><A href=href><code>{r}</code></A></dd></div> }
    });
    view! {
        <section class="card" aria-labelledby="facts-title">
            <div class="card-header">
                <h2 id="facts-title">
                    {if detail.active { "Active release" } else { "Not active" }}
                </h2>
                {rollback_form}
            </div>
            <dl class="facts">
                <div><dt>"Build"</dt><dd><code>{detail.build.clone().unwrap_or_else(|| "none".into())}</code></dd></div>
                <div><dt>"Description"</dt><dd>{detail.description.clone()}</dd></div>
                <div>
                    <dt>"Created"</dt>
                    <dd title=detail.created_exact.clone()>{format!("{} by {}", detail.created_ago, detail.created_by)}</dd>
                </div>
                {rollback_of}
            </dl>
        </section>
        {diff}
        <section class="card" aria-labelledby="env-title">
            <h2 id="env-title">"Environment"</h2>
            {env}
        </section>
        <section class="card" aria-labelledby="promotions-title" data-testid="promotions">
            <h2 id="promotions-title">"Promotions"</h2>
            {promotions}
        </section>
    }
}
