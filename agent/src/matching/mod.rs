//! Matching: every signature of every rule, compiled together so that each
//! record is scanned once for all of them.
//!
//! Each signature yields a few literals one of which every match contains
//! (its [`literals::needles`], from anywhere in the pattern, factored). A
//! source's chunks are scanned for all of its signatures' needles at once
//! (SIMD: `memmem` or Teddy); one Aho-Corasick automaton per source then
//! tells, on a record with a hit, which signatures can match, and only those
//! run their regex for captures. A signature with no usable literal (say
//! `.*foo`) runs its regex on every record of its sources; `check` names it.

pub mod literals;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::bytes::Regex;

use crate::sources::{Interest, LiteralScanner, Record};
use literals::Needles;

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

/// A signature that slows the scan of its sources, and why: said by `check`
/// so that it is found before a backlog is.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowSignature {
    pub name: String,
    pub sources: BTreeSet<String>,
    pub why: String,
}

struct Signature {
    name: Arc<str>,
    pattern: String,
    /// The sources it applies to (for what `check` says).
    sources: BTreeSet<String>,
    /// Compiled the first time a record is a candidate for it (a replay of
    /// one source needs few of them); `None` if it cannot be (its program
    /// is over the size limit), which is said once.
    regex: std::sync::OnceLock<Option<Regex>>,
}

impl Signature {
    fn regex(&self) -> Option<&Regex> {
        self.regex
            .get_or_init(|| match signature_regex(&self.pattern) {
                Ok(re) => Some(re),
                Err(e) => {
                    tracing::error!(signature = %self.name, "signature cannot be compiled, it matches nothing: {e}");
                    None
                }
            })
            .as_ref()
    }
}

/// One source's part of the matcher. Its needles and searchers are worked
/// out the first time the source is read: a replay reads one source of
/// seven, and doing it for all of them was half of its start-up.
#[derive(Default)]
struct SourceMatcher {
    /// The signatures that apply to the source, in declaration order.
    signatures: Vec<usize>,
    built: std::sync::OnceLock<Searchers>,
}

struct Searchers {
    /// Which signatures a record with a hit can match: every needle of
    /// every signature of the source…
    automaton: Option<AhoCorasick>,
    /// …and, for each, the signature it belongs to.
    literal_owner: Vec<usize>,
    /// Signatures without a usable literal.
    always: Vec<usize>,
    /// What chunks are scanned for: the needles, each cut to its rarest
    /// start, none containing another.
    scanner: Option<LiteralScanner>,
    /// Some literal spans lines, so a chunk-wide search could miss it.
    multiline_literal: bool,
}

impl SourceMatcher {
    fn searchers(&self, all: &[Signature]) -> &Searchers {
        self.built.get_or_init(|| {
            let (mut literals, mut literal_owner, mut always) = (Vec::new(), Vec::new(), Vec::new());
            for &i in &self.signatures {
                match signature_needles(&all[i].pattern) {
                    Some(n) => {
                        literal_owner.extend(std::iter::repeat_n(i, n.literals.len()));
                        literals.extend(n.literals);
                    }
                    None => always.push(i),
                }
            }
            let scan = literals::minimal(literals.iter().map(|l| literals::cut(l).to_vec()).collect());
            let automaton = (!literals.is_empty()).then(|| {
                // Records are short: an NFA is as quick on them as a DFA, and
                // much quicker to build.
                AhoCorasick::builder()
                    .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
                    .match_kind(MatchKind::Standard)
                    .build(&literals)
                    .expect("literal automaton fits in memory")
            });
            Searchers {
                automaton,
                literal_owner,
                always,
                multiline_literal: scan.iter().any(|l| l.contains(&b'\n')),
                scanner: (!scan.is_empty()).then(|| LiteralScanner::new(&scan)),
            }
        })
    }
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

impl Matcher {
    /// Checks the signatures. A bad pattern is an error naming the signature.
    pub fn new(specs: &[SignatureSpec]) -> Result<Matcher, SignatureError> {
        let mut signatures = Vec::with_capacity(specs.len());
        let mut by_source: HashMap<String, SourceMatcher> = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            check_pattern(&spec.pattern)
                .map_err(|e| SignatureError { name: spec.name.clone(), message: e.to_string() })?;
            signatures.push(Signature {
                name: spec.name.as_str().into(),
                pattern: spec.pattern.clone(),
                sources: spec.sources.clone(),
                regex: Default::default(),
            });
            for source in &spec.sources {
                by_source.entry(source.clone()).or_default().signatures.push(i);
            }
        }
        Ok(Matcher { signatures, by_source })
    }

    /// Compiles every signature now, as `check` and the daemon's start do
    /// (a replay compiles only those a record needs): those that cannot be.
    pub fn compile_all(&self) -> Vec<SignatureError> {
        self.signatures
            .iter()
            .filter_map(|s| {
                // Set here, so that the one who asked says it (not also the
                // lazy compile).
                let compiled = signature_regex(&s.pattern);
                let _ = s.regex.set(compiled.as_ref().ok().cloned());
                let e = compiled.err()?;
                Some(SignatureError { name: s.name.to_string(), message: e.to_string() })
            })
            .collect()
    }

    /// The signatures that make their sources' scan slow.
    pub fn slow(&self) -> Vec<SlowSignature> {
        self.signatures
            .iter()
            .filter_map(|s| {
                let why = slowness(signature_needles(&s.pattern).as_ref())?;
                Some(SlowSignature { name: s.name.to_string(), sources: s.sources.clone(), why })
            })
            .collect()
    }

    /// What the chunks of `source` are scanned for (for `check --signatures`).
    pub fn scanned(&self, source: &str) -> Option<&LiteralScanner> {
        self.by_source.get(source)?.searchers(&self.signatures).scanner.as_ref()
    }

    /// Which records of `source` can match anything: the record assembler
    /// hands out only those.
    pub fn interest(&self, source: &str) -> Interest {
        match self.by_source.get(source) {
            None => Interest::Nothing,
            Some(sm) => match sm.searchers(&self.signatures) {
                s if !s.always.is_empty() || s.multiline_literal => Interest::All,
                s => match &s.scanner {
                    Some(ac) => Interest::Literals(ac.clone()),
                    None => Interest::Nothing,
                },
            },
        }
    }

    /// The signatures that match `record`, each at most once, in declaration order.
    pub fn matches(&self, record: &Record, out: &mut Vec<Match>) {
        let Some(sm) = self.by_source.get(&*record.source) else {
            return;
        };
        let sm = sm.searchers(&self.signatures);
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
            let Some(regex) = sig.regex() else { continue };
            if let Some(caps) = regex.captures(&record.bytes) {
                let captures = regex
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

/// A signature's pattern parsed as the regex crate parses it: what is wrong
/// with it, if anything, without the cost of compiling it.
pub fn check_pattern(pattern: &str) -> Result<(), Box<regex_syntax::Error>> {
    parse(pattern).map(drop)
}

/// The names of a pattern's capture groups, from its parse alone.
pub fn capture_names(pattern: &str) -> Result<Vec<String>, Box<regex_syntax::Error>> {
    use regex_syntax::hir::{Hir, HirKind};
    fn walk(hir: &Hir, out: &mut Vec<String>) {
        match hir.kind() {
            HirKind::Capture(c) => {
                out.extend(c.name.as_deref().map(str::to_string));
                walk(&c.sub, out);
            }
            HirKind::Concat(all) | HirKind::Alternation(all) => all.iter().for_each(|h| walk(h, out)),
            HirKind::Repetition(r) => walk(&r.sub, out),
            _ => {}
        }
    }
    let mut names = Vec::new();
    walk(&parse(pattern)?, &mut names);
    Ok(names)
}

fn parse(pattern: &str) -> Result<regex_syntax::hir::Hir, Box<regex_syntax::Error>> {
    regex_syntax::ParserBuilder::new().nest_limit(250).build().parse(pattern).map_err(Box::new)
}

/// A signature's needles ([`literals::needles`]; `None` for a pattern that
/// needs no literal, or does not parse), worked out once per pattern and
/// process: the matchers of a daemon's reloads and of a rule test's many
/// flows share them.
fn signature_needles(pattern: &str) -> Option<Needles> {
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Needles>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(done) = cache.lock().expect("needles cache lock").get(pattern) {
        return done.clone();
    }
    let done = parse(pattern).ok().and_then(|hir| literals::needles(&hir));
    let mut map = cache.lock().expect("needles cache lock");
    if map.len() >= 1024 {
        map.clear();
    }
    map.insert(pattern.to_string(), done.clone());
    done
}

/// A signature's regex, compiled once per process: each flow of a rule test
/// or a reload compiles the same ones.
/// Bounded like the rules' `re_find` cache, for a daemon whose rules are
/// edited and reloaded.
pub fn signature_regex(pattern: &str) -> Result<Regex, regex::Error> {
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(re) = cache.lock().expect("signature regex cache lock").get(pattern) {
        return Ok(re.clone());
    }
    let re = Regex::new(pattern)?;
    let mut map = cache.lock().expect("signature regex cache lock");
    if map.len() >= 1024 {
        map.clear();
    }
    map.insert(pattern.to_string(), re.clone());
    Ok(re)
}

/// Why a signature's needles make a slow scan, if they do.
fn slowness(needles: Option<&Needles>) -> Option<String> {
    match needles {
        None => Some("some match needs no literal at all, so its regex runs on every record of these sources".into()),
        Some(n) => n.slowness(),
    }
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
    fn a_pattern_too_big_to_compile_is_said_and_matches_nothing() {
        // It parses; only compiling it finds it over the size limit.
        let m = Matcher::new(&[spec("huge", r"UnknownHost(?:\w{1000}){1000}", "s"), spec("ok", "UnknownHost", "s")])
            .unwrap();
        let mut out = Vec::new();
        m.matches(&record("s", "java.net.UnknownHostException: x"), &mut out);
        assert_eq!(out.iter().map(|m| &*m.signature).collect::<Vec<_>>(), ["ok"], "the other still matches");
        let errors = m.compile_all();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().starts_with("signature huge: "), "{}", errors[0]);
    }

    #[test]
    fn capture_names_come_from_the_parse() {
        assert_eq!(capture_names(r"a(?<x>b)(c)(?:(?<y>d)|e)*").unwrap(), ["x", "y"]);
        assert!(capture_names("(").is_err());
    }

    #[test]
    fn bad_patterns_are_named_and_slow_ones_said() {
        assert!(Matcher::new(&[spec("bad", "(", "s")]).err().unwrap().to_string().contains("signature bad"));
        let m = Matcher::new(&[spec("anything", ".*", "s"), spec("fine", "UnknownHostException", "s")]).unwrap();
        assert_eq!(m.slow().len(), 1);
        assert_eq!(m.slow()[0].name, "anything");
        let m = Matcher::new(&[spec("common", "Exception", "s")]).unwrap();
        assert!(m.slow()[0].why.contains("common"), "{:?}", m.slow());
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
