//! Authentication, authorization and audit, with no HTTP in it: users with a [`Role`],
//! server-side sessions, API tokens, sign-in rate limiting and the audit log.
//!
//! The server holds one [`Auth`] next to the engine, on the engine's database
//! (`Auth::new(engine.store().clone(), config)`: the engine's store converts into a [`Db`];
//! the tables come with the engine's migrations), and, for each request:
//!
//! 1. turns the session cookie into a [`Principal`] with [`Auth::session`], or an
//!    `Authorization: Bearer slw_…` header with [`Auth::token`] (`Error::Unauthenticated`
//!    otherwise);
//! 2. checks what the request needs with [`Principal::require`] (`Error::Forbidden`);
//! 3. records only the refusals it makes itself (a caller without the role) with
//!    [`Auth::record_audit`].
//!
//! # Who may do what
//! The use cases that manage users and tokens are given the caller (`by`) and apply the one
//! rule for each thing, for the API and the Console alike: only an admin creates, changes,
//! deletes and lists users; a token never gets a higher role than its maker's; a token is
//! revoked by its owner or an admin (anyone else is told it does not exist); everyone's tokens
//! are listed to admins only.
//!
//! # Audit
//! Every use case here and in the engine writes its own audit entry (see [`actions`]),
//! with the real subject, in the transaction of the change it records: signing in (by the
//! user; a failure as `anonymous`, naming the user only when the typed name is a valid one),
//! signing out, creating and revoking tokens, creating and changing users. A use case that
//! fails records its attempt (`failed`, or `denied` for a refusal) in a write of its own.
//! Sign-ins refused by the rate limiter are not recorded one by one: the failures before
//! the limit are, and the limiter bounds those per user name and per client address.
//!
//! The engine writes its entries in its own transactions with [`audit::insert`].
//!
//! # Secrets
//! Passwords are stored as argon2id PHC strings, session and API tokens only as their
//! SHA-256. The plain session token ([`LoginOk::session_token`]) and API token (from
//! [`Auth::create_token`]) are returned once; no error message, `Debug` output or audit entry
//! contains a password or a token, and errors never say whether a user name exists.
//!
//! # Time
//! Every expiry and rate-limit decision reads the [`Clock`] given to [`Auth::with_clock`]
//! ([`types::now_ms`] by default), so that tests move a [`ManualClock`] instead of
//! sleeping.

pub mod audit;
mod error;
mod limiter;
mod password;
pub mod sql;
mod store;

pub use error::{Error, Result};
pub use limiter::addr_net;
pub use password::{PasswordParams, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
pub use store::Db;
pub use types::auth::{
    ApiToken, AuditEntry, AuditFilter, AuditRecord, AuditResult, Principal, Role, TokenId,
    TokenLifetime, User, Username, Via,
};

/// The audit log's action names of what the engine records itself. The Console's server
/// functions (`app::policy`) and the API's routes use the same names for the refusals only
/// the server sees.
pub mod actions {
    pub const LOGIN: &str = "login";
    pub const LOGOUT: &str = "logout";
    pub const APP_CREATE: &str = "app.create";
    pub const BUILD_CREATE: &str = "build.create";
    pub const RELEASE_CREATE: &str = "release.create";
    pub const RELEASE_PROMOTE: &str = "release.promote";
    pub const RELEASE_ROLLBACK: &str = "release.rollback";
    pub const PROMOTION_CANCEL: &str = "promotion.cancel";
    pub const ENV_CHANGE: &str = "env.change";
    pub const ENV_REVEAL: &str = "env.reveal";
    pub const TOKEN_CREATE: &str = "token.create";
    pub const TOKEN_REVOKE: &str = "token.revoke";
    pub const USER_CREATE: &str = "user.create";
    pub const USER_UPDATE: &str = "user.update";
    pub const USER_DELETE: &str = "user.delete";
}

use rand::distr::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use limiter::LoginLimiter;
use store::UserChange;
use types::{now_ms, Actor, Millis};

/// The time now, in milliseconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// A clock that only moves when told to, for tests: `auth.with_clock(clock.clock())`, then
/// `clock.advance(...)`. Clones share the time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock at `start`.
    pub fn new(start: Millis) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(start)))
    }

    /// A clock at the real time now.
    pub fn starting_now() -> ManualClock {
        ManualClock::new(now_ms())
    }

    /// The clock's time.
    pub fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(millis(by), Ordering::SeqCst);
    }

    /// This clock as a [`Clock`].
    pub fn clock(&self) -> Clock {
        let time = self.0.clone();
        Arc::new(move || time.load(Ordering::SeqCst))
    }
}

/// Settings of [`Auth`]. `Default` is for production; [`AuthConfig::for_tests`] hashes fast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// Cost of new password hashes (existing hashes keep the cost they were made with).
    pub password: PasswordParams,
    /// A session unused for longer than this ends (default 12 hours).
    pub session_idle: Duration,
    /// A session older than this ends, used or not (default 7 days).
    pub session_max_age: Duration,
    /// Failed sign-ins per user name from one client address allowed in `login_window`
    /// (default 5); further attempts for that name from that address are refused with
    /// `RateLimited` until the window passes. The same name from another address is not
    /// limited by them: one address cannot lock a user out of everywhere.
    pub login_max_failures: u32,
    /// Failed sign-ins from one client address, whatever the names, allowed in
    /// `login_window` (default 20: generous, for offices behind one address).
    pub login_max_failures_per_address: u32,
    /// Default 15 minutes.
    pub login_window: Duration,
    /// `last_seen_at` of sessions and `last_used_at` of tokens are written at most this often
    /// (default 1 minute), not on every request.
    pub touch_interval: Duration,
    /// A session or token checked less than this long ago is taken as still good without
    /// asking the database again (default 1 second; zero: always ask). Every change this
    /// process makes (sign out, revoke, role, disable, password) forgets them all at once, so
    /// the delay only applies to changes made by another Console instance.
    pub verified_for: Duration,
    /// How often the server deletes sessions that can no longer be used (revoked, idle or
    /// too old) with [`Auth::purge_sessions`] (default 1 hour).
    pub purge_interval: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            password: PasswordParams::default(),
            session_idle: Duration::from_secs(12 * 3600),
            session_max_age: Duration::from_secs(7 * 24 * 3600),
            login_max_failures: 5,
            login_max_failures_per_address: 20,
            login_window: Duration::from_secs(15 * 60),
            touch_interval: Duration::from_secs(60),
            verified_for: Duration::from_secs(1),
            purge_interval: Duration::from_secs(3600),
        }
    }
}

impl AuthConfig {
    /// The defaults with the cheapest password hashing ([`PasswordParams::insecure_fast`]).
    /// Tests only.
    pub fn for_tests() -> AuthConfig {
        AuthConfig {
            password: PasswordParams::insecure_fast(),
            ..AuthConfig::default()
        }
    }
}

/// Authentication, authorization and audit on a [`Db`]. Cheap to clone; clones share the
/// sign-in rate limiter.
///
/// The rate limiter is in memory, per process: counters are lost on restart and not shared
/// between several servers on one database.
#[derive(Clone)]
pub struct Auth {
    store: Db,
    config: Arc<AuthConfig>,
    clock: Clock,
    limiter: Arc<LoginLimiter>,
    /// A hash of a random password, verified against when the user does not exist so that
    /// the time taken does not tell whether it does. Made on first need.
    dummy_hash: Arc<OnceLock<String>>,
    /// Sessions and tokens (by hash) recently found good, with when (see
    /// [`AuthConfig::verified_for`]) and when they end, if they do.
    verified: Arc<std::sync::Mutex<std::collections::HashMap<String, Verified>>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A session or token found good: who, when, and until when at most.
struct Verified {
    principal: Principal,
    at: Millis,
    ends_at: Option<Millis>,
}

/// A successful sign-in: who, and the session token to give the client (in a cookie). The
/// token is shown here once; the store keeps only its SHA-256. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginOk {
    /// Who signed in (`via` is [`Via::Session`]).
    pub principal: Principal,
    /// 64 hex characters (32 random bytes).
    pub session_token: String,
}

impl fmt::Debug for LoginOk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginOk")
            .field("principal", &self.principal)
            .field("session_token", &"<redacted>")
            .finish()
    }
}

/// What [`Auth::update_user`] changes: any of a role, disabled (`true`) or enabled (`false`),
/// a new password. `Debug` does not print the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

impl UserUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.role.is_none() && self.disabled.is_none() && self.password.is_none()
    }
}

impl fmt::Debug for UserUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserUpdate")
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The user name an admin is bootstrapped with.
pub const BOOTSTRAP_ADMIN: &str = "admin";
/// Length of a generated bootstrap password (alphanumeric, about 143 bits).
const GENERATED_PASSWORD_LEN: usize = 24;
/// API tokens: this, then 40 alphanumeric characters.
pub const TOKEN_PREFIX: &str = "slw_";
const TOKEN_RANDOM_LEN: usize = 40;
/// Characters of a token kept for display, `slw_` included.
const TOKEN_DISPLAY_LEN: usize = TOKEN_PREFIX.len() + 4;
const TOKEN_NAME_MAX: usize = 64;

/// What a token's name may be, for the API's document: some text that is not only spaces,
/// without control characters, at most 64 characters.
pub const TOKEN_NAME: types::schema::StringRule = types::schema::StringRule {
    pattern: "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
    min_length: 1,
    max_length: TOKEN_NAME_MAX,
};

const BAD_LOGIN: &str = "wrong user name or password";
const BAD_SESSION: &str = "not signed in, or the session has ended; sign in again";
const BAD_TOKEN: &str = "the API token is not valid, has expired or was revoked";

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// SHA-256 of a token, hex: what the store keeps instead of the token.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_alphanumeric(len: usize) -> String {
    // `rand::rng()` is a ChaCha-based CSPRNG seeded from the OS.
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn new_session_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

fn is_session_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_api_token(s: &str) -> bool {
    s.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == TOKEN_RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The rule of [`TOKEN_NAME`]; the tests hold the two to the same answers.
pub(crate) fn check_token_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid("token name", "must not be empty"));
    }
    if name.chars().count() > TOKEN_NAME_MAX {
        return Err(Error::invalid(
            "token name",
            format!("must be at most {TOKEN_NAME_MAX} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "token name",
            "must not contain control characters",
        ));
    }
    Ok(name)
}

impl Auth {
    /// Authentication on `db` (usually `engine.store().clone()`; the tables come with the
    /// engine's migrations) with the real clock.
    pub fn new(db: impl Into<Db>, config: AuthConfig) -> Auth {
        let limiter = LoginLimiter::new(
            config.login_max_failures,
            config.login_max_failures_per_address,
            millis(config.login_window),
        );
        Auth {
            store: db.into(),
            config: Arc::new(config),
            clock: Arc::new(now_ms),
            limiter: Arc::new(limiter),
            dummy_hash: Arc::new(OnceLock::new()),
            verified: Arc::default(),
        }
    }

    /// The same, reading the time from `clock` (tests: [`ManualClock::clock`]).
    pub fn with_clock(mut self, clock: Clock) -> Auth {
        self.clock = clock;
        self
    }

    /// The settings this was built with.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    fn now(&self) -> Millis {
        (self.clock)()
    }

    // ---- users ----

    /// At first start: when there is no user at all, creates `admin` with the admin role and
    /// `password` — or, without one, a random 24-character alphanumeric password, which is
    /// returned (once: show it to the operator; it is not stored in clear). Returns `None`
    /// when users already exist (also when another server bootstrapped at the same time) or
    /// when `password` was given. `Error::Invalid` for a given password of the wrong length.
    pub async fn bootstrap_admin(&self, password: Option<&str>) -> Result<Option<String>> {
        if let Some(p) = password {
            password::check_password(p)?;
        }
        if self.store.has_users().await? {
            return Ok(None);
        }
        let (plain, generated) = match password {
            Some(given) => (given.to_owned(), None),
            None => {
                let random = random_alphanumeric(GENERATED_PASSWORD_LEN);
                (random.clone(), Some(random))
            }
        };
        let hash = password::hash(&self.config.password, &plain).await?;
        let name = Username::parse(BOOTSTRAP_ADMIN)?;
        let audit = AuditEntry::new(Actor::new("local"), actions::USER_CREATE)
            .target(format!("{name} ({})", Role::Admin));
        let created = self
            .store
            .insert_first_user(&name, &hash, Role::Admin, self.now(), &audit)
            .await?;
        Ok(if created { generated } else { None })
    }

    /// Creates a user, `by` an admin (audited as `user.create`). `Error::Forbidden` for anyone
    /// else, `Error::Invalid` for a password shorter than 8 or longer than 1024 characters,
    /// `Error::Conflict` when the name is taken.
    pub async fn create_user(
        &self,
        by: &Principal,
        name: &Username,
        password: &str,
        role: Role,
    ) -> Result<User> {
        let audit = AuditEntry::new(by.actor(), actions::USER_CREATE).target(name.as_str());
        let result = async {
            by.require(Role::Admin)?;
            let hash = password::hash(&self.config.password, password).await?;
            let entry = audit.clone().target(format!("{name} ({role})"));
            self.store
                .insert_user(name, &hash, role, self.now(), &entry)
                .await
        }
        .await;
        self.audited(&audit, result).await
    }

    /// Records `audit` as failed (see [`audit::record_failure`]) when
    /// `result` is an error, and passes it through.
    async fn audited<T>(&self, audit: &AuditEntry, result: Result<T>) -> Result<T> {
        self.store.audit_failure(audit, result, self.now()).await
    }

    /// The audit entry of a change to user `name` (`user.update`, naming what changed).
    fn user_audit(by: &Actor, name: &Username, what: &str) -> AuditEntry {
        AuditEntry::new(by.clone(), actions::USER_UPDATE).target(format!("{name} {what}"))
    }

    /// One user (`Error::NotFound` if there is none by that name).
    pub async fn user(&self, name: &Username) -> Result<User> {
        self.store.user(name).await
    }

    /// Every user, by name, for an admin (`Error::Forbidden` for anyone else). Never includes
    /// password hashes.
    pub async fn list_users(&self, by: &Principal) -> Result<Vec<User>> {
        by.require(Role::Admin)?;
        self.store.list_users().await
    }

    /// Changes user `name`, `by` an admin (`Error::Forbidden` for anyone else): its role, and/or
    /// disables or enables it, and/or replaces its password — in one transaction with their
    /// audit entries (`user.update`, one per change, naming it; when it fails, each is
    /// recorded as failed). Disabling ends the user's sessions and refuses its tokens until it
    /// is enabled again (enabling does not bring old sessions back); a new password ends its
    /// sessions (its tokens stay valid). Sessions and tokens see the change on their next
    /// request. `Error::NotFound` for an unknown user, `Error::Conflict` when it would leave
    /// no enabled admin, `Error::Invalid` for a password of the wrong length. An update that
    /// changes nothing only returns the user.
    pub async fn update_user(
        &self,
        by: &Principal,
        name: &Username,
        update: &UserUpdate,
    ) -> Result<User> {
        if update.is_empty() {
            by.require(Role::Admin)?;
            return self.store.user(name).await;
        }
        let actor = by.actor();
        let mut audit = Vec::new();
        if let Some(role) = update.role {
            audit.push(Self::user_audit(&actor, name, &format!("role {role}")));
        }
        match update.disabled {
            Some(true) => audit.push(Self::user_audit(&actor, name, "disabled")),
            Some(false) => audit.push(Self::user_audit(&actor, name, "enabled")),
            None => {}
        }
        if update.password.is_some() {
            audit.push(Self::user_audit(&actor, name, "password"));
        }
        let result = async {
            by.require(Role::Admin)?;
            let password_hash = match &update.password {
                Some(p) => Some(password::hash(&self.config.password, p).await?),
                None => None,
            };
            let change = UserChange {
                role: update.role,
                disabled: update.disabled,
                password_hash,
            };
            self.store
                .update_user(name, &change, self.now(), &audit)
                .await
        }
        .await;
        // After the change, so that nothing verified meanwhile outlives it.
        self.forget_verified();
        for entry in &audit {
            self.store.record_failure(entry, &result, self.now()).await;
        }
        result?;
        self.store.user(name).await
    }

    /// Deletes a user with its sessions and tokens, `by` an admin (audited as
    /// `user.delete`); the audit log keeps its name. `Error::Forbidden` for anyone else,
    /// `Error::Conflict` for the last enabled admin.
    pub async fn delete_user(&self, by: &Principal, name: &Username) -> Result<()> {
        let audit = AuditEntry::new(by.actor(), actions::USER_DELETE).target(name.as_str());
        let result = async {
            by.require(Role::Admin)?;
            self.store.delete_user(name, self.now(), &audit).await
        }
        .await;
        // After the change, so that nothing verified meanwhile outlives it.
        self.forget_verified();
        self.audited(&audit, result).await
    }

    // ---- sessions ----

    /// Signs in: checks the password and starts a session. `username` is what was typed
    /// (trimmed and lowercased here). Every failure — unknown user, wrong password, disabled
    /// user — is the same `Error::Unauthenticated` and takes as long (an unknown user is
    /// checked against a dummy hash). After `login_max_failures` failures in `login_window`
    /// for the name from `client`, or `login_max_failures_per_address` from `client` for any
    /// names, attempts from `client` are refused with `Error::RateLimited` without checking
    /// the password — the same name from another address still signs in. A success forgets
    /// the name's failures from that address.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<LoginOk> {
        let (name, user_id, role) = self.check_password(username, password, client).await?;
        let session_token = new_session_token();
        let client = client.map(|a| a.to_string());
        let audit = AuditEntry::new(name.actor(), actions::LOGIN);
        self.store
            .insert_session(
                &token_hash(&session_token),
                user_id,
                client.as_deref(),
                self.now(),
                &audit,
            )
            .await?;
        Ok(LoginOk {
            principal: Principal {
                user: name,
                role,
                via: Via::Session,
            },
            session_token,
        })
    }

    /// Signs in like [`Auth::login`] but for an API token named `token_name` with the user's
    /// role instead of a session (what `slipway login` keeps). Returns who signed in, the
    /// token and its plain value (shown once). The sign-in and the token are audited (`login`,
    /// `token.create`) in the token's transaction.
    pub async fn login_for_token(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
        token_name: &str,
    ) -> Result<(Principal, ApiToken, String)> {
        let token_name = check_token_name(token_name)?;
        let (name, _, role) = self.check_password(username, password, client).await?;
        // Tokens made by signing in (the CLI's) do not expire; `slipway tokens create` makes
        // ones that do.
        let (token, plain) = self.new_token(&name, token_name, role, None);
        let audit = [
            AuditEntry::new(name.actor(), actions::LOGIN).target("for an API token"),
            AuditEntry::new(name.actor(), actions::TOKEN_CREATE).target(token.id.as_str()),
        ];
        self.store
            .insert_token(&token, &token_hash(&plain), &audit)
            .await?;
        let principal = Principal {
            user: name,
            role,
            via: Via::Token(token.id.clone()),
        };
        Ok((principal, token, plain))
    }

    /// The rate limit and the password check of signing in: the user's name, ID and role.
    /// A failure is recorded as `anonymous` (naming the user only when the typed name is a
    /// valid one); a refusal by the rate limiter is not recorded.
    async fn check_password(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<(Username, i64, Role)> {
        let typed = username.trim().to_ascii_lowercase();
        // The limiter's key for the name, bounded (it may be anything a client sent).
        let key: String = typed.chars().take(Username::MAX_LEN + 1).collect();
        let attempt = self.limiter.begin(&key, client, self.now())?;
        let result = self.verify_password(&typed, password).await;
        match result {
            Ok(found) => {
                self.limiter.succeeded(attempt);
                Ok(found)
            }
            Err(e) => {
                let mut audit = AuditEntry::new(Actor::new("anonymous"), actions::LOGIN);
                if let Ok(name) = Username::parse(&typed) {
                    audit = audit.target(name.as_str());
                }
                self.audited(&audit, Err(e)).await
            }
        }
    }

    async fn verify_password(&self, typed: &str, password: &str) -> Result<(Username, i64, Role)> {
        if password.chars().count() > MAX_PASSWORD_LEN {
            return Err(Error::Unauthenticated(BAD_LOGIN.into()));
        }
        let user = match Username::parse(typed) {
            Ok(name) => self.store.credentials(&name).await?.map(|c| (name, c)),
            Err(_) => None,
        };
        let stored_hash = user.as_ref().map(|(_, c)| c.password_hash.clone());
        let dummy = self.dummy_hash.clone();
        let params = self.config.password.clone();
        let password_bytes = password.as_bytes().to_vec();
        let matches = password::blocking(move || -> Result<bool> {
            let phc = match stored_hash {
                Some(h) => h,
                None => match dummy.get() {
                    Some(h) => h.clone(),
                    None => {
                        let h = password::hash_blocking(
                            &params,
                            random_alphanumeric(GENERATED_PASSWORD_LEN).as_bytes(),
                        )?;
                        dummy.get_or_init(|| h).clone()
                    }
                },
            };
            Ok(password::verify_blocking(&password_bytes, &phc))
        })
        .await??;
        match user {
            Some((name, creds)) if matches && !creds.disabled => Ok((name, creds.id, creds.role)),
            _ => Err(Error::Unauthenticated(BAD_LOGIN.into())),
        }
    }

    /// Who holds the session `token` (from [`LoginOk::session_token`]).
    /// `Error::Unauthenticated` when it is unknown, revoked, unused for longer than
    /// `session_idle`, older than `session_max_age`, or its user is disabled. Marks the
    /// session used (at most once per `touch_interval`).
    pub async fn session(&self, token: &str) -> Result<Principal> {
        let refused = || Error::Unauthenticated(BAD_SESSION.into());
        if !is_session_token(token) {
            return Err(refused());
        }
        let hash = token_hash(token);
        if let Some(p) = self.recently_verified(&hash) {
            return Ok(p);
        }
        let row = self.store.session_row(&hash).await?.ok_or_else(refused)?;
        let now = self.now();
        if row.revoked
            || row.user_disabled
            || now - row.last_seen_at > millis(self.config.session_idle)
            || now - row.created_at > millis(self.config.session_max_age)
        {
            return Err(refused());
        }
        if now - row.last_seen_at >= millis(self.config.touch_interval) {
            self.store.touch_session(&hash, now).await?;
        }
        let principal = Principal {
            user: row.user,
            role: row.role,
            via: Via::Session,
        };
        // (From the last use the store knew of: the cache may only end sooner.)
        let ends_at = (row.last_seen_at + millis(self.config.session_idle))
            .min(row.created_at + millis(self.config.session_max_age));
        self.remember_verified(hash, &principal, now, Some(ends_at));
        Ok(principal)
    }

    /// The principal of a session or token hash checked less than `verified_for` ago.
    fn recently_verified(&self, hash: &str) -> Option<Principal> {
        let ttl = millis(self.config.verified_for);
        if ttl == 0 {
            return None;
        }
        let now = self.now();
        let verified = self.verified.lock().ok()?;
        let v = verified.get(hash)?;
        let good = now >= v.at && now - v.at < ttl && v.ends_at.is_none_or(|end| now < end);
        good.then(|| v.principal.clone())
    }

    fn remember_verified(
        &self,
        hash: String,
        principal: &Principal,
        now: Millis,
        ends_at: Option<Millis>,
    ) {
        if self.config.verified_for.is_zero() {
            return;
        }
        if let Ok(mut verified) = self.verified.lock() {
            // Bounded: past this many callers in one second, start over.
            if verified.len() >= 10_000 {
                verified.clear();
            }
            verified.insert(
                hash,
                Verified {
                    principal: principal.clone(),
                    at: now,
                    ends_at,
                },
            );
        }
    }

    /// Forgets every recently verified session and token: called on every change that can
    /// end or weaken one.
    fn forget_verified(&self) {
        if let Ok(mut verified) = self.verified.lock() {
            verified.clear();
        }
    }

    /// Ends the session `token` (audited as `logout` by its user). Unknown or already ended
    /// sessions are fine (and record nothing: nothing changed).
    pub async fn logout(&self, token: &str) -> Result<()> {
        if is_session_token(token) {
            let result = self
                .store
                .revoke_session(&token_hash(token), self.now(), |user| {
                    AuditEntry::new(user.actor(), actions::LOGOUT)
                })
                .await;
            // After the change, so that nothing verified meanwhile outlives it.
            self.forget_verified();
            result?;
        }
        Ok(())
    }

    /// Ends every session of `user` ("sign out everywhere"); returns how many there were.
    pub async fn revoke_sessions(&self, user: &Username) -> Result<u64> {
        let result = self.store.revoke_user_sessions(user, self.now()).await;
        // After the change, so that nothing verified meanwhile outlives it.
        self.forget_verified();
        result
    }

    /// Deletes sessions that can no longer be used (revoked, idle or too old); returns how
    /// many. The server calls it every [`AuthConfig::purge_interval`] to keep the table small.
    pub async fn purge_sessions(&self) -> Result<u64> {
        let now = self.now();
        self.store
            .delete_dead_sessions(
                now.saturating_sub(millis(self.config.session_idle)),
                now.saturating_sub(millis(self.config.session_max_age)),
            )
            .await
    }

    /// How many sessions the store holds, usable or not (until [`Auth::purge_sessions`]).
    pub async fn count_sessions(&self) -> Result<u64> {
        self.store.count_sessions().await
    }

    // ---- API tokens ----

    /// Creates an API token for the caller `by`, named `name` (1 to 64 characters), that may
    /// do what `role` allows (`None`: the caller's role), for `lifetime` from now (`None`:
    /// until revoked), audited as `token.create` by the caller. Returns it and the plain token
    /// (`slw_` + 40 alphanumeric characters), which is shown once and never stored.
    /// `Error::Forbidden` when `role` is above the caller's role (a viewer token of an admin
    /// makes viewer tokens) or its owner's, `Error::Conflict` when the owner is disabled.
    pub async fn create_token(
        &self,
        by: &Principal,
        name: &str,
        role: Option<Role>,
        lifetime: Option<TokenLifetime>,
    ) -> Result<(ApiToken, String)> {
        let owner = &by.user;
        let role = role.unwrap_or(by.role);
        let audit = AuditEntry::new(by.actor(), actions::TOKEN_CREATE);
        let result = async {
            if !by.role.allows(role) {
                return Err(Error::Forbidden(format!(
                    "a token cannot have a higher role than yours ({})",
                    by.role
                )));
            }
            let name = check_token_name(name)?;
            let user = self.store.user(owner).await?;
            if user.is_disabled() {
                return Err(Error::Conflict(format!("user {owner} is disabled")));
            }
            if !user.role.allows(role) {
                return Err(Error::needs(role));
            }
            let (token, plain) = self.new_token(owner, name, role, lifetime);
            let entry = audit.clone().target(token.id.as_str());
            self.store
                .insert_token(&token, &token_hash(&plain), &[entry])
                .await?;
            Ok((token, plain))
        }
        .await;
        self.audited(&audit, result).await
    }

    /// A new token (not stored yet) and its plain value.
    fn new_token(
        &self,
        owner: &Username,
        name: &str,
        role: Role,
        lifetime: Option<TokenLifetime>,
    ) -> (ApiToken, String) {
        let plain = format!("{TOKEN_PREFIX}{}", random_alphanumeric(TOKEN_RANDOM_LEN));
        let now = self.now();
        let token = ApiToken {
            id: TokenId::generate(),
            owner: owner.clone(),
            name: name.to_owned(),
            role,
            prefix: plain.chars().take(TOKEN_DISPLAY_LEN).collect(),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
            expires_at: lifetime.map(|l| now.saturating_add(l.as_millis())),
        };
        (token, plain)
    }

    /// Who holds the API token `plain`. Its role is the lower of the token's and its owner's
    /// current role. `Error::Unauthenticated` when the token is unknown, revoked or expired
    /// or its owner is disabled. Marks the token used (at most once per `touch_interval`).
    pub async fn token(&self, plain: &str) -> Result<Principal> {
        let refused = || Error::Unauthenticated(BAD_TOKEN.into());
        if !is_api_token(plain) {
            return Err(refused());
        }
        let hash = token_hash(plain);
        if let Some(p) = self.recently_verified(&hash) {
            return Ok(p);
        }
        let row = self.store.token_row(&hash).await?.ok_or_else(refused)?;
        let now = self.now();
        if row.revoked || row.owner_disabled || row.expires_at.is_some_and(|at| now >= at) {
            return Err(refused());
        }
        let due = row
            .last_used_at
            .is_none_or(|t| now - t >= millis(self.config.touch_interval));
        if due {
            self.store.touch_token(&row.id, now).await?;
        }
        let principal = Principal {
            user: row.owner,
            role: row.role.min(row.owner_role),
            via: Via::Token(row.id),
        };
        self.remember_verified(hash, &principal, now, row.expires_at);
        Ok(principal)
    }

    /// The caller's tokens, or with `everyone` everyone's (admins only: `Error::Forbidden`
    /// for anyone else), revoked and expired ones included, newest first.
    pub async fn list_tokens(&self, by: &Principal, everyone: bool) -> Result<Vec<ApiToken>> {
        if everyone {
            by.require(Role::Admin)?;
            self.store.list_tokens(None).await
        } else {
            self.store.list_tokens(Some(&by.user)).await
        }
    }

    /// Revokes a token (audited as `token.revoke`): `by` must be its owner or an admin; to
    /// anyone else, as for an unknown ID, it is `Error::NotFound`. Revoking twice is fine.
    pub async fn revoke_token(&self, id: &TokenId, by: &Principal) -> Result<()> {
        self.revoke_token_as(id, by, actions::TOKEN_REVOKE).await
    }

    /// Signs out a caller of the API: revokes the token `by` came with (audited as `logout`).
    /// A session is left alone (the Console signs out with [`Auth::logout`]).
    pub async fn logout_token(&self, by: &Principal) -> Result<()> {
        match &by.via {
            Via::Token(id) => self.revoke_token_as(id, by, actions::LOGOUT).await,
            Via::Session => Ok(()),
        }
    }

    async fn revoke_token_as(&self, id: &TokenId, by: &Principal, action: &str) -> Result<()> {
        let audit = AuditEntry::new(by.actor(), action).target(id.as_str());
        let result = async {
            let token = self.store.token(id).await?;
            if !by.is_self_or_admin(&token.owner) {
                return Err(Error::not_found("token", id));
            }
            self.store.revoke_token(id, self.now(), &audit).await
        }
        .await;
        // After the change, so that nothing verified meanwhile outlives it.
        self.forget_verified();
        self.audited(&audit, result).await
    }

    // ---- audit ----

    /// Appends `entry` to the audit log on its own, stamped with the current time, and returns
    /// it with its `seq`: for what no use case records itself (the server's refusals of
    /// callers without the role). Very long fields are cut. Never pass a secret in it.
    pub async fn record_audit(&self, entry: AuditEntry) -> Result<AuditRecord> {
        self.store.insert_audit(&entry, self.now()).await
    }

    /// A page of the audit log, newest first (see [`AuditFilter`] for paging).
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        self.store.list_audit(filter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_documented_shape() {
        let s = new_session_token();
        assert!(is_session_token(&s), "{s}");
        assert_ne!(s, new_session_token());
        let t = format!("{TOKEN_PREFIX}{}", random_alphanumeric(TOKEN_RANDOM_LEN));
        assert!(is_api_token(&t), "{t}");
        assert!(!is_api_token(&t[..t.len() - 1]));
        assert!(!is_api_token(&t.replace("slw_", "slx_")));
        assert_eq!(token_hash("abc").len(), 64);
    }

    #[test]
    fn token_names() {
        assert_eq!(check_token_name("  ci deploy ").unwrap(), "ci deploy");
        assert!(check_token_name(" ").is_err());
        assert!(check_token_name("a\nb").is_err());
        assert!(check_token_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1000);
        let f = c.clock();
        assert_eq!(f(), 1000);
        c.advance(Duration::from_secs(2));
        assert_eq!(f(), 3000);
        assert_eq!(c.clone().now(), 3000);
    }
}

#[cfg(test)]
mod token_name_rule {
    use super::*;

    #[test]
    fn the_documented_rule_says_what_the_check_does() {
        let re = regex::Regex::new(TOKEN_NAME.pattern).unwrap();
        let long = "x".repeat(TOKEN_NAME_MAX);
        let too_long = "x".repeat(TOKEN_NAME_MAX + 1);
        for name in [
            "",
            " ",
            "  \t",
            "ci",
            " ci ",
            "deploy bot",
            "a\u{7}b",
            "tab\there",
            "line\n",
            "é",
            "\u{85}x",
            long.as_str(),
            too_long.as_str(),
        ] {
            let documented = re.is_match(name) && TOKEN_NAME.length_fits(name);
            let accepted = check_token_name(name).is_ok();
            if name == name.trim() {
                assert_eq!(documented, accepted, "token name {name:?}");
            } else {
                // The check trims first; the document asks for no control characters at all.
                assert!(!documented || accepted, "token name {name:?}");
            }
        }
    }
}
