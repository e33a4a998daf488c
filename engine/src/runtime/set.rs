//! The set-level runtime seam.

use async_trait::async_trait;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::ids::ReleaseId;
use crate::manifest::HealthCheck;
use crate::names::{AppName, ServiceName};
use crate::step::ProcessEvent;

/// Names one start of one release: a promotion's new processes, or a restore after a
/// restart. Two sets of the same release (a restore, then a promote of it again) never share
/// an ID, so nothing said about one can touch the other.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetId(String);

impl SetId {
    /// A new ID for a set of `release`: the release and a random suffix.
    pub fn generate(release: &ReleaseId) -> SetId {
        let suffix = crate::ids::PromotionId::generate().as_str()[1..7].to_ascii_lowercase();
        SetId(format!("{release}-{suffix}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One service of a set, as the manifest describes it.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub name: ServiceName,
    pub command: String,
    /// How many instances (`web.1` … `web.N`).
    pub scale: u32,
    /// Whether it serves HTTP (and so gets a port, health checks and traffic).
    pub http: bool,
    pub health: HealthCheck,
}

/// Everything a runtime needs to run a release.
#[derive(Clone, Debug)]
pub struct SetSpec {
    pub id: SetId,
    pub app: AppName,
    /// The app's number in the store (the local runtime's per-app user).
    pub app_number: i64,
    pub release: ReleaseId,
    /// sha256 of the build's source archive.
    pub artifact: String,
    /// Where the unpacked source is (for runtimes on this machine).
    pub source: PathBuf,
    /// The release's environment; the runtime adds `PORT` and `SLIPWAY_*`.
    pub env: Vec<(String, String)>,
    pub services: Vec<ServiceSpec>,
}

impl SetSpec {
    /// Every instance's name (`web.1`, `web.2`, `worker.1`), in start order.
    pub fn instances(&self) -> Vec<String> {
        self.services
            .iter()
            .flat_map(|s| (1..=s.scale).map(move |i| format!("{}.{i}", s.name)))
            .collect()
    }
}

/// What a runtime says about one instance of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceState {
    /// Its process started.
    Started {
        pid: Option<u32>,
        addr: Option<SocketAddr>,
    },
    /// It can take traffic: healthy for the first time, or again after a restart or failed
    /// checks. `event` says which, for an active set.
    Ready {
        addr: Option<SocketAddr>,
        after: Duration,
        event: Option<ProcessEvent>,
    },
    /// It did not come up: it could not be started, exited before it was healthy, or was not
    /// healthy within its grace — or it exited while the set is not yet kept running. Final
    /// for the instance (it is not restarted).
    Failed {
        reason: String,
        output: Option<String>,
    },
    /// It takes no traffic for now (it exited and is being restarted, or fails its health
    /// checks); a `Ready` follows when it is back.
    Down { event: ProcessEvent },
    /// Something worth telling people that changes nothing about its traffic.
    Note { event: ProcessEvent },
}

/// One event of a running set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetEvent {
    pub instance: String,
    pub service: ServiceName,
    pub state: InstanceState,
}

/// What every running set has, whatever runs it: its names, the stream of its events, and
/// whether it is kept running. A runtime creates one per set with [`SetChannel::new`], hands
/// the sender to whatever watches the instances, and the [`RunningSet`] methods that only need
/// these come for free.
#[derive(Debug)]
pub struct SetChannel {
    pub id: SetId,
    pub release: ReleaseId,
    pub instances: Vec<String>,
    events: mpsc::UnboundedReceiver<SetEvent>,
    /// Shared with the watchers: whether an instance that exits is restarted.
    pub keep_running: Arc<AtomicBool>,
}

impl SetChannel {
    /// The channel of `spec`'s set, and the sender its watchers report on.
    pub fn new(spec: &SetSpec) -> (SetChannel, mpsc::UnboundedSender<SetEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let channel = SetChannel {
            id: spec.id.clone(),
            release: spec.release.clone(),
            instances: spec.instances(),
            events: rx,
            keep_running: Arc::new(AtomicBool::new(false)),
        };
        (channel, tx)
    }
}

/// A started set. Its events come in the order they happened.
#[async_trait]
pub trait RunningSet: Send + Sync {
    /// The set's names, events and keep-running flag.
    fn channel(&self) -> &SetChannel;
    fn channel_mut(&mut self) -> &mut SetChannel;

    fn id(&self) -> &SetId {
        &self.channel().id
    }

    fn release(&self) -> &ReleaseId {
        &self.channel().release
    }

    /// Every instance's name.
    fn instances(&self) -> Vec<String> {
        self.channel().instances.clone()
    }

    /// The next event; `None` once the set has nothing more to say.
    async fn next_event(&mut self) -> Option<SetEvent> {
        self.channel_mut().events.recv().await
    }

    /// From now on (`true`) instances that exit are restarted, with backoff, instead of
    /// failing; `false` stops restarting (a set about to be retired).
    fn keep_running(&self, on: bool) {
        self.channel().keep_running.store(on, Ordering::SeqCst);
    }

    /// The last `lines` lines of each instance's output.
    fn logs(&self, lines: usize) -> Vec<(String, String)>;
    /// Stops every instance (each gets `grace` between the polite and the forced stop) and
    /// returns once all have ended; nothing of the set runs afterwards, not even an instance
    /// that was being restarted meanwhile.
    async fn retire(self: Box<Self>, grace: Duration);
}

#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// A short name for people (`local processes`).
    fn name(&self) -> &'static str;
    /// Starts every instance of `spec`. Failures of single instances are reported as
    /// events; an error here means nothing could be started.
    async fn start(&self, spec: SetSpec) -> Result<Box<dyn RunningSet>>;
    /// Called once at start-up: what a previous run of the server left running. Sets that
    /// can be adopted are returned (the caller keeps the one of each app's active release and
    /// retires the others); what cannot be adopted is stopped here.
    async fn recover(&self) -> Result<Vec<Box<dyn RunningSet>>>;
}
