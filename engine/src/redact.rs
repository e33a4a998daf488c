//! Masking an app's own environment values in what the app printed (its processes' output, a
//! failed promotion's recorded output), for people who may not see those values (viewers).
//!
//! Every occurrence of a value is replaced by [`MASK`]. Values shorter than
//! [`MIN_MASKED_CHARS`] characters are left alone: masking `1`, `on` or `80` everywhere would
//! make output unreadable while hiding nothing worth hiding (such a value is guessed in a few
//! tries anyway). Where occurrences of values overlap (`abcdef` and `defgh` in `abcdefgh`),
//! the whole overlapping stretch becomes one mask, so no part of either value is shown; a
//! value inside a longer one (`secret` in `secret-long`) is masked with it, as the longer one.
//! A value of several lines is also masked line by line (output is kept by line, so a tail
//! may start inside such a value).
//!
//! This is a courtesy against values shown by accident, not a guarantee: an app can print a
//! value encoded, split or transformed, and that is not recognised.

use crate::env::Environment;
use crate::model::Promotion;

/// What a value is replaced with.
pub const MASK: &str = "••••";
/// Values shorter than this many characters are not masked.
pub const MIN_MASKED_CHARS: usize = 4;

/// Masks a set of values in text. Build it once per answer, use it on each text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Distinct values of at least [`MIN_MASKED_CHARS`] characters, longest first.
    values: Vec<String>,
}

impl Redactor {
    /// A redactor of `values` (short ones are dropped, see the module's documentation).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut kept: Vec<String> = Vec::new();
        for value in values {
            let lines = value.lines().filter(|l| *l != value);
            for v in std::iter::once(value).chain(lines) {
                if v.chars().count() >= MIN_MASKED_CHARS {
                    kept.push(v.to_owned());
                }
            }
        }
        // Longest first; equal lengths in a fixed order, so that results never depend on
        // the order the values came in.
        kept.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        kept.dedup();
        Redactor { values: kept }
    }

    /// A redactor of every value of the given environments.
    pub fn from_envs<'a>(envs: impl IntoIterator<Item = &'a Environment>) -> Redactor {
        Redactor::new(envs.into_iter().flat_map(|e| e.iter().map(|(_, v)| v)))
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every occurrence of the values replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        if self.values.is_empty() || text.is_empty() {
            return text.to_owned();
        }
        // Byte ranges of every occurrence of every value, overlapping ones included. Both the
        // text and the values are UTF-8, so every match starts and ends on a char boundary.
        let mut hits: Vec<(usize, usize)> = Vec::new();
        for value in &self.values {
            let step = value.chars().next().map_or(1, char::len_utf8);
            let mut from = 0;
            while let Some(i) = text.get(from..).and_then(|rest| rest.find(value.as_str())) {
                let start = from + i;
                hits.push((start, start + value.len()));
                from = start + step;
            }
        }
        if hits.is_empty() {
            return text.to_owned();
        }
        hits.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut iter = hits.into_iter().peekable();
        while let Some((start, mut end)) = iter.next() {
            // Overlapping occurrences (not merely adjacent ones) make one stretch.
            while let Some(&(next_start, next_end)) = iter.peek() {
                if next_start >= end {
                    break;
                }
                end = end.max(next_end);
                iter.next();
            }
            out.push_str(&text[copied..start]);
            out.push_str(MASK);
            copied = end;
        }
        out.push_str(&text[copied..]);
        out
    }

    /// Masks a promotion's recorded output (its `reason` is the engine's, not the app's).
    pub fn redact_promotion(&self, promotion: &mut Promotion) {
        if let Some(output) = &mut promotion.failed_output {
            *output = self.redact(output);
        }
    }
}

/// `text` with every occurrence of `values` (of at least [`MIN_MASKED_CHARS`] characters)
/// replaced by [`MASK`], longest first.
pub fn mask_values<'a>(text: &str, values: impl IntoIterator<Item = &'a str>) -> String {
    Redactor::new(values).redact(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_occurrence_is_masked() {
        assert_eq!(
            mask_values("token=hunter22 again hunter22.", ["hunter22"]),
            "token=•••• again ••••."
        );
        assert_eq!(mask_values("nothing here", ["hunter22"]), "nothing here");
        assert_eq!(mask_values("", ["hunter22"]), "");
    }

    #[test]
    fn short_values_are_left_alone() {
        assert_eq!(
            mask_values("port 80 on, abc", ["80", "on", "abc"]),
            "port 80 on, abc"
        );
        assert_eq!(mask_values("x abcd y", ["abcd"]), "x •••• y");
        // Characters, not bytes: three multi-byte characters are still short.
        assert_eq!(mask_values("ééé", ["ééé"]), "ééé");
        assert!(Redactor::new(["", "a"]).is_empty());
    }

    #[test]
    fn longest_first_so_no_part_of_a_longer_value_shows() {
        let values = ["secret", "secret-and-more"];
        assert_eq!(mask_values("v=secret-and-more!", values), "v=••••!");
        assert_eq!(mask_values("v=secret-and-less", values), "v=••••-and-less");
        // The order they are given in does not matter.
        assert_eq!(
            mask_values("v=secret-and-more!", ["secret-and-more", "secret"]),
            "v=••••!"
        );
    }

    #[test]
    fn overlapping_values_mask_the_whole_stretch() {
        assert_eq!(mask_values("[abcdefgh]", ["abcdef", "defgh"]), "[••••]");
        assert_eq!(mask_values("[defghabc]", ["abcdef", "defgh"]), "[••••abc]");
        // A value overlapping itself.
        assert_eq!(mask_values("aaaaaa", ["aaaa"]), "••••");
        // Adjacent, not overlapping: two masks.
        assert_eq!(mask_values("abcdabcd", ["abcd"]), "••••••••");
    }

    #[test]
    fn multi_byte_text_and_values() {
        assert_eq!(
            mask_values("grüße: Grüße aus Köln ✓", ["Grüße aus Köln"]),
            "grüße: •••• ✓"
        );
        assert_eq!(mask_values("✓✓✓✓✓", ["✓✓✓✓"]), "••••");
        assert_eq!(
            mask_values("日本語のテキスト", ["のテキス"]),
            "日本語••••ト"
        );
        // A value that is the mask's own character is still found, and the result stays UTF-8.
        assert_eq!(mask_values("a••••b", ["••••"]), "a••••b");
    }

    #[test]
    fn values_of_several_lines_are_masked_line_by_line_too() {
        let pem = "-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----";
        let out = mask_values("...\nMIIEvQIBADANBg\n-----END KEY-----\n", [pem]);
        assert!(!out.contains("MIIEvQIBADANBg"), "{out}");
        assert_eq!(mask_values(&format!("key: {pem}"), [pem]), "key: ••••");
    }

    #[test]
    fn from_environments() {
        let env = Environment::from_pairs([
            ("DATABASE_URL".to_owned(), "postgres://u:pw@db/x".to_owned()),
            ("DEBUG".to_owned(), "1".to_owned()),
        ])
        .unwrap();
        let r = Redactor::from_envs([&env, &env]);
        assert_eq!(
            r.redact("connecting to postgres://u:pw@db/x (DEBUG=1)"),
            "connecting to •••• (DEBUG=1)"
        );
    }
}
