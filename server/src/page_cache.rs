//! A micro-cache for the Console's app pages. A page is rendered from the engine's state and
//! the caller's name and role only; it is served again from memory while the engine's state
//! is unchanged ([`engine::Engine::change_seq`], read before rendering, so a change during
//! rendering is never hidden) and for at most `ttl` (so that "2 minutes ago" stays right).
//! Under load a busy page is rendered about once per `ttl` instead of once per request.
//!
//! It sits behind the access check ([`crate::auth::guard`]): every request is still signed in
//! and authorized before a cached page is served. Only `GET`s of app pages that answered 200
//! without setting a cookie are kept; the audit log, tokens and users pages never are.

use axum::{
    body::{to_bytes, Body},
    extract::{Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    middleware::Next,
    response::Response,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::AppState;

/// At most this many pages are kept; past it the cache starts over.
const MAX_ENTRIES: usize = 2048;
/// Larger pages are not kept.
const MAX_PAGE_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
struct Entry {
    change_seq: u64,
    at: Instant,
    headers: HeaderMap,
    body: axum::body::Bytes,
}

/// The cache, shared by all requests.
#[derive(Clone, Default)]
pub struct PageCache {
    ttl: Duration,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl PageCache {
    /// A cache keeping pages for at most `ttl` (zero: no caching).
    pub fn new(ttl: Duration) -> PageCache {
        PageCache {
            ttl,
            entries: Arc::default(),
        }
    }
}

/// Whether `path` is an app page: the apps list and an app's tabs and releases.
fn cacheable(path: &str) -> bool {
    path == "/"
        || path
            .strip_prefix("/apps/")
            .is_some_and(|rest| !rest.is_empty())
}

/// The middleware: see the module's documentation.
pub async fn cache(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let cache = &state.page_cache;
    if cache.ttl.is_zero() || req.method() != Method::GET || !cacheable(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(caller) = req
        .extensions()
        .get::<app::context::Caller>()
        .and_then(|c| c.0.clone())
    else {
        return next.run(req).await;
    };
    let key = format!(
        "{} {} {}",
        caller.user,
        caller.role,
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let now_seq = state.engine.change_seq();
    let hit = cache
        .entries
        .lock()
        .ok()
        .and_then(|entries| entries.get(&key).cloned())
        .filter(|e| e.change_seq == now_seq && e.at.elapsed() < cache.ttl);
    if let Some(entry) = hit {
        let mut response = Response::new(Body::from(entry.body));
        *response.headers_mut() = entry.headers;
        return response;
    }

    let response = next.run(req).await;
    if response.status() != StatusCode::OK || response.headers().contains_key(header::SET_COOKIE) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = match to_bytes(body, MAX_PAGE_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "reading a rendered page failed");
            let mut failed = Response::new(Body::empty());
            *failed.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return failed;
        }
    };
    if let Ok(mut entries) = cache.entries.lock() {
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                change_seq: now_seq,
                at: Instant::now(),
                headers: parts.headers.clone(),
                body: body.clone(),
            },
        );
    }
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::cacheable;

    #[test]
    fn only_app_pages() {
        for yes in [
            "/",
            "/apps/hello/releases",
            "/apps/hello/env",
            "/apps/x/releases/R1",
        ] {
            assert!(cacheable(yes), "{yes}");
        }
        for no in [
            "/audit",
            "/tokens",
            "/users",
            "/login",
            "/apps/",
            "/api/v1/apps",
        ] {
            assert!(!cacheable(no), "{no}");
        }
    }
}
