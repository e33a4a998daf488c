//! `/apps`: list, create, show.

use axum::{extract::State, http::StatusCode, Json};
use serde::Deserialize;
use serde_json::Value;

use super::{app_name, to_json, ApiJson, ApiPath, ApiResult, ApiRoute, Who};

pub(super) fn routes() -> Vec<ApiRoute> {
    vec![
        ApiRoute::get("/apps", list),
        ApiRoute::post("/apps", create).audit("app.create"),
        ApiRoute::get("/apps/{app}", show),
    ]
}

async fn list(State(engine): State<engine::Engine>) -> ApiResult<Json<Value>> {
    let apps = engine.list_apps().await?;
    Ok(Json(serde_json::json!({ "apps": to_json(&apps)? })))
}

#[derive(Deserialize)]
struct CreateApp {
    name: String,
}

async fn create(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiJson(body): ApiJson<CreateApp>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = app_name(&body.name)?;
    let app = engine.create_app(&name, &who.actor()).await?;
    Ok((StatusCode::CREATED, Json(to_json(&app)?)))
}

async fn show(
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let app = engine.app(&app_name(&app)?).await?;
    Ok(Json(to_json(&app)?))
}
