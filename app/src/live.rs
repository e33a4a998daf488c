//! Live updates in the browser.
//!
//! The Console renders in islands: pages are plain server-rendered HTML and only the
//! interactive parts (islands) ship wasm. An island that shows something that changes gets its
//! first value from the server as a prop and keeps it fresh with [`refreshed`], usually
//! triggered by [`use_app_events`]: a subscription to the app's engine events
//! (`/api/v1/apps/{app}/events`, server-sent events). On the server, and without JavaScript,
//! nothing moves and pages are simply rendered as they are.

use crate::AppError;
use leptos::prelude::*;
use std::future::Future;

/// Event names the API's stream uses (the engine's event types).
#[cfg(feature = "hydrate")]
const EVENT_NAMES: [&str; 4] = [
    "promotion",
    "promotion-finished",
    "release-created",
    "process",
];

/// A signal that changes whenever something happens to `app` (only in the browser).
pub fn use_app_events(app: String) -> ReadSignal<u32> {
    let (ticks, set_ticks) = signal(0u32);
    // Effects run only in the browser, after hydration. The subscription lives as long as
    // the island; it is closed when the effect is cleaned up.
    Effect::new(move |previous: Option<Option<Subscription>>| {
        drop(previous);
        subscribe(&app, move || set_ticks.update(|n| *n = n.wrapping_add(1)))
    });
    ticks
}

/// `initial` (rendered by the server), fetched again with `fetch` in the browser whenever a
/// signal read by `trigger` changes. Answers that arrive out of order are dropped, and a failed
/// fetch keeps the last good value (the next event tries again).
pub fn refreshed<T, Fut>(
    initial: T,
    trigger: impl Fn() + 'static,
    fetch: impl Fn() -> Fut + 'static,
) -> ReadSignal<T>
where
    T: Send + Sync + 'static,
    Fut: Future<Output = Result<T, AppError>> + 'static,
{
    let (value, set_value) = signal(initial);
    let latest = StoredValue::new(0u64);
    Effect::new(move |ran: Option<()>| {
        trigger();
        if ran.is_none() {
            // The first run only subscribes to the trigger: the server's value is current.
            return;
        }
        let seq = latest.get_value() + 1;
        latest.set_value(seq);
        let request = fetch();
        leptos::task::spawn_local(async move {
            match request.await {
                Ok(v) if latest.get_value() == seq => set_value.set(v),
                Ok(_) => {}
                Err(e) => leptos::logging::warn!("refreshing failed: {e}"),
            }
        });
    });
    value
}

/// An open event stream; closed when dropped.
pub struct Subscription {
    #[cfg(feature = "hydrate")]
    source: web_sys::EventSource,
    #[cfg(feature = "hydrate")]
    _listener: wasm_bindgen::closure::Closure<dyn FnMut(web_sys::Event)>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        #[cfg(feature = "hydrate")]
        self.source.close();
    }
}

#[cfg(feature = "hydrate")]
fn subscribe(app: &str, on_event: impl Fn() + 'static) -> Option<Subscription> {
    use wasm_bindgen::JsCast;
    let source = web_sys::EventSource::new(&format!("/api/v1/apps/{app}/events")).ok()?;
    let listener = wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::Event)>::new(
        move |_: web_sys::Event| on_event(),
    );
    for name in EVENT_NAMES {
        let _ = source.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
    }
    Some(Subscription {
        source,
        _listener: listener,
    })
}

#[cfg(not(feature = "hydrate"))]
fn subscribe(_app: &str, _on_event: impl Fn() + 'static) -> Option<Subscription> {
    None
}

/// Marks the page as interactive: `data-hydrated="true"` on `<main>` once every island before
/// it has hydrated (islands hydrate in document order, and this one is last). The browser
/// tests wait for it.
#[island]
pub fn HydrationMark() -> impl IntoView {
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        if let Ok(Some(main)) = document().query_selector("main") {
            let _ = main.set_attribute("data-hydrated", "true");
        }
    });
}
