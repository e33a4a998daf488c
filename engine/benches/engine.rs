//! Engine benchmarks (`make bench`, or `cargo bench -p engine --bench engine`). Prints a
//! Markdown report; results are kept in docs/benchmarks.md.
//!
//! 1. Promote → active for one process of the example app, next to the app's own time to its
//!    first healthy answer (goal: at most that + 100 ms).
//! 2. Create-release (a build) and env-change latency with 10,000 existing releases
//!    (goal: ≤ 20 ms), and the first page of the Releases list.

use engine::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 15;
const SEED_RELEASES: usize = 10_000;
const SAMPLES: usize = 200;

use engine::testing::example_dir as example;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The example app on its own: spawn, then poll /health every millisecond until it answers 200.
async fn app_time_to_healthy() -> Duration {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let mut child = Command::new("python3")
        .args(["-u", "app.py"])
        .current_dir(example())
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let took = loop {
        if health::check_http(addr, "/health", Duration::from_secs(1))
            .await
            .is_ok()
        {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the example never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    took
}

#[tokio::main]
async fn main() {
    let data = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(
        format!("sqlite://{}", data.path().join("bench.db").display()),
        data.path(),
    );
    config.stop_grace = Duration::from_secs(3);
    let router = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let engine = Engine::start(config, router).await.unwrap();
    let actor = Actor::new("bench");

    // ---- 1. promote → active, one process ----
    let src = engine::testing::example_copy(|m| m.replace("scale: 2", "scale: 1"));
    let app = AppName::parse("bench").unwrap();
    engine.create_app(&app, &actor).await.unwrap();
    engine
        .create_build(
            &app,
            BuildSource::Directory(src.path().into()),
            Some("bench"),
            None,
            &actor,
        )
        .await
        .unwrap();
    let mut own = Vec::new();
    let mut promote = Vec::new();
    for round in 0..ROUNDS {
        own.push(app_time_to_healthy().await);
        let change = EnvChange::set_from_args([format!("ROUND={round}")]).unwrap();
        let r = engine
            .change_env(&app, &change, None, None, &actor)
            .await
            .unwrap();
        let mut events = engine.subscribe();
        let start = Instant::now();
        let p = engine
            .promote(&app, &r.id, &PromoteOptions::default(), &actor)
            .await
            .unwrap();
        let active = loop {
            match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
                Ok(Ok(EngineEvent::Promotion { event, .. }))
                    if event.promotion == p.id && matches!(event.step, Step::Switched { .. }) =>
                {
                    break start.elapsed()
                }
                Ok(Ok(_)) => {}
                other => panic!("no activation: {other:?}"),
            }
        };
        let done = engine
            .wait_for_promotion(&p.id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(done.state, PromotionState::Active);
        promote.push(active);
    }
    let own_p50 = percentile(&mut own, 0.5);
    let promote_p50 = percentile(&mut promote, 0.5);

    // ---- 2. latency with 10,000 releases ----
    let big = AppName::parse("big").unwrap();
    engine.create_app(&big, &actor).await.unwrap();
    engine
        .create_build(
            &big,
            BuildSource::Directory(src.path().into()),
            Some("seed"),
            None,
            &actor,
        )
        .await
        .unwrap();
    let seed_start = Instant::now();
    for i in 0..SEED_RELEASES {
        let change = EnvChange::set_from_args([format!("SEED={i}")]).unwrap();
        engine
            .change_env(&big, &change, None, None, &actor)
            .await
            .unwrap();
    }
    let seed_took = seed_start.elapsed();
    let mut env_change = Vec::new();
    for i in 0..SAMPLES {
        let change = EnvChange::set_from_args([format!("K{}=v{i}", i % 7)]).unwrap();
        let start = Instant::now();
        engine
            .change_env(&big, &change, None, None, &actor)
            .await
            .unwrap();
        env_change.push(start.elapsed());
    }
    let mut build = Vec::new();
    let bytes = artifacts::pack_dir(src.path()).unwrap();
    for _ in 0..SAMPLES {
        let start = Instant::now();
        engine
            .create_build(
                &big,
                BuildSource::Archive(bytes.clone()),
                Some("bench build"),
                None,
                &actor,
            )
            .await
            .unwrap();
        build.push(start.elapsed());
    }
    let mut list = Vec::new();
    for _ in 0..SAMPLES {
        let start = Instant::now();
        let page = engine.list_releases(&big, None, 50).await.unwrap();
        list.push(start.elapsed());
        assert_eq!(page.len(), 50);
    }
    let total = engine.list_releases(&big, None, 1).await.unwrap()[0].seq;

    println!("## Engine (`cargo bench -p engine --bench engine`)\n");
    println!("| measure | p50 | p99 | goal |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| example app alone: spawn → first healthy answer ({ROUNDS} runs) | {} | {} | |",
        ms(own_p50),
        ms(percentile(&mut own, 0.99))
    );
    println!(
        "| promote → active, 1 process ({ROUNDS} runs) | {} | {} | ≤ app alone + 100 ms = {} |",
        ms(promote_p50),
        ms(percentile(&mut promote, 0.99)),
        ms(own_p50 + Duration::from_millis(100))
    );
    println!(
        "| env change with {total} releases in the app ({SAMPLES} samples) | {} | {} | ≤ 20 ms |",
        ms(percentile(&mut env_change, 0.5)),
        ms(percentile(&mut env_change, 0.99))
    );
    println!(
        "| create release by build (archive upload, deduplicated artifact) ({SAMPLES} samples) | {} | {} | ≤ 20 ms |",
        ms(percentile(&mut build, 0.5)),
        ms(percentile(&mut build, 0.99))
    );
    println!(
        "| first page (50) of the Releases list with {total} releases ({SAMPLES} samples) | {} | {} | |",
        ms(percentile(&mut list, 0.5)),
        ms(percentile(&mut list, 0.99))
    );
    println!(
        "\nPromote → active is {:.2}× the app's own start, {} over it. Seeding {SEED_RELEASES} env changes took {:.1} s.",
        promote_p50.as_secs_f64() / own_p50.as_secs_f64(),
        ms(promote_p50.saturating_sub(own_p50)),
        seed_took.as_secs_f64()
    );
    engine.shutdown().await;
}
