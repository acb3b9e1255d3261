//! Read-only clients of the pipeline's systems: ZooKeeper, and the canal
//! model kept in it. What changes those systems is in `actions`.

pub mod canal;
pub mod zk;
