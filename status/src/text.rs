//! The text of `crm_mon -1 -r` (Pacemaker 2.1.5): "Cluster Summary", the maintenance
//! notice, "Node List", "Full List of Resources", "Failed Resource Actions", and the
//! fencing sections of `--fence-history=2`. Sections are separated by one blank line.
//!
//! The node and resource lists come from `scheduler::display::render`, which prints them
//! as crm_simulate nests them (two more spaces, "* " headers); here they are lifted to
//! crm_mon's top level.

use crate::failures::epoch_iso;
use crate::{plural, Facts, FenceEvent, FenceState};

pub(crate) fn render(f: &Facts) -> String {
    let mut out = String::from("Cluster Summary:\n");
    for line in summary_lines(f) {
        out.push_str(&format!("  * {line}\n"));
    }
    if f.cl.options.maintenance_mode {
        out.push_str("\n              *** Resource management is DISABLED ***\n");
        out.push_str("  The cluster will not attempt to start, stop or recover services\n");
    } else if f.cl.options.stop_all_resources {
        out.push_str("\n    *** Resource management is DISABLED ***\n");
        out.push_str("  The cluster will keep all resources stopped\n");
    }
    out.push('\n');
    out.push_str(&node_and_resource_lists(f));
    if !f.failed.is_empty() {
        out.push_str("\nFailed Resource Actions:\n");
        for a in &f.failed {
            out.push_str(&format!("  * {}\n", a.friendly_line(f.input.utc_offset_s)));
        }
    }
    let failed: Vec<&FenceEvent> = f.fencing.iter().filter(|e| e.state == FenceState::Failed).collect();
    if !failed.is_empty() {
        out.push_str("\nFailed Fencing Actions:\n");
        for e in failed {
            out.push_str(&format!("  * {}\n", fence_description(f, e)));
        }
    }
    let others: Vec<&FenceEvent> = f.fencing.iter().filter(|e| e.state != FenceState::Failed).collect();
    if !others.is_empty() {
        out.push_str("\nFencing History:\n");
        for e in others {
            out.push_str(&format!("  * {}\n", fence_description(f, e)));
        }
    }
    out
}

/// The items of "Cluster Summary", without their "  * " prefix.
fn summary_lines(f: &Facts) -> Vec<String> {
    let mut lines = vec![format!("Stack: {}", f.stack)];
    match f.dc {
        Some(dc) => {
            let quorum = if f.quorate { "with" } else { "WITHOUT" };
            let version = f.dc_version.as_deref().unwrap_or("unknown");
            lines.push(format!("Current DC: {} (version {version}) - partition {quorum} quorum", f.node_name(dc)));
        }
        None => lines.push("Current DC: NONE".into()),
    }
    let on = f.input.local_node.as_deref().map(|n| format!(" on {n}")).unwrap_or_default();
    lines.push(format!("Last updated: {}{on}", crate::failures::ctime(f.input.now)));
    lines.push(format!("Last change:  {}", last_change(f.cl.cib)));
    let nodes = f.cl.nodes.len();
    lines.push(format!("{nodes} node{} configured", plural(nodes)));
    let n = f.instances;
    let mut counts = format!("{n} resource instance{} configured", plural(n));
    match (f.disabled, f.blocked) {
        (0, 0) => {}
        (d, 0) => counts.push_str(&format!(" ({d} DISABLED)")),
        (0, b) => counts.push_str(&format!(" ({b} BLOCKED from further action due to failure)")),
        (d, b) => counts.push_str(&format!(" ({d} DISABLED, {b} BLOCKED from further action due to failure)")),
    }
    lines.push(counts);
    lines
}

/// "TIME by USER via CLIENT on ORIGIN", each part only when the CIB has it.
pub(crate) fn last_change(cib: &cib::Cib) -> String {
    let mut s = cib.attr("cib-last-written").unwrap_or("").to_string();
    for (word, key) in [("by", "update-user"), ("via", "update-client"), ("on", "update-origin")] {
        if let Some(v) = cib.attr(key) {
            s.push_str(&format!(" {word} {v}"));
        }
    }
    s
}

/// "Node List:" and "Full List of Resources:" at crm_mon's indentation.
fn node_and_resource_lists(f: &Facts) -> String {
    let mut nested = String::new();
    scheduler::display::render(&f.cl, &f.view, &mut nested);
    let mut out = String::new();
    for line in nested.lines() {
        let line = match line {
            "  * Node List:" => "Node List:",
            "  * Full List of Resources:" => "Full List of Resources:",
            l => l.strip_prefix("  ").unwrap_or(l),
        };
        out.push_str(line);
        out.push('\n');
    }
    if !f.cl.top.iter().any(|&t| !f.cl.rscs[t].hidden) {
        out.push_str("  * No resources\n");
    }
    out
}

/// The words of one fencing history entry (Pacemaker's `stonith__history_description`,
/// full history, friendly form).
pub(crate) fn fence_description(f: &Facts, e: &FenceEvent) -> String {
    let action = match e.action.as_str() {
        "" => "fencing",
        "on" => "unfencing",
        "off" => "turning off",
        a => a,
    };
    let mut s = format!("{action} of {}", e.target);
    let completed = matches!(e.state, FenceState::Done | FenceState::Failed);
    if let (true, Some(by)) = (completed, &e.executioner) {
        s.push_str(&format!(" by {by}"));
    }
    s.push_str(&format!(" for {}@{}", e.client, e.origin));
    s.push_str(match e.state {
        FenceState::Done => " successful",
        FenceState::Failed => " failed",
        FenceState::Pending => " pending",
    });
    if let (FenceState::Failed, Some(r)) = (e.state, &e.exit_reason) {
        s.push_str(&format!(" ({r})"));
    }
    if let (true, Some(ms)) = (completed, e.completed_ms) {
        s.push_str(&format!(" at {}", epoch_iso(ms.div_euclid(1000), f.input.utc_offset_s)));
    }
    if let Some(by) = f.later_succeeded(e) {
        s.push_str(&format!(" (a later attempt from {by} succeeded)"));
    }
    s
}
