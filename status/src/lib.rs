//! Cluster status as `crm_mon -1 -r` prints it, from a CIB: a pure function, no I/O and no
//! clock (the caller passes "now", the local node's name, the fencing history and, when it
//! has one, membership's view of quorum).
//!
//! Matches Pacemaker 2.1.5's crm_mon (`CIB_file=X crm_mon -1 -r`, text and
//! `--output-as=xml`): the "Cluster Summary" block, "Node List" and "Full List of Resources"
//! (reusing `scheduler::unpack` and `scheduler::display`), "Failed Resource Actions" in
//! crm_mon's friendly form, and the fencing sections of `--fence-history=2` ("Failed Fencing
//! Actions", "Fencing History"). Golden files under `tests/golden/` were captured from the
//! real tool; over Pacemaker's 599 scheduler cases 504 texts and 512 XML documents are equal
//! (`tests/oracle.rs`), and every text that differs does so where the scheduler's own
//! crm_simulate status differs from Pacemaker's.
//!
//! Between unpacking and display one policy of the scheduler's is applied here too: what
//! runs on a node in maintenance is shown unmanaged.
//!
//! Deviations: the resource list is always the full one (crm_mon's `-r`; without it crm_mon
//! prints "Active Resources" only); node attributes, operations, tickets and bans are never
//! shown; the fencing history is printed in the order crm_mon sorts it but is not reduced
//! (crm_mon's fencer drops superseded entries itself). `Format::Json` is halo's own contract
//! for scripts (see `json.rs`), not a Pacemaker format.

mod failures;
mod json;
mod text;
mod xml;

use chrono::{Duration, NaiveDateTime};

use scheduler::display::StateView;
use scheduler::unpack::{NodeId, OnFail};
use scheduler::{Cluster, Role};

use failures::FailedAction;

/// What a status display needs that the CIB does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInput {
    /// The local wall-clock time ("Last updated").
    pub now: NaiveDateTime,
    /// The local time zone's offset from UTC, used to print epoch times (operation results,
    /// fencing) as crm_mon does in local time; `now` minus this is UTC.
    pub utc_offset_s: i32,
    /// The node the status is shown on ("Last updated: ... on NODE"); None for a CIB file.
    pub local_node: Option<String>,
    /// The fencer's history; None when it was not asked (as crm_mon with a CIB file).
    pub fencing: Option<Vec<FenceEvent>>,
    /// Membership's view of quorum; None to use the CIB's `have-quorum`.
    pub quorum: Option<Quorum>,
}

impl StatusInput {
    /// A status at `now` (UTC), for a CIB file: no local node, no fencer, the CIB's quorum.
    pub fn new(now: NaiveDateTime) -> StatusInput {
        StatusInput { now, utc_offset_s: 0, local_node: None, fencing: None, quorum: None }
    }

    fn now_utc(&self) -> NaiveDateTime {
        self.now - Duration::seconds(self.utc_offset_s.into())
    }
}

/// Quorum as membership reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    pub quorate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceState {
    Done,
    Failed,
    Pending,
}

impl std::str::FromStr for FenceState {
    type Err = StatusError;
    fn from_str(s: &str) -> Result<FenceState, StatusError> {
        match s {
            "done" => Ok(FenceState::Done),
            "failed" => Ok(FenceState::Failed),
            "pending" => Ok(FenceState::Pending),
            _ => Err(StatusError::FenceState(s.to_string())),
        }
    }
}

/// One entry of the fencer's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceEvent {
    pub target: String,
    /// "reboot", "off" or "on".
    pub action: String,
    pub state: FenceState,
    /// The node that asked for it.
    pub origin: String,
    /// The node that carried it out (crm_mon's "delegate"), once known.
    pub executioner: Option<String>,
    /// The client that asked (e.g. "pacemaker-controld.1234").
    pub client: String,
    /// When it completed (epoch ms); None while pending.
    pub completed_ms: Option<i64>,
    /// Why it failed, if the fencer said.
    pub exit_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `crm_mon -1 -r`.
    Text,
    /// halo's JSON contract (see the crate's `json` module).
    Json,
    /// `crm_mon -1 -r --output-as=xml`.
    Xml,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatusError {
    #[error("unknown output format {0:?} (expected text, json or xml)")]
    Format(String),
    #[error("unknown fencing state {0:?} (expected done, failed or pending)")]
    FenceState(String),
}

impl std::str::FromStr for Format {
    type Err = StatusError;
    fn from_str(s: &str) -> Result<Format, StatusError> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "xml" => Ok(Format::Xml),
            _ => Err(StatusError::Format(s.to_string())),
        }
    }
}

/// Render the status of `cib` in `format`.
pub fn render(cib: &cib::Cib, input: &StatusInput, format: Format) -> String {
    let facts = Facts::gather(cib, input);
    match format {
        Format::Text => text::render(&facts),
        Format::Json => json::render(&facts),
        Format::Xml => xml::render(&facts),
    }
}

/// Everything the three formats share, worked out once.
pub(crate) struct Facts<'a> {
    pub cl: Cluster<'a>,
    pub view: StateView,
    pub input: &'a StatusInput,
    pub stack: String,
    pub dc: Option<NodeId>,
    pub dc_version: Option<String>,
    pub quorate: bool,
    pub instances: usize,
    pub disabled: usize,
    pub blocked: usize,
    pub failed: Vec<FailedAction>,
    /// The fencing history sorted as crm_mon shows it: pending first, then newest first.
    pub fencing: Vec<FenceEvent>,
}

impl<'a> Facts<'a> {
    fn gather(cib: &'a cib::Cib, input: &'a StatusInput) -> Facts<'a> {
        let mut cl = Cluster::unpack(cib, input.now_utc());
        // What runs on a node in maintenance is left alone: shown unmanaged (as the
        // scheduler's policies stage does before placement).
        let maintenance: Vec<bool> = cl.nodes.iter().map(|n| n.maintenance).collect();
        for r in cl.rscs.iter_mut().filter(|r| r.is_primitive()) {
            if r.running_on.iter().any(|&n| maintenance[n]) {
                r.managed = false;
            }
        }
        let view = StateView::current(&cl);
        let raw = &cl.options.raw;
        let stack = raw.get("cluster-infrastructure").cloned().unwrap_or_else(|| "unknown".into());
        let dc_version = raw.get("dc-version").cloned();
        let quorate = input.quorum.map(|q| q.quorate).unwrap_or(cl.have_quorum);
        let (instances, disabled, blocked) = counts(&cl, &view);
        let failed = failures::failed_actions(&cl);
        let mut fencing = input.fencing.clone().unwrap_or_default();
        fencing.sort_by_key(|e| (e.state != FenceState::Pending, std::cmp::Reverse(e.completed_ms)));
        Facts { dc: cl.dc, cl, view, input, stack, dc_version, quorate, instances, disabled, blocked, failed, fencing }
    }

    /// Is a resource blocked from further action by a failure (on-fail=block)?
    pub(crate) fn blocked(&self, id: usize) -> bool {
        self.cl.rscs[id].history.values().any(|h| h.failed && h.on_fail == Some(OnFail::Block))
    }

    /// Disabled by its own or an ancestor's target-role.
    pub(crate) fn disabled(&self, id: usize) -> bool {
        let mut cur = Some(id);
        while let Some(c) = cur {
            if self.cl.rscs[c].target_role == Some(Role::Stopped) {
                return true;
            }
            cur = self.cl.rscs[c].parent;
        }
        false
    }

    pub(crate) fn node_name(&self, n: NodeId) -> &str {
        &self.cl.nodes[n].name
    }

    /// The fail count crm_mon would report: the highest over nodes.
    pub(crate) fn failcount(&self, id: usize) -> i64 {
        self.cl.rscs[id].fail_counts.values().map(|(c, _)| *c).max().unwrap_or(0)
    }

    /// A completed failed fencing action's later success: the delegate that did it.
    pub(crate) fn later_succeeded(&self, e: &FenceEvent) -> Option<&str> {
        if e.state != FenceState::Failed {
            return None;
        }
        self.fencing
            .iter()
            .find(|o| o.state == FenceState::Done && o.target == e.target && o.action == e.action && o.completed_ms > e.completed_ms)
            .map(|o| o.executioner.as_deref().unwrap_or(""))
    }
}

/// Resource instances configured, disabled, and blocked by failures, counted as Pacemaker
/// counts them: every primitive but inactive orphans, bundle replicas' addresses included.
fn counts(cl: &Cluster, view: &StateView) -> (usize, usize, usize) {
    let mut n = 0;
    let mut disabled = 0;
    let mut blocked = 0;
    for (id, r) in cl.rscs.iter().enumerate() {
        let active = view.active.get(&id).is_some_and(|a| !a.is_empty());
        if !r.is_primitive() || (r.orphan && !active) {
            continue;
        }
        n += 1;
        let promotable = matches!(cl.clone_of(id).map(|c| cl.rscs[c].kind), Some(scheduler::unpack::Kind::Clone { promotable: true, .. }));
        let off = r.target_role == Some(Role::Stopped) || (promotable && r.target_role == Some(Role::Unpromoted));
        disabled += usize::from(off);
        blocked += usize::from(r.history.values().any(|h| h.failed && h.on_fail == Some(OnFail::Block)));
    }
    for r in &cl.cib.config.resources {
        if let cib::Resource::Bundle(b) = r {
            let spec = scheduler::unpack::BundleSpec::of(b);
            if spec.ip_range_start.is_some() {
                n += spec.replicas;
            }
        }
    }
    (n, disabled, blocked)
}

/// The node's own maintenance attribute (the cluster-wide maintenance-mode is not a node's).
pub(crate) fn node_maintenance(n: &scheduler::unpack::NodeInfo) -> bool {
    n.attrs.get("maintenance").is_some_and(|v| cib::is_true(v))
}

/// "s" unless exactly one.
pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
