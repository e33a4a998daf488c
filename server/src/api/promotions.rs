//! `/promotions/{id}` (with its event log), `/apps/{app}/promotions`, and the output of the
//! running processes, `/apps/{app}/processes`.

use axum::{extract::State, Json};
use engine::{PromotionId, ReleaseId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{app_name, to_json, ApiPath, ApiQuery, ApiResult, ApiRoute, Who};

pub(super) fn routes() -> Vec<ApiRoute> {
    vec![
        ApiRoute::get("/promotions/{id}", show),
        ApiRoute::get("/apps/{app}/promotions", list),
        ApiRoute::get("/apps/{app}/processes", processes),
    ]
}

async fn show(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let mut detail = engine.promotion(&PromotionId::parse(&id)?).await?;
    if !who.sees_values() {
        let p = &mut detail.promotion;
        let app = p.app.clone();
        engine
            .redact_promotions(&app, std::slice::from_mut(p))
            .await?;
    }
    Ok(Json(to_json(&detail)?))
}

#[derive(Deserialize)]
struct ListQuery {
    release: Option<String>,
    limit: Option<u32>,
}

async fn list(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let app = app_name(&app)?;
    let release = q.release.as_deref().map(ReleaseId::parse).transpose()?;
    let mut promotions = engine
        .list_promotions(&app, release.as_ref(), q.limit.unwrap_or(50))
        .await?;
    if !who.sees_values() {
        engine.redact_promotions(&app, &mut promotions).await?;
    }
    Ok(Json(json!({ "promotions": to_json(&promotions)? })))
}

#[derive(Deserialize)]
struct ProcessesQuery {
    lines: Option<usize>,
}

async fn processes(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<ProcessesQuery>,
) -> ApiResult<Json<Value>> {
    let app = app_name(&app)?;
    // The processes run with the active release's environment. Should a promotion switch
    // releases meanwhile, the values of the releases active before and after the output was
    // read are both masked.
    let active_before: Vec<ReleaseId> =
        engine.app(&app).await?.active_release.into_iter().collect();
    let lines = q.lines.unwrap_or(100).clamp(1, 500);
    let output = engine.process_output(&app, lines).await;
    let redactor = if who.sees_values() {
        engine::Redactor::default()
    } else {
        engine.output_redactor(&app, &active_before).await?
    };
    let processes: Vec<Value> = output
        .into_iter()
        .map(|(name, output)| json!({ "name": name, "output": redactor.redact(&output) }))
        .collect();
    Ok(Json(json!({ "processes": processes })))
}
