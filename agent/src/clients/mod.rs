//! Read-only clients of the pipeline's systems: ZooKeeper and the canal
//! model kept in it, Kafka's metadata and offsets, the MySQL sources'
//! binlogs and columns, the PostgreSQL targets' catalogues. What changes those systems is in `actions`.

pub mod canal;
pub(crate) mod kafka;
pub mod mysql;
pub mod postgres;
pub mod zk;
