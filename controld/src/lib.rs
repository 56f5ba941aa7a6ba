//! halo-controld: the controller. Sans-IO cores (`seniority`: who is DC; `engine`: one
//! transition graph; `attrs`: when the DC writes a node attribute (dampening); `core`: the
//! controller of one node, join and DC role included),
//! the status writes it makes (`records`), and the daemon that drives them (`daemon`).

pub mod attrs;
pub mod core;
pub mod daemon;
pub mod engine;
pub mod records;
pub mod seniority;
