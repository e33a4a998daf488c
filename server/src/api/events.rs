//! `/apps/{app}/events`: the engine's live events for one app as server-sent events.

use axum::{
    extract::State,
    response::sse::{Event, KeepAlive, Sse},
};
use engine::{AppName, EngineEvent};
use futures::Stream;
use std::convert::Infallible;
use tokio::sync::broadcast::{error::RecvError, Receiver};

use super::{app_name, ApiPath, ApiResult, ApiRoute, ShutdownSignal, Who};

pub(super) fn routes() -> Vec<ApiRoute> {
    vec![ApiRoute::get("/apps/{app}/events", stream)]
}

async fn stream(
    who: Who,
    State(engine): State<engine::Engine>,
    State(shutdown): State<ShutdownSignal>,
    ApiPath(app): ApiPath<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let app = app_name(&app)?;
    // Subscribe first, so nothing is missed between the check and the stream.
    let rx = engine.subscribe();
    engine.app(&app).await?;
    let masked = !who.sees_values();
    let events = futures::stream::unfold(
        (rx, app, shutdown, engine),
        move |(mut rx, app, mut shutdown, engine)| async move {
            let event = loop {
                let event = tokio::select! {
                    event = next_event(&mut rx, &app) => event?,
                    () = shutdown.fired() => return None,
                };
                let event = if masked {
                    mask_output(&engine, event).await
                } else {
                    event
                };
                if let Some(e) = sse_event(&event) {
                    break e;
                }
            };
            Some((Ok(event), (rx, app, shutdown, engine)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// A finished promotion's output with the app's values masked (for viewers). Should the
/// values not be readable, the output is left out rather than shown.
async fn mask_output(engine: &engine::Engine, mut event: EngineEvent) -> EngineEvent {
    if let EngineEvent::PromotionFinished { app, promotion } = &mut event {
        let masked = engine
            .redact_promotions(app, std::slice::from_mut(promotion))
            .await;
        if let Err(e) = masked {
            tracing::warn!(%app, "cannot read the values to mask: {e}");
            promotion.failed_output = None;
        }
    }
    event
}

/// The next event of `app`; `None` once the engine is gone.
async fn next_event(rx: &mut Receiver<EngineEvent>, app: &AppName) -> Option<EngineEvent> {
    loop {
        match rx.recv().await {
            Ok(event) if event.app() == app => return Some(event),
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
