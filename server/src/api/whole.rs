//! Whole numbers in JSON bodies, written `98` or `98.0`: JSON Schema's `integer` (and so the
//! API's document, and every client generated from it) allows both, so the server takes both.
//! A number with a fraction, or out of range, is refused like any other bad value.

use serde::{de::Error as _, Deserialize, Deserializer};

fn whole<'de, D: Deserializer<'de>>(n: serde_json::Number) -> Result<i128, D::Error> {
    if let Some(i) = n.as_i64() {
        return Ok(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Ok(u.into());
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e18 => Ok(f as i128),
        _ => Err(D::Error::custom(format!("{n} is not a whole number"))),
    }
}

/// An optional whole number that fits `T`.
pub(super) fn opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let shown = n.to_string();
    let i = whole::<D>(n)?;
    T::try_from(i)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{shown} is out of range")))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::opt")]
        n: Option<u64>,
    }

    fn n(json: &str) -> Result<Option<u64>, String> {
        serde_json::from_str::<Body>(json)
            .map(|b| b.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_in_either_spelling() {
        assert_eq!(n(r#"{"n": 98}"#), Ok(Some(98)));
        assert_eq!(n(r#"{"n": 98.0}"#), Ok(Some(98)));
        assert_eq!(n(r#"{}"#), Ok(None));
        assert_eq!(n(r#"{"n": null}"#), Ok(None));
        assert!(n(r#"{"n": 98.5}"#)
            .unwrap_err()
            .contains("not a whole number"));
        assert!(n(r#"{"n": -1}"#).unwrap_err().contains("out of range"));
        assert!(n(r#"{"n": "98"}"#).is_err());
    }
}
