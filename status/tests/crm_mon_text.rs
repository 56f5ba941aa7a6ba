//! Snapshot tests: the text status equals `crm_mon -1 -r`'s (Pacemaker 2.1.5) on CIBs with
//! unclean nodes, groups, clones, bundles, maintenance mode, no DC, lost quorum and failed
//! actions. The goldens are crm_mon's own output (see `golden/README.md`); "now" is the time
//! crm_mon printed, so every line, "Last updated" included, must match.

mod common;

use common::{case_cib, first_difference, golden, now_of};
use status::{render, Format, StatusInput};

fn check(name: &str) {
    let want = golden(&format!("{name}.crm_mon.txt"));
    let cib = case_cib(name);
    let got = render(&cib, &StatusInput::new(now_of(&want)), Format::Text);
    assert!(got == want, "{name}: text differs from crm_mon's at {}\n--- got:\n{got}", first_difference(&got, &want));
}

#[test]
fn unclean_node_and_group() {
    check("web-cluster");
}

#[test]
fn failed_monitor_without_quorum() {
    check("bug-5069-op-enabled");
}

#[test]
fn failed_migrations_with_exit_reasons() {
    check("migration-ping-pong");
}

#[test]
fn maintenance_mode_and_pending_node() {
    check("probe-pending-node");
}

#[test]
fn bundles_and_guest_nodes() {
    check("guest-host-not-fenceable");
    check("bundle-order-fencing");
}

#[test]
fn one_second_interval_monitor() {
    check("group-dependents");
}

#[test]
fn long_running_start() {
    check("stop-unexpected");
}

#[test]
fn start_that_could_not_be_executed() {
    check("1484");
}

#[test]
fn no_dc() {
    check("anti-colocation-order");
}

#[test]
fn per_operation_fail_counts() {
    check("per-op-failcount");
}

#[test]
fn promotable_clone_with_orphan_instance() {
    check("bug-1572-1");
}

#[test]
fn no_resources() {
    check("no-resources");
}
