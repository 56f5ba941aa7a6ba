//! The membership layer as sans-IO state machines (no socket, clock or task inside):
//! totem single-ring ordering and membership, votequorum, and process groups (CPG).
//! Time is passed in as milliseconds; outputs are polled. See ../shared/MEMBERSHIP-NOTES.md.

pub mod cpg;
pub mod crypto;
pub mod quorum;
pub mod totem;
pub mod wire;
