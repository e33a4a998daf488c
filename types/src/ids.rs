//! Identifiers: a letter naming the kind and 10 random uppercase letters (`RCTSJKKLHXJ`),
//! drawn from a CSPRNG. The only way to get one is to generate it (feature `gen`) or parse a
//! valid string.

use serde::{Deserialize, Serialize};

use crate::error::Error;

const RANDOM_LEN: usize = 10;

/// `prefix` and 10 random uppercase letters: a new ID of any kind (token IDs too).
#[cfg(feature = "gen")]
pub(crate) fn random_id(prefix: char) -> String {
    use rand::Rng;
    // `rand::rng()` is a ChaCha-based CSPRNG seeded from the OS.
    let mut rng = rand::rng();
    let mut id = String::with_capacity(RANDOM_LEN + 1);
    id.push(prefix);
    for _ in 0..RANDOM_LEN {
        id.push(char::from(rng.random_range(b'A'..=b'Z')));
    }
    id
}

/// Whether `s` is `prefix` and 10 letters A-Z.
pub(crate) fn is_valid(prefix: char, s: &str) -> bool {
    s.len() == RANDOM_LEN + 1
        && s.starts_with(prefix)
        && s.bytes().skip(1).all(|b| b.is_ascii_uppercase())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: char = $prefix;

            /// What [`Self::parse`] accepts (after trimming), for the API's document.
            pub const RULE: crate::schema::StringRule = crate::schema::StringRule {
                pattern: concat!("^", $prefix, "[A-Z]{10}$"),
                min_length: RANDOM_LEN + 1,
                max_length: RANDOM_LEN + 1,
            };

            #[cfg(feature = "gen")]
            pub fn generate() -> Self {
                Self(random_id($prefix))
            }

            pub fn parse(s: &str) -> Result<Self, Error> {
                let s = s.trim();
                if is_valid($prefix, s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(Error::invalid(
                        $what,
                        format!(
                            "{s:?} is not a {} ID ({} followed by 10 letters A-Z)",
                            $what, $prefix
                        ),
                    ))
                }
            }
        }

        string_newtype!($name);
    };
}

id_type!(
    /// A release: `R` + 10 letters.
    ReleaseId, 'R', "release"
);
id_type!(
    /// A build: `B` + 10 letters.
    BuildId, 'B', "build"
);
id_type!(
    /// A promotion (one rollout attempt): `P` + 10 letters.
    PromotionId, 'P', "promotion"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "gen")]
    #[test]
    fn generated_ids_have_the_documented_shape() {
        for _ in 0..1000 {
            let r = ReleaseId::generate();
            assert_eq!(r.as_str().len(), 11);
            assert!(r.as_str().starts_with('R'));
            assert!(r.as_str()[1..].bytes().all(|b| b.is_ascii_uppercase()));
            assert_eq!(ReleaseId::parse(r.as_str()).unwrap(), r);
            assert!(BuildId::generate().as_str().starts_with('B'));
        }
    }

    #[cfg(feature = "gen")]
    #[test]
    fn generated_ids_differ() {
        let ids: std::collections::HashSet<_> =
            (0..10_000).map(|_| ReleaseId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn parse_rejects_bad_ids() {
        for bad in [
            "",
            "R",
            "RABCDEFGHI",
            "RABCDEFGHIJK",
            "Rabcdefghij",
            "BABCDEFGHIJ",
            "R0BCDEFGHIJ",
            "RÄBCDEFGHI",
        ] {
            let err = ReleaseId::parse(bad).unwrap_err();
            assert!(err.to_string().contains("not a release ID"), "{bad}: {err}");
        }
        assert!(ReleaseId::parse("RCTSJKKLHXJ").is_ok());
        assert!(BuildId::parse("RCTSJKKLHXJ").is_err());
    }

    #[test]
    fn serde_round_trip_validates() {
        let id: ReleaseId = serde_json::from_str("\"RCTSJKKLHXJ\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"RCTSJKKLHXJ\"");
        assert!(serde_json::from_str::<ReleaseId>("\"nope\"").is_err());
    }
}
