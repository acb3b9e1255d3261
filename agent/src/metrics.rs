//! Prometheus metrics, served as text at `/metrics` on the agent's HTTP
//! listener. Cheap to update from any thread; the worker counts what flows
//! through the pipeline, a collector thread asks Kafka for lag and leaders.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::clients::kafka;
use crate::clients::kafka::KafkaConfig;

type Labels = Vec<(&'static str, String)>;

/// The agent's metrics. Clones share the same values.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    bytes_read: Family<Labels, Counter>,
    records: Family<Labels, Counter>,
    events: Family<Labels, Counter>,
    plans: Family<Labels, Counter>,
    actions: Family<Labels, Counter>,
    rule_errors: Counter,
    pending_approvals: Gauge,
    heartbeats: Family<Labels, Counter>,
    heartbeat_last: Family<Labels, Gauge>,
    tail_lag: Family<Labels, Gauge>,
    consumer_lag: Family<Labels, Gauge>,
    partition_leader: Family<Labels, Gauge>,
    kafka_up: Gauge,
    own_cpu_ms: Gauge,
    own_resident: Gauge,
    own_fds: Gauge,
    state_free: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pipemedic");
        let inner = Inner {
            bytes_read: Family::default(),
            records: Family::default(),
            events: Family::default(),
            plans: Family::default(),
            actions: Family::default(),
            rule_errors: Counter::default(),
            pending_approvals: Gauge::default(),
            heartbeats: Family::default(),
            heartbeat_last: Family::default(),
            tail_lag: Family::default(),
            consumer_lag: Family::default(),
            partition_leader: Family::default(),
            kafka_up: Gauge::default(),
            own_cpu_ms: Gauge::default(),
            own_resident: Gauge::default(),
            own_fds: Gauge::default(),
            state_free: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("source_read_bytes", "Bytes read from each source", inner.bytes_read.clone());
        registry.register(
            "records",
            "Records of each source examined (those near a signature's literal)",
            inner.records.clone(),
        );
        registry.register("events", "Events per signature", inner.events.clone());
        registry.register("plans", "Rule decisions by rule and decision", inner.plans.clone());
        registry.register("actions", "Steps applied, by action family and result", inner.actions.clone());
        registry.register("rule_errors", "Rules that failed at run time", inner.rule_errors.clone());
        registry.register("pending_approvals", "Approvals waiting for a person", inner.pending_approvals.clone());
        registry.register("heartbeats", "Heartbeats consumed, per MySQL source", inner.heartbeats.clone());
        registry.register(
            "heartbeat_last_timestamp_seconds",
            "When each MySQL source last beat (Unix time)",
            inner.heartbeat_last.clone(),
        );
        registry.register("tail_lag_bytes", "Bytes of each source not read yet", inner.tail_lag.clone());
        registry.register("consumer_lag", "The consumer group's lag per partition", inner.consumer_lag.clone());
        registry.register(
            "kafka_partition_leader",
            "Each partition's leader broker id (-1: none)",
            inner.partition_leader.clone(),
        );
        registry.register("kafka_up", "1 if the last lag and leader query answered", inner.kafka_up.clone());
        registry.register("agent_cpu_milliseconds", "CPU time the agent has used", inner.own_cpu_ms.clone());
        registry.register("agent_resident_bytes", "The agent's resident memory", inner.own_resident.clone());
        registry.register("agent_open_fds", "File descriptors the agent holds open", inner.own_fds.clone());
        registry.register(
            "state_dir_free_bytes",
            "Free space for the state directory (journal, checkpoints)",
            inner.state_free.clone(),
        );
        Metrics { inner: Arc::new(Inner { registry, ..inner }) }
    }

    /// Bytes read per source, for the daemon's loop.
    pub fn bytes_read(&self) -> CounterCache {
        CounterCache::new(&self.inner.bytes_read, "source")
    }

    /// Records examined per source, for the pipeline.
    pub fn records(&self) -> CounterCache {
        CounterCache::new(&self.inner.records, "source")
    }

    /// Events per signature, for the pipeline.
    pub fn events(&self) -> CounterCache {
        CounterCache::new(&self.inner.events, "signature")
    }

    pub fn plan(&self, rule: &str, decision: &str) {
        self.inner.plans.get_or_create(&vec![("rule", rule.to_string()), ("decision", decision.to_string())]).inc();
    }

    pub fn action(&self, action: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.inner.actions.get_or_create(&vec![("action", action.to_string()), ("result", result.into())]).inc();
    }

    pub fn rule_error(&self) {
        self.inner.rule_errors.inc();
    }

    pub fn pending_approvals(&self, n: usize) {
        self.inner.pending_approvals.set(n as i64);
    }

    pub fn heartbeat(&self, source: &str, at_ms: i64) {
        let labels = vec![("source", source.to_string())];
        self.inner.heartbeats.get_or_create(&labels).inc();
        self.inner.heartbeat_last.get_or_create(&labels).set(at_ms / 1000);
    }

    /// The agent's own costs, and the room left for its state.
    pub fn own(&self, o: &crate::system::Own) {
        self.inner.own_cpu_ms.set(o.cpu_ms as i64);
        self.inner.own_resident.set(o.resident_bytes as i64);
        self.inner.own_fds.set(o.open_fds as i64);
        self.inner.state_free.set(o.state_free_bytes as i64);
    }

    pub fn tail_lag(&self, source: &str, bytes: u64) {
        self.inner.tail_lag.get_or_create(&vec![("source", source.to_string())]).set(bytes as i64);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.inner.registry) {
            tracing::warn!("encoding metrics: {e}");
        }
        out
    }

    /// Asks Kafka for the group's lag and the partitions' leaders every
    /// `every`, on its own thread (a slow cluster never holds up the worker),
    /// until the shutdown.
    pub fn spawn_kafka_collector(
        &self,
        background: &mut crate::runtime::Background,
        config: KafkaConfig,
        reset: kafka::Reset,
        every: Duration,
    ) {
        let metrics = self.clone();
        background.spawn("kafka-metrics", move |shutdown| loop {
            metrics.collect_kafka(&config, reset, &shutdown);
            if shutdown.sleep(every) {
                return;
            }
        });
    }

    /// One round of Kafka questions; a shutdown between two of them ends
    /// the round (each is bounded by `[kafka] timeout_secs`).
    fn collect_kafka(&self, config: &KafkaConfig, reset: kafka::Reset, shutdown: &crate::runtime::Shutdown) {
        let partition = |topic: &str, p: i32| vec![("topic", topic.to_string()), ("partition", p.to_string())];
        let mut up = true;
        match kafka::leaders(config, None) {
            Ok(rows) => {
                for r in rows {
                    self.inner.partition_leader.get_or_create(&partition(&r.topic, r.partition)).set(r.leader as i64);
                }
            }
            Err(e) => {
                up = false;
                tracing::debug!("metrics: Kafka leaders: {e}");
            }
        }
        if shutdown.is_set() {
            return;
        }
        if let Some(group) = &config.group {
            match kafka::lag(config, group, None, reset) {
                Ok(rows) => {
                    for r in rows {
                        self.inner.consumer_lag.get_or_create(&partition(&r.topic, r.partition)).set(r.lag);
                    }
                }
                Err(e) => {
                    up = false;
                    tracing::debug!("metrics: Kafka lag: {e}");
                }
            }
        }
        self.inner.kafka_up.set(up as i64);
    }
}

/// One family's counters by name, kept by their single owner so the hot
/// path neither allocates labels nor locks the family once a name was seen.
pub struct CounterCache {
    family: Family<Labels, Counter>,
    label: &'static str,
    counters: HashMap<Arc<str>, Counter>,
}

impl CounterCache {
    fn new(family: &Family<Labels, Counter>, label: &'static str) -> CounterCache {
        CounterCache { family: family.clone(), label, counters: HashMap::new() }
    }

    pub fn inc_by(&mut self, name: &str, n: u64) {
        if let Some(c) = self.counters.get(name) {
            c.inc_by(n);
            return;
        }
        let counter = self.family.get_or_create_owned(&vec![(self.label, name.to_string())]);
        counter.inc_by(n);
        self.counters.insert(name.into(), counter);
    }
}

// `[metrics]` in the configuration: the metrics listener and the Kafka poll.

/// Where `/metrics` is served besides the approval listener, and how often
/// Kafka is asked for lag and leaders.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A listener for `/metrics` alone (e.g. on a private interface).
    pub listen: Option<std::net::SocketAddr>,
    #[serde(default = "default_kafka_interval")]
    pub kafka_interval_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: None, kafka_interval_secs: default_kafka_interval() }
    }
}

fn default_kafka_interval() -> u64 {
    60
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_counted_values() {
        let m = Metrics::new();
        m.records().inc_by("kafka_server", 1);
        m.events().inc_by("unknown_host", 1);
        m.plan("k1_unknown_host", "applied");
        m.action("hosts", true);
        m.heartbeat("ix_trade", 1_700_000_000_000);
        m.pending_approvals(2);
        let text = m.encode();
        for line in [
            "pipemedic_records_total{source=\"kafka_server\"} 1",
            "pipemedic_events_total{signature=\"unknown_host\"} 1",
            "pipemedic_plans_total{rule=\"k1_unknown_host\",decision=\"applied\"} 1",
            "pipemedic_actions_total{action=\"hosts\",result=\"ok\"} 1",
            "pipemedic_heartbeat_last_timestamp_seconds{source=\"ix_trade\"} 1700000000",
            "pipemedic_pending_approvals 2",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
