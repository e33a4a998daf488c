//! Promotions on real processes of the example app, through the real router, with a real
//! SQLite file: the success path and every way a rollout is rolled back.

mod common;

use common::*;
use engine::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_runs_the_release_and_switches_traffic() {
    let t = TestEngine::new().await;
    let r1 = t.build(unchanged).await;
    let p1 = t.promote_and_wait(&r1.id, None).await;
    assert_eq!(p1.state, PromotionState::Active, "{p1:?}");
    assert_eq!(p1.previous_release, None);
    assert_eq!(
        t.engine.app(&t.app).await.unwrap().active_release,
        Some(r1.id.clone())
    );
    let (status, body) = t.get("/release").await;
    assert_eq!((status, body.trim()), (200, r1.id.as_str()));

    let events = t.events(&p1.id).await;
    for process in ["web.1", "web.2"] {
        assert!(
            events.iter().any(
                |e| matches!(e, Step::Started { process: p, pid: Some(_), port: Some(_) } if p == process)
            ),
            "{process} did not start: {events:#?}"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Step::Healthy { process: p, .. } if p == process)),
            "{process} was not healthy: {events:#?}"
        );
    }
    assert!(events.contains(&Step::Switched {
        release: r1.id.clone()
    }));

    // An env change makes a new release that, promoted, replaces the old processes.
    let r2 = t.set_env(&["GREETING=hello there"]).await;
    assert_eq!(r2.description, "env add:GREETING");
    assert_eq!(r2.build, r1.build);
    let p2 = t.promote_and_wait(&r2.id, None).await;
    assert_eq!(p2.state, PromotionState::Active, "{p2:?}");
    assert_eq!(p2.previous_release, Some(r1.id.clone()));
    let (_, env) = t.get("/env.json").await;
    assert!(env.contains("\"GREETING\": \"hello there\""), "{env}");
    assert!(
        env.contains(&format!("\"SLIPWAY_RELEASE\": \"{}\"", r2.id)),
        "{env}"
    );
    assert!(env.contains("\"SLIPWAY_APP\": \"hello\""), "{env}");

    let old_pids: Vec<u32> = events.iter().filter_map(pid_in).collect();
    assert_eq!(old_pids.len(), 2);
    let events2 = t.events(&p2.id).await;
    assert!(
        events2.contains(&Step::StoppedOld {
            release: r1.id.clone(),
            processes: vec!["web.1".into(), "web.2".into()],
        }),
        "{events2:#?}"
    );
    for pid in old_pids {
        assert!(!alive(pid), "old process {pid} still runs");
    }

    // The Releases list shows who promoted what, newest first.
    let list = t.engine.list_releases(&t.app, None, 10).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|i| i.release.id.clone())
            .collect::<Vec<_>>(),
        [r2.id.clone(), r1.id.clone()]
    );
    assert!(list[0].active && !list[1].active);
    assert_eq!(
        (list[0].status().as_str(), list[1].status().as_str()),
        ("active", "")
    );
    assert_eq!(list[0].promoted_by.as_deref(), Some("tester"));
    t.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_rolls_back_and_the_old_release_keeps_serving() {
    let t = TestEngine::new().await;
    let r1 = t.deploy(short_grace).await;

    let bad = t.set_env(&["EXAMPLE_FAIL_HEALTH=1"]).await;
    let p = t.promote_and_wait(&bad.id, None).await;
    assert_eq!(p.state, PromotionState::RolledBack, "{p:?}");
    let reason = p.reason.clone().unwrap();
    assert!(
        reason.contains("was not healthy within its grace of 2 s"),
        "{reason}"
    );
    assert!(reason.contains("/health answered 500"), "{reason}");
    let output = p.failed_output.clone().unwrap();
    assert!(output.contains("GET /health"), "{output}");

    assert_eq!(
        t.engine.app(&t.app).await.unwrap().active_release,
        Some(r1.id.clone())
    );
    let (status, body) = t.get("/release").await;
    assert_eq!((status, body.trim()), (200, r1.id.as_str()));
    let events = t.events(&p.id).await;
    assert!(
        events.iter().any(|e| matches!(
            e,
            Step::Undoing {
                cancelled: false,
                ..
            }
        )),
        "{events:#?}"
    );
    assert!(
        events.contains(&Step::Ended {
            state: PromotionState::RolledBack,
            active: Some(r1.id.clone()),
        }),
        "{events:#?}"
    );
    for pid in events.iter().filter_map(pid_in) {
        assert!(!alive(pid), "new process {pid} was not stopped");
    }
    t.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_at_start_rolls_back_with_the_output() {
    let t = TestEngine::new().await;
    let r1 = t.deploy(unchanged).await;
    let bad = t.set_env(&["EXAMPLE_EXIT_AT_START=1"]).await;
    let p = t.promote_and_wait(&bad.id, None).await;
    assert_eq!(p.state, PromotionState::RolledBack, "{p:?}");
    let reason = p.reason.unwrap();
    assert!(
        reason.contains("exited with exit status 3 before it was healthy"),
        "{reason}"
    );
    assert!(p
        .failed_output
        .unwrap()
        .contains("exiting with an error on purpose"));
    let (_, body) = t.get("/release").await;
    assert_eq!(body.trim(), r1.id.as_str());
    t.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_promotion_that_fails_leaves_no_active_release() {
    let t = TestEngine::new().await;
    t.build(unchanged).await;
    let bad = t.set_env(&["EXAMPLE_EXIT_AT_START=1"]).await;
    let p = t.promote_and_wait(&bad.id, None).await;
    assert_eq!(p.state, PromotionState::RolledBack);
    assert_eq!(t.engine.app(&t.app).await.unwrap().active_release, None);
    let (status, body) = t.get("/").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("has no running release"), "{body}");
    t.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_rolls_back() {
    let t = TestEngine::new().await;
    let r1 = t.deploy(unchanged).await;
    let slow = t.set_env(&["EXAMPLE_START_DELAY_MS=8000"]).await;
    let p = t
        .promote_and_wait(&slow.id, Some(Duration::from_secs(1)))
        .await;
    assert_eq!(p.state, PromotionState::RolledBack, "{p:?}");
    assert_eq!(
        p.reason.as_deref(),
        Some("the rollout passed its deadline of 1 s")
    );
    assert_eq!(p.deadline_ms, 1000);
    let (_, body) = t.get("/release").await;
    assert_eq!(body.trim(), r1.id.as_str());
    t.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_promote_is_refused_and_cancel_stops_the_rollout() {
    let t = TestEngine::new().await;
    let r1 = t.deploy(unchanged).await;
    let slow = t.set_env(&["EXAMPLE_START_DELAY_MS=8000"]).await;
    let mut events = t.engine.subscribe();
    let running = t.promote(&slow.id, None).await;
    assert_eq!(running.state, PromotionState::Running);

    // Wait until the new processes have started, so that cancel has something to undo.
    tokio::time::timeout(WAIT, async {
        let mut started = 0;
        while started < 2 {
            if let Ok(EngineEvent::Promotion { event, .. }) = events.recv().await {
                if is_started(&event.step) {
                    started += 1;
                }
            }
        }
    })
    .await
    .expect("processes never started");

    let err = t
        .engine
        .promote(&t.app, &r1.id, &PromoteOptions::default(), &t.actor)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RolloutInProgress { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains(running.id.as_str()), "{err}");
    let err = t
        .engine
        .rollback(&t.app, &r1.id, &PromoteOptions::default(), &t.actor)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RolloutInProgress { .. }), "{err}");

    let cancelled = t
        .engine
        .cancel(&t.app, &Actor::new("canceller"))
        .await
        .unwrap();
    assert_eq!(cancelled.state, PromotionState::Cancelled, "{cancelled:?}");
    assert_eq!(cancelled.reason.as_deref(), Some("cancelled by canceller"));
    for pid in t.events(&running.id).await.iter().filter_map(pid_in) {
        assert!(!alive(pid), "cancelled process {pid} still runs");
    }
    let (_, body) = t.get("/release").await;
    assert_eq!(body.trim(), r1.id.as_str());

    // The lock is released: the next promote goes through, and cancel with nothing running is clear.
    let err = t.engine.cancel(&t.app, &t.actor).await.unwrap_err();
    assert!(
        err.to_string().contains("no rollout is in progress"),
        "{err}"
    );
    let (rb, p) = t
        .engine
        .rollback(&t.app, &r1.id, &PromoteOptions::default(), &t.actor)
        .await
        .unwrap();
    assert_eq!(rb.rollback_of, Some(r1.id.clone()));
    assert_eq!(rb.description, format!("rollback to {}", r1.id));
    assert_eq!(rb.env, r1.env);
    assert_eq!(t.wait(&p.id).await.state, PromotionState::Active);
    t.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_a_rollout_never_fail() {
    let t = TestEngine::new().await;
    let r1 = t.deploy(unchanged).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, url) = (t.client(), t.url("/release"));
        let (stop, ok) = (stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            // Bounded: at most 20,000 requests per client.
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match client.get(&url).send().await {
                    Ok(res) if res.status().is_success() => {
                        seen.insert(res.text().await.unwrap_or_default().trim().to_owned());
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(res) => failures.push(format!("status {}", res.status())),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (failures, seen)
        }));
    }
    // Requests flow before, during and after the rollout: some before it starts, and some
    // more once it has ended, however fast it was.
    let served_at_least = |n: usize| {
        let ok = ok.clone();
        async move {
            tokio::time::timeout(WAIT, async {
                while ok.load(Ordering::SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("the clients stopped getting answers");
        }
    };
    served_at_least(25).await;
    let r2 = t.set_env(&["EXAMPLE_START_DELAY_MS=300"]).await;
    let p = t.promote_and_wait(&r2.id, None).await;
    assert_eq!(p.state, PromotionState::Active, "{p:?}");
    served_at_least(ok.load(Ordering::SeqCst) + 25).await;
    stop.store(true, Ordering::SeqCst);
    let mut seen_all = std::collections::BTreeSet::new();
    for c in clients {
        let (failures, seen) = c.await.unwrap();
        assert!(
            failures.is_empty(),
            "requests failed during the rollout: {failures:?}"
        );
        seen_all.extend(seen);
    }
    assert!(
        ok.load(Ordering::SeqCst) > 50,
        "too few requests to mean anything"
    );
    assert_eq!(
        seen_all,
        [r1.id.to_string(), r2.id.to_string()].into_iter().collect(),
        "traffic should move from the old release to the new one"
    );
    t.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_nothing_written() {
    let t = TestEngine::new().await;
    // No build yet: a release without a build cannot be promoted.
    let r = t.set_env(&["A=1"]).await;
    let err = t
        .engine
        .promote(&t.app, &r.id, &PromoteOptions::default(), &t.actor)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no build to run"), "{err}");
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "a state refusal, not bad input"
    );
    // Unknown release and app.
    let err = t
        .engine
        .promote(
            &t.app,
            &ReleaseId::generate(),
            &PromoteOptions::default(),
            &t.actor,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let nope = AppName::parse("nope").unwrap();
    assert_eq!(
        t.engine
            .list_releases(&nope, None, 10)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // A bad manifest is a clear error and no build or release is created.
    let src = example_copy(|s| s.replace("port: 8000", "port: 99999"));
    let err = t.build_dir(src.path()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unprocessable);
    assert!(
        err.to_string().contains("services.web.port: 99999"),
        "{err}"
    );
    assert_eq!(
        t.engine
            .list_releases(&t.app, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(t.engine.list_builds(&t.app, 10).await.unwrap().is_empty());
    // Duplicate app; deadline out of range.
    let err = t.engine.create_app(&t.app, &t.actor).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let r1 = t.build(unchanged).await;
    let err = t
        .engine
        .promote(
            &t.app,
            &r1.id,
            &PromoteOptions {
                deadline: Some(Duration::ZERO),
            },
            &t.actor,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    t.engine.shutdown().await;
}

/// Waits (bounded) for an app-level event that `want` accepts.
async fn app_event(
    events: &mut tokio::sync::broadcast::Receiver<EngineEvent>,
    want: impl Fn(&ProcessEvent) -> bool,
) -> ProcessEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(EngineEvent::Process { event, .. }) = events.recv().await {
                if want(&event) {
                    return event;
                }
            }
        }
    })
    .await
    .expect("no such event of the app's processes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_process_that_fails_its_checks_gets_no_traffic_until_it_recovers() {
    let t = TestEngine::new().await;
    // Outside the data dir (which apps cannot see), in a directory the app's user may search.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        shared.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let flag = shared.path().join("healthy");
    std::fs::write(&flag, "").unwrap();
    t.build(|s| {
        s.replace("interval: 5", "interval: 1")
            .replace("scale: 2", "scale: 1")
    })
    .await;
    let r = t
        .set_env(&[&format!("EXAMPLE_HEALTH_FILE={}", flag.display())])
        .await;
    assert_eq!(
        t.promote_and_wait(&r.id, None).await.state,
        PromotionState::Active
    );
    assert_eq!(t.get("/release").await.0, 200);

    let mut events = t.engine.subscribe();
    std::fs::remove_file(&flag).unwrap();
    let event = app_event(&mut events, |e| matches!(e, ProcessEvent::Unhealthy { .. })).await;
    assert!(
        matches!(&event, ProcessEvent::Unhealthy { process, failures: 3, .. } if process == "web.1"),
        "{event:?}"
    );
    let (status, body) = t.get("/release").await;
    assert_eq!(status, 503, "{body}");

    std::fs::write(&flag, "").unwrap();
    app_event(&mut events, |e| {
        e == &ProcessEvent::HealthyAgain {
            process: "web.1".into(),
        }
    })
    .await;
    let (status, body) = t.get("/release").await;
    assert_eq!((status, body.trim()), (200, r.id.as_str()));
    t.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_process_is_restarted() {
    let t = TestEngine::new().await;
    let r1 = t.deploy(|s| s.replace("scale: 2", "scale: 1")).await;
    let events_before = t
        .events(&t.engine.list_promotions(&t.app, None, 1).await.unwrap()[0].id)
        .await;
    let pid = events_before.iter().find_map(pid_in).unwrap();
    let mut events = t.engine.subscribe();
    // SAFETY: signals a process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    app_event(&mut events, |e| {
        matches!(e, ProcessEvent::Exited { process, status, .. } if process == "web.1" && status == "killed by signal 9")
    })
    .await;
    app_event(&mut events, |e| {
        e == &ProcessEvent::Restarted {
            process: "web.1".into(),
        }
    })
    .await;
    let (status, body) = t.get("/release").await;
    assert_eq!((status, body.trim()), (200, r1.id.as_str()));
    t.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_change_and_promote_is_one_step() {
    let t = TestEngine::new().await;
    let count = || async {
        t.engine
            .list_releases(&t.app, None, 100)
            .await
            .unwrap()
            .len()
    };
    // Without a build there is nothing to run: refused, and no release is left behind.
    let change = EnvChange::set_from_args(["GREETING=hi"]).unwrap();
    let err = t
        .engine
        .change_env_and_promote(
            &t.app,
            &change,
            None,
            None,
            &PromoteOptions::default(),
            &t.actor,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("there is no build to run"),
        "{err}"
    );
    assert_eq!(count().await, 0);

    let r1 = t.build(unchanged).await;
    let (r2, p2) = t
        .engine
        .change_env_and_promote(
            &t.app,
            &change,
            Some(&r1.id),
            None,
            &PromoteOptions::default(),
            &t.actor,
        )
        .await
        .unwrap();
    assert_eq!(r2.description, "env add:GREETING");
    assert_eq!(p2.release, r2.id);
    // While that rollout runs a second change is refused as a whole: no release is written.
    let before = count().await;
    let more = EnvChange::set_from_args(["OTHER=1"]).unwrap();
    let err = t
        .engine
        .change_env_and_promote(
            &t.app,
            &more,
            None,
            None,
            &PromoteOptions::default(),
            &t.actor,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RolloutInProgress { .. }), "{err:?}");
    assert_eq!(count().await, before);

    let p2 = t.wait(&p2.id).await;
    assert_eq!(p2.state, PromotionState::Active, "{p2:?}");
    let (_, env) = t.get("/env.json").await;
    assert!(env.contains("\"GREETING\": \"hi\""), "{env}");
    t.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_that_is_not_utf8_does_not_break_the_app() {
    let t = TestEngine::new().await;
    t.set_env(&["EXAMPLE_RAW_OUTPUT=1"]).await;
    let r = t.deploy(|s| s.replace("scale: 2", "scale: 1")).await;
    // Every request makes the app write bytes that are not UTF-8; it keeps serving.
    for _ in 0..20 {
        let (status, body) = t.get("/release").await;
        assert_eq!((status, body.trim()), (200, r.id.as_str()));
    }
    let output = t.engine.process_output(&t.app, 100).await;
    assert_eq!(output.len(), 1);
    assert!(
        output[0].1.contains("raw \u{FFFD}\u{FFFD} bytes"),
        "{}",
        output[0].1
    );
    t.engine.shutdown().await;
}
