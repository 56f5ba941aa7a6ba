//! The XML status against `crm_mon -1 -r --output-as=xml` (Pacemaker 2.1.5), minus the
//! sections halo does not produce (`node_attributes`, `node_history`, `tickets`, `bans`;
//! see the crate's `xml` module). Goldens as described in `golden/README.md`.

mod common;

use common::{case_cib, first_difference, golden, now_of, strip_unproduced};
use status::{render, Format, StatusInput};

fn check(name: &str) {
    let want = strip_unproduced(&golden(&format!("{name}.crm_mon.xml")));
    let cib = case_cib(name);
    let got = render(&cib, &StatusInput::new(now_of(&want)), Format::Xml);
    assert!(got == want, "{name}: XML differs from crm_mon's at {}\n--- got:\n{got}", first_difference(&got, &want));
}

#[test]
fn web_cluster() {
    check("web-cluster");
}

#[test]
fn failures_and_failure_ignored() {
    check("bug-5069-op-enabled");
    check("group-dependents");
    check("migration-ping-pong");
    check("per-op-failcount");
}

#[test]
fn clones_groups_and_orphans() {
    check("1484");
    check("bug-1572-1");
}
