//! The values of authentication and audit: roles, user names, principals, users, API tokens
//! and audit entries — what the API and the CLI show. The rules (sessions, hashing, who may
//! do what to whom) live with the engine's authentication.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::{Error, Result};
use crate::model::Millis;
use crate::names::{Actor, AppName};

/// What a user or an API token may do. Each role allows everything the ones below it allow:
/// `Viewer < Deployer < Admin`. Serialized as `"viewer"`, `"deployer"`, `"admin"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads apps, releases, promotions and masked environments.
    Viewer,
    /// Also builds, changes environments, promotes and rolls back.
    Deployer,
    /// Also manages users and everyone's tokens.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Deployer, Role::Admin];

    /// `"viewer"`, `"deployer"` or `"admin"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    /// `"viewer"`, `"deployer"` or `"admin"`; anything else is `Error::Invalid`.
    pub fn parse(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "role",
                    format!("{s:?} is not one of viewer, deployer, admin"),
                )
            })
    }

    /// Whether this role may do what needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        Role::parse(s)
    }
}

/// A user's name: 1 to 64 characters, lowercase ASCII letters, digits, `-`, `_` and `.`,
/// starting with a letter. Unique in the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// The longest name, in characters.
    pub const MAX_LEN: usize = 64;

    /// What [`Self::parse`] accepts, for the API's document.
    pub const RULE: crate::schema::StringRule = crate::schema::StringRule {
        pattern: "^[a-z][a-z0-9._-]*$",
        min_length: 1,
        max_length: Self::MAX_LEN,
    };

    /// The name if it is valid, otherwise `Error::Invalid` (the message never repeats the input).
    pub fn parse(s: &str) -> Result<Username> {
        const WHAT: &str = "user name";
        if s.is_empty() {
            return Err(Error::invalid(WHAT, "must not be empty"));
        }
        // Never echo a long input: a password typed into the name field would end up in a
        // message.
        if s.len() > Self::MAX_LEN {
            return Err(Error::invalid(
                WHAT,
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(Error::invalid(WHAT, "must start with a lowercase letter"));
        }
        if !s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        }) {
            return Err(Error::invalid(
                WHAT,
                "may only contain lowercase letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Username(s.to_owned()))
    }

    /// The [`Actor`] recorded for what this user does.
    pub fn actor(&self) -> Actor {
        Actor::new(self.0.as_str())
    }
}

string_newtype!(Username);

/// An API token's ID: `T` + 10 random uppercase letters, like the other IDs. Not secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenId(String);

impl TokenId {
    /// The letter every token ID starts with.
    pub const PREFIX: char = 'T';

    /// What [`Self::parse`] accepts (after trimming), for the API's document.
    pub const RULE: crate::schema::StringRule = crate::schema::StringRule {
        pattern: "^T[A-Z]{10}$",
        min_length: 11,
        max_length: 11,
    };

    /// A new random token ID (feature `gen`).
    #[cfg(feature = "gen")]
    pub fn generate() -> TokenId {
        TokenId(crate::ids::random_id(Self::PREFIX))
    }

    /// A token ID from its text (`T` and 10 letters A-Z); `Error::Invalid` otherwise.
    pub fn parse(s: &str) -> Result<TokenId> {
        let s = s.trim();
        if crate::ids::is_valid(Self::PREFIX, s) {
            Ok(TokenId(s.to_owned()))
        } else {
            Err(Error::invalid(
                "token",
                format!("{s:?} is not a token ID (T followed by 10 letters A-Z)"),
            ))
        }
    }
}

string_newtype!(TokenId);

/// How a request proved who it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "id")]
pub enum Via {
    /// A session (the Console's cookie).
    Session,
    /// The API token with this ID.
    Token(TokenId),
}

/// Who is making a request, as established by the server's authentication (a session or an
/// API token), and what it may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The signed-in user (the token's owner for a token).
    pub user: Username,
    /// The effective role: the user's role for a session; for a token the lower of the
    /// token's role and its owner's current role.
    pub role: Role,
    /// A session or which token.
    pub via: Via,
}

impl Principal {
    /// The actor recorded for what this principal does (the user name).
    pub fn actor(&self) -> Actor {
        self.user.actor()
    }

    /// `Ok` when the principal's role allows `needed`, otherwise `Error::Forbidden`
    /// ("this needs the deployer role").
    pub fn require(&self, needed: Role) -> Result<()> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(Error::Forbidden { needed })
        }
    }

    /// Whether this principal is `user` or an admin: who may manage `user`'s own things.
    pub fn is_self_or_admin(&self, user: &Username) -> bool {
        &self.user == user || self.role.allows(Role::Admin)
    }
}

/// A user as listed; never carries the password hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The unique name the user signs in with.
    pub name: Username,
    /// What the user may do.
    pub role: Role,
    /// When the user was created.
    pub created_at: Millis,
    /// When the user was disabled: it can neither sign in nor use its sessions or tokens.
    pub disabled_at: Option<Millis>,
}

impl User {
    /// Whether the user is disabled.
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

/// An API token as listed: everything but the secret. `prefix` (`slw_` and the first 4
/// characters) helps people recognise a token; it is not enough to guess it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Its ID (not secret), to list and revoke it by.
    pub id: TokenId,
    /// The user the token acts as.
    pub owner: Username,
    /// What its owner called it (`ci`, `laptop`).
    pub name: String,
    /// The most the token may do; never more than its owner's current role.
    pub role: Role,
    /// The token's first characters, for display.
    pub prefix: String,
    /// When it was created.
    pub created_at: Millis,
    /// When it was last used (to the minute), if ever.
    pub last_used_at: Option<Millis>,
    /// When it was revoked; a revoked token is refused.
    pub revoked_at: Option<Millis>,
    /// From when on it is refused, like a revoked one; `None`: never. (Missing in the JSON of
    /// servers from before token expiry: never.)
    #[serde(default)]
    pub expires_at: Option<Millis>,
}

impl ApiToken {
    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// How long a new API token lives: a whole number of days from 1 to
/// [`TokenLifetime::MAX_DAYS`]. (A token that never expires has no lifetime: `None`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct TokenLifetime(u32);

impl TokenLifetime {
    /// The longest lifetime, a year (leap years included).
    pub const MAX_DAYS: u32 = 366;
    /// The name of the field in errors (the API's and the Console's).
    pub const FIELD: &'static str = "expires_in_days";

    /// `days` days; `Error::Invalid` unless 1 ≤ `days` ≤ 366.
    pub fn days(days: i64) -> Result<TokenLifetime> {
        match u32::try_from(days) {
            Ok(d) if (1..=Self::MAX_DAYS).contains(&d) => Ok(TokenLifetime(d)),
            _ => Err(Error::invalid(
                Self::FIELD,
                format!(
                    "a token lives from 1 to {} days, not {days}",
                    Self::MAX_DAYS
                ),
            )),
        }
    }

    /// `"30"` or `"30d"` (surrounding spaces ignored): 30 days.
    pub fn parse(s: &str) -> Result<TokenLifetime> {
        let t = s.trim();
        let digits = t.strip_suffix(['d', 'D']).unwrap_or(t);
        match digits.parse::<i64>() {
            Ok(days) => TokenLifetime::days(days),
            Err(_) => Err(Error::invalid(
                Self::FIELD,
                format!(
                    "{s:?} is not a number of days (like 30 or 30d, from 1 to {})",
                    Self::MAX_DAYS
                ),
            )),
        }
    }

    /// The lifetime in days.
    pub fn as_days(self) -> u32 {
        self.0
    }

    /// The lifetime in milliseconds.
    pub fn as_millis(self) -> Millis {
        Millis::from(self.0) * 24 * 3600 * 1000
    }
}

impl TryFrom<i64> for TokenLifetime {
    type Error = Error;
    fn try_from(days: i64) -> Result<TokenLifetime> {
        TokenLifetime::days(days)
    }
}

impl From<TokenLifetime> for i64 {
    fn from(l: TokenLifetime) -> i64 {
        i64::from(l.0)
    }
}

impl fmt::Display for TokenLifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} days", self.0)
    }
}

/// How an audited action ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "status", content = "detail")]
pub enum AuditResult {
    /// It was done.
    Ok,
    /// The caller was not allowed (not signed in, role too low, rate limited).
    Denied,
    /// It was tried and failed; the detail says why (an error message: never a secret).
    Failed(String),
}

impl AuditResult {
    /// `"ok"`, `"denied"` or `"failed"`, as stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Denied => "denied",
            AuditResult::Failed(_) => "failed",
        }
    }

    /// The result of an operation: `Ok`; `Denied` when the error is a [`Refusal`] (not
    /// signed in, role too low, rate limited); otherwise `Failed` with the error's message
    /// (which never holds secrets).
    pub fn of<T, E: Refusal>(result: &std::result::Result<T, E>) -> AuditResult {
        match result {
            Ok(_) => AuditResult::Ok,
            Err(e) if e.is_refusal() => AuditResult::Denied,
            Err(e) => AuditResult::Failed(e.to_string()),
        }
    }

    /// From its stored columns (`result`, `detail`); `None` for an unknown `result`.
    pub fn from_columns(result: &str, detail: Option<String>) -> Option<AuditResult> {
        match result {
            "ok" => Some(AuditResult::Ok),
            "denied" => Some(AuditResult::Denied),
            "failed" => Some(AuditResult::Failed(detail.unwrap_or_default())),
            _ => None,
        }
    }

    /// Why it failed, for `Failed`.
    pub fn detail(&self) -> Option<&str> {
        match self {
            AuditResult::Failed(d) => Some(d),
            _ => None,
        }
    }
}

/// An error that can tell a refusal of the caller (not signed in, role too low, rate
/// limited: audited as `denied`) from a failure (audited as `failed`, with its message).
pub trait Refusal: fmt::Display {
    fn is_refusal(&self) -> bool;
}

impl Refusal for Error {
    fn is_refusal(&self) -> bool {
        matches!(self, Error::Forbidden { .. })
    }
}

/// Something to write to the audit log. `action` is a dotted name such as `login`,
/// `logout`, `user.create`, `token.create`, `token.revoke`, `release.promote`,
/// `release.rollback`, `env.change`, `env.reveal`; `target` what it was done to (a release ID,
/// a user or token ID, changed env *keys*). Never put a password, a token or an env value in
/// any field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Who did it (a user name, or `local`/`unknown`).
    pub actor: Actor,
    /// The app it concerns, if any.
    pub app: Option<AppName>,
    /// What was done: a dotted name such as `release.promote`.
    pub action: String,
    /// What it was done to, if anything: an ID, a user name, env keys.
    pub target: Option<String>,
    /// How it ended.
    pub result: AuditResult,
}

impl AuditEntry {
    /// `actor` did `action` (successfully, on no app and no target until said otherwise).
    pub fn new(actor: Actor, action: impl Into<String>) -> AuditEntry {
        AuditEntry {
            actor,
            app: None,
            action: action.into(),
            target: None,
            result: AuditResult::Ok,
        }
    }

    /// Sets the app the entry concerns.
    pub fn app(mut self, app: &AppName) -> AuditEntry {
        self.app = Some(app.clone());
        self
    }

    /// Sets what the action was done to.
    pub fn target(mut self, target: impl Into<String>) -> AuditEntry {
        self.target = Some(target.into());
        self
    }

    /// Sets how the action ended.
    pub fn result(mut self, result: AuditResult) -> AuditEntry {
        self.result = result;
        self
    }
}

/// One entry of the audit log as stored. `seq` grows with every entry and is never reused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log; larger is newer.
    pub seq: i64,
    /// When it was recorded.
    pub at: Millis,
    /// Who did it.
    pub actor: String,
    /// The app it concerns, if any.
    pub app: Option<AppName>,
    /// What was done.
    pub action: String,
    /// What it was done to, if anything.
    pub target: Option<String>,
    /// How it ended.
    pub result: AuditResult,
}

/// Which audit entries to list, newest first. Every field narrows; `action` matches as a
/// prefix (`"release."` finds `release.promote` and `release.rollback`). Pages: pass the
/// last `seq` of a page as `before_seq` of the next. `limit` 0 means
/// [`AuditFilter::DEFAULT_LIMIT`]; at most [`AuditFilter::MAX_LIMIT`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// Only entries by this actor.
    pub actor: Option<Actor>,
    /// Only entries about this app.
    pub app: Option<AppName>,
    /// Only actions that start with this (`release.` or `env.reveal`).
    pub action: Option<String>,
    /// Only entries older than this `seq` (the last `seq` of the previous page).
    pub before_seq: Option<i64>,
    /// How many entries at most (0: the default).
    pub limit: u32,
}

impl AuditFilter {
    /// The page size when `limit` is 0.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// The largest page size.
    pub const MAX_LIMIT: u32 = 500;

    /// The limit actually used.
    pub fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes_are_1_to_366_days() {
        assert_eq!(TokenLifetime::days(1).unwrap().as_days(), 1);
        assert_eq!(
            TokenLifetime::days(366).unwrap().as_millis(),
            366 * 86_400_000
        );
        for bad in [0, -1, 367, i64::MAX, i64::MIN] {
            let e = TokenLifetime::days(bad).unwrap_err();
            assert!(e.to_string().starts_with("expires_in_days: "), "{e}");
        }
        assert_eq!(TokenLifetime::parse(" 30d ").unwrap().as_days(), 30);
        assert_eq!(TokenLifetime::parse("7").unwrap().as_days(), 7);
        for bad in ["", "d", "30 days", "1.5", "-3d", "0d", "400"] {
            assert!(TokenLifetime::parse(bad).is_err(), "{bad}");
        }
        let l: TokenLifetime = serde_json::from_str("90").unwrap();
        assert_eq!(serde_json::to_string(&l).unwrap(), "90");
        assert!(serde_json::from_str::<TokenLifetime>("0").is_err());
    }

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Admin.allows(Role::Deployer));
        assert!(Role::Deployer.allows(Role::Deployer));
        assert!(!Role::Viewer.allows(Role::Deployer));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()).unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!(Role::parse("Admin").is_err());
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn usernames() {
        for ok in ["a", "admin", "jane.doe", "ci_bot-2", &"a".repeat(64)] {
            assert_eq!(Username::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "Admin",
            "1abc",
            "-a",
            ".a",
            "a b",
            "ä",
            "a@b",
            &"a".repeat(65),
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("secret{}", "x".repeat(100));
        assert!(!Username::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("secret"));
        assert!(serde_json::from_str::<Username>("\"Bad\"").is_err());
    }

    #[test]
    fn principal_require() {
        let p = Principal {
            user: Username::parse("v").unwrap(),
            role: Role::Viewer,
            via: Via::Session,
        };
        assert!(p.require(Role::Viewer).is_ok());
        let err = p.require(Role::Deployer).unwrap_err();
        assert!(matches!(
            err,
            Error::Forbidden {
                needed: Role::Deployer
            }
        ));
        assert_eq!(err.to_string(), "this needs the deployer role");
        assert_eq!(p.actor().as_str(), "v");
    }

    #[test]
    fn token_ids() {
        #[cfg(feature = "gen")]
        {
            let id = TokenId::generate();
            assert_eq!(TokenId::parse(id.as_str()).unwrap(), id);
        }
        assert!(TokenId::parse("TABCDEFGHIJ").is_ok());
        assert!(TokenId::parse("RABCDEFGHIJ").is_err());
    }

    #[test]
    fn audit_results_round_trip_their_columns() {
        let failed = AuditResult::Failed("it broke".into());
        assert_eq!(
            AuditResult::from_columns(failed.as_str(), failed.detail().map(str::to_owned)),
            Some(failed)
        );
        assert_eq!(AuditResult::from_columns("ok", None), Some(AuditResult::Ok));
        assert_eq!(AuditResult::from_columns("maybe", None), None);
        let denied: Result<()> = Err(Error::Forbidden {
            needed: Role::Admin,
        });
        assert_eq!(AuditResult::of(&denied), AuditResult::Denied);
    }
}
