//! A promotion as explicit steps: start the new processes (surge), wait until each is healthy,
//! switch the router, drain and stop the old ones. If a step fails, the deadline passes or
//! the rollout is cancelled, the undo runs: the new processes stop and the old keep serving.
//! Every step is written to the promotion's event log and published live.

use futures::future::join_all;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::{Inner, RolloutHandle};
use crate::error::{Error, Result};
use crate::health::{check_http, wait_until_healthy, Unhealthy, WORKER_MIN_READY};
use crate::manifest::{HealthCheck, Manifest};
use crate::model::*;
use crate::names::AppName;
use crate::router::{drain, Backend};
use crate::runtime::{local, Process, ProcessSpec};

/// Lines of a failed process's output kept with the promotion.
const FAILED_OUTPUT_LINES: usize = 30;

/// The processes serving an app's active release, watched by a supervisor that restarts
/// any that exits.
pub(crate) struct ActiveSet {
    pub release: crate::ids::ReleaseId,
    slots: Vec<Arc<Mutex<Arc<dyn Process>>>>,
    supervisor: CancellationToken,
}

impl ActiveSet {
    fn processes(&self) -> Vec<Arc<dyn Process>> {
        self.slots
            .iter()
            .filter_map(|s| s.lock().ok().map(|p| p.clone()))
            .collect()
    }

    pub fn output(&self, lines: usize) -> Vec<(String, String)> {
        self.processes()
            .iter()
            .map(|p| (p.name().to_owned(), p.output_tail(lines)))
            .collect()
    }
}

/// Why a rollout did not complete.
enum Failure {
    /// Rolled back: a process failed to start, exited, or was not healthy in time.
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
                format!("the rollout passed its deadline of {}", human_duration(*d)),
            ),
            Failure::Cancelled(by) => (PromotionState::Cancelled, format!("cancelled by {by}")),
            Failure::Engine(e) => (PromotionState::Failed, e.to_string()),
        }
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if s.is_multiple_of(60) && s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// Where a step is written: a promotion's log, or (outside a rollout) the app's live feed.
#[derive(Clone)]
enum Log {
    Promotion(AppName, crate::ids::PromotionId),
    App(AppName),
}

impl Log {
    async fn say(&self, inner: &Inner, message: impl Into<String>) {
        let message = message.into();
        match self {
            Log::Promotion(app, id) => match inner.store.add_event(id, &message).await {
                Ok(event) => inner.publish(EngineEvent::Promotion {
                    app: app.clone(),
                    event,
                }),
                Err(e) => tracing::error!(promotion = %id, error = %e, "could not record an event"),
            },
            Log::App(app) => {
                tracing::info!(app = %app, "{message}");
                inner.publish(EngineEvent::Process {
                    app: app.clone(),
                    message,
                });
            }
        }
    }
}

pub(crate) fn spawn(
    inner: &Arc<Inner>,
    promotion: Promotion,
    release: Release,
    deadline: Duration,
) {
    let (done_tx, done_rx) = watch::channel(false);
    let handle = Arc::new(RolloutHandle {
        promotion: promotion.id.clone(),
        cancel: CancellationToken::new(),
        cancelled_by: Mutex::new(None),
        done: done_rx,
    });
    inner.with_app(&promotion.app, |rt| rt.rollout = Some(handle.clone()));
    let inner = inner.clone();
    let tasks = inner.tasks.clone();
    tasks.spawn(async move {
        run(&inner, &promotion, release, deadline, &handle).await;
        inner.with_app(&promotion.app, |rt| {
            if rt.rollout.as_ref().is_some_and(|h| h.promotion == promotion.id) {
                rt.rollout = None;
            }
        });
        match inner.store.promotion(&promotion.id).await {
            Ok(p) => inner.publish(EngineEvent::PromotionFinished {
                app: promotion.app.clone(),
                promotion: p,
            }),
            Err(e) => tracing::error!(promotion = %promotion.id, error = %e, "could not read the promotion"),
        }
        let _ = done_tx.send(true);
    });
}

async fn run(
    inner: &Arc<Inner>,
    promotion: &Promotion,
    release: Release,
    deadline: Duration,
    handle: &RolloutHandle,
) {
    let app = promotion.app.clone();
    let log = Log::Promotion(app.clone(), promotion.id.clone());
    log.say(
        inner,
        format!(
            "promoting {} by {} (deadline {}){}",
            release.id,
            promotion.actor,
            human_duration(deadline),
            promotion
                .previous_release
                .as_ref()
                .map(|p| format!("; {p} keeps serving until the new processes are healthy"))
                .unwrap_or_default()
        ),
    )
    .await;
    let started: Arc<Mutex<Vec<Arc<dyn Process>>>> = Arc::default();
    let result = tokio::select! {
        r = launch(inner, &release, &log, started.clone()) => r,
        _ = tokio::time::sleep(deadline) => Err(Failure::Deadline(deadline)),
        _ = handle.cancel.cancelled() => {
            let by = handle.cancelled_by.lock().ok().and_then(|b| b.clone()).unwrap_or_else(|| "a user".into());
            Err(Failure::Cancelled(by))
        }
    };
    match result {
        Ok((processes, manifest)) => {
            if let Err(e) = switch(inner, promotion, &release, processes, &manifest, &log).await {
                undo(inner, promotion, Failure::Engine(e), started, &log).await;
            }
        }
        Err(failure) => undo(inner, promotion, failure, started, &log).await,
    }
}

/// Starts every process of the release and waits until all are healthy. Processes are added
/// to `started` as they start, so that whoever drops this future can stop them.
async fn launch(
    inner: &Arc<Inner>,
    release: &Release,
    log: &Log,
    started: Arc<Mutex<Vec<Arc<dyn Process>>>>,
) -> Result<(Vec<Arc<dyn Process>>, Manifest), Failure> {
    let build_id = release.build.as_ref().ok_or_else(|| {
        Failure::Engine(Error::invalid(
            "release",
            format!("{} has no build", release.id),
        ))
    })?;
    let build = inner
        .store
        .build(&release.app, build_id)
        .await
        .map_err(Failure::Engine)?;
    let manifest = Manifest::parse(&build.manifest).map_err(Failure::Engine)?;
    let app_number = inner
        .store
        .app_id(&release.app)
        .await
        .map_err(Failure::Engine)?;
    let tenant = crate::sandbox::Tenant {
        app: release.app.clone(),
        number: app_number,
    };
    let cwd = inner
        .artifacts
        .ensure_source(&tenant, &build.artifact, &manifest)
        .await
        .map_err(Failure::Engine)?;
    let env: Vec<(String, String)> = release
        .env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_owned()))
        .collect();
    for service in &manifest.services {
        for index in 1..=service.scale {
            let spec = ProcessSpec {
                app: release.app.clone(),
                app_number,
                release: release.id.clone(),
                service: service.name.clone(),
                index,
                command: service.command.clone(),
                cwd: cwd.clone(),
                env: env.clone(),
                http: service.port.is_some(),
            };
            let name = spec.name();
            let p = inner
                .runtime
                .start(spec)
                .await
                .map_err(|e| Failure::Process {
                    reason: e.to_string(),
                    output: None,
                })?;
            if let Ok(mut s) = started.lock() {
                s.push(p.clone());
            }
            record(inner, &p).await;
            let where_ = match (p.os_identity(), p.addr()) {
                (Some((pid, _)), Some(addr)) => format!(" (pid {pid}, port {})", addr.port()),
                (Some((pid, _)), None) => format!(" (pid {pid})"),
                _ => String::new(),
            };
            log.say(inner, format!("started process {name}{where_}"))
                .await;
        }
    }
    let processes: Vec<Arc<dyn Process>> = started.lock().map(|s| s.clone()).unwrap_or_default();
    let checks = processes.iter().map(|p| {
        let service = manifest.service(p.spec().service.as_str()).cloned();
        let p = p.clone();
        async move {
            let Some(service) = service else {
                return Err(Failure::Engine(Error::Internal(format!(
                    "{} has no service",
                    p.name()
                ))));
            };
            let result = match p.addr() {
                Some(addr) => {
                    let (path, timeout) = (service.health.path.clone(), service.health.timeout);
                    wait_until_healthy(
                        service.health.grace,
                        || check_http(addr, &path, timeout),
                        p.exited(),
                    )
                    .await
                }
                None => {
                    let ready = WORKER_MIN_READY.min(service.health.grace);
                    tokio::select! {
                        status = p.exited() => Err(Unhealthy::Exited(status)),
                        _ = tokio::time::sleep(ready) => Ok(ready),
                    }
                }
            };
            match result {
                Ok(took) => {
                    log.say(
                        inner,
                        format!("{} healthy after {} ms", p.name(), took.as_millis()),
                    )
                    .await;
                    Ok(())
                }
                Err(unhealthy) => {
                    // Let the output readers finish for a process that exited.
                    let reason = match unhealthy {
                        Unhealthy::Exited(status) => {
                            format!("{} exited with {status} before it was healthy", p.name())
                        }
                        Unhealthy::NotHealthyInTime { grace, last_error } => format!(
                            "{} was not healthy within its grace of {}: {last_error}",
                            p.name(),
                            human_duration(grace)
                        ),
                    };
                    Err(Failure::Process {
                        reason,
                        output: Some(failed_output(&*p).await),
                    })
                }
            }
        }
    });
    // The first failure ends the wait; the rest are stopped by the undo.
    futures::future::try_join_all(checks).await?;
    Ok((processes, manifest))
}

async fn failed_output(p: &dyn Process) -> String {
    if p.exit_status().is_none() {
        // Still running: stop it first so that its output is complete.
        p.stop(Duration::from_secs(2)).await;
    }
    let out = p.output_tail(FAILED_OUTPUT_LINES);
    format!("--- last output of {} ---\n{out}", p.name())
}

async fn record(inner: &Inner, p: &Arc<dyn Process>) {
    if let Some((pid, ticks)) = p.os_identity() {
        let spec = p.spec();
        if let Err(e) = inner
            .store
            .record_process(
                p.id(),
                &spec.app,
                &spec.release,
                spec.service.as_str(),
                pid as i64,
                ticks,
                p.addr().map(|a| a.port()),
            )
            .await
        {
            tracing::error!(process = p.name(), error = %e, "could not record a process");
        }
    }
}

async fn stop_processes(inner: &Inner, processes: &[Arc<dyn Process>], grace: Duration) {
    join_all(processes.iter().map(|p| async move {
        p.stop(grace).await;
        let status = p.exit_status().unwrap_or_else(|| "stopped".into());
        if let Err(e) = inner
            .store
            .process_stopped(p.id(), &status, &p.output_tail(50))
            .await
        {
            tracing::error!(process = p.name(), error = %e, "could not record a stopped process");
        }
    }))
    .await;
}

fn routes_of(processes: &[Arc<dyn Process>]) -> HashMap<String, Vec<Arc<Backend>>> {
    let mut routes: HashMap<String, Vec<Arc<Backend>>> = HashMap::new();
    for p in processes {
        if let Some(addr) = p.addr() {
            routes
                .entry(p.spec().service.to_string())
                .or_default()
                .push(Backend::new(p.name(), addr));
        }
    }
    routes
}

/// All new processes are healthy: record the release as active, switch traffic, then drain
/// and stop the old processes.
async fn switch(
    inner: &Arc<Inner>,
    promotion: &Promotion,
    release: &Release,
    processes: Vec<Arc<dyn Process>>,
    manifest: &Manifest,
    log: &Log,
) -> Result<()> {
    inner.store.activate(&promotion.id).await?;
    let old_backends = inner
        .routes
        .set_app(promotion.app.as_str(), routes_of(&processes));
    let new_set = supervise(inner, release, processes, manifest);
    let old = inner.with_app(&promotion.app, |rt| rt.active.replace(new_set));
    log.say(
        inner,
        format!(
            "switched traffic to {}; {} is active",
            release.id, release.id
        ),
    )
    .await;
    if let Some(old) = old {
        old.supervisor.cancel();
        if !drain(&old_backends, inner.config.drain_timeout).await {
            log.say(
                inner,
                "old processes still had requests in flight after the drain timeout",
            )
            .await;
        }
        let names: Vec<String> = old
            .processes()
            .iter()
            .map(|p| p.name().to_owned())
            .collect();
        stop_processes(inner, &old.processes(), inner.config.stop_grace).await;
        log.say(
            inner,
            format!(
                "stopped old processes of {} ({})",
                old.release,
                names.join(", ")
            ),
        )
        .await;
    }
    log.say(
        inner,
        format!("promotion complete: {} is active", release.id),
    )
    .await;
    Ok(())
}

async fn undo(
    inner: &Arc<Inner>,
    promotion: &Promotion,
    failure: Failure,
    started: Arc<Mutex<Vec<Arc<dyn Process>>>>,
    log: &Log,
) {
    let (state, reason) = failure.state_and_reason();
    let output = match &failure {
        Failure::Process { output, .. } => output.clone(),
        _ => None,
    };
    let verb = if state == PromotionState::Cancelled {
        "cancelling"
    } else {
        "rolling back"
    };
    log.say(inner, format!("{verb}: {reason}")).await;
    let processes: Vec<Arc<dyn Process>> = started.lock().map(|s| s.clone()).unwrap_or_default();
    let names: Vec<String> = processes.iter().map(|p| p.name().to_owned()).collect();
    stop_processes(
        inner,
        &processes,
        inner.config.stop_grace.min(Duration::from_secs(5)),
    )
    .await;
    if !names.is_empty() {
        log.say(
            inner,
            format!("stopped new processes ({})", names.join(", ")),
        )
        .await;
    }
    let still = match &promotion.previous_release {
        Some(prev) => format!("{prev} is still active"),
        None => "no release is active".into(),
    };
    log.say(inner, format!("{}: {still}", state)).await;
    if let Err(e) = inner
        .store
        .finish_promotion(&promotion.id, state, &reason, output.as_deref())
        .await
    {
        tracing::error!(promotion = %promotion.id, error = %e, "could not record the end of a promotion");
    }
}

/// Watches an active set's processes: restarts any that exits (with backoff), and takes a
/// process that fails its health checks out of the router until it passes them again.
fn supervise(
    inner: &Arc<Inner>,
    release: &Release,
    processes: Vec<Arc<dyn Process>>,
    manifest: &Manifest,
) -> ActiveSet {
    let token = CancellationToken::new();
    let slots: Vec<Arc<Mutex<Arc<dyn Process>>>> = processes
        .into_iter()
        .map(|p| Arc::new(Mutex::new(p)))
        .collect();
    for slot in &slots {
        let health = slot.lock().ok().and_then(|p| {
            let p = p.clone();
            p.addr()?;
            manifest
                .service(p.spec().service.as_str())
                .map(|s| s.health.clone())
        });
        let (inner, slot, token) = (inner.clone(), slot.clone(), token.clone());
        inner
            .tasks
            .clone()
            .spawn(async move { keep_running(&inner, slot, token, health).await });
    }
    ActiveSet {
        release: release.id.clone(),
        slots,
        supervisor: token,
    }
}

/// Consecutive failed health checks that take a process out of the router.
const UNHEALTHY_AFTER: u32 = 3;

/// Waits until `p` exits and says how, checking its health every interval meanwhile; `None`
/// once `token` is cancelled.
async fn watch(
    inner: &Inner,
    p: &Arc<dyn Process>,
    token: &CancellationToken,
    health: Option<&HealthCheck>,
    mut in_router: bool,
) -> Option<String> {
    let spec = p.spec();
    let log = Log::App(spec.app.clone());
    let mut failures = 0;
    loop {
        let (Some(health), Some(addr)) = (health, p.addr()) else {
            return tokio::select! {
                _ = token.cancelled() => None,
                status = p.exited() => Some(status),
            };
        };
        tokio::select! {
            _ = token.cancelled() => return None,
            status = p.exited() => return Some(status),
            _ = tokio::time::sleep(health.interval) => {}
        }
        let result = tokio::select! {
            _ = token.cancelled() => return None,
            r = check_http(addr, &health.path, health.timeout) => r,
        };
        match result {
            Ok(()) => {
                failures = 0;
                if !in_router {
                    let backend = Backend::new(p.name(), addr);
                    inner.routes.replace_backend(
                        spec.app.as_str(),
                        spec.service.as_str(),
                        p.name(),
                        backend,
                    );
                    in_router = true;
                    log.say(
                        inner,
                        format!("{} is healthy again and back in the router", p.name()),
                    )
                    .await;
                }
            }
            Err(e) => {
                failures += 1;
                if failures == UNHEALTHY_AFTER && in_router {
                    inner
                        .routes
                        .remove_backend(spec.app.as_str(), spec.service.as_str(), p.name());
                    in_router = false;
                    log.say(
                        inner,
                        format!("{} failed {UNHEALTHY_AFTER} health checks in a row ({e}); it gets no traffic until it passes again", p.name()),
                    )
                    .await;
                }
            }
        }
    }
}

async fn keep_running(
    inner: &Arc<Inner>,
    slot: Arc<Mutex<Arc<dyn Process>>>,
    token: CancellationToken,
    health: Option<HealthCheck>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut in_router = true;
    loop {
        let Ok(current) = slot.lock().map(|p| p.clone()) else {
            return;
        };
        let Some(status) = watch(inner, &current, &token, health.as_ref(), in_router).await else {
            return;
        };
        if token.is_cancelled() {
            return;
        }
        let spec = current.spec().clone();
        let log = Log::App(spec.app.clone());
        inner
            .routes
            .remove_backend(spec.app.as_str(), spec.service.as_str(), current.name());
        let _ = inner
            .store
            .process_stopped(current.id(), &status, &current.output_tail(50))
            .await;
        log.say(
            inner,
            format!(
                "{} exited ({status}); restarting it in {} s",
                current.name(),
                backoff.as_secs()
            ),
        )
        .await;
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
        let p = match inner.runtime.start(spec.clone()).await {
            Ok(p) => p,
            Err(e) => {
                log.say(
                    inner,
                    format!("{} could not be restarted: {e}", spec.name()),
                )
                .await;
                continue;
            }
        };
        record(inner, &p).await;
        if let Ok(mut s) = slot.lock() {
            *s = p.clone();
        }
        let healthy = match (p.addr(), &health) {
            (Some(addr), Some(h)) => {
                tokio::select! {
                    _ = token.cancelled() => { stop_processes(inner, &[p], inner.config.stop_grace).await; return; }
                    r = wait_until_healthy(h.grace, || check_http(addr, &h.path, h.timeout), p.exited()) => r.is_ok(),
                }
            }
            _ => true,
        };
        in_router = healthy;
        if healthy {
            if let Some(addr) = p.addr() {
                inner.routes.replace_backend(
                    spec.app.as_str(),
                    spec.service.as_str(),
                    p.name(),
                    Backend::new(p.name(), addr),
                );
            }
            log.say(inner, format!("{} restarted and healthy", p.name()))
                .await;
            backoff = Duration::from_secs(1);
        }
    }
}

pub(crate) async fn stop_set(inner: &Inner, set: ActiveSet, why: &str) {
    set.supervisor.cancel();
    let processes = set.processes();
    for p in &processes {
        let spec = p.spec();
        inner
            .routes
            .remove_backend(spec.app.as_str(), spec.service.as_str(), p.name());
    }
    stop_processes(inner, &processes, inner.config.stop_grace).await;
    tracing::info!(release = %set.release, "stopped: {why}");
}

/// Stops processes a previous run of the server left behind (it was killed, or the machine
/// lost power), recognising each by pid and start time so that a reused pid is never hit.
pub(crate) async fn kill_orphans(inner: &Inner) -> Result<()> {
    for rec in inner.store.unstopped_processes().await? {
        let pid = rec.pid as u32;
        let outcome = match local::start_ticks(pid) {
            // Still the same process: stop it and its group.
            Some(ticks) if Some(ticks) == rec.start_ticks => {
                local::signal_group(pid, libc::SIGKILL);
                tracing::warn!(pid, "stopped a process left behind by a previous run");
                "killed at start-up: left behind by a previous run"
            }
            // The pid now belongs to another process: leave it alone.
            Some(_) => "gone at start-up",
            // The leader is gone; members of its group may not be, and the kernel does not
            // reuse a pid while its group exists, so the group is still ours.
            None => {
                local::signal_group(pid, libc::SIGKILL);
                "gone at start-up"
            }
        };
        inner.store.process_stopped(&rec.id, outcome, "").await?;
    }
    Ok(())
}

/// Brings each app's active release back up after a start.
pub(crate) async fn restore_active(inner: &Arc<Inner>) {
    let apps = match inner.store.active_releases().await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "could not read the active releases");
            return;
        }
    };
    join_all(apps.into_iter().map(|(app, release_id)| async move {
        let log = Log::App(app.clone());
        let release = match inner.store.release(&app, &release_id).await {
            Ok(r) => r,
            Err(e) => return log.say(inner, format!("could not restore {release_id}: {e}")).await,
        };
        let started: Arc<Mutex<Vec<Arc<dyn Process>>>> = Arc::default();
        let result = tokio::select! {
            r = launch(inner, &release, &log, started.clone()) => r,
            _ = inner.shutdown.cancelled() => Err(Failure::Cancelled("the server shutting down".into())),
        };
        match result {
            Ok((processes, manifest)) => {
                inner.routes.set_app(app.as_str(), routes_of(&processes));
                let set = supervise(inner, &release, processes, &manifest);
                inner.with_app(&app, |rt| rt.active = Some(set));
                log.say(inner, format!("restored {release_id}: serving again")).await;
            }
            Err(failure) => {
                let (_, reason) = failure.state_and_reason();
                let processes: Vec<Arc<dyn Process>> = started.lock().map(|s| s.clone()).unwrap_or_default();
                stop_processes(inner, &processes, Duration::from_secs(5)).await;
                log.say(inner, format!("could not restore {release_id}: {reason}")).await;
            }
        }
    }))
    .await;
}
