//! The engine's records, as callers see them. Times are milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::env::{EnvDiff, Environment};
use crate::ids::{BuildId, PromotionId, ReleaseId};
use crate::names::AppName;

pub type Millis = i64;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub name: AppName,
    pub created_at: Millis,
    pub created_by: String,
    pub active_release: Option<ReleaseId>,
}

/// An app with what the Apps page shows about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    pub app: App,
    pub release_count: i64,
    pub newest_release: Option<ReleaseId>,
    /// Description and time of the newest release: the app's last change.
    pub last_change: Option<String>,
    pub last_change_at: Option<Millis>,
    /// The promotion running now, if any.
    pub running_promotion: Option<PromotionId>,
    /// State of the newest promotion (running, active, rolled-back, ...).
    pub last_promotion_state: Option<PromotionState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub id: BuildId,
    pub app: AppName,
    pub status: String,
    pub description: String,
    /// sha256 of the source archive.
    pub artifact: String,
    pub manifest: String,
    pub git_sha: Option<String>,
    pub created_at: Millis,
    pub created_by: String,
    /// The release this build created.
    pub release: Option<ReleaseId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: ReleaseId,
    pub app: AppName,
    pub build: Option<BuildId>,
    pub env: Environment,
    pub description: String,
    /// Set when this release was made by rolling back to an older one.
    pub rollback_of: Option<ReleaseId>,
    pub created_at: Millis,
    pub created_by: String,
}

impl Release {
    /// What promoting `self` would change compared with `active`, in words for people:
    /// `build B… → B…`, then the environment's keys as `add:K`, `change:K`, `remove:K`
    /// (never values). Empty when nothing differs.
    pub fn changes_from(&self, active: &Release) -> Vec<String> {
        let mut out: Vec<String> = build_change(active.build.as_ref(), self.build.as_ref())
            .into_iter()
            .collect();
        let diff = active.env.diff(&self.env);
        for (word, keys) in [
            ("add", &diff.added),
            ("change", &diff.changed),
            ("remove", &diff.removed),
        ] {
            out.extend(keys.iter().map(|k| format!("{word}:{k}")));
        }
        out
    }
}

/// `build B… → B…` when promoting a release of build `new` over one of build `old` changes
/// the build.
fn build_change(old: Option<&BuildId>, new: Option<&BuildId>) -> Option<String> {
    let name = |b: Option<&BuildId>| b.map(|b| b.to_string()).unwrap_or_else(|| "none".into());
    (old != new).then(|| format!("build {} → {}", name(old), name(new)))
}

/// A release without its environment, as lists carry it: what it is, who made it and which
/// variables it changed against the release before it (keys only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    pub id: ReleaseId,
    pub app: AppName,
    pub build: Option<BuildId>,
    pub description: String,
    pub rollback_of: Option<ReleaseId>,
    pub created_at: Millis,
    pub created_by: String,
    /// The keys added, changed and removed against the app's previous release (against an
    /// empty environment for the first).
    pub env_changes: EnvDiff,
}

/// A release as the Releases list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseListItem {
    pub release: ReleaseSummary,
    /// Position in the app's history (1 = first); the keyset for paging.
    pub seq: i64,
    pub active: bool,
    /// The newest promotion of this release, if it was ever promoted.
    pub last_promotion: Option<Promotion>,
    /// Who last promoted this release successfully.
    pub promoted_by: Option<String>,
    /// Whether its environment is the active release's (false when no release is active).
    pub same_env_as_active: bool,
}

impl ReleaseListItem {
    /// The build line of what promoting it would change compared with the active release
    /// (whose build is `active_build`); `None` when the builds are the same. Which variables
    /// would change takes the two environments ([`Release::changes_from`]); a list only knows
    /// whether there are any ([`ReleaseListItem::same_env_as_active`]).
    pub fn build_change(&self, active_build: Option<&BuildId>) -> Option<String> {
        build_change(active_build, self.release.build.as_ref())
    }

    /// The STATUS column: `active` for the active release, else what its newest promotion
    /// says (`promoting`, `rolled back: <reason>`, ...), else empty, as in `convox releases`.
    pub fn status(&self) -> String {
        if self.active {
            return "active".into();
        }
        match &self.last_promotion {
            None => String::new(),
            Some(p) => match (p.state, &p.reason) {
                (PromotionState::Running, _) => "promoting".into(),
                // Active once, replaced since by another release.
                (PromotionState::Active, _) => String::new(),
                (PromotionState::RolledBack, Some(r)) => format!("rolled back: {r}"),
                (PromotionState::RolledBack, None) => "rolled back".into(),
                (PromotionState::Cancelled, _) => "cancelled".into(),
                (PromotionState::Failed, Some(r)) => format!("failed: {r}"),
                (PromotionState::Failed, None) => "failed".into(),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromotionState {
    Running,
    Active,
    RolledBack,
    Cancelled,
    Failed,
}

impl PromotionState {
    pub fn as_str(self) -> &'static str {
        match self {
            PromotionState::Running => "running",
            PromotionState::Active => "active",
            PromotionState::RolledBack => "rolled-back",
            PromotionState::Cancelled => "cancelled",
            PromotionState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => PromotionState::Running,
            "active" => PromotionState::Active,
            "rolled-back" => PromotionState::RolledBack,
            "cancelled" => PromotionState::Cancelled,
            "failed" => PromotionState::Failed,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        self != PromotionState::Running
    }
}

impl fmt::Display for PromotionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rollout attempt of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub id: PromotionId,
    pub app: AppName,
    pub release: ReleaseId,
    pub previous_release: Option<ReleaseId>,
    pub actor: String,
    pub state: PromotionState,
    /// Why it ended as it did (rolled back, cancelled, failed).
    pub reason: Option<String>,
    /// The last lines of output of the process that failed, when one did.
    pub failed_output: Option<String>,
    pub deadline_ms: i64,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionEvent {
    pub promotion: PromotionId,
    pub seq: i64,
    pub at: Millis,
    /// The step in words (its `Display`), as people read it.
    pub message: String,
    /// The step as data.
    pub step: crate::step::Step,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionDetail {
    pub promotion: Promotion,
    pub events: Vec<PromotionEvent>,
}

/// What the engine publishes on its broadcast channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EngineEvent {
    /// A step of a promotion (`started process web.1`, `web.1 healthy`, ...).
    Promotion { app: AppName, event: PromotionEvent },
    /// A promotion ended.
    PromotionFinished { app: AppName, promotion: Promotion },
    /// A release was created.
    ReleaseCreated { app: AppName, release: ReleaseId },
    /// Something happened to the running processes outside a rollout (a crash, a restart).
    Process {
        app: AppName,
        /// The event in words.
        message: String,
        event: crate::step::ProcessEvent,
    },
}

impl EngineEvent {
    pub fn app(&self) -> &AppName {
        match self {
            EngineEvent::Promotion { app, .. }
            | EngineEvent::PromotionFinished { app, .. }
            | EngineEvent::ReleaseCreated { app, .. }
            | EngineEvent::Process { app, .. } => app,
        }
    }
}
