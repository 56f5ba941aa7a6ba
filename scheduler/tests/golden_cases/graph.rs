//! The `graph` metric of the golden test: halo's transition graph (`halo simulate -G`,
//! `Transition::graph_xml`) against Pacemaker's (`exp/NAME.exp`, `crm_simulate -G`).
//!
//! Both are read with the same parser and reduced to actions and their inputs. An action
//! is `OPERATION_KEY@NODE` (`OPERATION_KEY` for an action on no node: most pseudo actions);
//! ids, attributes, digests and the synapse order are ignored. A graph matches when the
//! two sets of actions are equal and every action has the same set of inputs.
//!
//! Where the graphs differ, [`missing_data_orderings`] looks for the orderings that keep
//! data safe: Pacemaker orders B after A (directly or through other actions), halo runs
//! B, and halo does not order B after A (directly or through other actions).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cib::Element;

/// One action as it appears in a synapse or a trigger.
#[derive(Debug, Clone)]
pub struct Action {
    /// `rsc_op`, `pseudo_event` or `crm_event`.
    pub elem: String,
    /// `operation`: start, stop, stonith, notify, running, ...
    pub op: String,
    /// `operation_key`.
    pub key: String,
    pub node: Option<String>,
}

impl Action {
    fn of(e: &Element) -> Result<(String, Action), String> {
        let key = e.attr("operation_key").ok_or_else(|| format!("<{}> without operation_key", e.name))?.to_string();
        let op = e.attr("operation").ok_or_else(|| format!("<{} operation_key=\"{key}\"> without operation", e.name))?.to_string();
        let node = e.attr("on_node").filter(|n| !n.is_empty()).map(str::to_string);
        let norm = match &node {
            Some(n) => format!("{key}@{n}"),
            None => key.clone(),
        };
        Ok((norm, Action { elem: e.name.clone(), op, key, node }))
    }

    /// The resource of a resource action (`R` of `R_start_0`, `R_pre_notify_start_0`).
    fn rsc(&self) -> Option<&str> {
        if self.op == "stonith" || self.elem == "crm_event" {
            return None;
        }
        let (rest, interval) = self.key.rsplit_once('_')?;
        if !interval.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        rest.strip_suffix(self.op.as_str())?.strip_suffix('_')
    }
}

/// A transition graph reduced to what the metric compares.
#[derive(Debug, Default)]
pub struct Graph {
    /// The synapses' actions, by normalized key.
    pub actions: BTreeMap<String, Action>,
    /// Each synapse's inputs (normalized keys).
    pub inputs: BTreeMap<String, BTreeSet<String>>,
    /// Actions named only as inputs (none in a well-formed graph).
    pub triggers: BTreeMap<String, Action>,
}

pub fn parse(xml: &str) -> Result<Graph, String> {
    let doc = cib::xml::parse(xml).map_err(|e| e.to_string())?;
    if doc.root.name != "transition_graph" {
        return Err(format!("root is <{}>, not <transition_graph>", doc.root.name));
    }
    let mut g = Graph::default();
    for syn in doc.root.children_named("synapse") {
        let a = syn.child("action_set").and_then(|s| s.elements().next()).ok_or("a synapse without an action")?;
        let (key, action) = Action::of(a)?;
        let mut ins = BTreeSet::new();
        for t in syn.child("inputs").into_iter().flat_map(|i| i.children_named("trigger")) {
            let (k, a) = Action::of(t.elements().next().ok_or("an empty trigger")?)?;
            g.triggers.entry(k.clone()).or_insert(a);
            ins.insert(k);
        }
        // A key twice (never seen in Pacemaker's graphs): one action, the union of inputs.
        g.inputs.entry(key.clone()).or_default().extend(ins);
        g.actions.insert(key, action);
    }
    g.triggers.retain(|k, _| !g.actions.contains_key(k));
    Ok(g)
}

impl Graph {
    fn action(&self, key: &str) -> Option<&Action> {
        self.actions.get(key).or_else(|| self.triggers.get(key))
    }

    /// Every action `key` waits for, directly or through others.
    fn before(&self, key: &str) -> BTreeSet<&str> {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut todo: Vec<&str> = vec![key];
        while let Some(k) = todo.pop() {
            for i in self.inputs.get(k).into_iter().flatten() {
                if seen.insert(i.as_str()) {
                    todo.push(i.as_str());
                }
            }
        }
        seen
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Same actions, same inputs.
    Match,
    /// Same actions, some inputs differ.
    ActionsOnly,
    Differ,
}

pub fn compare(expected: &Graph, actual: &Graph) -> Verdict {
    if !expected.actions.keys().eq(actual.actions.keys()) {
        return Verdict::Differ;
    }
    let none = BTreeSet::new();
    let same = expected.actions.keys().all(|k| expected.inputs.get(k).unwrap_or(&none) == actual.inputs.get(k).unwrap_or(&none));
    if same {
        Verdict::Match
    } else {
        Verdict::ActionsOnly
    }
}

/// The kinds of ordering that keep data safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A node is fenced before a resource starts, is promoted or migrates (anywhere).
    Fence,
    /// A resource stops on one node before it starts on another.
    StopStart,
    /// A promotable resource is demoted (any instance) before it is promoted (any instance).
    DemotePromote,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fence => "fence-then-start",
            Kind::StopStart => "stop-then-start",
            Kind::DemotePromote => "demote-then-promote",
        }
    }
}

fn kind(a: &Action, b: &Action) -> Option<Kind> {
    if b.elem != "rsc_op" {
        return None;
    }
    if a.op == "stonith" && matches!(b.op.as_str(), "start" | "promote" | "migrate_to" | "migrate_from") {
        return Some(Kind::Fence);
    }
    let (ra, rb) = (a.rsc()?, b.rsc()?);
    if a.elem == "rsc_op" && a.op == "stop" && b.op == "start" && ra == rb && a.node.is_some() && a.node != b.node {
        return Some(Kind::StopStart);
    }
    // Clone instances: `ms:0` and `ms:1` are one promotable resource.
    let base = |r: &str| -> String {
        match r.rsplit_once(':') {
            Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b.to_string(),
            _ => r.to_string(),
        }
    };
    if a.op == "demote" && b.op == "promote" && base(ra) == base(rb) {
        return Some(Kind::DemotePromote);
    }
    None
}

/// A data-protecting ordering of Pacemaker's graph that halo's lacks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Missing {
    pub kind: Kind,
    pub first: String,
    pub then: String,
    /// `first` is not in halo's graph at all.
    pub absent: bool,
}

/// The note after a [`Missing`] whose first action halo's graph lacks.
pub const ABSENT: &str = " (first absent)";

impl Missing {
    /// `kind: first -> then`, without the note: what the list of known ones compares.
    pub fn id(&self) -> String {
        format!("{}: {} -> {}", self.kind.name(), self.first, self.then)
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.id(), if self.absent { ABSENT } else { "" })
    }
}

/// For every action B that both graphs run and every action A that Pacemaker's graph
/// orders B after (directly or through other actions) where A -> B is of a [`Kind`]:
/// the pairs halo's graph does not order. A missing from halo's graph counts as not
/// ordered.
pub fn missing_data_orderings(expected: &Graph, actual: &Graph) -> Vec<Missing> {
    let mut out = Vec::new();
    for (bk, b) in &expected.actions {
        if b.elem != "rsc_op" || !actual.actions.contains_key(bk) {
            continue;
        }
        let mut ordered: Option<BTreeSet<&str>> = None;
        for ak in expected.before(bk) {
            let Some(a) = expected.action(ak) else { continue };
            let Some(kind) = kind(a, b) else { continue };
            let ordered = ordered.get_or_insert_with(|| actual.before(bk));
            if !ordered.contains(ak) {
                out.push(Missing { kind, first: ak.to_string(), then: bk.clone(), absent: actual.action(ak).is_none() });
            }
        }
    }
    out.sort();
    out
}
