//! Durability: the server is killed (SIGKILL) in the middle of a rollout; on the next start
//! the app serves its last active release again, the interrupted promotion says why, and no
//! process of the killed run is left running.
//!
//! The "server" is this test binary run again as a child process (`SLIPWAY_TEST_CHILD` set),
//! so that it can really be killed.

mod common;

use common::*;
use engine::*;
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "SLIPWAY_TEST_CHILD_DATA";

/// The child: promote a good release, start promoting a slow one, report, and wait to be killed.
async fn child(data: &str) {
    let data = std::path::Path::new(data);
    let engine = start_engine(data).await;
    let app = AppName::parse("hello").unwrap();
    let actor = Actor::new("child");
    engine.create_app(&app, &actor).await.unwrap();
    let src = example_copy(unchanged);
    let (_, r1) = engine
        .create_build(
            &app,
            BuildSource::Directory(src.path().into()),
            Some("good"),
            None,
            &actor,
        )
        .await
        .unwrap();
    let p1 = engine
        .promote(&app, &r1.id, &PromoteOptions::default(), &actor)
        .await
        .unwrap();
    let p1 = engine.wait_for_promotion(&p1.id, WAIT).await.unwrap();
    assert_eq!(p1.state, PromotionState::Active);
    let slow = engine
        .change_env(
            &app,
            &EnvChange::set_from_args(["EXAMPLE_START_DELAY_MS=60000"]).unwrap(),
            None,
            None,
            &actor,
        )
        .await
        .unwrap();
    let mut events = engine.subscribe();
    let p2 = engine
        .promote(&app, &slow.id, &PromoteOptions::default(), &actor)
        .await
        .unwrap();
    let mut started = 0;
    while started < 2 {
        if let Ok(EngineEvent::Promotion { event, .. }) = events.recv().await {
            if is_started(&event.step) {
                started += 1;
            }
        }
    }
    let all_pids: Vec<String> = engine
        .promotion(&p1.id)
        .await
        .unwrap()
        .events
        .iter()
        .chain(engine.promotion(&p2.id).await.unwrap().events.iter())
        .filter_map(|e| pid_in(&e.step))
        .map(|p| p.to_string())
        .collect();
    println!(
        "READY {} {} {} {}",
        r1.id,
        slow.id,
        p2.id,
        all_pids.join(",")
    );
    // Killed here by the parent.
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_an_interrupted_rollout_recovers() {
    if let Ok(data) = std::env::var(CHILD_ENV) {
        return child(&data).await;
    }
    let data = tempfile::tempdir().unwrap();
    let mut server = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "restart_after_an_interrupted_rollout_recovers",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let report = ready_line(&mut server, WAIT);
    let parts: Vec<&str> = report.split(' ').collect();
    let (r1, slow, p2) = (
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts[2].to_owned(),
    );
    let pids: Vec<u32> = parts[3].split(',').map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 4, "two old and two new processes: {pids:?}");

    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let engine = start_engine(data.path()).await;
    tokio::time::timeout(WAIT, engine.wait_restored())
        .await
        .unwrap();
    for pid in &pids {
        assert!(
            !alive(*pid),
            "process {pid} of the killed server is still running"
        );
    }
    let app = AppName::parse("hello").unwrap();
    let promotion = engine
        .promotion(&PromotionId::parse(&p2).unwrap())
        .await
        .unwrap()
        .promotion;
    assert_eq!(promotion.state, PromotionState::Failed);
    assert!(promotion
        .reason
        .unwrap()
        .starts_with("interrupted: the server stopped during the rollout"));
    assert_eq!(promotion.release.as_str(), slow);
    assert_eq!(
        engine
            .app(&app)
            .await
            .unwrap()
            .active_release
            .unwrap()
            .as_str(),
        r1
    );

    let res = client_for(&engine)
        .get(url_for(&engine, "/release"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap().trim(), r1);

    // The lock did not stick: promoting works again.
    let r1_id = ReleaseId::parse(&r1).unwrap();
    let p = engine
        .promote(&app, &r1_id, &PromoteOptions::default(), &Actor::new("t"))
        .await
        .unwrap();
    let p = engine.wait_for_promotion(&p.id, WAIT).await.unwrap();
    assert_eq!(p.state, PromotionState::Active);
    engine.shutdown().await;
}
