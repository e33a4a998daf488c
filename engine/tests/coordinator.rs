//! The rollout state machine, path by path, on a scripted runtime (`FakeRuntime`) with tokio's
//! clock frozen: time moves only when a test says so, so each path plays out the same way every
//! run. The store is the real one (SQLite); its failures are real too — a trigger makes a
//! write fail the way a full disk would.

mod common;

use common::config;
use engine::router::SetView;
use engine::testing::{example_copy, freeze_time, Behaviour, FakeRuntime};
use engine::*;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Every wait is bounded by this much real (wall-clock) time.
const REAL_WAIT: Duration = Duration::from_secs(60);

/// `f`, bounded by real time (tokio's clock is frozen).
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(REAL_WAIT);
        let _ = tx.send(());
    });
    tokio::select! {
        out = f => out,
        _ = rx => panic!("{what}: not within {REAL_WAIT:?}"),
    }
}

async fn start(data: &Path, fake: &FakeRuntime) -> Engine {
    let router = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Engine::start_with_runtime(config(data), router, Arc::new(fake.clone()))
        .await
        .unwrap()
}

struct Env {
    engine: Engine,
    fake: FakeRuntime,
    app: AppName,
    actor: Actor,
    data: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        freeze_time();
        let data = tempfile::tempdir().unwrap();
        let fake = FakeRuntime::new();
        let engine = start(data.path(), &fake).await;
        let app = AppName::parse("hello").unwrap();
        let actor = Actor::new("tester");
        engine.create_app(&app, &actor).await.unwrap();
        Env {
            engine,
            fake,
            app,
            actor,
            data,
        }
    }

    /// An engine whose first release serves, and a second release of it not promoted yet.
    async fn serving_one_with_another() -> (Env, Release, Release) {
        let env = Env::new().await;
        let r1 = env.first().await;
        env.deploy(&r1).await;
        let r2 = env.next(2).await;
        (env, r1, r2)
    }

    /// The first release: a build of the example app.
    async fn first(&self) -> Release {
        let src = example_copy(|s| s);
        let (_, release) = within(
            "a build",
            self.engine.create_build(
                &self.app,
                BuildSource::Directory(src.path().into()),
                Some("example"),
                None,
                &self.actor,
            ),
        )
        .await
        .unwrap();
        release
    }

    /// Another release of the same build (`N=n` in its environment).
    async fn next(&self, n: u32) -> Release {
        let change = EnvChange::set_from_args([format!("N={n}")]).unwrap();
        self.engine
            .change_env(&self.app, &change, None, None, &self.actor)
            .await
            .unwrap()
    }

    async fn promote(&self, release: &Release, deadline: Option<Duration>) -> Promotion {
        self.engine
            .promote(
                &self.app,
                &release.id,
                &PromoteOptions { deadline },
                &self.actor,
            )
            .await
            .unwrap()
    }

    async fn wait(&self, p: &Promotion) -> Promotion {
        let p = within(
            "the promotion's end",
            self.engine
                .wait_for_promotion(&p.id, Duration::from_secs(24 * 3600)),
        )
        .await
        .unwrap();
        assert!(p.state.is_finished(), "{p:?}");
        p
    }

    async fn deploy(&self, release: &Release) -> Promotion {
        let p = self.promote(release, None).await;
        let p = self.wait(&p).await;
        assert_eq!(p.state, PromotionState::Active, "{p:?}");
        p
    }

    async fn steps(&self, p: &Promotion) -> Vec<Step> {
        self.engine
            .promotion(&p.id)
            .await
            .unwrap()
            .events
            .into_iter()
            .map(|e| e.step)
            .collect()
    }

    /// Waits (bounded) until the runtime has been asked to start `n` sets.
    async fn until_started(&self, n: usize) {
        within(
            "a set to start",
            self.fake.until(|f| f.started_sets().len() >= n),
        )
        .await;
    }

    fn routes(&self) -> Option<Vec<SetView>> {
        self.engine.routes(&self.app)
    }

    /// The release whose set gets all the app's traffic, and that set's backends' names.
    fn serving(&self) -> (String, Vec<String>) {
        let routes = self.routes().expect("the router knows the app");
        assert_eq!(routes.len(), 1, "one set gets traffic: {routes:?}");
        let set = &routes[0];
        let release = set.set.split('-').next().unwrap_or_default().to_owned();
        (
            release,
            set.backends
                .iter()
                .map(|(_, name, _)| name.clone())
                .collect(),
        )
    }

    async fn active(&self) -> Option<ReleaseId> {
        self.engine.app(&self.app).await.unwrap().active_release
    }

    /// A connection of our own to the engine's database, to make its writes fail.
    async fn db(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&format!(
            "sqlite://{}",
            self.data.path().join("slipway.db").display()
        ))
        .await
        .unwrap()
    }

    /// Waits (bounded) for a published event that `pick` accepts.
    async fn until_event<T>(
        &self,
        rx: &mut tokio::sync::broadcast::Receiver<EngineEvent>,
        pick: impl Fn(&EngineEvent) -> Option<T>,
    ) -> T {
        within("an event", async {
            loop {
                if let Ok(e) = rx.recv().await {
                    if let Some(t) = pick(&e) {
                        return t;
                    }
                }
            }
        })
        .await
    }
}

fn is_step(e: &EngineEvent, want: impl Fn(&Step) -> bool) -> Option<()> {
    match e {
        EngineEvent::Promotion { event, .. } if want(&event.step) => Some(()),
        _ => None,
    }
}

fn step_kind(s: &Step) -> &'static str {
    match s {
        Step::Promoting { .. } => "promoting",
        Step::ReplacedRestore { .. } => "replaced-restore",
        Step::Started { .. } => "started",
        Step::Healthy { .. } => "healthy",
        Step::Switched { .. } => "switched",
        Step::CancelTooLate { .. } => "cancel-too-late",
        Step::DrainTimedOut => "drain-timed-out",
        Step::StoppedOld { .. } => "stopped-old",
        Step::Complete { .. } => "complete",
        Step::Undoing { .. } => "undoing",
        Step::StoppedNew { .. } => "stopped-new",
        Step::Ended { .. } => "ended",
        Step::Interrupted => "interrupted",
        Step::InterruptedAfterSwitch => "interrupted-after-switch",
        Step::Note { .. } => "note",
    }
}

fn kinds(steps: &[Step]) -> Vec<&'static str> {
    steps.iter().map(step_kind).collect()
}

#[tokio::test(start_paused = true)]
async fn a_healthy_rollout_switches_traffic_then_retires_the_old_set() {
    let env = Env::new().await;
    let r1 = env.first().await;
    env.deploy(&r1).await;
    assert_eq!(env.fake.live_releases(), vec![r1.id.clone()]);
    assert_eq!(
        env.serving(),
        (r1.id.to_string(), vec!["web.1".into(), "web.2".into()])
    );

    let r2 = env.next(2).await;
    let p2 = env.deploy(&r2).await;
    assert_eq!(env.fake.live_releases(), vec![r2.id.clone()]);
    assert_eq!(
        env.serving(),
        (r2.id.to_string(), vec!["web.1".into(), "web.2".into()])
    );
    assert_eq!(env.active().await, Some(r2.id.clone()));
    let steps = env.steps(&p2).await;
    assert_eq!(
        kinds(&steps),
        [
            "promoting",
            "started",
            "started",
            "healthy",
            "healthy",
            "switched",
            "stopped-old",
            "complete"
        ]
    );
    assert_eq!(
        steps[0],
        Step::Promoting {
            release: r2.id.clone(),
            actor: "tester".into(),
            deadline_ms: 600_000,
            previous: Some(r1.id.clone()),
        }
    );
    assert_eq!(
        steps[6],
        Step::StoppedOld {
            release: r1.id.clone(),
            processes: vec!["web.1".into(), "web.2".into()],
        }
    );
    // People read the same steps in words.
    let detail = env.engine.promotion(&p2.id).await.unwrap();
    assert_eq!(
        detail.events[7].message,
        format!("promotion complete: {} is active", r2.id)
    );
    env.engine.shutdown().await;
    assert!(env.fake.live().is_empty());
}

/// The undo: the new set is retired, the old one keeps serving, and the end says why.
async fn rolled_back(env: &Env, r1: &Release, p: &Promotion) -> Vec<Step> {
    assert_eq!(env.fake.live_releases(), vec![r1.id.clone()]);
    assert_eq!(env.serving().0, r1.id.to_string());
    assert_eq!(env.active().await, Some(r1.id.clone()));
    let steps = env.steps(p).await;
    assert_eq!(
        steps.last(),
        Some(&Step::Ended {
            state: p.state,
            active: Some(r1.id.clone()),
        })
    );
    steps
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_cannot_start_rolls_back() {
    let (env, r1, r2) = Env::serving_one_with_another().await;
    env.fake.script_instance(
        &r2.id,
        "web.2",
        Behaviour::FailsToStart("no such file".into()),
    );
    let p = env.promote(&r2, None).await;
    let p = env.wait(&p).await;
    assert_eq!(p.state, PromotionState::RolledBack);
    assert_eq!(
        p.reason.as_deref(),
        Some("web.2 could not be started: no such file")
    );
    let steps = rolled_back(&env, &r1, &p).await;
    assert!(steps.contains(&Step::Undoing {
        cancelled: false,
        reason: "web.2 could not be started: no such file".into()
    }));
    assert!(steps.contains(&Step::StoppedNew {
        processes: vec!["web.1".into(), "web.2".into()]
    }));
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_exits_before_it_is_healthy_rolls_back_with_its_output() {
    let (env, r1, r2) = Env::serving_one_with_another().await;
    env.fake.script(
        &r2.id,
        Behaviour::Exits(Duration::from_millis(300), "exit status 1".into()),
    );
    let p = env.promote(&r2, None).await;
    env.until_started(2).await;
    tokio::time::advance(Duration::from_millis(300)).await;
    let p = env.wait(&p).await;
    assert_eq!(p.state, PromotionState::RolledBack);
    assert!(p
        .reason
        .as_deref()
        .unwrap_or_default()
        .ends_with("exited with exit status 1 before it was healthy"));
    assert!(p.failed_output.clone().unwrap_or_default().contains("boom"));
    rolled_back(&env, &r1, &p).await;
}

#[tokio::test(start_paused = true)]
async fn an_instance_not_healthy_within_its_grace_rolls_back() {
    let (env, r1, r2) = Env::serving_one_with_another().await;
    env.fake
        .script_instance(&r2.id, "web.1", Behaviour::NeverReady);
    let p = env.promote(&r2, None).await;
    env.until_started(2).await;
    // The example's grace is 10 s.
    tokio::time::advance(Duration::from_secs(10)).await;
    let p = env.wait(&p).await;
    assert_eq!(p.state, PromotionState::RolledBack);
    assert_eq!(
        p.reason.as_deref(),
        Some("web.1 was not healthy within its grace of 10 s: /health answered 500")
    );
    rolled_back(&env, &r1, &p).await;
}

#[tokio::test(start_paused = true)]
async fn the_deadline_rolls_back() {
    let (env, r1, r2) = Env::serving_one_with_another().await;
    env.fake.script(&r2.id, Behaviour::Manual);
    let p = env.promote(&r2, Some(Duration::from_secs(30))).await;
    env.until_started(2).await;
    // One instance is ready, the other never is.
    env.fake.make_ready(&r2.id, "web.1");
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(
        env.engine.promotion(&p.id).await.unwrap().promotion.state,
        PromotionState::Running
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let p = env.wait(&p).await;
    assert_eq!(p.state, PromotionState::RolledBack);
    assert_eq!(
        p.reason.as_deref(),
        Some("the rollout passed its deadline of 30 s")
    );
    rolled_back(&env, &r1, &p).await;
}

#[tokio::test(start_paused = true)]
async fn cancel_while_the_new_set_starts_keeps_the_old_one() {
    let (env, r1, r2) = Env::serving_one_with_another().await;
    env.fake.script(&r2.id, Behaviour::Manual);
    let p = env.promote(&r2, None).await;
    env.until_started(2).await;
    let cancelled = within("cancel", env.engine.cancel(&env.app, &Actor::new("ops")))
        .await
        .unwrap();
    assert_eq!(cancelled.id, p.id);
    assert_eq!(cancelled.state, PromotionState::Cancelled);
    assert_eq!(cancelled.reason.as_deref(), Some("cancelled by ops"));
    let steps = rolled_back(&env, &r1, &cancelled).await;
    assert!(steps.contains(&Step::Undoing {
        cancelled: true,
        reason: "cancelled by ops".into()
    }));
    // Nothing runs now: a second cancel says so.
    let err = env
        .engine
        .cancel(&env.app, &Actor::new("ops"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no rollout is in progress"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_during_the_drain_is_too_late_and_the_rollout_completes() {
    let (env, _, r2) = Env::serving_one_with_another().await;
    env.fake.retire_delay(Duration::from_secs(5));
    let mut rx = env.engine.subscribe();
    let p = env.promote(&r2, None).await;
    env.until_event(&mut rx, |e| {
        is_step(e, |s| matches!(s, Step::Switched { .. }))
    })
    .await;
    let (engine, app) = (env.engine.clone(), env.app.clone());
    let cancel = tokio::spawn(async move { engine.cancel(&app, &Actor::new("ops")).await });
    env.until_event(&mut rx, |e| {
        is_step(
            e,
            |s| matches!(s, Step::CancelTooLate { by } if by == "ops"),
        )
    })
    .await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let after = within("cancel", cancel).await.unwrap().unwrap();
    assert_eq!(after.id, p.id);
    assert_eq!(after.state, PromotionState::Active);
    assert_eq!(env.fake.live_releases(), vec![r2.id.clone()]);
    assert_eq!(env.serving().0, r2.id.to_string());
}

#[tokio::test(start_paused = true)]
async fn an_old_process_crashing_during_the_drain_leaves_the_new_ones_routed() {
    let (env, r1, r2) = Env::serving_one_with_another().await;
    env.fake.retire_delay(Duration::from_secs(5));
    let mut rx = env.engine.subscribe();
    let p = env.promote(&r2, None).await;
    env.until_event(&mut rx, |e| {
        is_step(e, |s| matches!(s, Step::Switched { .. }))
    })
    .await;
    // The old web.1 exits while it drains; the new web.1 shares its name, not its fate.
    env.fake.crash(&r1.id, "web.1", "exit status 1");
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        env.serving(),
        (r2.id.to_string(), vec!["web.1".into(), "web.2".into()])
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    let p = env.wait(&p).await;
    assert_eq!(p.state, PromotionState::Active);
    assert_eq!(
        env.serving(),
        (r2.id.to_string(), vec!["web.1".into(), "web.2".into()])
    );
}

#[tokio::test(start_paused = true)]
async fn a_crashed_instance_is_taken_out_of_traffic_and_back_in_once_restarted() {
    let env = Env::new().await;
    let r1 = env.first().await;
    env.deploy(&r1).await;
    let before = env.routes().unwrap()[0].backends.clone();
    let mut rx = env.engine.subscribe();
    env.fake.crash(&r1.id, "web.1", "killed by signal 9");
    let exited = env
        .until_event(&mut rx, |e| match e {
            EngineEvent::Process { event, .. } => Some(event.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        exited,
        ProcessEvent::Exited {
            process: "web.1".into(),
            status: "killed by signal 9".into(),
            restart_in_ms: 1000
        }
    );
    assert_eq!(env.serving().1, vec!["web.2".to_string()]);
    tokio::time::advance(Duration::from_secs(1)).await;
    let restarted = env
        .until_event(&mut rx, |e| match e {
            EngineEvent::Process { event, .. } => Some(event.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        restarted,
        ProcessEvent::Restarted {
            process: "web.1".into()
        }
    );
    let after = env.routes().unwrap()[0].backends.clone();
    assert_eq!(after.len(), 2);
    // web.1 is back, on its new address.
    assert_ne!(after[0].2, before[0].2);
}

/// Shuts `env`'s engine down and starts another on the same data dir with a new fake.
async fn restart(env: Env, fake: FakeRuntime) -> Env {
    env.engine.shutdown().await;
    let engine = start(env.data.path(), &fake).await;
    Env {
        engine,
        fake,
        ..env
    }
}

#[tokio::test(start_paused = true)]
async fn a_promote_during_the_restore_after_a_start_wins_and_nothing_else_runs() {
    let (env, r1, r2) = Env::serving_one_with_another().await;
    // After the restart, r1's processes take their time to come up.
    let fake = FakeRuntime::new();
    fake.script(&r1.id, Behaviour::Manual);
    let env = restart(env, fake).await;
    within(
        "the restore",
        env.fake.until(|f| f.started_sets().len() == 1),
    )
    .await;
    // Known, starting: requests get 503, not 404.
    assert_eq!(env.routes(), Some(vec![]));

    let p = env.promote(&r2, None).await;
    let p = env.wait(&p).await;
    assert_eq!(p.state, PromotionState::Active, "{p:?}");
    assert!(env.steps(&p).await.contains(&Step::ReplacedRestore {
        release: r1.id.clone()
    }));
    // The restore's processes were stopped; it coming up late changes nothing.
    env.fake.make_ready(&r1.id, "web.1");
    env.fake.make_ready(&r1.id, "web.2");
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(env.fake.live_releases(), vec![r2.id.clone()]);
    assert_eq!(env.serving().0, r2.id.to_string());
    assert_eq!(env.active().await, Some(r2.id.clone()));
}

#[tokio::test(start_paused = true)]
async fn a_failed_restore_answers_503_and_is_tried_again_with_backoff() {
    let env = Env::new().await;
    let r1 = env.first().await;
    env.deploy(&r1).await;
    let fake = FakeRuntime::new();
    fake.refuse_start(Some("the cluster is unreachable"));
    let env = restart(env, fake).await;
    let mut rx = env.engine.subscribe();
    within("the first restore", env.engine.wait_restored()).await;
    assert_eq!(env.routes(), Some(vec![]));
    // The router says the app is starting.
    let res = reqwest::Client::builder()
        .resolve("web.hello.localhost", env.engine.router_addr())
        .build()
        .unwrap()
        .get(format!(
            "http://web.hello.localhost:{}/",
            env.engine.router_addr().port()
        ))
        .send();
    let res = within("the router", res).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");

    env.fake.refuse_start(None);
    tokio::time::advance(Duration::from_secs(1)).await;
    let restored = env
        .until_event(&mut rx, |e| match e {
            EngineEvent::Process {
                event: ProcessEvent::Restored { release },
                ..
            } => Some(release.clone()),
            _ => None,
        })
        .await;
    assert_eq!(restored, r1.id);
    assert_eq!(env.serving().0, r1.id.to_string());
}

#[tokio::test(start_paused = true)]
async fn the_end_of_a_promotion_the_store_would_not_take_is_recorded_later() {
    let (env, _, r2) = Env::serving_one_with_another().await;
    let r3 = env.next(3).await;
    let db = env.db().await;
    // The disk is full for ending promotions.
    sqlx::query(
        "CREATE TRIGGER full_disk BEFORE UPDATE OF state ON promotions WHEN NEW.state != 'running'
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    )
    .execute(&db)
    .await
    .unwrap();
    env.fake
        .script(&r2.id, Behaviour::FailsToStart("no such file".into()));
    let mut rx = env.engine.subscribe();
    let p2 = env.promote(&r2, None).await;
    env.until_event(&mut rx, |e| match e {
        EngineEvent::PromotionFinished { promotion, .. } if promotion.id == p2.id => Some(()),
        _ => None,
    })
    .await;
    // Not recorded: the store still says running, and both cancel and promote say why.
    let stored = env.engine.promotion(&p2.id).await.unwrap().promotion;
    assert_eq!(stored.state, PromotionState::Running);
    let err = env
        .engine
        .cancel(&env.app, &env.actor)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("could not be recorded"), "{err}");
    let err = env
        .engine
        .promote(&env.app, &r3.id, &PromoteOptions::default(), &env.actor)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("promotion {} ended (rolled-back)", p2.id)),
        "{err}"
    );

    // The disk has room again: the next promote records the old end first, then runs.
    sqlx::query("DROP TRIGGER full_disk")
        .execute(&db)
        .await
        .unwrap();
    let p3 = env.deploy(&r3).await;
    assert_eq!(p3.release, r3.id);
    let stored = env.engine.promotion(&p2.id).await.unwrap().promotion;
    assert_eq!(stored.state, PromotionState::RolledBack);
    assert_eq!(
        stored.reason.as_deref(),
        Some("web.1 could not be started: no such file")
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_write_failing_at_each_step() {
    let env = Env::new().await;
    let r1 = env.first().await;
    env.deploy(&r1).await;
    let db = env.db().await;
    let fail = |name: &str, on: &str| {
        format!(
            "CREATE TRIGGER {name} BEFORE {on} BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
    };

    // Recording the promotion: refused, nothing starts.
    let r2 = env.next(2).await;
    sqlx::query(&fail("no_promotions", "INSERT ON promotions"))
        .execute(&db)
        .await
        .unwrap();
    let err = env
        .engine
        .promote(&env.app, &r2.id, &PromoteOptions::default(), &env.actor)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disk I/O error"), "{err}");
    assert_eq!(env.fake.started_sets().len(), 1);
    sqlx::query("DROP TRIGGER no_promotions")
        .execute(&db)
        .await
        .unwrap();

    // Recording steps: they are still told live, and the rollout completes.
    sqlx::query(&fail("no_steps", "INSERT ON promotion_events"))
        .execute(&db)
        .await
        .unwrap();
    let mut rx = env.engine.subscribe();
    let p = env.promote(&r2, None).await;
    env.until_event(&mut rx, |e| {
        is_step(e, |s| matches!(s, Step::Complete { .. }))
    })
    .await;
    let p = env.wait(&p).await;
    assert_eq!(p.state, PromotionState::Active);
    assert_eq!(env.fake.live_releases(), vec![r2.id.clone()]);
    sqlx::query("DROP TRIGGER no_steps")
        .execute(&db)
        .await
        .unwrap();

    // Recording the switch: the undo runs, the old release keeps serving.
    let r3 = env.next(3).await;
    sqlx::query(&fail("no_switch", "UPDATE OF active_release_id ON apps"))
        .execute(&db)
        .await
        .unwrap();
    let p = env.promote(&r3, None).await;
    let p = env.wait(&p).await;
    assert_eq!(p.state, PromotionState::Failed);
    assert!(p
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("disk I/O error"));
    rolled_back(&env, &r2, &p).await;
}

#[tokio::test(start_paused = true)]
async fn after_a_crash_between_recording_the_switch_and_switching_the_recorded_release_serves() {
    let (env, _, r2) = Env::serving_one_with_another().await;
    env.fake.script(&r2.id, Behaviour::Manual);
    let p = env.promote(&r2, None).await;
    env.until_started(2).await;
    // The switch is recorded (the app's active release, as `activate` does) and the server
    // dies before it switches: a copy of the data dir taken now is what the next start finds.
    let db = env.db().await;
    sqlx::query("UPDATE apps SET active_release_id = ? WHERE name = 'hello'")
        .bind(r2.id.as_str())
        .execute(&db)
        .await
        .unwrap();
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .args(["-a", "--"])
        .arg(env.data.path().join("artifacts"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    sqlx::query("VACUUM INTO ?")
        .bind(copy.path().join("slipway.db").display().to_string())
        .execute(&db)
        .await
        .unwrap();

    let fake = FakeRuntime::new();
    let engine = start(copy.path(), &fake).await;
    within("the restore", engine.wait_restored()).await;
    assert_eq!(fake.live_releases(), vec![r2.id.clone()]);
    let routes = engine.routes(&env.app).unwrap();
    assert_eq!(routes.len(), 1);
    assert!(routes[0].set.starts_with(r2.id.as_str()));
    assert_eq!(
        engine.app(&env.app).await.unwrap().active_release,
        Some(r2.id.clone())
    );
    // The promotion had switched: it ends active, and says the server stopped.
    let detail = engine.promotion(&p.id).await.unwrap();
    assert_eq!(detail.promotion.state, PromotionState::Active);
    assert_eq!(
        detail.events.last().map(|e| &e.step),
        Some(&Step::InterruptedAfterSwitch)
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_second_engine_on_the_same_data_dir_refuses_to_start() {
    let env = Env::new().await;
    let router = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = Engine::start_with_runtime(
        config(env.data.path()),
        router,
        Arc::new(FakeRuntime::new()),
    )
    .await
    .err()
    .expect("a second engine is refused");
    assert!(
        err.to_string().contains("is already using the data dir"),
        "{err}"
    );
    // The first one's apps were not touched, and once it stops the dir is free.
    env.engine.shutdown().await;
    let again = start(env.data.path(), &env.fake).await;
    again.shutdown().await;
}
