//! pipemedic: a self-healing agent for MySQL → Canal → Kafka → consumer →
//! PostgreSQL data-sync pipelines.
//!
//! The modules follow the flow of data:
//! [`sources`] (log files → records) → [`matching`] (records → events) →
//! [`rules`] (events → plans, in Rhai) → [`plan`] (plans and policy) →
//! [`actions`] (the only code that changes the world) → [`audit`].
//! [`flow`] strings them together for one record; [`daemon`] runs it
//! over live files, [`replay`] over old ones. [`clients`] read the
//! pipeline's systems (ZooKeeper, the canal model in it); [`cli`] holds the
//! commands, one file each.

pub mod actions;
pub mod approval;
pub mod audit;
pub mod cli;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod diagnose;
pub mod flow;
pub mod fsutil;
pub mod matching;
pub mod metrics;
pub mod plan;
pub mod probes;
pub mod replay;
pub mod report;
pub mod rules;
pub mod runtime;
pub mod sources;
pub mod state;
pub mod system;
pub mod types;
