//! The unit of work on a real SQLite file: two writers (two `Store`s on one file, as two
//! Console instances would be) never lose an update, base checks, and rollback on drop.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

use super::{Base, NewRelease, Store, UnitOfWork};
use crate::auth::AuditEntry;
use crate::env::Environment;
use crate::error::Error;
use crate::ids::ReleaseId;
use crate::model::Release;
use crate::names::{Actor, AppName};

struct Db {
    _dir: tempfile::TempDir,
    path: String,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.db").display().to_string();
        Db { _dir: dir, path }
    }

    async fn open(&self) -> Store {
        Store::open(&self.path).await.unwrap()
    }
}

fn app() -> AppName {
    AppName::parse("web").unwrap()
}

fn actor() -> Actor {
    Actor::new("ann")
}

fn env(pairs: &[(&str, &str)]) -> Environment {
    Environment::from_pairs(pairs.iter().copied()).unwrap()
}

async fn create_app(store: &Store) {
    let audit = AuditEntry::new(actor(), "app.create").target("web");
    store.create_app(&app(), &actor(), &audit).await.unwrap();
}

/// Locks the app, checks `base`, waits `hold` with the lock held, and inserts a release
/// with `env` (and its audit entry), all in `uow`, without committing.
async fn release_in(
    uow: &mut UnitOfWork,
    base: &Base,
    env: &Environment,
    hold: Duration,
) -> crate::Result<Release> {
    let mut app = uow.lock_app(&self::app()).await?;
    uow.check(&app, base).await?;
    tokio::time::sleep(hold).await;
    let id = ReleaseId::generate();
    let release = uow
        .insert_release(
            &mut app,
            &NewRelease {
                id: &id,
                build: None,
                env,
                description: "test",
                rollback_of: None,
                actor: &actor(),
            },
        )
        .await?;
    uow.audit(&AuditEntry::new(actor(), "env.change").target(id.as_str()))
        .await?;
    Ok(release)
}

/// A release based on `base`, in a unit of work of its own.
async fn release(store: &Store, base: &Base, env: &Environment) -> crate::Result<Release> {
    let mut uow = store.begin().await?;
    let release = release_in(&mut uow, base, env, Duration::ZERO).await?;
    uow.commit().await?;
    Ok(release)
}

async fn count(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&store.read)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_basing_a_release_on_the_same_newest_one_never_lose_an_update() {
    let db = Db::new();
    let (one, two) = (db.open().await, db.open().await);
    create_app(&one).await;
    let mut base = release(&one, &Base::Empty, &env(&[("A", "0")]))
        .await
        .unwrap();
    for round in 1..=5 {
        // Both saw `base` as the newest release; both try at once, each holding the lock a
        // while so that the other's attempt has to wait for it.
        let barrier = Arc::new(Barrier::new(2));
        let attempt = |store: Store, value: String| {
            let (barrier, base) = (barrier.clone(), Base::Is(base.id.clone()));
            tokio::spawn(async move {
                barrier.wait().await;
                let mut uow = store.begin().await?;
                let release = release_in(
                    &mut uow,
                    &base,
                    &env(&[("A", &value)]),
                    Duration::from_millis(50),
                )
                .await?;
                uow.commit().await?;
                Ok::<_, Error>(release)
            })
        };
        let a = attempt(one.clone(), format!("{round}.1"));
        let b = attempt(two.clone(), format!("{round}.2"));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let (won, lost) = match (a, b) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            other => panic!("round {round}: exactly one must go through: {other:?}"),
        };
        match &lost {
            Error::StaleBase {
                base: b,
                newest,
                changes,
            } => {
                assert_eq!(b, base.id.as_str());
                assert_eq!(newest, won.id.as_str());
                assert_eq!(changes, "env change:A");
            }
            other => panic!("round {round}: the other is refused as stale: {other:?}"),
        }
        // The winner's release is the newest, seen alike by both instances; the loser wrote
        // nothing, not even its audit entry.
        for store in [&one, &two] {
            assert_eq!(
                store.newest_release(&app()).await.unwrap(),
                Some(won.clone())
            );
        }
        assert_eq!(count(&one, "releases").await, 1 + round);
        assert_eq!(count(&one, "audit").await, 2 + round);
        base = won;
    }
    one.close().await;
    two.close().await;
}

#[tokio::test]
async fn base_empty_wants_no_release_and_any_takes_whatever_is_newest() {
    let db = Db::new();
    let store = db.open().await;
    create_app(&store).await;
    let unknown = ReleaseId::generate();

    // No release yet: `Empty` holds, a release as base is not found.
    let err = release(&store, &Base::Is(unknown.clone()), &Environment::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "release",
                ..
            }
        ),
        "{err}"
    );
    let first = release(&store, &Base::Empty, &env(&[("A", "1")]))
        .await
        .unwrap();

    // Now there is one: `Empty` is stale, saying what the release brought.
    let err = release(&store, &Base::Empty, &Environment::new())
        .await
        .unwrap_err();
    match &err {
        Error::StaleBase {
            base,
            newest,
            changes,
        } => {
            assert_eq!(base, "");
            assert_eq!(newest, first.id.as_str());
            assert_eq!(changes, "env add:A");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("the environment changed since the app had no release"),
        "{err}"
    );

    // `Any` takes whatever is newest; `Is` only the newest.
    let second = release(&store, &Base::Any, &env(&[("A", "2")]))
        .await
        .unwrap();
    let err = release(&store, &Base::Is(first.id.clone()), &Environment::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::StaleBase { base, newest, .. }
            if base == first.id.as_str() && newest == second.id.as_str()),
        "{err}"
    );
    let err = release(&store, &Base::Is(unknown), &Environment::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "release",
                ..
            }
        ),
        "{err}"
    );
    release(&store, &Base::Is(second.id.clone()), &Environment::new())
        .await
        .unwrap();
    assert_eq!(count(&store, "releases").await, 3);
}

#[tokio::test]
async fn a_unit_of_work_dropped_without_commit_writes_nothing() {
    let db = Db::new();
    let store = db.open().await;
    let other = db.open().await;
    {
        let mut uow = store.begin().await.unwrap();
        uow.create_app(&app(), &actor()).await.unwrap();
        let release = release_in(&mut uow, &Base::Empty, &env(&[("A", "1")]), Duration::ZERO)
            .await
            .unwrap();
        let app = uow.lock_app(&app()).await.unwrap();
        assert_eq!(app.newest.as_ref(), Some(&release));
        uow.start_promotion(&app, &release.id, &actor(), Duration::from_secs(60))
            .await
            .unwrap();
        // Dropped here, as on an early return with `?`.
    }
    for table in ["apps", "releases", "promotions", "audit"] {
        assert_eq!(count(&store, table).await, 0, "{table}");
    }
    assert!(matches!(
        store.app(&app()).await,
        Err(Error::NotFound { what: "app", .. })
    ));
    // The write lock went with it: another instance writes at once.
    tokio::time::timeout(Duration::from_secs(2), create_app(&other))
        .await
        .unwrap();
    assert_eq!(count(&store, "apps").await, 1);
}

#[tokio::test]
async fn a_second_running_promotion_is_refused_and_nothing_of_its_unit_of_work_is_written() {
    let db = Db::new();
    let store = db.open().await;
    create_app(&store).await;
    let first = release(&store, &Base::Empty, &env(&[("A", "1")]))
        .await
        .unwrap();
    let audit = AuditEntry::new(actor(), "release.promote");
    let running = store
        .start_promotion(&app(), &first.id, &actor(), Duration::from_secs(60), &audit)
        .await
        .unwrap();

    let mut uow = store.begin().await.unwrap();
    let second = release_in(&mut uow, &Base::Any, &env(&[("A", "2")]), Duration::ZERO)
        .await
        .unwrap();
    let app = uow.lock_app(&app()).await.unwrap();
    let err = uow
        .start_promotion(&app, &second.id, &actor(), Duration::from_secs(60))
        .await
        .unwrap_err();
    match &err {
        Error::RolloutInProgress { app, promotion } => {
            assert_eq!(app, "web");
            assert_eq!(promotion, running.id.as_str());
        }
        other => panic!("{other:?}"),
    }
    drop(uow);
    assert_eq!(
        store.newest_release(&self::app()).await.unwrap(),
        Some(first)
    );
    assert_eq!(count(&store, "promotions").await, 1);
}

/// The keys a list reports as changed against the previous release.
fn changed(item: &crate::model::ReleaseListItem) -> (Vec<String>, Vec<String>, Vec<String>) {
    let keys = |k: &[crate::env::EnvKey]| k.iter().map(|k| k.to_string()).collect();
    let c = &item.release.env_changes;
    (keys(&c.added), keys(&c.changed), keys(&c.removed))
}

#[tokio::test]
async fn lists_carry_each_release_s_changes_against_the_previous_one_and_no_environment() {
    let db = Db::new();
    let store = db.open().await;
    create_app(&store).await;
    let first = release(&store, &Base::Any, &env(&[("A", "1"), ("B", "2")]))
        .await
        .unwrap();
    release(
        &store,
        &Base::Any,
        &env(&[("A", "1"), ("B", "3"), ("C", "4")]),
    )
    .await
    .unwrap();
    release(&store, &Base::Any, &env(&[("B", "3"), ("C", "4")]))
        .await
        .unwrap();
    let list = store.list_releases(&app(), None, 10).await.unwrap();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(changed(&list[2]), (s(&["A", "B"]), s(&[]), s(&[])));
    assert_eq!(changed(&list[1]), (s(&["C"]), s(&["B"]), s(&[])));
    assert_eq!(changed(&list[0]), (s(&[]), s(&[]), s(&["A"])));
    // Nothing is active yet: no environment is the active one's.
    assert!(list.iter().all(|i| !i.same_env_as_active));

    // With the first release active, a release of the same environment says so.
    let mut uow = store.begin().await.unwrap();
    let app_row = uow.lock_app(&app()).await.unwrap();
    sqlx::query("UPDATE apps SET active_release_id = ? WHERE id = ?")
        .bind(first.id.as_str())
        .bind(app_row.id)
        .execute(&mut *uow.conn())
        .await
        .unwrap();
    uow.commit().await.unwrap();
    let same = release(&store, &Base::Any, &env(&[("A", "1"), ("B", "2")]))
        .await
        .unwrap();
    let list = store.list_releases(&app(), None, 10).await.unwrap();
    let by_id = |id: &ReleaseId| list.iter().find(|i| &i.release.id == id).unwrap();
    assert!(by_id(&first.id).same_env_as_active && by_id(&first.id).active);
    assert!(by_id(&same.id).same_env_as_active && !by_id(&same.id).active);
    assert_eq!(list.iter().filter(|i| i.same_env_as_active).count(), 2);
}

#[tokio::test]
async fn releases_made_before_changes_were_recorded_get_them_when_the_store_opens() {
    let db = Db::new();
    let store = db.open().await;
    create_app(&store).await;
    for e in [
        env(&[("A", "1")]),
        env(&[("A", "2"), ("B", "1")]),
        env(&[("B", "1")]),
    ] {
        release(&store, &Base::Any, &e).await.unwrap();
    }
    let recorded = store.list_releases(&app(), None, 10).await.unwrap();
    // As a database from before migration 0005 has them.
    sqlx::query("UPDATE releases SET env_changes = NULL")
        .execute(&store.write)
        .await
        .unwrap();
    store.close().await;
    let store = db.open().await;
    let filled = store.list_releases(&app(), None, 10).await.unwrap();
    assert_eq!(filled, recorded);
    assert_eq!(
        changed(&filled[1]),
        (vec!["B".to_string()], vec!["A".to_string()], vec![])
    );
}
