//! The scheduler: a pure function from a CIB and "now" to a transition (actions
//! with their orderings) and its summary. No I/O and no clock inside: the caller
//! passes the time. Stages run in a fixed order (SCHEDULER-NOTES section 1):
//! unpack -> constraints -> allocate -> actions -> summary.

pub mod actions;
pub mod allocate;
pub mod constraints;
pub mod display;
pub mod graph;
pub mod rules;
pub mod score;
pub mod summary;
pub mod unpack;

use chrono::NaiveDateTime;
use cib::Cib;

pub use score::{Score, INFINITY};
pub use unpack::Cluster;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub enum Role {
    #[default]
    Unknown,
    Stopped,
    Started,
    Unpromoted,
    Promoted,
}

impl unpack::Rsc {
    /// Failed on this node (and the failure is not ignored).
    pub fn failed_on(&self, n: unpack::NodeId) -> bool {
        self.history.get(&n).is_some_and(|h| h.failed && !h.failure_ignored)
    }
}

/// An interval or duration as Pacemaker writes them: plain seconds ("10"), with a unit
/// ("10s", "5min", "1h", "500ms"), or ISO 8601 ("PT10S"); in milliseconds.
pub fn interval_ms(s: &str) -> Option<u64> {
    let t = s.trim();
    if t.is_empty() {
        return Some(0);
    }
    if let Some(iso) = t.strip_prefix('P').or_else(|| t.strip_prefix('p')) {
        let mut total: u64 = 0;
        let mut num = String::new();
        let mut in_time = false;
        for ch in iso.chars() {
            match ch {
                'T' | 't' => in_time = true,
                '0'..='9' | '.' => num.push(ch),
                u => {
                    let v: f64 = num.parse().ok()?;
                    num.clear();
                    let unit_ms = match (u.to_ascii_uppercase(), in_time) {
                        ('Y', false) => 365.0 * 86_400_000.0,
                        ('M', false) => 30.0 * 86_400_000.0,
                        ('W', false) => 7.0 * 86_400_000.0,
                        ('D', false) => 86_400_000.0,
                        ('H', true) => 3_600_000.0,
                        ('M', true) => 60_000.0,
                        ('S', true) => 1000.0,
                        _ => return None,
                    };
                    total += (v * unit_ms) as u64;
                }
            }
        }
        return Some(total);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" => 1000,
        "ms" | "msec" | "msecs" => 1,
        "us" | "usec" | "usecs" => return Some(n / 1000),
        "m" | "min" | "mins" => 60_000,
        "h" | "hr" | "hrs" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Everything one scheduler run produces.
pub struct Transition<'a> {
    pub cluster: Cluster<'a>,
    pub plan: actions::Plan,
    pub executed: Vec<actions::ActionId>,
    /// Each resource's node table before colocations (shown by `-s` for groups, their
    /// members and clones).
    pub base_tables: std::collections::BTreeMap<unpack::RscId, std::collections::BTreeMap<unpack::NodeId, Score>>,
    /// Clones, cloned groups and their members: their tables when they were placed.
    pub group_tables: std::collections::BTreeMap<unpack::RscId, std::collections::BTreeMap<unpack::NodeId, Score>>,
}

/// Run the scheduler over a CIB at time `now`.
pub fn schedule(cib: &Cib, now: NaiveDateTime) -> Transition<'_> {
    let mut cluster = Cluster::unpack(cib, now);
    cluster.apply_policies();
    let colocs = cluster.colocations();
    let orders = cluster.orders();
    let (clear, base_tables, group_tables) = {
        let mut alloc = allocate::Allocator::new(&mut cluster, &colocs);
        alloc.build_tables();
        let mut base = alloc.base.clone();
        base.extend(alloc.own.clone());
        alloc.allocate_all();
        (alloc.clear_failcounts.clone(), base, alloc.assign_tables.clone())
    };
    for r in cluster.rscs.iter_mut() {
        // Promotable instances got their role from the promotion step.
        r.next_role = match (r.assigned, r.next_role) {
            (None, _) => Role::Stopped,
            (Some(_), Role::Promoted | Role::Unpromoted) => r.next_role,
            (Some(_), _) if !r.managed || r.unscheduled => r.role.max(Role::Started),
            (Some(_), _) => Role::Started,
        };
    }
    let plan = actions::plan(&cluster, &orders, &colocs, &clear);
    let executed = summary::executed(&plan);
    Transition { cluster, plan, executed, base_tables, group_tables }
}

impl Cluster<'_> {
    /// Cluster-wide policies that change what is managed before placement.
    fn apply_policies(&mut self) {
        // With fencing enabled but no way to fence, nothing may be touched (SCHEDULER-NOTES trap 3).
        let cannot_fence = self.options.stonith_enabled && !self.has_fencing_device && !self.options.have_watchdog;
        let quorum_stop = !self.have_quorum && self.options.no_quorum_policy == "stop";
        let maintenance_nodes: Vec<bool> = self.nodes.iter().map(|n| n.maintenance).collect();
        for r in self.rscs.iter_mut() {
            if cannot_fence {
                // Nothing may start or stop, but the resources are not shown as unmanaged.
                r.unscheduled = true;
            }
            if !r.is_primitive() {
                continue;
            }
            // A node in maintenance keeps what runs there, unmanaged.
            if r.running_on.iter().any(|&n| maintenance_nodes[n]) {
                r.managed = false;
            }
            if quorum_stop && !r.running_on.is_empty() {
                r.force_stop = true;
                r.stop_reason = Some("due to no quorum");
            }
            let failed_with = |f: unpack::OnFail| r.history.values().any(|h| h.failed && h.on_fail == Some(f.clone()));
            if failed_with(unpack::OnFail::Block) {
                r.managed = false;
            }
            if failed_with(unpack::OnFail::Stop) {
                r.force_stop = true;
            }
            if r.running_on.len() > 1 {
                match r.meta.get("multiple-active").map(String::as_str) {
                    Some("stop_only") => r.force_stop = true,
                    Some("block") => r.managed = false,
                    _ => {}
                }
            }
        }
        // Unmanaged resources stay where they are.
        let ids: Vec<usize> = (0..self.rscs.len()).collect();
        for id in ids {
            let r = &self.rscs[id];
            if r.is_primitive() && (!r.managed || r.unscheduled) {
                let assigned = if r.running_on.len() == 1 { Some(r.running_on[0]) } else { None };
                let r = &mut self.rscs[id];
                r.assigned = assigned;
                r.pinned = Some(assigned);
            }
        }
    }
}

impl Transition<'_> {
    /// The text `crm_simulate -S` prints, minus the optional date line.
    pub fn simulate_text(&self) -> String {
        let cl = &self.cluster;
        let mut out = String::new();
        if let Some(line) = display::disabled_blocked_line(cl) {
            out.push_str(&line);
            out.push_str("\n\n");
        }
        out.push_str("Current cluster status:\n");
        display::render(cl, &display::StateView::current(cl), &mut out);
        out.push_str("\nTransition Summary:\n");
        for l in summary::transition_summary(cl, &self.plan) {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str("\nExecuting Cluster Transition:\n");
        for &a in &self.executed {
            out.push_str(&summary::action_line(cl, &self.plan, a));
            out.push('\n');
        }
        out
    }

    /// Allocation scores as `crm_simulate -s` prints them, sorted as plain strings.
    pub fn scores_text(&self) -> String {
        let cl = &self.cluster;
        let mut lines = Vec::new();
        for (id, r) in cl.rscs.iter().enumerate() {
            if let unpack::Kind::Clone { promotable, .. } = r.kind {
                self.clone_score_lines(id, promotable, &mut lines);
            }
            if r.kind == unpack::Kind::Group {
                if let Some(base) = self.group_tables.get(&id).or_else(|| self.base_tables.get(&id)) {
                    for (&n, s) in base {
                        lines.push(format!("pcmk__group_assign: {} allocation score on {}: {}", r.id, cl.nodes[n].name, s));
                    }
                }
            }
            if !r.is_primitive() || r.orphan {
                continue;
            }
            let in_group = r.parent.is_some_and(|p| cl.rscs[p].kind == unpack::Kind::Group);
            if in_group {
                if let Some(base) = self.group_tables.get(&id).or_else(|| self.base_tables.get(&id)) {
                    for (&n, s) in base {
                        lines.push(format!("pcmk__group_assign: {} allocation score on {}: {}", r.id, cl.nodes[n].name, s));
                    }
                }
            }
            // A resource that is to be stopped is banned everywhere before its table is shown;
            // one that merely finds no usable node shows its table as it is.
            let to_stop = cl.to_be_stopped(id);
            for (&n, &s) in &r.allowed {
                let shown = if to_stop { Score::NEG_INF } else { s };
                lines.push(format!("pcmk__primitive_assign: {} allocation score on {}: {}", r.id, cl.nodes[n].name, shown));
            }
        }
        lines.sort();
        let mut out = String::from("Allocation scores:\n");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    /// `pcmk__clone_allocate` lines (the clone and each instance, before placement) and,
    /// for promotable clones, each instance's promotion score.
    fn clone_score_lines(&self, clone: unpack::RscId, promotable: bool, lines: &mut Vec<String>) {
        let cl = &self.cluster;
        let instances = &cl.rscs[clone].children;
        if let Some(t) = self.group_tables.get(&clone).or_else(|| self.base_tables.get(&clone)) {
            for (&n, s) in t {
                lines.push(format!("pcmk__clone_allocate: {} allocation score on {}: {}", cl.rscs[clone].id, cl.nodes[n].name, s));
            }
        }
        for &i in instances {
            // Each instance's table, and below it its members' (for cloned groups).
            let shown: Vec<unpack::RscId> = if cl.rscs[i].orphan { Vec::new() } else { cl.descendants(i) };
            for r in shown {
                if let Some(t) = self.base_tables.get(&r) {
                    for (&n, s) in t {
                        lines.push(format!("pcmk__clone_allocate: {} allocation score on {}: {}", cl.rscs[r].id, cl.nodes[n].name, s));
                    }
                }
            }
            if promotable {
                let (node, score) = cl.rscs[i].promotion_score.unwrap_or((None, Score::ZERO));
                let on = node.map(|n| cl.nodes[n].name.clone()).unwrap_or_else(|| "none".into());
                lines.push(format!("{} promotion score on {on}: {score}", cl.rscs[i].id));
            }
        }
    }

    pub fn revised_text(&self) -> String {
        let cl = &self.cluster;
        let mut out = String::from("Revised Cluster Status:\n");
        display::render(cl, &summary::revised(cl, &self.plan, &self.executed), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::interval_ms;

    #[test]
    fn intervals() {
        assert_eq!(interval_ms("10s"), Some(10_000));
        assert_eq!(interval_ms("10"), Some(10_000));
        assert_eq!(interval_ms("5min"), Some(300_000));
        assert_eq!(interval_ms("PT1M30S"), Some(90_000));
        assert_eq!(interval_ms("0"), Some(0));
        assert_eq!(interval_ms("abc"), None);
    }
}

/// How `crm_simulate` picks "now": the `-t` date if given, else the CIB's `execution-date`
/// (then it also prints a "Using the original execution date" line), else the caller's clock.
pub fn effective_now(cib: &Cib, date: Option<NaiveDateTime>, clock: NaiveDateTime) -> (NaiveDateTime, Option<String>) {
    if let Some(d) = date {
        return (d, None);
    }
    let exec = cib.attr("execution-date").and_then(|v| v.parse::<i64>().ok()).and_then(|s| chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0));
    match exec {
        Some(t) => (t.naive_utc(), Some(format!("Using the original execution date of: {}", t.naive_utc().format("%Y-%m-%d %H:%M:%SZ")))),
        None => (clock, None),
    }
}

impl Transition<'_> {
    /// The whole text of `crm_simulate -x FILE [-S] [-s]`.
    pub fn crm_simulate_text(&self, date_line: Option<&str>, show_scores: bool, simulate: bool) -> String {
        let mut out = String::new();
        if let Some(d) = date_line {
            out.push_str(d);
            out.push('\n');
        }
        let text = self.simulate_text();
        if show_scores {
            // Scores go between the current status and the transition summary.
            let (status, rest) = text.split_at(text.find("\nTransition Summary:").unwrap_or(text.len()));
            out.push_str(status);
            out.push('\n');
            out.push_str(&self.scores_text());
            out.push_str(rest);
        } else {
            out.push_str(&text);
        }
        if simulate {
            if let Some(d) = date_line {
                out.push_str(d);
                out.push('\n');
            }
            out.push('\n');
            out.push_str(&self.revised_text());
        }
        out
    }
}
