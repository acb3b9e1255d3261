//! The stall diagnosis (runbook C5): after the consumer starts, consumption
//! may take up to `grace_secs` (five minutes by default) to begin — many
//! consumers, many partitions, a slow rebalance. If by then nothing was
//! consumed and nothing went wrong in the error log, the runbook's reasoning
//! is followed, and every step of it is written into the finding:
//!
//! 1. The monitor (canal client) log: no parse line since the consumer
//!    started → the problem is on the canal side (`stall_canal_side`).
//! 2. Parse lines present → the broker: its log's last word was a shutdown,
//!    or ZooKeeper lacks some brokers under `/brokers/ids` → restart it
//!    (`stall_broker_down`, the rule decides how: K4 leader-first or a plain
//!    restart).
//! 3. Otherwise nothing the runbook knows explains it (`stall_unexplained`).
//!
//! Once per consumer start.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::ProbeEvent;
use crate::matching::SignatureSpec;
use crate::types::human_time;
use crate::types::Invalid;

/// What ZooKeeper says about the brokers: registered and expected.
pub type Registration = Result<(BTreeSet<i32>, BTreeSet<i32>), crate::clients::zk::ZkError>;

/// The signals the watch follows, from the pipeline's reserved signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    ConsumerStarted,
    Consumed,
    ConsumerError,
    MonitorParse,
    BrokerStarted,
    BrokerShutDown,
}

/// The consumer's latest start and what happened since.
pub struct StallWatch {
    config: StallConfig,
    started: Option<i64>,
    diagnosed: bool,
    consumed: Option<i64>,
    error: Option<i64>,
    parse: Option<i64>,
    /// The broker log's last lifecycle line: (time, shut down?).
    broker: Option<(i64, bool)>,
}

impl StallWatch {
    pub fn new(config: StallConfig) -> StallWatch {
        StallWatch { config, started: None, diagnosed: false, consumed: None, error: None, parse: None, broker: None }
    }

    pub fn signal(&mut self, signal: Signal, at: i64) {
        let latest = |slot: &mut Option<i64>| *slot = Some(slot.map_or(at, |t| t.max(at)));
        match signal {
            Signal::ConsumerStarted => {
                self.started = Some(at);
                self.diagnosed = false;
            }
            Signal::Consumed => latest(&mut self.consumed),
            Signal::ConsumerError => latest(&mut self.error),
            Signal::MonitorParse => latest(&mut self.parse),
            Signal::BrokerStarted => self.broker = Some((at, false)),
            Signal::BrokerShutDown => self.broker = Some((at, true)),
        }
    }

    /// True once the grace period after a start ran out undiagnosed.
    pub fn due(&self, now: i64) -> bool {
        self.started.is_some_and(|s| !self.diagnosed && now - s >= self.config.grace_secs as i64 * 1000)
    }

    /// The diagnosis, if one is due; `registration` is asked only if the
    /// reasoning gets as far as the brokers.
    pub fn diagnose(&mut self, now: i64, registration: impl FnOnce() -> Option<Registration>) -> Option<ProbeEvent> {
        if !self.due(now) {
            return None;
        }
        self.diagnosed = true;
        let started = self.started?;
        let since = |t: Option<i64>| t.filter(|t| *t >= started);
        if since(self.consumed).is_some() {
            return None;
        }
        let mut why = vec![format!(
            "the consumer started at {}; nothing consumed in the {} s since (grace {} s)",
            human_time(started),
            (now - started) / 1000,
            self.config.grace_secs
        )];
        if let Some(t) = since(self.error) {
            // Not C5: an error explains it, and the error's own rule acts.
            tracing::info!(
                "consumer not consuming since {}, but it logged an error at {}",
                human_time(started),
                human_time(t)
            );
            return None;
        }
        why.push(format!("no error in {} since the start", self.config.error_source));
        let finding = |name: &'static str, why: Vec<String>, extra: Vec<(&str, String)>| {
            let reasoning =
                why.iter().enumerate().map(|(i, w)| format!("{}. {w}", i + 1)).collect::<Vec<_>>().join("\n");
            let mut captures: std::collections::BTreeMap<String, String> =
                extra.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            captures.insert("started".into(), human_time(started));
            captures.insert("reasoning".into(), reasoning.clone());
            Some(ProbeEvent { name, captures, text: format!("consumer stalled (runbook C5):\n{reasoning}") })
        };
        let Some(parse) = since(self.parse) else {
            why.push(format!(
                "no parse line in {} since the start: the canal client is not producing — canal side",
                self.config.monitor_source
            ));
            return finding("stall_canal_side", why, Vec::new());
        };
        why.push(format!(
            "{} has parse lines (last at {}): data enters Kafka",
            self.config.monitor_source,
            human_time(parse)
        ));
        let mut down = Vec::new();
        match self.broker {
            Some((t, true)) => {
                why.push(format!(
                    "{}: the broker shut down at {} and did not start again",
                    self.config.broker_source,
                    human_time(t)
                ));
                down.push("the local broker".to_string());
            }
            Some((t, false)) => {
                why.push(format!("{}: the broker last started at {}", self.config.broker_source, human_time(t)))
            }
            None => why.push(format!("{}: no start or shutdown seen", self.config.broker_source)),
        }
        match registration() {
            None => why.push("ZooKeeper not configured: broker registration not checked".into()),
            Some(Err(e)) => why.push(format!("ZooKeeper could not be read ({e}): broker registration not checked")),
            Some(Ok((registered, expected))) => {
                let missing: Vec<String> = expected.difference(&registered).map(|b| b.to_string()).collect();
                if missing.is_empty() {
                    why.push(format!(
                        "ZooKeeper: every broker is registered ({})",
                        crate::cluster::ids(registered.iter().copied())
                    ));
                } else {
                    why.push(format!(
                        "ZooKeeper: brokers {} are not registered under /brokers/ids",
                        missing.join(", ")
                    ));
                    down.push(format!("brokers {}", missing.join(", ")));
                }
            }
        }
        if down.is_empty() {
            why.push("nothing the runbook knows explains it: a person must look".into());
            return finding("stall_unexplained", why, Vec::new());
        }
        why.push("a broker is down: restart it (runbook C5, K4)".into());
        finding("stall_broker_down", why, vec![("down", down.join("; "))])
    }
}

/// The signatures the stall watch follows (reserved; the pipeline feeds
/// their matches to [`StallWatch::signal`]), and the broker log's
/// lifecycle lines.
pub const SIGNALS: &[(&str, Signal)] = &[
    ("c5_consumer_started", Signal::ConsumerStarted),
    ("c5_consumed", Signal::Consumed),
    ("c5_consumer_error", Signal::ConsumerError),
    ("c5_monitor_parse", Signal::MonitorParse),
    ("c5_broker_started", Signal::BrokerStarted),
    ("c5_broker_shut_down", Signal::BrokerShutDown),
];
const BROKER_STARTED: &str = r"started \(kafka\.server\.KafkaServer\)";
const BROKER_SHUT_DOWN: &str = r"shut down completed \(kafka\.server\.KafkaServer\)";

pub fn signature_specs(s: &StallConfig) -> Vec<SignatureSpec> {
    let spec = |name: &str, pattern: &str, source: &str| SignatureSpec {
        name: name.into(),
        pattern: pattern.into(),
        sources: [source.to_string()].into(),
    };
    let mut specs = vec![
        spec("c5_consumer_started", &s.started_pattern, &s.consumer_source),
        spec("c5_consumer_error", &s.error_pattern, &s.error_source),
        spec("c5_monitor_parse", &s.parse_pattern, &s.monitor_source),
        spec("c5_broker_started", BROKER_STARTED, &s.broker_source),
        spec("c5_broker_shut_down", BROKER_SHUT_DOWN, &s.broker_source),
    ];
    if let Some(p) = &s.consumed_pattern {
        specs.push(spec("c5_consumed", p, &s.consumer_source));
    }
    specs
}

/// Which brokers ZooKeeper has registered and which the cluster has (the
/// `configured` brokers, or every one holding a replica), for the stall
/// diagnosis; `None` without `[zookeeper]`.
pub fn broker_registration(
    zk: Option<&crate::clients::zk::ZooKeeperConfig>,
    configured: &[i32],
) -> Option<Registration> {
    let zk = zk?;
    Some(crate::clients::zk::Session::connect(zk).and_then(|s| {
        let snap = s
            .block_on(crate::cluster::snapshot(&s.client()))
            .map_err(s.call_error("reading the brokers and agents under", "/brokers/ids"))?;
        Ok((snap.registered.clone(), snap.expected(configured)))
    }))
}

// `[stall]` in the configuration: where the stall diagnosis looks.

/// Where the stall diagnosis (runbook C5) looks. Every field has a default
/// that fits the runbook's hosts; `[stall]` alone turns it on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StallConfig {
    /// The consumer's log, where it says it started (and consumes).
    #[serde(default = "default_consumer_source")]
    pub consumer_source: String,
    /// A (re)start of the consumer's Tomcat / Spring context.
    #[serde(default = "default_started_pattern")]
    pub started_pattern: String,
    /// A line that proves consumption, besides `[heartbeat]`'s.
    pub consumed_pattern: Option<String>,
    #[serde(default = "default_error_source")]
    pub error_source: String,
    /// Any such record in `error_source` is "an error" (then it is not C5).
    #[serde(default = "default_error_pattern")]
    pub error_pattern: String,
    /// The canal client's ("monitor") log.
    #[serde(default = "default_monitor_source")]
    pub monitor_source: String,
    /// A line saying the monitor parsed binlog entries.
    #[serde(default = "default_parse_pattern")]
    pub parse_pattern: String,
    /// The broker log, whose last start / shutdown line tells if it runs.
    #[serde(default = "default_broker_source")]
    pub broker_source: String,
    /// How long consumption may take to begin after a start.
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
}

fn default_consumer_source() -> String {
    "consumer_info".into()
}

fn default_started_pattern() -> String {
    r"Server startup in \d+ ms|Root WebApplicationContext: initialization completed|Started \w+ in [\d.]+ seconds"
        .into()
}

fn default_error_source() -> String {
    "consumer_error".into()
}

fn default_error_pattern() -> String {
    r"\bERROR\b|Exception".into()
}

fn default_monitor_source() -> String {
    "monitor".into()
}

fn default_parse_pattern() -> String {
    r"(?i)\bpars(?:e|ed|ing)\b|binlog\[".into()
}

fn default_broker_source() -> String {
    "kafka_server".into()
}

fn default_grace() -> u64 {
    300
}

impl StallConfig {
    /// The sources the diagnosis reads, by key.
    pub(crate) fn sources(&self) -> [(&'static str, &String); 4] {
        [
            ("consumer_source", &self.consumer_source),
            ("error_source", &self.error_source),
            ("monitor_source", &self.monitor_source),
            ("broker_source", &self.broker_source),
        ]
    }

    pub(crate) fn check(&self) -> Result<(), Invalid> {
        for (key, pattern) in [
            ("started_pattern", Some(&self.started_pattern)),
            ("consumed_pattern", self.consumed_pattern.as_ref()),
            ("error_pattern", Some(&self.error_pattern)),
            ("parse_pattern", Some(&self.parse_pattern)),
        ] {
            if let Some(p) = pattern {
                crate::matching::check_pattern(p).map_err(|e| format!("[stall] {key}: {e}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn watch() -> StallWatch {
        StallWatch::new(toml::from_str("").unwrap())
    }

    fn all_registered() -> Option<Registration> {
        Some(Ok(([1, 2, 3].into(), [1, 2, 3].into())))
    }

    #[test]
    fn consumption_within_the_grace_period_is_normal() {
        let mut w = watch();
        w.signal(Signal::ConsumerStarted, 0);
        assert!(!w.due(4 * MIN));
        w.signal(Signal::Consumed, 4 * MIN + 59_000);
        assert_eq!(w.diagnose(5 * MIN, all_registered), None);
        assert_eq!(w.diagnose(6 * MIN, all_registered), None, "once per start");
    }

    #[test]
    fn an_error_is_not_a_stall() {
        let mut w = watch();
        w.signal(Signal::ConsumerStarted, 0);
        w.signal(Signal::ConsumerError, MIN);
        assert_eq!(w.diagnose(5 * MIN, all_registered), None);
    }

    #[test]
    fn no_parse_lines_means_the_canal_side() {
        let mut w = watch();
        w.signal(Signal::MonitorParse, -MIN); // before the start: not recent
        w.signal(Signal::ConsumerStarted, 0);
        let f = w.diagnose(5 * MIN, || panic!("the brokers are not asked")).unwrap();
        assert_eq!(f.name, "stall_canal_side");
        assert!(f.captures["reasoning"].contains("3. no parse line in monitor"), "{f:#?}");
    }

    #[test]
    fn parse_lines_and_a_broker_that_shut_down_mean_restart_it() {
        let mut w = watch();
        w.signal(Signal::BrokerShutDown, -MIN);
        w.signal(Signal::ConsumerStarted, 0);
        w.signal(Signal::MonitorParse, MIN);
        let f = w.diagnose(5 * MIN, || Some(Ok(([1, 3].into(), [1, 2, 3].into())))).unwrap();
        assert_eq!(f.name, "stall_broker_down");
        assert_eq!(f.captures["down"], "the local broker; brokers 2");
        let r = &f.captures["reasoning"];
        assert!(r.contains("the broker shut down at") && r.contains("brokers 2 are not registered"), "{r}");
    }

    #[test]
    fn parse_lines_and_healthy_brokers_are_unexplained() {
        let mut w = watch();
        w.signal(Signal::BrokerShutDown, -2 * MIN);
        w.signal(Signal::BrokerStarted, -MIN);
        w.signal(Signal::ConsumerStarted, 0);
        w.signal(Signal::MonitorParse, MIN);
        assert_eq!(w.diagnose(5 * MIN, all_registered).unwrap().name, "stall_unexplained");
        w.signal(Signal::ConsumerStarted, 10 * MIN);
        assert!(!w.due(14 * MIN) && w.due(15 * MIN), "a new start, a new grace period");
    }
}
