//! The engine's front door: what the Console, the API and the CLI ask for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::artifacts::{git_description, ArchiveLimits, Artifacts, BuildSource, Upload};
use crate::auth::{actions, AuditEntry};
use crate::coordinator::{self, Command};
use crate::env::{EnvChange, EnvEdit, Environment};
use crate::error::{Error, Result};
use crate::ids::{PromotionId, ReleaseId};
use crate::model::*;
use crate::names::{Actor, AppName};
use crate::router::{self, RouterConfig, RoutingTable};
use crate::runtime::local::LocalRuntime;
use crate::runtime::processes::ProcessSets;
use crate::runtime::Runtime;
use crate::sandbox::{Isolation, IsolationChoice, Sandbox};
use crate::store::{self, Base, NewBuild, Store};
use crate::traffic::Traffic;

/// How long a rollout may take unless the promote says otherwise (Kubernetes'
/// `progressDeadlineSeconds`, Nomad's `progress_deadline`).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(600);
pub const MAX_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// Longest description of a release or build, in characters as sent.
pub const MAX_DESCRIPTION: usize = 1000;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `sqlite://path` or a path to the SQLite file.
    pub database_url: String,
    /// Artifacts and unpacked sources live here.
    pub data_dir: PathBuf,
    pub default_deadline: Duration,
    /// How long a stopping process has between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// How long in-flight requests to old processes may take to finish after a switch.
    pub drain_timeout: Duration,
    /// How builds and app processes are confined (see [`crate::sandbox`]).
    pub isolation: IsolationChoice,
    /// The first uid/gid of the apps' users when the server runs as root.
    pub app_uid_base: u32,
    /// Caps on uploaded sources.
    pub archive_limits: ArchiveLimits,
    /// How long a manifest's build command may run.
    pub build_timeout: Duration,
    /// The apps' router's timeouts ([`RouterConfig::default`] unless set).
    pub router: RouterConfig,
}

impl EngineConfig {
    pub fn new(database_url: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            database_url: database_url.into(),
            data_dir: data_dir.into(),
            default_deadline: DEFAULT_DEADLINE,
            stop_grace: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            isolation: IsolationChoice::Auto,
            app_uid_base: crate::sandbox::DEFAULT_UID_BASE,
            archive_limits: ArchiveLimits::default(),
            build_timeout: crate::artifacts::BUILD_TIMEOUT,
            router: RouterConfig::default(),
        }
    }
}

/// A release made directly (the API's "create release"): from a parent release (the newest
/// when `None`), with its build and environment unless others are given.
#[derive(Clone, Debug, Default)]
pub struct NewRelease {
    pub from: Option<ReleaseId>,
    pub build: Option<crate::ids::BuildId>,
    pub env: Option<Environment>,
    pub description: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct PromoteOptions {
    /// The rollout's deadline; the engine's default when `None`.
    pub deadline: Option<Duration>,
}

pub(crate) struct Inner {
    pub store: Store,
    pub artifacts: Artifacts,
    pub sandbox: Arc<Sandbox>,
    pub runtime: Arc<dyn Runtime>,
    /// Where the apps' traffic goes: the router's table.
    pub traffic: Arc<dyn Traffic>,
    routes: Arc<RoutingTable>,
    pub events: broadcast::Sender<EngineEvent>,
    pub config: EngineConfig,
    /// Each app's coordinator, the only owner of its processes and routes.
    coordinators: Mutex<HashMap<AppName, coordinator::Handle>>,
    /// Set when the server begins to stop: no new rollouts.
    stopping: std::sync::atomic::AtomicBool,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    router_addr: SocketAddr,
    /// Held while the engine runs: no second server uses the data dir.
    lock: Mutex<Option<std::fs::File>>,
    /// Counts every change of state that readers may have cached (see `Engine::change_seq`).
    changes: std::sync::atomic::AtomicU64,
}

impl Inner {
    pub fn publish(&self, event: EngineEvent) {
        // Counted before anyone hears of it: whoever reacts to the event sees the new count.
        self.changed();
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    /// Records a change that has no event of its own.
    pub fn changed(&self) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn coordinator_map(&self) -> std::sync::MutexGuard<'_, HashMap<AppName, coordinator::Handle>> {
        match self.coordinators.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        }
    }

    /// The coordinator of `app`, started if it has none yet: only for a promotion, which the
    /// store has recorded for an app that exists.
    pub(crate) fn coordinator(self: &Arc<Self>, app: &AppName) -> coordinator::Handle {
        self.coordinator_map()
            .entry(app.clone())
            .or_insert_with(|| coordinator::spawn(self, app.clone()))
            .clone()
    }

    /// The coordinator of `app` if it has one (it has never run anything otherwise): what
    /// only asks questions does not start one.
    pub(crate) fn existing_coordinator(&self, app: &AppName) -> Option<coordinator::Handle> {
        self.coordinator_map().get(app).cloned()
    }
}

/// A handle to the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// A promote of a release without a build (an app with only environment changes so far): a
/// well-formed request the release's state refuses.
fn no_build_error(release: Option<&ReleaseId>) -> Error {
    let what = match release {
        Some(id) => format!("{id} has no build to run"),
        None => "there is no build to run".into(),
    };
    Error::Conflict(format!("{what}; create a build first"))
}

/// The audit entry of `actor` doing `action` on `app` (target and result set by the use case).
fn audit_entry(actor: &Actor, action: &str, app: &AppName) -> AuditEntry {
    AuditEntry::new(actor.clone(), action).app(app)
}

/// The audit entry of an environment change; a failed one names the release it was based on.
fn env_audit(actor: &Actor, app: &AppName, base: Option<&ReleaseId>) -> AuditEntry {
    let entry = audit_entry(actor, actions::ENV_CHANGE, app);
    match base {
        Some(b) => entry.target(format!("based on {b}")),
        None => entry,
    }
}

fn check_description(d: &str) -> Result<String> {
    // As sent (before trimming), so that the API's document says exactly what is accepted.
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Error::invalid(
            "description",
            format!("is longer than {MAX_DESCRIPTION} characters"),
        ));
    }
    let d = d.trim();
    if d.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Error::invalid("description", "must be one line of text"));
    }
    Ok(d.to_owned())
}

impl Engine {
    /// Opens the store, cleans up after a previous run (orphaned processes, interrupted
    /// promotions), starts the router on `router_listener` and the runtime with the local
    /// (OS process) runtime, and brings every app's active release back up.
    pub async fn start(config: EngineConfig, router_listener: TcpListener) -> Result<Engine> {
        Self::start_inner(config, router_listener, |store, sandbox| {
            Arc::new(ProcessSets::new(LocalRuntime::new(sandbox), store.clone()))
        })
        .await
    }

    /// Starts the engine on another runtime (a cluster's, or [`crate::testing::FakeRuntime`]).
    pub async fn start_with_runtime(
        config: EngineConfig,
        router_listener: TcpListener,
        runtime: Arc<dyn Runtime>,
    ) -> Result<Engine> {
        Self::start_inner(config, router_listener, |_, _| runtime).await
    }

    /// Creates the data dir, private to the server (0700), locks it (a second server on the
    /// same dir would stop this one's apps), and works out the sandbox.
    async fn prepare_data_dir(config: &EngineConfig) -> Result<(Arc<Sandbox>, std::fs::File)> {
        use std::os::unix::fs::PermissionsExt;
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(Error::io(format!("making {} private", dir.display())))?;
        let lock = crate::lock::lock_data_dir(dir).await?;
        let sandbox = Sandbox::new(dir, config.isolation, config.app_uid_base).await?;
        tracing::info!(
            isolation = sandbox.isolation().name(),
            "builds and apps run confined: {}",
            sandbox.isolation()
        );
        Ok((Arc::new(sandbox), lock))
    }

    async fn start_inner(
        config: EngineConfig,
        router_listener: TcpListener,
        runtime: impl FnOnce(&Store, Arc<Sandbox>) -> Arc<dyn Runtime>,
    ) -> Result<Engine> {
        let (sandbox, lock) = Self::prepare_data_dir(&config).await?;
        let store = Store::open(&config.database_url).await?;
        let runtime = runtime(&store, sandbox.clone());
        let router_addr = router_listener
            .local_addr()
            .map_err(Error::io("reading the router's address"))?;
        let (events, _) = broadcast::channel(1024);
        let routes = RoutingTable::new();
        let inner = Arc::new(Inner {
            artifacts: Artifacts::new(&config.data_dir, config.archive_limits, sandbox.clone())
                .with_build_timeout(config.build_timeout),
            sandbox,
            store,
            runtime,
            traffic: routes.clone(),
            routes: routes.clone(),
            events,
            config,
            coordinators: Mutex::new(HashMap::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            router_addr,
            lock: Mutex::new(Some(lock)),
            changes: std::sync::atomic::AtomicU64::new(0),
        });
        // What a previous run left running: adopted where the runtime can, else stopped.
        let mut adopted = inner.runtime.recover().await?;
        let interrupted = inner
            .store
            .fail_running_promotions(crate::step::INTERRUPTED)
            .await?;
        for id in interrupted {
            tracing::warn!(promotion = %id, "marked an interrupted promotion as failed");
        }
        inner.tasks.spawn(router::serve(
            router_listener,
            routes,
            inner.config.router,
            inner.shutdown.clone(),
        ));
        // Every app with an active release gets its coordinator, which brings it back up.
        let active = inner.store.active_releases().await?;
        {
            let mut all = inner.coordinator_map();
            for (app, release) in active {
                let found = adopted
                    .iter()
                    .position(|s| s.release() == &release)
                    .map(|i| adopted.swap_remove(i));
                let handle = coordinator::spawn_with(&inner, app.clone(), Some(release), found);
                all.insert(app, handle);
            }
        }
        for set in adopted {
            tracing::info!(set = %set.id(), "retiring a set left by a previous run");
            set.retire(inner.config.stop_grace).await;
        }
        Ok(Engine { inner })
    }

    /// How builds and app processes are confined.
    pub fn isolation(&self) -> &Isolation {
        self.inner.sandbox.isolation()
    }

    /// Where the apps' router listens.
    pub fn router_addr(&self) -> SocketAddr {
        self.inner.router_addr
    }

    /// Where the router sends `app`'s requests now (`None`: it does not know the app; an
    /// empty list: the app's release is being brought up).
    pub fn routes(&self, app: &AppName) -> Option<Vec<router::SetView>> {
        self.inner.routes.view(app.as_str())
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Waits until the active releases found at start-up have been brought back up (or have
    /// failed to come up).
    pub async fn wait_restored(&self) {
        for handle in self.coordinators() {
            handle.wait_restored().await;
        }
    }

    fn coordinators(&self) -> Vec<coordinator::Handle> {
        self.inner.coordinator_map().values().cloned().collect()
    }

    /// Live events: promotion steps, finished promotions, new releases, process crashes.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    // ---- apps ----

    /// Creates an app (audited as `app.create`).
    pub async fn create_app(&self, name: &AppName, actor: &Actor) -> Result<App> {
        let audit = audit_entry(actor, actions::APP_CREATE, name);
        let result = self.inner.store.create_app(name, actor, &audit).await;
        let app = self.audited(&audit, result).await?;
        self.inner.changed();
        Ok(app)
    }

    /// Records a use case that failed in the audit log, with `audit`'s subject and the error
    /// as the reason, in a write of its own (the change itself, if it got that far, was rolled
    /// back). A successful use case wrote its entry in its own transaction already. The
    /// result is passed through; a failure to record is logged, never hides the error.
    async fn audited<T>(&self, audit: &AuditEntry, result: Result<T>) -> Result<T> {
        self.inner
            .store
            .audit_failure(audit, result, crate::model::now_ms())
            .await
    }

    /// A number that grows with every change of the engine's state (a release, a promotion
    /// step, a process starting or stopping, a new app), counted before the change's event is
    /// published. A page rendered at count N is current as long as the count is still N.
    pub fn change_seq(&self) -> u64 {
        self.inner.changes.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub async fn app(&self, name: &AppName) -> Result<App> {
        self.inner.store.app(name).await
    }

    pub async fn list_apps(&self) -> Result<Vec<AppSummary>> {
        self.inner.store.list_apps().await
    }

    // ---- builds ----

    /// Stores a build's source, runs its build command, and creates a release with it and the
    /// environment of the app's newest release. The description is the given one, or for a
    /// directory that is a clean git work tree `build <10-char sha> <commit subject>`.
    /// Audited as `build.create`, naming the build and its release.
    pub async fn create_build(
        &self,
        app: &AppName,
        source: BuildSource,
        description: Option<&str>,
        git_sha: Option<&str>,
        actor: &Actor,
    ) -> Result<(Build, Release)> {
        let audit = audit_entry(actor, actions::BUILD_CREATE, app);
        let result = self
            .create_build_inner(app, source, description, git_sha, actor, &audit)
            .await;
        self.audited(&audit, result).await
    }

    async fn create_build_inner(
        &self,
        app: &AppName,
        source: BuildSource,
        description: Option<&str>,
        git_sha: Option<&str>,
        actor: &Actor,
        audit: &AuditEntry,
    ) -> Result<(Build, Release)> {
        // The app's number is also whose user its build runs as.
        let tenant = crate::sandbox::Tenant {
            app: app.clone(),
            number: self.inner.store.app_id(app).await?,
        };
        let mut description = description.map(check_description).transpose()?;
        let mut git_sha = git_sha.map(str::to_owned);
        if let BuildSource::Directory(dir) = &source {
            if description.is_none() || git_sha.is_none() {
                if let Some((sha, desc)) = git_description(dir).await {
                    git_sha.get_or_insert(sha);
                    description.get_or_insert(desc);
                }
            }
        }
        let description = description.unwrap_or_default();
        let stored = self.inner.artifacts.store(&tenant, source).await?;
        let build_id = crate::ids::BuildId::generate();
        let release_id = ReleaseId::generate();
        let release = self
            .inner
            .store
            .insert_build_with_release(
                app,
                NewBuild {
                    id: &build_id,
                    description: &description,
                    artifact: &stored.sha256,
                    manifest: &stored.manifest_text,
                    git_sha: git_sha.as_deref(),
                    actor,
                },
                &release_id,
                &audit
                    .clone()
                    .target(format!("{build_id} release {release_id}")),
            )
            .await?;
        self.inner.publish(EngineEvent::ReleaseCreated {
            app: app.clone(),
            release: release.id.clone(),
        });
        let build = self.inner.store.build(app, &build_id).await?;
        Ok((build, release))
    }

    /// Starts receiving a source archive into the data dir (for [`BuildSource::File`]);
    /// refused at once when `expected_len` is over the archive size limit.
    pub async fn begin_upload(&self, expected_len: Option<u64>) -> Result<Upload> {
        self.inner.artifacts.begin_upload(expected_len).await
    }

    /// Creates the app if it does not exist yet, builds `source` and promotes the build's
    /// release: a first deploy in one call. Each step is audited as itself (`app.create`
    /// when the app is new, `build.create`, `release.promote`), in the step's transaction.
    pub async fn deploy(
        &self,
        app: &AppName,
        source: BuildSource,
        description: Option<&str>,
        options: &PromoteOptions,
        actor: &Actor,
    ) -> Result<(Release, Promotion)> {
        match self.inner.store.app(app).await {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => self.create_app(app, actor).await.map(|_| ())?,
            Err(e) => return Err(e),
        }
        let (_, release) = self
            .create_build(app, source, description, None, actor)
            .await?;
        let promotion = self.promote(app, &release.id, options, actor).await?;
        Ok((release, promotion))
    }

    pub async fn list_builds(&self, app: &AppName, limit: u32) -> Result<Vec<Build>> {
        self.inner.store.app(app).await?;
        self.inner
            .store
            .list_builds(app, limit.clamp(1, 1000))
            .await
    }

    pub async fn build(&self, app: &AppName, id: &crate::ids::BuildId) -> Result<Build> {
        self.inner.store.build(app, id).await
    }

    // ---- releases ----

    pub async fn release(&self, app: &AppName, id: &ReleaseId) -> Result<Release> {
        self.inner.store.release(app, id).await
    }

    pub async fn newest_release(&self, app: &AppName) -> Result<Option<Release>> {
        self.inner.store.app(app).await?;
        self.inner.store.newest_release(app).await
    }

    /// The releases of `app` among `ids`, with their environments (unknown IDs are left out),
    /// in one query.
    pub async fn releases_among(&self, app: &AppName, ids: &[ReleaseId]) -> Result<Vec<Release>> {
        self.inner.store.app(app).await?;
        self.inner.store.releases_among(app, ids).await
    }

    /// Releases newest first, as summaries (no environments); pass the last `seq` seen as
    /// `before_seq` for the next page.
    pub async fn list_releases(
        &self,
        app: &AppName,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ReleaseListItem>> {
        self.inner
            .store
            .list_releases(app, before_seq, limit.clamp(1, 1000))
            .await
    }

    /// Creates a release from the newest one with `change` applied to its environment. With
    /// `base`, the change is refused (`StaleBase`) unless `base` is still the newest release,
    /// so that nobody's edit silently overwrites another's. The description is Convox's
    /// `env add:.. change:.. remove:..` unless one is given.
    pub async fn change_env(
        &self,
        app: &AppName,
        change: &EnvChange,
        base: Option<&ReleaseId>,
        description: Option<&str>,
        actor: &Actor,
    ) -> Result<Release> {
        let audit = env_audit(actor, app, base);
        let result = self
            .change_env_inner(app, change, &Base::or_any(base), description, None, actor)
            .await;
        let (release, _) = self.audited(&audit, result).await?;
        Ok(release)
    }

    /// [`Engine::change_env`] and [`Engine::promote`] as one step: the release and its running
    /// promotion are written in one transaction, so a refused promote (another rollout runs,
    /// the newest release has no build) leaves no release behind.
    pub async fn change_env_and_promote(
        &self,
        app: &AppName,
        change: &EnvChange,
        base: Option<&ReleaseId>,
        description: Option<&str>,
        options: &PromoteOptions,
        actor: &Actor,
    ) -> Result<(Release, Promotion)> {
        let audit = env_audit(actor, app, base);
        let result = self
            .change_env_and_promote_inner(
                app,
                change,
                &Base::or_any(base),
                description,
                options,
                actor,
            )
            .await;
        self.audited(&audit, result).await
    }

    async fn change_env_and_promote_inner(
        &self,
        app: &AppName,
        change: &EnvChange,
        base: &Base,
        description: Option<&str>,
        options: &PromoteOptions,
        actor: &Actor,
    ) -> Result<(Release, Promotion)> {
        let deadline = self.check_promote(app, options).await?;
        let (release, promotion) = self
            .change_env_inner(app, change, base, description, Some(deadline), actor)
            .await?;
        let promotion = promotion.ok_or_else(|| Error::Internal("no promotion recorded".into()))?;
        self.roll_out(promotion.clone(), release.clone(), deadline)?;
        Ok((release, promotion))
    }

    async fn change_env_inner(
        &self,
        app: &AppName,
        change: &EnvChange,
        base: &Base,
        description: Option<&str>,
        promote: Option<Duration>,
        actor: &Actor,
    ) -> Result<(Release, Option<Promotion>)> {
        let description = description.map(check_description).transpose()?;
        let mut uow = self.inner.store.begin().await?;
        let mut locked = uow.lock_app(app).await?;
        uow.check(&locked, base).await?;
        let newest = locked.newest.as_ref();
        let old = newest.map(|r| r.env.clone()).unwrap_or_default();
        let new = old.apply(change)?;
        let diff = old.diff(&new);
        if diff.is_empty() {
            return Err(Error::NothingToChange);
        }
        let build = newest.and_then(|r| r.build.clone());
        if promote.is_some() && build.is_none() {
            return Err(no_build_error(newest.map(|r| &r.id)));
        }
        let description = description
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| diff.description());
        let id = ReleaseId::generate();
        // Key names only, never values: `R… env add:A change:B`.
        let mut target = format!("{id} {}", diff.description());
        if promote.is_some() {
            target.push_str(" (promoted)");
        }
        let release = uow
            .insert_release(
                &mut locked,
                &store::NewRelease {
                    id: &id,
                    build: build.as_ref(),
                    env: &new,
                    description: &description,
                    rollback_of: None,
                    actor,
                },
            )
            .await?;
        let promotion = match promote {
            Some(deadline) => Some(
                uow.start_promotion(&locked, &release.id, actor, deadline)
                    .await?,
            ),
            None => None,
        };
        uow.audit(&audit_entry(actor, actions::ENV_CHANGE, app).target(target))
            .await?;
        uow.commit().await?;
        self.inner.publish(EngineEvent::ReleaseCreated {
            app: app.clone(),
            release: release.id.clone(),
        });
        Ok((release, promotion))
    }

    /// What an environment editor's `edit` makes of the environment of `base` — the newest
    /// release when the editor was opened (`None`: the app had none). Returns the base
    /// release and the new environment. Refused like [`Engine::change_env`] when `base` is no
    /// longer the newest release (`StaleBase`, saying what changed), and with every field's
    /// error at once (`Error::Fields`) when the edit is wrong.
    pub async fn plan_env_edit(
        &self,
        app: &AppName,
        base: Option<&ReleaseId>,
        edit: &EnvEdit,
    ) -> Result<(Option<Release>, Environment)> {
        let newest = self.newest_release(app).await?;
        let base = match (base, newest) {
            (Some(id), Some(newest)) if &newest.id == id => Some(newest),
            (Some(id), Some(newest)) => {
                let base = self.release(app, id).await?;
                return Err(crate::store::stale_base(&base, &newest));
            }
            (Some(id), None) => return Err(Error::not_found("release", id)),
            (None, Some(newest)) => {
                return Err(Error::Conflict(format!(
                "the environment changed since the editor was opened: release {} ({}) was created",
                newest.id, newest.description
            )))
            }
            (None, None) => None,
        };
        let old = base.as_ref().map(|b| b.env.clone()).unwrap_or_default();
        let new = edit.apply_to(&old)?;
        Ok((base, new))
    }

    /// Applies an environment editor's `edit` (see [`Engine::plan_env_edit`]): the new
    /// release and, when there is a build to run, its promotion, in one step. Without a build
    /// the release is only made.
    pub async fn apply_env_edit(
        &self,
        app: &AppName,
        base: Option<&ReleaseId>,
        edit: &EnvEdit,
        options: &PromoteOptions,
        actor: &Actor,
    ) -> Result<(Release, Option<Promotion>)> {
        let audit = env_audit(actor, app, base);
        let result = self
            .apply_env_edit_inner(app, base, edit, options, actor)
            .await;
        self.audited(&audit, result).await
    }

    async fn apply_env_edit_inner(
        &self,
        app: &AppName,
        base: Option<&ReleaseId>,
        edit: &EnvEdit,
        options: &PromoteOptions,
        actor: &Actor,
    ) -> Result<(Release, Option<Promotion>)> {
        let (base, new) = self.plan_env_edit(app, base, edit).await?;
        let change = EnvChange::replace_with(&new);
        let base_id = Base::or_empty(base.as_ref().map(|b| &b.id));
        if base.as_ref().is_some_and(|b| b.build.is_some()) {
            let (release, promotion) = self
                .change_env_and_promote_inner(app, &change, &base_id, None, options, actor)
                .await?;
            Ok((release, Some(promotion)))
        } else {
            let (release, _) = self
                .change_env_inner(app, &change, &base_id, None, None, actor)
                .await?;
            Ok((release, None))
        }
    }

    /// The environment of `release` (the app's newest when `None`) with its values, for
    /// `actor`: audited as `env.reveal` naming the release. The entry is written *before*
    /// anything is returned, and when it cannot be written nothing is revealed (the error is
    /// returned). `Ok(None)`: the app has no release yet.
    pub async fn reveal_env(
        &self,
        app: &AppName,
        release: Option<&ReleaseId>,
        actor: &Actor,
    ) -> Result<Option<Release>> {
        let audit = audit_entry(actor, actions::ENV_REVEAL, app);
        let audit = match release {
            Some(id) => audit.target(id.as_str()),
            None => audit,
        };
        let result = async {
            let found = match release {
                Some(id) => Some(self.inner.store.release(app, id).await?),
                None => self.newest_release(app).await?,
            };
            let entry = match &found {
                Some(r) => audit.clone().target(r.id.as_str()),
                None => audit.clone(),
            };
            self.inner
                .store
                .insert_audit(&entry, crate::model::now_ms())
                .await?;
            Ok(found)
        }
        .await;
        self.audited(&audit, result).await
    }

    /// The value of one variable of `release`, for `actor`: audited as `env.reveal` naming the
    /// release and the key (never the value), written before the value is returned; when the
    /// entry cannot be written the value is not returned.
    pub async fn reveal_env_value(
        &self,
        app: &AppName,
        release: &ReleaseId,
        key: &str,
        actor: &Actor,
    ) -> Result<String> {
        let audit = audit_entry(actor, actions::ENV_REVEAL, app).target(release.as_str());
        // Only a well-formed key is named in the log.
        let (audit, result) =
            match crate::env::EnvKey::parse(key) {
                Err(e) => (audit, Err(e.into())),
                Ok(key) => {
                    let audit = audit.target(format!("{release} {key}"));
                    let result =
                        async {
                            let found = self.inner.store.release(app, release).await?;
                            let value = found.env.get(key.as_str()).map(str::to_owned).ok_or_else(
                                || Error::not_found("variable", format!("{key} in {release}")),
                            )?;
                            self.inner
                                .store
                                .insert_audit(&audit, crate::model::now_ms())
                                .await?;
                            Ok(value)
                        }
                        .await;
                    (audit, result)
                }
            };
        self.audited(&audit, result).await
    }

    /// What would change, per key, if `env` replaced the newest release's environment.
    pub async fn preview_env(
        &self,
        app: &AppName,
        env: &Environment,
    ) -> Result<crate::env::EnvDiff> {
        let newest = self.newest_release(app).await?;
        Ok(newest.map(|r| r.env).unwrap_or_default().diff(env))
    }

    // ---- promotions ----

    /// Starts rolling `release` out and returns the running promotion at once. Refused with
    /// `RolloutInProgress` while another rollout of the app runs.
    pub async fn promote(
        &self,
        app: &AppName,
        release: &ReleaseId,
        options: &PromoteOptions,
        actor: &Actor,
    ) -> Result<Promotion> {
        let audit = audit_entry(actor, actions::RELEASE_PROMOTE, app).target(release.as_str());
        let result = self
            .promote_inner(app, release, options, actor, &audit)
            .await;
        self.audited(&audit, result).await
    }

    async fn promote_inner(
        &self,
        app: &AppName,
        release: &ReleaseId,
        options: &PromoteOptions,
        actor: &Actor,
        audit: &AuditEntry,
    ) -> Result<Promotion> {
        let deadline = self.check_promote(app, options).await?;
        let release = self.inner.store.release(app, release).await?;
        if release.build.is_none() {
            return Err(no_build_error(Some(&release.id)));
        }
        let promotion = self
            .inner
            .store
            .start_promotion(app, &release.id, actor, deadline, audit)
            .await?;
        self.roll_out(promotion.clone(), release, deadline)?;
        Ok(promotion)
    }

    /// The rollout deadline `options` ask for, if a promote of `app` may start now: the
    /// server is not stopping, and the end of the app's last rollout is recorded (if the
    /// store would not take it before, it is tried again now).
    async fn check_promote(&self, app: &AppName, options: &PromoteOptions) -> Result<Duration> {
        let deadline = options
            .deadline
            .unwrap_or(self.inner.config.default_deadline);
        if deadline.is_zero() || deadline > MAX_DEADLINE {
            return Err(Error::invalid(
                "timeout",
                format!(
                    "must be between 1 second and {} hours",
                    MAX_DEADLINE.as_secs() / 3600
                ),
            ));
        }
        if self.stopping() {
            return Err(Error::Conflict("the server is shutting down".into()));
        }
        self.inner.store.app(app).await?;
        self.settle(app).await?;
        Ok(deadline)
    }

    /// Has the app's coordinator record the end of a promotion the store refused before (an
    /// error says why it still cannot); nothing to do for an app that has none.
    async fn settle(&self, app: &AppName) -> Result<()> {
        match self.inner.existing_coordinator(app) {
            Some(c) => c.ask(|reply| Command::Settle { reply }).await?,
            None => Ok(()),
        }
    }

    fn stopping(&self) -> bool {
        self.inner
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Hands a recorded promotion to the app's coordinator.
    fn roll_out(&self, promotion: Promotion, release: Release, deadline: Duration) -> Result<()> {
        self.inner
            .coordinator(&promotion.app)
            .send(Command::Promote {
                promotion: Box::new(promotion),
                release: Box::new(release),
                deadline,
            })
    }

    /// Creates a release from `spec.from` (or the newest release) with the given build and/or
    /// environment replacing the parent's. The description is the given one, else the
    /// environment change in Convox's words, else `release from <parent>`.
    pub async fn create_release(
        &self,
        app: &AppName,
        spec: &NewRelease,
        actor: &Actor,
    ) -> Result<Release> {
        let audit = audit_entry(actor, actions::RELEASE_CREATE, app);
        let result = self.create_release_inner(app, spec, actor).await;
        self.audited(&audit, result).await
    }

    async fn create_release_inner(
        &self,
        app: &AppName,
        spec: &NewRelease,
        actor: &Actor,
    ) -> Result<Release> {
        let description = spec
            .description
            .as_deref()
            .map(check_description)
            .transpose()?;
        if let Some(build) = &spec.build {
            self.inner.store.build(app, build).await?;
        }
        let parent = match &spec.from {
            Some(id) => Some(self.inner.store.release(app, id).await?),
            None => None,
        };
        let mut uow = self.inner.store.begin().await?;
        let mut locked = uow.lock_app(app).await?;
        let base = parent.as_ref().or(locked.newest.as_ref());
        let old_env = base.map(|r| r.env.clone()).unwrap_or_default();
        let env = spec.env.clone().unwrap_or_else(|| old_env.clone());
        let build = spec
            .build
            .clone()
            .or_else(|| base.and_then(|r| r.build.clone()));
        let diff = old_env.diff(&env);
        let description = match description.filter(|d| !d.is_empty()) {
            Some(d) => d,
            None if !diff.is_empty() => diff.description(),
            None => match base {
                Some(b) => format!("release from {}", b.id),
                None => "first release".into(),
            },
        };
        let id = ReleaseId::generate();
        let release = uow
            .insert_release(
                &mut locked,
                &store::NewRelease {
                    id: &id,
                    build: build.as_ref(),
                    env: &env,
                    description: &description,
                    rollback_of: None,
                    actor,
                },
            )
            .await?;
        uow.audit(&audit_entry(actor, actions::RELEASE_CREATE, app).target(id.as_str()))
            .await?;
        uow.commit().await?;
        self.inner.publish(EngineEvent::ReleaseCreated {
            app: app.clone(),
            release: release.id.clone(),
        });
        Ok(release)
    }

    /// Creates a new release with the build and environment of `target` (marked as a rollback
    /// of it) and promotes it. `target` itself is left as it was.
    pub async fn rollback(
        &self,
        app: &AppName,
        target: &ReleaseId,
        options: &PromoteOptions,
        actor: &Actor,
    ) -> Result<(Release, Promotion)> {
        let audit = audit_entry(actor, actions::RELEASE_ROLLBACK, app).target(target.as_str());
        let result = self.rollback_inner(app, target, options, actor).await;
        self.audited(&audit, result).await
    }

    async fn rollback_inner(
        &self,
        app: &AppName,
        target: &ReleaseId,
        options: &PromoteOptions,
        actor: &Actor,
    ) -> Result<(Release, Promotion)> {
        let deadline = self.check_promote(app, options).await?;
        let old = self.inner.store.release(app, target).await?;
        if old.build.is_none() {
            return Err(no_build_error(Some(&old.id)));
        }
        let mut uow = self.inner.store.begin().await?;
        let mut locked = uow.lock_app(app).await?;
        let id = ReleaseId::generate();
        let release = uow
            .insert_release(
                &mut locked,
                &store::NewRelease {
                    id: &id,
                    build: old.build.as_ref(),
                    env: &old.env,
                    description: &format!("rollback to {}", old.id),
                    rollback_of: Some(&old.id),
                    actor,
                },
            )
            .await?;
        let promotion = uow
            .start_promotion(&locked, &release.id, actor, deadline)
            .await?;
        uow.audit(
            &audit_entry(actor, actions::RELEASE_ROLLBACK, app)
                .target(format!("{} as new release {id}", old.id)),
        )
        .await?;
        uow.commit().await?;
        self.inner.publish(EngineEvent::ReleaseCreated {
            app: app.clone(),
            release: release.id.clone(),
        });
        self.roll_out(promotion.clone(), release.clone(), deadline)?;
        Ok((release, promotion))
    }

    /// The app's rollout in progress, as its coordinator knows it.
    async fn running_promotion(&self, app: &AppName) -> Result<Option<PromotionId>> {
        match self.inner.existing_coordinator(app) {
            Some(c) => c.ask(|reply| Command::Running { reply }).await,
            None => Ok(None),
        }
    }

    /// Cancels the app's running rollout: the new processes are stopped and the active release
    /// keeps serving. Returns the promotion once it has ended.
    /// Audited as `promotion.cancel`, naming the promotion; the entry is written before the
    /// rollout is told to stop (and if it cannot be written, the rollout is not cancelled).
    pub async fn cancel(&self, app: &AppName, actor: &Actor) -> Result<Promotion> {
        let audit = audit_entry(actor, actions::PROMOTION_CANCEL, app);
        let result = self.cancel_inner(app, actor, &audit).await;
        self.audited(&audit, result).await
    }

    async fn cancel_inner(
        &self,
        app: &AppName,
        actor: &Actor,
        audit: &AuditEntry,
    ) -> Result<Promotion> {
        self.inner.store.app(app).await?;
        let (Some(coordinator), Some(promotion)) = (
            self.inner.existing_coordinator(app),
            self.running_promotion(app).await?,
        ) else {
            // A rollout that ended but could not be recorded says so here.
            self.settle(app).await?;
            return Err(Error::Conflict(format!(
                "no rollout is in progress for app {app}"
            )));
        };
        self.inner
            .store
            .insert_audit(
                &audit.clone().target(promotion.as_str()),
                crate::model::now_ms(),
            )
            .await?;
        let done = coordinator
            .ask(|reply| Command::Cancel {
                promotion: promotion.clone(),
                by: actor.to_string(),
                reply,
            })
            .await?;
        if let Some(mut done) = done {
            let bound = self.inner.config.stop_grace + Duration::from_secs(30);
            let _ = tokio::time::timeout(bound, done.wait_for(|d| *d)).await;
        }
        self.inner.store.promotion(&promotion).await
    }

    pub async fn promotion(&self, id: &PromotionId) -> Result<PromotionDetail> {
        let promotion = self.inner.store.promotion(id).await?;
        let events = self.inner.store.promotion_events(id).await?;
        Ok(PromotionDetail { promotion, events })
    }

    pub async fn list_promotions(
        &self,
        app: &AppName,
        release: Option<&ReleaseId>,
        limit: u32,
    ) -> Result<Vec<Promotion>> {
        self.inner.store.app(app).await?;
        self.inner
            .store
            .list_promotions(app, release, limit.clamp(1, 1000))
            .await
    }

    /// A promotion's event log, oldest first.
    pub async fn promotion_events(&self, id: &PromotionId) -> Result<Vec<PromotionEvent>> {
        self.inner.store.promotion_events(id).await
    }

    /// Every promotion of a release, newest first, each with its event log (two queries).
    pub async fn release_promotions(
        &self,
        app: &AppName,
        release: &ReleaseId,
    ) -> Result<Vec<PromotionDetail>> {
        let promotions = self
            .inner
            .store
            .list_promotions(app, Some(release), 1000)
            .await?;
        let mut events = self.inner.store.release_events(release).await?;
        Ok(promotions
            .into_iter()
            .map(|promotion| PromotionDetail {
                events: events.remove(&promotion.id).unwrap_or_default(),
                promotion,
            })
            .collect())
    }

    /// Waits until the promotion has ended, at most `timeout`, and returns it as it is then.
    pub async fn wait_for_promotion(
        &self,
        id: &PromotionId,
        timeout: Duration,
    ) -> Result<Promotion> {
        let mut rx = self.subscribe();
        let p = self.inner.store.promotion(id).await?;
        if p.state.is_finished() {
            return Ok(p);
        }
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(EngineEvent::PromotionFinished { promotion, .. }) if &promotion.id == id => {
                        return
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        // After a lag the event may be gone: look at the store.
                        if let Ok(p) = self.inner.store.promotion(id).await {
                            let running = self.running_promotion(&p.app).await.ok().flatten();
                            if p.state.is_finished() && running.as_ref() != Some(id) {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.inner.store.promotion(id).await
    }

    /// Output of the running processes of the app's active release, by process name.
    pub async fn process_output(&self, app: &AppName, lines: usize) -> Vec<(String, String)> {
        match self.inner.existing_coordinator(app) {
            Some(c) => c
                .ask(|reply| Command::Output { lines, reply })
                .await
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// What to mask in output of `app` (see [`crate::redact`]) shown to someone who may not
    /// see its environment values: the values of `releases` (the ones the output came from)
    /// and of the app's active release. One query, whatever the number of releases.
    pub async fn output_redactor(
        &self,
        app: &AppName,
        releases: &[ReleaseId],
    ) -> Result<crate::redact::Redactor> {
        let mut ids: Vec<ReleaseId> = releases.to_vec();
        ids.extend(self.inner.store.app(app).await?.active_release);
        ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        ids.dedup();
        let found = self.inner.store.releases_among(app, &ids).await?;
        Ok(crate::redact::Redactor::from_envs(
            found.iter().map(|r| &r.env),
        ))
    }

    /// Masks `app`'s environment values in the failed output of `promotions` (each ran with
    /// its own release's values), for someone who may not see them. Reads nothing when none
    /// has output.
    pub async fn redact_promotions(
        &self,
        app: &AppName,
        promotions: &mut [Promotion],
    ) -> Result<()> {
        let releases: Vec<ReleaseId> = promotions
            .iter()
            .filter(|p| p.failed_output.is_some())
            .map(|p| p.release.clone())
            .collect();
        if releases.is_empty() {
            return Ok(());
        }
        let redactor = self.output_redactor(app, &releases).await?;
        promotions
            .iter_mut()
            .for_each(|p| redactor.redact_promotion(p));
        Ok(())
    }

    /// Stops every rollout (rolling it back) and every process, and the router. The active
    /// releases come back up at the next start.
    pub async fn shutdown(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let waits = self.coordinators().into_iter().map(|c| async move {
            let _ = c.ask(|reply| Command::Shutdown { reply }).await;
        });
        let _ =
            tokio::time::timeout(Duration::from_secs(90), futures::future::join_all(waits)).await;
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.inner.tasks.wait()).await;
        self.inner.store.close().await;
        // The data dir is free for the next server.
        if let Ok(mut lock) = self.inner.lock.lock() {
            lock.take();
        }
    }
}
