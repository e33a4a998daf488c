//! Where releases run. [`Runtime`] is the seam, in terms of release *sets* (every process of
//! one start of one release), so that a Kubernetes runtime can implement it as well as the
//! local one: start a set, observe its instances' states as a stream of [`SetEvent`]s,
//! retire it, recover what a previous run left, read its logs. Pids, process groups, health
//! probing and restarts with backoff are a runtime's own concern, not the rollout's.
//!
//! [`local::LocalRuntime`] runs one process ([`Process`]) as a real OS process on this
//! machine ([`ProcessRuntime`]); [`processes::ProcessSets`] builds the set-level runtime on
//! top of any process runtime.

pub mod local;
pub mod processes;
mod set;

pub use set::*;

use async_trait::async_trait;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::ids::ReleaseId;
use crate::names::{AppName, ServiceName};

/// What to run: one process of one service of one release.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub app: AppName,
    /// The app's number in the store: its processes run as the sandbox's uid base plus this.
    pub app_number: i64,
    pub release: ReleaseId,
    pub service: ServiceName,
    /// 1-based index within the service (`web.1`, `web.2`).
    pub index: u32,
    pub command: String,
    pub cwd: PathBuf,
    /// The release's environment; the runtime adds `PORT`, `SLIPWAY_*`.
    pub env: Vec<(String, String)>,
    /// Whether the process serves HTTP and so needs a port.
    pub http: bool,
}

impl ProcessSpec {
    pub fn name(&self) -> String {
        format!("{}.{}", self.service, self.index)
    }

    /// Whose code this is, for the sandbox.
    pub fn tenant(&self) -> crate::sandbox::Tenant {
        crate::sandbox::Tenant {
            app: self.app.clone(),
            number: self.app_number,
        }
    }
}

/// A started process.
#[async_trait]
pub trait Process: Send + Sync + std::fmt::Debug {
    /// Unique across restarts (recorded in the store).
    fn id(&self) -> &str;
    /// `web.1`.
    fn name(&self) -> &str;
    fn spec(&self) -> &ProcessSpec;
    /// Where it serves HTTP, for services with a port.
    fn addr(&self) -> Option<SocketAddr>;
    /// The OS process id and its start time in clock ticks since boot, where there is one.
    fn os_identity(&self) -> Option<(u32, Option<i64>)>;
    /// `None` while running; a description of how it ended otherwise.
    fn exit_status(&self) -> Option<String>;
    /// Waits until the process has ended and says how.
    async fn exited(&self) -> String;
    /// Asks the process to stop, and kills it after `grace`. Returns once it has ended.
    async fn stop(&self, grace: Duration);
    /// The last `lines` lines of its stdout and stderr.
    fn output_tail(&self, lines: usize) -> String;
}

/// Starts single processes (the local runtime's building block).
#[async_trait]
pub trait ProcessRuntime: Send + Sync + 'static {
    async fn start(&self, spec: ProcessSpec) -> Result<Arc<dyn Process>>;
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
