//! The audit log is written by the use cases themselves: each names its real subject (the
//! release it made, the keys it changed, the promotion it cancelled), failed attempts are
//! recorded too, and a reveal is never answered without its entry.

mod common;

use common::*;
use engine::*;

fn auth(t: &TestEngine) -> Auth {
    Auth::new(t.engine.store().clone(), AuthConfig::for_tests())
}

/// `(action, target, result)` of every entry about the test's app, oldest first.
async fn log(t: &TestEngine) -> Vec<(String, String, String)> {
    let mut entries = auth(t)
        .list_audit(&AuditFilter {
            app: Some(t.app.clone()),
            limit: AuditFilter::MAX_LIMIT,
            ..Default::default()
        })
        .await
        .unwrap();
    entries.reverse();
    entries
        .into_iter()
        .map(|r| {
            assert_eq!(r.actor, t.actor.as_str(), "{r:?}");
            let result = match r.result {
                AuditResult::Failed(d) => format!("failed: {d}"),
                other => other.as_str().to_owned(),
            };
            (r.action, r.target.unwrap_or_default(), result)
        })
        .collect()
}

fn entry(action: &str, target: &str, result: &str) -> (String, String, String) {
    (action.into(), target.into(), result.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_use_case_records_what_it_did_and_what_it_failed_to_do() {
    let t = TestEngine::new().await;
    let src = example_copy(unchanged);
    let (build, r1) = t
        .engine
        .create_build(
            &t.app,
            BuildSource::Directory(src.path().into()),
            Some("example"),
            None,
            &t.actor,
        )
        .await
        .unwrap();
    let change = EnvChange::set_from_args(["SECRET=hunter2"]).unwrap();
    let r2 = t
        .engine
        .change_env(&t.app, &change, Some(&r1.id), None, &t.actor)
        .await
        .unwrap();
    // A stale base: refused, recorded as failed, nothing made.
    let stale = EnvChange::set_from_args(["OTHER=x"]).unwrap();
    let err = t
        .engine
        .change_env(&t.app, &stale, Some(&r1.id), None, &t.actor)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StaleBase { .. }), "{err}");
    let unknown = ReleaseId::parse("RZZZZZZZZZZ").unwrap();
    t.engine
        .promote(&t.app, &unknown, &PromoteOptions::default(), &t.actor)
        .await
        .unwrap_err();
    let r3 = t
        .engine
        .create_release(
            &t.app,
            &NewRelease {
                from: Some(r1.id.clone()),
                ..Default::default()
            },
            &t.actor,
        )
        .await
        .unwrap();
    let value = t
        .engine
        .reveal_env_value(&t.app, &r2.id, "SECRET", &t.actor)
        .await
        .unwrap();
    assert_eq!(value, "hunter2");
    let newest = t
        .engine
        .reveal_env(&t.app, None, &t.actor)
        .await
        .unwrap()
        .expect("a release");
    assert_eq!(newest.id, r3.id);
    // A slow start keeps the rollout running while a second promote is refused.
    let slow = EnvChange::set_from_args(["EXAMPLE_START_DELAY_MS=60000"]).unwrap();
    let (r4, running) = t
        .engine
        .change_env_and_promote(
            &t.app,
            &slow,
            Some(&r3.id),
            None,
            &PromoteOptions::default(),
            &t.actor,
        )
        .await
        .unwrap();
    let err = t
        .engine
        .promote(&t.app, &r1.id, &PromoteOptions::default(), &t.actor)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RolloutInProgress { .. }), "{err}");
    let cancelled = t.engine.cancel(&t.app, &t.actor).await.unwrap();
    assert_eq!(cancelled.id, running.id);
    t.engine.cancel(&t.app, &t.actor).await.unwrap_err();

    let log = log(&t).await;
    let expected = [
        entry("app.create", "", "ok"),
        entry(
            "build.create",
            &format!("{} release {}", build.id, r1.id),
            "ok",
        ),
        entry("env.change", &format!("{} env add:SECRET", r2.id), "ok"),
        entry(
            "env.change",
            &format!("based on {}", r1.id),
            &format!("failed: {err_stale}", err_stale = "STALE"),
        ),
        entry(
            "release.promote",
            "RZZZZZZZZZZ",
            "failed: release RZZZZZZZZZZ not found",
        ),
        entry("release.create", r3.id.as_str(), "ok"),
        entry("env.reveal", &format!("{} SECRET", r2.id), "ok"),
        entry("env.reveal", r3.id.as_str(), "ok"),
        entry(
            "env.change",
            &format!("{} env add:EXAMPLE_START_DELAY_MS (promoted)", r4.id),
            "ok",
        ),
        entry("release.promote", r1.id.as_str(), &format!("failed: {err}")),
        entry("promotion.cancel", running.id.as_str(), "ok"),
        entry(
            "promotion.cancel",
            "",
            "failed: no rollout is in progress for app hello",
        ),
    ];
    assert_eq!(log.len(), expected.len(), "{log:#?}");
    for (got, want) in log.iter().zip(&expected) {
        if want.2 == "failed: STALE" {
            assert_eq!((&got.0, &got.1), (&want.0, &want.1), "{log:#?}");
            assert!(
                got.2
                    .starts_with("failed: the environment changed since release"),
                "{got:?}"
            );
        } else {
            assert_eq!(got, want, "{log:#?}");
        }
    }
    assert!(
        !format!("{log:?}").contains("hunter2"),
        "a value in the audit log"
    );
    t.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_revealed_or_changed_when_the_audit_log_cannot_be_written() {
    let t = TestEngine::new().await;
    let r1 = t.set_env(&["SECRET=hunter2"]).await;
    let db = t.data.path().join("slipway.db");
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER audit_full BEFORE INSERT ON audit
         BEGIN SELECT RAISE(ABORT, 'the audit log is full'); END",
    )
    .execute(&raw)
    .await
    .unwrap();

    let err = t
        .engine
        .reveal_env_value(&t.app, &r1.id, "SECRET", &t.actor)
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(t
        .engine
        .reveal_env(&t.app, Some(&r1.id), &t.actor)
        .await
        .is_err());
    // A change and its entry are one transaction: no entry, no release.
    let change = EnvChange::set_from_args(["MORE=1"]).unwrap();
    assert!(t
        .engine
        .change_env(&t.app, &change, None, None, &t.actor)
        .await
        .is_err());
    let newest = t.engine.newest_release(&t.app).await.unwrap();
    assert_eq!(newest.map(|r| r.id), Some(r1.id));
    raw.close().await;
    t.engine.shutdown().await;
}
