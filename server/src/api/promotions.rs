//! `/promotions/{id}` (with its event log), `/apps/{app}/promotions`, and the output of the
//! running processes, `/apps/{app}/processes`.

use axum::{extract::State, Json};
use engine::{PromotionId, ReleaseId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{app_name, to_json, ApiPath, ApiQuery, ApiResult, ApiRoute};

pub(super) fn routes() -> Vec<ApiRoute> {
    vec![
        ApiRoute::get("/promotions/{id}", show),
        ApiRoute::get("/apps/{app}/promotions", list),
        ApiRoute::get("/apps/{app}/processes", processes),
    ]
}

async fn show(
    State(engine): State<engine::Engine>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let detail = engine.promotion(&PromotionId::parse(&id)?).await?;
    Ok(Json(to_json(&detail)?))
}

#[derive(Deserialize)]
struct ListQuery {
    release: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let app = app_name(&app)?;
    let release = q.release.as_deref().map(ReleaseId::parse).transpose()?;
    let promotions = engine
        .list_promotions(&app, release.as_ref(), q.limit.unwrap_or(50))
        .await?;
    Ok(Json(json!({ "promotions": to_json(&promotions)? })))
}

#[derive(Deserialize)]
struct ProcessesQuery {
    lines: Option<usize>,
}

async fn processes(
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<ProcessesQuery>,
) -> ApiResult<Json<Value>> {
    let app = app_name(&app)?;
    engine.app(&app).await?;
    let lines = q.lines.unwrap_or(100).clamp(1, 500);
    let processes: Vec<Value> = engine
        .process_output(&app, lines)
        .into_iter()
        .map(|(name, output)| json!({ "name": name, "output": output }))
        .collect();
    Ok(Json(json!({ "processes": processes })))
}
