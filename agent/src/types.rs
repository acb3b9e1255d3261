//! Validated values that cross from hostile input (log captures, rule output)
//! into actions. Each type is checked once, at construction, and trusted after.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Why a value was refused. The message names the kind of value and shows a
/// bounded, escaped excerpt of the offending input so an audit entry can say
/// exactly what was rejected without copying a 10 kB capture into it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {excerpt} is not valid: {why}")]
pub struct InvalidValue {
    pub what: &'static str,
    pub excerpt: String,
    pub why: &'static str,
}

impl InvalidValue {
    fn new(what: &'static str, input: &str, why: &'static str) -> Self {
        InvalidValue { what, excerpt: excerpt(input), why }
    }
}

/// A short, escaped, quoted rendering of untrusted text for messages.
pub fn excerpt(input: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = input.chars().take(MAX).collect::<String>().escape_debug().to_string();
    if input.chars().count() > MAX {
        out.push_str(&format!("… ({} bytes)", input.len()));
    }
    format!("\"{out}\"")
}

/// A value from outside (a capture, a request field) as the journal shows
/// it: as it is when short and printable, an escaped excerpt otherwise.
pub fn shown(input: &str) -> String {
    match input.len() <= 200 && !input.chars().any(char::is_control) {
        true => input.to_string(),
        false => excerpt(input),
    }
}

/// Text from logs made safe to print on a terminal: control characters
/// (escape sequences that could move the cursor, rewrite earlier lines or
/// retitle the window) and bidirectional overrides are shown escaped;
/// newlines and tabs stay.
pub fn terminal_safe(text: &str) -> String {
    let risky = |c: char| {
        (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(risky) {
        return text.to_string();
    }
    text.chars().map(|c| if risky(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// Text from logs made safe for one line of a mail header or a listing:
/// every control character (newlines and tabs too, which would start a
/// forged header or line) and bidirectional override shown escaped, and the
/// text cut at `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let risky = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            c if risky(c) => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

/// A `String` newtype that only a validating `parse` can build: serialises as
/// the plain string and is re-validated when read back (from the state
/// directory, say), so a hand-edited file cannot smuggle in a bad value.
macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, |$s:ident| $parse:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from($s: String) -> Result<Self, InvalidValue> {
                $parse
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated_string!(
    /// A DNS host name as `/etc/hosts` accepts it (RFC 1123 labels).
    HostName, |s| HostName::parse(&s)
);

impl HostName {
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let bad = |why| InvalidValue::new("host name", input, why);
        if input.is_empty() {
            return Err(bad("it is empty"));
        }
        if input.len() > 253 {
            return Err(bad("it is longer than 253 characters"));
        }
        for label in input.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(bad("each dot-separated label must be 1 to 63 characters"));
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(bad("only letters, digits, '-' and '.' are allowed"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a label cannot start or end with '-'"));
            }
        }
        Ok(HostName(input.to_ascii_lowercase()))
    }
}

/// Parses a dotted-quad IPv4 address strictly (no leading zeros, no short forms).
pub fn parse_ipv4(input: &str) -> Result<Ipv4Addr, InvalidValue> {
    input
        .parse::<Ipv4Addr>()
        .map_err(|_| InvalidValue::new("IPv4 address", input, "expected four decimal octets like 10.98.2.33"))
}

/// An address another host (a Kafka broker) can have: a unicast address,
/// not this host's loopback, not "any", not broadcast, multicast, link-local
/// (where cloud metadata services live) or reserved. A hosts entry with one
/// of those would point a name at nothing or at the wrong machine.
pub fn parse_host_address(input: &str) -> Result<Ipv4Addr, InvalidValue> {
    let ip = parse_ipv4(input)?;
    let why = if ip.is_unspecified() {
        "0.0.0.0 is no host's address"
    } else if ip.is_loopback() {
        "a loopback address is this host, not a broker elsewhere"
    } else if ip.is_broadcast() {
        "255.255.255.255 is the broadcast address"
    } else if ip.is_multicast() {
        "a multicast address is no host's address"
    } else if ip.is_link_local() {
        "a link-local address (169.254.x.x) is no broker's address"
    } else if ip.octets()[0] >= 240 || ip.octets()[0] == 0 {
        "a reserved address is no host's address"
    } else {
        return Ok(ip);
    };
    Err(InvalidValue::new("host address", input, why))
}

validated_string!(
    /// A name from the configuration or a rule: a source, a service, a
    /// properties file, a signature. ASCII letters, digits, `_` and `-`, at most
    /// 64 characters, starting with a letter.
    Name, |s| Name::parse("name", &s)
);

impl Name {
    pub fn parse(what: &'static str, input: &str) -> Result<Self, InvalidValue> {
        let bad = |why| InvalidValue::new(what, input, why);
        if input.is_empty() || input.len() > 64 {
            return Err(bad("it must be 1 to 64 characters"));
        }
        if !input.as_bytes()[0].is_ascii_alphabetic() {
            return Err(bad("it must start with a letter"));
        }
        if !input.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(bad("only letters, digits, '_' and '-' are allowed"));
        }
        Ok(Name(input.to_string()))
    }
}

validated_string!(
    /// A key in a Java `.properties` file, such as `max.poll.records`.
    PropertyKey, |s| PropertyKey::parse(&s)
);

impl PropertyKey {
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let bad = |why| InvalidValue::new("property key", input, why);
        if input.is_empty() || input.len() > 128 {
            return Err(bad("it must be 1 to 128 characters"));
        }
        if !input.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(bad("only letters, digits, '.', '_' and '-' are allowed"));
        }
        Ok(PropertyKey(input.to_string()))
    }
}

validated_string!(
    /// A value for a `.properties` file: one line of printable text, no escapes
    /// that would change the meaning of the file.
    PropertyValue, |s| PropertyValue::parse(&s)
);

impl PropertyValue {
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let bad = |why| InvalidValue::new("property value", input, why);
        if input.len() > 1024 {
            return Err(bad("it is longer than 1024 characters"));
        }
        if input.chars().any(|c| c.is_control() || c == '\\') {
            return Err(bad("control characters and backslashes are not allowed"));
        }
        Ok(PropertyValue(input.trim().to_string()))
    }
}

validated_string!(
    /// A SQL identifier (table, column, schema) as the pipeline's schemas use
    /// them: a letter or `_`, then letters, digits, `_`; at most 63 bytes (the
    /// PostgreSQL limit). Always quoted when put into SQL.
    SqlIdent, |s| SqlIdent::parse(&s)
);

impl SqlIdent {
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let bad = |why| InvalidValue::new("SQL identifier", input, why);
        if input.is_empty() || input.len() > 63 {
            return Err(bad("it must be 1 to 63 characters"));
        }
        if !(input.as_bytes()[0].is_ascii_alphabetic() || input.starts_with('_')) {
            return Err(bad("it must start with a letter or '_'"));
        }
        if !input.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(bad("only letters, digits and '_' are allowed"));
        }
        Ok(SqlIdent(input.to_string()))
    }

    /// Double-quoted for SQL (the validation leaves nothing to escape).
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

/// A local time for people, from ms since the epoch.
pub fn human_time(ms: i64) -> String {
    use chrono::TimeZone;
    chrono::Local
        .timestamp_millis_opt(ms)
        .single()
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S %Z").to_string())
}

/// A setting that cannot be used, or two that do not fit together; the
/// message names the section and the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<String> for Invalid {
    fn from(message: String) -> Invalid {
        Invalid(message)
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Invalid {
        Invalid(message.into())
    }
}

/// Local time in RFC 3339 with milliseconds, as every entry carries it.
pub fn now_rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_are_shown_not_sent() {
        assert_eq!(terminal_safe("a\x1b]0;owned\x07b\n\tc"), "a\\u{1b}]0;owned\\u{7}b\n\tc");
        assert_eq!(terminal_safe("plain"), "plain");
    }

    #[test]
    fn one_line_escapes_every_control_and_cuts() {
        assert_eq!(one_line("a\x1b]0;x\x07\r\nSubject: b\tc", 100), "a\\u{1b}]0;x\\u{7}\\u{d}\\nSubject: b\\u{9}c");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("\u{202e}gpj", 10), "\\u{202e}gpj");
    }

    #[test]
    fn addresses_no_broker_can_have_are_refused() {
        for bad in [
            "0.0.0.0",
            "255.255.255.255",
            "127.0.0.1",
            "127.1.2.3",
            "224.0.0.1",
            "239.1.1.1",
            "169.254.169.254",
            "240.0.0.1",
            "0.1.2.3",
        ] {
            assert!(parse_host_address(bad).is_err(), "{bad} accepted");
        }
        for good in ["10.98.2.33", "172.16.0.1", "192.168.1.10", "8.8.8.8"] {
            assert!(parse_host_address(good).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn host_names_from_k1_are_accepted() {
        assert_eq!(HostName::parse("ip-10.98.2.33").unwrap().as_str(), "ip-10.98.2.33");
        assert_eq!(HostName::parse("ip-10-98-2-33").unwrap().as_str(), "ip-10-98-2-33");
    }

    #[test]
    fn hostile_host_names_are_refused() {
        assert!(HostName::parse("ip-1.2.3.4;rm -rf /").is_err());
        assert!(HostName::parse("a\nb").is_err());
        assert!(HostName::parse(&"a".repeat(10_000)).is_err());
        assert!(HostName::parse("-x").is_err());
        assert!(HostName::parse("").is_err());
        let err = HostName::parse(&"a".repeat(10_000)).unwrap_err().to_string();
        assert!(err.len() < 300, "message stays short: {err}");
    }

    #[test]
    fn ipv4_is_strict() {
        assert!(parse_ipv4("10.98.2.33").is_ok());
        assert!(parse_ipv4("10.98.2.333").is_err());
        assert!(parse_ipv4("10.98.2").is_err());
        assert!(parse_ipv4("010.98.2.3").is_err());
    }

    #[test]
    fn sql_identifiers() {
        assert_eq!(SqlIdent::parse("t_item_user").unwrap().quoted(), "\"t_item_user\"");
        for bad in ["review\"; DROP TABLE x; --", "a b", "1abc", "", "x;y", &"a".repeat(64)] {
            assert!(SqlIdent::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_property_parts() {
        assert!(Name::parse("service", "kafka").is_ok());
        assert!(Name::parse("service", "../etc").is_err());
        assert!(PropertyKey::parse("max.poll.records").is_ok());
        assert!(PropertyKey::parse("a=b").is_err());
        assert!(PropertyValue::parse("250").is_ok());
        assert!(PropertyValue::parse("1\n2").is_err());
    }
}
