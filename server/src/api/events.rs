//! `/apps/{app}/events`: the engine's live events for one app as server-sent events.

use axum::{
    extract::State,
    response::sse::{Event, KeepAlive, Sse},
};
use engine::{AppName, EngineEvent};
use futures::Stream;
use std::convert::Infallible;
use tokio::sync::broadcast::{error::RecvError, Receiver};

use super::{app_name, ApiPath, ApiResult, ApiRoute, ShutdownSignal};

pub(super) fn routes() -> Vec<ApiRoute> {
    vec![ApiRoute::get("/apps/{app}/events", stream)]
}

async fn stream(
    State(engine): State<engine::Engine>,
    State(shutdown): State<ShutdownSignal>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let app = app_name(&app)?;
    // Subscribe first, so nothing is missed between the check and the stream.
    let rx = engine.subscribe();
    engine.app(&app).await?;
    let events = futures::stream::unfold(
        (rx, app, shutdown),
        |(mut rx, app, mut shutdown)| async move {
            let event = tokio::select! {
                event = next_event(&mut rx, &app) => event?,
                () = shutdown.fired() => return None,
            };
            Some((Ok(event), (rx, app, shutdown)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The next event of `app` as an SSE event; `None` once the engine is gone.
async fn next_event(rx: &mut Receiver<EngineEvent>, app: &AppName) -> Option<Event> {
    loop {
        match rx.recv().await {
            Ok(event) if event.app() == app => match sse_event(&event) {
                Some(e) => return Some(e),
                None => continue,
            },
            Ok(_) => continue,
            Err(RecvError::Lagged(n)) => {
                tracing::debug!(%app, skipped = n, "event stream lagged; continuing");
                continue;
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

/// `event:` is the event's `type`, `data:` its JSON.
fn sse_event(event: &EngineEvent) -> Option<Event> {
    let value = match serde_json::to_value(event) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("serializing an engine event: {e}");
            return None;
        }
    };
    let name = value
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("event")
        .to_owned();
    Some(Event::default().event(name).data(value.to_string()))
}
