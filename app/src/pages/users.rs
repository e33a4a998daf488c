//! Users (`/users`, admins only): every user with role, creation time and whether it is
//! disabled; create a user, change a user's role, disable or enable one. The engine guards the
//! rules (the last enabled admin stays, passwords have a minimum length) and its refusals are
//! shown as they are.

use crate::live::LiveRegion;
use crate::{components::ErrorList, AppError};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};
use types::Role;

/// One user as the page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub name: String,
    pub role: Role,
    pub created_ago: String,
    pub created_exact: String,
    pub disabled_ago: Option<String>,
    pub disabled_exact: Option<String>,
    /// Whether this is the caller.
    pub is_me: bool,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::UserRow;
    use crate::AppError;
    use engine::{time, Auth, Principal, Role, UserUpdate, Username};

    /// The signed-in caller, who must be an admin (the server checks the rule of the server
    /// function too; pages rendered on the server call it directly).
    pub fn admin() -> Result<Principal, AppError> {
        crate::context::signed_in_as(Role::Admin)
    }

    pub async fn users(auth: &Auth, me: &Principal) -> Result<Vec<UserRow>, engine::Error> {
        let now = engine::now_ms();
        Ok(auth
            .list_users(me)
            .await?
            .into_iter()
            .map(|u| UserRow {
                is_me: u.name == me.user,
                name: u.name.to_string(),
                role: u.role,
                created_ago: time::ago(u.created_at, now),
                created_exact: time::exact(u.created_at),
                disabled_ago: u.disabled_at.map(|at| time::ago(at, now)),
                disabled_exact: u.disabled_at.map(time::exact),
            })
            .collect())
    }

    /// A role from a form; empty is `None`.
    pub fn role(value: Option<&str>) -> Result<Option<Role>, engine::Error> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Some(Role::parse(v)?)),
            None => Ok(None),
        }
    }

    /// Creates a user; returns its name.
    pub async fn create(
        auth: &Auth,
        by: &Principal,
        username: &str,
        password: &str,
        role: &str,
    ) -> Result<String, engine::Error> {
        let name = Username::parse(username.trim())?;
        let role = Role::parse(role.trim())?;
        let user = auth.create_user(by, &name, password, role).await?;
        Ok(user.name.to_string())
    }

    /// Changes a user's role and/or disables or enables it (one change); says what was done.
    pub async fn update(
        auth: &Auth,
        by: &Principal,
        username: &str,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<String, engine::Error> {
        let name = Username::parse(username.trim())?;
        if role.is_none() && disabled.is_none() {
            return Err(engine::Error::Invalid {
                field: "user".into(),
                message: "nothing to change: give a role or disable or enable the user".into(),
            });
        }
        let update = UserUpdate {
            role,
            disabled,
            password: None,
        };
        auth.update_user(by, &name, &update).await?;
        let mut done = Vec::new();
        if let Some(role) = role {
            done.push(format!("{name} is now {role}"));
        }
        match disabled {
            Some(true) => done.push(format!("{name} is disabled")),
            Some(false) => done.push(format!("{name} is enabled")),
            None => {}
        }
        Ok(format!("{}.", done.join(" and ")))
    }
}

/// Every user, by name. Admins only.
#[server(endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserRow>, AppError> {
    let ctx = crate::context::console_context_for(engine::Role::Admin)?;
    let me = ssr::admin()?;
    Ok(ssr::users(&ctx.auth, &me).await?)
}

/// Creates a user with `password` and `role`; returns its name. Admins only.
#[server(endpoint = "create_user")]
pub async fn create_user(
    username: String,
    password: String,
    role: String,
) -> Result<String, AppError> {
    let ctx = crate::context::console_context_for(engine::Role::Admin)?;
    let me = ssr::admin()?;
    Ok(ssr::create(&ctx.auth, &me, &username, &password, &role).await?)
}

/// Changes `username`'s role, and/or disables (`disabled=true`) or enables it; returns what
/// was done. Admins only.
#[server(endpoint = "update_user")]
pub async fn update_user(
    username: String,
    role: Option<String>,
    disabled: Option<bool>,
) -> Result<String, AppError> {
    let ctx = crate::context::console_context_for(engine::Role::Admin)?;
    let me = ssr::admin()?;
    let role = ssr::role(role.as_deref())?;
    Ok(ssr::update(&ctx.auth, &me, &username, role, disabled).await?)
}

/// Whether the caller is an admin (the page is rendered on the server only). A non-admin's
/// page answers 403.
fn caller_is_admin() -> bool {
    #[cfg(feature = "ssr")]
    {
        let admin = crate::context::caller().is_some_and(|p| p.role.allows(engine::Role::Admin));
        if !admin {
            if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
                res.set_status(http::StatusCode::FORBIDDEN);
            }
        }
        admin
    }
    #[cfg(not(feature = "ssr"))]
    false
}

#[component]
pub fn UsersPage() -> impl IntoView {
    let header = view! {
        <Title text="Users" />
        <div class="page-header">
            <h1>"Users"</h1>
        </div>
    };
    if !caller_is_admin() {
        return view! {
            {header}
            <div class="notice notice-error" role="alert" data-testid="forbidden">
                <p>"Only admins can manage users. Ask an admin to change your role if you need to."</p>
            </div>
        }
        .into_any();
    }
    let users = Resource::new(|| (), |_| list_users());
    view! {
        {header}
        <crate::components::ActionError />
        <Suspense fallback=|| view! { <p class="muted">"Loading users…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    users.await.map(|rows| {
                        view! {
                            <LiveRegion app=None id="users-live".to_string()>
                                <NewUserForm />
                                <UsersTable rows />
                            </LiveRegion>
                        }
                    })
                })}
            </ErrorBoundary>
        </Suspense>
    }
    .into_any()
}

/// `<option>`s of every role, lowest first, `selected` marking one.
fn role_options(selected: Role) -> impl IntoView {
    Role::ALL
        .into_iter()
        .map(|r| view! { <option value=r.as_str() selected=r == selected>{r.as_str()}</option> })
        .collect_view()
}

#[component]
fn NewUserForm() -> impl IntoView {
    view! {
        <section class="card" aria-labelledby="new-user-heading">
            <h2 id="new-user-heading">"New user"</h2>
            <form
                method="post"
                action=CreateUser::url()
                class="form-grid"
                data-success="User {} created."
                data-result="user-created"
                data-testid="create-user"
            >
                <div class="field">
                    <label for="user-name">"User name"</label>
                    <input
                        id="user-name"
                        class="input"
                        name="username"
                        required
                        maxlength="64"
                        autocomplete="off"
                        autocapitalize="none"
                        spellcheck="false"
                        aria-describedby="user-name-help"
                    />
                    <p id="user-name-help" class="muted small">"Lowercase letters, digits, - _ and ."</p>
                </div>
                <div class="field">
                    <label for="user-password">"Password"</label>
                    <input
                        id="user-password"
                        class="input"
                        type="password"
                        name="password"
                        required
                        minlength="8"
                        autocomplete="new-password"
                        aria-describedby="user-password-help"
                    />
                    <p id="user-password-help" class="muted small">"At least 8 characters."</p>
                </div>
                <div class="field">
                    <label for="user-role">"Role"</label>
                    <select id="user-role" class="input" name="role">
                        {role_options(Role::Viewer)}
                    </select>
                </div>
                <div class="field field-submit">
                    <button type="submit" class="button">"Create user"</button>
                </div>
            </form>
        </section>
    }
}

#[component]
fn UsersTable(rows: Vec<UserRow>) -> impl IntoView {
    view! {
        <div class="table-wrap card">
            <table class="table users-table" data-testid="users">
                <thead>
                    <tr>
                        <th scope="col">"User"</th>
                        <th scope="col">"Role"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {rows.into_iter().map(|u| view! { <UserRowView u /> }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn UserRowView(u: UserRow) -> impl IntoView {
    let name = u.name.clone();
    let disabled = u.disabled_ago.is_some();
    let status = match (u.disabled_ago.clone(), u.disabled_exact.clone()) {
        (Some(ago), Some(exact)) => view! {
            <span class="status status-failed">"disabled"</span>
            " "
            <span class="muted small" title=exact>{ago}</span>
        }
        .into_any(),
        _ => view! { <span class="status status-ok">"enabled"</span> }.into_any(),
    };
    let me = u
        .is_me
        .then(|| view! { " " <span class="muted small">"(you)"</span> });
    let select_id = format!("role-{name}");
    let (toggle_label, toggle_value) = if disabled {
        ("Enable", "false")
    } else {
        ("Disable", "true")
    };
    view! {
        <tr data-user=name.clone() class:disabled-row=disabled>
            <th scope="row">{name.clone()}{me}</th>
            <td>
                <form
                    method="post"
                    action=UpdateUser::url()
                    class="inline-form"
                    data-success="{}"
                    data-result="user-updated"
                >
                    <input type="hidden" name="username" value=name.clone() />
                    <label for=select_id.clone() class="visually-hidden">{format!("Role of {name}")}</label>
                    <select id=select_id class="input input-small" name="role">
                        {role_options(u.role)}
                    </select>
                    <button
                        type="submit"
                        class="button button-secondary button-small"
                        aria-label=format!("Change role of {name}")
                    >
                        "Change role"
                    </button>
                </form>
            </td>
            <td><span title=u.created_exact>{u.created_ago}</span></td>
            <td>{status}</td>
            <td>
                <form
                    method="post"
                    action=UpdateUser::url()
                    data-success="{}"
                    data-result="user-updated"
                >
                    <input type="hidden" name="username" value=name.clone() />
                    <input type="hidden" name="disabled" value=toggle_value />
                    <button
                        type="submit"
                        class="button button-secondary button-small"
                        aria-label=format!("{toggle_label} {name}")
                    >
                        {toggle_label}
                    </button>
                </form>
            </td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_offer_role_change_and_disable_or_enable() {
        let rows = vec![
            UserRow {
                name: "admin".into(),
                role: Role::Admin,
                created_ago: "just now".into(),
                created_exact: "2026-01-01 00:00:00 UTC".into(),
                disabled_ago: None,
                disabled_exact: None,
                is_me: true,
            },
            UserRow {
                name: "bob".into(),
                role: Role::Viewer,
                created_ago: "just now".into(),
                created_exact: "2026-01-01 00:00:00 UTC".into(),
                disabled_ago: Some("just now".into()),
                disabled_exact: Some("2026-01-01 00:00:00 UTC".into()),
                is_me: false,
            },
        ];
        let html = view! { <UsersTable rows /> }.to_html();
        assert!(html.contains(r#"data-testid="users""#), "{html}");
        assert!(html.contains(r#"data-user="bob""#), "{html}");
        assert!(html.contains(r#"aria-label="Enable bob""#), "{html}");
        assert!(html.contains(r#"aria-label="Disable admin""#), "{html}");
        assert!(html.contains(r#"<option value="admin" selected"#), "{html}");
        assert!(html.contains("(you)"), "{html}");
    }
}
