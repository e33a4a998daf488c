//! A scripted [`Runtime`] for tests of the rollout state machine: nothing runs, each instance
//! does what the test scripted (becomes ready after a while, fails to start, exits before it
//! is ready, never becomes ready, or waits for the test), and the test can crash instances
//! and see what is live. Its timings use tokio's clock, so with `tokio::time::pause()` every
//! path plays out the same way each time.

use async_trait::async_trait;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::ids::ReleaseId;
use crate::names::ServiceName;
use crate::runtime::{InstanceState, RunningSet, Runtime, SetChannel, SetEvent, SetId, SetSpec};
use crate::step::{human_ms, ProcessEvent};

/// What one scripted instance does once started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Ready after this long (the default: at once).
    Ready(Duration),
    /// Its process cannot be started.
    FailsToStart(String),
    /// Exits with this status after this long, before it is ready.
    Exits(Duration, String),
    /// Never passes its health check: fails when its grace has passed.
    NeverReady,
    /// Started, then waits for [`FakeRuntime::make_ready`].
    Manual,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour::Ready(Duration::ZERO)
    }
}

/// An instance the fake runs now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveInstance {
    pub set: SetId,
    pub release: ReleaseId,
    pub instance: String,
    pub addr: SocketAddr,
}

#[derive(Default)]
struct State {
    /// Scripts: (release, instance or all) → behaviour.
    scripts: Vec<(ReleaseId, Option<String>, Behaviour)>,
    /// `start` itself fails with this.
    refuse_start: Option<String>,
    sets: Vec<FakeSetState>,
    next_port: u16,
    started_sets: Vec<(SetId, ReleaseId)>,
    retired_sets: Vec<SetId>,
    retire_delay: Duration,
}

struct FakeSetState {
    id: SetId,
    release: ReleaseId,
    retired: bool,
    keep_running: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<SetEvent>,
    instances: Vec<FakeInstance>,
}

struct FakeInstance {
    name: String,
    service: ServiceName,
    grace: Duration,
    alive: bool,
    addr: SocketAddr,
}

/// The scripted runtime; clones share their state.
#[derive(Clone)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        let (changed, _) = watch::channel(0);
        FakeRuntime {
            state: Arc::new(Mutex::new(State {
                next_port: 20000,
                ..State::default()
            })),
            changed: Arc::new(changed),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        };
        self.changed.send_modify(|n| *n += 1);
        out
    }

    /// Every instance of `release` behaves like this (unless scripted one by one).
    pub fn script(&self, release: &ReleaseId, behaviour: Behaviour) {
        self.with(|s| s.scripts.push((release.clone(), None, behaviour)));
    }

    /// One instance (`web.2`) of `release` behaves like this.
    pub fn script_instance(&self, release: &ReleaseId, instance: &str, behaviour: Behaviour) {
        self.with(|s| {
            s.scripts
                .push((release.clone(), Some(instance.to_owned()), behaviour))
        });
    }

    /// `start` fails with `why` (`None`: it works again).
    pub fn refuse_start(&self, why: Option<&str>) {
        self.with(|s| s.refuse_start = why.map(str::to_owned));
    }

    /// Retiring a set takes this long (a slow stop).
    pub fn retire_delay(&self, delay: Duration) {
        self.with(|s| s.retire_delay = delay);
    }

    fn behaviour(s: &State, release: &ReleaseId, instance: &str) -> Behaviour {
        let one = s
            .scripts
            .iter()
            .rev()
            .find(|(r, i, _)| r == release && i.as_deref() == Some(instance));
        let all = s
            .scripts
            .iter()
            .rev()
            .find(|(r, i, _)| r == release && i.is_none());
        one.or(all).map(|(_, _, b)| b.clone()).unwrap_or_default()
    }

    /// What runs now.
    pub fn live(&self) -> Vec<LiveInstance> {
        self.with(|s| {
            s.sets
                .iter()
                .filter(|set| !set.retired)
                .flat_map(|set| {
                    set.instances
                        .iter()
                        .filter(|i| i.alive)
                        .map(|i| LiveInstance {
                            set: set.id.clone(),
                            release: set.release.clone(),
                            instance: i.name.clone(),
                            addr: i.addr,
                        })
                })
                .collect()
        })
    }

    /// The releases that have live instances, in start order, each once.
    pub fn live_releases(&self) -> Vec<ReleaseId> {
        let mut out: Vec<ReleaseId> = Vec::new();
        for l in self.live() {
            if !out.contains(&l.release) {
                out.push(l.release);
            }
        }
        out
    }

    /// Every set started so far, in order.
    pub fn started_sets(&self) -> Vec<(SetId, ReleaseId)> {
        self.with(|s| s.started_sets.clone())
    }

    /// Every set retired so far, in order.
    pub fn retired_sets(&self) -> Vec<SetId> {
        self.with(|s| s.retired_sets.clone())
    }

    /// Waits until `ready` holds for the fake's state (checked after every change).
    pub async fn until(&self, ready: impl Fn(&FakeRuntime) -> bool) {
        let mut rx = self.changed.subscribe();
        loop {
            if ready(self) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// A `Manual` instance of the newest live set of `release` becomes ready.
    pub fn make_ready(&self, release: &ReleaseId, instance: &str) {
        self.with(|s| {
            if let Some(set) = s
                .sets
                .iter()
                .rev()
                .find(|set| &set.release == release && !set.retired)
            {
                if let Some(i) = set.instances.iter().find(|i| i.name == instance && i.alive) {
                    let _ = set.tx.send(SetEvent {
                        instance: i.name.clone(),
                        service: i.service.clone(),
                        state: InstanceState::Ready {
                            addr: Some(i.addr),
                            after: Duration::ZERO,
                            event: None,
                        },
                    });
                }
            }
        });
    }

    /// An instance of the newest live set of `release` crashes (exits with `status`). A set
    /// kept running restarts it after a second (on a new port); one that is not says it failed.
    pub fn crash(&self, release: &ReleaseId, instance: &str, status: &str) {
        let restart = self.with(|s| {
            let port = s.next_port;
            let set = s
                .sets
                .iter_mut()
                .rev()
                .find(|set| &set.release == release && !set.retired)?;
            let kept = set.keep_running.load(Ordering::SeqCst);
            let i = set
                .instances
                .iter_mut()
                .find(|i| i.name == instance && i.alive)?;
            i.alive = false;
            let state = if kept {
                InstanceState::Down {
                    event: ProcessEvent::Exited {
                        process: i.name.clone(),
                        status: status.to_owned(),
                        restart_in_ms: 1000,
                    },
                }
            } else {
                InstanceState::Failed {
                    reason: format!("{} exited with {status}", i.name),
                    output: None,
                }
            };
            let _ = set.tx.send(SetEvent {
                instance: i.name.clone(),
                service: i.service.clone(),
                state,
            });
            kept.then(|| (set.id.clone(), i.name.clone(), port))
        });
        if let Some((set, name, port)) = restart {
            self.with(|s| s.next_port += 1);
            let fake = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                fake.with(|s| {
                    let Some(set) = s.sets.iter_mut().find(|x| x.id == set && !x.retired) else {
                        return;
                    };
                    let Some(i) = set.instances.iter_mut().find(|i| i.name == name) else {
                        return;
                    };
                    i.alive = true;
                    i.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                    let _ = set.tx.send(SetEvent {
                        instance: name.clone(),
                        service: i.service.clone(),
                        state: InstanceState::Ready {
                            addr: Some(i.addr),
                            after: Duration::ZERO,
                            event: Some(ProcessEvent::Restarted {
                                process: name.clone(),
                            }),
                        },
                    });
                });
            });
        }
    }

    fn send(
        &self,
        set: &SetId,
        instance: &str,
        state: impl FnOnce(&mut FakeInstance) -> Option<InstanceState>,
    ) {
        self.with(|s| {
            let Some(set) = s.sets.iter_mut().find(|x| &x.id == set && !x.retired) else {
                return;
            };
            let tx = set.tx.clone();
            if let Some(i) = set.instances.iter_mut().find(|i| i.name == instance) {
                if let Some(state) = state(i) {
                    let _ = tx.send(SetEvent {
                        instance: i.name.clone(),
                        service: i.service.clone(),
                        state,
                    });
                }
            }
        });
    }
}

struct FakeSet {
    fake: FakeRuntime,
    channel: SetChannel,
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn start(&self, spec: SetSpec) -> Result<Box<dyn RunningSet>> {
        if let Some(why) = self.with(|s| s.refuse_start.clone()) {
            return Err(Error::Internal(why));
        }
        let (channel, tx) = SetChannel::new(&spec);
        let keep_running = channel.keep_running.clone();
        let mut plans = Vec::new();
        self.with(|s| {
            let mut instances = Vec::new();
            for service in &spec.services {
                for index in 1..=service.scale {
                    let name = format!("{}.{index}", service.name);
                    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, s.next_port));
                    s.next_port += 1;
                    let behaviour = Self::behaviour(s, &spec.release, &name);
                    let alive = !matches!(behaviour, Behaviour::FailsToStart(_));
                    plans.push((
                        name.clone(),
                        service.name.clone(),
                        behaviour,
                        service.health.grace,
                        addr,
                    ));
                    instances.push(FakeInstance {
                        name,
                        service: service.name.clone(),
                        grace: service.health.grace,
                        alive,
                        addr,
                    });
                }
            }
            s.started_sets.push((spec.id.clone(), spec.release.clone()));
            s.sets.push(FakeSetState {
                id: spec.id.clone(),
                release: spec.release.clone(),
                retired: false,
                keep_running: keep_running.clone(),
                tx: tx.clone(),
                instances,
            });
        });
        for (name, service, behaviour, grace, addr) in plans {
            let first = match &behaviour {
                Behaviour::FailsToStart(why) => InstanceState::Failed {
                    reason: format!("{name} could not be started: {why}"),
                    output: None,
                },
                _ => InstanceState::Started {
                    pid: None,
                    addr: Some(addr),
                },
            };
            let _ = tx.send(SetEvent {
                instance: name.clone(),
                service: service.clone(),
                state: first,
            });
            let (fake, set) = (self.clone(), spec.id.clone());
            match behaviour {
                Behaviour::Ready(after) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        fake.send(&set, &name, |i| {
                            i.alive.then_some(InstanceState::Ready {
                                addr: Some(i.addr),
                                after,
                                event: None,
                            })
                        });
                    });
                }
                Behaviour::Exits(after, status) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        fake.send(&set, &name, |i| {
                            i.alive = false;
                            Some(InstanceState::Failed {
                                reason: format!(
                                    "{} exited with {status} before it was healthy",
                                    i.name
                                ),
                                output: Some(format!("--- last output of {} ---\nboom", i.name)),
                            })
                        });
                    });
                }
                Behaviour::NeverReady => {
                    tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        fake.send(&set, &name, |i| {
                            i.alive = false;
                            Some(InstanceState::Failed {
                                reason: format!(
                                    "{} was not healthy within its grace of {}: /health answered 500",
                                    i.name,
                                    human_ms(i.grace.as_millis() as u64)
                                ),
                                output: None,
                            })
                        });
                    });
                }
                Behaviour::FailsToStart(_) | Behaviour::Manual => {}
            }
        }
        Ok(Box::new(FakeSet {
            fake: self.clone(),
            channel,
        }))
    }

    async fn recover(&self) -> Result<Vec<Box<dyn RunningSet>>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl RunningSet for FakeSet {
    fn channel(&self) -> &SetChannel {
        &self.channel
    }

    fn channel_mut(&mut self) -> &mut SetChannel {
        &mut self.channel
    }

    fn logs(&self, _lines: usize) -> Vec<(String, String)> {
        self.channel
            .instances
            .iter()
            .map(|n| (n.clone(), format!("output of {n}")))
            .collect()
    }

    async fn retire(self: Box<Self>, _grace: Duration) {
        let delay = self.fake.with(|s| s.retire_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.fake.with(|s| {
            if let Some(set) = s.sets.iter_mut().find(|x| x.id == self.channel.id) {
                set.retired = true;
                set.instances.iter_mut().for_each(|i| i.alive = false);
            }
            s.retired_sets.push(self.channel.id.clone());
        });
    }
}
