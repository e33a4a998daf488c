//! `/apps/{app}/releases`: list (paged by `seq`), show, create, promote, roll back; and
//! `/apps/{app}/cancel`.

use axum::{extract::State, http::StatusCode, Json};
use engine::{BuildId, Environment, NewRelease, PromoteOptions, ReleaseId};
use serde::Deserialize;
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use super::{
    app_name, masked_env, release_json, to_json, ApiError, ApiJson, ApiPath, ApiQuery, ApiResult,
    ApiRoute, Who,
};

pub(super) fn routes() -> Vec<ApiRoute> {
    vec![
        ApiRoute::get("/apps/{app}/releases", list),
        ApiRoute::post("/apps/{app}/releases", create).audit("release.create"),
        ApiRoute::get("/apps/{app}/releases/{id}", show),
        ApiRoute::post("/apps/{app}/releases/{id}/promote", promote).audit("release.promote"),
        ApiRoute::post("/apps/{app}/releases/{id}/rollback", rollback).audit("release.rollback"),
        ApiRoute::post("/apps/{app}/cancel", cancel).audit("promotion.cancel"),
    ]
}

pub(super) const DEFAULT_LIMIT: u32 = 50;

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    before: Option<i64>,
    /// `env`: each release with its (masked) environment too.
    include: Option<String>,
}

/// A page of releases as summaries: what each is and which keys it changed against the one
/// before it; the environment itself (masked) only with `?include=env`.
async fn list(
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let app = app_name(&app)?;
    let with_env = match q.include.as_deref() {
        None => false,
        Some("env") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "include",
                format!("`{other}` is not something a release list can include (only `env`)"),
            ))
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, 1000);
    let items = engine.list_releases(&app, q.before, limit).await?;
    let next_before = if items.len() as u32 >= limit {
        items.last().map(|i| i.seq)
    } else {
        None
    };
    let mut envs: HashMap<ReleaseId, Value> = HashMap::new();
    if with_env {
        let ids: Vec<ReleaseId> = items.iter().map(|i| i.release.id.clone()).collect();
        for release in engine.releases_among(&app, &ids).await? {
            envs.insert(release.id.clone(), masked_env(&release.env));
        }
    }
    let mut releases = Vec::with_capacity(items.len());
    for item in &items {
        let mut value = to_json(&item.release)?;
        if let Value::Object(map) = &mut value {
            map.insert("seq".into(), json!(item.seq));
            map.insert("status".into(), json!(item.status()));
            map.insert("active".into(), json!(item.active));
            map.insert("same_env_as_active".into(), json!(item.same_env_as_active));
            map.insert("promoted_by".into(), json!(item.promoted_by));
            map.insert("last_promotion".into(), to_json(&item.last_promotion)?);
            if let Some(env) = envs.remove(&item.release.id) {
                map.insert("env".into(), env);
            }
        }
        releases.push(value);
    }
    Ok(Json(
        json!({ "releases": releases, "next_before": next_before }),
    ))
}

#[derive(Deserialize)]
struct ShowQuery {
    #[serde(default)]
    reveal: bool,
}

async fn show(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiPath((app, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> ApiResult<Json<Value>> {
    let app = app_name(&app)?;
    let id = ReleaseId::parse(&id)?;
    if q.reveal {
        // The engine's (audited) reveal: the entry is written before the values are returned.
        let release = engine
            .reveal_env(&app, Some(&id), &who.actor())
            .await?
            .ok_or_else(|| engine::Error::NotFound {
                what: "release",
                id: id.to_string(),
            })?;
        return Ok(Json(release_json(&release, true)?));
    }
    let release = engine.release(&app, &id).await?;
    Ok(Json(release_json(&release, false)?))
}

#[derive(Deserialize)]
struct CreateRelease {
    from: Option<String>,
    build: Option<String>,
    env: Option<BTreeMap<String, String>>,
    description: Option<String>,
}

async fn create(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<CreateRelease>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let app = app_name(&app)?;
    let spec = NewRelease {
        from: body.from.as_deref().map(ReleaseId::parse).transpose()?,
        build: body.build.as_deref().map(BuildId::parse).transpose()?,
        env: body.env.map(Environment::from_pairs).transpose()?,
        description: body.description,
    };
    let release = engine.create_release(&app, &spec, &who.actor()).await?;
    Ok((StatusCode::CREATED, Json(release_json(&release, false)?)))
}

#[derive(Deserialize, Default)]
pub(super) struct PromoteBody {
    /// The rollout's deadline in seconds.
    #[serde(default, deserialize_with = "super::whole::opt")]
    pub timeout: Option<u64>,
}

pub(super) fn promote_options(timeout: Option<u64>) -> PromoteOptions {
    PromoteOptions {
        deadline: timeout.map(Duration::from_secs),
    }
}

async fn promote(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiPath((app, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PromoteBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let app = app_name(&app)?;
    let promotion = engine
        .promote(
            &app,
            &ReleaseId::parse(&id)?,
            &promote_options(body.timeout),
            &who.actor(),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(to_json(&promotion)?)))
}

async fn rollback(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiPath((app, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PromoteBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let app = app_name(&app)?;
    let (release, promotion) = engine
        .rollback(
            &app,
            &ReleaseId::parse(&id)?,
            &promote_options(body.timeout),
            &who.actor(),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "release": release_json(&release, false)?,
            "promotion": to_json(&promotion)?,
        })),
    ))
}

async fn cancel(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let promotion = engine.cancel(&app_name(&app)?, &who.actor()).await?;
    Ok(Json(to_json(&promotion)?))
}
