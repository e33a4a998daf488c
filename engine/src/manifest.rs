//! `slipway.yml`: the services of a build, modelled on convox.yml.
//!
//! ```yaml
//! build: ./build.sh            # optional, run once in the source directory when built
//! services:
//!   web:
//!     command: python3 app.py  # run with `sh -c`; the process gets $PORT
//!     port: 8000               # the service takes HTTP traffic (locally each process gets its own $PORT)
//!     health:                  # or just a path: `health: /health`
//!       path: /health
//!       grace: 30              # seconds a new process has to become healthy
//!       interval: 5            # seconds between checks once running
//!       timeout: 3             # seconds one check may take
//!     scale: 2
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::Error;
use crate::names::ServiceName;

pub const FILE_NAME: &str = "slipway.yml";
pub const MAX_SCALE: u32 = 32;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub build: Option<String>,
    pub services: Vec<Service>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: ServiceName,
    pub command: String,
    /// Present for services that take HTTP traffic and are health-checked over HTTP.
    pub port: Option<u16>,
    pub health: HealthCheck,
    pub scale: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub path: String,
    pub grace: Duration,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/".into(),
            grace: Duration::from_secs(30),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    build: Option<String>,
    services: Option<BTreeMap<String, Option<RawService>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    command: Option<String>,
    port: Option<u32>,
    health: Option<RawHealth>,
    scale: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawHealth {
    Path(String),
    Full {
        path: Option<String>,
        grace: Option<u64>,
        interval: Option<u64>,
        timeout: Option<u64>,
    },
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, Error> {
        let raw: RawManifest =
            serde_norway::from_str(text).map_err(|e| Error::Manifest(yaml_error(&e)))?;
        let bad = |m: String| Err(Error::Manifest(m));
        let Some(raw_services) = raw.services else {
            return bad("no services: add a `services:` section with at least one service".into());
        };
        if raw_services.is_empty() {
            return bad("`services:` is empty; add at least one service".into());
        }
        if let Some(b) = &raw.build {
            if b.trim().is_empty() {
                return bad("`build:` is empty; remove it or give a command".into());
            }
        }
        let mut services = Vec::new();
        for (name, svc) in raw_services {
            let service_name = ServiceName::parse(&name)
                .map_err(|e| Error::Manifest(format!("services.{name}: {e}")))?;
            let Some(svc) = svc else {
                return bad(format!("services.{name}: missing `command:`"));
            };
            let command = match svc.command {
                Some(c) if !c.trim().is_empty() => c,
                _ => return bad(format!("services.{name}: missing `command:`")),
            };
            let port = match svc.port {
                None => None,
                Some(p) if (1..=65535).contains(&p) => Some(p as u16),
                Some(p) => {
                    return bad(format!("services.{name}.port: {p} is not a port (1-65535)"))
                }
            };
            let mut health = HealthCheck::default();
            match svc.health {
                None => {}
                Some(RawHealth::Path(p)) => health.path = p,
                Some(RawHealth::Full {
                    path,
                    grace,
                    interval,
                    timeout,
                }) => {
                    if let Some(p) = path {
                        health.path = p;
                    }
                    for (field, value, slot) in [
                        ("grace", grace, &mut health.grace),
                        ("interval", interval, &mut health.interval),
                        ("timeout", timeout, &mut health.timeout),
                    ] {
                        if let Some(secs) = value {
                            if !(1..=3600).contains(&secs) {
                                return bad(format!(
                                    "services.{name}.health.{field}: {secs} must be between 1 and 3600 seconds"
                                ));
                            }
                            *slot = Duration::from_secs(secs);
                        }
                    }
                }
            }
            if !health.path.starts_with('/') {
                return bad(format!("services.{name}.health.path: must start with /"));
            }
            if health
                .path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
            {
                return bad(format!(
                    "services.{name}.health.path: must not contain spaces"
                ));
            }
            let scale = svc.scale.unwrap_or(1);
            if !(1..=MAX_SCALE).contains(&scale) {
                return bad(format!(
                    "services.{name}.scale: {scale} must be between 1 and {MAX_SCALE}"
                ));
            }
            services.push(Service {
                name: service_name,
                command,
                port,
                health,
                scale,
            });
        }
        Ok(Manifest {
            build: raw.build,
            services,
        })
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }
}

/// Whether `s` is a name that may be shown in an error (a key or a path of keys).
fn plain_name(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

/// A YAML or shape error, told by where it is and what kind of problem it is, never quoting
/// the manifest's text (a value, or a file that is not a manifest at all): only key names and
/// what was expected (which comes from this module's types) are kept.
fn yaml_error(e: &serde_norway::Error) -> String {
    let full = e.to_string();
    let at = e.location().map(|l| (l.line(), l.column()));
    let mut msg = full.as_str();
    if let Some((line, column)) = at {
        msg = msg
            .strip_suffix(&format!(" at line {line} column {column}"))
            .unwrap_or(msg);
    }
    const KINDS: &[&str] = &[
        "unknown field `",
        "missing field `",
        "invalid type: ",
        "invalid value: ",
        "invalid length ",
        "data did not match any variant",
        "duplicate field `",
        "unknown variant `",
    ];
    let start = KINDS.iter().filter_map(|k| msg.find(k)).min();
    let (path, core) = match start {
        Some(i) => (msg[..i].strip_suffix(": "), &msg[i..]),
        None => (None, msg),
    };
    let expected = || {
        core.rsplit_once(", expected ")
            .map(|(_, e)| format!(", expected {e}"))
            .unwrap_or_default()
    };
    let quoted = |prefix: &str| {
        core.strip_prefix(prefix)
            .and_then(|r| r.split_once('`'))
            .map(|(name, _)| name)
            .filter(|name| plain_name(name, &[]))
    };
    let what = if core.starts_with("unknown field `") {
        match quoted("unknown field `") {
            Some(name) => format!("unknown field `{name}`{}", expected()),
            None => format!("unknown field{}", expected()),
        }
    } else if core.starts_with("missing field `") || core.starts_with("duplicate field `") {
        // The field is one of this module's own.
        core.to_owned()
    } else if let Some(rest) = core
        .strip_prefix("invalid type: ")
        .or_else(|| core.strip_prefix("invalid value: "))
    {
        const FOUND: &[&str] = &[
            "string",
            "integer",
            "floating point",
            "boolean",
            "character",
            "unit value",
            "map",
            "sequence",
            "Option value",
        ];
        let found = FOUND
            .iter()
            .find(|f| rest.starts_with(*f))
            .copied()
            .unwrap_or("value");
        let problem = if core.starts_with("invalid type") {
            "invalid type"
        } else {
            "invalid value"
        };
        format!("{problem}: found a {found}{}", expected())
    } else if core.starts_with("invalid length ") {
        format!("invalid length{}", expected())
    } else if core.starts_with("data did not match any variant of untagged enum RawHealth") {
        "`health:` must be a path or a map of path, grace, interval and timeout".to_owned()
    } else if start.is_none() && !core.contains(['`', '"', '\'']) {
        // The YAML parser's own messages ("did not find expected key", ...) quote nothing.
        core.to_owned()
    } else {
        "not a valid manifest".to_owned()
    };
    let path = path.filter(|p| plain_name(p, &['.', '[', ']']));
    let mut out = match path {
        Some(p) => format!("{p}: {what}"),
        None => what,
    };
    if let Some((line, column)) = at {
        if !out.contains(" at line ") {
            out.push_str(&format!(" at line {line}, column {column}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_manifest() {
        let m = Manifest::parse(
            "build: make\nservices:\n  web:\n    command: python3 app.py\n    port: 8000\n    health:\n      path: /health\n      grace: 5\n      interval: 2\n      timeout: 1\n    scale: 2\n  worker:\n    command: ./work\n",
        )
        .unwrap();
        assert_eq!(m.build.as_deref(), Some("make"));
        let web = m.service("web").unwrap();
        assert_eq!(web.port, Some(8000));
        assert_eq!(web.scale, 2);
        assert_eq!(web.health.path, "/health");
        assert_eq!(web.health.grace, Duration::from_secs(5));
        assert_eq!(web.health.interval, Duration::from_secs(2));
        assert_eq!(web.health.timeout, Duration::from_secs(1));
        let worker = m.service("worker").unwrap();
        assert_eq!(worker.port, None);
        assert_eq!(worker.scale, 1);
        assert_eq!(worker.health, HealthCheck::default());
    }

    #[test]
    fn health_as_a_path() {
        let m =
            Manifest::parse("services:\n  web:\n    command: x\n    port: 3000\n    health: /up\n")
                .unwrap();
        assert_eq!(m.services[0].health.path, "/up");
    }

    #[test]
    fn errors_never_quote_the_text() {
        for text in [
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
            "services:\n  web:\n    command: x\n    port: \"secret-value\"\n",
            "services:\n  web:\n    command: x\n    scale: secret-value\n",
            "build: [secret-value\n",
            "services:\n  web:\n    command: x\n    health: secret-value\n",
            "services:\n  web:\n    command: x\n    \"secret value: x\": 1\n",
            "services:\n  \"secret-value x\":\n    command: x\n    port: nope\n",
        ] {
            let err = Manifest::parse(text).unwrap_err().to_string();
            assert!(err.starts_with("invalid manifest: "), "{err}");
            assert!(
                !err.contains("root:") && !err.contains("secret"),
                "{text:?}: {err}"
            );
        }
        let err = Manifest::parse("root:x:0:0:root:/root:/bin/bash\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1, column 1"), "{err}");
    }

    #[test]
    fn clear_errors() {
        let cases = [
            ("", "services"),
            ("services: {}\n", "empty"),
            ("services:\n  web:\n", "services.web: missing `command:`"),
            (
                "services:\n  web:\n    port: 80\n",
                "services.web: missing `command:`",
            ),
            (
                "services:\n  Web:\n    command: x\n",
                "services.Web: service name",
            ),
            (
                "services:\n  web:\n    command: x\n    port: 70000\n",
                "services.web.port: 70000",
            ),
            (
                "services:\n  web:\n    command: x\n    scale: 0\n",
                "services.web.scale: 0",
            ),
            (
                "services:\n  web:\n    command: x\n    health: up\n",
                "must start with /",
            ),
            (
                "services:\n  web:\n    command: x\n    health:\n      grace: 0\n",
                "health.grace",
            ),
            (
                "services:\n  web:\n    command: x\n    colour: red\n",
                "unknown field `colour`",
            ),
            ("servics:\n  web: {}\n", "unknown field `servics`"),
            ("services: [\n", "invalid manifest"),
            (
                "services:\n  web:\n    command: x\n    scale: many\n",
                "services.web.scale: invalid type: found a string, expected u32 at line 4",
            ),
            ("services:\n  web:\n    command: [a]\n", "found a sequence"),
            (
                "services:\n  web:\n    command: x\n    health: [1]\n",
                "`health:` must be a path",
            ),
        ];
        for (text, want) in cases {
            let err = Manifest::parse(text).unwrap_err().to_string();
            assert!(err.starts_with("invalid manifest: "), "{err}");
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
