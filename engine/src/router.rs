//! The apps' HTTP router: one listener, routing by `Host: SERVICE.APP.localhost[:PORT]`
//! (or `APP.localhost`, for the app's `web` service) to the healthy processes of the active
//! release, round robin. Every request holds its backend's in-flight count until its response
//! body is done, so a rollout can drain old processes before stopping them.

use bytes::Bytes;
use http::{header, Request, Response, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One process that can take traffic.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    in_flight: AtomicUsize,
}

impl Backend {
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Arc<Self> {
        Arc::new(Backend {
            name: name.into(),
            addr,
            in_flight: AtomicUsize::new(0),
        })
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

struct InFlight(Arc<Backend>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Pool {
    backends: Vec<Arc<Backend>>,
    next: AtomicUsize,
}

/// Routes of every app: app → service → backends.
#[derive(Default)]
pub struct RoutingTable {
    apps: RwLock<HashMap<String, HashMap<String, Pool>>>,
}

impl RoutingTable {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces all of an app's routes at once; returns the backends that no longer get traffic.
    pub fn set_app(
        &self,
        app: &str,
        services: HashMap<String, Vec<Arc<Backend>>>,
    ) -> Vec<Arc<Backend>> {
        let new: HashMap<String, Pool> = services
            .into_iter()
            .map(|(s, backends)| {
                (
                    s,
                    Pool {
                        backends,
                        next: AtomicUsize::new(0),
                    },
                )
            })
            .collect();
        let old = match self.apps.write() {
            Ok(mut apps) => apps.insert(app.to_owned(), new),
            Err(poisoned) => poisoned.into_inner().insert(app.to_owned(), new),
        };
        old.into_iter()
            .flat_map(|services| services.into_values().flat_map(|p| p.backends))
            .collect()
    }

    /// Swaps one backend of a service for another (a crashed process restarted).
    pub fn replace_backend(&self, app: &str, service: &str, old_name: &str, new: Arc<Backend>) {
        let mut apps = match self.apps.write() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        if let Some(pool) = apps.get_mut(app).and_then(|s| s.get_mut(service)) {
            pool.backends.retain(|b| b.name != old_name);
            pool.backends.push(new);
        }
    }

    /// Removes one backend (it stopped) from a service.
    pub fn remove_backend(&self, app: &str, service: &str, name: &str) {
        let mut apps = match self.apps.write() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        if let Some(pool) = apps.get_mut(app).and_then(|s| s.get_mut(service)) {
            pool.backends.retain(|b| b.name != name);
        }
    }

    pub fn backends(&self, app: &str, service: &str) -> Vec<Arc<Backend>> {
        let apps = match self.apps.read() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        apps.get(app)
            .and_then(|s| s.get(service))
            .map(|p| p.backends.clone())
            .unwrap_or_default()
    }

    /// Picks a backend round robin, skipping `skip`, and counts the request in flight — under
    /// the read lock, so a switch (write lock) never misses a request that picked an old one.
    fn pick(&self, app: &str, service: &str, skip: &[SocketAddr]) -> Pick {
        let apps = match self.apps.read() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        let Some(services) = apps.get(app) else {
            return Pick::NoApp;
        };
        let Some(pool) = services.get(service) else {
            return Pick::NoService;
        };
        let n = pool.backends.len();
        for _ in 0..n {
            let i = pool.next.fetch_add(1, Ordering::Relaxed) % n;
            let b = &pool.backends[i];
            if !skip.contains(&b.addr) {
                b.in_flight.fetch_add(1, Ordering::SeqCst);
                return Pick::Backend(InFlight(b.clone()));
            }
        }
        Pick::NoBackend
    }
}

enum Pick {
    NoApp,
    NoService,
    NoBackend,
    Backend(InFlight),
}

/// Waits (bounded) until no request is in flight on any of `backends`.
pub async fn drain(backends: &[Arc<Backend>], timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if backends.iter().all(|b| b.in_flight() == 0) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `SERVICE.APP.localhost[:port]` → (app, service); `APP.localhost` → (app, "web").
pub fn parse_host(host: &str) -> Option<(String, String)> {
    let host = host
        .rsplit_once(':')
        .map(|(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
        .unwrap_or(host);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let rest = host.strip_suffix(".localhost")?;
    let mut parts = rest.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(app), None, None) if !app.is_empty() => Some((app.into(), "web".into())),
        (Some(service), Some(app), None) if !app.is_empty() && !service.is_empty() => {
            Some((app.into(), service.into()))
        }
        _ => None,
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, message: String) -> Response<ProxyBody> {
    let mut res = Response::new(
        Full::new(Bytes::from(message + "\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// The response body, holding the backend's in-flight count until it is done.
struct Guarded {
    inner: Incoming,
    _guard: InFlight,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Clone)]
struct Proxy {
    table: Arc<RoutingTable>,
    client: Client<HttpConnector, ProxyBody>,
}

impl Proxy {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri().host().map(str::to_owned))
            .unwrap_or_default();
        let Some((app, service)) = parse_host(&host) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("no app at {host:?}: use SERVICE.APP.localhost or APP.localhost"),
            );
        };
        // Requests without a body can be retried on another process if a connection fails.
        let bodyless = (req.method() == http::Method::GET || req.method() == http::Method::HEAD)
            && !req.headers().contains_key(header::CONTENT_LENGTH)
            && !req.headers().contains_key(header::TRANSFER_ENCODING);
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        parts.headers.insert(
            "x-forwarded-for",
            header::HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or(header::HeaderValue::from_static("unknown")),
        );
        if let Ok(v) = header::HeaderValue::from_str(&host) {
            parts.headers.insert("x-forwarded-host", v);
        }
        let mut body = Some(body.boxed());
        let mut tried = Vec::new();
        loop {
            let guard = match self.table.pick(&app, &service, &tried) {
                Pick::NoApp => {
                    return text(
                        StatusCode::NOT_FOUND,
                        format!("app {app} has no running release"),
                    )
                }
                Pick::NoService => {
                    return text(
                        StatusCode::NOT_FOUND,
                        format!("app {app} has no service {service}"),
                    )
                }
                Pick::NoBackend => {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("no healthy process of {service}.{app} could take the request"),
                    )
                }
                Pick::Backend(g) => g,
            };
            let addr = guard.0.addr;
            tried.push(addr);
            let uri: Uri = match format!("http://{addr}{path}").parse() {
                Ok(u) => u,
                Err(_) => return text(StatusCode::BAD_REQUEST, "bad request path".into()),
            };
            let mut out = Request::from_parts(parts.clone(), ());
            *out.uri_mut() = uri;
            let out_body = if bodyless {
                Empty::new().map_err(|never| match never {}).boxed()
            } else {
                match body.take() {
                    Some(b) => b,
                    None => {
                        return text(
                            StatusCode::BAD_GATEWAY,
                            "the request could not be retried".into(),
                        )
                    }
                }
            };
            let (p, ()) = out.into_parts();
            match self.client.request(Request::from_parts(p, out_body)).await {
                Ok(res) => {
                    let (parts, inner) = res.into_parts();
                    return Response::from_parts(
                        parts,
                        Guarded {
                            inner,
                            _guard: guard,
                        }
                        .boxed(),
                    );
                }
                Err(e) if bodyless && e.is_connect() => {
                    drop(guard);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(app, service, backend = %addr, error = %e, "proxying failed");
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("{service}.{app} did not answer"),
                    );
                }
            }
        }
    }
}

/// Serves the router on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, table: Arc<RoutingTable>, shutdown: CancellationToken) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let proxy = Proxy { table, client };
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "router accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("web.hello.localhost:8080"),
            Some(("hello".into(), "web".into()))
        );
        assert_eq!(
            parse_host("hello.localhost"),
            Some(("hello".into(), "web".into()))
        );
        assert_eq!(
            parse_host("API.Hello.LOCALHOST."),
            Some(("hello".into(), "api".into()))
        );
        assert_eq!(parse_host("localhost:8080"), None);
        assert_eq!(parse_host("a.b.c.localhost"), None);
        assert_eq!(parse_host("example.com"), None);
    }

    #[test]
    fn round_robin_and_in_flight() {
        let t = RoutingTable::new();
        let a = Backend::new("web.1", "127.0.0.1:1".parse().unwrap());
        let b = Backend::new("web.2", "127.0.0.1:2".parse().unwrap());
        t.set_app(
            "x",
            HashMap::from([("web".to_string(), vec![a.clone(), b.clone()])]),
        );
        let p1 = t.pick("x", "web", &[]);
        let p2 = t.pick("x", "web", &[]);
        assert_eq!((a.in_flight(), b.in_flight()), (1, 1));
        drop(p1);
        drop(p2);
        assert_eq!((a.in_flight(), b.in_flight()), (0, 0));
        assert!(matches!(
            t.pick("x", "web", &[a.addr, b.addr]),
            Pick::NoBackend
        ));
        assert!(matches!(t.pick("y", "web", &[]), Pick::NoApp));
        assert!(matches!(t.pick("x", "worker", &[]), Pick::NoService));
        let old = t.set_app("x", HashMap::new());
        assert_eq!(old.len(), 2);
    }
}
