//! Names that end up in host names (`SERVICE.APP.localhost`): lowercase letters, digits and
//! hyphens, starting with a letter, not ending with a hyphen, at most 30 characters.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::Error;

/// The longest name, in characters.
pub const MAX_LEN: usize = 30;

fn check_dns_label(what: &str, s: &str) -> Result<(), Error> {
    let fail = |why: &str| Err(Error::invalid(what, format!("{s:?} {why}")));
    if s.is_empty() {
        return Err(Error::invalid(what, "must not be empty"));
    }
    if s.len() > MAX_LEN {
        return fail(&format!("is longer than {MAX_LEN} characters"));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return fail("must start with a lowercase letter");
    }
    if s.ends_with('-') {
        return fail("must not end with a hyphen");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return fail("may only contain lowercase letters, digits and hyphens");
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What [`Self::parse`] accepts, for the API's document.
            pub const RULE: crate::schema::StringRule = crate::schema::DNS_LABEL;

            pub fn parse(s: &str) -> Result<Self, Error> {
                check_dns_label($what, s)?;
                Ok(Self(s.to_owned()))
            }
        }

        string_newtype!($name);
    };
}

name_type!(
    /// An app's name, unique in the store.
    AppName, "app name"
);
name_type!(
    /// A service's name inside an app's manifest (`web`, `worker`).
    ServiceName, "service name"
);

/// Who did something: a user name, or `local` before authentication exists.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor(String);

impl Actor {
    pub fn new(name: impl Into<String>) -> Self {
        let name: String = name.into();
        let name = name.trim();
        Actor(if name.is_empty() {
            "unknown".into()
        } else {
            name.chars().take(64).collect()
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "hello", "my-app-2", "abcdefghijklmnopqrstuvwxyz1234"] {
            assert_eq!(AppName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        let cases = [
            ("", "must not be empty"),
            ("Hello", "lowercase letter"),
            ("1app", "lowercase letter"),
            ("app-", "hyphen"),
            ("my_app", "lowercase letters, digits and hyphens"),
            ("a.b", "lowercase letters, digits and hyphens"),
            ("abcdefghijklmnopqrstuvwxyz12345", "longer than 30"),
        ];
        for (bad, why) in cases {
            let err = AppName::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.starts_with("app name"), "{err}");
        }
    }

    #[test]
    fn actor_is_trimmed_and_bounded() {
        assert_eq!(Actor::new("  ").as_str(), "unknown");
        assert_eq!(Actor::new("x".repeat(100)).as_str().len(), 64);
    }
}
