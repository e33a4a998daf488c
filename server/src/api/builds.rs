//! `/apps/{app}/builds`: list, show, and upload a `.tar.gz` source.

use axum::{
    body::Body,
    extract::State,
    http::{
        header::{CONTENT_LENGTH, CONTENT_TYPE},
        HeaderMap, StatusCode,
    },
    Json,
};
use engine::{BuildId, BuildSource};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{app_name, to_json, ApiError, ApiPath, ApiQuery, ApiResult, ApiRoute, Who};

pub(super) fn routes() -> Vec<ApiRoute> {
    vec![
        ApiRoute::get("/apps/{app}/builds", list),
        // The body is streamed to a file, capped by the engine's `--max-archive-bytes`.
        ApiRoute::post("/apps/{app}/builds", create).audit("build.create"),
        ApiRoute::get("/apps/{app}/builds/{id}", show),
    ]
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
}

async fn list(
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let builds = engine
        .list_builds(&app_name(&app)?, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(json!({ "builds": to_json(&builds)? })))
}

async fn show(
    State(engine): State<engine::Engine>,
    ApiPath((app, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = app_name(&app)?;
    let build = engine.build(&app, &BuildId::parse(&id)?).await?;
    Ok(Json(to_json(&build)?))
}

#[derive(Deserialize)]
struct CreateQuery {
    description: Option<String>,
    git_sha: Option<String>,
}

async fn create(
    who: Who,
    State(engine): State<engine::Engine>,
    ApiPath(app): ApiPath<String>,
    ApiQuery(q): ApiQuery<CreateQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let app = app_name(&app)?;
    check_content_type(&headers)?;
    // An unknown app is answered before the body is read.
    engine.app(&app).await?;
    let expected_len = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Into a temporary file in the data dir (removed if anything fails), hashed as it comes.
    let mut upload = engine.begin_upload(expected_len).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("body", e))?;
        upload.write(&chunk).await?;
    }
    if upload.is_empty() {
        return Err(ApiError::bad_request(
            "body",
            "expected the source as a .tar.gz archive",
        ));
    }
    let file = upload.finish().await?;
    let (build, release) = engine
        .create_build(
            &app,
            BuildSource::File(file),
            q.description.as_deref(),
            q.git_sha.as_deref(),
            &who.actor(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "build": to_json(&build)?,
            "release": super::release_json(&release, false)?,
        })),
    ))
}

/// Archive types a build upload may be sent as (or none at all).
const ARCHIVE_TYPES: &[&str] = &[
    "application/gzip",
    "application/x-gzip",
    "application/x-tar+gzip",
    "application/octet-stream",
];

fn check_content_type(headers: &HeaderMap) -> ApiResult<()> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if ARCHIVE_TYPES.contains(&essence.as_str()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "content-type",
            format!(
                "expected the source as a .tar.gz ({})",
                ARCHIVE_TYPES.join(" or ")
            ),
        ))
    }
}
