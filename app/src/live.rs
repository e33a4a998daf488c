//! Live updates in the browser, for server-rendered pages.
//!
//! The Console renders in islands: pages are plain server-rendered HTML and only the
//! interactive parts ship wasm. Most of what changes on a page (the releases table, a rollout's
//! steps) stays server-rendered inside a [`LiveRegion`]: on every engine event of the app
//! ([`use_app_events`], server-sent events from `/api/v1/apps/{app}/events`) the browser asks
//! the server for the page again and swaps the region's new HTML in. Forms inside a region are
//! plain HTML forms that post to server functions (so they work without JavaScript); with
//! JavaScript the region submits them in the background, shows the outcome, and refreshes.

use leptos::prelude::*;

/// Event names the API's stream uses (the engine's event types).
#[cfg(feature = "hydrate")]
const EVENT_NAMES: [&str; 4] = [
    "promotion",
    "promotion-finished",
    "release-created",
    "process",
];

/// A signal that changes whenever something happens to `app` (only in the browser).
pub fn use_app_events(app: Option<String>) -> ReadSignal<u32> {
    let (ticks, set_ticks) = signal(0u32);
    // Effects run only in the browser, after hydration. The subscription lives as long as
    // the island; it is closed when the effect is cleaned up.
    Effect::new(move |previous: Option<Option<Subscription>>| {
        drop(previous);
        let app = app.as_deref()?;
        subscribe(app, move || set_ticks.update(|n| *n = n.wrapping_add(1)))
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

/// The outcome of a form submitted inside a [`LiveRegion`]: shown above the region.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    ok: bool,
    message: String,
    /// `data-result` of the form, as the notice's `data-testid`.
    testid: Option<String>,
}

/// A server-rendered part of the page (`children`, inside `<div id=id>`) kept live in the
/// browser: on every engine event of `app`, and after every form submitted inside it, the page
/// is fetched again and the region's HTML replaced. Forms post to their server function in the
/// background; the server function's answer fills `data-success` (`{}` is the answer) or its
/// error is shown. Without JavaScript nothing here runs: the forms post and redirect back.
#[island]
pub fn LiveRegion(app: Option<String>, id: String, children: Children) -> impl IntoView {
    let events = use_app_events(app);
    let submitted = RwSignal::new(0u32);
    let outcome = RwSignal::new(None::<Outcome>);
    let latest = StoredValue::new(0u64);
    let region_id = id.clone();
    Effect::new(move |ran: Option<()>| {
        events.track();
        submitted.track();
        if ran.is_none() {
            return;
        }
        // Only the newest refresh is applied, whatever order the answers come in.
        let seq = latest.get_value() + 1;
        latest.set_value(seq);
        let id = region_id.clone();
        leptos::task::spawn_local(async move {
            let html = browser::fetch_region(&id).await;
            if latest.get_value() == seq {
                if let Some(html) = html {
                    browser::replace_region(&id, &html);
                }
            }
        });
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(request) = browser::form_request(&ev) else {
            return;
        };
        ev.prevent_default();
        leptos::task::spawn_local(async move {
            let result = browser::submit(&request).await;
            outcome.set(Some(Outcome {
                ok: result.is_ok(),
                message: match result {
                    Ok(answer) => request.success.replace("{}", &answer),
                    Err(message) => message,
                },
                testid: request.testid.clone(),
            }));
            request.done();
            submitted.update(|n| *n = n.wrapping_add(1));
        });
    };
    let notice = move || {
        outcome.get().map(|o| {
            let (class, role) = if o.ok {
                ("notice notice-success", "status")
            } else {
                ("notice notice-error", "alert")
            };
            view! { <p class=class role=role data-testid=o.testid>{o.message}</p> }
        })
    };
    // Opening a Promote confirmation fetches what it would change (`PromoteConfirm`).
    let on_click = move |ev: leptos::ev::MouseEvent| browser::opening_details(&ev);
    view! {
        <div class="live-region" on:submit=on_submit on:click=on_click>
            {notice}
            <div id=id>{children()}</div>
        </div>
    }
}

/// What the browser does for [`LiveRegion`]: fetching, parsing and form posts with web-sys
/// directly (no JSON or form codecs: they would add to the wasm every page downloads).
#[cfg(feature = "hydrate")]
mod browser {
    use leptos::prelude::*;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    pub struct FormRequest {
        action: String,
        body: String,
        pub success: String,
        pub testid: Option<String>,
        button: Option<web_sys::HtmlButtonElement>,
    }

    impl FormRequest {
        /// Re-enables the button that submitted the form.
        pub fn done(&self) {
            if let Some(b) = &self.button {
                b.set_disabled(false);
            }
        }
    }

    /// The POST a submitted form inside a region makes, if it is one to enhance (it has
    /// `data-success`). Its submit button is disabled until the answer arrives.
    pub fn form_request(ev: &web_sys::SubmitEvent) -> Option<FormRequest> {
        let form: web_sys::HtmlFormElement = ev.target()?.dyn_into().ok()?;
        let success = form.get_attribute("data-success")?;
        let data = web_sys::FormData::new_with_form(&form).ok()?;
        let params = web_sys::UrlSearchParams::new_with_str_sequence_sequence(&data).ok()?;
        let button = ev
            .submitter()
            .and_then(|s| s.dyn_into::<web_sys::HtmlButtonElement>().ok());
        if let Some(b) = &button {
            b.set_disabled(true);
        }
        Some(FormRequest {
            action: form.action(),
            body: params.to_string().as_string().unwrap_or_default(),
            success,
            testid: form.get_attribute("data-result"),
            button,
        })
    }

    async fn fetch(url: &str, init: &web_sys::RequestInit) -> Result<(bool, String), String> {
        let failed = |_| "the server could not be reached".to_string();
        let response: web_sys::Response =
            JsFuture::from(window().fetch_with_str_and_init(url, init))
                .await
                .map_err(failed)?
                .dyn_into()
                .map_err(failed)?;
        let text = JsFuture::from(response.text().map_err(failed)?)
            .await
            .map_err(failed)?
            .as_string()
            .unwrap_or_default();
        Ok((response.ok(), text))
    }

    /// Posts the form to its server function; the answer (a JSON string, or the value as
    /// JSON text) or the error's message.
    pub async fn submit(request: &FormRequest) -> Result<String, String> {
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        let headers = web_sys::Headers::new().map_err(|_| "cannot send the form".to_string())?;
        let _ = headers.set("Content-Type", "application/x-www-form-urlencoded");
        let _ = headers.set("Accept", "application/json");
        init.set_headers(&headers);
        init.set_body(&JsValue::from_str(&request.body));
        let (ok, text) = fetch(&request.action, &init).await?;
        let value = js_sys::JSON::parse(&text).ok();
        if ok {
            return Ok(value.and_then(|v| v.as_string()).unwrap_or(text));
        }
        // The server functions' errors are JSON: `{"Variant": "message"}`.
        let message = value
            .filter(|v| v.is_object())
            .and_then(|v| {
                js_sys::Object::values::<JsValue>(v.unchecked_ref())
                    .get(0)
                    .as_string()
            })
            .unwrap_or_else(|| format!("the request failed: {text}"));
        Err(message)
    }

    /// The region's HTML in a freshly rendered copy of the current page.
    pub async fn fetch_region(id: &str) -> Option<String> {
        fetch_fragment(&window().location().href().ok()?, id).await
    }

    /// When `ev` is a click that opens a `<details>` with a list to fill from another page
    /// (`<ul data-changes-from=URL>`), fills it.
    pub fn opening_details(ev: &web_sys::MouseEvent) {
        let Some(target) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        else {
            return;
        };
        let Some(details) = target
            .closest("details > summary")
            .ok()
            .flatten()
            .and_then(|summary| summary.parent_element())
        else {
            return;
        };
        // The click toggles it after this handler: open now means it is being closed.
        if !details.has_attribute("open") {
            fill_changes(&details);
        }
    }

    /// Replaces the content of the list in `details` that says where its items are
    /// (`data-changes-from`: a page whose `#changes` has them), once.
    fn fill_changes(details: &web_sys::Element) {
        let Ok(Some(list)) = details.query_selector("ul[data-changes-from]") else {
            return;
        };
        let Some(url) = list.get_attribute("data-changes-from") else {
            return;
        };
        let _ = list.remove_attribute("data-changes-from");
        leptos::task::spawn_local(async move {
            match fetch_fragment(&url, "changes").await {
                Some(html) => list.set_inner_html(&html),
                // Keep the link; try again on the next opening.
                None => {
                    let _ = list.set_attribute("data-changes-from", &url);
                }
            }
        });
    }

    /// The inner HTML of the element `id` in the page at `url`.
    async fn fetch_fragment(url: &str, id: &str) -> Option<String> {
        let init = web_sys::RequestInit::new();
        init.set_method("GET");
        let (ok, html) = fetch(url, &init).await.ok()?;
        if !ok {
            return None;
        }
        let parser = web_sys::DomParser::new().ok()?;
        let doc = parser
            .parse_from_string(&html, web_sys::SupportedType::TextHtml)
            .ok()?;
        Some(doc.get_element_by_id(id)?.inner_html())
    }

    /// Swaps the region's content for `html`, keeping open `<details>` open.
    pub fn replace_region(id: &str, html: &str) {
        let Some(region) = document().get_element_by_id(id) else {
            return;
        };
        if region.inner_html() == html {
            return;
        }
        let open: Vec<String> = region
            .query_selector_all("details[open][data-keep]")
            .ok()
            .map(|list| {
                (0..list.length())
                    .filter_map(|i| list.item(i))
                    .filter_map(|n| n.dyn_into::<web_sys::Element>().ok())
                    .filter_map(|e| e.get_attribute("data-keep"))
                    .collect()
            })
            .unwrap_or_default();
        region.set_inner_html(html);
        for key in open {
            if let Ok(Some(e)) = region.query_selector(&format!("details[data-keep=\"{key}\"]")) {
                let _ = e.set_attribute("open", "");
                fill_changes(&e);
            }
        }
    }
}

/// On the server the region is only rendered.
#[cfg(not(feature = "hydrate"))]
mod browser {
    pub struct FormRequest {
        pub success: String,
        pub testid: Option<String>,
    }

    impl FormRequest {
        pub fn done(&self) {}
    }

    pub fn form_request(_: &leptos::ev::SubmitEvent) -> Option<FormRequest> {
        None
    }

    pub async fn submit(_: &FormRequest) -> Result<String, String> {
        Err(String::new())
    }

    pub async fn fetch_region(_: &str) -> Option<String> {
        None
    }

    pub fn opening_details(_: &leptos::ev::MouseEvent) {}

    pub fn replace_region(_: &str, _: &str) {}
}
