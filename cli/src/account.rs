//! Signing in and out, who am I, API tokens and the audit log.

use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;
use types::{ApiToken, AuditRecord, AuditResult, Role, TokenId, TokenLifetime, Username};

use crate::client::{CliError, Client};
use crate::config::{self, Stored};
use crate::output::table;
use crate::Ctx;

#[derive(Deserialize)]
struct LoginAnswer {
    token: String,
    id: TokenId,
    user: Username,
    role: Role,
}

#[derive(Deserialize)]
struct WhoAmI {
    user: Username,
    role: Role,
    via: Value,
}

#[derive(Deserialize)]
struct TokenList {
    tokens: Vec<ApiToken>,
}

#[derive(Deserialize)]
struct TokenCreated {
    token: String,
    info: ApiToken,
}

#[derive(Deserialize)]
struct AuditPage {
    entries: Vec<AuditRecord>,
    next_before: Option<i64>,
}

/// `slipway login`: asks for (or is given) the user name and password, gets an API token
/// named `cli@<hostname>` and stores it with the host in the config file.
pub async fn login(ctx: &Ctx, user: Option<String>, password_stdin: bool) -> Result<(), CliError> {
    let path = ctx.config_path()?;
    // A config that cannot be read is replaced, not a reason to refuse signing in.
    let previous = match config::load(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: {e}");
            None
        }
    };
    let interactive = std::io::stdin().is_terminal();
    let default_user = previous.as_ref().and_then(|p| p.user.clone());
    let user = match user {
        Some(u) => u,
        None if password_stdin || !interactive => default_user.ok_or_else(|| {
            CliError::Usage(
                "which user? give --user NAME (standard input is for the password)".into(),
            )
        })?,
        None => ask_user(default_user.as_deref())?,
    };
    let user = Username::parse(user.trim())?;
    let password = if password_stdin {
        password_from_stdin()?
    } else if interactive {
        rpassword::prompt_password("Password: ")
            .map_err(|e| CliError::Failed(format!("reading the password: {e}")))?
    } else {
        return Err(CliError::Usage(
            "cannot ask for the password: standard input is not a terminal; \
             pipe it in with --password-stdin (and give --user NAME)"
                .into(),
        ));
    };
    if password.is_empty() {
        return Err(CliError::Usage("the password is empty".into()));
    }

    let host = ctx.client.host().to_owned();
    let anonymous = Client::new(&host, None)?;
    let answer: LoginAnswer = anonymous
        .post(
            "/login",
            &json!({
                "user": user,
                "password": password,
                "token_name": format!("cli@{}", hostname()),
            }),
        )
        .await
        .map_err(login_error)?;
    drop(password);
    config::save(
        &path,
        &Stored {
            host: host.clone(),
            token: Some(answer.token),
            user: Some(answer.user.to_string()),
        },
    )?;
    // The token this login replaces would otherwise stay valid, unknown to anyone.
    if let Some(Stored {
        host: old_host,
        token: Some(old_token),
        ..
    }) = previous
    {
        if let Ok(old) = Client::new(&old_host, Some(old_token)) {
            let body = json!({});
            let revoke = old.post::<Value, _>("/logout", &body);
            let _ = tokio::time::timeout(Duration::from_secs(5), revoke).await;
        }
    }
    if ctx.json {
        return ctx.print_json(&json!({
            "host": host,
            "user": answer.user,
            "role": answer.role,
            "token_id": answer.id,
        }));
    }
    println!("Signed in to {host} as {} ({}).", answer.user, answer.role);
    Ok(())
}

/// A failed sign-in in words: the server's "wrong user name or password", or when to retry.
fn login_error(e: CliError) -> CliError {
    match e {
        CliError::NotSignedIn { message, .. } => {
            CliError::Failed(format!("sign-in failed: {message}"))
        }
        CliError::Api {
            code,
            message,
            retry_after,
            ..
        } if code == "rate_limited" => CliError::Failed(match retry_after {
            Some(secs) => format!(
                "too many failed sign-in attempts: try again in {}",
                duration_words(secs)
            ),
            None => message,
        }),
        e => e,
    }
}

/// `42 seconds`, `1 minute`, `15 minutes` (rounded up).
fn duration_words(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if secs < 90 {
        plural(secs, "second")
    } else {
        plural(secs.div_ceil(60), "minute")
    }
}

fn ask_user(default: Option<&str>) -> Result<String, CliError> {
    match default {
        Some(d) => eprint!("User [{d}]: "),
        None => eprint!("User: "),
    }
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Failed(format!("reading the user name: {e}")))?;
    let line = line.trim();
    match (line.is_empty(), default) {
        (false, _) => Ok(line.to_owned()),
        (true, Some(d)) => Ok(d.to_owned()),
        (true, None) => Err(CliError::Usage("no user name given".into())),
    }
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> Result<String, CliError> {
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Failed(format!("reading the password from standard input: {e}")))?;
    if read == 0 {
        return Err(CliError::Usage(
            "--password-stdin: nothing on standard input".into(),
        ));
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// This machine's name, for naming the token `slipway login` makes.
fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname writes at most that
        // many and we read only up to the first NUL (or the whole buffer).
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
            if !name.is_empty() {
                return name;
            }
        }
    }
    std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `slipway logout`: revokes the stored token and removes it from the config, also when the
/// server says it is no longer valid.
pub async fn logout(ctx: &Ctx) -> Result<(), CliError> {
    let path = ctx.config_path()?;
    let stored = config::load(&path)?;
    let Some((stored, token)) = stored.and_then(|s| {
        let token = s.token.clone()?;
        Some((s, token))
    }) else {
        if !ctx.json {
            println!("Not signed in.");
        }
        return Ok(());
    };
    let client = Client::new(&stored.host, Some(token))?;
    match client.post::<Value, _>("/logout", &json!({})).await {
        Ok(_) | Err(CliError::NotSignedIn { .. }) => {}
        Err(e) => {
            return Err(CliError::Failed(format!(
                "{e}\nthe token is still in {}: run slipway logout again once the server answers",
                path.display()
            )))
        }
    }
    config::save(
        &path,
        &Stored {
            token: None,
            ..stored.clone()
        },
    )?;
    if std::env::var_os("SLIPWAY_TOKEN").is_some_and(|t| !t.is_empty()) {
        eprintln!("note: SLIPWAY_TOKEN is still set; commands keep using that token");
    }
    if ctx.json {
        return ctx.print_json(&json!({ "host": stored.host, "signed_out": true }));
    }
    println!("Signed out of {}.", stored.host);
    Ok(())
}

/// `slipway whoami`.
pub async fn whoami(ctx: &Ctx) -> Result<(), CliError> {
    let me: Value = ctx.client.get("/whoami", &[]).await?;
    if ctx.json {
        return ctx.print_json(&me);
    }
    let me: WhoAmI = serde_json::from_value(me).map_err(|e| CliError::Protocol(e.to_string()))?;
    let via = match me.via.get("token").and_then(Value::as_str) {
        Some(id) => format!(" with token {id}{}", ctx.token_source()),
        None => String::new(),
    };
    println!("{} ({}) on {}{via}", me.user, me.role, ctx.client.host());
    Ok(())
}

/// `slipway tokens [--all]`.
pub async fn list_tokens(ctx: &Ctx, all: bool) -> Result<(), CliError> {
    let query = if all {
        vec![("all", "true".to_owned())]
    } else {
        Vec::new()
    };
    let tokens = ctx.client.get::<TokenList>("/tokens", &query).await?.tokens;
    if ctx.json {
        return ctx.print_json(&tokens);
    }
    let now = types::now_ms();
    let when = |t: Option<i64>, none: &str| {
        t.map(|t| types::time::ago(t, now))
            .unwrap_or_else(|| none.to_owned())
    };
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let mut row = vec![t.id.to_string()];
            if all {
                row.push(t.owner.to_string());
            }
            row.extend([
                t.name.clone(),
                t.role.to_string(),
                t.prefix.clone(),
                types::time::ago(t.created_at, now),
                when(t.last_used_at, "never"),
                match t.expires_at {
                    Some(at) if t.is_expired(now) => {
                        format!("expired {}", types::time::ago(at, now))
                    }
                    Some(at) => types::time::until(at, now),
                    None => "never".to_owned(),
                },
                when(t.revoked_at, ""),
            ]);
            row
        })
        .collect();
    let mut header = vec!["ID"];
    if all {
        header.push("OWNER");
    }
    header.extend([
        "NAME",
        "ROLE",
        "PREFIX",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "REVOKED",
    ]);
    print!("{}", table(&header, &rows));
    Ok(())
}

/// `--expires-in`: a lifetime, or `None` for `never`.
#[derive(Clone, Copy, Debug)]
pub struct Lifetime(pub Option<TokenLifetime>);

/// Parses `--expires-in`: `never`, or days (`30`, `30d`) from 1 to 366.
pub fn parse_lifetime(s: &str) -> Result<Lifetime, String> {
    if s.trim().eq_ignore_ascii_case("never") {
        return Ok(Lifetime(None));
    }
    TokenLifetime::parse(s)
        .map(|l| Lifetime(Some(l)))
        .map_err(|e| match e {
            types::Error::Invalid { message, .. } => message,
            other => other.to_string(),
        })
}

/// `slipway tokens create`: the token alone on standard output, the note on standard error.
pub async fn create_token(
    ctx: &Ctx,
    role: &str,
    name: Option<String>,
    lifetime: Option<TokenLifetime>,
) -> Result<(), CliError> {
    let role = Role::parse(role)?;
    let name = name.unwrap_or_else(|| format!("{role}@{}", hostname()));
    let made: Value = ctx
        .client
        .post(
            "/tokens",
            &json!({
                "name": name,
                "role": role,
                "expires_in_days": lifetime.map(|l| l.as_days()),
            }),
        )
        .await?;
    if ctx.json {
        return ctx.print_json(&made);
    }
    let made: TokenCreated =
        serde_json::from_value(made).map_err(|e| CliError::Protocol(e.to_string()))?;
    println!("{}", made.token);
    let expires = match made.info.expires_at {
        Some(at) => format!("expires {}", types::time::exact(at)),
        None => "never expires".to_owned(),
    };
    eprintln!(
        "Created token {} ({}, {}, {expires}). It is shown this once: store it now.",
        made.info.id, made.info.name, made.info.role
    );
    Ok(())
}

/// `slipway tokens revoke ID`.
pub async fn revoke_token(ctx: &Ctx, id: &str) -> Result<(), CliError> {
    let id = TokenId::parse(id)?;
    let answer: Value = ctx
        .client
        .post(&format!("/tokens/{id}/revoke"), &json!({}))
        .await?;
    if ctx.json {
        return ctx.print_json(&answer);
    }
    println!("Revoked {id}.");
    Ok(())
}

/// `slipway audit`: newest first.
pub async fn audit(
    ctx: &Ctx,
    actor: Option<String>,
    action: Option<String>,
    limit: u32,
    before: Option<i64>,
) -> Result<(), CliError> {
    let mut query = vec![("limit", limit.to_string())];
    if let Some(app) = &ctx.app {
        query.push(("app", app.clone()));
    }
    if let Some(actor) = actor {
        query.push(("actor", actor));
    }
    if let Some(action) = action {
        query.push(("action", action));
    }
    if let Some(before) = before {
        query.push(("before_seq", before.to_string()));
    }
    let page: AuditPage = ctx.client.get("/audit", &query).await?;
    if ctx.json {
        return ctx.print_json(&page.entries);
    }
    let now = types::now_ms();
    let rows: Vec<Vec<String>> = page
        .entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                types::time::ago(e.at, now),
                e.actor.clone(),
                e.action.clone(),
                e.app.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                e.target.clone().unwrap_or_default(),
                match &e.result {
                    AuditResult::Failed(detail) => format!("failed: {detail}"),
                    r => r.as_str().to_owned(),
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["SEQ", "WHEN", "ACTOR", "ACTION", "APP", "TARGET", "RESULT"],
            &rows
        )
    );
    if let (Some(next), true) = (page.next_before, page.entries.len() == limit as usize) {
        eprintln!("older entries: slipway audit --before {next}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_times_in_words() {
        assert_eq!(duration_words(1), "1 second");
        assert_eq!(duration_words(42), "42 seconds");
        assert_eq!(duration_words(60), "60 seconds");
        assert_eq!(duration_words(90), "2 minutes");
        assert_eq!(duration_words(900), "15 minutes");
    }

    #[test]
    fn a_hostname_is_found() {
        assert!(!hostname().is_empty());
    }
}
