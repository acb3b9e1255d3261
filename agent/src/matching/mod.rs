//! Matching: every signature of every rule, compiled together so that each
//! record is scanned once for all of them.
//!
//! Each signature's regex yields one or more required literals (its prefix or
//! suffix, found by `regex-syntax`). One Aho-Corasick automaton per source
//! searches a record for all of those literals at once; only the signatures
//! whose literal occurs run their regex for captures. A signature with no
//! usable literal (say `.*foo`) runs its regex on every record of its sources.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::bytes::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use crate::sources::{Interest, LiteralScanner, Record};

/// A named pattern with named captures, declared by a rule.
#[derive(Debug, Clone)]
pub struct SignatureSpec {
    pub name: String,
    pub pattern: String,
    /// The sources whose records it applies to.
    pub sources: BTreeSet<String>,
}

/// A signature that could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("signature {name}: {message}")]
pub struct SignatureError {
    pub name: String,
    pub message: String,
}

struct Signature {
    name: Arc<str>,
    regex: Regex,
}

#[derive(Default)]
struct SourceMatcher {
    automaton: Option<Arc<AhoCorasick>>,
    /// The same literals for scanning whole chunks (SIMD substring search
    /// or a leftmost-first automaton, which the overlapping one cannot be).
    scanner: Option<LiteralScanner>,
    /// Some literal spans lines, so a chunk-wide search could miss it.
    multiline_literal: bool,
    /// For each literal in the automaton, the signature it belongs to.
    literal_owner: Vec<usize>,
    /// Signatures without a usable literal.
    always: Vec<usize>,
}

/// A signature that matched a record, with its captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub signature: Arc<str>,
    pub captures: BTreeMap<String, String>,
}

/// All signatures, compiled per source.
pub struct Matcher {
    signatures: Vec<Signature>,
    by_source: HashMap<String, SourceMatcher>,
}

const MIN_LITERAL: usize = 3;

impl Matcher {
    /// Compiles the signatures. A bad pattern is an error naming the signature.
    pub fn new(specs: &[SignatureSpec]) -> Result<Matcher, SignatureError> {
        let mut signatures = Vec::with_capacity(specs.len());
        let mut literals_of = Vec::with_capacity(specs.len());
        for spec in specs {
            let err = |message: String| SignatureError { name: spec.name.clone(), message };
            let regex = Regex::new(&spec.pattern).map_err(|e| err(e.to_string()))?;
            literals_of.push(required_literals(&spec.pattern).map_err(|e| err(e.to_string()))?);
            signatures.push(Signature { name: spec.name.as_str().into(), regex });
        }
        // Per source: every literal with the signature it belongs to, and the
        // signatures without one.
        #[derive(Default)]
        struct Collect {
            literals: Vec<Vec<u8>>,
            owners: Vec<usize>,
            always: Vec<usize>,
        }
        let mut by_source: HashMap<String, Collect> = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            for source in &spec.sources {
                let entry = by_source.entry(source.clone()).or_default();
                match &literals_of[i] {
                    Some(lits) => {
                        for lit in lits {
                            entry.literals.push(lit.clone());
                            entry.owners.push(i);
                        }
                    }
                    None => entry.always.push(i),
                }
            }
        }
        let by_source = by_source
            .into_iter()
            .map(|(source, Collect { literals, owners: literal_owner, always })| {
                let multiline_literal = literals.iter().any(|l| l.contains(&b'\n'));
                let build = |kind| {
                    (!literals.is_empty()).then(|| {
                        Arc::new(
                            AhoCorasick::builder()
                                .match_kind(kind)
                                .build(&literals)
                                .expect("literal automaton fits in memory"),
                        )
                    })
                };
                let automaton = build(MatchKind::Standard);
                let scanner = (!literals.is_empty()).then(|| LiteralScanner::new(&literals));
                (source, SourceMatcher { automaton, scanner, multiline_literal, literal_owner, always })
            })
            .collect();
        Ok(Matcher { signatures, by_source })
    }

    /// Which records of `source` can match anything: the record assembler
    /// hands out only those.
    pub fn interest(&self, source: &str) -> Interest {
        match self.by_source.get(source) {
            None => Interest::Nothing,
            Some(sm) if !sm.always.is_empty() || sm.multiline_literal => Interest::All,
            Some(sm) => match &sm.scanner {
                Some(ac) => Interest::Literals(ac.clone()),
                None => Interest::Nothing,
            },
        }
    }

    /// The signatures that match `record`, each at most once, in declaration order.
    pub fn matches(&self, record: &Record, out: &mut Vec<Match>) {
        let Some(sm) = self.by_source.get(&*record.source) else {
            return;
        };
        let mut candidates: Vec<usize> = Vec::new();
        if let Some(ac) = &sm.automaton {
            for m in ac.find_overlapping_iter(&record.bytes) {
                let sig = sm.literal_owner[m.pattern().as_usize()];
                if !candidates.contains(&sig) {
                    candidates.push(sig);
                }
            }
        }
        if candidates.is_empty() && sm.always.is_empty() {
            return;
        }
        candidates.extend(sm.always.iter().copied());
        candidates.sort_unstable();
        candidates.dedup();
        for i in candidates {
            let sig = &self.signatures[i];
            if let Some(caps) = sig.regex.captures(&record.bytes) {
                let captures = sig
                    .regex
                    .capture_names()
                    .flatten()
                    .filter_map(|n| {
                        caps.name(n).map(|m| (n.to_string(), String::from_utf8_lossy(m.as_bytes()).into_owned()))
                    })
                    .collect();
                out.push(Match { signature: sig.name.clone(), captures });
            }
        }
    }
}

/// The literals one of which must occur in any match, or `None` if the
/// pattern has no usable literal (then its regex runs on every record).
///
/// Prefixes are preferred: a log pattern starts with its distinctive part
/// (`UnknownHostException: `), while its end is often shared by every line
/// (`(kafka.server.KafkaServer)`), which would make every line a candidate.
/// Suffixes are the fallback for patterns that start with a class or `.*`.
fn required_literals(pattern: &str) -> Result<Option<Vec<Vec<u8>>>, Box<regex_syntax::Error>> {
    let hir = regex_syntax::ParserBuilder::new().build().parse(pattern).map_err(Box::new)?;
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let mut extractor = Extractor::new();
        extractor.kind(kind);
        let seq = extractor.extract(&hir);
        let Some(lits) = seq.literals() else { continue };
        if lits.is_empty() || lits.len() > 64 || lits.iter().any(|l| l.as_bytes().len() < MIN_LITERAL) {
            continue;
        }
        return Ok(Some(lits.iter().map(|l| l.as_bytes().to_vec()).collect()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, pattern: &str, source: &str) -> SignatureSpec {
        SignatureSpec { name: name.into(), pattern: pattern.into(), sources: [source.to_string()].into() }
    }

    fn record(source: &str, text: &str) -> Record {
        Record {
            source: source.into(),
            file: std::path::Path::new("test.log").into(),
            offset: 0,
            inode: 0,
            bytes: text.as_bytes().to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn captures_come_back_by_name_and_sources_are_respected() {
        let m = Matcher::new(&[
            spec("unknown_host", r"UnknownHostException: (?<host>ip-[0-9.]+)", "kafka_server"),
            spec("wakeup", r"org\.apache\.kafka\.common\.errors\.WakeupException", "consumer_error"),
        ])
        .unwrap();
        let mut out = Vec::new();
        m.matches(
            &record("kafka_server", "x\nCaused by: java.net.UnknownHostException: ip-10.98.2.33: unknown"),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].captures["host"], "ip-10.98.2.33");
        out.clear();
        m.matches(&record("consumer_error", "java.net.UnknownHostException: ip-1.2.3.4"), &mut out);
        assert!(out.is_empty(), "signature of another source does not fire");
    }

    #[test]
    fn literal_free_patterns_still_match() {
        let m = Matcher::new(&[spec("any_digit_error", r"[0-9]+ errors?", "s")]).unwrap();
        let mut out = Vec::new();
        m.matches(&record("s", "found 12 errors"), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn literals_are_extracted() {
        assert_eq!(
            required_literals(r"UnknownHostException: (?<h>x)").unwrap().unwrap()[0],
            b"UnknownHostException: x"
        );
        assert!(required_literals(r".*").unwrap().is_none());
        assert_eq!(required_literals(r".*UnknownHost").unwrap().unwrap()[0], b"UnknownHost", "suffix as fallback");
        let fatal = required_literals(r"(?:Fatal error|FATAL .*\(kafka\.)").unwrap().unwrap();
        assert!(!fatal.contains(&b"(kafka.".to_vec()), "a suffix every Kafka line has is not used: {fatal:?}");
        assert!(Matcher::new(&[spec("bad", "(", "s")]).err().unwrap().to_string().contains("signature bad"));
    }
}

/// A matched signature on a record: what rules receive. Kept with an
/// approval request so the rule can be asked again after a re-check.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub signature: Arc<str>,
    pub source: Arc<str>,
    pub file: Arc<std::path::Path>,
    pub captures: BTreeMap<String, String>,
    /// The whole record, as text.
    pub text: String,
    /// Byte offset of the record in its file.
    pub offset: u64,
    /// The file's inode (see `Record::inode`).
    #[serde(default)]
    pub inode: u64,
    /// Event time, ms since the epoch.
    pub at: i64,
    pub truncated: bool,
}

impl Event {
    /// The event for signature match `m` on `record` at time `at` (ms).
    pub fn new(record: &Record, m: &Match, at: i64) -> Event {
        Event {
            signature: m.signature.clone(),
            source: record.source.clone(),
            file: record.file.clone(),
            captures: m.captures.clone(),
            text: record.text(),
            offset: record.offset,
            inode: record.inode,
            at,
            truncated: record.truncated,
        }
    }

    /// An event no log record carries: a probe's finding (`source` is the
    /// probe source, the file `(probe)`), an operator's playbook run.
    pub fn synthetic(
        signature: &str,
        source: &str,
        captures: BTreeMap<String, String>,
        text: String,
        at: i64,
    ) -> Event {
        Event {
            signature: signature.into(),
            source: source.into(),
            file: std::path::Path::new(&format!("({source})")).into(),
            captures,
            text,
            offset: 0,
            inode: 0,
            at,
            truncated: false,
        }
    }
}
