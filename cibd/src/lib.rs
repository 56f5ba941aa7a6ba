//! halo-cibd: the CIB replicated with raft (the `raft` crate) and stored with `sled`.
//! `store` keeps raft's log, hard state and snapshots durably; `replica` is the sans-IO
//! raft wrapper that turns CIB writes into committed log entries.

pub mod replica;
pub mod store;
