//! The narrow API rules see: step constructors (pure data; nothing runs),
//! and a context that answers questions. Nothing here touches the system.

use std::sync::{Arc, Mutex};

use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString as Str};

use super::history::EventHistory;
use crate::actions::{build, canal, hosts, kafka, kafka_cluster, notify, postgres, probe, properties, service};
use crate::plan::{ServiceOp, StepSpec};

/// What a rule may ask while deciding: signature counts and its parameters.
#[derive(Clone)]
pub struct RuleContext {
    pub history: Arc<Mutex<EventHistory>>,
    /// The event's time (ms); windows are counted back from it.
    pub now: i64,
    /// The rule's parameters: its defaults, overridden by the config.
    pub params: rhai::Map,
    /// Where to ask about Kafka, if the host knows its cluster.
    pub kafka: Option<std::sync::Arc<crate::clients::kafka::KafkaConfig>>,
    /// The host's configuration, for questions about this host (`None` in
    /// rule tests: the case answers them).
    pub config: Option<std::sync::Arc<crate::config::Config>>,
    /// A rule test case's answers to the questions about live systems.
    pub answers: CaseAnswers,
}

/// What a rule test case says the live systems answer: `kafka_lag: N`,
/// `kafka_cluster: true`. `None`: ask the real thing.
#[derive(Clone, Default)]
pub struct CaseAnswers {
    pub kafka_lag: Option<i64>,
    pub kafka_cluster: Option<bool>,
    /// `this_host_address: "10.0.0.7"` (evidence: "the test case").
    pub this_host_address: Option<String>,
    /// `broker_registration: "{…}"`.
    pub broker_registration: Option<String>,
    /// `resolves: true|false`.
    pub resolves: Option<bool>,
    /// `service_state: "stopped"` (for every service the rule asks about).
    pub service_state: Option<String>,
}

impl RuleContext {
    /// The context `rule` runs in at `now`: questions about live systems go
    /// to what `config` names, or, in a rule test, to the case's `answers`
    /// (and nothing live is asked).
    pub fn new(
        history: Arc<Mutex<EventHistory>>,
        now: i64,
        rule: &super::Rule,
        config: &Arc<crate::config::Config>,
        answers: Option<&CaseAnswers>,
    ) -> RuleContext {
        let params = rule.params.clone();
        match answers {
            Some(answers) => RuleContext { history, now, params, kafka: None, config: None, answers: answers.clone() },
            None => RuleContext {
                history,
                now,
                params,
                kafka: config.kafka.clone().map(Arc::new),
                config: Some(config.clone()),
                answers: CaseAnswers::default(),
            },
        }
    }

    fn count(&mut self, signature: &str, minutes: i64) -> i64 {
        self.history.lock().expect("history lock").count(signature, minutes, self.now)
    }

    /// The consumer group's total lag over the pipeline's topics (runbook
    /// T2, C7), or -1 if the host has no `[kafka]` or the cluster does not answer.
    fn kafka_lag(&mut self) -> i64 {
        if let Some(answer) = self.answers.kafka_lag {
            return answer;
        }
        let Some(k) = &self.kafka else { return -1 };
        let Some(group) = &k.group else { return -1 };
        let reset = self.config.as_ref().map_or(crate::clients::kafka::Reset::Unknown, |c| c.consumer_offset_reset());
        match crate::clients::kafka::lag(k, group, None, reset) {
            Ok(rows) => rows.iter().map(|r| r.lag).sum(),
            Err(e) => {
                tracing::warn!("a rule asked for Kafka's lag: {e}");
                -1
            }
        }
    }

    /// The last reconcile of `table` (`#{ at, age_secs, origin, missing,
    /// extra, differing, equal, error }`, counts summed over every source
    /// and target), or an empty map when there is none (and in a rule test).
    fn last_reconcile(&mut self, table: &str) -> rhai::Map {
        let mut m = rhai::Map::new();
        let Some(config) = &self.config else { return m };
        let Ok(name) = crate::types::Name::parse("reconcile table", table) else { return m };
        let path = crate::reconcile::saved_path(&config.state_dir, name.as_str());
        let Ok(bytes) = crate::fsutil::read_regular(&path) else { return m };
        let Ok(saved) = serde_json::from_slice::<crate::reconcile::Saved>(&bytes) else { return m };
        let c = saved.totals();
        let (missing, extra, differing) = (c.missing as i64, c.extra as i64, c.differing as i64);
        let error = saved.error().map(|(_, e)| e.to_string()).unwrap_or_default();
        m.insert("at".into(), crate::types::human_time(saved.at).into());
        m.insert("age_secs".into(), ((self.now - saved.at) / 1000).into());
        m.insert("origin".into(), saved.origin.clone().into());
        m.insert("missing".into(), missing.into());
        m.insert("extra".into(), extra.into());
        m.insert("differing".into(), differing.into());
        m.insert("equal".into(), (error.is_empty() && missing + extra + differing == 0).into());
        m.insert("error".into(), error.into());
        m
    }

    /// True if this host's broker restarts leader-first with the other
    /// hosts' agents (`[kafka.cluster]`, runbook K4).
    fn kafka_cluster(&mut self) -> bool {
        self.answers.kafka_cluster.unwrap_or_else(|| self.kafka.as_ref().is_some_and(|k| k.cluster.is_some()))
    }

    /// This host's address and how it was found (`#{ address, evidence }`),
    /// or an empty map: for a hosts entry of the broker's own name (K1).
    fn this_host_address(&mut self) -> rhai::Map {
        let found = match &self.answers.this_host_address {
            Some(a) => Some((a.clone(), "the test case says so".to_string())),
            None => {
                let props = self.config.as_ref().and_then(|c| c.properties_files.get("kafka_server").cloned());
                crate::system::this_host_address(props.as_deref()).map(|(ip, why)| (ip.to_string(), why))
            }
        };
        let mut m = rhai::Map::new();
        if let Some((address, evidence)) = found {
            m.insert("address".into(), address.into());
            m.insert("evidence".into(), evidence.into());
        }
        m
    }

    /// Broker `id`'s registration in ZooKeeper (`/brokers/ids/<id>`, its
    /// JSON), or "" when it is not registered or ZooKeeper is not configured
    /// or does not answer.
    fn broker_registration(&mut self, id: i64) -> String {
        if let Some(answer) = &self.answers.broker_registration {
            return answer.clone();
        }
        let Some(zk) = self.config.as_ref().and_then(|c| c.zookeeper.clone()) else { return String::new() };
        let node = crate::clients::zk::Session::connect(&zk).and_then(|s| s.get(&format!("/brokers/ids/{id}")));
        match node {
            Ok(Some(n)) => crate::types::shown(&String::from_utf8_lossy(&n.data)),
            Ok(None) => String::new(),
            Err(e) => {
                tracing::warn!("a rule asked for broker {id}'s registration: {e}");
                String::new()
            }
        }
    }

    /// Whether this host resolves `name` now ("yes", "no", or "unknown" when
    /// the resolver does not answer within a second: it is asked on a thread
    /// of its own, so a hanging DNS server cannot hold the rule).
    fn resolves(&mut self, name: &str) -> String {
        if let Some(answer) = self.answers.resolves {
            return if answer { "yes" } else { "no" }.into();
        }
        let Ok(host) = crate::types::HostName::parse(name) else { return "no".into() };
        // A broker that is down makes its peers log a line every second or so:
        // ask the resolver about one name once a minute at most.
        use std::collections::HashMap;
        use std::sync::OnceLock;
        static RECENT: OnceLock<Mutex<HashMap<String, (std::time::Instant, String)>>> = OnceLock::new();
        let recent = RECENT.get_or_init(Default::default);
        if let Some((at, answer)) = recent.lock().expect("resolver cache").get(host.as_str()) {
            if at.elapsed() < std::time::Duration::from_secs(60) {
                return answer.clone();
            }
        }
        let key = host.as_str().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::net::ToSocketAddrs;
            let _ = tx.send((host.as_str(), 0).to_socket_addrs().map(|mut a| a.next().is_some()).unwrap_or(false));
        });
        let answer = match rx.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(true) => "yes",
            Ok(false) => "no",
            Err(_) => "unknown",
        };
        let mut map = recent.lock().expect("resolver cache");
        if map.len() >= 256 {
            map.clear();
        }
        map.insert(key, (std::time::Instant::now(), answer.to_string()));
        answer.into()
    }

    /// How a configured service is (`running`, `stopped` on purpose,
    /// `died`, `down`: see [`crate::actions::service::state`]), or
    /// `unknown` when the service is not configured here.
    fn service_state(&mut self, name: &str) -> String {
        if let Some(answer) = &self.answers.service_state {
            return answer.clone();
        }
        match self.config.as_ref().and_then(|c| c.services.get(name)) {
            Some(svc) => crate::actions::service::state(svc).into(),
            None => "unknown".into(),
        }
    }

    fn param(&mut self, name: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        self.params.get(name).cloned().ok_or_else(|| format!("rule parameter `{name}` is not defined").into())
    }
}

/// Registers the step constructors and the context type.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<StepSpec>("Step");
    // Rhai's standard `sleep` would hold the worker (and `sleep(1e300)`
    // panics inside the engine): rules cannot sleep.
    engine.register_fn("sleep", |_: rhai::INT| -> Result<(), Box<rhai::EvalAltResult>> {
        Err("rules cannot sleep: a rule is called again when its signature fires".into())
    });
    engine.register_fn("sleep", |_: rhai::FLOAT| -> Result<(), Box<rhai::EvalAltResult>> {
        Err("rules cannot sleep: a rule is called again when its signature fires".into())
    });
    engine.register_fn("to_string", |s: &mut StepSpec| s.to_string());
    engine.register_fn("to_debug", |s: &mut StepSpec| s.to_string());
    // The step constructors, one per step kind: each family writes its own
    // spec (raw arguments, validated when the plan is).
    engine.register_fn("hosts_entry", |host: Str, ip: Str| hosts::spec(&host, &ip));
    for (name, op) in [
        ("service_restart", ServiceOp::Restart),
        ("service_start", ServiceOp::Start),
        ("service_stop", ServiceOp::Stop),
    ] {
        engine.register_fn(name, move |service: Str| service::spec(op, &service));
    }
    engine.register_fn("property_set", |file: Str, key: Str, value: Str| properties::set_spec(&file, &key, &value));
    engine.register_fn("property_lower", |file: Str, key: Str, factor: f64, floor: i64, default: i64| {
        properties::lower_spec(&file, &key, factor, floor, default)
    });
    engine.register_fn("notify", |message: Str| notify::spec(&message));
    engine.register_fn("pg_add_column", |table: Str, column: Str| postgres::spec(None, &table, &column));
    engine.register_fn("pg_repair", |table: Str| crate::actions::repair::spec(&table, false, None));
    engine.register_fn("pg_repair", |table: Str, deletes: bool| crate::actions::repair::spec(&table, deletes, None));
    engine.register_fn("pg_repair", |table: Str, deletes: bool, report: Str| {
        crate::actions::repair::spec(&table, deletes, Some(&report))
    });
    engine.register_fn("reconcile", || crate::actions::reconcile::spec(None));
    engine.register_fn("reconcile", |table: Str| crate::actions::reconcile::spec(Some(&table)));
    engine.register_fn("pg_add_column", |schema: Str, table: Str, column: Str| {
        postgres::spec(Some(&schema).filter(|s| !s.is_empty()).map(|s| s.as_str()), &table, &column)
    });
    engine.register_fn("check_build", build::spec);
    engine.register_fn("canal_rewind", canal::rewind_spec);
    engine.register_fn("canal_reset", |destination: Str| canal::reset_spec(&destination));
    engine.register_fn("canal_new_binlog", |destination: Str| canal::new_binlog_spec(&destination));
    engine.register_fn("kafka_wait_drained", kafka::drained_spec);
    engine.register_fn("kafka_move_log_dir", |to: Str| kafka::move_spec(&to));
    engine.register_fn("kafka_start_leader_first", kafka_cluster::spec);
    engine.register_fn("probe_tcp", |addr: Str| probe::spec(&addr));
    // Pure text helper: the first capture group of `pattern` in `text` (or
    // the whole match), "" if none. Patterns come from rule files.
    engine.register_fn("re_find", |text: Str, pattern: Str| -> Result<String, Box<EvalAltResult>> {
        let re = cached_regex(&pattern)?;
        Ok(re
            .captures(&text)
            .and_then(|c| c.get(1).or_else(|| c.get(0)))
            .map(|m| m.as_str().to_string())
            .unwrap_or_default())
    });

    // The table the record's failed statement writes: #{schema, table}
    // (schema "" when unnamed), or () when no marked statement names one.
    engine.register_fn("failed_statement_table", |record: Str| -> rhai::Dynamic {
        match super::statement::failed_statement_table(&record) {
            Some(t) => {
                let mut map = rhai::Map::new();
                map.insert("schema".into(), t.schema.into());
                map.insert("table".into(), t.table.into());
                map.into()
            }
            None => rhai::Dynamic::UNIT,
        }
    });

    engine.register_type_with_name::<RuleContext>("Context");
    engine.register_fn("count", RuleContext::count);
    engine.register_fn("param", RuleContext::param);
    engine.register_fn("kafka_lag", RuleContext::kafka_lag);
    engine.register_fn("last_reconcile", |ctx: &mut RuleContext, table: Str| ctx.last_reconcile(&table));
    engine.register_fn("kafka_cluster", RuleContext::kafka_cluster);
    engine.register_fn("this_host_address", RuleContext::this_host_address);
    engine.register_fn("broker_registration", RuleContext::broker_registration);
    engine.register_fn("resolves", RuleContext::resolves);
    engine.register_fn("service_state", RuleContext::service_state);
}

/// Rules call `re_find` with a handful of literal patterns, once per event;
/// compile each once. Bounded, so a rule that builds patterns from log text
/// cannot grow it without limit.
fn cached_regex(pattern: &str) -> Result<regex::Regex, Box<EvalAltResult>> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static CACHE: OnceLock<Mutex<HashMap<String, regex::Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(re) = cache.lock().expect("regex cache lock").get(pattern) {
        return Ok(re.clone());
    }
    let re = regex::RegexBuilder::new(pattern).size_limit(1 << 20).build().map_err(|e| e.to_string())?;
    let mut map = cache.lock().expect("regex cache lock");
    if map.len() >= 256 {
        map.clear();
    }
    map.insert(pattern.to_string(), re.clone());
    Ok(re)
}
