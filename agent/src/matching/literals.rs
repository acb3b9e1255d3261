//! The literals a signature's matches must contain, chosen for the chunk scan.
//!
//! A backlog is replayed at the speed of one pass over each chunk looking for
//! a source's literals. That pass runs on SIMD (memchr's `memmem`, or Teddy
//! for a few literals) only while the literals are few and start with rare
//! bytes; past a few dozen, or with common starts, it falls back to an
//! automaton that walks byte by byte, and a source's replay drops to a tenth
//! of `rg`. The regex's own prefix or suffix is not that set: the wordings of
//! every version, each case variant of an `(?i:…)`, add literals with every
//! release. So each signature's literals are chosen from anywhere in its
//! pattern (the rarest required piece, not only the first), then factored
//! (`Commit ` stands for the commit-failure wordings that contain it), and
//! each is cut to the part that starts with its rarest bytes.
//!
//! Rarity is estimated from the bytes (a table of how common each kind of
//! byte is in log text, in the spirit of `memchr`'s ranking), with the words
//! every log line is made of (`Exception`, `error`, `kafka`…) counted as one
//! common token: a literal that is only such a word would make most records
//! candidates.

use regex_syntax::hir::{Class, Hir, HirKind};

/// The literals one of which occurs in every match of a signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Needles {
    pub literals: Vec<Vec<u8>>,
    cost: f64,
}

/// A literal must carry this much surprise (see [`bits`]) to stand for
/// others or to be cut: about seven lower-case letters, or `errno = 1236`'s
/// half. Lower, and words such as `create ` or `initial` (rare by their
/// letters, common in a Java log) would be chosen.
pub const MIN_BITS: f64 = 30.0;
/// What scanning for one more literal costs, in the units of
/// [`Needles::cost`]: as much as the false hits of a literal of 28 bits
/// (Teddy slows down as its buckets fill).
const PER_LITERAL: f64 = 1.0 / (1u64 << 28) as f64;
/// A set of needles costing more than this makes its sources slow: it is
/// as many false hits as sixteen literals at [`MIN_BITS`].
const SLOW_COST: f64 = 16.0 / (1u64 << 27) as f64;
/// Teddy takes up to this many literals; beyond, the scan walks bytes.
pub const MAX_NEEDLES: usize = 32;

/// A finite language is kept up to this many strings…
const EXACT_MAX: usize = 64;
/// …of at most this many bytes.
const EXACT_LEN_MAX: usize = 256;
/// A class is expanded to its characters up to this many (`[Rr]`, the case
/// variants `(?i:k)` has).
const CLASS_MAX: usize = 4;

impl Needles {
    /// The expected false hits per byte scanned (each literal's chance to
    /// occur by accident, `2^-bits`), plus a price per literal: the lower,
    /// the faster a chunk is scanned for them.
    pub fn cost(&self) -> f64 {
        self.cost
    }

    fn new(literals: Vec<Vec<u8>>) -> Needles {
        let literals = minimal(literals);
        let cost = literals.iter().map(|l| (-bits(l)).exp2() + PER_LITERAL).sum();
        Needles { literals, cost }
    }

    /// Why these needles make a slow scan, if they do.
    pub fn slowness(&self) -> Option<String> {
        if self.literals.len() > MAX_NEEDLES {
            return Some(format!(
                "its matches share no rare literal: {} alternatives are scanned for (at most {MAX_NEEDLES} scan on SIMD)",
                self.literals.len()
            ));
        }
        if self.cost() > SLOW_COST {
            let weakest = self.literals.iter().min_by(|a, b| bits(a).total_cmp(&bits(b)))?;
            return Some(format!(
                "its rarest required literals ({} of them, the weakest {:?}) are common in logs: most records become candidates",
                self.literals.len(),
                String::from_utf8_lossy(weakest)
            ));
        }
        None
    }

    fn better_than(&self, other: &Needles) -> bool {
        self.cost() < other.cost()
    }
}

/// The needles of a pattern, or `None` when some match need contain no
/// literal at all (`.*foo|[0-9]+`).
pub fn needles(hir: &Hir) -> Option<Needles> {
    walk(hir).required
}

/// What one piece of the pattern says about literals.
struct Piece {
    /// Every string the piece matches, when that is a small finite set.
    exact: Option<Vec<Vec<u8>>>,
    /// The best set one of whose members any match of the piece contains.
    required: Option<Needles>,
}

fn walk(hir: &Hir) -> Piece {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Piece { exact: Some(vec![Vec::new()]), required: None },
        HirKind::Literal(lit) => exact_piece(vec![lit.0.to_vec()]),
        HirKind::Class(class) => match class_strings(class) {
            Some(strings) => exact_piece(strings),
            None => Piece { exact: None, required: None },
        },
        HirKind::Capture(cap) => walk(&cap.sub),
        HirKind::Repetition(rep) => {
            let sub = walk(&rep.sub);
            let exact = match (rep.min, rep.max) {
                (0, Some(0)) => Some(vec![Vec::new()]),
                (0, Some(1)) => sub.exact.map(|mut e| {
                    e.insert(0, Vec::new());
                    e
                }),
                (1, Some(1)) => sub.exact,
                _ => None,
            };
            let required = if rep.min >= 1 { sub.required } else { None };
            Piece { exact: exact.filter(|e| e.len() <= EXACT_MAX), required }
        }
        HirKind::Alternation(alts) => {
            let pieces: Vec<Piece> = alts.iter().map(walk).collect();
            let exact = pieces.iter().try_fold(Vec::new(), |mut all, p| {
                all.extend(p.exact.clone()?);
                (all.len() <= EXACT_MAX).then_some(all)
            });
            // Each branch brings its own; a branch that needs nothing makes
            // the whole alternation need nothing.
            let required = pieces
                .iter()
                .try_fold(Vec::new(), |mut all, p| {
                    all.extend(p.required.as_ref()?.literals.iter().cloned());
                    Some(all)
                })
                .map(|all| factor(dedup(all)));
            let mut best = required;
            if let Some(e) = exact.as_ref().filter(|e| !cannot_beat(&best, e.len())) {
                consider(&mut best, from_exact(e));
            }
            Piece { exact, required: best }
        }
        HirKind::Concat(parts) => {
            let pieces: Vec<Piece> = parts.iter().map(walk).collect();
            let mut best: Option<Needles> = None;
            for p in &pieces {
                if let Some(r) = &p.required {
                    consider(&mut best, Some(r.clone()));
                }
            }
            // Every run of consecutive exact pieces spells out literals.
            for i in 0..pieces.len() {
                let mut run: Vec<Vec<u8>> = vec![Vec::new()];
                for p in &pieces[i..] {
                    let Some(exact) = &p.exact else { break };
                    let Some(longer) = product(&run, exact) else { break };
                    run = longer;
                    // Unfactored: a run is mostly one literal, and factoring
                    // every prefix of every run would cost the start-up. A
                    // run of more literals than the best one costs is
                    // skipped unweighed.
                    if !run.iter().any(Vec::is_empty) && !cannot_beat(&best, run.len()) {
                        consider(&mut best, Some(Needles::new(run.clone())));
                    }
                }
            }
            let exact = pieces.iter().try_fold(vec![Vec::new()], |run, p| product(&run, p.exact.as_ref()?));
            Piece { exact, required: best }
        }
    }
}

fn exact_piece(strings: Vec<Vec<u8>>) -> Piece {
    let required = from_exact(&strings);
    Piece { exact: Some(strings), required }
}

/// Needles from a finite language: none if it holds the empty string.
fn from_exact(strings: &[Vec<u8>]) -> Option<Needles> {
    if strings.iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(factor(dedup(strings.to_vec())))
}

/// Whether any `count` literals cost more than `best` already does (each
/// costs its price at least): then they need not be looked at.
fn cannot_beat(best: &Option<Needles>, count: usize) -> bool {
    best.as_ref().is_some_and(|b| count as f64 * PER_LITERAL >= b.cost())
}

fn consider(best: &mut Option<Needles>, candidate: Option<Needles>) {
    let Some(c) = candidate else { return };
    if best.as_ref().is_none_or(|b| c.better_than(b)) {
        *best = Some(c);
    }
}

/// Every concatenation of one string of `a` and one of `b`, if few and short.
fn product(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len() * b.len() > EXACT_MAX {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            if x.len() + y.len() > EXACT_LEN_MAX {
                return None;
            }
            out.push([x.as_slice(), y.as_slice()].concat());
        }
    }
    Some(dedup(out))
}

/// The characters of a small class, UTF-8 encoded.
fn class_strings(class: &Class) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    match class {
        Class::Unicode(c) => {
            for r in c.ranges() {
                for ch in r.start()..=r.end() {
                    out.push(ch.encode_utf8(&mut [0; 4]).as_bytes().to_vec());
                    if out.len() > CLASS_MAX {
                        return None;
                    }
                }
            }
        }
        Class::Bytes(c) => {
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    out.push(vec![b]);
                    if out.len() > CLASS_MAX {
                        return None;
                    }
                }
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

fn dedup(mut strings: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    strings.sort();
    strings.dedup();
    strings
}

/// Fewer literals standing for the same set: greedily, the rare substring
/// that the most remaining members contain (`Commit ` for `Commit cannot…`
/// and `Transaction offset Commit failed…`). A member no rare substring
/// shares stays itself. Kept only where it is better than the members.
fn factor(members: Vec<Vec<u8>>) -> Needles {
    let whole = Needles::new(members.clone());
    // Case variants and long alternations share no rare piece worth the
    // search (it is quadratic in the members).
    if members.len() < 2 || members.len() > MAX_NEEDLES * 2 {
        return whole;
    }
    // Every candidate piece once: the shortest rare one from each start of
    // each member (longer ones from there only add bytes), with the members
    // that contain it as a bit set. The bytes' sum bounds `bits` from
    // above, so the exact count is asked only once that sum is enough.
    let mut pieces: Vec<(&[u8], u64, f64)> = Vec::new();
    for m in &members {
        for i in 0..m.len() {
            // `needed`: the bytes' worth to add before asking again (a byte
            // adds at most its own worth).
            let (mut sum, mut needed) = (0.0, MIN_BITS);
            for j in i + 1..=m.len() {
                sum += byte_bit(m[j - 1]);
                if sum < needed {
                    continue;
                }
                let piece = &m[i..j];
                let b = bits(piece);
                if b < MIN_BITS {
                    (sum, needed) = (0.0, MIN_BITS - b);
                    continue;
                }
                if !pieces.iter().any(|(p, _, _)| *p == piece) {
                    let covers =
                        members.iter().enumerate().filter(|(_, o)| contains(o, piece)).fold(0, |a, (k, _)| a | 1 << k);
                    pieces.push((piece, covers, b));
                }
                break;
            }
        }
    }
    let mut left: u64 = if members.len() == 64 { u64::MAX } else { (1 << members.len()) - 1 };
    let mut chosen = Vec::new();
    while left != 0 {
        let best =
            pieces.iter().map(|&(p, covers, b)| (p, covers & left, b)).filter(|(_, c, _)| *c != 0).max_by(|x, y| {
                x.1.count_ones().cmp(&y.1.count_ones()).then(x.2.total_cmp(&y.2)).then(std::cmp::Ordering::Greater)
            });
        match best {
            Some((piece, covered, _)) => {
                let covered_members: Vec<&[u8]> =
                    (0..members.len()).filter(|k| covered & 1 << k != 0).map(|k| members[k].as_slice()).collect();
                chosen.push(widen(piece, &covered_members));
                left &= !covered;
            }
            None => {
                chosen.extend((0..members.len()).filter(|k| left & 1 << k != 0).map(|k| members[k].clone()));
                break;
            }
        }
    }
    let factored = Needles::new(chosen);
    if factored.better_than(&whole) {
        factored
    } else {
        whole
    }
}

/// `s` grown on both sides as far as every one of `members` (which all
/// contain it) has the same bytes around it: `ing Kafka` for `Exiting Kafka`
/// and `Halting Kafka` rather than the shortest rare piece.
fn widen(s: &[u8], members: &[&[u8]]) -> Vec<u8> {
    let at: Vec<usize> = members.iter().map(|m| m.windows(s.len()).position(|w| w == s).expect("contains s")).collect();
    let byte = |k: usize, off: isize| -> Option<u8> {
        let i = at[k] as isize + off;
        (i >= 0).then(|| members[k].get(i as usize).copied()).flatten()
    };
    let same = |off: isize| -> Option<u8> {
        let b = byte(0, off)?;
        (1..members.len()).all(|k| byte(k, off) == Some(b)).then_some(b)
    };
    let (mut lo, mut hi) = (0isize, s.len() as isize);
    while same(lo - 1).is_some() {
        lo -= 1;
    }
    while same(hi).is_some() {
        hi += 1;
    }
    (lo..hi).map(|off| byte(0, off).expect("inside the member")).collect()
}

const MINIMAL_MAX: usize = 256;

/// Drops every literal that contains another (the shorter one finds it).
pub fn minimal(literals: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let literals = dedup(literals);
    // Quadratic: a rule's alternation of thousands of words is kept as it is
    // (it is slow to scan anyway, and `check` says so).
    if literals.len() > MINIMAL_MAX {
        return literals;
    }
    literals.iter().filter(|l| !literals.iter().any(|o| o.len() < l.len() && contains(l, o))).cloned().collect()
}

/// Whether `needle` occurs in `hay`: both are short here (a literal, a
/// word), where building a `memmem` searcher costs more than looking.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    match needle.first() {
        None => true,
        Some(&first) => hay.windows(needle.len()).any(|w| w[0] == first && w == needle),
    }
}

const CUT_WITHIN: usize = 40;

/// The part of `literal` to scan for: the literal from its rarest start on,
/// as long as that is still rare enough. Teddy sifts on a literal's first
/// bytes, so a literal starting `org.` (every stack frame) would make every
/// line a candidate to verify. Kept whole when its own start is about as
/// rare.
pub fn cut(literal: &[u8]) -> &[u8] {
    let window = |i: usize| bits(&literal[i..(i + 3).min(literal.len())]);
    let mut best: Option<(usize, f64)> = None;
    // A common start (`org.apache.kafka.clients.consumer.`) is shorter than
    // this; looking further only costs start-up.
    for i in 0..literal.len().min(CUT_WITHIN) {
        if bits(&literal[i..]) < MIN_BITS {
            break;
        }
        // Only at a character's start, so that what is shown reads.
        if literal[i] & 0xC0 == 0x80 {
            continue;
        }
        if best.is_none_or(|(_, b)| window(i) > b) {
            best = Some((i, window(i)));
        }
    }
    match best {
        Some((i, b)) if window(0) + 1.0 < b => &literal[i..],
        _ => literal,
    }
}

/// Words most log lines carry: inside a literal each counts as one common
/// token, not as its letters' worth.
const COMMON_WORDS: &[&[u8]] = &[
    b"Exception",
    b"exception",
    b"Error",
    b"error",
    b"ERROR",
    b"WARN",
    b"INFO",
    b"DEBUG",
    b"failed",
    b"Failed",
    b"Connection",
    b"connection",
    b"consumer",
    b"Consumer",
    b"kafka",
    b"apache",
    b"java",
    b"server",
    b"Server",
    b"thread",
    b"Thread",
    b"Caused by",
    b"partition",
    b"offset",
    b"topic",
    b"broker",
    b"cannot",
    b"canal",
    b"datasource",
    b"dataSource",
    b"Application",
    b"application",
];
const LONGEST_COMMON_WORD: usize = 11;
/// What one common word is worth.
const COMMON_WORD_BITS: f64 = 8.0;

/// How surprising `literal` is in log text, in bits: the sum of its bytes'
/// (rare bytes weigh more), common words counted as one token, and a
/// literal inside a common word no rarer than that word.
pub fn bits(literal: &[u8]) -> f64 {
    if literal.len() <= LONGEST_COMMON_WORD && COMMON_WORDS.iter().any(|w| contains(w, literal)) {
        return byte_bits(literal).min(COMMON_WORD_BITS);
    }
    // A literal cut out of a longer text may start in the middle of a
    // common word (`onnection to ` is as common as `Connection to `) or end
    // in one: that piece is the word.
    // (Each first byte compared before the rest: this runs for every piece
    // of every pattern at start-up.)
    let tail_of_word = |lit: &[u8]| {
        COMMON_WORDS
            .iter()
            .flat_map(|w| {
                (3..w.len().min(lit.len() + 1))
                    .filter(move |&k| lit[k - 1] == w[w.len() - 1] && lit.starts_with(&w[w.len() - k..]))
            })
            .max()
    };
    let head_of_word = |lit: &[u8]| {
        COMMON_WORDS
            .iter()
            .flat_map(|w| {
                (3..w.len().min(lit.len() + 1)).filter(move |&k| lit[lit.len() - k] == w[0] && lit.ends_with(&w[..k]))
            })
            .max()
    };
    let start = tail_of_word(literal).unwrap_or(0);
    let end = literal.len() - head_of_word(&literal[start..]).unwrap_or(0);
    let mut total =
        if start > 0 { COMMON_WORD_BITS } else { 0.0 } + if end < literal.len() { COMMON_WORD_BITS } else { 0.0 };
    let mut i = start;
    while i < end {
        let rest = &literal[i..end];
        if let Some(w) = COMMON_WORDS.iter().find(|w| w[0] == rest[0] && rest.starts_with(w)) {
            total += COMMON_WORD_BITS;
            i += w.len();
        } else {
            total += byte_bit(rest[0]);
            i += 1;
        }
    }
    total
}

fn byte_bits(s: &[u8]) -> f64 {
    s.iter().map(|&b| byte_bit(b)).sum()
}

/// A byte's surprise in log text: digits, spaces and lower-case letters are
/// what lines are made of; capitals, most punctuation and anything beyond
/// ASCII are rarer.
fn byte_bit(b: u8) -> f64 {
    match b {
        b' ' => 2.5,
        b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' => 4.0,
        b'0'..=b'9' => 4.0,
        b'a'..=b'z' => 5.0,
        // What Java and Kafka lines are built of: `(kafka.server.…)`, `at a.b(C.java:1)`.
        b'.' | b':' | b'-' | b'_' | b'/' | b'=' | b',' | b'[' | b']' | b'(' | b')' => 4.5,
        b'A'..=b'Z' => 6.0,
        0x80.. => 6.0,
        _ => 7.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pattern: &str) -> Vec<String> {
        let hir = regex_syntax::ParserBuilder::new().build().parse(pattern).unwrap();
        needles(&hir).unwrap().literals.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect()
    }

    #[test]
    fn the_rarest_required_piece_wins_not_the_prefix() {
        // The prefix has thousands of case variants; a later piece has few.
        let pattern =
            r"(?i:connection to (?:broker )?(?<h>[a-z0-9.-]+):[0-9]+ \(id: (?<id>[0-9]+) rack: [^)]*\) failed)";
        let n = of(pattern);
        assert!(n.len() <= MAX_NEEDLES && !n.iter().any(|l| l.to_lowercase().starts_with("connection")), "{n:?}");
        let line = "Connection to broker ip-10-0-0-1:9092 (id: 2 rack: null) failed";
        assert!(regex::Regex::new(pattern).unwrap().is_match(line));
        assert!(n.iter().any(|l| line.contains(l.as_str())), "a match holds a needle: {n:?}");
        assert_eq!(of(r"\{(?<topic>[^=}\s]+)=INVALID_REPLICATION_FACTOR\}"), ["=INVALID_REPLICATION_FACTOR}"]);
    }

    #[test]
    fn alternatives_are_factored_by_what_they_share() {
        assert_eq!(of("(?:Exiting Kafka|Halting Kafka)"), ["ting Kafka"], "grown to all they share");
        let n = of(
            "(?:org\\.apache\\.kafka\\.clients\\.consumer\\.CommitFailedException|Commit cannot be completed|\
             Offset commit cannot be completed|OffsetCommit failed (?:with unknown member ID|with stale member epoch))",
        );
        assert!(n.len() < 4, "{n:?}");
    }

    #[test]
    fn common_words_alone_are_not_needles() {
        assert!(bits(b"Exception") < MIN_BITS && bits(b"ception") < MIN_BITS && bits(b"Exception: ") < MIN_BITS);
        assert!(bits(b"CommitFailedException") >= MIN_BITS);
        assert!(bits(b"onnection to ") < MIN_BITS, "a piece of a common word is the word");
        let n = of("(?:CannotAcquireResourceException|Exception during pool initialization)");
        assert!(!n.iter().any(|l| l == "Exception"), "{n:?}");
    }

    #[test]
    fn a_pattern_that_needs_no_literal_has_no_needles() {
        let hir = regex_syntax::ParserBuilder::new().build().parse(r"(?:[0-9]+ errors?|foo)?").unwrap();
        assert!(needles(&hir).is_none());
        let hir = regex_syntax::ParserBuilder::new().build().parse(r".*").unwrap();
        assert!(needles(&hir).is_none());
    }

    #[test]
    fn a_huge_alternation_is_kept_whole_and_said_slow() {
        // A rule may list thousands of words: no quadratic pass over them
        // (each pair compared would be 25 million comparisons here).
        let words: Vec<String> = (0..5000).map(|i| format!("word{i:05}x")).collect();
        let hir = regex_syntax::ParserBuilder::new().build().parse(&words.join("|")).unwrap();
        let n = needles(&hir).unwrap();
        assert_eq!(n.literals.len(), 5000);
        assert!(n.slowness().is_some(), "and it is said to be slow");
    }

    #[test]
    fn cut_starts_at_rare_bytes_and_stays_rare() {
        let c = cut(b"org.apache.kafka.clients.consumer.CommitFailedException");
        assert!(!c.starts_with(b"org") && bits(c) >= MIN_BITS, "{}", String::from_utf8_lossy(c));
        assert_eq!(
            minimal(vec![b"abcdef".to_vec(), b"bcd".to_vec(), b"xyz".to_vec()]),
            [b"bcd".to_vec(), b"xyz".to_vec()]
        );
    }
}
