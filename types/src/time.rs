//! Times as the Console and the CLI show them: relative ("1 week ago"), with the exact time on hover.

/// `created` and `now` in milliseconds since the epoch → "just now", "5 minutes ago",
/// "1 week ago", like `convox releases`.
pub fn ago(created_ms: i64, now_ms: i64) -> String {
    let secs = (now_ms - created_ms).max(0) / 1000;
    match amount(secs) {
        Some(words) => format!("{words} ago"),
        None => "just now".into(),
    }
}

/// A time to come → "in 5 minutes", "in 4 weeks" (and "now" when it is under 10 seconds
/// away); a time gone by as [`ago`].
pub fn until(at_ms: i64, now_ms: i64) -> String {
    if at_ms < now_ms {
        return ago(at_ms, now_ms);
    }
    match amount((at_ms - now_ms) / 1000) {
        Some(words) => format!("in {words}"),
        None => "now".into(),
    }
}

/// Seconds in words ("5 minutes"), `None` under 10 seconds.
fn amount(secs: i64) -> Option<String> {
    let (n, unit) = match secs {
        i64::MIN..=9 => return None,
        10..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        86_400..=604_799 => (secs / 86_400, "day"),
        604_800..=2_591_999 => (secs / 604_800, "week"),
        2_592_000..=31_535_999 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    Some(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }))
}

/// Milliseconds since the epoch → `2026-11-26 13:50:07 UTC`.
pub fn exact(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative() {
        let now = 1_800_000_000_000;
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now + 5000, now), "just now");
        assert_eq!(ago(now - 30_000, now), "30 seconds ago");
        assert_eq!(ago(now - 60_000, now), "1 minute ago");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3 hours ago");
        assert_eq!(ago(now - 7 * 86_400_000, now), "1 week ago");
        assert_eq!(ago(now - 400 * 86_400_000, now), "1 year ago");
    }

    #[test]
    fn to_come() {
        let now = 1_800_000_000_000;
        assert_eq!(until(now, now), "now");
        assert_eq!(until(now + 5 * 60_000, now), "in 5 minutes");
        assert_eq!(until(now + 29 * 86_400_000, now), "in 4 weeks");
        assert_eq!(until(now + 30 * 86_400_000, now), "in 1 month");
        assert_eq!(until(now + 90 * 86_400_000, now), "in 3 months");
        assert_eq!(until(now - 2 * 86_400_000, now), "2 days ago");
    }

    #[test]
    fn exact_times() {
        assert_eq!(exact(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(exact(784_111_777_000), "1994-11-06 08:49:37 UTC");
        assert_eq!(exact(1_795_699_740_453), "2026-11-26 13:29:00 UTC");
    }
}
