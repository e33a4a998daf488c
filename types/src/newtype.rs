//! The conversions every validated string newtype has (IDs, names, env keys): the type's own
//! `parse(&str) -> Result<Self, Error>` is the only way in, whether from a `&str`, a `String`
//! or serde (`#[serde(try_from = "String", into = "String")]`).

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::error::Error;
            fn try_from(s: String) -> Result<Self, $crate::error::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::error::Error;
            fn from_str(s: &str) -> Result<Self, $crate::error::Error> {
                Self::parse(s)
            }
        }
    };
}
