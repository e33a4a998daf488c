//! Releases, builds and environments in the store, without running anything.

mod common;

use common::*;
use engine::*;

#[tokio::test]
async fn builds_and_env_changes_make_immutable_releases() {
    let t = TestEngine::new().await;
    let r1 = t.build(unchanged).await;
    assert!(r1.id.as_str().starts_with('R'));
    assert_eq!(r1.description, "example");
    assert!(r1.env.is_empty());

    let r2 = t.set_env(&["FOO=1", "BAR=1", "BAZ=1"]).await;
    assert_eq!(r2.description, "env add:BAR add:BAZ add:FOO");
    let mut change = EnvChange::set_from_args(["QUX=1", "BAR=2"]).unwrap();
    change.unset.insert(EnvKey::parse("BAZ").unwrap());
    let r3 = t
        .engine
        .change_env(&t.app, &change, None, None, &t.actor)
        .await
        .unwrap();
    assert_eq!(r3.description, "env add:QUX change:BAR remove:BAZ");
    assert_eq!(r3.env.to_lines(), "BAR=2\nFOO=1\nQUX=1\n");
    assert_eq!(r3.build, r1.build);

    // A new build keeps the newest environment.
    let r4 = t.build(unchanged).await;
    assert_eq!(r4.env, r3.env);
    assert_ne!(r4.build, r1.build);

    // An explicit description wins; an empty change is refused.
    let r5 = t
        .engine
        .change_env(
            &t.app,
            &EnvChange::set_from_args(["Z=1"]).unwrap(),
            None,
            Some("turn on Z"),
            &t.actor,
        )
        .await
        .unwrap();
    assert_eq!(r5.description, "turn on Z");
    let err = t
        .engine
        .change_env(
            &t.app,
            &EnvChange::set_from_args(["Z=1"]).unwrap(),
            None,
            None,
            &t.actor,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nothing to change"), "{err}");
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "a state refusal, not bad input"
    );

    // Old releases are untouched.
    assert_eq!(t.engine.release(&t.app, &r2.id).await.unwrap(), r2);

    let builds = t.engine.list_builds(&t.app, 10).await.unwrap();
    assert_eq!(builds.len(), 2);
    assert_eq!(builds[0].release.as_ref(), Some(&r4.id));
    assert!(builds[0].manifest.contains("services:"));
}

#[tokio::test]
async fn a_stale_base_is_refused_with_what_changed() {
    let t = TestEngine::new().await;
    t.build(unchanged).await;
    let base = t.set_env(&["A=1", "B=1"]).await;
    // Someone else changes the environment meanwhile.
    let other = t.set_env(&["B=2", "C=3"]).await;
    let mine = EnvChange::set_from_args(["A=9"]).unwrap();
    let err = t
        .engine
        .change_env(&t.app, &mine, Some(&base.id), None, &t.actor)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    match &err {
        Error::StaleBase {
            base: b,
            newest,
            changes,
        } => {
            assert_eq!(b, base.id.as_str());
            assert_eq!(newest, other.id.as_str());
            assert_eq!(changes, "env add:C change:B");
        }
        other => panic!("{other:?}"),
    }
    // Nothing was written; with the right base it goes through.
    assert_eq!(
        t.engine.newest_release(&t.app).await.unwrap().unwrap().id,
        other.id
    );
    let ok = t
        .engine
        .change_env(&t.app, &mine, Some(&other.id), None, &t.actor)
        .await
        .unwrap();
    assert_eq!(ok.description, "env change:A");
}

#[tokio::test]
async fn releases_page_newest_first_by_keyset() {
    let t = TestEngine::new().await;
    t.build(unchanged).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(t.set_env(&[&format!("N={i}")]).await.id);
    }
    ids.reverse(); // newest first
    let page1 = t.engine.list_releases(&t.app, None, 10).await.unwrap();
    let page2 = t
        .engine
        .list_releases(&t.app, Some(page1[9].seq), 10)
        .await
        .unwrap();
    let page3 = t
        .engine
        .list_releases(&t.app, Some(page2[9].seq), 10)
        .await
        .unwrap();
    let got: Vec<ReleaseId> = page1
        .iter()
        .chain(&page2)
        .chain(&page3)
        .map(|i| i.release.id.clone())
        .collect();
    assert_eq!(got.len(), 26);
    assert_eq!(&got[..25], &ids[..]);
    assert_eq!(page3.len(), 6);
    assert!(page1
        .iter()
        .all(|i| !i.active && i.last_promotion.is_none()));

    let apps = t.engine.list_apps().await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].release_count, 26);
    assert_eq!(apps[0].newest_release.as_ref(), Some(&ids[0]));
    assert_eq!(apps[0].last_change.as_deref(), Some("env change:N"));
}

#[tokio::test]
async fn git_work_tree_gives_the_build_description() {
    let t = TestEngine::new().await;
    let src = example_copy(unchanged);
    let sha = engine::testing::git_commit_all(src.path(), "Add the hello app");
    let (build, release) = t.build_dir(src.path()).await.unwrap();
    assert_eq!(
        build.description,
        format!("build {} Add the hello app", &sha[..10])
    );
    assert_eq!(release.description, build.description);
    assert_eq!(build.git_sha.as_deref(), Some(sha.as_str()));

    // A dirty work tree gives no description of its own.
    std::fs::write(src.path().join("app.py"), "changed").unwrap();
    let (build, _) = t.build_dir(src.path()).await.unwrap();
    assert_eq!(build.description, "");
}

#[tokio::test]
async fn create_release_from_a_parent_with_a_new_env_or_build() {
    let t = TestEngine::new().await;
    let r1 = t.build(unchanged).await;
    let r2 = t.set_env(&["A=1"]).await;
    let r3 = t.build(unchanged).await;
    // From r1 (no env), with r2's env: described as the env change from r1.
    let made = t
        .engine
        .create_release(
            &t.app,
            &NewRelease {
                from: Some(r1.id.clone()),
                env: Some(r2.env.clone()),
                ..Default::default()
            },
            &t.actor,
        )
        .await
        .unwrap();
    assert_eq!(made.build, r1.build);
    assert_eq!(made.env, r2.env);
    assert_eq!(made.description, "env add:A");
    // The newest release with r1's build and nothing else changed.
    let made = t
        .engine
        .create_release(
            &t.app,
            &NewRelease {
                build: r1.build.clone(),
                ..Default::default()
            },
            &t.actor,
        )
        .await
        .unwrap();
    assert_eq!(made.build, r1.build);
    assert_eq!(made.env, r3.env);
    assert!(
        made.description.starts_with("release from R"),
        "{}",
        made.description
    );
    // Unknown parent or build: not found, nothing written.
    let before = t
        .engine
        .list_releases(&t.app, None, 100)
        .await
        .unwrap()
        .len();
    let err = t
        .engine
        .create_release(
            &t.app,
            &NewRelease {
                from: Some(ReleaseId::generate()),
                ..Default::default()
            },
            &t.actor,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = t
        .engine
        .create_release(
            &t.app,
            &NewRelease {
                build: Some(BuildId::generate()),
                ..Default::default()
            },
            &t.actor,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        t.engine
            .list_releases(&t.app, None, 100)
            .await
            .unwrap()
            .len(),
        before
    );
}
