//! pipemedic: a self-healing agent for MySQL → Canal → Kafka → consumer →
//! PostgreSQL data-sync pipelines.
//!
//! The map, in the order data flows: the flow of one record (sources →
//! matching → rules → plan → actions → approval → audit), the agent's own
//! watches, read-only clients of the pipeline's systems, host services, and
//! the commands.
//!
//! Only what the binary and the integration tests use is `pub`: the command
//! line (`cli`), the approval endpoint's client (`approval::web::request`),
//! the read-only clients, canal's claim in ZooKeeper and the configuration.
//! Everything else is `pub(crate)`, so the compiler finds what nothing uses.

// The flow.
/// Log files followed like `tail -F`, turned into records.
pub(crate) mod sources;
/// Records → events: every rule's signatures, compiled together.
pub(crate) mod matching;
/// Events → plans, in Rhai: the sandbox, its API, playbooks, rule tests.
pub(crate) mod rules;
/// Plans of typed steps, their validation, and the policy that lets them run.
pub(crate) mod plan;
/// The only code that changes the world: one file per action family.
pub(crate) mod actions;
/// Approval of dangerous plans by a person: store, life cycle, mail, links.
pub mod approval;
/// The audit journal: every decision and what was done, one typed `Entry` per line.
pub(crate) mod audit;
/// One record through all of the above; the daemon, replay and diagnose feed it.
pub(crate) mod flow;

// The watches.
/// The agent's own watches (heartbeats, the C5 stall), as events.
pub(crate) mod probes;

// Read-only clients, and agents on several hosts.
/// ZooKeeper, Kafka, MySQL and the canal model in ZooKeeper, read-only.
pub mod clients;
/// Agents on several hosts acting on one system: K4 leader-first, canal HA.
pub mod cluster;
/// This host's agent answering the others: the K4 and canal-hold members.
pub(crate) mod peers;

// Host services.
/// The agent's configuration: one TOML file per host.
pub mod config;
/// Atomic writes, backups, refusing links and pre-planted files.
pub(crate) mod fsutil;
/// Outgoing mail: the outbox in the state directory and its sender.
pub(crate) mod mail;
/// Prometheus metrics.
pub(crate) mod metrics;
/// The state directory: small JSON documents replaced atomically.
pub(crate) mod state;
/// What the agent asks the operating system (processes, addresses).
pub(crate) mod system;
/// Validated values for what crosses from hostile input, and text for people.
pub(crate) mod types;
/// Random ids and content hashes.
pub(crate) mod digest;
/// Java `.properties` text as Java reads it: the one parser.
pub(crate) mod properties;
/// The daemon's background threads and their shutdown.
pub(crate) mod runtime;

// The commands and what they run.
/// The command line, one file per subcommand.
pub mod cli;
/// `pipemedic run`: the inotify loop, signals, checkpoints.
pub(crate) mod daemon;
/// `pipemedic demo`: the embedded example in a scratch directory.
pub(crate) mod demo;
/// `pipemedic diagnose`: the runbook's checks once, on demand.
pub(crate) mod diagnose;
/// `pipemedic replay`: old logs through the flow.
pub(crate) mod replay;
/// `pipemedic status` and the digest: the runbook's daily look.
pub(crate) mod report;
