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
