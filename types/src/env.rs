//! Environments: validated keys, bounded values, `.env`-style parsing whose errors name the
//! line, and the Convox-style change description (`env add:A change:B remove:C`).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, FieldError};

/// Largest value of one variable, in bytes.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;
/// Largest whole environment (keys, values and separators), in bytes.
pub const MAX_ENV_BYTES: usize = 512 * 1024;
/// Longest key.
pub const MAX_KEY_LEN: usize = 255;

/// A variable name: `[A-Za-z_][A-Za-z0-9_]*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvKey(String);

impl EnvKey {
    /// What [`Self::parse`] accepts, for the API's document.
    pub const RULE: crate::schema::StringRule = crate::schema::StringRule {
        pattern: "^[A-Za-z_][A-Za-z0-9_]*$",
        min_length: 1,
        max_length: MAX_KEY_LEN,
    };

    pub fn parse(s: &str) -> Result<Self, Error> {
        let field = "env key";
        let mut chars = s.chars();
        match chars.next() {
            None => return Err(Error::invalid(field, "must not be empty")),
            Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
                return Err(Error::invalid(
                    field,
                    format!("{s:?} must start with a letter or underscore"),
                ))
            }
            _ => {}
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::invalid(
                field,
                format!("{s:?} may only contain letters, digits and underscores"),
            ));
        }
        if s.len() > MAX_KEY_LEN {
            return Err(Error::invalid(
                field,
                format!("is longer than {MAX_KEY_LEN} characters"),
            ));
        }
        Ok(EnvKey(s.to_owned()))
    }
}

string_newtype!(EnvKey);

fn check_value(key: &EnvKey, value: &str) -> Result<(), Error> {
    if value.contains('\0') {
        return Err(Error::invalid(
            format!("env {key}"),
            "value must not contain a NUL character",
        ));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::TooLarge {
            what: format!("the value of {key}"),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// A validated environment: sorted keys, bounded values without NUL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct Environment(BTreeMap<EnvKey, String>);

impl Environment {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an environment from pairs, checking every key and value and the total size.
    /// A key given twice is an error.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, Error> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let key = EnvKey::parse(k.as_ref())?;
            let value = v.into();
            check_value(&key, &value)?;
            if map.contains_key(&key) {
                return Err(Error::invalid(format!("env {key}"), "duplicate key"));
            }
            map.insert(key, value);
        }
        let env = Environment(map);
        env.check_total()?;
        Ok(env)
    }

    /// Parses `KEY=VALUE` lines. Blank lines and lines starting with `#` are skipped, an
    /// `export ` prefix is allowed, and a value wrapped in matching single or double quotes
    /// loses them. Errors name the line.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut map: BTreeMap<EnvKey, String> = BTreeMap::new();
        let mut first_line: BTreeMap<EnvKey, usize> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim_start();
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((k, v)) = line.split_once('=') else {
                return Err(Error::invalid(
                    format!("line {n}"),
                    "expected KEY=VALUE".to_string(),
                ));
            };
            let key = EnvKey::parse(k.trim()).map_err(|e| match e {
                Error::Invalid { message, .. } => {
                    Error::invalid(format!("line {n}"), format!("bad key: {message}"))
                }
                other => other,
            })?;
            let value = unquote(v.trim_end_matches('\r'));
            check_value(&key, value).map_err(|e| match e {
                Error::Invalid { message, .. } => Error::invalid(format!("line {n}"), message),
                other => other,
            })?;
            if let Some(first) = first_line.get(&key) {
                return Err(Error::invalid(
                    format!("line {n}"),
                    format!("duplicate key {key} (first set on line {first})"),
                ));
            }
            first_line.insert(key.clone(), n);
            map.insert(key, value.to_owned());
        }
        let env = Environment(map);
        env.check_total()?;
        Ok(env)
    }

    fn check_total(&self) -> Result<(), Error> {
        let size: usize = self.0.iter().map(|(k, v)| k.0.len() + v.len() + 2).sum();
        if size > MAX_ENV_BYTES {
            return Err(Error::TooLarge {
                what: "the environment".into(),
                limit: MAX_ENV_BYTES,
            });
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&EnvKey, &str)> {
        self.0.iter().map(|(k, v)| (k, v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `KEY=VALUE` lines, sorted by key.
    pub fn to_lines(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.0 {
            out.push_str(k.as_str());
            out.push('=');
            out.push_str(v);
            out.push('\n');
        }
        out
    }

    /// `KEY=****` lines: what may be shown without revealing values.
    pub fn to_masked_lines(&self) -> String {
        self.0.keys().map(|k| format!("{k}=****\n")).collect()
    }

    /// Applies a change and checks the result's size.
    pub fn apply(&self, change: &EnvChange) -> Result<Environment, Error> {
        let mut map = if change.replace {
            BTreeMap::new()
        } else {
            self.0.clone()
        };
        for key in &change.unset {
            map.remove(key);
        }
        for (key, value) in &change.set {
            check_value(key, value)?;
            map.insert(key.clone(), value.clone());
        }
        let env = Environment(map);
        env.check_total()?;
        Ok(env)
    }

    /// What changed from `self` to `new`, by key.
    pub fn diff(&self, new: &Environment) -> EnvDiff {
        let mut diff = EnvDiff::default();
        for (k, v) in &new.0 {
            match self.0.get(k) {
                None => diff.added.push(k.clone()),
                Some(old) if old != v => diff.changed.push(k.clone()),
                Some(_) => {}
            }
        }
        for k in self.0.keys() {
            if !new.0.contains_key(k) {
                diff.removed.push(k.clone());
            }
        }
        diff
    }
}

fn unquote(v: &str) -> &str {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

impl TryFrom<BTreeMap<String, String>> for Environment {
    type Error = Error;
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, Error> {
        Environment::from_pairs(map)
    }
}

impl From<Environment> for BTreeMap<String, String> {
    fn from(env: Environment) -> Self {
        env.0.into_iter().map(|(k, v)| (k.0, v)).collect()
    }
}

/// A change to an environment: keys to set and keys to remove, optionally starting from empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvChange {
    #[serde(default)]
    pub set: BTreeMap<EnvKey, String>,
    #[serde(default)]
    pub unset: BTreeSet<EnvKey>,
    /// Start from an empty environment instead of the base release's.
    #[serde(default)]
    pub replace: bool,
}

impl EnvChange {
    /// A change that makes the environment exactly `env`.
    pub fn replace_with(env: &Environment) -> Self {
        EnvChange {
            set: env.0.clone(),
            unset: BTreeSet::new(),
            replace: true,
        }
    }

    /// Parses `KEY=VALUE` arguments (as typed on a command line) into a change.
    pub fn set_from_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        let mut change = EnvChange::default();
        for arg in args {
            let arg = arg.as_ref();
            let Some((k, v)) = arg.split_once('=') else {
                return Err(Error::invalid(
                    "env",
                    format!(
                        "expected KEY=VALUE, got {:?}",
                        arg.chars().take(40).collect::<String>()
                    ),
                ));
            };
            let key = EnvKey::parse(k)?;
            check_value(&key, v)?;
            change.set.insert(key, v.to_owned());
        }
        Ok(change)
    }
}

/// One row of an environment editor (the Console's): a variable as it was (`original`) and
/// as the user left it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvEditRow {
    /// The key as typed (a rename when it differs from `original`). Blank on an unused row.
    pub key: String,
    /// The key this row showed when the editor opened; `None` for a row the user added.
    pub original: Option<String>,
    /// The new value; `None` keeps the original value (it was never revealed or edited).
    pub value: Option<String>,
    /// Remove the original variable.
    pub remove: bool,
}

/// What an environment editor submits: its rows plus an optional pasted `.env` block, whose
/// variables are set last (pasting wins over a row with the same key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvEdit {
    pub rows: Vec<EnvEditRow>,
    pub paste: String,
}

impl EnvEdit {
    /// The environment that results from applying the edit to `old`. Every problem is reported
    /// at once, each naming its field (`rows.N.key`, `rows.N.value`, `paste`, `env`), so that a
    /// form can show it next to the field: bad or duplicate keys, NUL, values or a whole
    /// environment over the limits, a pasted line that does not parse.
    pub fn apply_to(&self, old: &Environment) -> Result<Environment, Error> {
        let mut errors = Vec::new();
        let mut map = old.0.clone();
        // Every row that showed a variable takes it out first; rows that keep it put it back.
        for (i, row) in self.rows.iter().enumerate() {
            if let Some(original) = row.original.as_deref() {
                match EnvKey::parse(original) {
                    Ok(k) if map.remove(&k).is_some() => {}
                    _ => errors.push(FieldError::new(
                        format!("rows.{i}.key"),
                        format!("{original} is not in the environment any more"),
                    )),
                }
            }
        }
        let mut row_of: BTreeMap<EnvKey, usize> = BTreeMap::new();
        for (i, row) in self.rows.iter().enumerate() {
            let typed = row.key.trim();
            let blank_new = row.original.is_none()
                && typed.is_empty()
                && row.value.as_deref().unwrap_or("").is_empty();
            if row.remove || blank_new {
                continue;
            }
            let key = match EnvKey::parse(typed) {
                Ok(k) => k,
                Err(e) => {
                    let message = if typed.is_empty() {
                        "a variable needs a name".to_string()
                    } else {
                        e.to_string()
                    };
                    errors.push(FieldError::new(format!("rows.{i}.key"), message));
                    continue;
                }
            };
            let value = match (&row.value, row.original.as_deref()) {
                (Some(v), _) => v.clone(),
                (None, Some(original)) => old.get(original).unwrap_or_default().to_owned(),
                (None, None) => String::new(),
            };
            if let Err(e) = check_value(&key, &value) {
                errors.push(FieldError::new(format!("rows.{i}.value"), e.to_string()));
            }
            if let Some(first) = row_of.get(&key) {
                errors.push(FieldError::new(
                    format!("rows.{i}.key"),
                    format!("duplicate key {key} (also in row {})", first + 1),
                ));
                continue;
            }
            row_of.insert(key.clone(), i);
            map.insert(key, value);
        }
        if !self.paste.trim().is_empty() {
            match Environment::parse(&self.paste) {
                Ok(pasted) => map.extend(pasted.0),
                Err(e) => errors.push(FieldError::new("paste", e.to_string())),
            }
        }
        let env = Environment(map);
        if errors.is_empty() {
            if let Err(e) = env.check_total() {
                errors.push(FieldError::new("env", e.to_string()));
            }
        }
        if errors.is_empty() {
            Ok(env)
        } else {
            Err(Error::Fields(errors))
        }
    }
}

/// Keys added, changed and removed between two environments, each sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvDiff {
    pub added: Vec<EnvKey>,
    pub changed: Vec<EnvKey>,
    pub removed: Vec<EnvKey>,
}

impl EnvDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    /// Convox's words: `env add:A add:B change:C remove:D` (key names only, never values).
    pub fn description(&self) -> String {
        let mut out = String::from("env");
        for (word, keys) in [
            ("add", &self.added),
            ("change", &self.changed),
            ("remove", &self.removed),
        ] {
            for k in keys {
                out.push(' ');
                out.push_str(word);
                out.push(':');
                out.push_str(k.as_str());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::from_pairs(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn keys() {
        for ok in ["A", "_", "FOO_BAR", "a1", "_X9"] {
            assert!(EnvKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "É", "A.B", "=", "A="] {
            assert!(EnvKey::parse(bad).is_err(), "{bad}");
        }
        assert!(EnvKey::parse(&"A".repeat(256)).is_err());
    }

    #[test]
    fn parse_lines() {
        let e = Environment::parse(
            "# comment\n\nFOO=bar\nexport BAZ=\"quoted value\"\nEMPTY=\nEQ=a=b\r\nSQ='x'\n",
        )
        .unwrap();
        assert_eq!(e.get("FOO"), Some("bar"));
        assert_eq!(e.get("BAZ"), Some("quoted value"));
        assert_eq!(e.get("EMPTY"), Some(""));
        assert_eq!(e.get("EQ"), Some("a=b"));
        assert_eq!(e.get("SQ"), Some("x"));
        assert_eq!(
            e.to_lines(),
            "BAZ=quoted value\nEMPTY=\nEQ=a=b\nFOO=bar\nSQ=x\n"
        );
        assert_eq!(
            e.to_masked_lines(),
            "BAZ=****\nEMPTY=****\nEQ=****\nFOO=****\nSQ=****\n"
        );
    }

    #[test]
    fn parse_errors_name_the_line() {
        let err = Environment::parse("A=1\nnot a pair\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "line 2: expected KEY=VALUE");
        let err = Environment::parse("A=1\n\n1X=2").unwrap_err().to_string();
        assert!(err.starts_with("line 3: bad key"), "{err}");
        let err = Environment::parse("A=1\nB=2\nA=3").unwrap_err().to_string();
        assert_eq!(err, "line 3: duplicate key A (first set on line 1)");
        let err = Environment::parse("A=x\0y").unwrap_err().to_string();
        assert!(err.starts_with("line 1:") && err.contains("NUL"), "{err}");
    }

    #[test]
    fn size_limits() {
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        let err = Environment::from_pairs([("A", big.as_str())]).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }));
        let ok = "x".repeat(MAX_VALUE_BYTES);
        assert!(Environment::from_pairs([("A", ok.as_str())]).is_ok());
        let many: Vec<(String, String)> = (0..20).map(|i| (format!("K{i}"), ok.clone())).collect();
        let err = Environment::from_pairs(many).unwrap_err();
        assert!(
            err.to_string().contains("the environment is too large"),
            "{err}"
        );
    }

    #[test]
    fn diff_description_orders_adds_changes_removes() {
        let old = env(&[("BAR", "1"), ("BAZ", "1"), ("KEEP", "k"), ("ZED", "z")]);
        let new = env(&[
            ("BAR", "2"),
            ("FOO", "f"),
            ("QUX", "q"),
            ("KEEP", "k"),
            ("ALPHA", "a"),
        ]);
        let d = old.diff(&new);
        assert_eq!(
            d.description(),
            "env add:ALPHA add:FOO add:QUX change:BAR remove:BAZ remove:ZED"
        );
        assert!(old.diff(&old).is_empty());
        assert_eq!(old.diff(&old).description(), "env");
    }

    #[test]
    fn description_never_contains_values() {
        let old = env(&[("SECRET", "hunter2")]);
        let new = env(&[("SECRET", "hunter3"), ("TOKEN", "abc")]);
        let d = old.diff(&new).description();
        assert!(!d.contains("hunter") && !d.contains("abc"), "{d}");
    }

    #[test]
    fn apply_set_unset_replace() {
        let base = env(&[("A", "1"), ("B", "2")]);
        let mut change = EnvChange::set_from_args(["C=3", "A=9"]).unwrap();
        change.unset.insert(EnvKey::parse("B").unwrap());
        let new = base.apply(&change).unwrap();
        assert_eq!(new, env(&[("A", "9"), ("C", "3")]));
        change.replace = true;
        change.unset.clear();
        assert_eq!(base.apply(&change).unwrap(), env(&[("A", "9"), ("C", "3")]));
        assert!(EnvChange::set_from_args(["NOEQUALS"]).is_err());
        assert!(EnvChange::set_from_args(["1A=x"]).is_err());
    }

    fn row(key: &str, original: Option<&str>, value: Option<&str>, remove: bool) -> EnvEditRow {
        EnvEditRow {
            key: key.into(),
            original: original.map(Into::into),
            value: value.map(Into::into),
            remove,
        }
    }

    #[test]
    fn edit_adds_changes_removes_renames_and_pastes() {
        let old = env(&[("KEEP", "k"), ("BAR", "1"), ("BAZ", "z"), ("OLD", "o")]);
        let edit = EnvEdit {
            rows: vec![
                row("KEEP", Some("KEEP"), None, false),
                row("BAR", Some("BAR"), Some("2"), false),
                row("BAZ", Some("BAZ"), None, true),
                row("NEW_NAME", Some("OLD"), None, false),
                row("FOO", None, Some("f"), false),
                row("", None, None, false),
            ],
            paste: "# pasted\nPASTED=p\nFOO=from paste\n".into(),
        };
        let new = edit.apply_to(&old).unwrap();
        assert_eq!(
            new,
            env(&[
                ("KEEP", "k"),
                ("BAR", "2"),
                ("NEW_NAME", "o"),
                ("FOO", "from paste"),
                ("PASTED", "p"),
            ])
        );
        assert_eq!(
            old.diff(&new).description(),
            "env add:FOO add:NEW_NAME add:PASTED change:BAR remove:BAZ remove:OLD"
        );
    }

    #[test]
    fn edit_errors_name_their_fields() {
        let old = env(&[("A", "1")]);
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        let edit = EnvEdit {
            rows: vec![
                row("A", Some("A"), None, false),
                row("1X", None, Some("v"), false),
                row("A", None, Some("s3cret"), false),
                row("NUL", None, Some("a\0b"), false),
                row("BIG", None, Some(&big), false),
                row("", None, Some("value without a name"), false),
                row("GONE", Some("GONE"), None, false),
            ],
            paste: "OK=1\nnot a pair\n".into(),
        };
        let Err(Error::Fields(errors)) = edit.apply_to(&old) else {
            panic!("expected field errors");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "rows.6.key",
                "rows.1.key",
                "rows.2.key",
                "rows.3.value",
                "rows.4.value",
                "rows.5.key",
                "paste"
            ]
        );
        assert!(errors[2]
            .message
            .contains("duplicate key A (also in row 1)"));
        assert!(errors[3].message.contains("NUL"));
        assert!(errors[4].message.contains("too large"));
        assert_eq!(errors[6].message, "line 2: expected KEY=VALUE");
        // Values never appear in the messages.
        let all = Error::Fields(errors).to_string();
        assert!(
            !all.contains("s3cret") && !all.contains("xxxx") && !all.contains("without"),
            "{all}"
        );
    }

    #[test]
    fn serde_validates() {
        let e: Environment = serde_json::from_str(r#"{"A":"1"}"#).unwrap();
        assert_eq!(e.get("A"), Some("1"));
        assert!(serde_json::from_str::<Environment>(r#"{"1A":"1"}"#).is_err());
    }
}
