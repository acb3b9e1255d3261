//! When a record says it happened: the timestamp at its start, in the two
//! layouts the pipeline's software writes.

/// Reads `2026-11-01 10:00:00.123` or `[2026-11-01 10:00:00,123]` at the
/// start of a record as local time, in ms since the epoch.
pub fn parse_log_time(bytes: &[u8]) -> Option<i64> {
    use chrono::{Local, NaiveDateTime, TimeZone};
    let b = bytes.strip_prefix(b"[").unwrap_or(bytes);
    let head = std::str::from_utf8(b.get(..19)?).ok()?;
    let t = NaiveDateTime::parse_from_str(head, "%Y-%m-%d %H:%M:%S").ok()?;
    let millis = match (b.get(19), b.get(20..23)) {
        (Some(b'.' | b','), Some(ms)) if ms.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(ms).ok()?.parse::<i64>().ok()?
        }
        _ => 0,
    };
    Some(Local.from_local_datetime(&t).earliest()?.timestamp_millis() + millis)
}

/// `2026-11-01 10:00:00…` or `[2026-11-01 10:00:00…` (logback, log4j,
/// Kafka); Tomcat 8+'s `30-Nov-2026 10:00:00.001 SEVERE …`; Tomcat 7's JUL
/// `Nov 30, 2026 10:00:00 AM …`.
pub fn starts_with_timestamp(line: &[u8]) -> bool {
    let l = line.strip_prefix(b"[").unwrap_or(line);
    let digits = |r: std::ops::Range<usize>| l.len() >= r.end && l[r].iter().all(u8::is_ascii_digit);
    let month = |r: std::ops::Range<usize>| {
        l.len() >= r.end && l[r.start].is_ascii_uppercase() && l[r.start + 1..r.end].iter().all(u8::is_ascii_lowercase)
    };
    let iso = l.len() >= 19
        && digits(0..4)
        && l[4] == b'-'
        && digits(5..7)
        && l[7] == b'-'
        && digits(8..10)
        && (l[10] == b' ' || l[10] == b'T')
        && digits(11..13)
        && l[13] == b':';
    let tomcat = l.len() >= 20
        && digits(0..2)
        && l[2] == b'-'
        && month(3..6)
        && l[6] == b'-'
        && digits(7..11)
        && l[11] == b' '
        && digits(12..14)
        && l[14] == b':';
    let jul = l.len() >= 13
        && month(0..3)
        && l[3] == b' '
        && digits(4..6)
        && l[6] == b','
        && l[7] == b' '
        && digits(8..12)
        && l[12] == b' ';
    iso || tomcat || jul
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times_parse_in_both_formats() {
        let a = parse_log_time(b"2026-11-01 10:00:00.123 [main] INFO").unwrap();
        let b = parse_log_time(b"[2026-11-01 10:00:00,123] INFO").unwrap();
        assert_eq!(a, b);
        assert_eq!(parse_log_time(b"2026-11-01 10:00:01 x").unwrap() - a, 877);
        assert!(parse_log_time(b"no time").is_none());
    }
}
