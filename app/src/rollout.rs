//! The app's newest rollout, shown live: its steps as they happen, why it rolled back (with
//! the failed process's last output) and Cancel while it runs. Used by the Releases page and
//! the Environment editor.

use crate::AppError;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use serde::{Deserialize, Serialize};
use types::PromotionState;

/// The app's newest promotion, with its steps: what the rollout panel shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutView {
    pub id: String,
    pub release: String,
    pub state: PromotionState,
    pub actor: String,
    pub reason: Option<String>,
    /// The last lines of output of the process that failed.
    pub failed_output: Option<String>,
    pub events: Vec<String>,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::RolloutView;
    use engine::{AppName, Engine};

    /// The app's newest promotion and its steps, if it was ever promoted.
    pub async fn latest_rollout(
        engine: &Engine,
        app: &AppName,
    ) -> Result<Option<RolloutView>, engine::Error> {
        let Some(p) = engine
            .list_promotions(app, None, 1)
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let events = engine.promotion_events(&p.id).await?;
        Ok(Some(RolloutView {
            id: p.id.to_string(),
            release: p.release.to_string(),
            state: p.state,
            actor: p.actor,
            reason: p.reason,
            failed_output: p.failed_output,
            events: events.into_iter().map(|e| e.step.to_string()).collect(),
        }))
    }

    /// The rollout's output with the app's own env values masked (`••••`), for callers who
    /// may not see them (viewers).
    pub async fn mask_output(
        engine: &Engine,
        app: &AppName,
        rollout: &mut RolloutView,
    ) -> Result<(), engine::Error> {
        if let Some(output) = &rollout.failed_output {
            let release = engine::ReleaseId::parse(&rollout.release)?;
            let redactor = engine.output_redactor(app, &[release]).await?;
            rollout.failed_output = Some(redactor.redact(output));
        }
        Ok(())
    }
}

#[server(endpoint = "get_rollout")]
pub async fn get_rollout(app: String) -> Result<Option<RolloutView>, AppError> {
    let ctx = crate::context::console_context()?;
    let app = crate::context::app_name(&app)?;
    let mut rollout = ssr::latest_rollout(&ctx.engine, &app).await?;
    if let (Some(r), false) = (&mut rollout, crate::context::can_deploy()) {
        ssr::mask_output(&ctx.engine, &app, r).await?;
    }
    Ok(rollout)
}

/// Cancels the app's running rollout; returns the promotion's state once it has ended.
#[server(endpoint = "cancel_rollout")]
pub async fn cancel_rollout(app: String) -> Result<PromotionState, AppError> {
    let ctx = crate::context::console_context_for(engine::Role::Deployer)?;
    let app = crate::context::app_name(&app)?;
    let p = ctx.engine.cancel(&app, &crate::context::actor()?).await?;
    Ok(p.state)
}

/// One rollout: title by state, who started it, the reason, the steps, and Cancel.
#[component]
pub fn RolloutPanel(app: String, rollout: RolloutView) -> impl IntoView {
    let (class, title) = match rollout.state {
        PromotionState::Running => (
            "card rollout rollout-running",
            format!("Promoting {}", rollout.release),
        ),
        PromotionState::Active => (
            "card rollout rollout-active",
            format!("{} promoted", rollout.release),
        ),
        PromotionState::RolledBack => (
            "card rollout rollout-failed",
            format!("{} rolled back", rollout.release),
        ),
        PromotionState::Cancelled => (
            "card rollout rollout-failed",
            format!("Promotion of {} cancelled", rollout.release),
        ),
        PromotionState::Failed => (
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
    let cancel_form = (rollout.state == PromotionState::Running).then(|| {
        view! {
            <form method="post" action=CancelRollout::url() data-success="Rollout {}." data-result="cancel-result">
                <input type="hidden" name="app" value=app.clone() />
                <button type="submit" class="button button-secondary">"Cancel rollout"</button>
            </form>
        }
    });
    let state = rollout.state.as_str();
    let who = format!("Promotion {} by {}", rollout.id, rollout.actor);
    view! {
        <section class=class aria-labelledby="rollout-title" data-testid="rollout" data-state=state>
            <div class="card-header">
                <h2 id="rollout-title">{title}</h2>
                {cancel_form}
            </div>
            <p class="muted small">{who}</p>
            {reason}
            <ol class="steps" aria-live="polite">
                {rollout.events.into_iter().map(|e| view! { <li>{e}</li> }).collect_view()}
            </ol>
            {output}
        </section>
    }
}
