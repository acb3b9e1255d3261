//! pipemedic: a self-healing agent for MySQL → Canal → Kafka → consumer →
//! PostgreSQL data-sync pipelines.
//!
//! The modules in layers, from the bottom up: each uses only the layers
//! listed before it (`../shared/tools/modgraph` finds no cycle). The flow of
//! one record (sources → matching → rules → plan → actions → approval →
//! audit) crosses them; the configuration sits above every component,
//! composes their sections and hands each its own part; the commands sit
//! on top.
//!
//! Only what the binary and the integration tests use is `pub`: the command
//! line (`cli`), the approval endpoint's client (`approval::web::request`),
//! the read-only clients, canal's claim in ZooKeeper and the configuration.
//! Everything else is `pub(crate)`, so the compiler finds what nothing uses.

// 1. Foundations: nothing of the crate.
/// Validated values for what crosses from hostile input, and text for people.
pub(crate) mod types;
/// Random ids and content hashes.
pub(crate) mod digest;
/// Atomic writes, backups, refusing links and pre-planted files.
pub(crate) mod fsutil;
/// Java `.properties` text as Java reads it: the one parser.
pub(crate) mod properties;
/// The daemon's background threads, their shutdown, and bounded pauses.
pub(crate) mod runtime;

// 2. The host: files of the agent's own, the operating system.
/// The state directory: small JSON documents replaced atomically.
pub(crate) mod state;
/// What the agent asks the operating system (processes, addresses).
pub(crate) mod system;

// 3. The pipeline's systems, read-only, and agents on several hosts.
/// ZooKeeper, Kafka, MySQL and the canal model in ZooKeeper, read-only.
pub mod clients;
/// Agents on several hosts acting on one system: K4 leader-first, canal HA.
pub mod cluster;

// 4. Services every later layer may use.
/// Outgoing mail: the outbox in the state directory and its sender; what
/// became of each mail is told to a journal (the audit, above).
pub(crate) mod mail;
/// Prometheus metrics.
pub(crate) mod metrics;

// 5. Records and events, and the data's own check.
/// Log files followed like `tail -F`, turned into records.
pub(crate) mod sources;
/// Records → events: every rule's signatures, compiled together.
pub(crate) mod matching;
/// Are the PostgreSQL copies equal to the MySQL sources, and which rows
/// differ: checksums of key segments computed in both databases.
pub(crate) mod reconcile;
/// The agent's own watches (heartbeats, the C5 stall, its reconciles), as events.
pub(crate) mod probes;

// 6. Changing the world, and whether it may be changed now.
/// The only code that changes the world: one file per action family, each
/// acting on its own part of the configuration (`actions::Sections`).
pub(crate) mod actions;
/// Plans of typed steps, their validation, and the policy that lets them run.
pub(crate) mod plan;

// 7. What was decided and done, and who agreed.
/// The audit journal: every decision and what was done, one typed `Entry` per line.
pub(crate) mod audit;
/// Approval of dangerous plans by a person: store, life cycle, mail, links.
pub mod approval;
/// This host's agent answering the others: the K4 and canal-hold members.
pub(crate) mod peers;

// 8. The configuration: composes every section above, checks what spans
// sections, and hands each component its own part.
/// The agent's configuration: one TOML file per host.
pub mod config;

// 9. Rules and what the agent reports.
/// Events → plans, in Rhai: the sandbox, its API, playbooks.
pub(crate) mod rules;
/// `pipemedic status` and the digest: the runbook's daily look.
pub(crate) mod report;
/// `pipemedic demo`: the embedded example in a scratch directory.
pub(crate) mod demo;

// 10. One record through all of the above.
/// The flow of one record, from match to audit; the daemon, replay,
/// diagnose and the rule tests feed it.
pub(crate) mod flow;

// 11. The commands and what they run.
/// `pipemedic run`: the inotify loop, signals, checkpoints.
pub(crate) mod daemon;
/// `pipemedic diagnose`: the runbook's checks once, on demand.
pub(crate) mod diagnose;
/// `pipemedic replay`: old logs through the flow.
pub(crate) mod replay;
/// The command line, one file per subcommand.
pub mod cli;
