//! The fencing sections, as crm_mon 2.1.5 prints them with `--fence-history=2` (failed
//! actions, then the rest; pending first, newest first). crm_mon cannot show a fencer's
//! history from a CIB file, so the expected lines follow Pacemaker's
//! `stonith__history_description` (full history, friendly form) and `stonith_event_xml`.

mod common;

use common::case_cib;
use status::{render, FenceEvent, FenceState, Format, StatusInput};

fn event(target: &str, action: &str, state: FenceState, by: Option<&str>, completed_ms: Option<i64>) -> FenceEvent {
    FenceEvent {
        target: target.into(),
        action: action.into(),
        state,
        origin: "node2".into(),
        executioner: by.map(str::to_string),
        client: "pacemaker-controld.1234".into(),
        completed_ms,
        exit_reason: None,
    }
}

fn input() -> StatusInput {
    let mut failed = event("node1", "reboot", FenceState::Failed, Some("node2"), Some(1_767_225_650_000));
    failed.exit_reason = Some("device timed out".into());
    let now = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).and_then(|d| d.and_hms_opt(1, 0, 0)).unwrap();
    let mut input = StatusInput::new(now);
    input.local_node = Some("node2".into());
    input.fencing = Some(vec![
        failed,
        event("node1", "reboot", FenceState::Done, Some("node3"), Some(1_767_225_700_123)),
        event("node4", "off", FenceState::Pending, None, None),
    ]);
    input
}

#[test]
fn text_sections() {
    let got = render(&case_cib("web-cluster"), &input(), Format::Text);
    let tail = "\nFailed Fencing Actions:\n\
        \x20 * reboot of node1 by node2 for pacemaker-controld.1234@node2 failed (device timed out) at 2026-01-01 00:00:50Z (a later attempt from node3 succeeded)\n\
        \nFencing History:\n\
        \x20 * turning off of node4 for pacemaker-controld.1234@node2 pending\n\
        \x20 * reboot of node1 by node3 for pacemaker-controld.1234@node2 successful at 2026-01-01 00:01:40Z\n";
    assert!(got.ends_with(tail), "got:\n{got}");
    assert!(got.contains("  * Last updated: Thu Jan  1 01:00:00 2026 on node2\n"), "got:\n{got}");
}

#[test]
fn local_time_zone() {
    let mut input = input();
    input.utc_offset_s = -5 * 3600;
    let got = render(&case_cib("web-cluster"), &input, Format::Text);
    assert!(got.contains("successful at 2025-12-31 19:01:40 -05:00\n"), "got:\n{got}");
}

#[test]
fn no_history_no_sections() {
    let mut input = input();
    input.fencing = Some(Vec::new());
    let got = render(&case_cib("web-cluster"), &input, Format::Text);
    assert!(!got.contains("Fencing"));
}

#[test]
fn xml_events() {
    let got = render(&case_cib("web-cluster"), &input(), Format::Xml);
    let want = "  <fence_history>\n\
        \x20   <fence_event action=\"off\" target=\"node4\" client=\"pacemaker-controld.1234\" origin=\"node2\" status=\"pending\"/>\n\
        \x20   <fence_event action=\"reboot\" target=\"node1\" client=\"pacemaker-controld.1234\" origin=\"node2\" status=\"success\" delegate=\"node3\" completed=\"2026-01-01 00:01:40Z\"/>\n\
        \x20   <fence_event action=\"reboot\" target=\"node1\" client=\"pacemaker-controld.1234\" origin=\"node2\" status=\"failed\" exit-reason=\"device timed out\" delegate=\"node2\" completed=\"2026-01-01 00:00:50Z\"/>\n\
        \x20 </fence_history>\n";
    assert!(got.contains(want), "got:\n{got}");
    assert!(got.contains("<last_update time=\"Thu Jan  1 01:00:00 2026\" origin=\"node2\"/>"));
}
