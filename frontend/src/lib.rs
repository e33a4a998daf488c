//! The browser entry point: cargo-leptos builds this crate to `pkg/slipway.wasm`, and the
//! page's islands script calls [`hydrate`] and then each island's own export.

use wasm_bindgen::prelude::wasm_bindgen;

// The islands are `#[wasm_bindgen]` exports of the `app` crate: link it in.
#[allow(unused_imports)]
use app::*;

/// Sets up the reactive runtime for the page's islands (interactive parts); the rest of the
/// page stays the server's HTML.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
