//! The browser entry point: cargo-leptos builds this crate to `pkg/slipway.wasm`, and the
//! page's hydration script calls [`hydrate`].

use wasm_bindgen::prelude::wasm_bindgen;

/// Attaches the Console's reactivity to the server-rendered HTML.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
