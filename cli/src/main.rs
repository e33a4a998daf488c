//! `slipway`: Slipway's command line. It talks only to the server's JSON API (`/api/v1`).

mod account;
mod client;
mod config;
mod output;

use clap::{Args, Parser, Subcommand};
use client::{CliError, Client};
use output::{table, Style};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use types::{Build, EnvChange, Promotion, PromotionDetail, PromotionState, Release};

#[derive(Parser, Debug)]
#[command(
    name = "slipway",
    version,
    about = "Slipway's command line: releases, promotions, environments, builds.",
    after_help = "Sign in first with `slipway login`; it keeps an API token in \
                  $SLIPWAY_CONFIG, else $XDG_CONFIG_HOME/slipway/config.json, else \
                  ~/.config/slipway/config.json. SLIPWAY_TOKEN, when set, is used instead."
)]
struct Cli {
    /// The Slipway server [default: the one signed in to, else http://127.0.0.1:3000].
    #[arg(long, global = true, env = "SLIPWAY_HOST")]
    host: Option<String>,
    /// The app to act on.
    #[arg(long, short = 'a', global = true, env = "SLIPWAY_APP")]
    app: Option<String>,
    /// Machine-readable JSON instead of text for humans.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List apps, or create one.
    Apps {
        #[command(subcommand)]
        action: Option<AppsCmd>,
    },
    /// List the app's releases (newest first), or act on one.
    Releases {
        #[command(subcommand)]
        action: Option<ReleasesCmd>,
        /// How many releases to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show the environment of the app's newest release (values masked), or change it.
    Env {
        #[command(subcommand)]
        action: Option<EnvCmd>,
        /// Show values.
        #[arg(long)]
        reveal: bool,
    },
    /// Pack a directory (respecting .gitignore), upload it as a build, and create its release.
    Build(BuildArgs),
    /// Build, then promote the new release and wait until it is active.
    Deploy {
        #[command(flatten)]
        build: BuildArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List the app's builds.
    Builds,
    /// Sign in: ask for the user name and password and keep an API token for this machine.
    Login {
        /// The user name (asked for when not given).
        #[arg(long, short = 'u')]
        user: Option<String>,
        /// Read the password from the first line of standard input (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Sign out: revoke the stored API token and forget it.
    Logout,
    /// Show who the CLI acts as.
    Whoami,
    /// List your API tokens, or create or revoke one.
    Tokens {
        #[command(subcommand)]
        action: Option<TokensCmd>,
        /// Everyone's tokens (admins only).
        #[arg(long)]
        all: bool,
    },
    /// Show the audit log, newest first (--app narrows it to one app).
    Audit {
        /// Only what this user did.
        #[arg(long)]
        actor: Option<String>,
        /// Only actions starting with this (`release.`, `env.reveal`, `login`).
        #[arg(long)]
        action: Option<String>,
        /// How many entries.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        /// Only entries older than this SEQ (the next page).
        #[arg(long)]
        before: Option<i64>,
    },
}

#[derive(Subcommand, Debug)]
enum TokensCmd {
    /// Create an API token (for CI, scripts): prints the token alone, once.
    Create {
        /// What the token may do (at most your own role).
        #[arg(long, value_parser = ["viewer", "deployer", "admin"])]
        role: String,
        /// What it is for [default: ROLE@HOSTNAME].
        #[arg(long)]
        name: Option<String>,
        /// When it stops working: DAYS (`30` or `30d`, 1 to 366), or `never` [default: never].
        #[arg(long, value_name = "DAYS", value_parser = account::parse_lifetime)]
        expires_in: Option<account::Lifetime>,
    },
    /// Revoke an API token: it is refused from now on.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
enum AppsCmd {
    /// Create an app.
    Create { name: String },
}

#[derive(Subcommand, Debug)]
enum ReleasesCmd {
    /// Show one release.
    Info { id: String },
    /// Promote a release (the newest when no ID is given) and wait until it is active.
    Promote {
        id: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Create a new release with an older release's build and environment, and promote it.
    Rollback {
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Cancel the app's running rollout.
    Cancel,
}

#[derive(Subcommand, Debug)]
enum EnvCmd {
    /// Print one variable's value.
    Get { key: String },
    /// Set variables (KEY=VALUE arguments, and KEY=VALUE lines on standard input).
    Set {
        pairs: Vec<String>,
        /// Start from an empty environment instead of the newest release's.
        #[arg(long)]
        replace: bool,
        /// Promote the new release.
        #[arg(long)]
        promote: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Remove variables.
    Unset {
        keys: Vec<String>,
        /// Promote the new release.
        #[arg(long)]
        promote: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// The source directory (with a slipway.yml).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The build's description (default: `build <sha> <subject>` for a clean git work tree).
    #[arg(long, short = 'd')]
    description: Option<String>,
}

#[derive(Args, Debug, Clone, Copy)]
struct WaitArgs {
    /// Return as soon as the rollout has started.
    #[arg(long)]
    no_wait: bool,
    /// The rollout's deadline in seconds (the server's default is 600).
    #[arg(long)]
    timeout: Option<u64>,
}

#[derive(Deserialize, Debug)]
struct ReleasesPage {
    releases: Vec<ReleaseItem>,
}

#[derive(Deserialize, Debug, serde::Serialize)]
struct ReleaseItem {
    id: String,
    #[serde(default)]
    status: String,
    build: Option<String>,
    created_at: i64,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize, Debug)]
struct AppsPage {
    apps: Vec<types::AppSummary>,
}

#[derive(Deserialize, Debug)]
struct BuildsPage {
    builds: Vec<Build>,
}

#[derive(Deserialize, Debug)]
struct EnvView {
    release: Option<String>,
    env: BTreeMap<String, String>,
}

#[derive(Deserialize, Debug)]
struct Created {
    release: Release,
    #[serde(default)]
    promotion: Option<Promotion>,
}

#[derive(Deserialize, Debug)]
struct BuildCreated {
    build: Build,
    release: Release,
}

/// Where the server's URL is when neither `--host`, `SLIPWAY_HOST` nor a sign-in says.
const DEFAULT_HOST: &str = "http://127.0.0.1:3000";

/// Where the token sent with every request comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenSource {
    Env,
    Config,
    None,
}

struct Ctx {
    client: Client,
    app: Option<String>,
    json: bool,
    style: Style,
    /// The credentials file, or why its place is unknown.
    config: Result<PathBuf, String>,
    token_source: TokenSource,
}

impl Ctx {
    fn config_path(&self) -> Result<PathBuf, CliError> {
        self.config.clone().map_err(CliError::Usage)
    }

    /// ` (from SLIPWAY_TOKEN)` or ` (from <config file>)`.
    fn token_source(&self) -> String {
        match (self.token_source, &self.config) {
            (TokenSource::Env, _) => " (from SLIPWAY_TOKEN)".into(),
            (TokenSource::Config, Ok(p)) => format!(" (from {})", p.display()),
            _ => String::new(),
        }
    }

    fn app(&self) -> Result<&str, CliError> {
        self.app.as_deref().ok_or_else(|| {
            CliError::Usage("which app? give --app NAME (or set SLIPWAY_APP)".into())
        })
    }

    fn print_json(&self, value: &impl serde::Serialize) -> Result<(), CliError> {
        let text =
            serde_json::to_string_pretty(value).map_err(|e| CliError::Failed(e.to_string()))?;
        println!("{text}");
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let style = Style::detect();
    let result = async {
        let ctx = context(&cli, style)?;
        run(&ctx, cli.command).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The server and credentials: `--host`/`SLIPWAY_HOST`, else the host signed in to, else
/// [`DEFAULT_HOST`]; `SLIPWAY_TOKEN`, else the stored token when it is for that host.
fn context(cli: &Cli, style: Style) -> Result<Ctx, CliError> {
    let config = config::path().map_err(|e| e.to_string());
    let env_token = std::env::var("SLIPWAY_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    // `login` replaces a broken config rather than tripping over it; other commands only
    // read it when they need it.
    let is_login = matches!(cli.command, Command::Login { .. });
    let stored = match &config {
        Ok(path) if !(env_token.is_some() && cli.host.is_some()) => match config::load(path) {
            Ok(stored) => stored,
            Err(_) if is_login => None,
            Err(e) => return Err(e),
        },
        _ => None,
    };
    let host = cli
        .host
        .clone()
        .or_else(|| stored.as_ref().map(|s| s.host.clone()))
        .unwrap_or_else(|| DEFAULT_HOST.into());
    let host = host.trim_end_matches('/').to_owned();
    let (token, token_source, hint) = match (env_token, &stored) {
        (Some(t), _) => (
            Some(t),
            TokenSource::Env,
            " (SLIPWAY_TOKEN is set: the server refused that token)".to_owned(),
        ),
        (None, Some(s)) if same_host(&s.host, &host) => match &s.token {
            Some(t) => (Some(t.clone()), TokenSource::Config, String::new()),
            None => (None, TokenSource::None, String::new()),
        },
        (None, Some(s)) if s.token.is_some() => (
            None,
            TokenSource::None,
            format!(" (signed in to {} only, not {host})", s.host),
        ),
        (None, _) => (None, TokenSource::None, String::new()),
    };
    let client = Client::new(&host, token)?.with_hint(hint);
    Ok(Ctx {
        client,
        app: cli.app.clone(),
        json: cli.json,
        style,
        config,
        token_source,
    })
}

fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

async fn run(ctx: &Ctx, command: Command) -> Result<(), CliError> {
    match command {
        Command::Apps { action: None } => apps(ctx).await,
        Command::Apps {
            action: Some(AppsCmd::Create { name }),
        } => {
            let app: types::App = ctx.client.post("/apps", &json!({ "name": name })).await?;
            if ctx.json {
                ctx.print_json(&app)
            } else {
                println!("created app {}", app.name);
                Ok(())
            }
        }
        Command::Releases {
            action: None,
            limit,
        } => releases(ctx, limit).await,
        Command::Releases {
            action: Some(action),
            ..
        } => match action {
            ReleasesCmd::Info { id } => release_info(ctx, &id).await,
            ReleasesCmd::Promote { id, wait } => {
                let id = match id {
                    Some(id) => id,
                    None => newest_release(ctx).await?,
                };
                let p: Promotion = ctx
                    .client
                    .post(
                        &format!("/apps/{}/releases/{id}/promote", ctx.app()?),
                        &json!({ "timeout": wait.timeout }),
                    )
                    .await?;
                follow(ctx, p, wait).await
            }
            ReleasesCmd::Rollback { id, wait } => {
                let made: Created = ctx
                    .client
                    .post(
                        &format!("/apps/{}/releases/{id}/rollback", ctx.app()?),
                        &json!({ "timeout": wait.timeout }),
                    )
                    .await?;
                if !ctx.json {
                    println!("created {} ({})", made.release.id, made.release.description);
                }
                match made.promotion {
                    Some(p) => follow(ctx, p, wait).await,
                    None => Err(CliError::Protocol("no promotion in the answer".into())),
                }
            }
            ReleasesCmd::Cancel => {
                let p: Promotion = ctx
                    .client
                    .post(&format!("/apps/{}/cancel", ctx.app()?), &json!({}))
                    .await?;
                if ctx.json {
                    ctx.print_json(&p)
                } else {
                    println!("{} {}: {}", p.id, p.state, p.reason.unwrap_or_default());
                    Ok(())
                }
            }
        },
        Command::Env {
            action: None,
            reveal,
        } => env_show(ctx, reveal).await,
        Command::Env {
            action: Some(action),
            ..
        } => match action {
            EnvCmd::Get { key } => {
                types::EnvKey::parse(&key)?;
                let view: EnvView = ctx
                    .client
                    .get(
                        &format!("/apps/{}/env", ctx.app()?),
                        &[("reveal", "true".into())],
                    )
                    .await?;
                match view.env.get(&key) {
                    Some(v) => {
                        println!("{v}");
                        Ok(())
                    }
                    None => Err(CliError::Failed(format!("{key} is not set"))),
                }
            }
            EnvCmd::Set {
                pairs,
                replace,
                promote,
                wait,
            } => {
                let mut lines = pairs;
                if !std::io::stdin().is_terminal() {
                    let mut input = String::new();
                    std::io::stdin()
                        .read_to_string(&mut input)
                        .map_err(|e| CliError::Failed(format!("reading standard input: {e}")))?;
                    // Validated as a whole block so that errors name the line.
                    let parsed = types::Environment::parse(&input)?;
                    lines.extend(parsed.iter().map(|(k, v)| format!("{k}={v}")));
                }
                if lines.is_empty() {
                    return Err(CliError::Usage(
                        "nothing to set: give KEY=VALUE arguments or lines on standard input"
                            .into(),
                    ));
                }
                let change = EnvChange::set_from_args(&lines)?;
                let body = json!({ "set": change.set, "replace": replace, "promote": promote, "timeout": wait.timeout });
                env_change(ctx, body, wait).await
            }
            EnvCmd::Unset {
                keys,
                promote,
                wait,
            } => {
                if keys.is_empty() {
                    return Err(CliError::Usage(
                        "nothing to unset: give KEY arguments".into(),
                    ));
                }
                for k in &keys {
                    types::EnvKey::parse(k)?;
                }
                let body = json!({ "unset": keys, "promote": promote, "timeout": wait.timeout });
                env_change(ctx, body, wait).await
            }
        },
        Command::Build(args) => {
            let made = build(ctx, &args).await?;
            if ctx.json {
                ctx.print_json(&json!({ "build": made.build, "release": made.release }))
            } else {
                println!("{}", made.release.id);
                Ok(())
            }
        }
        Command::Deploy { build: args, wait } => {
            let made = build(ctx, &args).await?;
            if !ctx.json {
                eprintln!("built {} → release {}", made.build.id, made.release.id);
            }
            let p: Promotion = ctx
                .client
                .post(
                    &format!("/apps/{}/releases/{}/promote", ctx.app()?, made.release.id),
                    &json!({ "timeout": wait.timeout }),
                )
                .await?;
            follow(ctx, p, wait).await
        }
        Command::Builds => {
            let builds = ctx
                .client
                .get::<BuildsPage>(&format!("/apps/{}/builds", ctx.app()?), &[])
                .await?
                .builds;
            if ctx.json {
                return ctx.print_json(&builds);
            }
            let now = types::now_ms();
            let rows: Vec<Vec<String>> = builds
                .iter()
                .map(|b| {
                    vec![
                        b.id.to_string(),
                        b.status.clone(),
                        b.release
                            .as_ref()
                            .map(|r| r.to_string())
                            .unwrap_or_default(),
                        types::time::ago(b.created_at, now),
                        b.description.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["ID", "STATUS", "RELEASE", "STARTED", "DESCRIPTION"],
                    &rows
                )
            );
            Ok(())
        }
        Command::Login {
            user,
            password_stdin,
        } => account::login(ctx, user, password_stdin).await,
        Command::Logout => account::logout(ctx).await,
        Command::Whoami => account::whoami(ctx).await,
        Command::Tokens { action: None, all } => account::list_tokens(ctx, all).await,
        Command::Tokens {
            action: Some(action),
            ..
        } => match action {
            TokensCmd::Create {
                role,
                name,
                expires_in,
            } => {
                let lifetime = expires_in.and_then(|l| l.0);
                account::create_token(ctx, &role, name, lifetime).await
            }
            TokensCmd::Revoke { id } => account::revoke_token(ctx, &id).await,
        },
        Command::Audit {
            actor,
            action,
            limit,
            before,
        } => account::audit(ctx, actor, action, limit, before).await,
    }
}

async fn apps(ctx: &Ctx) -> Result<(), CliError> {
    let apps = ctx.client.get::<AppsPage>("/apps", &[]).await?.apps;
    if ctx.json {
        return ctx.print_json(&apps);
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            let status = if a.running_promotion.is_some() {
                "updating".to_string()
            } else {
                "running".to_string()
            };
            vec![
                a.app.name.to_string(),
                if a.app.active_release.is_some() {
                    status
                } else {
                    "new".into()
                },
                a.app
                    .active_release
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", table(&["APP", "STATUS", "RELEASE"], &rows));
    Ok(())
}

async fn releases(ctx: &Ctx, limit: u32) -> Result<(), CliError> {
    let page: ReleasesPage = ctx
        .client
        .get(
            &format!("/apps/{}/releases", ctx.app()?),
            &[("limit", limit.to_string())],
        )
        .await?;
    if ctx.json {
        return ctx.print_json(&page.releases);
    }
    let now = types::now_ms();
    let rows: Vec<Vec<String>> = page
        .releases
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.status.clone(),
                r.build.clone().unwrap_or_default(),
                types::time::ago(r.created_at, now),
                r.description.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["ID", "STATUS", "BUILD", "CREATED", "DESCRIPTION"], &rows)
    );
    Ok(())
}

async fn newest_release(ctx: &Ctx) -> Result<String, CliError> {
    let page: ReleasesPage = ctx
        .client
        .get(
            &format!("/apps/{}/releases", ctx.app()?),
            &[("limit", "1".into())],
        )
        .await?;
    page.releases
        .into_iter()
        .next()
        .map(|r| r.id)
        .ok_or_else(|| {
            CliError::Failed(format!(
                "app {} has no releases yet",
                ctx.app.as_deref().unwrap_or("")
            ))
        })
}

async fn release_info(ctx: &Ctx, id: &str) -> Result<(), CliError> {
    let r: Release = ctx
        .client
        .get(&format!("/apps/{}/releases/{id}", ctx.app()?), &[])
        .await?;
    if ctx.json {
        return ctx.print_json(&r);
    }
    println!("Id           {}", r.id);
    println!(
        "Build        {}",
        r.build.as_ref().map(|b| b.to_string()).unwrap_or_default()
    );
    println!(
        "Created      {} ({}) by {}",
        types::time::ago(r.created_at, types::now_ms()),
        types::time::exact(r.created_at),
        r.created_by
    );
    println!("Description  {}", r.description);
    if let Some(of) = &r.rollback_of {
        println!("Rollback of  {of}");
    }
    println!("Env");
    for (k, v) in r.env.iter() {
        println!("  {k}={v}");
    }
    Ok(())
}

async fn env_show(ctx: &Ctx, reveal: bool) -> Result<(), CliError> {
    let view: EnvView = ctx
        .client
        .get(
            &format!("/apps/{}/env", ctx.app()?),
            &[("reveal", reveal.to_string())],
        )
        .await?;
    if ctx.json {
        return ctx.print_json(&json!({ "release": view.release, "env": view.env }));
    }
    for (k, v) in &view.env {
        println!("{k}={v}");
    }
    Ok(())
}

async fn env_change(ctx: &Ctx, body: serde_json::Value, wait: WaitArgs) -> Result<(), CliError> {
    let made: Created = ctx
        .client
        .post(&format!("/apps/{}/env", ctx.app()?), &body)
        .await?;
    match made.promotion {
        Some(p) => {
            if !ctx.json {
                println!("{} {}", made.release.id, made.release.description);
            }
            follow(ctx, p, wait).await
        }
        None if ctx.json => ctx.print_json(&made.release),
        None => {
            println!("{} {}", made.release.id, made.release.description);
            Ok(())
        }
    }
}

async fn build(ctx: &Ctx, args: &BuildArgs) -> Result<BuildCreated, CliError> {
    let app = ctx.app()?.to_owned();
    let dir = args.dir.clone();
    let archive = tokio::task::spawn_blocking(move || types::pack::pack_dir(&dir))
        .await
        .map_err(|e| CliError::Failed(e.to_string()))??;
    let mut query = Vec::new();
    let dir = args.dir.clone();
    let git = tokio::task::spawn_blocking(move || types::pack::git_description(&dir))
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    match (&args.description, &git) {
        (Some(d), _) => query.push(("description", d.clone())),
        (None, Some((_, d))) => query.push(("description", d.clone())),
        (None, None) => {}
    }
    if let Some((sha, _)) = &git {
        query.push(("git_sha", sha.clone()));
    }
    if !ctx.json {
        eprintln!(
            "uploading {} ({} KB)",
            args.dir.display(),
            archive.len().div_ceil(1024)
        );
    }
    ctx.client
        .upload(&format!("/apps/{app}/builds"), &query, archive)
        .await
}

/// Prints the promotion's steps as they happen until it ends (unless `--no-wait`); fails
/// when the release did not become active.
async fn follow(ctx: &Ctx, promotion: Promotion, wait: WaitArgs) -> Result<(), CliError> {
    if wait.no_wait {
        if ctx.json {
            return ctx.print_json(&promotion);
        }
        println!("promoting {} ({})", promotion.release, promotion.id);
        return Ok(());
    }
    let bound = Duration::from_secs(wait.timeout.unwrap_or(600) + 120);
    let started = tokio::time::Instant::now();
    let mut printed = 0;
    loop {
        let detail: PromotionDetail = ctx
            .client
            .get(&format!("/promotions/{}", promotion.id), &[])
            .await?;
        if !ctx.json {
            for event in detail.events.iter().skip(printed) {
                println!("  {}", ctx.style.dim(&event.step.to_string()));
            }
        }
        printed = detail.events.len();
        let p = detail.promotion;
        if p.state.is_finished() {
            if ctx.json {
                ctx.print_json(&p)?;
            }
            return match p.state {
                PromotionState::Active => {
                    if !ctx.json {
                        println!("{}", ctx.style.good(&format!("✓ {} is active", p.release)));
                    }
                    Ok(())
                }
                state => {
                    if !ctx.json {
                        if let Some(out) = &p.failed_output {
                            eprintln!("{out}");
                        }
                    }
                    let word = if state == PromotionState::RolledBack {
                        "rollback"
                    } else {
                        state.as_str()
                    };
                    Err(CliError::Failed(ctx.style.bad(&format!(
                        "{word}: {}",
                        p.reason.unwrap_or_else(|| state.to_string())
                    ))))
                }
            };
        }
        if started.elapsed() > bound {
            return Err(CliError::Failed(format!(
                "{} did not finish within {} s",
                p.id,
                bound.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
