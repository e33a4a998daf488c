//! The SQL of authentication: users, sessions and API tokens (the audit log is in
//! [`crate::audit`]). Used through [`crate::Auth`], which owns the rules (hashing, expiry,
//! roles); this only reads and writes rows. Secrets are never stored: passwords as argon2id PHC
//! strings, session and API tokens as the hex SHA-256 of the token. The tables come with the
//! engine's migrations (`engine/migrations`).

use sqlx::{Row, Sqlite, SqlitePool};

use crate::audit;
use crate::error::{Error, Result};
use crate::sql::{parse_col, unique_violation};
use types::{
    ApiToken, AuditEntry, AuditFilter, AuditRecord, Millis, Role, TokenId, User, Username,
};

/// The database authentication reads and writes: a pool for reads and the one connection
/// every write goes through (the engine's store hands over its own: `Db::from(store)`).
#[derive(Clone, Debug)]
pub struct Db {
    read: SqlitePool,
    write: SqlitePool,
}

impl Db {
    /// Reads on `read`, writes (transactions) on `write`.
    pub fn new(read: SqlitePool, write: SqlitePool) -> Db {
        Db { read, write }
    }
}

/// What signing in needs to know about a user.
pub(crate) struct Credentials {
    pub id: i64,
    pub role: Role,
    pub password_hash: String,
    pub disabled: bool,
}

/// A session with its user, as found by the hash of its token.
pub(crate) struct SessionRow {
    pub user: Username,
    pub role: Role,
    pub user_disabled: bool,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub revoked: bool,
}

/// An API token with its owner, as found by the hash of the token.
pub(crate) struct TokenRow {
    pub id: TokenId,
    pub owner: Username,
    pub owner_role: Role,
    pub owner_disabled: bool,
    pub role: Role,
    pub last_used_at: Option<Millis>,
    pub revoked: bool,
    pub expires_at: Option<Millis>,
}

/// A change to a user, as stored: any of a new role, disabled or enabled, a new password hash.
pub(crate) struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
}

/// What a change does to a user's admin rights, for the last-admin check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AdminChange {
    /// The user stays an enabled admin if it was one.
    Keeps,
    /// The user stops being an enabled admin (demoted, disabled or deleted).
    Loses,
}

fn role_col(row: &sqlx::sqlite::SqliteRow, col: &str) -> Result<Role> {
    Ok(parse_col(row, col, Role::parse)?)
}

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<User> {
    Ok(User {
        name: parse_col(row, "name", Username::parse)?,
        role: role_col(row, "role")?,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

const TOKEN_SELECT: &str = "SELECT t.id, u.name AS owner, t.name, t.role, t.prefix, t.created_at, t.last_used_at, t.revoked_at, t.expires_at
     FROM api_tokens t JOIN users u ON u.id = t.user_id";

fn token_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: parse_col(row, "id", TokenId::parse)?,
        owner: parse_col(row, "owner", Username::parse)?,
        name: row.try_get("name")?,
        role: role_col(row, "role")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// Refuses (`Conflict`) a change that would leave no enabled admin; `NotFound` for an unknown
/// user. Runs inside the change's transaction, so the check and the change are one step.
async fn guard_last_admin(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    name: &Username,
    change: AdminChange,
) -> Result<()> {
    let row = sqlx::query("SELECT role, disabled_at FROM users WHERE name = ?")
        .bind(name.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::not_found("user", name))?;
    let enabled_admin = role_col(&row, "role")? == Role::Admin
        && row.try_get::<Option<Millis>, _>("disabled_at")?.is_none();
    if enabled_admin && change == AdminChange::Loses {
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL AND name <> ?",
        )
        .bind(name.as_str())
        .fetch_one(&mut **tx)
        .await?;
        if others == 0 {
            return Err(Error::Conflict(format!(
                "{name} is the last admin; make another user admin first"
            )));
        }
    }
    Ok(())
}

async fn revoke_sessions_of(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    name: &Username,
    now: Millis,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = ?
         WHERE revoked_at IS NULL AND user_id = (SELECT id FROM users WHERE name = ?)",
    )
    .bind(now)
    .bind(name.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

impl Db {
    // ---- users ----

    /// Whether any user exists (read on the writer, so that it sees the latest insert).
    pub(crate) async fn has_users(&self) -> Result<bool> {
        let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users LIMIT 1")
            .fetch_optional(&self.write)
            .await?;
        Ok(any.is_some())
    }

    /// Inserts the user only when there is no user at all, in one statement; `false` when
    /// users existed (or another server inserted the same name first).
    /// With the audit entry `audit`, in the same transaction when the user was inserted.
    pub(crate) async fn insert_first_user(
        &self,
        name: &Username,
        password_hash: &str,
        role: Role,
        now: Millis,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let res = sqlx::query(
            "INSERT INTO users (name, password_hash, role, created_at)
             SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM users)",
        )
        .bind(name.as_str())
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match res {
            Ok(done) if done.rows_affected() == 1 => {
                audit::insert(&mut tx, audit, now).await?;
                tx.commit().await?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) if unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn insert_user(
        &self,
        name: &Username,
        password_hash: &str,
        role: Role,
        now: Millis,
        audit: &AuditEntry,
    ) -> Result<User> {
        let mut tx = self.write.begin().await?;
        let res = sqlx::query(
            "INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(name.as_str())
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await;
        if res.is_ok() {
            audit::insert(&mut tx, audit, now).await?;
            tx.commit().await?;
        }
        match res {
            Ok(_) => Ok(User {
                name: name.clone(),
                role,
                created_at: now,
                disabled_at: None,
            }),
            Err(e) if unique_violation(&e) => {
                Err(Error::Conflict(format!("user {name} already exists")))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn credentials(&self, name: &Username) -> Result<Option<Credentials>> {
        let row =
            sqlx::query("SELECT id, role, password_hash, disabled_at FROM users WHERE name = ?")
                .bind(name.as_str())
                .fetch_optional(&self.read)
                .await?;
        row.map(|row| {
            Ok(Credentials {
                id: row.try_get("id")?,
                role: role_col(&row, "role")?,
                password_hash: row.try_get("password_hash")?,
                disabled: row.try_get::<Option<Millis>, _>("disabled_at")?.is_some(),
            })
        })
        .transpose()
    }

    pub(crate) async fn user(&self, name: &Username) -> Result<User> {
        let row =
            sqlx::query("SELECT name, role, created_at, disabled_at FROM users WHERE name = ?")
                .bind(name.as_str())
                .fetch_optional(&self.read)
                .await?
                .ok_or_else(|| Error::not_found("user", name))?;
        user_from_row(&row)
    }

    pub(crate) async fn list_users(&self) -> Result<Vec<User>> {
        let rows =
            sqlx::query("SELECT name, role, created_at, disabled_at FROM users ORDER BY name")
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Applies `change` to user `name` with its audit entries, in one transaction: the role,
    /// disabling (which revokes the user's sessions) or enabling, the password hash (which
    /// revokes them too). `NotFound` for an unknown user, `Conflict` when it would leave no
    /// enabled admin.
    pub(crate) async fn update_user(
        &self,
        name: &Username,
        change: &UserChange,
        now: Millis,
        audit: &[AuditEntry],
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let demoted = change.role.is_some_and(|r| r != Role::Admin);
        let admin = if demoted || change.disabled == Some(true) {
            AdminChange::Loses
        } else {
            AdminChange::Keeps
        };
        guard_last_admin(&mut tx, name, admin).await?;
        if let Some(role) = change.role {
            sqlx::query("UPDATE users SET role = ? WHERE name = ?")
                .bind(role.as_str())
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
        }
        match change.disabled {
            Some(true) => {
                sqlx::query(
                    "UPDATE users SET disabled_at = ? WHERE name = ? AND disabled_at IS NULL",
                )
                .bind(now)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
                revoke_sessions_of(&mut tx, name, now).await?;
            }
            Some(false) => {
                sqlx::query("UPDATE users SET disabled_at = NULL WHERE name = ?")
                    .bind(name.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            None => {}
        }
        if let Some(hash) = &change.password_hash {
            sqlx::query("UPDATE users SET password_hash = ? WHERE name = ?")
                .bind(hash)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
            revoke_sessions_of(&mut tx, name, now).await?;
        }
        for entry in audit {
            audit::insert(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a user with its sessions and tokens. The audit log keeps its name.
    pub(crate) async fn delete_user(
        &self,
        name: &Username,
        now: Millis,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        guard_last_admin(&mut tx, name, AdminChange::Loses).await?;
        for sql in [
            "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?)",
            "DELETE FROM api_tokens WHERE user_id = (SELECT id FROM users WHERE name = ?)",
            "DELETE FROM users WHERE name = ?",
        ] {
            sqlx::query(sql)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
        }
        audit::insert(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- sessions ----

    pub(crate) async fn insert_session(
        &self,
        id_hash: &str,
        user_id: i64,
        client: Option<&str>,
        now: Millis,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, client, created_at, last_seen_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(client)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit::insert(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn session_row(&self, id_hash: &str) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT u.name, u.role, u.disabled_at, s.created_at, s.last_seen_at, s.revoked_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_hash = ?",
        )
        .bind(id_hash)
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| {
            Ok(SessionRow {
                user: parse_col(&row, "name", Username::parse)?,
                role: role_col(&row, "role")?,
                user_disabled: row.try_get::<Option<Millis>, _>("disabled_at")?.is_some(),
                created_at: row.try_get("created_at")?,
                last_seen_at: row.try_get("last_seen_at")?,
                revoked: row.try_get::<Option<Millis>, _>("revoked_at")?.is_some(),
            })
        })
        .transpose()
    }

    pub(crate) async fn touch_session(&self, id_hash: &str, now: Millis) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE id_hash = ? AND last_seen_at < ?")
            .bind(now)
            .bind(id_hash)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Ends a session that has not ended yet, with the audit entry `audit(user)` of its
    /// user, in one transaction. Unknown or ended sessions change (and record) nothing.
    pub(crate) async fn revoke_session(
        &self,
        id_hash: &str,
        now: Millis,
        audit: impl FnOnce(&Username) -> AuditEntry,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let user: Option<String> = sqlx::query_scalar(
            "SELECT u.name FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_hash = ? AND s.revoked_at IS NULL",
        )
        .bind(id_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(user) = user else {
            return Ok(());
        };
        let user = Username::parse(&user)
            .map_err(|e| Error::Internal(format!("bad user name in the database: {e}")))?;
        sqlx::query("UPDATE sessions SET revoked_at = ? WHERE id_hash = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(id_hash)
            .execute(&mut *tx)
            .await?;
        audit::insert(&mut tx, &audit(&user), now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn revoke_user_sessions(&self, name: &Username, now: Millis) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        let n = revoke_sessions_of(&mut tx, name, now).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Deletes sessions that are revoked, idle since before `idle_before`, or created before
    /// `created_before`.
    pub(crate) async fn delete_dead_sessions(
        &self,
        idle_before: Millis,
        created_before: Millis,
    ) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM sessions
             WHERE revoked_at IS NOT NULL OR last_seen_at < ? OR created_at < ?",
        )
        .bind(idle_before)
        .bind(created_before)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    /// Every session row, usable or not.
    pub(crate) async fn count_sessions(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&self.read)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    // ---- API tokens ----

    /// Inserts a new token (`last_used_at` and `revoked_at` are not written) with the hash of
    /// its secret.
    /// With the audit entries that record it (signing in and making the token, for the CLI's
    /// sign-in), in one transaction.
    pub(crate) async fn insert_token(
        &self,
        t: &ApiToken,
        hash: &str,
        audit: &[AuditEntry],
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, role, prefix, hash, created_at, expires_at)
             VALUES (?, (SELECT id FROM users WHERE name = ?), ?, ?, ?, ?, ?, ?)",
        )
        .bind(t.id.as_str())
        .bind(t.owner.as_str())
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(&t.prefix)
        .bind(hash)
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&mut *tx)
        .await?;
        for entry in audit {
            audit::insert(&mut tx, entry, t.created_at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn token_row(&self, hash: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(
            "SELECT t.id, t.role, t.last_used_at, t.revoked_at, t.expires_at,
                    u.name AS owner, u.role AS owner_role, u.disabled_at AS owner_disabled_at
             FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| {
            Ok(TokenRow {
                id: parse_col(&row, "id", TokenId::parse)?,
                owner: parse_col(&row, "owner", Username::parse)?,
                owner_role: role_col(&row, "owner_role")?,
                owner_disabled: row
                    .try_get::<Option<Millis>, _>("owner_disabled_at")?
                    .is_some(),
                role: role_col(&row, "role")?,
                last_used_at: row.try_get("last_used_at")?,
                revoked: row.try_get::<Option<Millis>, _>("revoked_at")?.is_some(),
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    pub(crate) async fn touch_token(&self, id: &TokenId, now: Millis) -> Result<()> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = ?
             WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
        )
        .bind(now)
        .bind(id.as_str())
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(crate) async fn token(&self, id: &TokenId) -> Result<ApiToken> {
        let row = sqlx::query(&format!("{TOKEN_SELECT} WHERE t.id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| Error::not_found("token", id))?;
        token_from_row(&row)
    }

    /// Tokens of `owner` (or everyone's), revoked ones included, newest first.
    pub(crate) async fn list_tokens(&self, owner: Option<&Username>) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(&format!(
            "{TOKEN_SELECT} WHERE (? IS NULL OR u.name = ?) ORDER BY t.created_at DESC, t.id"
        ))
        .bind(owner.map(|o| o.as_str()))
        .bind(owner.map(|o| o.as_str()))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    pub(crate) async fn revoke_token(
        &self,
        id: &TokenId,
        now: Millis,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        audit::insert(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- audit ----

    /// Appends to the audit log on its own (an attempt that changed nothing, or a refusal);
    /// long fields are cut.
    pub(crate) async fn insert_audit(&self, e: &AuditEntry, now: Millis) -> Result<AuditRecord> {
        let mut conn = self.write.acquire().await?;
        audit::insert(&mut conn, e, now).await
    }

    /// Records `audit` as failed when `result` is an error (see [`audit::record_failure`]).
    pub(crate) async fn record_failure<T>(
        &self,
        audit: &AuditEntry,
        result: &Result<T>,
        now: Millis,
    ) {
        audit::record_failure(&self.write, audit, result, now).await;
    }

    /// Passes `result` through, after [`Db::record_failure`].
    pub(crate) async fn audit_failure<T>(
        &self,
        audit: &AuditEntry,
        result: Result<T>,
        now: Millis,
    ) -> Result<T> {
        self.record_failure(audit, &result, now).await;
        result
    }

    pub(crate) async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        audit::list(&self.read, f).await
    }
}
