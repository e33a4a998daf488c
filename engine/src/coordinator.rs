//! One coordinator per app: a task with a mailbox that owns the app's running sets and its
//! traffic, and serialises everything that changes them — the restore after a start, promote,
//! cancel, what the runtime says about running instances (crashes, restarts, failed health
//! checks), shutdown. No other path starts, switches or retires an app's processes.
//!
//! A rollout, as steps (each written to the promotion's log as a typed [`Step`]):
//! launch the new set and wait until every instance is ready (bounded by the deadline,
//! cancellable) → record the release as active → switch traffic → drain and retire the old
//! set. If the launch fails, passes its deadline or is cancelled, or the store cannot record
//! the switch, the undo runs: the new set is retired and the old one keeps serving.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::engine::Inner;
use crate::error::{Error, Result};
use crate::ids::{PromotionId, ReleaseId};
use crate::manifest::Manifest;
use crate::model::*;
use crate::names::AppName;
use crate::runtime::{InstanceState, RunningSet, ServiceSpec, SetId, SetSpec};
use crate::step::{human_ms, ProcessEvent, Step};
use crate::traffic::Endpoint;

/// How long new processes of a failed or cancelled rollout get to stop.
const UNDO_GRACE: Duration = Duration::from_secs(5);

pub(crate) enum Command {
    /// Roll out `release`; the promotion is already recorded as running.
    Promote {
        promotion: Box<Promotion>,
        release: Box<Release>,
        deadline: Duration,
    },
    /// Cancel the running rollout if it is `promotion`; answers a receiver that turns true
    /// when the rollout has ended, or `None` if that promotion does not run here.
    Cancel {
        promotion: PromotionId,
        by: String,
        reply: oneshot::Sender<Option<watch::Receiver<bool>>>,
    },
    /// The promotion running now, if any.
    Running {
        reply: oneshot::Sender<Option<PromotionId>>,
    },
    /// The output of the active set's instances.
    Output {
        lines: usize,
        reply: oneshot::Sender<Vec<(String, String)>>,
    },
    /// Record the end of a promotion that could not be recorded before, now; answers
    /// whether the store is clean (no promotion is left marked running by this app).
    Settle { reply: oneshot::Sender<Result<()>> },
    /// Stop everything: cancel a rollout (and wait for its undo), retire the active set.
    Shutdown { reply: oneshot::Sender<()> },
}

/// A handle to an app's coordinator.
#[derive(Clone)]
pub(crate) struct Handle {
    tx: mpsc::UnboundedSender<Command>,
    /// True once the first attempt to bring the active release back up has ended.
    restored: watch::Receiver<bool>,
}

impl Handle {
    pub fn send(&self, command: Command) -> Result<()> {
        self.tx
            .send(command)
            .map_err(|_| Error::Conflict("the server is shutting down".into()))
    }

    /// Sends a command that answers and waits for the answer.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await
            .map_err(|_| Error::Conflict("the server is shutting down".into()))
    }

    pub async fn wait_restored(&self) {
        let mut rx = self.restored.clone();
        let _ = rx.wait_for(|done| *done).await;
    }
}

/// Starts the coordinator of an app that has nothing running.
pub(crate) fn spawn(inner: &Arc<Inner>, app: AppName) -> Handle {
    spawn_with(inner, app, None, None)
}

/// Starts the coordinator of `app`. `restore` is the app's active release at start-up, to
/// bring back up unless `adopted` is a set of it that the runtime found still running.
pub(crate) fn spawn_with(
    inner: &Arc<Inner>,
    app: AppName,
    restore: Option<ReleaseId>,
    adopted: Option<Box<dyn RunningSet>>,
) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let restore = if adopted.is_some() { None } else { restore };
    let (restored_tx, restored_rx) = watch::channel(restore.is_none());
    let mut c = Coordinator {
        app,
        inner: inner.clone(),
        mailbox: rx,
        active: None,
        active_quiet: false,
        launch: None,
        rollout: None,
        queued: None,
        restore: Restore {
            release: None,
            attempt: 0,
            backoff: Backoff::default(),
            retry_at: None,
            first_done: restored_tx,
        },
        retiring: JoinSet::new(),
        unrecorded: None,
        shutdown: None,
    };
    if let Some(set) = adopted {
        // Its instances say they are ready as the runtime sees them; each gets traffic then.
        set.keep_running(true);
        let _ = c.inner.traffic.switch(&c.app, set.id(), Vec::new());
        c.active = Some(set);
    } else if let Some(release) = restore {
        c.inner.traffic.starting(&c.app);
        c.restore.want(release);
    }
    inner.tasks.spawn(async move { c.run().await });
    Handle {
        tx,
        restored: restored_rx,
    }
}

/// Why a launch did not end with every instance ready.
#[derive(Debug)]
enum Failure {
    /// An instance could not be started, exited, or was not healthy in time.
    Process {
        reason: String,
        output: Option<String>,
    },
    Deadline(Duration),
    Cancelled(String),
    /// The engine itself failed (store, source).
    Engine(Error),
}

impl Failure {
    fn state_and_reason(&self) -> (PromotionState, String) {
        match self {
            Failure::Process { reason, .. } => (PromotionState::RolledBack, reason.clone()),
            Failure::Deadline(d) => (
                PromotionState::RolledBack,
                format!(
                    "the rollout passed its deadline of {}",
                    human_ms(d.as_millis() as u64)
                ),
            ),
            Failure::Cancelled(by) => (PromotionState::Cancelled, format!("cancelled by {by}")),
            Failure::Engine(e) => (PromotionState::Failed, e.to_string()),
        }
    }
}

/// What a launch is for.
#[derive(Clone)]
enum Purpose {
    Rollout(PromotionId),
    Restore(ReleaseId),
}

struct Launched {
    purpose: Purpose,
    set: Option<Box<dyn RunningSet>>,
    outcome: std::result::Result<Vec<Endpoint>, Failure>,
}

struct Launch {
    purpose: Purpose,
    cancel: CancellationToken,
    task: JoinHandle<Launched>,
}

/// The rollout in progress.
struct Rollout {
    promotion: Promotion,
    cancelled_by: Option<String>,
    /// Traffic was switched: it completes whatever happens now.
    switched: bool,
    done: watch::Sender<bool>,
}

struct Restore {
    /// The release to bring back up, until it serves.
    release: Option<ReleaseId>,
    attempt: u32,
    backoff: Backoff,
    retry_at: Option<Instant>,
    first_done: watch::Sender<bool>,
}

impl Restore {
    /// `release` should serve but does not: bring it up now, then again with backoff.
    fn want(&mut self, release: ReleaseId) {
        self.release = Some(release);
        self.attempt = 0;
        self.backoff.reset();
        self.retry_at = Some(Instant::now());
    }

    /// What was wanted serves (restored, or replaced by a promotion's switch).
    fn serving(&mut self) {
        self.release = None;
        self.attempt = 0;
        self.backoff.reset();
        self.retry_at = None;
    }
}

/// The end of a promotion the store would not take yet.
struct Unrecorded {
    promotion: Promotion,
    retry_at: Instant,
    backoff: Backoff,
}

enum Retired {
    /// The old set after a switch.
    Old {
        promotion: PromotionId,
        release: ReleaseId,
        names: Vec<String>,
        drained: bool,
    },
    /// A failed or cancelled rollout's new set.
    New {
        promotion: PromotionId,
        names: Vec<String>,
        failure: Failure,
    },
    /// Anything else (a failed restore, the active set at shutdown).
    Other,
}

struct Coordinator {
    app: AppName,
    inner: Arc<Inner>,
    mailbox: mpsc::UnboundedReceiver<Command>,
    active: Option<Box<dyn RunningSet>>,
    /// The active set said it has nothing more to say.
    active_quiet: bool,
    launch: Option<Launch>,
    rollout: Option<Rollout>,
    /// A promote that waits for a restore's launch to give way.
    queued: Option<(PromotionId, Release, Duration)>,
    restore: Restore,
    retiring: JoinSet<Retired>,
    unrecorded: Option<Unrecorded>,
    shutdown: Option<Vec<oneshot::Sender<()>>>,
}

async fn maybe<F: Future + Unpin>(f: Option<&mut F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn at(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Coordinator {
    async fn run(mut self) {
        loop {
            if self.try_finish_shutdown().await {
                return;
            }
            let restore_at = if self.launch.is_none() && self.shutdown.is_none() {
                self.restore.release.as_ref().and(self.restore.retry_at)
            } else {
                None
            };
            let record_at = self.unrecorded.as_ref().map(|u| u.retry_at);
            let active = if self.active_quiet {
                None
            } else {
                self.active.as_mut()
            };
            let launch = self.launch.as_mut().map(|l| &mut l.task);
            tokio::select! {
                command = self.mailbox.recv() => match command {
                    Some(c) => self.command(c).await,
                    None => self.begin_shutdown(None),
                },
                launched = maybe(launch) => {
                    let purpose = self.launch.take().map(|l| l.purpose);
                    match (launched, purpose) {
                        (Ok(launched), _) => self.launched(launched).await,
                        (Err(e), Some(purpose)) => {
                            tracing::error!(app = %self.app, error = %e, "a launch ended abnormally");
                            self.launched(Launched {
                                purpose,
                                set: None,
                                outcome: Err(Failure::Engine(Error::Internal(format!("the launch ended abnormally: {e}")))),
                            }).await;
                        }
                        (Err(_), None) => {}
                    }
                }
                event = async { match active { Some(s) => s.next_event().await, None => std::future::pending().await } } => {
                    match event {
                        Some(e) => self.active_event(e),
                        None => self.active_quiet = true,
                    }
                }
                Some(retired) = self.retiring.join_next(), if !self.retiring.is_empty() => {
                    match retired {
                        Ok(r) => self.retired(r).await,
                        Err(e) => tracing::error!(app = %self.app, error = %e, "retiring a set ended abnormally"),
                    }
                }
                _ = at(restore_at) => self.start_restore(),
                _ = at(record_at) => { let _ = self.record_unrecorded().await; }
            }
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Promote {
                promotion,
                release,
                deadline,
            } => self.promote(*promotion, *release, deadline).await,
            Command::Cancel {
                promotion,
                by,
                reply,
            } => {
                let too_late = self
                    .rollout
                    .as_ref()
                    .is_some_and(|r| r.switched && r.promotion.id == promotion);
                if too_late {
                    self.step(&promotion, Step::CancelTooLate { by: by.clone() })
                        .await;
                }
                let answer = self.cancel(&promotion, by);
                let _ = reply.send(answer);
            }
            Command::Running { reply } => {
                let _ = reply.send(self.rollout.as_ref().map(|r| r.promotion.id.clone()));
            }
            Command::Output { lines, reply } => {
                let _ = reply.send(
                    self.active
                        .as_ref()
                        .map(|a| a.logs(lines))
                        .unwrap_or_default(),
                );
            }
            Command::Settle { reply } => {
                let r = if self.unrecorded.is_some() {
                    self.record_unrecorded().await
                } else {
                    Ok(())
                };
                let _ = reply.send(r);
            }
            Command::Shutdown { reply } => self.begin_shutdown(Some(reply)),
        }
    }

    // ---- rollouts ----

    async fn promote(&mut self, promotion: Promotion, release: Release, deadline: Duration) {
        if self.rollout.is_some() {
            // The store allows one running promotion per app until a rollout has ended, so
            // this only happens if the database was changed behind the engine's back.
            let why = "another rollout of this app was still running";
            tracing::error!(promotion = %promotion.id, "{why}");
            let _ = self
                .inner
                .store
                .finish_promotion(&promotion.id, PromotionState::Failed, Some(why), None)
                .await;
            return;
        }
        let (done, _) = watch::channel(false);
        self.rollout = Some(Rollout {
            promotion: promotion.clone(),
            cancelled_by: None,
            switched: false,
            done,
        });
        // The previous release keeps serving only if something serves it.
        let previous = self.active.as_ref().and(promotion.previous_release.clone());
        let step = Step::Promoting {
            release: release.id.clone(),
            actor: promotion.actor.clone(),
            deadline_ms: deadline.as_millis() as u64,
            previous,
        };
        self.step(&promotion.id, step).await;
        if self.shutdown.is_some() {
            self.cancel(&promotion.id, "the server shutting down".into());
            return self.undo_now(Failure::Cancelled("the server shutting down".into()));
        }
        // A restore still under way (launching, or waiting to try again) gives way.
        if let Some(r) = self
            .restore
            .release
            .clone()
            .filter(|_| self.active.is_none())
        {
            self.step(&promotion.id, Step::ReplacedRestore { release: r })
                .await;
        }
        match &self.launch {
            Some(l) => {
                // Only a restore's launch can be under way here; the rollout starts once its
                // processes are stopped.
                l.cancel.cancel();
                self.queued = Some((promotion.id, release, deadline));
            }
            None => self.start_launch(
                Purpose::Rollout(promotion.id.clone()),
                Some(release),
                deadline,
            ),
        }
    }

    /// Ends a rollout that never launched (the server is shutting down).
    fn undo_now(&mut self, failure: Failure) {
        let id = match &self.rollout {
            Some(r) => r.promotion.id.clone(),
            None => return,
        };
        self.retiring.spawn(async move {
            Retired::New {
                promotion: id,
                names: Vec::new(),
                failure,
            }
        });
    }

    fn cancel(&mut self, promotion: &PromotionId, by: String) -> Option<watch::Receiver<bool>> {
        let rollout = self.rollout.as_mut()?;
        if &rollout.promotion.id != promotion {
            return None;
        }
        if !rollout.switched {
            rollout.cancelled_by.get_or_insert(by);
            if let Some(l) = &self.launch {
                if matches!(&l.purpose, Purpose::Rollout(p) if p == promotion) {
                    l.cancel.cancel();
                }
            }
        }
        Some(rollout.done.subscribe())
    }

    /// Starts launching a set: of `release` for a rollout, of the stored release for a
    /// restore (`None`: read when the launch begins).
    fn start_launch(&mut self, purpose: Purpose, release: Option<Release>, deadline: Duration) {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(launch(
            self.inner.clone(),
            self.app.clone(),
            purpose.clone(),
            release,
            deadline,
            cancel.clone(),
        ));
        self.launch = Some(Launch {
            purpose,
            cancel,
            task,
        });
    }

    async fn launched(&mut self, launched: Launched) {
        match launched.purpose.clone() {
            Purpose::Restore(release) => self.restore_launched(release, launched).await,
            Purpose::Rollout(id) => {
                let outcome = launched.outcome.map_err(|f| match f {
                    Failure::Cancelled(_) => Failure::Cancelled(
                        self.rollout
                            .as_ref()
                            .and_then(|r| r.cancelled_by.clone())
                            .unwrap_or_else(|| "a user".into()),
                    ),
                    f => f,
                });
                match (launched.set, outcome) {
                    (Some(set), Ok(endpoints)) => {
                        if let Err((set, e)) = self.switch(&id, set, endpoints).await {
                            self.undo(&id, Some(set), e).await;
                        }
                    }
                    (set, Err(failure)) => self.undo(&id, set, failure).await,
                    (None, Ok(_)) => {
                        let failure = Failure::Engine(Error::Internal("no set was started".into()));
                        self.undo(&id, None, failure).await
                    }
                }
            }
        }
    }

    /// Every new instance is ready: record the release as active, switch traffic, then drain
    /// and retire the old set. If it cannot, the new set comes back with why.
    async fn switch(
        &mut self,
        id: &PromotionId,
        new: Box<dyn RunningSet>,
        endpoints: Vec<Endpoint>,
    ) -> std::result::Result<(), (Box<dyn RunningSet>, Failure)> {
        let Some(rollout) = self.rollout.as_mut() else {
            return Err((
                new,
                Failure::Engine(Error::Internal("no rollout to switch".into())),
            ));
        };
        if let Some(by) = rollout.cancelled_by.clone() {
            // Cancelled after the last instance became ready: the cancel wins.
            return Err((new, Failure::Cancelled(by)));
        }
        if let Err(e) = self.inner.store.activate(id).await {
            return Err((new, Failure::Engine(e)));
        }
        rollout.switched = true;
        let release = rollout.promotion.release.clone();
        new.keep_running(true);
        let drain = self.inner.traffic.switch(&self.app, new.id(), endpoints);
        let old = self.active.replace(new);
        self.active_quiet = false;
        self.restore.serving();
        self.inner.changed();
        self.step(
            id,
            Step::Switched {
                release: release.clone(),
            },
        )
        .await;
        match old {
            Some(old) => {
                old.keep_running(false);
                let (drain_timeout, grace) = (
                    self.inner.config.drain_timeout,
                    self.inner.config.stop_grace,
                );
                let promotion = id.clone();
                self.retiring.spawn(async move {
                    let drained = drain.wait(drain_timeout).await;
                    let names = old.instances();
                    let release = old.release().clone();
                    old.retire(grace).await;
                    Retired::Old {
                        promotion,
                        release,
                        names,
                        drained,
                    }
                });
            }
            None => self.complete(id).await,
        }
        Ok(())
    }

    /// The old set is gone (or there was none): the rollout ends with its release active.
    async fn complete(&mut self, id: &PromotionId) {
        let Some(r) = self.rollout.as_mut() else {
            return;
        };
        r.promotion.state = PromotionState::Active;
        r.promotion.reason = None;
        r.promotion.failed_output = None;
        let release = r.promotion.release.clone();
        self.step(id, Step::Complete { release }).await;
        self.end_rollout().await;
    }

    /// Undoes a rollout: retires its new set (if any), then records how it ended.
    async fn undo(&mut self, id: &PromotionId, set: Option<Box<dyn RunningSet>>, failure: Failure) {
        let (state, reason) = failure.state_and_reason();
        self.step(
            id,
            Step::Undoing {
                cancelled: state == PromotionState::Cancelled,
                reason,
            },
        )
        .await;
        let promotion = id.clone();
        self.retiring.spawn(async move {
            let names = match set {
                Some(set) => {
                    let names = set.instances();
                    set.retire(UNDO_GRACE).await;
                    names
                }
                None => Vec::new(),
            };
            Retired::New {
                promotion,
                names,
                failure,
            }
        });
    }

    async fn retired(&mut self, retired: Retired) {
        match retired {
            Retired::Old {
                promotion,
                release,
                names,
                drained,
            } => {
                if !drained {
                    self.step(&promotion, Step::DrainTimedOut).await;
                }
                self.step(
                    &promotion,
                    Step::StoppedOld {
                        release,
                        processes: names,
                    },
                )
                .await;
                self.complete(&promotion).await;
            }
            Retired::New {
                promotion,
                names,
                failure,
            } => {
                if !names.is_empty() {
                    self.step(&promotion, Step::StoppedNew { processes: names })
                        .await;
                }
                let (state, reason) = failure.state_and_reason();
                let active = self
                    .active
                    .as_ref()
                    .map(|a| a.release().clone())
                    .or_else(|| {
                        self.rollout
                            .as_ref()
                            .and_then(|r| r.promotion.previous_release.clone())
                    });
                self.step(
                    &promotion,
                    Step::Ended {
                        state,
                        active: active.clone(),
                    },
                )
                .await;
                let output = match &failure {
                    Failure::Process { output, .. } => output.clone(),
                    _ => None,
                };
                if let Some(r) = self.rollout.as_mut() {
                    r.promotion.state = state;
                    r.promotion.reason = Some(reason);
                    r.promotion.failed_output = output;
                }
                self.end_rollout().await;
                // Nothing serves, but a release is active: bring it back up.
                if self.active.is_none() && self.shutdown.is_none() {
                    if let Some(a) = active {
                        self.restore.want(a);
                    }
                }
            }
            Retired::Other => {}
        }
        self.start_queued();
    }

    /// Starts the promote that waited for a restore to give way, once nothing else launches.
    fn start_queued(&mut self) {
        if self.launch.is_some() {
            return;
        }
        if let Some((promotion, release, deadline)) = self.queued.take() {
            self.start_launch(Purpose::Rollout(promotion), Some(release), deadline);
        }
    }

    /// Records how the rollout ended (as `rollout.promotion` says), tells whoever waits, and
    /// forgets it. If the store will not take the end, it is kept and tried again (and before
    /// any later promote).
    async fn end_rollout(&mut self) {
        let Some(rollout) = self.rollout.take() else {
            return;
        };
        let mut promotion = rollout.promotion;
        let recorded = self
            .inner
            .store
            .finish_promotion(
                &promotion.id,
                promotion.state,
                promotion.reason.as_deref(),
                promotion.failed_output.as_deref(),
            )
            .await;
        if let Err(e) = recorded {
            tracing::error!(promotion = %promotion.id, error = %e, "could not record the end of a promotion; trying again");
            let mut backoff = Backoff::default();
            self.unrecorded = Some(Unrecorded {
                promotion: promotion.clone(),
                retry_at: Instant::now() + backoff.take(),
                backoff,
            });
        }
        match self.inner.store.promotion(&promotion.id).await {
            Ok(p) if self.unrecorded.is_none() => promotion = p,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(promotion = %promotion.id, error = %e, "could not read the promotion")
            }
        }
        self.inner.publish(EngineEvent::PromotionFinished {
            app: self.app.clone(),
            promotion,
        });
        let _ = rollout.done.send(true);
    }

    /// Tries again to record the end of a promotion.
    async fn record_unrecorded(&mut self) -> Result<()> {
        let Some(u) = self.unrecorded.as_mut() else {
            return Ok(());
        };
        let p = &u.promotion;
        match self
            .inner
            .store
            .finish_promotion(
                &p.id,
                p.state,
                p.reason.as_deref(),
                p.failed_output.as_deref(),
            )
            .await
        {
            Ok(()) => {
                tracing::info!(promotion = %p.id, "recorded the end of the promotion");
                self.unrecorded = None;
                self.inner.changed();
                Ok(())
            }
            Err(e) => {
                u.retry_at = Instant::now() + u.backoff.take();
                Err(Error::Internal(format!(
                    "promotion {} ended ({}) but that could not be recorded yet: {e}",
                    p.id, p.state
                )))
            }
        }
    }

    // ---- restore ----

    fn start_restore(&mut self) {
        self.restore.retry_at = None;
        let Some(release_id) = self.restore.release.clone() else {
            return;
        };
        if self.launch.is_some() || self.rollout.is_some() || self.active.is_some() {
            return;
        }
        self.restore.attempt += 1;
        self.inner.traffic.starting(&self.app);
        self.tell(ProcessEvent::Restoring {
            release: release_id.clone(),
            attempt: self.restore.attempt,
        });
        let deadline = self.inner.config.default_deadline;
        self.start_launch(Purpose::Restore(release_id), None, deadline);
    }

    async fn restore_launched(&mut self, release: ReleaseId, launched: Launched) {
        let _ = self.restore.first_done.send(true);
        match (launched.set, launched.outcome) {
            (Some(set), Ok(endpoints)) if self.rollout.is_none() && self.shutdown.is_none() => {
                set.keep_running(true);
                // Nothing served before: nothing to drain.
                let _ = self.inner.traffic.switch(&self.app, set.id(), endpoints);
                self.active = Some(set);
                self.active_quiet = false;
                self.restore.serving();
                self.inner.changed();
                self.tell(ProcessEvent::Restored { release });
            }
            (set, outcome) => {
                if let Some(set) = set {
                    self.retiring.spawn(async move {
                        set.retire(UNDO_GRACE).await;
                        Retired::Other
                    });
                }
                match outcome {
                    // Replaced by a promotion, or the server is shutting down.
                    Ok(_) | Err(Failure::Cancelled(_)) => {}
                    Err(failure) => {
                        let (_, reason) = failure.state_and_reason();
                        let wait = self.restore.backoff.take();
                        self.restore.retry_at = Some(Instant::now() + wait);
                        self.tell(ProcessEvent::RestoreFailed {
                            release,
                            reason,
                            retry_in_ms: wait.as_millis() as u64,
                        });
                    }
                }
                if self.retiring.is_empty() {
                    self.start_queued();
                }
            }
        }
    }

    // ---- the active set ----

    fn active_event(&mut self, event: crate::runtime::SetEvent) {
        let Some(set) = self.active.as_ref() else {
            return;
        };
        let set_id: SetId = set.id().clone();
        match event.state {
            InstanceState::Ready {
                addr, event: said, ..
            } => {
                if let Some(addr) = addr {
                    self.inner.traffic.ready(
                        &self.app,
                        &set_id,
                        Endpoint {
                            service: event.service.clone(),
                            instance: event.instance.clone(),
                            addr,
                        },
                    );
                }
                if let Some(e) = said {
                    self.tell(e);
                }
            }
            InstanceState::Down { event: said } => {
                self.inner
                    .traffic
                    .down(&self.app, &set_id, &event.service, &event.instance);
                self.tell(said);
            }
            InstanceState::Failed { reason, .. } => {
                self.inner
                    .traffic
                    .down(&self.app, &set_id, &event.service, &event.instance);
                self.tell(ProcessEvent::RestartFailed {
                    process: event.instance,
                    error: reason,
                });
            }
            InstanceState::Note { event: said } => self.tell(said),
            InstanceState::Started { .. } => {}
        }
    }

    // ---- shutdown ----

    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>) {
        let replies = self.shutdown.get_or_insert_with(Vec::new);
        replies.extend(reply);
        if let Some(r) = &self.rollout {
            let id = r.promotion.id.clone();
            self.cancel(&id, "the server shutting down".into());
        }
        if let Some(l) = &self.launch {
            l.cancel.cancel();
        }
        // A promote waiting for a restore to give way never starts.
        if self.queued.take().is_some() {
            self.undo_now(Failure::Cancelled("the server shutting down".into()));
        }
    }

    /// Once shutting down and nothing is in progress: retires the active set and ends.
    async fn try_finish_shutdown(&mut self) -> bool {
        if self.shutdown.is_none()
            || self.rollout.is_some()
            || self.launch.is_some()
            || !self.retiring.is_empty()
        {
            return false;
        }
        let _ = self.inner.traffic.clear(&self.app);
        if let Some(set) = self.active.take() {
            set.retire(self.inner.config.stop_grace).await;
        }
        let _ = self.restore.first_done.send(true);
        for reply in self.shutdown.take().unwrap_or_default() {
            let _ = reply.send(());
        }
        true
    }

    // ---- telling ----

    /// Writes a step to the promotion's log and publishes it.
    async fn step(&self, id: &PromotionId, step: Step) {
        record_step(&self.inner, &self.app, id, step).await;
    }

    /// Publishes something that happened to the running processes.
    fn tell(&self, event: ProcessEvent) {
        tracing::info!(app = %self.app, "{event}");
        self.inner.publish(EngineEvent::Process {
            app: self.app.clone(),
            message: event.to_string(),
            event,
        });
    }
}

/// Starts `release`'s set and waits until every instance is ready — within `deadline`,
/// unless `cancel` fires first. The set (if one started) always comes back, so that the
/// caller can retire it.
async fn launch(
    inner: Arc<Inner>,
    app: AppName,
    purpose: Purpose,
    release: Option<Release>,
    deadline: Duration,
    cancel: CancellationToken,
) -> Launched {
    let give_up = Instant::now() + deadline;
    let mut set: Option<Box<dyn RunningSet>> = None;
    let outcome = tokio::select! {
        r = start_and_wait(&inner, &app, &purpose, release, &mut set) => r,
        _ = tokio::time::sleep_until(give_up) => Err(Failure::Deadline(deadline)),
        _ = cancel.cancelled() => Err(Failure::Cancelled(String::new())),
    };
    Launched {
        purpose,
        set,
        outcome,
    }
}

async fn start_and_wait(
    inner: &Arc<Inner>,
    app: &AppName,
    purpose: &Purpose,
    release: Option<Release>,
    out: &mut Option<Box<dyn RunningSet>>,
) -> std::result::Result<Vec<Endpoint>, Failure> {
    let release = match (release, purpose) {
        (Some(r), _) => r,
        (None, Purpose::Restore(id)) => inner
            .store
            .release(app, id)
            .await
            .map_err(Failure::Engine)?,
        (None, Purpose::Rollout(_)) => {
            return Err(Failure::Engine(Error::Internal(
                "a rollout without its release".into(),
            )))
        }
    };
    let spec = set_spec(inner, &release).await.map_err(Failure::Engine)?;
    let set = inner
        .runtime
        .start(spec)
        .await
        .map_err(|e| Failure::Process {
            reason: e.to_string(),
            output: None,
        })?;
    let set = out.insert(set);
    let mut waiting: std::collections::BTreeSet<String> = set.instances().into_iter().collect();
    let mut endpoints = Vec::new();
    while !waiting.is_empty() {
        let Some(event) = set.next_event().await else {
            return Err(Failure::Engine(Error::Internal(
                "the runtime stopped reporting on the new processes".into(),
            )));
        };
        let step = match event.state {
            InstanceState::Started { pid, addr } => Some(Step::Started {
                process: event.instance.clone(),
                pid,
                port: addr.map(|a| a.port()),
            }),
            InstanceState::Ready { addr, after, .. } => {
                if waiting.remove(&event.instance) {
                    if let Some(addr) = addr {
                        endpoints.push(Endpoint {
                            service: event.service.clone(),
                            instance: event.instance.clone(),
                            addr,
                        });
                    }
                    Some(Step::Healthy {
                        process: event.instance.clone(),
                        after_ms: after.as_millis() as u64,
                    })
                } else {
                    None
                }
            }
            InstanceState::Failed { reason, output } => {
                return Err(Failure::Process { reason, output })
            }
            InstanceState::Down { event } => {
                return Err(Failure::Process {
                    reason: event.to_string(),
                    output: None,
                })
            }
            InstanceState::Note { .. } => None,
        };
        if let (Some(step), Purpose::Rollout(id)) = (step, purpose) {
            record_step(inner, app, id, step).await;
        }
    }
    Ok(endpoints)
}

/// Writes a step to promotion `id`'s log and publishes it; a step the store would not take is
/// still published, so that whoever watches sees it.
async fn record_step(inner: &Inner, app: &AppName, id: &PromotionId, step: Step) {
    let event = match inner.store.add_event(id, &step).await {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(promotion = %id, error = %e, "could not record a step: {step}");
            PromotionEvent {
                promotion: id.clone(),
                seq: 0,
                at: now_ms(),
                message: step.to_string(),
                step,
            }
        }
    };
    inner.publish(EngineEvent::Promotion {
        app: app.clone(),
        event,
    });
}

/// What the runtime needs to run `release`: its build's manifest, its unpacked source, its
/// environment.
async fn set_spec(inner: &Inner, release: &Release) -> Result<SetSpec> {
    let build_id = release
        .build
        .as_ref()
        .ok_or_else(|| Error::invalid("release", format!("{} has no build", release.id)))?;
    let build = inner.store.build(&release.app, build_id).await?;
    let manifest = Manifest::parse(&build.manifest)?;
    let app_number = inner.store.app_id(&release.app).await?;
    let tenant = crate::sandbox::Tenant {
        app: release.app.clone(),
        number: app_number,
    };
    let source = inner
        .artifacts
        .ensure_source(&tenant, &build.artifact, &manifest)
        .await?;
    Ok(SetSpec {
        id: SetId::generate(&release.id),
        app: release.app.clone(),
        app_number,
        release: release.id.clone(),
        artifact: build.artifact.clone(),
        source,
        env: release
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_owned()))
            .collect(),
        services: manifest
            .services
            .iter()
            .map(|s| ServiceSpec {
                name: s.name.clone(),
                command: s.command.clone(),
                scale: s.scale,
                http: s.port.is_some(),
                health: s.health.clone(),
            })
            .collect(),
    })
}
