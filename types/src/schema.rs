//! What the server checks about a string, as JSON Schema facts (a pattern and lengths) for the
//! API's OpenAPI document. Each rule sits beside the check it describes (`AppName::RULE`,
//! `ReleaseId::RULE`, ...), and the tests below hold the two to the same answers, so that a
//! client generated from the document validates what the server would.

/// A string the server accepts: it matches `pattern` (a regular expression anchored at both
/// ends) and has `min_length` to `max_length` characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringRule {
    pub pattern: &'static str,
    pub min_length: usize,
    pub max_length: usize,
}

impl StringRule {
    /// Whether `s` has an allowed number of characters (the pattern is for a regex engine).
    pub fn length_fits(&self, s: &str) -> bool {
        (self.min_length..=self.max_length).contains(&s.chars().count())
    }
}

/// Names that end up in host names (apps, services).
pub const DNS_LABEL: StringRule = StringRule {
    pattern: "^[a-z]([a-z0-9-]*[a-z0-9])?$",
    min_length: 1,
    max_length: crate::names::MAX_LEN,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{TokenId, Username};
    use crate::env::EnvKey;
    use crate::ids::{BuildId, PromotionId, ReleaseId};
    use crate::names::{AppName, ServiceName};

    /// Whether `s` satisfies `rule` as a JSON Schema validator would see it.
    fn satisfies(rule: &StringRule, s: &str) -> bool {
        regex::Regex::new(rule.pattern)
            .map(|re| re.is_match(s))
            .unwrap_or(false)
            && rule.length_fits(s)
    }

    const SAMPLES: &[&str] = &[
        "",
        "a",
        "A",
        "_",
        "0",
        "-",
        "web",
        "web-1",
        "web-",
        "-web",
        "Web",
        "my_app",
        "a.b",
        "x y",
        "hello",
        "hello\n",
        " hello",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "FOO",
        "FOO_BAR2",
        "2FOO",
        "foo-bar",
        "RABCDEFGHJK",
        "RABCDEFGHJ",
        "RABCDEFGHJKL",
        "Rabcdefghjk",
        "BABCDEFGHJK",
        "PABCDEFGHJK",
        "TABCDEFGHJK",
        "alice",
        "alice.smith_2-x",
        "élan",
    ];

    fn agree(name: &str, rule: &StringRule, parse: impl Fn(&str) -> bool) {
        let long_ok = "a".repeat(rule.max_length);
        let too_long = "a".repeat(rule.max_length + 1);
        for s in SAMPLES
            .iter()
            .copied()
            .chain([long_ok.as_str(), too_long.as_str()])
        {
            assert_eq!(
                satisfies(rule, s),
                parse(s),
                "{name}: the rule and the check disagree on {s:?}"
            );
        }
    }

    #[test]
    fn each_rule_says_what_its_check_does() {
        agree("app name", &AppName::RULE, |s| AppName::parse(s).is_ok());
        agree("service name", &ServiceName::RULE, |s| {
            ServiceName::parse(s).is_ok()
        });
        agree("env key", &EnvKey::RULE, |s| EnvKey::parse(s).is_ok());
        agree("user name", &Username::RULE, |s| Username::parse(s).is_ok());
        // IDs are trimmed before they are checked; the rule asks for them without spaces.
        let exact = |ok: bool, s: &str| ok && s.trim() == s;
        agree("release ID", &ReleaseId::RULE, |s| {
            exact(ReleaseId::parse(s).is_ok(), s)
        });
        agree("build ID", &BuildId::RULE, |s| {
            exact(BuildId::parse(s).is_ok(), s)
        });
        agree("promotion ID", &PromotionId::RULE, |s| {
            exact(PromotionId::parse(s).is_ok(), s)
        });
        agree("token ID", &TokenId::RULE, |s| {
            exact(TokenId::parse(s).is_ok(), s)
        });
    }
}
