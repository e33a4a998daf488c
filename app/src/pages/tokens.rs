//! API tokens (`/tokens`): the caller's own tokens (an admin sees everyone's), a form to create
//! one, and Revoke. A new token's plain value is shown once: in the form's notice with
//! JavaScript, or — for a form posted without it — on the page the post redirects back to
//! (carried there by a short-lived HttpOnly cookie that the page clears).

use crate::live::LiveRegion;
use crate::{components::ErrorList, AppError};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};
use types::Role;

/// One token as the page shows it: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRow {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub role: Role,
    /// `slw_` and the first 4 characters.
    pub prefix: String,
    pub created_ago: String,
    pub created_exact: String,
    pub last_used_ago: Option<String>,
    pub last_used_exact: Option<String>,
    pub revoked_ago: Option<String>,
    pub revoked_exact: Option<String>,
    /// When it expires ("in 4 weeks", "2 days ago"); `None`: never.
    pub expires_in: Option<String>,
    pub expires_exact: Option<String>,
    /// Whether it has expired (and is refused).
    pub expired: bool,
    /// Whether the caller may revoke it (its owner or an admin, and not revoked yet).
    pub can_revoke: bool,
}

/// The lifetimes the form offers: (value of `expires_in_days`, label). Empty: never.
pub const LIFETIMES: [(&str, &str); 5] = [
    ("7", "7 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("366", "1 year"),
    ("", "never"),
];
/// The lifetime a new token gets unless another is chosen.
pub const DEFAULT_LIFETIME: &str = "90";

/// What the Tokens page shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensData {
    pub rows: Vec<TokenRow>,
    /// Whether these are everyone's tokens (an admin's view, with an owner column).
    pub everyone: bool,
    /// The roles the caller may give a new token: its own and the ones below.
    pub roles: Vec<Role>,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::{TokenRow, TokensData};
    use crate::{error::FieldMessage, AppError};
    use engine::{time, ApiToken, Auth, Principal, Role, TokenLifetime};
    use leptos::prelude::use_context;

    /// The cookie that carries a token created by a form posted without JavaScript to the
    /// page the post redirects back to. Only sent to `/tokens`, HttpOnly, and cleared there.
    pub const NEW_TOKEN_COOKIE: &str = "slipway_new_token";
    /// How long the cookie lives if the page is never shown.
    const NEW_TOKEN_MAX_AGE_SECS: u64 = 120;

    /// The signed-in caller (the server has checked the function's rule already).
    pub fn signed_in() -> Result<Principal, AppError> {
        crate::context::signed_in_as(Role::Viewer)
    }

    fn row(t: ApiToken, by: &Principal, now: i64) -> TokenRow {
        TokenRow {
            can_revoke: t.revoked_at.is_none() && by.is_self_or_admin(&t.owner),
            expired: t.is_expired(now),
            id: t.id.to_string(),
            owner: t.owner.to_string(),
            name: t.name,
            role: t.role,
            prefix: t.prefix,
            created_ago: time::ago(t.created_at, now),
            created_exact: time::exact(t.created_at),
            last_used_ago: t.last_used_at.map(|at| time::ago(at, now)),
            last_used_exact: t.last_used_at.map(time::exact),
            revoked_ago: t.revoked_at.map(|at| time::ago(at, now)),
            revoked_exact: t.revoked_at.map(time::exact),
            expires_in: t.expires_at.map(|at| time::until(at, now)),
            expires_exact: t.expires_at.map(time::exact),
        }
    }

    /// The caller's tokens, or everyone's for an admin, newest first.
    pub async fn tokens(auth: &Auth, by: &Principal) -> Result<TokensData, engine::Error> {
        let everyone = by.role.allows(Role::Admin);
        let now = engine::now_ms();
        let rows = auth
            .list_tokens(by, everyone)
            .await?
            .into_iter()
            .map(|t| row(t, by, now))
            .collect();
        Ok(TokensData {
            rows,
            everyone,
            roles: Role::ALL
                .into_iter()
                .filter(|r| by.role.allows(*r))
                .collect(),
        })
    }

    /// The lifetime chosen in the form: days (`30`, `30d`), or empty or `never` for none.
    /// A bad value is an error of the `expires_in_days` field.
    pub fn lifetime(expires_in_days: &str) -> Result<Option<TokenLifetime>, AppError> {
        match expires_in_days.trim() {
            "" | "never" => Ok(None),
            days => TokenLifetime::parse(days).map(Some).map_err(|e| {
                let message = match e {
                    types::Error::Invalid { message, .. } => message,
                    other => other.to_string(),
                };
                AppError::Fields(vec![FieldMessage {
                    field: TokenLifetime::FIELD.into(),
                    message: format!("Expires: {message}"),
                }])
                .with_status()
            }),
        }
    }

    /// Creates a token for the caller (at most the caller's role: the rule is
    /// [`Auth::create_token`]'s), living `expires_in_days` (see [`lifetime`]); returns the plain
    /// token.
    pub async fn create(
        auth: &Auth,
        by: &Principal,
        name: &str,
        role: &str,
        expires_in_days: &str,
    ) -> Result<String, AppError> {
        let lifetime = lifetime(expires_in_days)?;
        let role = Role::parse(role.trim())?;
        let (_, plain) = auth.create_token(by, name, Some(role), lifetime).await?;
        Ok(plain)
    }

    /// Revokes a token of the caller's (any token for an admin). Someone else's token is
    /// "not found" to a non-admin (the rule is [`Auth::revoke_token`]'s).
    pub async fn revoke(auth: &Auth, by: &Principal, id: &str) -> Result<String, AppError> {
        let id = engine::TokenId::parse(id)?;
        auth.revoke_token(&id, by).await?;
        Ok(id.to_string())
    }

    /// Whether the request is a form posted without JavaScript (it is redirected back).
    pub fn posted_without_js() -> bool {
        use_context::<http::request::Parts>()
            .and_then(|p| {
                p.headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.contains("text/html"))
            })
            .unwrap_or(false)
    }

    fn set_cookie(value: &str, max_age: u64, secure: bool) {
        let mut cookie = format!(
            "{NEW_TOKEN_COOKIE}={value}; Path=/tokens; HttpOnly; SameSite=Strict; Max-Age={max_age}"
        );
        if secure {
            cookie.push_str("; Secure");
        }
        if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
            if let Ok(v) = http::HeaderValue::from_str(&cookie) {
                res.append_header(http::header::SET_COOKIE, v);
            }
        }
    }

    /// Hands a new token to the page the form post is redirected back to.
    pub fn pass_to_page(plain: &str, secure: bool) {
        set_cookie(plain, NEW_TOKEN_MAX_AGE_SECS, secure);
    }

    /// The token a form posted without JavaScript just created, once: the cookie is cleared,
    /// and the page is not to be cached.
    pub fn take_new_token() -> Option<String> {
        let parts = use_context::<http::request::Parts>()?;
        let value = parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == NEW_TOKEN_COOKIE)
            .map(|(_, value)| value.to_owned())?;
        let secure = crate::context::console_context()
            .map(|c| c.secure_cookies)
            .unwrap_or(false);
        set_cookie("", 0, secure);
        if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
            res.insert_header(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
        }
        // Only something shaped like a token is shown.
        let shaped = value
            .strip_prefix(engine::auth::TOKEN_PREFIX)
            .is_some_and(|rest| {
                rest.len() == 40 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        shaped.then_some(value)
    }
}

/// The caller's tokens (everyone's for an admin), revoked ones included, newest first.
#[server(endpoint = "list_tokens")]
pub async fn list_tokens() -> Result<TokensData, AppError> {
    let ctx = crate::context::console_context()?;
    let caller = ssr::signed_in()?;
    Ok(ssr::tokens(&ctx.auth, &caller).await?)
}

/// Creates an API token for the caller named `name` with `role` (at most the caller's),
/// expiring after `expires_in_days` days (empty: never), and returns it: the only time its
/// plain value is shown.
#[server(endpoint = "create_token")]
pub async fn create_token(
    name: String,
    role: String,
    #[server(default)] expires_in_days: String,
) -> Result<String, AppError> {
    let ctx = crate::context::console_context()?;
    let caller = ssr::signed_in()?;
    let plain = ssr::create(&ctx.auth, &caller, &name, &role, &expires_in_days).await?;
    if ssr::posted_without_js() {
        ssr::pass_to_page(&plain, ctx.secure_cookies);
    }
    Ok(plain)
}

/// Revokes the token `id` (the caller's own, or anyone's for an admin); returns its ID.
#[server(endpoint = "revoke_token")]
pub async fn revoke_token(id: String) -> Result<String, AppError> {
    let ctx = crate::context::console_context()?;
    let caller = ssr::signed_in()?;
    ssr::revoke(&ctx.auth, &caller, &id).await
}

/// The token created by a form posted without JavaScript, shown once (server only).
fn new_token() -> Option<String> {
    #[cfg(feature = "ssr")]
    return ssr::take_new_token();
    #[cfg(not(feature = "ssr"))]
    None
}

#[component]
pub fn TokensPage() -> impl IntoView {
    let tokens = Resource::new(|| (), |_| list_tokens());
    let created = new_token().map(|token| view! { <NewToken token /> });
    view! {
        <Title text="API tokens" />
        <div class="page-header">
            <h1>"API tokens"</h1>
        </div>
        <p class="muted">
            "Tokens let the CLI and scripts act as you: " <code>"Authorization: Bearer slw_…"</code>
            ". A token can do at most what its role and your own role allow."
        </p>
        <crate::components::ActionError />
        {created}
        <Suspense fallback=|| view! { <p class="muted">"Loading tokens…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    tokens.await.map(|data| {
                        view! {
                            <LiveRegion app=None id="tokens-live".to_string()>
                                <NewTokenForm roles=data.roles.clone() />
                                <TokensTable data />
                            </LiveRegion>
                        }
                    })
                })}
            </ErrorBoundary>
        </Suspense>
    }
}

/// A token just created by a form posted without JavaScript.
#[component]
fn NewToken(token: String) -> impl IntoView {
    view! {
        <div class="notice notice-success new-token" role="status" data-testid="token-created">
            <p>"New token: " <code class="token-value">{token}</code></p>
            <p>"Copy it now: it is shown only once."</p>
        </div>
    }
}

/// The message of the form's last error for `field`, when the form was posted without
/// JavaScript and the server named that field (with JavaScript the form's notice shows it).
fn field_error(field: &'static str) -> Option<String> {
    use leptos::server_fn::error::ServerFnUrlError;
    let error = use_context::<leptos::server::ServerActionError>()?;
    match ServerFnUrlError::<AppError>::decode_err(error.err()) {
        AppError::Fields(fields) => fields
            .into_iter()
            .find(|f| f.field == field)
            .map(|f| f.message),
        _ => None,
    }
}

#[component]
fn NewTokenForm(roles: Vec<Role>) -> impl IntoView {
    let expires_error = field_error("expires_in_days");
    let expires_invalid = expires_error.is_some().then_some("true");
    view! {
        <section class="card" aria-labelledby="new-token-heading">
            <h2 id="new-token-heading">"New token"</h2>
            <form
                method="post"
                action=CreateToken::url()
                class="form-grid"
                data-success="New token: {} — copy it now: it is shown only once."
                data-result="token-created"
                data-testid="create-token"
            >
                <div class="field">
                    <label for="token-name">"Name"</label>
                    <input
                        id="token-name"
                        class="input"
                        name="name"
                        required
                        maxlength="64"
                        autocomplete="off"
                        placeholder="ci"
                    />
                </div>
                <div class="field">
                    <label for="token-role">"Role"</label>
                    <select id="token-role" class="input" name="role">
                        {roles
                            .into_iter()
                            .map(|r| view! { <option value=r.as_str()>{r.as_str()}</option> })
                            .collect_view()}
                    </select>
                </div>
                <div class="field">
                    <label for="token-expires">"Expires after"</label>
                    <select
                        id="token-expires"
                        class="input"
                        name="expires_in_days"
                        aria-invalid=expires_invalid
                        aria-describedby="token-expires-error"
                    >
                        {LIFETIMES
                            .into_iter()
                            .map(|(days, label)| {
                                let selected = days == DEFAULT_LIFETIME;
                                view! { <option value=days selected=selected>{label}</option> }
                            })
                            .collect_view()}
                    </select>
                    <p class="field-error" id="token-expires-error">{expires_error}</p>
                </div>
                <div class="field field-submit">
                    <button type="submit" class="button">"Create token"</button>
                </div>
            </form>
        </section>
    }
}

#[component]
fn TokensTable(data: TokensData) -> impl IntoView {
    if data.rows.is_empty() {
        return view! {
            <section class="card empty-state" data-testid="tokens-empty">
                <p>"No API tokens yet."</p>
            </section>
        }
        .into_any();
    }
    let everyone = data.everyone;
    view! {
        <div class="table-wrap card">
            <table class="table tokens-table" data-testid="tokens">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        {everyone.then(|| view! { <th scope="col">"Owner"</th> })}
                        <th scope="col">"Role"</th>
                        <th scope="col">"Token"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Last used"</th>
                        <th scope="col">"Expires"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {data.rows.into_iter().map(|t| view! { <TokenRowView t everyone /> }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
fn TokenRowView(t: TokenRow, everyone: bool) -> impl IntoView {
    let revoked = t.revoked_at_view();
    let last_used = match (t.last_used_ago.clone(), t.last_used_exact.clone()) {
        (Some(ago), Some(exact)) => view! { <span title=exact>{ago}</span> }.into_any(),
        _ => view! { <span class="muted">"never"</span> }.into_any(),
    };
    let expires = match (t.expires_in.clone(), t.expires_exact.clone()) {
        (Some(when), Some(exact)) => view! { <span title=exact>{when}</span> }.into_any(),
        _ => view! { <span class="muted">"never"</span> }.into_any(),
    };
    let revoke = t.can_revoke.then(|| {
        let id = t.id.clone();
        let label = format!("Revoke {}", t.name);
        let keep = format!("revoke-{id}");
        view! {
            <details class="confirm" data-keep=keep>
                <summary class="button button-secondary button-small">"Revoke…"</summary>
                <div class="confirm-body">
                    <p>"Anything using this token is refused from now on. This cannot be undone."</p>
                    <form
                        method="post"
                        action=RevokeToken::url()
                        data-success="Token {} revoked."
                        data-result="token-revoked"
                    >
                        <input type="hidden" name="id" value=id />
                        <button type="submit" class="button button-danger button-small">{label}</button>
                    </form>
                </div>
            </details>
        }
    });
    view! {
        <tr data-token=t.id.clone() class:revoked-row=t.revoked_ago.is_some()>
            <th scope="row">
                {t.name.clone()}
                <br />
                <code class="muted small">{t.id.clone()}</code>
            </th>
            {everyone.then(|| view! { <td>{t.owner.clone()}</td> })}
            <td>{t.role.as_str()}</td>
            <td><code>{format!("{}…", t.prefix)}</code></td>
            <td><span title=t.created_exact.clone()>{t.created_ago.clone()}</span></td>
            <td>{last_used}</td>
            <td data-testid="token-expires">{expires}</td>
            <td>{revoked}</td>
            <td>{revoke}</td>
        </tr>
    }
}

impl TokenRow {
    /// "active", "expired", or when it was revoked.
    fn revoked_at_view(&self) -> AnyView {
        if self.expired && self.revoked_ago.is_none() {
            return view! { <span class="status status-failed">"expired"</span> }.into_any();
        }
        match (&self.revoked_ago, &self.revoked_exact) {
            (Some(ago), Some(exact)) => view! {
                <span class="status status-failed">"revoked"</span>
                " "
                <span class="muted small" title=exact.clone()>{ago.clone()}</span>
            }
            .into_any(),
            _ => view! { <span class="status status-ok">"active"</span> }.into_any(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, revoked: bool, can_revoke: bool) -> TokenRow {
        TokenRow {
            id: id.into(),
            owner: "alice".into(),
            name: "ci".into(),
            role: Role::Deployer,
            prefix: "slw_abcd".into(),
            created_ago: "just now".into(),
            created_exact: "2026-01-01 00:00:00 UTC".into(),
            last_used_ago: None,
            last_used_exact: None,
            revoked_ago: revoked.then(|| "just now".into()),
            revoked_exact: revoked.then(|| "2026-01-01 00:00:00 UTC".into()),
            expires_in: None,
            expires_exact: None,
            expired: false,
            can_revoke,
        }
    }

    #[test]
    fn table_shows_owner_to_admins_and_revoke_where_allowed() {
        let data = TokensData {
            rows: vec![
                token("TAAAAAAAAAA", false, true),
                token("TBBBBBBBBBB", true, false),
            ],
            everyone: true,
            roles: vec![Role::Viewer],
        };
        let html = view! { <TokensTable data /> }.to_html();
        assert!(html.contains(r#"data-testid="tokens""#), "{html}");
        assert!(html.contains("Owner"), "{html}");
        assert!(html.contains("slw_abcd…"), "{html}");
        assert!(html.contains(r#"value="TAAAAAAAAAA""#), "{html}");
        assert!(!html.contains(r#"value="TBBBBBBBBBB""#), "{html}");
        assert!(html.contains("revoked"), "{html}");

        let data = TokensData {
            rows: vec![token("TAAAAAAAAAA", false, true)],
            everyone: false,
            roles: vec![Role::Viewer],
        };
        let html = view! { <TokensTable data /> }.to_html();
        assert!(!html.contains("Owner"), "{html}");
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn a_bad_lifetime_is_an_error_of_its_field() {
        assert_eq!(ssr::lifetime("").unwrap(), None);
        assert_eq!(ssr::lifetime("never").unwrap(), None);
        assert_eq!(ssr::lifetime("30").unwrap().map(|l| l.as_days()), Some(30));
        for bad in ["0", "400", "soon"] {
            match ssr::lifetime(bad) {
                Err(AppError::Fields(f)) => {
                    assert_eq!(f[0].field, "expires_in_days");
                    assert!(f[0].message.starts_with("Expires: "), "{}", f[0].message);
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn table_shows_when_tokens_expire() {
        let mut soon = token("TAAAAAAAAAA", false, true);
        soon.expires_in = Some("in 4 weeks".into());
        soon.expires_exact = Some("2026-02-01 00:00:00 UTC".into());
        let mut gone = token("TBBBBBBBBBB", false, true);
        gone.expires_in = Some("2 days ago".into());
        gone.expires_exact = Some("2025-12-30 00:00:00 UTC".into());
        gone.expired = true;
        let data = TokensData {
            rows: vec![soon, gone, token("TCCCCCCCCCC", false, true)],
            everyone: false,
            roles: vec![Role::Viewer],
        };
        let html = view! { <TokensTable data /> }.to_html();
        assert!(html.contains("Expires"), "{html}");
        assert!(html.contains("in 4 weeks"), "{html}");
        assert!(
            html.contains(r#"title="2026-02-01 00:00:00 UTC""#),
            "{html}"
        );
        assert!(html.contains(">expired<"), "{html}");
        assert!(html.contains(">never<"), "{html}");
    }

    #[test]
    fn create_form_offers_only_the_given_roles() {
        let html = view! { <NewTokenForm roles=vec![Role::Viewer, Role::Deployer] /> }.to_html();
        assert!(html.contains(r#"<option value="deployer">"#), "{html}");
        assert!(!html.contains("admin"), "{html}");
        assert!(html.contains(r#"data-result="token-created""#), "{html}");
        assert!(html.contains(r#"name="expires_in_days""#), "{html}");
        for days in ["7", "30", "90", "366", ""] {
            assert!(
                html.contains(&format!(r#"value="{days}""#)),
                "{days}: {html}"
            );
        }
    }
}
