//! The set-level [`Runtime`] built on a [`ProcessRuntime`]: one task per instance starts its
//! process, waits until it is healthy, then watches it — probing its health, and once the
//! set is kept running, restarting it with backoff when it exits. The task owns its process:
//! whatever it started it stops itself when the set is retired, so a restart that races a
//! retire can never leave a process behind.

use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    local, InstanceState, Process, ProcessRuntime, ProcessSpec, RunningSet, Runtime, SetChannel,
    SetEvent, SetSpec,
};
use crate::backoff::Backoff;
use crate::error::Result;
use crate::health::{check_http, wait_until_healthy, Unhealthy, WORKER_MIN_READY};
use crate::manifest::HealthCheck;
use crate::names::ServiceName;
use crate::step::{human_ms, ProcessEvent};
use crate::store::Store;

/// Lines of a failed process's output kept with the promotion.
const FAILED_OUTPUT_LINES: usize = 30;
/// Lines of output recorded with a stopped process.
const STOPPED_OUTPUT_LINES: usize = 50;
/// Consecutive failed health checks that take a process out of the router.
pub const UNHEALTHY_AFTER: u32 = 3;

/// Sets of processes of a [`ProcessRuntime`], recorded in the store (pid and start time) so
/// that a later run can stop what this one left behind.
pub struct ProcessSets<R> {
    processes: Arc<R>,
    store: Store,
}

impl<R: ProcessRuntime> ProcessSets<R> {
    pub fn new(processes: R, store: Store) -> Self {
        ProcessSets {
            processes: Arc::new(processes),
            store,
        }
    }
}

type Slot = Arc<Mutex<Option<Arc<dyn Process>>>>;

struct ProcessSet {
    channel: SetChannel,
    retire: CancellationToken,
    grace: Arc<Mutex<Duration>>,
    slots: Vec<(String, Slot)>,
    tasks: Vec<JoinHandle<()>>,
}

#[async_trait]
impl<R: ProcessRuntime> Runtime for ProcessSets<R> {
    fn name(&self) -> &'static str {
        "local processes"
    }

    async fn start(&self, spec: SetSpec) -> Result<Box<dyn RunningSet>> {
        let (channel, tx) = SetChannel::new(&spec);
        let keep_running = channel.keep_running.clone();
        let retire = CancellationToken::new();
        let grace = Arc::new(Mutex::new(Duration::from_secs(10)));
        let mut slots = Vec::new();
        let mut tasks = Vec::new();
        for service in &spec.services {
            for index in 1..=service.scale {
                let process = ProcessSpec {
                    app: spec.app.clone(),
                    app_number: spec.app_number,
                    release: spec.release.clone(),
                    service: service.name.clone(),
                    index,
                    command: service.command.clone(),
                    cwd: spec.source.clone(),
                    env: spec.env.clone(),
                    http: service.http,
                };
                let slot: Slot = Arc::default();
                slots.push((process.name(), slot.clone()));
                let instance = Instance {
                    processes: self.processes.clone(),
                    store: self.store.clone(),
                    spec: process,
                    health: service.http.then(|| service.health.clone()),
                    worker_grace: service.health.grace,
                    events: tx.clone(),
                    keep_running: keep_running.clone(),
                    retire: retire.clone(),
                    grace: grace.clone(),
                    slot,
                };
                // Started in order: `web.1` has its process before `web.2` asks for one.
                let (started_tx, started_rx) = tokio::sync::oneshot::channel();
                tasks.push(tokio::spawn(instance.run(started_tx)));
                let _ = started_rx.await;
            }
        }
        Ok(Box::new(ProcessSet {
            channel,
            retire,
            grace,
            slots,
            tasks,
        }))
    }

    /// Processes cannot be adopted across a restart of the server (their output went to
    /// pipes that died with it): what a previous run left is stopped, each recognised by pid
    /// and start time so that a reused pid is never hit, and started again by the caller.
    async fn recover(&self) -> Result<Vec<Box<dyn RunningSet>>> {
        for rec in self.store.unstopped_processes().await? {
            let pid = rec.pid as u32;
            let outcome = match local::start_ticks(pid) {
                Some(ticks) if Some(ticks) == rec.start_ticks => {
                    local::signal_group(pid, libc::SIGKILL);
                    tracing::warn!(pid, "stopped a process left behind by a previous run");
                    "killed at start-up: left behind by a previous run"
                }
                // The pid now belongs to another process: leave it alone.
                Some(_) => "gone at start-up",
                // The leader is gone; members of its group may not be, and the kernel does
                // not reuse a pid while its group exists, so the group is still ours.
                None => {
                    local::signal_group(pid, libc::SIGKILL);
                    "gone at start-up"
                }
            };
            self.store.process_stopped(&rec.id, outcome, "").await?;
        }
        Ok(Vec::new())
    }
}

#[async_trait]
impl RunningSet for ProcessSet {
    fn channel(&self) -> &SetChannel {
        &self.channel
    }

    fn channel_mut(&mut self) -> &mut SetChannel {
        &mut self.channel
    }

    fn logs(&self, lines: usize) -> Vec<(String, String)> {
        self.slots
            .iter()
            .map(|(name, slot)| {
                let out = slot
                    .lock()
                    .ok()
                    .and_then(|p| p.as_ref().map(|p| p.output_tail(lines)))
                    .unwrap_or_default();
                (name.clone(), out)
            })
            .collect()
    }

    async fn retire(self: Box<Self>, grace: Duration) {
        self.keep_running(false);
        if let Ok(mut g) = self.grace.lock() {
            *g = grace;
        }
        self.retire.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// One instance's task.
struct Instance<R> {
    processes: Arc<R>,
    store: Store,
    spec: ProcessSpec,
    /// Health checks, for instances with a port.
    health: Option<HealthCheck>,
    /// How long a worker must stay up to count as started (at most its grace).
    worker_grace: Duration,
    events: mpsc::UnboundedSender<SetEvent>,
    keep_running: Arc<AtomicBool>,
    retire: CancellationToken,
    grace: Arc<Mutex<Duration>>,
    slot: Slot,
}

/// How an instance's watch ended.
enum Ended {
    Retired,
    Exited(String),
}

impl<R: ProcessRuntime> Instance<R> {
    fn say(&self, state: InstanceState) {
        let _ = self.events.send(SetEvent {
            instance: self.spec.name(),
            service: self.spec.service.clone(),
            state,
        });
    }

    fn name(&self) -> String {
        self.spec.name()
    }

    fn service(&self) -> &ServiceName {
        &self.spec.service
    }

    fn kept_running(&self) -> bool {
        self.keep_running.load(Ordering::SeqCst)
    }

    fn grace(&self) -> Duration {
        self.grace
            .lock()
            .map(|g| *g)
            .unwrap_or(Duration::from_secs(10))
    }

    async fn run(self, started: tokio::sync::oneshot::Sender<()>) {
        let mut started = Some(started);
        let mut backoff = Backoff::default();
        let mut restart = false;
        loop {
            if self.retire.is_cancelled() {
                return;
            }
            let p = match self.processes.start(self.spec.clone()).await {
                Ok(p) => p,
                Err(e) => {
                    if let Some(s) = started.take() {
                        let _ = s.send(());
                    }
                    if !restart {
                        return self.say(InstanceState::Failed {
                            reason: e.to_string(),
                            output: None,
                        });
                    }
                    self.say(InstanceState::Note {
                        event: ProcessEvent::RestartFailed {
                            process: self.name(),
                            error: e.to_string(),
                        },
                    });
                    if !self.pause(&mut backoff).await {
                        return;
                    }
                    continue;
                }
            };
            if let Ok(mut s) = self.slot.lock() {
                *s = Some(p.clone());
            }
            self.record(&p).await;
            let (pid, addr) = (p.os_identity().map(|(pid, _)| pid), p.addr());
            if !restart {
                self.say(InstanceState::Started { pid, addr });
            }
            if let Some(s) = started.take() {
                let _ = s.send(());
            }
            // Up: healthy within its grace (or, without a port, alive long enough).
            let up = tokio::select! {
                _ = self.retire.cancelled() => return self.stop(&p, self.grace()).await,
                r = self.come_up(&p) => r,
            };
            match up {
                Ok(after) => {
                    let event = restart.then(|| ProcessEvent::Restarted {
                        process: self.name(),
                    });
                    self.say(InstanceState::Ready { addr, after, event });
                    backoff.reset();
                }
                Err(unhealthy) => {
                    let reason = match unhealthy {
                        Unhealthy::Exited(status) => {
                            format!("{} exited with {status} before it was healthy", self.name())
                        }
                        Unhealthy::NotHealthyInTime { grace, last_error } => format!(
                            "{} was not healthy within its grace of {}: {last_error}",
                            self.name(),
                            human_ms(grace.as_millis() as u64)
                        ),
                    };
                    // Stopped first, so that its output is complete.
                    self.stop(&p, Duration::from_secs(2)).await;
                    if !self.ended(&p, reason.clone(), reason, &mut backoff).await {
                        return;
                    }
                    restart = true;
                    continue;
                }
            }
            match self.watch(&p).await {
                Ended::Retired => return self.stop(&p, self.grace()).await,
                Ended::Exited(status) => {
                    self.stop(&p, Duration::ZERO).await;
                    let reason = format!("{} exited with {status}", self.name());
                    if !self.ended(&p, reason, status, &mut backoff).await {
                        return;
                    }
                    restart = true;
                }
            }
        }
    }

    /// `p` ended (`status`) or did not come up (`reason`). A set not kept running yet hears
    /// that the instance failed, with its last output: final. One kept running hears it is
    /// down, and it is started again after a backoff. `false`: the instance is done.
    async fn ended(
        &self,
        p: &Arc<dyn Process>,
        reason: String,
        status: String,
        backoff: &mut Backoff,
    ) -> bool {
        if !self.kept_running() {
            let output = format!(
                "--- last output of {} ---\n{}",
                self.name(),
                p.output_tail(FAILED_OUTPUT_LINES)
            );
            self.say(InstanceState::Failed {
                reason,
                output: Some(output),
            });
            return false;
        }
        self.say(InstanceState::Down {
            event: ProcessEvent::Exited {
                process: self.name(),
                status,
                restart_in_ms: backoff.peek().as_millis() as u64,
            },
        });
        self.pause(backoff).await
    }

    /// Waits out `backoff`'s next wait; `false` if the set was retired meanwhile.
    async fn pause(&self, backoff: &mut Backoff) -> bool {
        let wait = backoff.take();
        tokio::select! {
            _ = self.retire.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    async fn come_up(&self, p: &Arc<dyn Process>) -> std::result::Result<Duration, Unhealthy> {
        match (&self.health, p.addr()) {
            (Some(h), Some(addr)) => {
                wait_until_healthy(h.grace, || check_http(addr, &h.path, h.timeout), p.exited())
                    .await
            }
            _ => {
                let ready = WORKER_MIN_READY.min(self.worker_grace);
                tokio::select! {
                    status = p.exited() => Err(Unhealthy::Exited(status)),
                    _ = tokio::time::sleep(ready) => Ok(ready),
                }
            }
        }
    }

    /// Watches a healthy process until it exits or the set is retired, taking it out of
    /// traffic after [`UNHEALTHY_AFTER`] failed checks in a row and back when it passes.
    async fn watch(&self, p: &Arc<dyn Process>) -> Ended {
        let mut failures = 0;
        let mut in_traffic = true;
        loop {
            let (Some(health), Some(addr)) = (&self.health, p.addr()) else {
                return tokio::select! {
                    _ = self.retire.cancelled() => Ended::Retired,
                    status = p.exited() => Ended::Exited(status),
                };
            };
            tokio::select! {
                _ = self.retire.cancelled() => return Ended::Retired,
                status = p.exited() => return Ended::Exited(status),
                _ = tokio::time::sleep(health.interval) => {}
            }
            let result = tokio::select! {
                _ = self.retire.cancelled() => return Ended::Retired,
                r = check_http(addr, &health.path, health.timeout) => r,
            };
            match result {
                Ok(()) => {
                    failures = 0;
                    if !in_traffic {
                        in_traffic = true;
                        self.say(InstanceState::Ready {
                            addr: Some(addr),
                            after: Duration::ZERO,
                            event: Some(ProcessEvent::HealthyAgain {
                                process: self.name(),
                            }),
                        });
                    }
                }
                Err(error) => {
                    failures += 1;
                    if failures == UNHEALTHY_AFTER && in_traffic {
                        in_traffic = false;
                        self.say(InstanceState::Down {
                            event: ProcessEvent::Unhealthy {
                                process: self.name(),
                                failures,
                                error,
                            },
                        });
                    }
                }
            }
        }
    }

    async fn stop(&self, p: &Arc<dyn Process>, grace: Duration) {
        p.stop(grace).await;
        let status = p.exit_status().unwrap_or_else(|| "stopped".into());
        if let Err(e) = self
            .store
            .process_stopped(p.id(), &status, &p.output_tail(STOPPED_OUTPUT_LINES))
            .await
        {
            tracing::error!(process = p.name(), service = %self.service(), error = %e, "could not record a stopped process");
        }
    }

    async fn record(&self, p: &Arc<dyn Process>) {
        if let Some((pid, ticks)) = p.os_identity() {
            let spec = p.spec();
            if let Err(e) = self
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ReleaseId;
    use crate::manifest::HealthCheck;
    use crate::names::AppName;
    use crate::runtime::{ServiceSpec, SetId};
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::{watch, Semaphore};

    /// Processes that run until stopped, started through a gate the test opens.
    struct Scripted {
        started: AtomicUsize,
        live: Arc<AtomicUsize>,
        gate: Arc<Semaphore>,
        first: Mutex<Option<Arc<Exiting>>>,
    }

    #[derive(Debug)]
    struct Exiting {
        spec: ProcessSpec,
        exit: watch::Sender<Option<String>>,
        live: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl ProcessRuntime for Arc<Scripted> {
        async fn start(&self, spec: ProcessSpec) -> Result<Arc<dyn Process>> {
            let n = self.started.fetch_add(1, Ordering::SeqCst);
            if let Ok(permit) = self.gate.acquire().await {
                permit.forget();
            }
            self.live.fetch_add(1, Ordering::SeqCst);
            let (exit, _) = watch::channel(None);
            let p = Arc::new(Exiting {
                spec,
                exit,
                // Each lives until it is stopped (or the test ends the first one).
                live: self.live.clone(),
            });
            if n == 0 {
                if let Ok(mut first) = self.first.lock() {
                    *first = Some(p.clone());
                }
            }
            Ok(p)
        }
    }

    #[async_trait]
    impl Process for Exiting {
        fn id(&self) -> &str {
            "p"
        }
        fn name(&self) -> &str {
            "worker.1"
        }
        fn spec(&self) -> &ProcessSpec {
            &self.spec
        }
        fn addr(&self) -> Option<std::net::SocketAddr> {
            None
        }
        fn os_identity(&self) -> Option<(u32, Option<i64>)> {
            None
        }
        fn exit_status(&self) -> Option<String> {
            self.exit.borrow().clone()
        }
        async fn exited(&self) -> String {
            let mut rx = self.exit.subscribe();
            let status = rx
                .wait_for(|s| s.is_some())
                .await
                .ok()
                .and_then(|s| s.clone());
            status.unwrap_or_default()
        }
        async fn stop(&self, _grace: Duration) {
            self.end("killed by signal 15");
        }
        fn output_tail(&self, _lines: usize) -> String {
            String::new()
        }
    }

    impl Exiting {
        fn end(&self, status: &str) {
            let mut ended = false;
            self.exit.send_if_modified(|s| {
                if s.is_none() {
                    *s = Some(status.into());
                    ended = true;
                }
                ended
            });
            if ended {
                self.live.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_that_races_the_retire_leaves_nothing_running() {
        crate::testing::freeze_time();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        let scripted = Arc::new(Scripted {
            started: AtomicUsize::new(0),
            live: Arc::default(),
            gate: Arc::new(Semaphore::new(1)),
            first: Mutex::new(None),
        });
        let sets = ProcessSets::new(scripted.clone(), store);
        let release = ReleaseId::generate();
        let mut set = sets
            .start(SetSpec {
                id: SetId::generate(&release),
                app: AppName::parse("t").unwrap(),
                app_number: 1,
                release,
                artifact: String::new(),
                source: dir.path().into(),
                env: Vec::new(),
                services: vec![ServiceSpec {
                    name: ServiceName::parse("worker").unwrap(),
                    command: "work".into(),
                    scale: 1,
                    http: false,
                    health: HealthCheck {
                        path: "/".into(),
                        grace: Duration::from_secs(1),
                        interval: Duration::from_secs(5),
                        timeout: Duration::from_secs(1),
                    },
                }],
            })
            .await
            .unwrap();
        // Started, then ready once it has stayed up for its second.
        assert!(matches!(
            set.next_event().await.map(|e| e.state),
            Some(InstanceState::Started { .. })
        ));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(
            set.next_event().await.map(|e| e.state),
            Some(InstanceState::Ready { .. })
        ));
        set.keep_running(true);
        // It crashes; the restart waits at the gate while the set is retired.
        let first = scripted.first.lock().unwrap().clone().unwrap();
        first.end("exit status 1");
        assert!(matches!(
            set.next_event().await.map(|e| e.state),
            Some(InstanceState::Down { .. })
        ));
        // After its backoff the restart begins, and waits at the gate.
        tokio::time::advance(Duration::from_secs(1)).await;
        while scripted.started.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        let retire = tokio::spawn(set.retire(Duration::from_secs(1)));
        tokio::task::yield_now().await;
        scripted.gate.add_permits(10);
        retire.await.unwrap();
        assert_eq!(scripted.live.load(Ordering::SeqCst), 0);
        assert_eq!(scripted.started.load(Ordering::SeqCst), 2);
    }
}
