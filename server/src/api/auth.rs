//! Signing in from the CLI, API tokens, users and the audit log.
//!
//! `POST /login` takes a user name and password (rate-limited like the Console's sign-in) and
//! answers a new API token with the user's role: what `slipway login` stores.

use axum::{extract::State, http::StatusCode, Json};
use engine::{AuditFilter, Auth, Role, TokenId, TokenLifetime, UserUpdate, Username};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{to_json, ApiJson, ApiPath, ApiQuery, ApiResult, ApiRoute, Who};
use crate::AppState;
use app::policy::Need;

pub(super) fn routes() -> Vec<ApiRoute> {
    vec![
        ApiRoute::post("/login", login)
            .needs(Need::Anyone)
            .audit("login"),
        ApiRoute::post("/logout", logout)
            .needs(Need::Role(Role::Viewer))
            .audit("logout"),
        ApiRoute::get("/whoami", whoami),
        ApiRoute::get("/tokens", list_tokens),
        ApiRoute::post("/tokens", create_token)
            .needs(Need::Role(Role::Viewer))
            .audit("token.create"),
        ApiRoute::post("/tokens/{id}/revoke", revoke_token)
            .needs(Need::Role(Role::Viewer))
            .audit("token.revoke"),
        ApiRoute::get("/users", list_users).needs(Need::Role(Role::Admin)),
        ApiRoute::post("/users", create_user)
            .needs(Need::Role(Role::Admin))
            .audit("user.create"),
        ApiRoute::post("/users/{name}", update_user)
            .needs(Need::Role(Role::Admin))
            .audit("user.update"),
        ApiRoute::get("/audit", audit),
    ]
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
    /// What the token is for (shown in the token list); `cli` by default.
    token_name: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    client: Option<axum::Extension<app::context::ClientAddr>>,
    ApiJson(body): ApiJson<Login>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let auth: &Auth = &state.auth;
    // The CLI keeps a token, not a session.
    let name = body.token_name.unwrap_or_else(|| "cli".into());
    let (principal, token, plain) = auth
        .login_for_token(&body.user, &body.password, client.map(|c| c.0 .0), &name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": plain,
            "id": token.id,
            "user": principal.user,
            "role": principal.role,
        })),
    ))
}

/// Revokes the token the request was made with (a session is left alone).
async fn logout(State(state): State<AppState>, who: Who) -> ApiResult<Json<Value>> {
    state.auth.logout_token(&who.0).await?;
    Ok(Json(json!({ "user": who.0.user, "signed_out": true })))
}

async fn whoami(who: Who) -> ApiResult<Json<Value>> {
    let via = match &who.0.via {
        engine::Via::Session => json!("session"),
        engine::Via::Token(id) => json!({ "token": id }),
    };
    Ok(Json(
        json!({ "user": who.0.user, "role": who.0.role, "via": via }),
    ))
}

#[derive(Deserialize)]
struct ListTokens {
    /// Everyone's (admins only).
    #[serde(default)]
    all: bool,
}

async fn list_tokens(
    State(state): State<AppState>,
    who: Who,
    ApiQuery(q): ApiQuery<ListTokens>,
) -> ApiResult<Json<Value>> {
    let tokens = state.auth.list_tokens(&who.0, q.all).await?;
    Ok(Json(json!({ "tokens": to_json(&tokens)? })))
}

#[derive(Deserialize)]
struct CreateToken {
    name: String,
    /// The caller's own role when left out; never more than it.
    role: Option<String>,
    /// Days until it expires (1 to 366); never when left out.
    #[serde(default, deserialize_with = "super::whole::opt")]
    expires_in_days: Option<i64>,
}

async fn create_token(
    State(state): State<AppState>,
    who: Who,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let role = body.role.as_deref().map(Role::parse).transpose()?;
    let lifetime = body.expires_in_days.map(TokenLifetime::days).transpose()?;
    let (token, plain) = state
        .auth
        .create_token(&who.0, &body.name, role, lifetime)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": plain, "info": to_json(&token)? })),
    ))
}

async fn revoke_token(
    State(state): State<AppState>,
    who: Who,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let id = TokenId::parse(&id)?;
    state.auth.revoke_token(&id, &who.0).await?;
    Ok(Json(json!({ "revoked": id })))
}

async fn list_users(State(state): State<AppState>, who: Who) -> ApiResult<Json<Value>> {
    let users = state.auth.list_users(&who.0).await?;
    Ok(Json(json!({ "users": to_json(&users)? })))
}

#[derive(Deserialize)]
struct CreateUser {
    name: String,
    password: String,
    role: String,
}

async fn create_user(
    State(state): State<AppState>,
    who: Who,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = Username::parse(&body.name)?;
    let role = Role::parse(&body.role)?;
    let user = state
        .auth
        .create_user(&who.0, &name, &body.password, role)
        .await?;
    Ok((StatusCode::CREATED, Json(to_json(&user)?)))
}

#[derive(Deserialize)]
struct UpdateUser {
    role: Option<String>,
    disabled: Option<bool>,
    password: Option<String>,
}

async fn update_user(
    State(state): State<AppState>,
    who: Who,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> ApiResult<Json<Value>> {
    let name = Username::parse(&name)?;
    let update = UserUpdate {
        role: body.role.as_deref().map(Role::parse).transpose()?,
        disabled: body.disabled,
        password: body.password,
    };
    let user = state.auth.update_user(&who.0, &name, &update).await?;
    Ok(Json(to_json(&user)?))
}

async fn audit(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<AuditFilter>,
) -> ApiResult<Json<Value>> {
    let entries = state.auth.list_audit(&filter).await?;
    let next_before = entries.last().map(|e| e.seq);
    Ok(Json(
        json!({ "entries": to_json(&entries)?, "next_before": next_before }),
    ))
}
