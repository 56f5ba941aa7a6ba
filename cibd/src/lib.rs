//! halo-cibd: the CIB replicated with raft (the `raft` crate) and stored with `sled`.
//! `store` keeps raft's log, hard state and snapshots durably; `replica` is the sans-IO
//! raft wrapper that turns CIB writes into committed log entries; `machine` applies them
//! to the CIB; `daemon` is the process that drives them over the membership layer.

pub mod daemon;
pub mod machine;
pub mod replica;
pub mod store;
