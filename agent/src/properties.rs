//! Java `.properties` text as `java.util.Properties.load` reads it: the one
//! parser for every file of that kind the agent reads (the broker's
//! `server.properties`, the consumer's and canal's files). Reading it any
//! other way would let the agent believe a value the program does not use:
//! a continued line (`advertised.listeners=PLAINTEXT://\` then the address
//! on the next line) or an escaped separator changes what Java sees.

/// One key the text defines, where, and the value Java reads for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub key: String,
    pub value: String,
    /// The physical lines (0-based, inclusive) the definition spans: more
    /// than one when it is continued with a trailing backslash.
    pub lines: (usize, usize),
    /// Where the value starts in the first physical line (bytes), so that an
    /// edit of a one-line definition keeps the key and spacing as they were.
    pub value_at: usize,
}

/// Every definition in `text`, in order (a later one of the same key wins).
pub fn definitions(text: &str) -> Vec<Definition> {
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first = i;
        let line = lines[i];
        i += 1;
        let body = line.trim_start_matches([' ', '\t', '\u{c}']);
        if body.is_empty() || body.starts_with('#') || body.starts_with('!') {
            continue; // a comment is never continued
        }
        let indent = line.len() - body.len();
        // The logical line: every physical line that ends in an odd number
        // of backslashes continues on the next, without its leading blanks.
        let mut logical = String::from(body);
        while ends_continued(&logical) && i < lines.len() {
            logical.pop();
            logical.push_str(lines[i].trim_start_matches([' ', '\t', '\u{c}']));
            i += 1;
        }
        if ends_continued(&logical) {
            logical.pop(); // a backslash at the end of the text is dropped
        }
        let (key, value, raw_value_at) = split_entry(&logical);
        // The value's offset is meaningful only on a one-line definition.
        let value_at = if i - first == 1 { indent + raw_value_at } else { line.len() };
        out.push(Definition { key, value, lines: (first, i - 1), value_at });
    }
    out
}

/// The value `key` has (the last definition wins, as in Java), if it is set.
pub fn value(text: &str, key: &str) -> Option<String> {
    definitions(text).into_iter().rev().find(|d| d.key == key).map(|d| d.value)
}

fn ends_continued(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Key, value (both unescaped) and where the raw value starts.
fn split_entry(logical: &str) -> (String, String, usize) {
    let bytes = logical.as_bytes();
    let mut end = 0;
    while end < bytes.len() {
        match bytes[end] {
            b'\\' => end += 2,
            b'=' | b':' | b' ' | b'\t' | b'\x0c' => break,
            _ => end += 1,
        }
    }
    let end = end.min(bytes.len());
    let mut at = end;
    while at < bytes.len() && matches!(bytes[at], b' ' | b'\t' | b'\x0c') {
        at += 1;
    }
    if at < bytes.len() && matches!(bytes[at], b'=' | b':') {
        at += 1;
        while at < bytes.len() && matches!(bytes[at], b' ' | b'\t' | b'\x0c') {
            at += 1;
        }
    }
    (unescape(&logical[..end]), unescape(&logical[at..]), at)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                // Java refuses a malformed \u; the replacement character
                // keeps the value visibly wrong rather than silently other.
                out.push(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).unwrap_or('\u{fffd}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_java_reads() {
        let text = "# advertised.listeners=PLAINTEXT://1.1.1.1:9092\n\
                    ! also a comment \\\n\
                    broker.id = 1\n\
                    advertised.listeners=PLAINTEXT://\\\n    10.98.2.33:9092\n\
                    log.dirs : /data/kafka\n\
                    key\\=with\\:seps  value with  spaces\n\
                    max.poll.records 250\r\n\
                    uni=caf\\u00e9\n\
                    empty\n";
        assert_eq!(value(text, "advertised.listeners").as_deref(), Some("PLAINTEXT://10.98.2.33:9092"));
        assert_eq!(value(text, "broker.id").as_deref(), Some("1"));
        assert_eq!(value(text, "log.dirs").as_deref(), Some("/data/kafka"));
        assert_eq!(value(text, "key=with:seps").as_deref(), Some("value with  spaces"));
        assert_eq!(value(text, "max.poll.records").as_deref(), Some("250"));
        assert_eq!(value(text, "uni").as_deref(), Some("café"));
        assert_eq!(value(text, "empty").as_deref(), Some(""));
        // The commented-out line and the comment ending in a backslash
        // define nothing, and the comment does not swallow `broker.id`.
        let defs = definitions(text);
        assert_eq!(defs.iter().filter(|d| d.key == "advertised.listeners").count(), 1);
        let adv = defs.iter().find(|d| d.key == "advertised.listeners").unwrap();
        assert_eq!(adv.lines, (3, 4));
        let id = defs.iter().find(|d| d.key == "broker.id").unwrap();
        assert_eq!((id.lines, id.value_at), ((2, 2), "broker.id = ".len()));
    }

    #[test]
    fn a_continuation_line_is_not_a_definition_of_its_own() {
        let text = "note=first \\\nmax.poll.records=1\nmax.poll.records=2\\\\\n";
        assert_eq!(value(text, "note").as_deref(), Some("first max.poll.records=1"));
        // An even number of backslashes ends the line: an escaped backslash.
        assert_eq!(value(text, "max.poll.records").as_deref(), Some("2\\"));
        assert_eq!(value("a=b\\", "a").as_deref(), Some("b"), "a backslash at the end of the text");
    }

    #[test]
    fn last_definition_wins() {
        assert_eq!(value("a=1\na=2\n", "a").as_deref(), Some("2"));
        assert_eq!(value("a=1\n", "b"), None);
    }
}
