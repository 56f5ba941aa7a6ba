//! A CIB whose resource failed its recurring monitor (`golden/failed-monitor.cib.xml`): the
//! failure is listed in every format, as crm_mon lists it.

mod common;

use common::{case_cib, first_difference, golden, now_of, strip_unproduced};
use serde_json::{json, Value};
use status::{render, Format, StatusInput};

fn input() -> StatusInput {
    StatusInput::new(now_of(&golden("failed-monitor.crm_mon.txt")))
}

#[test]
fn failed_monitor_is_listed_in_text() {
    let got = render(&case_cib("failed-monitor"), &input(), Format::Text);
    assert!(got.contains(
        "\nFailed Resource Actions:\n  * rsc1 10s-interval monitor on node2 returned 'not running' (process gone) at Thu Jan  1 00:05:00 2026 after 3ms\n"
    ));
    let want = golden("failed-monitor.crm_mon.txt");
    assert!(got == want, "{}", first_difference(&got, &want));
}

#[test]
fn failed_monitor_is_listed_in_xml() {
    let want = strip_unproduced(&golden("failed-monitor.crm_mon.xml"));
    let got = render(&case_cib("failed-monitor"), &StatusInput::new(now_of(&want)), Format::Xml);
    assert!(got == want, "{}", first_difference(&got, &want));
}

#[test]
fn failed_monitor_is_listed_in_json() {
    let got: Value = serde_json::from_str(&render(&case_cib("failed-monitor"), &input(), Format::Json)).unwrap();
    assert_eq!(
        got["failed_actions"],
        json!([{"resource": "rsc1", "op": "monitor", "interval_ms": 10000, "node": "node2", "rc": 7, "status": "complete", "reason": "process gone"}])
    );
    assert_eq!(
        got["resources"],
        json!([{"id": "rsc1", "agent": "ocf:heartbeat:Dummy", "role": "Failed", "nodes": ["node2"], "failcount": 1, "managed": true}])
    );
}

#[test]
fn expected_probe_results_are_not_failures() {
    // node1's probe returned "not running", as expected: nothing to list for it.
    let got = render(&case_cib("failed-monitor"), &input(), Format::Text);
    assert!(!got.contains("probe"));
    assert_eq!(got.matches("\n  * rsc1 ").count(), 1);
}
