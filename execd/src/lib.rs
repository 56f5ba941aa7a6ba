//! halo-execd's pieces: finding agents (`agent`), running one action (`run`), exit codes
//! and op statuses (`rc`), the systemd class (`systemd`), the stonith class handed to halo-fenced (`stonith`), the per-resource queues and recurring ops (`executor`), and the
//! operation history in the CIB's `lrm_rsc_op` form (`history`).

pub mod agent;
pub mod daemon;
pub mod executor;
pub mod history;
pub mod rc;
pub mod run;
pub mod stonith;
pub mod systemd;
