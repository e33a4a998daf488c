//! What happens during a rollout and to running processes, as data: the engine records and
//! publishes these, the Console, the CLI and the event stream render them with `Display`, and
//! tests assert on the variants rather than on English.
//!
//! Plain data (serde only): no tokio, no sqlx, so that it can be shared with the browser.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::ids::ReleaseId;
use crate::model::PromotionState;

/// A duration in words: `250 ms`, `1.5 s`, `10 min`.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else {
        format!("{} s", ms as f64 / 1000.0)
    }
}

/// One step of a promotion, in the order they happen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// The rollout began.
    Promoting {
        release: ReleaseId,
        actor: String,
        deadline_ms: u64,
        /// The release that keeps serving until the new processes are healthy.
        previous: Option<ReleaseId>,
    },
    /// The active release was still being brought back up after a start; this rollout
    /// replaces that restore.
    ReplacedRestore { release: ReleaseId },
    /// A process of the new release started.
    Started {
        process: String,
        pid: Option<u32>,
        port: Option<u16>,
    },
    /// A process passed its health check (or, without a port, stayed up long enough).
    Healthy { process: String, after_ms: u64 },
    /// Traffic goes to the new release, now recorded as active.
    Switched { release: ReleaseId },
    /// A cancel came after the switch: too late, the rollout completes.
    CancelTooLate { by: String },
    /// Requests to the old processes were still in flight when the drain timeout passed.
    DrainTimedOut,
    /// The old release's processes were stopped.
    StoppedOld {
        release: ReleaseId,
        processes: Vec<String>,
    },
    /// The rollout completed.
    Complete { release: ReleaseId },
    /// The rollout is being undone.
    Undoing { cancelled: bool, reason: String },
    /// The new release's processes were stopped.
    StoppedNew { processes: Vec<String> },
    /// How the rollout ended, and what serves now.
    Ended {
        state: PromotionState,
        active: Option<ReleaseId>,
    },
    /// The server stopped during the rollout, before it switched traffic.
    Interrupted,
    /// The server stopped after the rollout switched traffic, while the old processes drained.
    InterruptedAfterSwitch,
    /// A message recorded before steps were typed.
    Note { message: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Promoting {
                release,
                actor,
                deadline_ms,
                previous,
            } => {
                write!(
                    f,
                    "promoting {release} by {actor} (deadline {})",
                    human_ms(*deadline_ms)
                )?;
                if let Some(p) = previous {
                    write!(
                        f,
                        "; {p} keeps serving until the new processes are healthy"
                    )?;
                }
                Ok(())
            }
            Step::ReplacedRestore { release } => write!(
                f,
                "{release} was still being brought back up after a restart; this promotion replaces that"
            ),
            Step::Started { process, pid, port } => {
                write!(f, "started process {process}")?;
                match (pid, port) {
                    (Some(pid), Some(port)) => write!(f, " (pid {pid}, port {port})"),
                    (Some(pid), None) => write!(f, " (pid {pid})"),
                    (None, Some(port)) => write!(f, " (port {port})"),
                    (None, None) => Ok(()),
                }
            }
            Step::Healthy { process, after_ms } => {
                write!(f, "{process} healthy after {after_ms} ms")
            }
            Step::Switched { release } => {
                write!(f, "switched traffic to {release}; {release} is active")
            }
            Step::CancelTooLate { by } => write!(
                f,
                "{by} asked to cancel after traffic was switched; the rollout completes"
            ),
            Step::DrainTimedOut => f.write_str(
                "old processes still had requests in flight after the drain timeout",
            ),
            Step::StoppedOld { release, processes } => write!(
                f,
                "stopped old processes of {release} ({})",
                processes.join(", ")
            ),
            Step::Complete { release } => write!(f, "promotion complete: {release} is active"),
            Step::Undoing { cancelled, reason } => {
                let verb = if *cancelled {
                    "cancelling"
                } else {
                    "rolling back"
                };
                write!(f, "{verb}: {reason}")
            }
            Step::StoppedNew { processes } => {
                write!(f, "stopped new processes ({})", processes.join(", "))
            }
            Step::Ended { state, active } => match active {
                Some(r) => write!(f, "{state}: {r} is still active"),
                None => write!(f, "{state}: no release is active"),
            },
            Step::Interrupted => f.write_str(INTERRUPTED),
            Step::InterruptedAfterSwitch => f.write_str(
                "interrupted after the switch: the server stopped while the old processes drained; this release is active and is served again",
            ),
            Step::Note { message } => f.write_str(message),
        }
    }
}

/// Why a promotion found running at start-up ended.
pub const INTERRUPTED: &str = "interrupted: the server stopped during the rollout; the release that was active before it is served again";

/// Something that happened to an app's running processes outside a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProcessEvent {
    /// A process of the active release exited; it is restarted after `restart_in_ms`.
    Exited {
        process: String,
        status: String,
        restart_in_ms: u64,
    },
    /// A restarted process is healthy and back in the router.
    Restarted { process: String },
    /// A process could not be started again; another try follows.
    RestartFailed { process: String, error: String },
    /// A process failed its health checks in a row and gets no traffic.
    Unhealthy {
        process: String,
        failures: u32,
        error: String,
    },
    /// An unhealthy process passes its checks again and is back in the router.
    HealthyAgain { process: String },
    /// The active release is being brought back up after a start.
    Restoring { release: ReleaseId, attempt: u32 },
    /// The active release serves again after a start.
    Restored { release: ReleaseId },
    /// Bringing the active release back up failed; it is tried again after `retry_in_ms`.
    RestoreFailed {
        release: ReleaseId,
        reason: String,
        retry_in_ms: u64,
    },
}

impl fmt::Display for ProcessEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessEvent::Exited {
                process,
                status,
                restart_in_ms,
            } => write!(
                f,
                "{process} exited ({status}); restarting it in {}",
                human_ms(*restart_in_ms)
            ),
            ProcessEvent::Restarted { process } => write!(f, "{process} restarted and healthy"),
            ProcessEvent::RestartFailed { process, error } => {
                write!(f, "{process} could not be restarted: {error}")
            }
            ProcessEvent::Unhealthy {
                process,
                failures,
                error,
            } => write!(
                f,
                "{process} failed {failures} health checks in a row ({error}); it gets no traffic until it passes again"
            ),
            ProcessEvent::HealthyAgain { process } => {
                write!(f, "{process} is healthy again and back in the router")
            }
            ProcessEvent::Restoring { release, attempt } => {
                if *attempt <= 1 {
                    write!(f, "restoring {release} after a start")
                } else {
                    write!(f, "restoring {release} (attempt {attempt})")
                }
            }
            ProcessEvent::Restored { release } => write!(f, "restored {release}: serving again"),
            ProcessEvent::RestoreFailed {
                release,
                reason,
                retry_in_ms,
            } => write!(
                f,
                "could not restore {release}: {reason}; trying again in {}",
                human_ms(*retry_in_ms)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_as_before() {
        let r = ReleaseId::parse("RABCDEFGHJK").unwrap();
        let s = Step::Started {
            process: "web.1".into(),
            pid: Some(42),
            port: Some(8000),
        };
        assert_eq!(s.to_string(), "started process web.1 (pid 42, port 8000)");
        assert_eq!(
            Step::Ended {
                state: PromotionState::RolledBack,
                active: Some(r.clone())
            }
            .to_string(),
            format!("rolled-back: {r} is still active")
        );
        assert_eq!(human_ms(600_000), "10 min");
        assert_eq!(human_ms(1500), "1.5 s");
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Step>(&json).ok(), Some(s));
    }
}
