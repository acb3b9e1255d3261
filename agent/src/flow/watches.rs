//! The agent's own watches, on every tick: retries due, approvals expired,
//! the heartbeat watch and the stall diagnosis; their findings go through
//! the rules that subscribe to them, like log events.

use super::*;

impl Flow {
    /// Periodic work: expired approvals, and the heartbeat watch's findings
    /// handed to the rules that want them.
    pub fn tick(&mut self, now: i64) {
        self.flush_summaries(false);
        self.run_retries(now);
        self.run_parked(chrono::Utc::now().timestamp_millis());
        self.expire_approvals(now);
        if let Some(ap) = &self.approvals {
            self.metrics.pending_approvals(ap.store.pending());
        }
        let mut findings = self.heartbeat.as_mut().map(|w| w.findings(now)).unwrap_or_default();
        if let Some(w) = &mut self.reconciled {
            findings.extend(w.findings(now));
        }
        let config = self.config.clone();
        if let Some(f) = self.stall.as_mut().and_then(|s| {
            s.diagnose(now, || {
                crate::probes::stall::broker_registration(config.zookeeper.as_ref(), config.cluster_brokers())
            })
        }) {
            findings.push(f);
        }
        for finding in findings {
            match finding.name {
                "heartbeat_back" | "reconcile_due" | "reconcile_equal" => {
                    tracing::info!(probe = finding.name, "{}", finding.text)
                }
                _ => tracing::warn!(probe = finding.name, "{}", finding.text),
            }
            self.probe(finding, now);
        }
    }

    /// Takes a probe's finding through the rules that subscribe to it.
    fn probe(&mut self, finding: ProbeEvent, now: i64) {
        let event = Event::synthetic(finding.name, PROBE_SOURCE, finding.captures, finding.text, now);
        self.handle_probe(&event);
    }

    /// Takes a probe event through the rules that subscribe to it; returns
    /// what was decided.
    pub fn handle_probe(&mut self, event: &Event) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for i in self.rules.subscribers(&event.signature, PROBE_SOURCE).to_vec() {
            for outcome in self.react(i, event) {
                self.record_outcome(&outcome);
                outcomes.push(outcome);
            }
        }
        outcomes
    }
}
