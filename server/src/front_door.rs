//! The checks every request passes before anything else is decided about it: its path is
//! plain (no dot segments, raw or percent-encoded, in any case), it names a Host the Console
//! answers to (DNS rebinding), and a state change comes from the Console's own origin (CSRF).

use axum::http::{header, HeaderMap, Uri};
use std::net::{IpAddr, SocketAddr};

/// Why a path is refused, if it is: a segment that is `.` or `..` once percent-decoded, an
/// encoded `/` or `\`, a raw `\`, or a control character. Such paths are refused with 400
/// before any decision is made on them, so a prefix test (`/pkg/`) can never be fooled by
/// what a later normalisation makes of the path.
pub fn bad_path(path: &str) -> Option<&'static str> {
    if path.bytes().any(|b| b == b'\\' || b.is_ascii_control()) {
        return Some("the path has a backslash or a control character");
    }
    for segment in path.split('/') {
        let decoded = percent_decode(segment);
        if decoded == b"." || decoded == b".." {
            return Some("the path has a `.` or `..` segment");
        }
        if decoded
            .iter()
            .any(|b| *b == b'/' || *b == b'\\' || b.is_ascii_control())
        {
            return Some("the path has an encoded `/`, `\\` or control character");
        }
    }
    None
}

/// `%XX` decoded (invalid escapes are kept as written).
fn percent_decode(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// A host name (lowercase, without a trailing dot, IPv6 without brackets) and maybe a port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPort {
    host: String,
    port: Option<u16>,
}

impl HostPort {
    /// `example.com`, `example.com:8080`, `127.0.0.1:3000`, `[::1]:3000`. Anything else
    /// (user info, paths, odd characters) is no host at all.
    fn parse(value: &str) -> Option<HostPort> {
        let (host, port) = if let Some(rest) = value.strip_prefix('[') {
            let (ip, after) = rest.split_once(']')?;
            ip.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?.parse().ok()?),
            };
            (ip.to_ascii_lowercase(), port)
        } else {
            let (host, port) = match value.rsplit_once(':') {
                Some((h, p)) => (h, Some(p.parse().ok()?)),
                None => (value, None),
            };
            let ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return None;
            }
            (host.to_ascii_lowercase(), port)
        };
        let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
        Some(HostPort { host, port })
    }

    fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// The Hosts the Console answers to and the origin its pages come from.
#[derive(Clone, Debug)]
pub struct Origins {
    /// `--public-url`: its host and port (the scheme's default port when it names none).
    public: Option<(String, u16)>,
    /// The address the Console listens on.
    listen: SocketAddr,
}

impl Origins {
    pub fn new(public_url: Option<&url::Url>, listen: SocketAddr) -> Origins {
        let public = public_url.and_then(|u| {
            let host = u.host_str()?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some((
                host.trim_end_matches('.').to_ascii_lowercase(),
                u.port_or_known_default()?,
            ))
        });
        Origins { public, listen }
    }

    /// Whether a request naming `host` (its `Host` header) is for this Console:
    ///
    /// - the public URL's host and port (`--public-url`);
    /// - `localhost` and loopback addresses, on any port (a page on another site cannot
    ///   make a browser send those names for it: DNS rebinding needs a name of its own);
    /// - without a public URL, also the address the Console listens on, or any IP address
    ///   when it listens on all of them. Other names are refused: give `--public-url`.
    pub fn host_allowed(&self, host: &str) -> bool {
        let Some(hp) = HostPort::parse(host) else {
            return false;
        };
        if let Some((public_host, public_port)) = &self.public {
            let default_port = hp.port.is_none() && matches!(*public_port, 80 | 443);
            if &hp.host == public_host && (hp.port == Some(*public_port) || default_port) {
                return true;
            }
        }
        if hp.host == "localhost" {
            return true;
        }
        match hp.ip() {
            Some(ip) if ip.is_loopback() => true,
            Some(ip) => {
                self.public.is_none()
                    && (self.listen.ip().is_unspecified() || ip == self.listen.ip())
            }
            None => false,
        }
    }
}

/// The `Host` a request names (the header, or the authority of an absolute-form URI).
pub fn request_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// Where a request says it comes from: `Origin`, else `Referer` (`None` when it has neither).
pub fn request_source(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .map(|v| v.to_str().unwrap_or("null"))
}

/// Whether `source` (an `Origin` or `Referer` value) is the same origin as the request's
/// `host`: the same host and port (`null`, other schemes and unparsable values are not).
pub fn same_origin(source: &str, host: &str) -> bool {
    let Ok(url) = url::Url::parse(source) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    let (Some(src_host), Some(src_port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let Some(req) = HostPort::parse(host) else {
        return false;
    };
    let src_host = src_host.trim_start_matches('[').trim_end_matches(']');
    let src_host = src_host.trim_end_matches('.').to_ascii_lowercase();
    src_host == req.host
        && req
            .port
            .unwrap_or(if url.scheme() == "https" { 443 } else { 80 })
            == src_port
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_in_every_disguise_are_refused() {
        for bad in [
            "/pkg/../audit",
            "/pkg/./../apps/x/env",
            "/pkg/%2e%2e/audit",
            "/pkg/%2E%2e/audit",
            "/pkg/.%2e/audit",
            "/pkg/%2e./audit",
            "/pkg/%2e/audit",
            "/pkg/..",
            "/pkg/..%2faudit",
            "/pkg/%2e%2e%2faudit",
            "/pkg/%5c..%5caudit",
            "/pkg\\..\\audit",
            "/pkg/%2F..",
            "/a/\t/b",
        ] {
            assert!(bad_path(bad).is_some(), "{bad} should be refused");
        }
        for good in [
            "/",
            "/pkg/slipway.wasm",
            "/pkg/slipway.v1.2.js",
            "/apps/hello/releases/RABC",
            "/apps/hello/env",
            "/api/v1/apps/x/env",
            "/a..b/c...d",
            "/%41pps",
        ] {
            assert_eq!(bad_path(good), None, "{good} should pass");
        }
    }

    #[test]
    fn hosts() {
        let local = Origins::new(None, "127.0.0.1:3000".parse().unwrap());
        assert!(local.host_allowed("127.0.0.1:3000"));
        assert!(local.host_allowed("localhost:3000"));
        assert!(local.host_allowed("LOCALHOST"));
        assert!(local.host_allowed("[::1]:3000"));
        assert!(!local.host_allowed("evil.example"));
        assert!(!local.host_allowed("rebind.evil.example:3000"));
        assert!(!local.host_allowed("10.0.0.5:3000"));
        assert!(!local.host_allowed("127.0.0.1:3000@evil"));
        assert!(!local.host_allowed(""));

        let all = Origins::new(None, "0.0.0.0:3000".parse().unwrap());
        assert!(all.host_allowed("10.0.0.5:3000"));
        assert!(!all.host_allowed("console.example:3000"));

        let url = url::Url::parse("https://console.example.com").unwrap();
        let public = Origins::new(Some(&url), "0.0.0.0:3000".parse().unwrap());
        assert!(public.host_allowed("console.example.com"));
        assert!(public.host_allowed("Console.Example.COM."));
        assert!(public.host_allowed("console.example.com:443"));
        assert!(!public.host_allowed("console.example.com:8443"));
        assert!(!public.host_allowed("10.0.0.5:3000"));
        assert!(public.host_allowed("127.0.0.1:3000"));
        assert!(!public.host_allowed("evil.example"));
    }

    #[test]
    fn origins() {
        assert!(same_origin("http://127.0.0.1:3000", "127.0.0.1:3000"));
        assert!(same_origin(
            "https://console.example/apps/x/env?y=1",
            "console.example"
        ));
        assert!(same_origin("http://[::1]:3000", "[::1]:3000"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:3000"));
        assert!(!same_origin("null", "127.0.0.1:3000"));
        assert!(!same_origin(
            "http://127.0.0.1:3000.evil.example",
            "127.0.0.1:3000"
        ));
        assert!(!same_origin("http://127.0.0.1:3001", "127.0.0.1:3000"));
        assert!(!same_origin(
            "https://console.example",
            "console.example:80"
        ));
        assert!(!same_origin("file:///x", "127.0.0.1:3000"));
    }
}
