//! Authentication, authorization and audit on a real SQLite file: bootstrap, sign-in, sessions,
//! API tokens, rate limiting, roles and the audit log. Time is a manual clock; nothing sleeps.

use auth::*;
use auth::{ManualClock, TOKEN_PREFIX};
use engine::store::Store;
use sqlx::Row;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use types::{Actor, AppName, ErrorKind};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

struct Setup {
    _dir: tempfile::TempDir,
    db: PathBuf,
    store: Store,
    auth: Auth,
    clock: ManualClock,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("slipway.db");
        let clock = ManualClock::starting_now();
        let (store, auth) = open(&db, &clock).await;
        Setup {
            _dir: dir,
            db,
            store,
            auth,
            clock,
        }
    }

    /// Closes the store and opens the same file again, as a restarted server would.
    async fn restart(&mut self) {
        self.store.close().await;
        let (store, auth) = open(&self.db, &self.clock).await;
        self.store = store;
        self.auth = auth;
    }

    async fn user(&self, name: &str, password: &str, role: Role) -> Username {
        let name = Username::parse(name).unwrap();
        self.auth
            .create_user(&by(), &name, password, role)
            .await
            .unwrap();
        name
    }

    /// A separate connection to the database file, to look at what is really stored.
    async fn raw(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&format!("sqlite://{}", self.db.display()))
            .await
            .unwrap()
    }
}

async fn open(db: &std::path::Path, clock: &ManualClock) -> (Store, Auth) {
    let store = Store::open(db.to_str().unwrap()).await.unwrap();
    let auth = Auth::new(store.clone(), AuthConfig::for_tests()).with_clock(clock.clock());
    (store, auth)
}

/// The admin who manages users in these tests.
fn by() -> Principal {
    as_user(&Username::parse("admin").unwrap(), Role::Admin)
}

/// `name` signed in with `role`.
fn as_user(name: &Username, role: Role) -> Principal {
    Principal {
        user: name.clone(),
        role,
        via: Via::Session,
    }
}

fn role(role: Role) -> UserUpdate {
    UserUpdate {
        role: Some(role),
        ..UserUpdate::default()
    }
}

fn disable() -> UserUpdate {
    UserUpdate {
        disabled: Some(true),
        ..UserUpdate::default()
    }
}

fn enable() -> UserUpdate {
    UserUpdate {
        disabled: Some(false),
        ..UserUpdate::default()
    }
}

fn password(password: &str) -> UserUpdate {
    UserUpdate {
        password: Some(password.into()),
        ..UserUpdate::default()
    }
}

fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

fn message<T: std::fmt::Debug>(r: Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

fn retry_after<T: std::fmt::Debug>(r: Result<T>) -> u64 {
    match r {
        Err(Error::RateLimited { retry_after_secs }) => retry_after_secs,
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// Every text value of every row of `table`, joined.
async fn dump(pool: &sqlx::SqlitePool, table: &str) -> String {
    let rows = sqlx::query(&format!("SELECT * FROM {table}"))
        .fetch_all(pool)
        .await
        .unwrap();
    let mut out = String::new();
    for row in &rows {
        for i in 0..row.len() {
            if let Ok(Some(s)) = row.try_get::<Option<String>, _>(i) {
                out.push_str(&s);
                out.push('\n');
            }
        }
    }
    assert!(!rows.is_empty(), "{table} is empty");
    out
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn bootstrap_creates_the_admin_once_with_a_random_password_shown_once() {
    let t = Setup::new().await;
    let password = t.auth.bootstrap_admin(None).await.unwrap().unwrap();
    assert!(password.len() >= 20, "{password}");
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));

    let ok = t.auth.login("admin", &password, None).await.unwrap();
    assert_eq!(ok.principal.user.as_str(), "admin");
    assert_eq!(ok.principal.role, Role::Admin);

    // Users exist now: nothing happens, whatever is passed.
    assert_eq!(t.auth.bootstrap_admin(None).await.unwrap(), None);
    assert_eq!(
        t.auth
            .bootstrap_admin(Some("another password"))
            .await
            .unwrap(),
        None
    );
    let users = t.auth.list_users(&by()).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(
        (users[0].name.as_str(), users[0].role),
        ("admin", Role::Admin)
    );
    assert!(t
        .auth
        .login("admin", "another password", None)
        .await
        .is_err());

    // Another fresh database gets another password: it is never a fixed default.
    let other = Setup::new().await;
    let second = other.auth.bootstrap_admin(None).await.unwrap().unwrap();
    assert_ne!(password, second);
}

#[tokio::test]
async fn bootstrap_with_a_given_password_returns_nothing_and_that_password_works() {
    let t = Setup::new().await;
    let err = t.auth.bootstrap_admin(Some("short")).await;
    assert_eq!(kind(err), ErrorKind::Invalid);
    assert!(t.auth.list_users(&by()).await.unwrap().is_empty());

    assert_eq!(
        t.auth
            .bootstrap_admin(Some("correct horse battery"))
            .await
            .unwrap(),
        None
    );
    let ok = t.auth.login("admin", "correct horse battery", None).await;
    assert_eq!(ok.unwrap().principal.role, Role::Admin);
}

#[tokio::test]
async fn two_servers_bootstrapping_at_once_create_one_admin() {
    let t = Setup::new().await;
    // A second server: its own store (own writer connection) on the same file.
    let (_other_store, other) = open(&t.db, &t.clock).await;
    let (a, b) = tokio::join!(t.auth.bootstrap_admin(None), other.bootstrap_admin(None));
    let created: Vec<String> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(created.len(), 1, "exactly one server created the admin");
    assert_eq!(t.auth.list_users(&by()).await.unwrap().len(), 1);
    t.auth.login("admin", &created[0], None).await.unwrap();
}

#[tokio::test]
async fn login_failures_all_look_the_same() {
    let t = Setup::new().await;
    let alice = t.user("alice", "alice's password", Role::Deployer).await;
    let bob = t.user("bob", "bob's password", Role::Viewer).await;

    let ok = t
        .auth
        .login(" Alice ", "alice's password", ip("10.0.0.1"))
        .await;
    let ok = ok.unwrap();
    assert_eq!(ok.principal.user, alice);
    assert_eq!(ok.principal.role, Role::Deployer);
    assert_eq!(ok.principal.via, Via::Session);
    assert!(!format!("{ok:?}").contains(&ok.session_token));

    let wrong = t.auth.login("alice", "bob's password", None).await;
    let unknown = t.auth.login("carol", "alice's password", None).await;
    let invalid_name = t.auth.login("not a name!", "alice's password", None).await;
    t.auth.update_user(&by(), &bob, &disable()).await.unwrap();
    let disabled = t.auth.login("bob", "bob's password", None).await;
    let messages: Vec<String> = [wrong, unknown, invalid_name, disabled]
        .into_iter()
        .map(|r| {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unauthenticated);
            e.to_string()
        })
        .collect();
    assert!(messages.iter().all(|m| m == &messages[0]), "{messages:?}");
    assert!(!messages[0].contains("alice") && !messages[0].contains("password'"));
}

#[tokio::test]
async fn passwords_are_stored_only_as_argon2id_hashes() {
    let t = Setup::new().await;
    t.user("alice", "hunter2hunter2", Role::Viewer).await;
    let raw = t.raw().await;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE name = 'alice'")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains("hunter2"));
    assert!(!dump(&raw, "users").await.contains("hunter2"));

    // Nothing listed carries the hash.
    let listed = serde_json::to_string(&t.auth.list_users(&by()).await.unwrap()).unwrap();
    assert!(
        !listed.contains("argon2") && !listed.contains("hunter2"),
        "{listed}"
    );

    // Changing it keeps it hashed, and the old one stops working.
    let alice = Username::parse("alice").unwrap();
    t.auth
        .update_user(&by(), &alice, &password("a new password"))
        .await
        .unwrap();
    assert!(t.auth.login("alice", "hunter2hunter2", None).await.is_err());
    t.auth.login("alice", "a new password", None).await.unwrap();
    assert!(!dump(&raw, "users").await.contains("a new password"));
    assert_eq!(
        kind(
            t.auth
                .update_user(&by(), &alice, &password("1234567"))
                .await
        ),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(
            t.auth
                .create_user(
                    &by(),
                    &Username::parse("zed").unwrap(),
                    &"x".repeat(1025),
                    Role::Viewer
                )
                .await
        ),
        ErrorKind::Invalid
    );
}

#[tokio::test]
async fn session_and_api_tokens_are_stored_only_as_hashes() {
    let t = Setup::new().await;
    let alice = t.user("alice", "alice's password", Role::Deployer).await;
    let session = t
        .auth
        .login("alice", "alice's password", None)
        .await
        .unwrap();
    let (token, plain) = t
        .auth
        .create_token(
            &as_user(&alice, Role::Deployer),
            "ci",
            Some(Role::Deployer),
            None,
        )
        .await
        .unwrap();

    assert_eq!(session.session_token.len(), 64);
    assert!(plain.starts_with(TOKEN_PREFIX) && plain.len() == TOKEN_PREFIX.len() + 40);
    assert!(plain[TOKEN_PREFIX.len()..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric()));
    assert!(plain.starts_with(&token.prefix) && token.prefix.len() < 12);

    let raw = t.raw().await;
    let sessions = dump(&raw, "sessions").await;
    assert!(!sessions.contains(&session.session_token));
    assert!(sessions.contains(&sha256_hex(&session.session_token)));
    let tokens = dump(&raw, "api_tokens").await;
    assert!(!tokens.contains(&plain));
    assert!(!tokens.contains(&plain[TOKEN_PREFIX.len()..]));
    assert!(tokens.contains(&sha256_hex(&plain)));

    let listed = serde_json::to_string(&t.auth.list_tokens(&by(), true).await.unwrap()).unwrap();
    assert!(!listed.contains(&plain) && !listed.contains(&sha256_hex(&plain)));
}

#[tokio::test]
async fn logged_out_sessions_and_revoked_tokens_are_refused() {
    let t = Setup::new().await;
    let alice = t.user("alice", "alice's password", Role::Deployer).await;
    let bob = t.user("bob", "bob's password", Role::Deployer).await;
    t.user("root", "root's password", Role::Admin).await;

    let s1 = t
        .auth
        .login("alice", "alice's password", None)
        .await
        .unwrap();
    let s2 = t
        .auth
        .login("alice", "alice's password", None)
        .await
        .unwrap();
    assert_ne!(s1.session_token, s2.session_token);
    assert_eq!(t.auth.session(&s1.session_token).await.unwrap().user, alice);
    t.auth.logout(&s1.session_token).await.unwrap();
    assert_eq!(
        kind(t.auth.session(&s1.session_token).await),
        ErrorKind::Unauthenticated
    );
    t.auth.session(&s2.session_token).await.unwrap();
    // Garbage and unknown tokens are refused the same way.
    for bad in [
        "",
        "nope",
        &"0".repeat(64),
        &s1.session_token.to_uppercase(),
    ] {
        assert_eq!(
            kind(t.auth.session(bad).await),
            ErrorKind::Unauthenticated,
            "{bad}"
        );
    }
    assert_eq!(t.auth.revoke_sessions(&alice).await.unwrap(), 1);
    assert!(t.auth.session(&s2.session_token).await.is_err());

    let (token, plain) = t
        .auth
        .create_token(
            &as_user(&alice, Role::Deployer),
            "ci",
            Some(Role::Deployer),
            None,
        )
        .await
        .unwrap();
    let p = t.auth.token(&plain).await.unwrap();
    assert_eq!((p.user.clone(), p.role), (alice.clone(), Role::Deployer));
    assert_eq!(p.via, Via::Token(token.id.clone()));
    assert_eq!(p.actor().as_str(), "alice");

    // Only its owner or an admin may revoke it.
    let bob_p = t
        .auth
        .login("bob", "bob's password", None)
        .await
        .unwrap()
        .principal;
    assert_eq!(bob_p.user, bob);
    // To anyone else it does not exist.
    let denied = t.auth.revoke_token(&token.id, &bob_p).await;
    assert_eq!(message(denied), format!("token {} not found", token.id));
    t.auth.token(&plain).await.unwrap();
    let root = t
        .auth
        .login("root", "root's password", None)
        .await
        .unwrap()
        .principal;
    t.auth.revoke_token(&token.id, &root).await.unwrap();
    assert_eq!(kind(t.auth.token(&plain).await), ErrorKind::Unauthenticated);
    let listed = t
        .auth
        .list_tokens(&as_user(&alice, Role::Viewer), false)
        .await
        .unwrap();
    assert!(listed[0].revoked_at.is_some());
    // Revoking twice is fine; an unknown ID is not found.
    t.auth.revoke_token(&token.id, &p).await.unwrap();
    let unknown = TokenId::parse("TAAAAAAAAAA").unwrap();
    assert_eq!(
        kind(t.auth.revoke_token(&unknown, &root).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(t.auth.token("slw_nope").await),
        ErrorKind::Unauthenticated
    );
}

#[tokio::test]
async fn sessions_end_when_idle_or_too_old_and_are_touched_at_most_once_a_minute() {
    let t = Setup::new().await;
    t.user("alice", "alice's password", Role::Viewer).await;
    let raw = t.raw().await;
    let last_seen = || async {
        sqlx::query_scalar::<_, i64>("SELECT last_seen_at FROM sessions")
            .fetch_one(&raw)
            .await
            .unwrap()
    };

    let s = t
        .auth
        .login("alice", "alice's password", None)
        .await
        .unwrap();
    let token = s.session_token;
    let created = last_seen().await;
    t.clock.advance(Duration::from_secs(30));
    t.auth.session(&token).await.unwrap();
    assert_eq!(last_seen().await, created, "no write within a minute");
    t.clock.advance(Duration::from_secs(31));
    t.auth.session(&token).await.unwrap();
    assert_eq!(last_seen().await, t.clock.now(), "written after a minute");

    // Used every 11 hours, it lives on (idle limit 12 h) for 15 * 11 = 165 hours...
    for _ in 0..15 {
        t.clock.advance(11 * HOUR);
        t.auth.session(&token).await.unwrap();
    }
    // ...but not past 7 days (168 hours), however often it is used.
    t.clock.advance(11 * HOUR);
    assert!(t.clock.now() - created > 7 * 24 * 3_600_000);
    assert_eq!(
        kind(t.auth.session(&token).await),
        ErrorKind::Unauthenticated
    );

    // Idle for more than 12 hours: refused.
    let s = t
        .auth
        .login("alice", "alice's password", None)
        .await
        .unwrap();
    t.clock.advance(12 * HOUR);
    t.auth.session(&s.session_token).await.unwrap();
    t.clock.advance(12 * HOUR + Duration::from_secs(1));
    assert_eq!(
        kind(t.auth.session(&s.session_token).await),
        ErrorKind::Unauthenticated
    );

    // Dead sessions can be purged; a live one stays.
    let live = t
        .auth
        .login("alice", "alice's password", None)
        .await
        .unwrap();
    assert_eq!(t.auth.purge_sessions().await.unwrap(), 2);
    t.auth.session(&live.session_token).await.unwrap();
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_user_name_and_address_until_the_window_passes() {
    let t = Setup::new().await;
    t.user("alice", "alice's password", Role::Viewer).await;
    t.user("bob", "bob's password", Role::Viewer).await;
    let home = ip("10.0.1.1");

    // Four failures, then a success, forget alice's failures from there...
    for _ in 0..4 {
        assert_eq!(
            kind(t.auth.login("alice", "wrong password", home).await),
            ErrorKind::Unauthenticated
        );
    }
    t.auth
        .login("alice", "alice's password", home)
        .await
        .unwrap();
    // ...so five more are allowed.
    for _ in 0..5 {
        assert_eq!(
            kind(t.auth.login("ALICE", "wrong password", home).await),
            ErrorKind::Unauthenticated
        );
    }
    // Then even the right password is refused from there without being checked...
    let limited = t.auth.login("alice", "alice's password", home).await;
    assert_eq!(retry_after(limited), 15 * 60);
    assert_eq!(
        message(t.auth.login("alice", "alice's password", home).await),
        "too many failed sign-in attempts; try again in 900 seconds"
    );
    // ...but not from anywhere else: failures from one address never lock a user out of
    // the others.
    t.auth
        .login("alice", "alice's password", ip("10.0.2.1"))
        .await
        .unwrap();
    t.auth
        .login("alice", "alice's password", None)
        .await
        .unwrap();
    // Other users are not affected, from the same address either.
    t.auth.login("bob", "bob's password", home).await.unwrap();

    t.clock.advance(14 * MINUTE);
    assert_eq!(
        retry_after(t.auth.login("alice", "alice's password", home).await),
        60
    );
    t.clock.advance(MINUTE);
    t.auth
        .login("alice", "alice's password", home)
        .await
        .unwrap();
    // Unknown names are limited too (the limiter does not tell whether a user exists).
    for _ in 0..5 {
        let _ = t.auth.login("mallory", "guess guess", None).await;
    }
    assert_eq!(
        kind(t.auth.login("mallory", "guess guess", None).await),
        ErrorKind::RateLimited
    );
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_client_address_whatever_the_names() {
    let t = Setup::new().await;
    t.user("alice", "alice's password", Role::Viewer).await;
    let per_address = AuthConfig::for_tests().login_max_failures_per_address;
    let attacker = ip("192.0.2.7");
    for i in 0..per_address {
        assert_eq!(
            kind(
                t.auth
                    .login(&format!("u{i}"), "wrong password", attacker)
                    .await
            ),
            ErrorKind::Unauthenticated
        );
    }
    // The address is blocked for every name, the right password included...
    assert_eq!(
        kind(t.auth.login("u-next", "wrong password", attacker).await),
        ErrorKind::RateLimited
    );
    assert_eq!(
        kind(t.auth.login("alice", "alice's password", attacker).await),
        ErrorKind::RateLimited
    );
    // ...but alice from elsewhere is fine.
    t.auth
        .login("alice", "alice's password", ip("198.51.100.1"))
        .await
        .unwrap();
    // Other addresses of the same IPv6 /64 count as one.
    for i in 0..per_address {
        let addr = ip(&format!("2001:db8:0:1::{i}"));
        let _ = t.auth.login(&format!("v{i}"), "wrong password", addr).await;
    }
    let same_net = t
        .auth
        .login("alice", "alice's password", ip("2001:db8:0:1::ffff"))
        .await;
    assert_eq!(kind(same_net), ErrorKind::RateLimited);

    t.clock.advance(15 * MINUTE);
    t.auth
        .login("alice", "alice's password", attacker)
        .await
        .unwrap();
    t.auth
        .login("alice", "alice's password", ip("2001:db8:0:1::ffff"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_token_with_a_lifetime_is_refused_from_its_expiry_on() {
    let t = Setup::new().await;
    let alice = t.user("alice", "alice's password", Role::Deployer).await;
    let week = TokenLifetime::days(7).unwrap();
    let (token, plain) = t
        .auth
        .create_token(
            &as_user(&alice, Role::Deployer),
            "ci",
            Some(Role::Deployer),
            Some(week),
        )
        .await
        .unwrap();
    assert_eq!(token.expires_at, Some(token.created_at + 7 * 86_400_000));
    let (forever, forever_plain) = t
        .auth
        .create_token(
            &as_user(&alice, Role::Deployer),
            "laptop",
            Some(Role::Viewer),
            None,
        )
        .await
        .unwrap();
    assert_eq!(forever.expires_at, None);
    t.auth.token(&plain).await.unwrap();
    // Listed with its expiry.
    let listed = t
        .auth
        .list_tokens(&as_user(&alice, Role::Viewer), false)
        .await
        .unwrap();
    let found = listed.iter().find(|l| l.id == token.id).unwrap();
    assert_eq!(found.expires_at, token.expires_at);
    assert!(!found.is_expired(t.clock.now()));

    t.clock.advance(7 * 24 * HOUR - Duration::from_millis(1));
    t.auth.token(&plain).await.unwrap();
    t.clock.advance(Duration::from_millis(1));
    assert_eq!(
        message(t.auth.token(&plain).await),
        "the API token is not valid, has expired or was revoked"
    );
    assert!(found.is_expired(t.clock.now()));
    // A token without a lifetime lives on.
    t.auth.token(&forever_plain).await.unwrap();
    // And it survives a restart.
    let mut t = t;
    t.restart().await;
    assert_eq!(kind(t.auth.token(&plain).await), ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn dead_sessions_are_counted_until_purged() {
    let t = Setup::new().await;
    t.user("alice", "alice's password", Role::Viewer).await;
    for _ in 0..3 {
        t.auth
            .login("alice", "alice's password", None)
            .await
            .unwrap();
    }
    assert_eq!(t.auth.count_sessions().await.unwrap(), 3);
    t.clock.advance(13 * HOUR);
    assert_eq!(t.auth.count_sessions().await.unwrap(), 3);
    assert_eq!(t.auth.purge_sessions().await.unwrap(), 3);
    assert_eq!(t.auth.count_sessions().await.unwrap(), 0);
}

#[tokio::test]
async fn a_tokens_role_never_exceeds_its_owners() {
    let t = Setup::new().await;
    let dep = t.user("dep", "dep's password", Role::Deployer).await;
    let admin = t.user("root", "root's password", Role::Admin).await;

    // Never more than the caller's role (a viewer token of an admin makes viewer tokens)...
    let too_high = t
        .auth
        .create_token(
            &as_user(&dep, Role::Deployer),
            "ci",
            Some(Role::Admin),
            None,
        )
        .await;
    assert_eq!(
        message(too_high),
        "a token cannot have a higher role than yours (deployer)"
    );
    // ... nor than its owner's, whatever the caller was when it signed in.
    let stale = t
        .auth
        .create_token(&as_user(&dep, Role::Admin), "ci", Some(Role::Admin), None)
        .await;
    assert_eq!(message(stale), "this needs the admin role");
    // Without a role, the caller's.
    let (token, _) = t
        .auth
        .create_token(&as_user(&dep, Role::Viewer), "mine", None, None)
        .await
        .unwrap();
    assert_eq!(token.role, Role::Viewer);
    let (_, deploy) = t
        .auth
        .create_token(
            &as_user(&dep, Role::Deployer),
            "deploy",
            Some(Role::Deployer),
            None,
        )
        .await
        .unwrap();
    let (_, view) = t
        .auth
        .create_token(
            &as_user(&dep, Role::Deployer),
            "view",
            Some(Role::Viewer),
            None,
        )
        .await
        .unwrap();
    assert_eq!(t.auth.token(&deploy).await.unwrap().role, Role::Deployer);
    let viewer = t.auth.token(&view).await.unwrap();
    assert_eq!(viewer.role, Role::Viewer);
    assert_eq!(
        kind(viewer.require(Role::Deployer).map_err(Error::from)),
        ErrorKind::Forbidden
    );
    viewer.require(Role::Viewer).unwrap();

    // A demoted owner's tokens lose what the owner lost; a disabled owner's stop working.
    t.auth
        .update_user(&by(), &dep, &role(Role::Viewer))
        .await
        .unwrap();
    assert_eq!(t.auth.token(&deploy).await.unwrap().role, Role::Viewer);
    t.auth.update_user(&by(), &dep, &disable()).await.unwrap();
    assert_eq!(kind(t.auth.token(&view).await), ErrorKind::Unauthenticated);
    assert_eq!(
        kind(
            t.auth
                .create_token(
                    &as_user(&dep, Role::Deployer),
                    "x",
                    Some(Role::Viewer),
                    None
                )
                .await
        ),
        ErrorKind::Conflict
    );
    t.auth.update_user(&by(), &dep, &enable()).await.unwrap();
    t.auth.token(&view).await.unwrap();

    assert_eq!(
        kind(
            t.auth
                .create_token(&as_user(&admin, Role::Admin), " ", Some(Role::Viewer), None)
                .await
        ),
        ErrorKind::Invalid
    );
    let nobody = Username::parse("nobody").unwrap();
    assert_eq!(
        kind(
            t.auth
                .create_token(
                    &as_user(&nobody, Role::Viewer),
                    "x",
                    Some(Role::Viewer),
                    None
                )
                .await
        ),
        ErrorKind::NotFound
    );
    let mine = t
        .auth
        .list_tokens(&as_user(&dep, Role::Viewer), false)
        .await
        .unwrap();
    assert_eq!(mine.len(), 3);
    assert!(mine.iter().all(|tok| tok.owner == dep));
    assert_eq!(
        t.auth
            .list_tokens(&as_user(&admin, Role::Viewer), false)
            .await
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn users_are_managed_and_the_last_admin_is_kept() {
    let t = Setup::new().await;
    let root = t.user("root", "root's password", Role::Admin).await;
    let alice = t.user("alice", "alice's password", Role::Viewer).await;
    assert_eq!(
        kind(
            t.auth
                .create_user(&by(), &alice, "another password", Role::Admin)
                .await
        ),
        ErrorKind::Conflict
    );

    assert_eq!(
        kind(
            t.auth
                .update_user(&by(), &root, &role(Role::Deployer))
                .await
        ),
        ErrorKind::Conflict
    );
    assert_eq!(
        kind(t.auth.update_user(&by(), &root, &disable()).await),
        ErrorKind::Conflict
    );
    assert_eq!(
        kind(t.auth.delete_user(&by(), &root).await),
        ErrorKind::Conflict
    );

    let s = t
        .auth
        .login("alice", "alice's password", None)
        .await
        .unwrap();
    t.auth
        .update_user(&by(), &alice, &role(Role::Admin))
        .await
        .unwrap();
    assert_eq!(
        t.auth.session(&s.session_token).await.unwrap().role,
        Role::Admin
    );
    t.auth
        .update_user(&by(), &root, &role(Role::Viewer))
        .await
        .unwrap();

    // A new password ends the user's sessions.
    t.auth
        .update_user(&by(), &alice, &password("a new password"))
        .await
        .unwrap();
    assert!(t.auth.session(&s.session_token).await.is_err());

    t.auth
        .create_token(&as_user(&root, Role::Viewer), "t", Some(Role::Viewer), None)
        .await
        .unwrap();
    t.auth.login("root", "root's password", None).await.unwrap();
    t.auth.delete_user(&by(), &root).await.unwrap();
    let users = t.auth.list_users(&by()).await.unwrap();
    assert_eq!(
        users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["alice"]
    );
    assert!(t.auth.list_tokens(&by(), true).await.unwrap().is_empty());
    assert_eq!(kind(t.auth.user(&root).await), ErrorKind::NotFound);
    assert_eq!(
        kind(t.auth.update_user(&by(), &root, &role(Role::Admin)).await),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn audit_entries_are_filtered_and_paged_newest_first() {
    let t = Setup::new().await;
    let hello = AppName::parse("hello").unwrap();
    let other = AppName::parse("other").unwrap();
    let alice = Actor::new("alice");
    let bob = Actor::new("bob");

    let entries = [
        AuditEntry::new(alice.clone(), "login"),
        AuditEntry::new(alice.clone(), "release.promote")
            .app(&hello)
            .target("RAAAAAAAAAA"),
        AuditEntry::new(bob.clone(), "env.change")
            .app(&hello)
            .target("add:FOO"),
        AuditEntry::new(bob.clone(), "release.promote")
            .app(&other)
            .result(AuditResult::Denied),
        AuditEntry::new(alice.clone(), "env.reveal").app(&hello),
        AuditEntry::new(alice.clone(), "release.rollback")
            .app(&hello)
            .result(AuditResult::Failed("release RBBBBBBBBBB not found".into())),
        AuditEntry::new(bob.clone(), "token.create").target("TAAAAAAAAAA"),
    ];
    let mut seqs = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        t.clock.advance(Duration::from_secs(1));
        let rec = t.auth.record_audit(e.clone()).await.unwrap();
        assert_eq!(rec.at, t.clock.now(), "entry {i}");
        seqs.push(rec.seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    let list = |f: AuditFilter| {
        let auth = t.auth.clone();
        async move { auth.list_audit(&f).await.unwrap() }
    };
    let actions = |recs: &[AuditRecord]| recs.iter().map(|r| r.action.clone()).collect::<Vec<_>>();

    let all = list(AuditFilter::default()).await;
    assert_eq!(all.len(), 7);
    assert_eq!(all[0].action, "token.create");
    assert_eq!(all[6].action, "login");
    assert_eq!(
        all[1].result,
        AuditResult::Failed("release RBBBBBBBBBB not found".into())
    );
    assert_eq!(all[3].result, AuditResult::Denied);
    assert_eq!(all[3].app, Some(other.clone()));
    assert_eq!(all[4].target.as_deref(), Some("add:FOO"));

    let by_app = list(AuditFilter {
        app: Some(hello.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        actions(&by_app),
        [
            "release.rollback",
            "env.reveal",
            "env.change",
            "release.promote"
        ]
    );
    let by_actor = list(AuditFilter {
        actor: Some(bob.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        actions(&by_actor),
        ["token.create", "release.promote", "env.change"]
    );
    let by_action = list(AuditFilter {
        action: Some("release.".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        actions(&by_action),
        ["release.rollback", "release.promote", "release.promote"]
    );
    let combined = list(AuditFilter {
        actor: Some(alice.clone()),
        app: Some(hello.clone()),
        action: Some("release.".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(actions(&combined), ["release.rollback", "release.promote"]);

    // Keyset pages of 3: every entry once, in order.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = list(AuditFilter {
            before_seq: before,
            limit: 3,
            ..Default::default()
        })
        .await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        before = page.last().map(|r| r.seq);
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let page = list(AuditFilter {
        app: Some(hello.clone()),
        before_seq: Some(by_app[1].seq),
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(actions(&page), ["env.change"]);

    // The outcome of an operation maps to a result.
    assert_eq!(AuditResult::of(&Ok::<(), Error>(())), AuditResult::Ok);
    let forbidden: Result<()> = Err(Error::needs(Role::Admin));
    assert_eq!(AuditResult::of(&forbidden), AuditResult::Denied);
    assert_eq!(
        kind(t.auth.record_audit(AuditEntry::new(alice, " ")).await),
        ErrorKind::Invalid
    );
}

#[tokio::test]
async fn only_admins_manage_users_and_see_everyones_tokens() {
    let t = Setup::new().await;
    let alice = t.user("alice", "alice's password", Role::Deployer).await;
    let deployer = as_user(&alice, Role::Deployer);
    let bob = Username::parse("bob").unwrap();
    for refused in [
        kind(
            t.auth
                .create_user(&deployer, &bob, "bob's password", Role::Viewer)
                .await,
        ),
        kind(
            t.auth
                .update_user(&deployer, &alice, &role(Role::Admin))
                .await,
        ),
        kind(t.auth.delete_user(&deployer, &alice).await),
        kind(t.auth.list_users(&deployer).await),
        kind(t.auth.list_tokens(&deployer, true).await),
    ] {
        assert_eq!(refused, ErrorKind::Forbidden);
    }
    assert_eq!(t.auth.user(&alice).await.unwrap().role, Role::Deployer);
    assert!(t
        .auth
        .list_tokens(&deployer, false)
        .await
        .unwrap()
        .is_empty());
    let denied = audit_log(&t)
        .await
        .into_iter()
        .filter(|r| r.3 == "denied")
        .count();
    assert_eq!(
        denied, 3,
        "the three use cases that change something record the refusal"
    );
}

#[tokio::test]
async fn a_user_update_is_one_change_with_its_audit_entries() {
    let t = Setup::new().await;
    let root = t.user("root", "root's password", Role::Admin).await;
    let alice = t.user("alice", "alice's password", Role::Deployer).await;
    let s = t
        .auth
        .login("alice", "alice's password", None)
        .await
        .unwrap();
    let all = UserUpdate {
        role: Some(Role::Viewer),
        disabled: Some(true),
        password: Some("a new password".into()),
    };
    assert!(!format!("{all:?}").contains("a new password"));
    let user = t.auth.update_user(&by(), &alice, &all).await.unwrap();
    assert_eq!((user.role, user.is_disabled()), (Role::Viewer, true));
    assert!(t.auth.session(&s.session_token).await.is_err());
    let log = audit_log(&t).await;
    let updates: Vec<&str> = log
        .iter()
        .filter(|r| r.1 == "user.update")
        .map(|r| r.2.as_str())
        .collect();
    assert_eq!(
        updates,
        ["alice role viewer", "alice disabled", "alice password"]
    );

    // A change that fails changes nothing, and every part of it is recorded as failed.
    let bad = UserUpdate {
        role: Some(Role::Deployer),
        disabled: Some(true),
        ..UserUpdate::default()
    };
    assert_eq!(
        kind(t.auth.update_user(&by(), &root, &bad).await),
        ErrorKind::Conflict
    );
    let root_now = t.auth.user(&root).await.unwrap();
    assert_eq!(
        (root_now.role, root_now.is_disabled()),
        (Role::Admin, false)
    );
    let failed: Vec<(String, String)> = audit_log(&t)
        .await
        .into_iter()
        .filter(|r| r.3 == "failed")
        .map(|r| (r.1, r.2))
        .collect();
    assert_eq!(
        failed,
        [
            ("user.update".to_string(), "root role deployer".to_string()),
            ("user.update".to_string(), "root disabled".to_string()),
        ]
    );
    // Nothing to change: the user as it is.
    let same = t
        .auth
        .update_user(&by(), &alice, &UserUpdate::default())
        .await
        .unwrap();
    assert_eq!(same, user);
}

#[tokio::test]
async fn users_sessions_tokens_and_audit_survive_a_restart() {
    let mut t = Setup::new().await;
    let password = t.auth.bootstrap_admin(None).await.unwrap().unwrap();
    let session = t.auth.login("admin", &password, None).await.unwrap();
    let admin = session.principal.user.clone();
    let (token, plain) = t
        .auth
        .create_token(
            &as_user(&admin, Role::Admin),
            "ci",
            Some(Role::Deployer),
            None,
        )
        .await
        .unwrap();
    let rec = t
        .auth
        .record_audit(AuditEntry::new(admin.actor(), "token.create").target(token.id.as_str()))
        .await
        .unwrap();
    let before = t.auth.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        before.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
        ["token.create", "token.create", "login", "user.create"]
    );
    assert_eq!(before[0], rec);

    t.restart().await;

    assert_eq!(t.auth.bootstrap_admin(None).await.unwrap(), None);
    let p = t.auth.session(&session.session_token).await.unwrap();
    assert_eq!((p.user.clone(), p.role), (admin.clone(), Role::Admin));
    let p = t.auth.token(&plain).await.unwrap();
    assert_eq!(
        (p.role, p.via),
        (Role::Deployer, Via::Token(token.id.clone()))
    );
    assert_eq!(
        t.auth.list_audit(&AuditFilter::default()).await.unwrap(),
        before
    );
    t.auth.login("admin", &password, None).await.unwrap();
}

/// `(actor, action, target, result)` of every entry, oldest first.
async fn audit_log(t: &Setup) -> Vec<(String, String, String, String)> {
    let mut all = t
        .auth
        .list_audit(&AuditFilter {
            limit: AuditFilter::MAX_LIMIT,
            ..Default::default()
        })
        .await
        .unwrap();
    all.reverse();
    all.into_iter()
        .map(|r| {
            (
                r.actor,
                r.action,
                r.target.unwrap_or_default(),
                r.result.as_str().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn sign_ins_tokens_and_users_write_their_own_audit_entries() {
    let t = Setup::new().await;
    let alice = t.user("alice", "alice's password", Role::Deployer).await;
    let ok = t
        .auth
        .login("alice", "alice's password", ip("10.0.0.1"))
        .await
        .unwrap();
    t.auth
        .login("alice", "wrong password", ip("10.0.0.1"))
        .await
        .unwrap_err();
    t.auth
        .login("not a name!", "wrong password", ip("10.0.0.2"))
        .await
        .unwrap_err();
    let (token, _) = t
        .auth
        .create_token(
            &as_user(&alice, Role::Deployer),
            "ci",
            Some(Role::Viewer),
            None,
        )
        .await
        .unwrap();
    t.auth
        .create_token(
            &as_user(&alice, Role::Deployer),
            "too much",
            Some(Role::Admin),
            None,
        )
        .await
        .unwrap_err();
    let mallory = t.user("mallory", "mallory's password", Role::Viewer).await;
    let mallory_p = t
        .auth
        .login("mallory", "mallory's password", None)
        .await
        .unwrap()
        .principal;
    t.auth
        .revoke_token(&token.id, &mallory_p)
        .await
        .unwrap_err();
    t.auth.revoke_token(&token.id, &ok.principal).await.unwrap();
    let (cli, cli_token, _) = t
        .auth
        .login_for_token("alice", "alice's password", None, "cli")
        .await
        .unwrap();
    t.auth.logout_token(&cli).await.unwrap();
    t.auth.logout(&ok.session_token).await.unwrap();
    // Ending a session that has ended changes (and records) nothing.
    t.auth.logout(&ok.session_token).await.unwrap();
    t.auth
        .update_user(&by(), &mallory, &role(Role::Deployer))
        .await
        .unwrap();
    t.auth
        .update_user(&by(), &mallory, &password("s3cr7"))
        .await
        .unwrap_err();
    t.auth
        .update_user(&by(), &mallory, &disable())
        .await
        .unwrap();

    let s = |v: &str| v.to_owned();
    let row = |a: &str, b: &str, c: &str, d: &str| (s(a), s(b), s(c), s(d));
    let expected = vec![
        row("admin", "user.create", "alice (deployer)", "ok"),
        row("alice", "login", "", "ok"),
        row("anonymous", "login", "alice", "denied"),
        row("anonymous", "login", "", "denied"),
        row("alice", "token.create", token.id.as_str(), "ok"),
        row("alice", "token.create", "", "denied"),
        row("admin", "user.create", "mallory (viewer)", "ok"),
        row("mallory", "login", "", "ok"),
        row("mallory", "token.revoke", token.id.as_str(), "failed"),
        row("alice", "token.revoke", token.id.as_str(), "ok"),
        row("alice", "login", "for an API token", "ok"),
        row("alice", "token.create", cli_token.id.as_str(), "ok"),
        row("alice", "logout", cli_token.id.as_str(), "ok"),
        row("alice", "logout", "", "ok"),
        row("admin", "user.update", "mallory role deployer", "ok"),
        row("admin", "user.update", "mallory password", "failed"),
        row("admin", "user.update", "mallory disabled", "ok"),
    ];
    assert_eq!(audit_log(&t).await, expected);
    let dumped = dump(&t.raw().await, "audit").await;
    assert!(
        !dumped.contains("password'") && !dumped.contains("s3cr7"),
        "{dumped}"
    );
}

#[tokio::test]
async fn sign_ins_refused_by_the_rate_limit_do_not_grow_the_audit_log() {
    let t = Setup::new().await;
    t.user("alice", "alice's password", Role::Viewer).await;
    let before = audit_log(&t).await.len();
    let max = t.auth.config().login_max_failures as usize;
    for _ in 0..100 {
        let _ = t
            .auth
            .login("alice", "wrong password", ip("192.0.2.7"))
            .await;
    }
    assert_eq!(audit_log(&t).await.len(), before + max);
}
