//! The apps' HTTP router: one listener, routing by `Host: SERVICE.APP.localhost[:PORT]`
//! (or `APP.localhost`, for the app's `web` service) to the healthy processes of the active
//! release, round robin. Every request holds its backend's in-flight count until its response
//! body is done, so a rollout can drain old processes before stopping them.
//!
//! It is the edge, and behaves as a reverse proxy (RFC 9110 §7.6):
//! - it routes by the `Host` header only — a request in absolute-form
//!   (`GET http://other.app.localhost/ HTTP/1.1`) is routed by its `Host`, not by the URI's
//!   authority, and the app always gets the origin-form path and query; a request with no
//!   `Host` or more than one is refused (400), and so is `CONNECT` (405: not a forward proxy);
//! - hop-by-hop headers ([`HOP_BY_HOP`] and every header a `Connection` value names) are
//!   dropped in both directions; protocol upgrades (WebSocket) are not forwarded;
//! - `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto` and `X-Real-IP`
//!   are set from what the router knows (the peer's address, the `Host` asked for, `http`),
//!   replacing whatever the client sent;
//! - slow clients and hung apps are bounded by the timeouts of [`RouterConfig`].

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{header, Request, Response, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The router's timeouts. Each must be more than zero (zero is not "no limit": a zero
/// header-read timeout would close every connection at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// How long a client has to send a complete request head (request line and headers),
    /// counted from the connection's first read, and again from the end of each response on
    /// a kept-alive connection — so it also bounds how long an idle keep-alive connection
    /// stays open. The connection is closed when it runs out. Default 10 s.
    pub header_read_timeout: Duration,
    /// How long connecting to an app's process may take before another process is tried
    /// (requests without a body) or the client gets 502. Default 5 s.
    pub connect_timeout: Duration,
    /// How long an app has to send its response head, counted from when the router starts
    /// forwarding the request (connecting and sending a request body included). The client
    /// gets 504 when it runs out. A response body, once started, is not bounded (streams and
    /// long downloads keep working). Default 60 s.
    pub backend_timeout: Duration,
    /// How long an unused connection to an app's process is kept for reuse. Default 30 s.
    pub pool_idle_timeout: Duration,
}

impl RouterConfig {
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            backend_timeout: Self::DEFAULT_BACKEND_TIMEOUT,
            pool_idle_timeout: Self::DEFAULT_POOL_IDLE_TIMEOUT,
        }
    }
}

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

impl Pool {
    fn new(backends: Vec<Arc<Backend>>) -> Pool {
        Pool {
            backends,
            next: AtomicUsize::new(0),
        }
    }
}

/// The routes of one set of processes (one start of one release) and its share of traffic.
struct SetRoutes {
    set: String,
    weight: u32,
    services: HashMap<String, Pool>,
}

/// An app's routes: the sets that get traffic (one, or two during a canary), or none yet
/// while its active release is being brought back up after a start.
#[derive(Default)]
struct AppRoutes {
    sets: Vec<SetRoutes>,
    next: AtomicUsize,
}

impl AppRoutes {
    fn backends(&self) -> Vec<Arc<Backend>> {
        self.sets
            .iter()
            .flat_map(|s| s.services.values().flat_map(|p| p.backends.iter().cloned()))
            .collect()
    }

    fn set_mut(&mut self, set: &str) -> Option<&mut SetRoutes> {
        self.sets.iter_mut().find(|s| s.set == set)
    }
}

/// One set's routes as [`RoutingTable::view`] shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetView {
    pub set: String,
    pub weight: u32,
    pub backends: Vec<(String, String, SocketAddr)>,
}

/// Routes of every app: app → sets → service → backends. Backends are kept per set, so
/// processes of different releases that share a name (`web.1`) never touch each other.
#[derive(Default)]
pub struct RoutingTable {
    apps: RwLock<HashMap<String, AppRoutes>>,
}

impl RoutingTable {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, AppRoutes>> {
        match self.apps.write() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, AppRoutes>> {
        match self.apps.read() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        }
    }

    /// Sends all of `app`'s traffic to one set with these backends (by service); returns
    /// the backends that no longer get traffic.
    pub fn route_to(
        &self,
        app: &str,
        set: &str,
        services: HashMap<String, Vec<Arc<Backend>>>,
    ) -> Vec<Arc<Backend>> {
        let routes = AppRoutes {
            sets: vec![SetRoutes {
                set: set.to_owned(),
                weight: 1,
                services: services
                    .into_iter()
                    .map(|(s, b)| (s, Pool::new(b)))
                    .collect(),
            }],
            next: AtomicUsize::new(0),
        };
        let old = self.write().insert(app.to_owned(), routes);
        old.map(|o| o.backends()).unwrap_or_default()
    }

    /// Replaces all of an app's routes at once with one set; returns the backends that no
    /// longer get traffic.
    pub fn set_app(
        &self,
        app: &str,
        services: HashMap<String, Vec<Arc<Backend>>>,
    ) -> Vec<Arc<Backend>> {
        self.route_to(app, "", services)
    }

    /// Marks `app` as known but not serving yet (its release is being brought back up):
    /// requests get 503 rather than 404. Keeps routes it already has.
    pub fn starting(&self, app: &str) {
        self.write().entry(app.to_owned()).or_default();
    }

    /// Forgets `app`'s routes; returns the backends that no longer get traffic.
    pub fn remove_app(&self, app: &str) -> Vec<Arc<Backend>> {
        self.write()
            .remove(app)
            .map(|o| o.backends())
            .unwrap_or_default()
    }

    /// Adds a set with its backends next to the app's other sets, with `weight` (for a
    /// canary). An existing set of that name is replaced.
    pub fn add_set(
        &self,
        app: &str,
        set: &str,
        weight: u32,
        services: HashMap<String, Vec<Arc<Backend>>>,
    ) {
        let mut apps = self.write();
        let routes = apps.entry(app.to_owned()).or_default();
        routes.sets.retain(|s| s.set != set);
        routes.sets.push(SetRoutes {
            set: set.to_owned(),
            weight,
            services: services
                .into_iter()
                .map(|(s, b)| (s, Pool::new(b)))
                .collect(),
        });
    }

    /// Sets the share of traffic of each of the app's sets (sets not named keep theirs).
    pub fn set_weights(&self, app: &str, weights: &[(&str, u32)]) {
        let mut apps = self.write();
        if let Some(routes) = apps.get_mut(app) {
            for (set, weight) in weights {
                if let Some(s) = routes.set_mut(set) {
                    s.weight = *weight;
                }
            }
        }
    }

    /// Puts a backend of `set` in its service's pool (replacing one of the same name);
    /// ignored if the set gets no traffic.
    pub fn add_backend(&self, app: &str, set: &str, service: &str, backend: Arc<Backend>) {
        let mut apps = self.write();
        if let Some(s) = apps.get_mut(app).and_then(|r| r.set_mut(set)) {
            let pool = s.services.entry(service.to_owned()).or_default();
            pool.backends.retain(|b| b.name != backend.name);
            pool.backends.push(backend);
        }
    }

    /// Takes a backend of `set` out of its service's pool; ignored if the set gets no traffic.
    pub fn remove_backend(&self, app: &str, set: &str, service: &str, name: &str) {
        let mut apps = self.write();
        if let Some(pool) = apps
            .get_mut(app)
            .and_then(|r| r.set_mut(set))
            .and_then(|s| s.services.get_mut(service))
        {
            pool.backends.retain(|b| b.name != name);
        }
    }

    /// Every backend of a service, across the app's sets.
    pub fn backends(&self, app: &str, service: &str) -> Vec<Arc<Backend>> {
        self.read()
            .get(app)
            .map(|r| {
                r.sets
                    .iter()
                    .filter_map(|s| s.services.get(service))
                    .flat_map(|p| p.backends.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Where `app`'s traffic goes now: each set with its weight and its backends
    /// (`(service, instance, address)`, sorted); `None` when the router does not know the app.
    pub fn view(&self, app: &str) -> Option<Vec<SetView>> {
        self.read().get(app).map(|r| {
            r.sets
                .iter()
                .map(|s| {
                    let mut backends: Vec<(String, String, SocketAddr)> = s
                        .services
                        .iter()
                        .flat_map(|(service, p)| {
                            p.backends
                                .iter()
                                .map(move |b| (service.clone(), b.name.clone(), b.addr))
                        })
                        .collect();
                    backends.sort();
                    SetView {
                        set: s.set.clone(),
                        weight: s.weight,
                        backends,
                    }
                })
                .collect()
        })
    }

    /// Picks a set by weight among those with a usable backend of `service`, then a backend
    /// of it round robin, skipping `skip`, and counts the request in flight — under the read
    /// lock, so a switch (write lock) never misses a request that picked an old one.
    fn pick(&self, app: &str, service: &str, skip: &[SocketAddr]) -> Pick {
        let apps = self.read();
        let Some(routes) = apps.get(app) else {
            return Pick::NoApp;
        };
        if routes.sets.is_empty() {
            return Pick::Starting;
        }
        // The sets that have the service, with a backend not yet tried, and a share. Walked
        // twice rather than collected: this runs for every request.
        let live = || {
            routes
                .sets
                .iter()
                .filter(|s| s.weight > 0)
                .filter_map(|s| s.services.get(service).map(|p| (s.weight, p)))
        };
        if live().next().is_none() {
            return Pick::NoService;
        }
        let usable = |p: &&Pool| p.backends.iter().any(|b| !skip.contains(&b.addr));
        let total: u64 = live()
            .filter(|(_, p)| usable(p))
            .map(|(w, _)| u64::from(w))
            .sum();
        if total == 0 {
            return Pick::NoBackend;
        }
        let mut ticket = routes.next.fetch_add(1, Ordering::Relaxed) as u64 % total;
        let Some(chosen) = live().filter(|(_, p)| usable(p)).find_map(|(w, p)| {
            if ticket < u64::from(w) {
                Some(p)
            } else {
                ticket -= u64::from(w);
                None
            }
        }) else {
            return Pick::NoBackend;
        };
        let n = chosen.backends.len();
        for _ in 0..n {
            let i = chosen.next.fetch_add(1, Ordering::Relaxed) % n;
            let b = &chosen.backends[i];
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
    Starting,
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

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1): never forwarded,
/// in either direction, and neither is any header a `Connection` value names.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Forwarding headers a client may not set: the router sets them itself.
const FORWARDING: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Removes the hop-by-hop headers: [`HOP_BY_HOP`] and every header named in a `Connection`
/// value. Returns whether the message was sent with a `Transfer-Encoding` (its body is
/// re-framed on the next hop).
fn strip_hop_by_hop(headers: &mut HeaderMap) -> bool {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    chunked
}

/// The first transfer coding other than `chunked` (the only one the router understands and
/// re-frames; forwarding a body without its other codings would change it).
fn unsupported_coding(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let value = String::from_utf8_lossy(value.as_bytes());
        for coding in value.split(',').map(str::trim) {
            if !coding.is_empty() && !coding.eq_ignore_ascii_case("chunked") {
                return Some(coding.to_owned());
            }
        }
    }
    None
}

/// A `Forwarded` parameter value: a token as is, anything else as a quoted-string
/// (RFC 7239 §4; an IPv6 address is `"[2001:db8::1]"`).
fn forwarded_value(value: &str) -> String {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !value.is_empty() && value.chars().all(tchar) {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Replaces the client's forwarding headers with the router's own: the peer's address, the
/// `Host` the client asked for, and `http`.
fn set_forwarding(headers: &mut HeaderMap, peer: IpAddr, host: &HeaderValue) {
    for name in FORWARDING {
        headers.remove(name);
    }
    let peer = peer.to_canonical();
    let ip = peer.to_string();
    let node = match peer {
        IpAddr::V4(_) => ip.clone(),
        IpAddr::V6(_) => format!("[{ip}]"),
    };
    // The host was read from a header value, so it is visible ASCII and every value below is
    // a valid header value; a failure would only drop that one header.
    let host_str = host.to_str().unwrap_or_default();
    let forwarded = format!(
        "for={};host={};proto=http",
        forwarded_value(&node),
        forwarded_value(host_str)
    );
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("x-forwarded-for", &ip);
    set("x-real-ip", &ip);
    set("x-forwarded-proto", "http");
    set("forwarded", &forwarded);
    headers.insert("x-forwarded-host", host.clone());
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
    config: RouterConfig,
}

impl Proxy {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        if req.method() == http::Method::CONNECT {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT is not supported: this router only serves apps".into(),
            );
        }
        // Routed by the Host header only, never by an absolute-form URI's authority (so what
        // the app sees as its Host is what chose it). RFC 9112 §3.2: exactly one Host.
        let host = {
            let mut hosts = req.headers().get_all(header::HOST).iter();
            match (hosts.next(), hosts.next()) {
                (Some(h), None) => h.clone(),
                (None, _) => {
                    return text(StatusCode::BAD_REQUEST, "the request has no Host".into())
                }
                (Some(_), Some(_)) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "the request has more than one Host".into(),
                    )
                }
            }
        };
        if let Some(coding) = unsupported_coding(req.headers()) {
            return text(
                StatusCode::NOT_IMPLEMENTED,
                format!("transfer coding {coding:?} is not supported"),
            );
        }
        let host_str = host.to_str().unwrap_or_default().to_owned();
        let Some((app, service)) = parse_host(&host_str) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("no app at {host_str:?}: use SERVICE.APP.localhost or APP.localhost"),
            );
        };
        // Requests without a body can be retried on another process if a connection fails.
        let bodyless = (req.method() == http::Method::GET || req.method() == http::Method::HEAD)
            && !req.headers().contains_key(header::CONTENT_LENGTH)
            && !req.headers().contains_key(header::TRANSFER_ENCODING);
        let (mut parts, body) = req.into_parts();
        // Origin-form: the path and query only, whatever form the request-target had.
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let chunked = strip_hop_by_hop(&mut parts.headers);
        if chunked {
            // This hop's framing: the body (decoded by hyper) goes on chunked, whatever the
            // method (hyper's client would otherwise send a GET's body as empty).
            parts.headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        parts.headers.insert(header::HOST, host.clone());
        set_forwarding(&mut parts.headers, peer.ip(), &host);
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
                Pick::Starting => {
                    let mut res = text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("app {app} is starting: its release is being brought back up"),
                    );
                    res.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                    return res;
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
            let sent = tokio::time::timeout(
                self.config.backend_timeout,
                self.client.request(Request::from_parts(p, out_body)),
            )
            .await;
            match sent {
                Ok(Ok(res)) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    tracing::warn!(app, service, backend = %addr, "app tried to switch protocols");
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "{service}.{app} switched protocols, which the router does not forward"
                        ),
                    );
                }
                Ok(Ok(res)) if unsupported_coding(res.headers()).is_some() => {
                    tracing::warn!(app, service, backend = %addr, "app used a transfer coding other than chunked");
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "{service}.{app} sent a transfer coding the router does not support"
                        ),
                    );
                }
                Ok(Ok(res)) => {
                    let (mut parts, inner) = res.into_parts();
                    if strip_hop_by_hop(&mut parts.headers) {
                        // Re-framed on the client's hop; a length beside it would be stale.
                        parts.headers.remove(header::CONTENT_LENGTH);
                    }
                    return Response::from_parts(
                        parts,
                        Guarded {
                            inner,
                            _guard: guard,
                        }
                        .boxed(),
                    );
                }
                Ok(Err(e)) if bodyless && e.is_connect() => {
                    drop(guard);
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::warn!(app, service, backend = %addr, error = %e, "proxying failed");
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("{service}.{app} did not answer"),
                    );
                }
                Err(_elapsed) => {
                    let limit = self.config.backend_timeout;
                    tracing::warn!(app, service, backend = %addr, ?limit, "app response timed out");
                    return text(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("{service}.{app} did not send a response within {limit:?}"),
                    );
                }
            }
        }
    }
}

/// Serves the router on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    table: Arc<RoutingTable>,
    config: RouterConfig,
    shutdown: CancellationToken,
) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_timer(TokioTimer::new())
        .build(connector);
    let proxy = Proxy {
        table,
        client,
        config,
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
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
        let http = http.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, peer).await) }
            });
            // No `with_upgrades`: `Upgrade` is hop-by-hop and upgrades are not forwarded.
            let conn = http.serve_connection(TokioIo::new(stream), service);
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
    fn forwarded_values_are_quoted_when_not_tokens() {
        assert_eq!(forwarded_value("127.0.0.1"), "127.0.0.1");
        assert_eq!(forwarded_value("hello.localhost"), "hello.localhost");
        assert_eq!(forwarded_value("[2001:db8::1]"), "\"[2001:db8::1]\"");
        assert_eq!(
            forwarded_value("web.hello.localhost:8080"),
            "\"web.hello.localhost:8080\""
        );
        assert_eq!(forwarded_value("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(forwarded_value(""), "\"\"");
    }

    fn all<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn forwarding_headers_for_ipv6_peers() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        headers.append("x-forwarded-for", HeaderValue::from_static("7.7.7.7"));
        headers.append("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        let host = HeaderValue::from_static("hello.localhost");
        set_forwarding(&mut headers, "2001:db8::1".parse().unwrap(), &host);
        assert_eq!(all(&headers, "x-forwarded-for"), ["2001:db8::1"]);
        assert_eq!(all(&headers, "x-real-ip"), ["2001:db8::1"]);
        assert_eq!(
            all(&headers, "forwarded"),
            ["for=\"[2001:db8::1]\";host=hello.localhost;proto=http"]
        );
        // An IPv4 peer on a dual-stack listener is reported as IPv4.
        set_forwarding(&mut headers, "::ffff:192.0.2.7".parse().unwrap(), &host);
        assert_eq!(all(&headers, "x-forwarded-for"), ["192.0.2.7"]);
        assert_eq!(
            all(&headers, "forwarded"),
            ["for=192.0.2.7;host=hello.localhost;proto=http"]
        );
    }

    #[test]
    fn hop_by_hop_headers_are_stripped() {
        let mut headers = HeaderMap::new();
        for (n, v) in [
            ("connection", "close, X-Hop"),
            ("connection", "x-other"),
            ("x-hop", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
        ] {
            headers.append(n, HeaderValue::from_static(v));
        }
        assert!(strip_hop_by_hop(&mut headers));
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
        assert!(!strip_hop_by_hop(&mut headers));
    }

    #[test]
    fn only_chunked_is_understood() {
        let mut headers = HeaderMap::new();
        assert_eq!(unsupported_coding(&headers), None);
        headers.append("transfer-encoding", HeaderValue::from_static("Chunked"));
        assert_eq!(unsupported_coding(&headers), None);
        headers.append(
            "transfer-encoding",
            HeaderValue::from_static("gzip, chunked"),
        );
        assert_eq!(unsupported_coding(&headers), Some("gzip".into()));
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
        t.remove_app("x");
        t.starting("x");
        assert!(matches!(t.pick("x", "web", &[]), Pick::Starting));
    }

    #[test]
    fn traffic_is_split_by_weight_and_sets_never_touch_each_other() {
        let t = RoutingTable::new();
        let old = Backend::new("web.1", "127.0.0.1:1".parse().unwrap());
        let new = Backend::new("web.1", "127.0.0.1:2".parse().unwrap());
        t.route_to(
            "x",
            "R1-a",
            HashMap::from([("web".to_string(), vec![old.clone()])]),
        );
        t.add_set(
            "x",
            "R2-b",
            1,
            HashMap::from([("web".to_string(), vec![new.clone()])]),
        );
        t.set_weights("x", &[("R1-a", 3)]);
        let mut to_new = 0;
        for _ in 0..100 {
            if let Pick::Backend(g) = t.pick("x", "web", &[]) {
                if g.0.addr == new.addr {
                    to_new += 1;
                }
            }
        }
        assert_eq!(to_new, 25);
        // The old set's web.1 going away leaves the new set's web.1 alone.
        t.remove_backend("x", "R1-a", "web", "web.1");
        assert_eq!(t.backends("x", "web").len(), 1);
        assert_eq!(t.backends("x", "web")[0].addr, new.addr);
        // A set that gets no traffic cannot add itself back.
        t.route_to(
            "x",
            "R2-b",
            HashMap::from([("web".to_string(), vec![new.clone()])]),
        );
        t.add_backend("x", "R1-a", "web", old.clone());
        assert_eq!(t.backends("x", "web").len(), 1);
        let sets: Vec<(String, u32)> = t
            .view("x")
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.set, s.weight))
            .collect();
        assert_eq!(sets, vec![("R2-b".to_string(), 1)]);
    }
}
