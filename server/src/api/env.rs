//! `/apps/{app}/env`: read a release's environment (masked unless revealed) and change it,
//! which makes a new release (and optionally promotes it).

use axum::{extract::State, http::StatusCode, Json};
use engine::{EnvChange, EnvKey, ReleaseId};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

use super::{
    app_name, release_json, releases::promote_options, to_json, ApiJson, ApiPath, ApiQuery,
    ApiResult, ApiRoute, Who,
};

pub(super) fn routes() -> Vec<ApiRoute> {
    vec![
        ApiRoute::get("/apps/{app}/env", show),
        ApiRoute::post("/apps/{app}/env", change).audit("env.change"),
    ]
}

#[derive(Deserialize)]
struct ShowQuery {
    release: Option<String>,
    #[serde(default)]
    reveal: bool,
}

async fn show(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> ApiResult<Json<Value>> {
    let app = app_name(&app)?;
    let id = q.release.as_deref().map(ReleaseId::parse).transpose()?;
    // A reveal is the engine's (audited) use case; the entry is written before the values
    // are returned.
    let release = match (q.reveal, id) {
        (true, id) => engine.reveal_env(&app, id.as_ref(), &who.actor()).await?,
        (false, Some(id)) => Some(engine.release(&app, &id).await?),
        (false, None) => engine.newest_release(&app).await?,
    };
    let Some(release) = release else {
        // An app without releases has an empty environment.
        return Ok(Json(json!({ "release": null, "env": {} })));
    };
    let value = release_json(&release, q.reveal)?;
    Ok(Json(json!({
        "release": release.id,
        "env": value.get("env").cloned().unwrap_or_else(|| json!({})),
    })))
}

#[derive(Deserialize)]
struct ChangeEnv {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    unset: Vec<String>,
    #[serde(default)]
    replace: bool,
    base: Option<String>,
    description: Option<String>,
    #[serde(default)]
    promote: bool,
    #[serde(default, deserialize_with = "super::whole::opt")]
    timeout: Option<u64>,
}

async fn change(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<ChangeEnv>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let app = app_name(&app)?;
    let change = EnvChange {
        set: body
            .set
            .into_iter()
            .map(|(k, v)| Ok((EnvKey::parse(&k)?, v)))
            .collect::<Result<_, engine::Error>>()?,
        unset: body
            .unset
            .iter()
            .map(|k| EnvKey::parse(k))
            .collect::<Result<BTreeSet<_>, _>>()?,
        replace: body.replace,
    };
    let base = body.base.as_deref().map(ReleaseId::parse).transpose()?;
    // With `promote`, the release and its rollout are one engine step: a refused promote
    // leaves no release behind.
    let (release, promotion) = if body.promote {
        let (release, promotion) = engine
            .change_env_and_promote(
                &app,
                &change,
                base.as_ref(),
                body.description.as_deref(),
                &promote_options(body.timeout),
                &who.actor(),
            )
            .await?;
        (release, Some(promotion))
    } else {
        let release = engine
            .change_env(
                &app,
                &change,
                base.as_ref(),
                body.description.as_deref(),
                &who.actor(),
            )
            .await?;
        (release, None)
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "release": release_json(&release, false)?,
            "promotion": to_json(&promotion)?,
        })),
    ))
}
