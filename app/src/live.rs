//! Live updates: in the browser, a subscription to the app's engine events
//! (`/api/v1/apps/{app}/events`, server-sent events) that bumps a counter on every event, so
//! that resources depending on it refetch. On the server (and without JavaScript) the counter
//! never moves and pages are simply rendered as they are.

use leptos::prelude::*;

/// Event names the API's stream uses (the engine's event types).
#[cfg(feature = "hydrate")]
const EVENT_NAMES: [&str; 4] = [
    "promotion",
    "promotion-finished",
    "release-created",
    "process",
];

/// A signal that changes whenever something happens to `app`.
pub fn use_app_events(app: impl Fn() -> String + Send + Sync + 'static) -> ReadSignal<u32> {
    let (ticks, set_ticks) = signal(0u32);
    // Effects run only in the browser, after hydration.
    Effect::new(move |previous: Option<Option<Subscription>>| {
        // A new app (client-side navigation): close the old stream first.
        drop(previous);
        let app = app();
        subscribe(&app, move || set_ticks.update(|n| *n = n.wrapping_add(1)))
    });
    ticks
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
