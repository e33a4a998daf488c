//! The apps' router as a reverse proxy, attacked over raw TCP (security finding 8):
//! hop-by-hop headers in both directions, forwarding headers the client cannot forge,
//! routing by `Host` only, and the timeouts that bound slow clients and hung apps.

use bytes::Bytes;
use engine::router::{self, Backend, RouterConfig, RoutingTable};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Every wait in these tests is bounded by this (far above the timeouts under test).
const WAIT: Duration = Duration::from_secs(10);

/// Headers the test app adds to its response when asked (`x-test-hop-response: 1`): all
/// hop-by-hop, so none may reach the client.
const APP_HOP_HEADERS: [(&str, &str); 8] = [
    ("connection", "X-App-Hop"),
    ("x-app-hop", "leaked"),
    ("keep-alive", "timeout=99"),
    ("proxy-authenticate", "Basic realm=\"app\""),
    ("proxy-connection", "keep-alive"),
    ("trailer", "X-Checksum"),
    ("upgrade", "h2c"),
    ("te", "trailers"),
];

/// A test app: answers every request with what it received, as JSON
/// (`{"backend", "method", "uri", "headers": [[name, value]...], "body"}`).
async fn echo_app(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<Incoming>| async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let headers: Vec<(String, String)> = parts
                            .headers
                            .iter()
                            .map(|(n, v)| {
                                (
                                    n.as_str().to_owned(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect();
                        let hop = parts.headers.contains_key("x-test-hop-response");
                        let doc = json!({
                            "backend": name,
                            "method": parts.method.as_str(),
                            "uri": parts.uri.to_string(),
                            "headers": headers,
                            "body": String::from_utf8_lossy(&body),
                        });
                        let mut res = Response::new(Full::new(Bytes::from(doc.to_string())));
                        res.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        res.headers_mut()
                            .insert("x-app-end-to-end", "kept".parse().unwrap());
                        if hop {
                            for (n, v) in APP_HOP_HEADERS {
                                res.headers_mut().append(n, v.parse().unwrap());
                            }
                        }
                        Ok::<_, hyper::Error>(res)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A hung app: accepts connections and reads what it is sent, and never answers.
async fn hung_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    addr
}

struct TestRouter {
    addr: SocketAddr,
    _stop: tokio_util::sync::DropGuard,
}

/// A router on port 0 with `good` (its `web` service and `api`), `other` and `slow` (hung).
async fn start_router(config: RouterConfig) -> TestRouter {
    let table = RoutingTable::new();
    let good = echo_app("good").await;
    let other = echo_app("other").await;
    let slow = hung_app().await;
    table.set_app(
        "good",
        HashMap::from([
            ("web".to_string(), vec![Backend::new("web.1", good)]),
            ("api".to_string(), vec![Backend::new("api.1", good)]),
        ]),
    );
    table.set_app(
        "other",
        HashMap::from([("web".to_string(), vec![Backend::new("web.1", other)])]),
    );
    table.set_app(
        "slow",
        HashMap::from([("web".to_string(), vec![Backend::new("web.1", slow)])]),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(router::serve(listener, table, config, stop.clone()));
    TestRouter {
        addr,
        _stop: stop.drop_guard(),
    }
}

#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the app received: header name (lowercase) → values.
fn app_headers(doc: &Value) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for pair in doc["headers"].as_array().unwrap() {
        out.entry(pair[0].as_str().unwrap().to_owned())
            .or_default()
            .push(pair[1].as_str().unwrap().to_owned());
    }
    out
}

fn parse_response(bytes: &[u8]) -> Raw {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let rest = &bytes[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Raw {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_line = String::from_utf8_lossy(&rest[..line_end]).into_owned();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Sends exact bytes (the request should say `Connection: close`) and reads until the router
/// closes the connection.
async fn exchange(addr: SocketAddr, request: &str) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut bytes))
        .await
        .expect("the router answered and closed the connection in time")
        .unwrap();
    parse_response(&bytes)
}

fn hop_by_hop_names() -> Vec<&'static str> {
    router::HOP_BY_HOP.to_vec()
}

#[tokio::test]
async fn hop_by_hop_request_headers_never_reach_the_app() {
    let r = start_router(RouterConfig::default()).await;
    let host = format!("good.localhost:{}", r.addr.port());
    let res = exchange(
        r.addr,
        &format!(
            "GET /hop HTTP/1.1\r\n\
             Host: {host}\r\n\
             Connection: close, X-Client-Hop\r\n\
             Connection: X-Other-Hop\r\n\
             X-Client-Hop: secret\r\n\
             X-Other-Hop: secret\r\n\
             Keep-Alive: timeout=5\r\n\
             Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
             Proxy-Connection: keep-alive\r\n\
             Proxy-Authenticate: Basic\r\n\
             TE: trailers\r\n\
             Trailer: X-Sum\r\n\
             Upgrade: websocket\r\n\
             X-End-To-End: kept\r\n\
             \r\n"
        ),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let doc = res.json();
    let seen = app_headers(&doc);
    for name in hop_by_hop_names()
        .into_iter()
        .chain(["x-client-hop", "x-other-hop"])
    {
        assert!(
            !seen.contains_key(name),
            "{name} reached the app: {:?}",
            seen.get(name)
        );
    }
    assert_eq!(seen["x-end-to-end"], ["kept"]);
    assert_eq!(seen["host"], [host.as_str()]);
}

#[tokio::test]
async fn hop_by_hop_response_headers_never_reach_the_client() {
    let r = start_router(RouterConfig::default()).await;
    let res = exchange(
        r.addr,
        "GET / HTTP/1.1\r\nHost: good.localhost\r\nX-Test-Hop-Response: 1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    for (name, _) in APP_HOP_HEADERS {
        let values = res.header(name);
        if name == "connection" {
            // The router's own `Connection: close` (the client asked for it) is fine.
            assert!(
                values.iter().all(|v| v.eq_ignore_ascii_case("close")),
                "the app's Connection reached the client: {values:?}"
            );
        } else {
            assert!(values.is_empty(), "{name} reached the client: {values:?}");
        }
    }
    assert_eq!(res.header("x-app-end-to-end"), ["kept"]);
    assert_eq!(res.json()["backend"], "good");
}

#[tokio::test]
async fn forwarding_headers_are_the_routers_own() {
    let r = start_router(RouterConfig::default()).await;
    let host = format!("api.good.localhost:{}", r.addr.port());
    let res = exchange(
        r.addr,
        &format!(
            "GET /who HTTP/1.1\r\n\
             Host: {host}\r\n\
             Forwarded: for=6.6.6.6;host=evil.example;proto=https\r\n\
             X-Forwarded-For: 6.6.6.6\r\n\
             X-Forwarded-For: 7.7.7.7, 8.8.8.8\r\n\
             X-Real-IP: 6.6.6.6\r\n\
             X-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: evil.example\r\n\
             Connection: close, X-Real-IP, Host\r\n\
             \r\n"
        ),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = app_headers(&res.json());
    assert_eq!(seen["x-forwarded-for"], ["127.0.0.1"]);
    assert_eq!(seen["x-real-ip"], ["127.0.0.1"]);
    assert_eq!(seen["x-forwarded-proto"], ["http"]);
    assert_eq!(seen["x-forwarded-host"], [host.as_str()]);
    assert_eq!(
        seen["forwarded"],
        [format!("for=127.0.0.1;host=\"{host}\";proto=http")]
    );
    // A Connection option cannot take away the Host the request was routed by.
    assert_eq!(seen["host"], [host.as_str()]);
}

#[tokio::test]
async fn routes_by_host_only() {
    let r = start_router(RouterConfig::default()).await;
    // Absolute-form naming another app: routed by Host, and the app gets origin-form.
    let res = exchange(
        r.addr,
        "GET http://other.localhost/secret?x=1 HTTP/1.1\r\nHost: good.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let doc = res.json();
    assert_eq!(doc["backend"], "good");
    assert_eq!(doc["uri"], "/secret?x=1");
    assert_eq!(app_headers(&doc)["host"], ["good.localhost"]);

    // Absolute-form without Host: refused, never routed by the URI.
    let res = exchange(
        r.addr,
        "GET http://other.localhost/ HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.text().contains("no Host"), "{}", res.text());

    // Two Hosts: refused (RFC 9112 §3.2), not routed by the first one.
    let res = exchange(
        r.addr,
        "GET / HTTP/1.1\r\nHost: good.localhost\r\nHost: other.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());

    // Not a forward proxy.
    let res = exchange(
        r.addr,
        "CONNECT other.localhost:80 HTTP/1.1\r\nHost: other.localhost:80\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 405, "{}", res.text());
}

#[tokio::test]
async fn request_bodies_are_reframed_and_unknown_codings_refused() {
    let r = start_router(RouterConfig::default()).await;
    for method in ["POST", "GET"] {
        let res = exchange(
            r.addr,
            &format!(
                "{method} /upload HTTP/1.1\r\nHost: good.localhost\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(res.status, 200, "{method}: {}", res.text());
        let doc = res.json();
        assert_eq!(doc["body"], "hello world", "{method}");
        let seen = app_headers(&doc);
        // Only the router's own framing of its hop, if any.
        if let Some(te) = seen.get("transfer-encoding") {
            assert_eq!(te, &["chunked"], "{method}");
        }
    }
    // A coding the router cannot re-frame faithfully is refused, not passed on.
    let res = exchange(
        r.addr,
        "POST / HTTP/1.1\r\nHost: good.localhost\r\nTransfer-Encoding: gzip, chunked\r\n\
         Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 501, "{}", res.text());
}

/// Reads until the peer closes (`Ok(0)`) or resets the connection; panics after `WAIT`.
async fn await_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the router kept the connection open for {WAIT:?}; received {:?}",
        String::from_utf8_lossy(&received)
    );
    received
}

fn short_header_timeout() -> RouterConfig {
    RouterConfig {
        header_read_timeout: Duration::from_millis(200),
        ..RouterConfig::default()
    }
}

#[tokio::test]
async fn a_client_stalling_in_the_request_head_is_disconnected() {
    let r = start_router(short_header_timeout()).await;
    let mut stream = TcpStream::connect(r.addr).await.unwrap();
    // Half a head, then nothing.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: good.localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let received = await_close(&mut stream).await;
    assert!(
        !String::from_utf8_lossy(&received).contains("\"backend\""),
        "the request reached the app"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let r = start_router(short_header_timeout()).await;
    let mut stream = TcpStream::connect(r.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: good.localhost\r\n\r\n")
        .await
        .unwrap();
    // One answer on a kept-alive connection, then silence from the client: closed.
    let received = await_close(&mut stream).await;
    let res = parse_response(&received);
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["backend"], "good");
}

#[tokio::test]
async fn a_hung_app_yields_504() {
    let r = start_router(RouterConfig {
        backend_timeout: Duration::from_millis(300),
        ..RouterConfig::default()
    })
    .await;
    let res = exchange(
        r.addr,
        "GET / HTTP/1.1\r\nHost: slow.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 504, "{}", res.text());
    assert!(
        res.text().contains("web.slow did not send a response"),
        "{}",
        res.text()
    );
    // The other apps are unaffected.
    let res = exchange(
        r.addr,
        "GET / HTTP/1.1\r\nHost: good.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200);
}
