//! halo-execd's pieces: finding agents (`agent`), running one action (`run`), exit codes
//! and op statuses (`rc`).

pub mod agent;
pub mod rc;
pub mod run;
