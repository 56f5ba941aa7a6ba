//! Stages 1-4 of a scheduler run: cluster options, node states, the resource
//! tree (clone instances expanded), and each resource's history on each node.
//! See SCHEDULER-NOTES sections 1-3 for the behaviour this reproduces.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use cib::{Cib, NvSet, Primitive, Resource};

use crate::rules::{self, RuleContext};
use crate::score::Score;
use crate::{interval_ms, Role};

mod history;

pub type NodeId = usize;
pub type RscId = usize;

#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub id: String,
    pub name: String,
    pub online: bool,
    pub unclean: bool,
    pub standby: bool,
    pub pending: bool,
    pub maintenance: bool,
    pub shutdown: bool,
    pub remote: bool,
    /// A guest node (a resource's `remote-node` meta attribute) rather than a remote node.
    pub guest: bool,
    /// The resource whose activity makes this remote or guest node online.
    pub connection: Option<String>,
    pub fence_reason: Option<String>,
    /// Node attributes (configured and transient) plus the `#uname`-style built-ins.
    pub attrs: BTreeMap<String, String>,
    pub health: Score,
    /// Resources assigned here in this run (placement tie-break).
    pub assigned_count: usize,
    /// A bundle replica's guest node: only that bundle's resource runs there.
    pub bundle_node: bool,
    /// A remote node whose connection will not run after this transition.
    pub connection_lost: bool,
}

impl NodeInfo {
    /// Can new resources be placed here?
    pub fn available(&self) -> bool {
        self.online && !self.unclean && !self.standby && !self.pending && !self.maintenance && !self.shutdown && !self.connection_lost
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Primitive,
    Group,
    Clone { promotable: bool, unique: bool },
    Bundle,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum OnFail {
    Ignore,
    Block,
    Stop,
    Restart,
    Fence,
    Standby,
    Demote,
}

impl OnFail {
    pub fn parse(s: &str) -> Option<OnFail> {
        Some(match s.to_ascii_lowercase().as_str() {
            "ignore" => OnFail::Ignore,
            "block" => OnFail::Block,
            "stop" => OnFail::Stop,
            "restart" | "restart-container" | "reset-remote" => OnFail::Restart,
            "fence" => OnFail::Fence,
            "standby" => OnFail::Standby,
            "demote" => OnFail::Demote,
            _ => return None,
        })
    }
}

/// What one resource's history says about one node.
#[derive(Debug, Clone, Default)]
pub struct NodeHistory {
    pub role: Role,
    pub failed: bool,
    pub on_fail: Option<OnFail>,
    pub failure_ignored: bool,
    pub pending_task: Option<String>,
    /// Some op here finished (or a pending one makes it active): its state on the node
    /// is known. A history of pending ops alone (a stop still running) is not: Pacemaker
    /// probes the node again, and the probe queues behind the op.
    pub known: bool,
    pub not_installed: bool,
    /// Recurring monitors recorded as active: interval ms -> op digest.
    pub recurring: BTreeMap<u64, Option<String>>,
    /// Digests of the last start (restart digest, full digest).
    pub start_digest: Option<String>,
    pub start_restart_digest: Option<String>,
    /// The last op (by call id) for reporting and digests.
    pub last_call_id: i64,
    /// The id the history used (an anonymous clone instance may be renumbered).
    pub lrm_id: String,
}

#[derive(Debug, Clone)]
pub struct Rsc {
    pub id: String,
    /// The id without a clone instance suffix (what history of anonymous clones uses).
    pub base_id: String,
    pub kind: Kind,
    pub parent: Option<RscId>,
    pub children: Vec<RscId>,
    pub prim: Option<Primitive>,
    pub meta: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
    pub priority: i64,
    pub stickiness: Score,
    pub migration_threshold: i64,
    pub failure_timeout_s: i64,
    pub managed: bool,
    pub target_role: Option<Role>,
    pub orphan: bool,
    /// Nodes with history: what each says.
    pub history: BTreeMap<NodeId, NodeHistory>,
    /// Nodes where the resource is active now (role > Stopped).
    pub running_on: Vec<NodeId>,
    pub role: Role,
    pub failed: bool,
    pub blocked: bool,
    /// Bans from history (hard errors, failed stops): node -> reason.
    pub history_bans: BTreeMap<NodeId, &'static str>,
    /// `shutdown-lock`: the node this resource is locked to and since when (epoch s).
    pub lock: Option<(NodeId, i64)>,
    pub banned_everywhere: bool,
    /// Fail count and last failure time (epoch s) per node, from node attributes.
    pub fail_counts: BTreeMap<NodeId, (i64, Option<i64>)>,
    // Placement results.
    pub allowed: BTreeMap<NodeId, Score>,
    pub assigned: Option<NodeId>,
    pub next_role: Role,
    pub allocating: bool,
    pub allocated: bool,
    /// Unmanaged (or not scheduled): its node is fixed before placement (its current one,
    /// if any); its table is still worked out and shown.
    pub pinned: Option<Option<NodeId>>,
    /// Must end up stopped whatever the scores say (on-fail=stop, multiple-active=stop_only).
    pub force_stop: bool,
    /// Implicit (a guest node's connection): never shown, never scheduled on its own.
    pub hidden: bool,
    /// Shown but not scheduled yet (bundle internals): kept as they are.
    pub unscheduled: bool,
    /// Why a forced stop happens, for the summary ("due to no quorum").
    pub stop_reason: Option<&'static str>,
    /// Promotable clone instances: the node and score promotion was decided on.
    pub promotion_score: Option<(Option<NodeId>, Score)>,
}

impl Rsc {
    /// An ocf:pacemaker:remote connection (it makes a remote node).
    pub fn is_remote_connection(&self) -> bool {
        self.prim.as_ref().is_some_and(|p| p.class == "ocf" && p.provider.as_deref() == Some("pacemaker") && p.agent == "remote")
    }

    pub fn is_primitive(&self) -> bool {
        self.kind == Kind::Primitive
    }
    pub fn meta_bool(&self, key: &str, default: bool) -> bool {
        self.meta.get(key).map(|v| cib::is_true(v)).unwrap_or(default)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub stonith_enabled: bool,
    pub symmetric: bool,
    pub no_quorum_policy: String,
    pub stop_orphan_resources: bool,
    pub enable_startup_probes: bool,
    pub maintenance_mode: bool,
    pub stop_all_resources: bool,
    pub stonith_action: String,
    pub have_watchdog: bool,
    pub startup_fencing: bool,
    pub placement_strategy: String,
    pub start_failure_is_fatal: bool,
    /// `shutdown-lock`: a cleanly stopped node keeps its resources until it returns.
    pub shutdown_lock: bool,
    /// `shutdown-lock-limit` in seconds (0: the lock never expires).
    pub shutdown_lock_limit_s: i64,
    pub raw: BTreeMap<String, String>,
}

/// The unpacked cluster: everything later stages read and annotate.
pub struct Cluster<'a> {
    pub cib: &'a Cib,
    pub now: NaiveDateTime,
    pub options: Options,
    pub have_quorum: bool,
    pub nodes: Vec<NodeInfo>,
    pub rscs: Vec<Rsc>,
    /// Top-level resources in priority order (also the print order).
    pub top: Vec<RscId>,
    pub rsc_defaults: BTreeMap<String, String>,
    pub op_defaults: Vec<NvSet>,
    pub dc: Option<NodeId>,
    pub has_fencing_device: bool,
    /// Nodes made unclean by a resource failure with on-fail=fence.
    pub fence_for_failure: std::collections::BTreeSet<NodeId>,
    /// Nodes to fence for reasons found while scheduling (a lost ticket with loss-policy=fence).
    pub ticket_fence: BTreeMap<NodeId, String>,
}

/// Flatten name/value sets: higher `score` first, earlier first among equals; the
/// first value of a name wins; sets whose rule fails are skipped.
pub fn flatten(sets: &[NvSet], ctx: &RuleContext, into: &mut BTreeMap<String, String>) {
    let mut ordered: Vec<&NvSet> = sets.iter().collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s.score.as_deref().and_then(Score::parse).unwrap_or(Score::ZERO)));
    for set in ordered {
        if let Some(rule) = &set.rule {
            if !rules::evaluate(rule, ctx) {
                continue;
            }
        }
        for (k, v) in &set.pairs {
            into.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

fn parse_role(s: &str) -> Option<Role> {
    Some(match s.to_ascii_lowercase().as_str() {
        "stopped" => Role::Stopped,
        "started" => Role::Started,
        "unpromoted" | "slave" => Role::Unpromoted,
        "promoted" | "master" => Role::Promoted,
        _ => return None,
    })
}

/// What a bundle's XML says about its replicas.
pub struct BundleSpec {
    /// docker, podman or rkt: also the container resource's agent.
    pub runtime: String,
    pub image: String,
    pub replicas: usize,
    pub ip_range_start: Option<String>,
}

impl BundleSpec {
    pub fn of(b: &cib::Bundle) -> BundleSpec {
        let rt = b.raw.elements().find(|e| matches!(e.name.as_str(), "docker" | "podman" | "rkt"));
        let num = |k: &str| rt.and_then(|e| e.attr(k)).and_then(|v| v.parse::<usize>().ok());
        let replicas = num("replicas").or_else(|| num("promoted-max")).or_else(|| num("masters")).unwrap_or(1).min(1024);
        BundleSpec {
            runtime: rt.map(|e| e.name.clone()).unwrap_or_else(|| "docker".into()),
            image: rt.and_then(|e| e.attr("image")).unwrap_or("").to_string(),
            replicas,
            ip_range_start: b.raw.child("network").and_then(|n| n.attr("ip-range-start")).map(str::to_string),
        }
    }

    pub fn container_id(&self, bundle: &str, i: usize) -> String {
        format!("{bundle}-{}-{i}", self.runtime)
    }

    /// The replica's address: ip-range-start plus the replica number (IPv4).
    pub fn ip(&self, i: usize) -> Option<String> {
        let start: std::net::Ipv4Addr = self.ip_range_start.as_deref()?.parse().ok()?;
        Some(std::net::Ipv4Addr::from(u32::from(start).wrapping_add(i as u32)).to_string())
    }
}

pub fn parse_duration_s(s: &str) -> Option<i64> {
    interval_ms(s).map(|ms| (ms / 1000) as i64)
}

impl<'a> Cluster<'a> {
    pub fn unpack(cib: &'a Cib, now: NaiveDateTime) -> Cluster<'a> {
        let ctx = RuleContext { now: Some(now), ..Default::default() };
        let mut raw = BTreeMap::new();
        flatten(&cib.config.crm_config, &ctx, &mut raw);
        let opt_bool = |k: &str, d: bool| raw.get(k).map(|v| cib::is_true(v)).unwrap_or(d);
        let options = Options {
            stonith_enabled: opt_bool("stonith-enabled", true),
            symmetric: opt_bool("symmetric-cluster", true),
            no_quorum_policy: raw.get("no-quorum-policy").cloned().unwrap_or_else(|| "stop".into()),
            stop_orphan_resources: opt_bool("stop-orphan-resources", true),
            enable_startup_probes: opt_bool("enable-startup-probes", true),
            maintenance_mode: opt_bool("maintenance-mode", false),
            stop_all_resources: opt_bool("stop-all-resources", false),
            stonith_action: raw.get("stonith-action").cloned().unwrap_or_else(|| "reboot".into()),
            have_watchdog: opt_bool("have-watchdog", false),
            startup_fencing: opt_bool("startup-fencing", true),
            placement_strategy: raw.get("placement-strategy").cloned().unwrap_or_else(|| "default".into()),
            start_failure_is_fatal: opt_bool("start-failure-is-fatal", true),
            shutdown_lock: opt_bool("shutdown-lock", false),
            shutdown_lock_limit_s: raw.get("shutdown-lock-limit").and_then(|v| parse_duration_s(v)).unwrap_or(0),
            raw: raw.clone(),
        };
        let mut rsc_defaults = BTreeMap::new();
        flatten(&cib.config.rsc_defaults, &ctx, &mut rsc_defaults);
        let have_quorum = cib.attr("have-quorum").map(cib::is_true).unwrap_or(false);
        let mut cluster = Cluster {
            cib,
            now,
            options,
            have_quorum,
            nodes: Vec::new(),
            rscs: Vec::new(),
            top: Vec::new(),
            rsc_defaults,
            op_defaults: cib.config.op_defaults.clone(),
            dc: None,
            has_fencing_device: false,
            fence_for_failure: Default::default(),
            ticket_fence: BTreeMap::new(),
        };
        cluster.unpack_nodes();
        cluster.unpack_resources();
        cluster.unpack_history();
        cluster
    }

    pub fn node_by_id_or_name(&self, key: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.id == key).or_else(|| self.nodes.iter().position(|n| n.name == key))
    }

    pub fn node_by_name(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn rsc_by_id(&self, id: &str) -> Option<RscId> {
        self.rscs.iter().position(|r| r.id == id)
    }

    /// Remote nodes (ocf:pacemaker:remote connections) and guest nodes (`remote-node` meta),
    /// as (node name, connection resource id, guest).
    fn implicit_remote_nodes(&self) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        let ctx = RuleContext { now: Some(self.now), ..Default::default() };
        for r in &self.cib.config.resources {
            for p in r.primitives() {
                if p.class == "ocf" && p.provider.as_deref() == Some("pacemaker") && p.agent == "remote" {
                    out.push((p.id.clone(), p.id.clone(), false));
                }
                let mut meta = BTreeMap::new();
                flatten(&p.meta, &ctx, &mut meta);
                if let Some(name) = meta.get("remote-node") {
                    out.push((name.clone(), p.id.clone(), true));
                }
            }
            // Each replica of a bundle with a primitive inside is a guest node of its container.
            if let Resource::Bundle(b) = r {
                let spec = BundleSpec::of(b);
                if b.primitive.is_some() {
                    for i in 0..spec.replicas {
                        out.push((format!("{}-{}", b.id, i), spec.container_id(&b.id, i), true));
                    }
                }
            }
        }
        out
    }

    fn unpack_nodes(&mut self) {
        let cib = self.cib;
        let dc_uuid = cib.attr("dc-uuid");
        let fencing = self.options.stonith_enabled;
        let implicit = self.implicit_remote_nodes();
        let mut configs: Vec<cib::NodeConfig> = cib.config.nodes.clone();
        for (name, _, _) in &implicit {
            if !configs.iter().any(|n| &n.uname == name || &n.id == name) {
                configs.push(cib::NodeConfig { id: name.clone(), uname: name.clone(), node_type: Some("remote".into()), ..Default::default() });
            }
        }
        for nc in &configs {
            let link = implicit.iter().find(|(name, _, _)| name == &nc.uname || name == &nc.id);
            let remote = nc.node_type.as_deref() == Some("remote") || link.is_some();
            let mut node = NodeInfo {
                id: nc.id.clone(),
                name: nc.uname.clone(),
                remote,
                guest: link.is_some_and(|l| l.2),
                bundle_node: link.is_some_and(|l| l.2 && cib.config.resources.iter().any(|r| matches!(r, Resource::Bundle(_)) && l.1.starts_with(&format!("{}-", r.id())))),
                connection: link.map(|l| l.1.clone()),
                ..Default::default()
            };
            let ctx = RuleContext { now: Some(self.now), ..Default::default() };
            flatten(&nc.attrs, &ctx, &mut node.attrs);
            let state = cib.status.nodes.iter().find(|s| s.id == nc.id || (s.id.is_empty() && s.uname.as_deref() == Some(&nc.uname)));
            if let Some(st) = state {
                // Transient attributes override configured ones.
                let mut transient = BTreeMap::new();
                flatten(&st.transient, &ctx, &mut transient);
                node.attrs.extend(transient);
            }
            node.attrs.insert("#uname".into(), node.name.clone());
            node.attrs.insert("#id".into(), node.id.clone());
            node.attrs.insert("#kind".into(), if remote { "remote".into() } else { "cluster".into() });
            let is_dc = dc_uuid == Some(nc.id.as_str());
            node.attrs.insert("#is_dc".into(), is_dc.to_string());
            if let Some(name) = self.options.raw.get("cluster-name") {
                node.attrs.insert("#cluster-name".into(), name.clone());
            }
            if remote {
                // Online once the connection resource is found running (decided with the history).
            } else {
                self.decide_member_state(&mut node, state, fencing);
            }
            let attr_true = |n: &NodeInfo, k: &str| n.attrs.get(k).is_some_and(|v| cib::is_true(v));
            node.standby = attr_true(&node, "standby");
            node.maintenance = attr_true(&node, "maintenance") || self.options.maintenance_mode;
            if let Some(s) = node.attrs.get("shutdown") {
                node.shutdown = node.online && s != "0" && !s.is_empty();
            }
            if is_dc {
                self.dc = Some(self.nodes.len());
            }
            self.nodes.push(node);
        }
    }

    /// Pacemaker's reading of a cluster node's state (SCHEDULER-NOTES section 2).
    fn decide_member_state(&self, node: &mut NodeInfo, state: Option<&cib::NodeState>, fencing: bool) {
        let Some(st) = state else {
            // Never seen: unclean with startup fencing, else just offline.
            if fencing && self.options.startup_fencing {
                node.unclean = true;
                node.fence_reason = Some("node is unclean".into());
            }
            return;
        };
        let truthy = |v: &str| cib::is_true(v) || v.parse::<i64>().is_ok_and(|x| x > 0);
        let in_ccm = st.in_ccm.as_deref().map(truthy);
        let in_ccm_b = in_ccm.unwrap_or(false);
        let crmd_online = st.crmd.as_deref().is_some_and(|v| v == "online" || v.parse::<i64>().is_ok_and(|x| x > 0));
        let join = st.join.as_deref().unwrap_or("down");
        let expected_up = st.expected.as_deref() == Some("member");
        let fence = |node: &mut NodeInfo, why: &str| {
            node.unclean = true;
            node.fence_reason.get_or_insert_with(|| why.to_string());
        };
        let shutting_down = node.attrs.get("shutdown").is_some_and(|s| s != "0" && !s.is_empty());
        if !fencing {
            if !in_ccm_b {
                return;
            }
            if crmd_online {
                if join == "member" {
                    node.online = true;
                }
            } else if expected_up {
                fence(node, "peer is unexpectedly down");
            }
            return;
        }
        let terminate = node.attrs.get("terminate").is_some_and(|v| truthy(v));
        if shutting_down {
            node.online = crmd_online;
        } else if in_ccm.is_none() {
            fence(node, "peer has not been seen by the cluster");
        } else if join == "nack" || join == "banned" {
            fence(node, "peer failed Pacemaker membership criteria");
        } else if !terminate && !expected_up {
            if in_ccm_b || crmd_online {
                node.online = true;
                node.pending = true;
            }
        } else if terminate && join == "down" && !in_ccm_b && !crmd_online {
            // just shot
        } else if !in_ccm_b {
            fence(node, "peer is no longer part of the cluster");
        } else if !crmd_online {
            fence(node, "peer process is no longer available");
        } else if terminate {
            node.online = true;
            fence(node, "termination was requested");
        } else if join == "member" {
            node.online = true;
        } else if join == "pending" || join == "down" {
            node.online = true;
            node.pending = true;
        } else {
            node.online = true;
            fence(node, "peer was in an unknown state");
        }
    }

    fn new_rsc(&mut self, id: String, base_id: String, kind: Kind, parent: Option<RscId>) -> RscId {
        let rsc = Rsc {
            id,
            base_id,
            kind,
            parent,
            children: Vec::new(),
            prim: None,
            meta: BTreeMap::new(),
            params: BTreeMap::new(),
            priority: 0,
            stickiness: Score::ZERO,
            migration_threshold: crate::score::INFINITY,
            failure_timeout_s: 0,
            managed: true,
            target_role: None,
            orphan: false,
            history: BTreeMap::new(),
            running_on: Vec::new(),
            role: Role::Stopped,
            failed: false,
            blocked: false,
            history_bans: BTreeMap::new(),
            lock: None,
            banned_everywhere: false,
            fail_counts: BTreeMap::new(),
            allowed: BTreeMap::new(),
            assigned: None,
            next_role: Role::Stopped,
            allocating: false,
            allocated: false,
            pinned: None,
            force_stop: false,
            hidden: false,
            unscheduled: false,
            stop_reason: None,
            promotion_score: None,
        };
        self.rscs.push(rsc);
        let id = self.rscs.len() - 1;
        if let Some(p) = parent {
            self.rscs[p].children.push(id);
        }
        id
    }

    /// Meta attributes inherit downward: parent's values apply unless the child sets its own.
    fn apply_meta(&mut self, id: RscId, sets: &[NvSet], params: &[NvSet]) {
        let ctx = RuleContext { now: Some(self.now), ..Default::default() };
        let mut meta = BTreeMap::new();
        flatten(sets, &ctx, &mut meta);
        if let Some(p) = self.rscs[id].parent {
            for (k, v) in self.rscs[p].meta.clone() {
                meta.entry(k).or_insert(v);
            }
        }
        let mut pmap = BTreeMap::new();
        flatten(params, &ctx, &mut pmap);
        let r = &mut self.rscs[id];
        r.meta = meta;
        r.params = pmap;
    }

    fn finish_meta(&mut self, id: RscId) {
        // rsc_defaults may carry rules about the resource itself (rsc_expression).
        let defaults = {
            let r = &self.rscs[id];
            let rsc = r.prim.as_ref().map(|p| (p.class.as_str(), p.provider.as_deref(), p.agent.as_str()));
            let ctx = RuleContext { now: Some(self.now), rsc, ..Default::default() };
            let mut d = BTreeMap::new();
            flatten(&self.cib.config.rsc_defaults, &ctx, &mut d);
            d
        };
        let maintenance = self.options.maintenance_mode;
        // Clone instances stick to their node by 1 unless told otherwise.
        let mut in_clone = false;
        let mut cur = self.rscs[id].parent;
        while let Some(p) = cur {
            in_clone |= matches!(self.rscs[p].kind, Kind::Clone { .. });
            cur = self.rscs[p].parent;
        }
        let default_stickiness = if in_clone { Score(1) } else { Score::ZERO };
        let r = &mut self.rscs[id];
        let get = |k: &str| r.meta.get(k).or_else(|| defaults.get(k)).cloned();
        r.priority = get("priority").and_then(|v| Score::parse(&v)).unwrap_or(Score::ZERO).0;
        r.stickiness = get("resource-stickiness").or_else(|| get("default-resource-stickiness")).and_then(|v| Score::parse(&v)).unwrap_or(default_stickiness);
        r.migration_threshold = get("migration-threshold").and_then(|v| Score::parse(&v)).map(|s| s.0).unwrap_or(crate::score::INFINITY);
        r.failure_timeout_s = get("failure-timeout").and_then(|v| parse_duration_s(&v)).unwrap_or(0);
        r.managed = get("is-managed").map(|v| cib::is_true(&v)).unwrap_or(true) && !maintenance && !get("maintenance").is_some_and(|v| cib::is_true(&v));
        r.target_role = get("target-role").and_then(|v| parse_role(&v));
    }

    fn add_primitive(&mut self, p: &Primitive, suffix: &str, parent: Option<RscId>) -> RscId {
        let id = self.new_rsc(format!("{}{}", p.id, suffix), p.id.clone(), Kind::Primitive, parent);
        self.rscs[id].prim = Some(p.clone());
        self.apply_meta(id, &p.meta, &p.instance);
        self.finish_meta(id);
        if p.class == "stonith" {
            self.has_fencing_device = true;
        }
        id
    }

    fn add_resource(&mut self, r: &Resource, suffix: &str, parent: Option<RscId>) -> RscId {
        match r {
            Resource::Primitive(p) => self.add_primitive(p, suffix, parent),
            Resource::Group(g) => {
                let id = self.new_rsc(format!("{}{}", g.id, suffix), g.id.clone(), Kind::Group, parent);
                self.apply_meta(id, &g.meta, &g.instance);
                self.finish_meta(id);
                for m in &g.members {
                    self.add_primitive(m, suffix, Some(id));
                }
                id
            }
            Resource::Clone(c) => {
                let id = self.new_rsc(c.id.clone(), c.id.clone(), Kind::Clone { promotable: c.promotable, unique: false }, parent);
                self.apply_meta(id, &c.meta, &c.instance);
                self.finish_meta(id);
                let unique = self.rscs[id].meta_bool("globally-unique", false);
                self.rscs[id].kind = Kind::Clone { promotable: c.promotable, unique };
                let members = self.nodes.len().max(1);
                let max = self.rscs[id].meta.get("clone-max").and_then(|v| v.parse::<usize>().ok()).unwrap_or(members);
                for i in 0..max.min(4096) {
                    self.add_resource(&c.child, &format!(":{i}"), Some(id));
                }
                id
            }
            Resource::Bundle(b) => {
                // Bundles are shown, not yet scheduled: their containers and replicas are
                // unpacked (so status and guest nodes are right) but left unmanaged.
                let id = self.new_rsc(b.id.clone(), b.id.clone(), Kind::Bundle, parent);
                self.apply_meta(id, &b.meta, &[]);
                self.finish_meta(id);
                let spec = BundleSpec::of(b);
                for i in 0..spec.replicas {
                    let container = Primitive {
                        id: spec.container_id(&b.id, i),
                        class: "ocf".into(),
                        provider: Some("heartbeat".into()),
                        agent: spec.runtime.clone(),
                        ..Default::default()
                    };
                    let c = self.add_primitive(&container, "", Some(id));
                    self.rscs[c].unscheduled = true;
                    if let Some(p) = &b.primitive {
                        let inner = self.add_primitive(p, &format!(":{i}"), Some(id));
                        self.rscs[inner].unscheduled = true;
                    }
                }
                id
            }
        }
    }

    fn unpack_resources(&mut self) {
        let cib = self.cib;
        let mut tops = Vec::new();
        for r in &cib.config.resources {
            tops.push(self.add_resource(r, "", None));
        }
        // A guest node's connection is implicit: its history belongs to a hidden resource.
        let guests: Vec<String> = self.nodes.iter().filter(|n| n.guest).map(|n| n.name.clone()).collect();
        for g in guests {
            if self.rsc_by_id(&g).is_none() {
                let prim = Primitive { id: g.clone(), class: "ocf".into(), provider: Some("pacemaker".into()), agent: "remote".into(), ..Default::default() };
                let id = self.add_primitive(&prim, "", None);
                self.rscs[id].hidden = true;
                self.rscs[id].unscheduled = true;
            }
        }
        // Priority sorts the list once, for allocation and printing alike (stable).
        tops.sort_by_key(|&t| std::cmp::Reverse(self.rscs[t].priority));
        self.top = tops;
    }
}
