//! Stage 4 of unpacking: each resource's history on each node (SCHEDULER-NOTES section 3):
//! which resource an lrm entry belongs to (orphans, anonymous clone instances), the role
//! and failures the operations leave behind, fail counts.

use super::*;

impl<'a> Cluster<'a> {
    /// Which resource a history entry belongs to; creates orphans for unknown ids.
    pub(crate) fn history_target(&mut self, lrm_id: &str, node: NodeId, lrm: &cib::LrmResource) -> RscId {
        // On a bundle replica's node, the bundle's primitive is recorded under its bare id.
        if self.nodes[node].bundle_node {
            if let Some((_, i)) = self.nodes[node].name.rsplit_once('-') {
                if let Some(id) = self.rsc_by_id(&format!("{lrm_id}:{i}")) {
                    return id;
                }
            }
        }
        if let Some(id) = self.rsc_by_id(lrm_id) {
            if self.rscs[id].is_primitive() {
                let anon_clone_member = self.anonymous_clone_of(id).is_some();
                if !anon_clone_member {
                    return id;
                }
            }
        }
        let base = lrm_id.split(':').next().unwrap_or(lrm_id);
        // Anonymous clone instances: history may use the bare id or any instance number.
        let candidates: Vec<RscId> = (0..self.rscs.len()).filter(|&i| self.rscs[i].is_primitive() && self.rscs[i].base_id == base && self.rscs[i].id != self.rscs[i].base_id).collect();
        if !candidates.is_empty() {
            // A second record on a node where an instance of an anonymous clone is already
            // active is an extra (orphan) instance of its own, to be stopped.
            let active_here = candidates.iter().find(|&&c| self.rscs[c].history.get(&node).is_some_and(|h| h.role > Role::Stopped)).copied();
            // So is a record for which every instance is already active elsewhere.
            let none_free = || candidates.iter().all(|&c| self.instance_busy_elsewhere(c, node) && !self.instance_on_node(c, node));
            if let Some(c) = active_here.or_else(|| none_free().then(|| candidates[0])) {
                let clone = self.rscs[c].parent.filter(|&p| matches!(self.rscs[p].kind, Kind::Clone { unique: false, .. }));
                if let (Some(clone), Some(prim)) = (clone, self.rscs[c].prim.clone()) {
                    let n = self.rscs[clone].children.len();
                    let id = self.add_primitive(&prim, &format!(":{n}"), Some(clone));
                    self.rscs[id].orphan = true;
                    return id;
                }
            }
            // The instance number in the history of an anonymous clone means nothing: prefer
            // an instance already holding history on this node (same group instance), then
            // the first instance with nothing active yet, in the order nodes are read.
            if let Some(&c) = candidates.iter().find(|&&c| self.instance_on_node(c, node)) {
                return c;
            }
            if let Some(&c) = candidates.iter().find(|&&c| !self.instance_busy_elsewhere(c, node)) {
                return c;
            }
        }
        // Orphan: history for an id the configuration does not have.
        if let Some(id) = self.rsc_by_id(lrm_id) {
            return id;
        }
        let prim = Primitive {
            id: lrm_id.to_string(),
            class: lrm.class.clone().unwrap_or_default(),
            provider: lrm.provider.clone(),
            agent: lrm.agent.clone().unwrap_or_default(),
            ..Default::default()
        };
        let id = self.add_primitive(&prim, "", None);
        self.rscs[id].orphan = true;
        if !self.options.stop_orphan_resources {
            self.rscs[id].managed = false;
        }
        self.top.push(id);
        id
    }

    pub(crate) fn anonymous_clone_of(&self, id: RscId) -> Option<RscId> {
        let mut cur = self.rscs[id].parent;
        while let Some(p) = cur {
            if let Kind::Clone { unique: false, .. } = self.rscs[p].kind {
                return Some(p);
            }
            cur = self.rscs[p].parent;
        }
        None
    }

    /// The clone instance (top of the instance subtree) that `id` belongs to.
    pub(crate) fn instance_root(&self, id: RscId) -> RscId {
        let mut cur = id;
        while let Some(p) = self.rscs[cur].parent {
            if matches!(self.rscs[p].kind, Kind::Clone { .. }) {
                return cur;
            }
            cur = p;
        }
        cur
    }

    pub(crate) fn instance_prims(&self, id: RscId) -> Vec<RscId> {
        let root = self.instance_root(id);
        self.primitives_of(root)
    }

    pub(crate) fn instance_on_node(&self, id: RscId, node: NodeId) -> bool {
        self.instance_prims(id).iter().any(|&p| self.rscs[p].history.contains_key(&node))
    }

    pub(crate) fn instance_busy_elsewhere(&self, id: RscId, node: NodeId) -> bool {
        self.instance_prims(id).iter().any(|&p| self.rscs[p].history.iter().any(|(&n, h)| n != node && h.role > Role::Stopped))
            || self.rscs[id].history.contains_key(&node)
    }

    pub fn primitives_of(&self, id: RscId) -> Vec<RscId> {
        if self.rscs[id].is_primitive() {
            return vec![id];
        }
        self.rscs[id].children.iter().flat_map(|&c| self.primitives_of(c)).collect()
    }

    pub(crate) fn unpack_history(&mut self) {
        // Cluster nodes first: they tell which remote connections and guest containers run.
        self.unpack_node_histories(false);
        for n in 0..self.nodes.len() {
            if !self.nodes[n].remote {
                continue;
            }
            let conn = self.nodes[n].connection.clone();
            let running = conn.and_then(|c| self.rsc_by_id(&c)).is_some_and(|r| {
                let r = &self.rscs[r];
                !r.running_on.is_empty() && !r.failed
            });
            // A guest also needs its implicit connection to be up.
            let name = self.nodes[n].name.clone();
            let connected = !self.nodes[n].guest || self.rsc_by_id(&name).is_some_and(|r| !self.rscs[r].running_on.is_empty());
            self.nodes[n].online = running && connected;
        }
        // A guest whose container sits on an unclean host is lost with it.
        let mut lost_guests = Vec::new();
        for n in 0..self.nodes.len() {
            if !self.nodes[n].guest {
                continue;
            }
            let conn = self.nodes[n].connection.clone().and_then(|c| self.rsc_by_id(&c));
            if conn.is_some_and(|c| self.rscs[c].running_on.iter().any(|&h| self.nodes[h].unclean)) {
                self.nodes[n].online = false;
                lost_guests.push(n);
            }
        }
        self.unpack_node_histories(true);
        for r in self.rscs.iter_mut() {
            let lost = r.history.iter().any(|(n, h)| lost_guests.contains(n) && h.role > Role::Stopped);
            if lost {
                r.failed = true;
            }
        }
        if self.options.shutdown_lock {
            self.apply_shutdown_locks();
        }
    }

    /// `shutdown-lock` (Pacemaker Explained, cluster options): a primitive outside clones
    /// and bundles, neither a fence device nor a remote connection, that a clean shutdown
    /// stops (or stopped: the lock its `lrm_resource` records) stays on that node, banned
    /// everywhere else, until it starts there again or `shutdown-lock-limit` passes.
    fn apply_shutdown_locks(&mut self) {
        let now_s = self.now.and_utc().timestamp();
        let limit = self.options.shutdown_lock_limit_s;
        let cib = self.cib;
        for st in &cib.status.nodes {
            let Some(node) = self.node_by_id_or_name(&st.id) else { continue };
            for lrm in &st.lrm {
                let (Some(t), Some(id)) = (lrm.shutdown_lock, self.rsc_by_id(&lrm.id)) else { continue };
                if limit > 0 && now_s > t + limit {
                    continue; // expired: the resource is free again
                }
                self.rscs[id].lock = Some((node, t));
            }
        }
        for id in 0..self.rscs.len() {
            let lockable = {
                let r = &self.rscs[id];
                let mut ancestors = std::iter::successors(r.parent, |&p| self.rscs[p].parent);
                r.kind == Kind::Primitive
                    && !r.is_remote_connection()
                    && !r.prim.as_ref().is_some_and(|p| p.class == "stonith")
                    && !ancestors.any(|p| matches!(self.rscs[p].kind, Kind::Clone { .. } | Kind::Bundle))
            };
            if !lockable {
                self.rscs[id].lock = None;
                continue;
            }
            let r = &self.rscs[id];
            if r.lock.is_some() {
                // Started elsewhere meanwhile: the lock no longer holds (nothing is disturbed).
                if !r.running_on.is_empty() {
                    self.rscs[id].lock = None;
                }
            } else if let [n] = r.running_on[..] {
                let node = &self.nodes[n];
                let since = node.attrs.get("shutdown").and_then(|v| v.parse::<i64>().ok());
                if let Some(t) = since.filter(|_| node.shutdown && !node.unclean) {
                    self.rscs[id].lock = Some((n, t));
                }
            }
            if let Some((at, _)) = self.rscs[id].lock {
                for n in (0..self.nodes.len()).filter(|&n| n != at) {
                    self.rscs[id].history_bans.entry(n).or_insert("shutdown-lock");
                }
            }
        }
    }

    pub(crate) fn unpack_node_histories(&mut self, remote: bool) {
        let cib = self.cib;
        for st in &cib.status.nodes {
            let Some(node) = self.node_by_id_or_name(&st.id) else { continue };
            if self.nodes[node].remote != remote {
                continue;
            }
            // A cleanly stopped node runs nothing: its history is stale. A guest's history stays
            // meaningful while its container is active, even if failed.
            let container_active = self.nodes[node].connection.as_deref().and_then(|c| self.rsc_by_id(c)).is_some_and(|r| !self.rscs[r].running_on.is_empty());
            // With fencing, a clean offline node's history still counts: whatever it says is
            // active there makes the node unclean (it is fenced before anything moves).
            let clean_offline = !self.nodes[node].online && !self.nodes[node].unclean && !container_active;
            if clean_offline && (!self.options.stonith_enabled || self.nodes[node].remote) {
                continue;
            }
            for lrm in &st.lrm {
                let mut ops: Vec<&cib::LrmOp> = lrm.ops.iter().filter(|o| o.operation != "notify" && o.operation != "meta-data").collect();
                if ops.is_empty() {
                    continue;
                }
                // Oldest first by call id; pending (-1) last.
                ops.sort_by_key(|o| if o.call_id < 0 { i64::MAX } else { o.call_id });
                let id = self.history_target(&lrm.id, node, lrm);
                let mut hist = self.reduce_history(id, node, &ops);
                hist.lrm_id = lrm.id.clone();
                if clean_offline && hist.role > Role::Stopped && self.rscs[id].managed && !self.nodes[node].unclean {
                    self.nodes[node].unclean = true;
                    self.nodes[node].fence_reason = Some(format!("{} is thought to be active there", self.rscs[id].id));
                }
                // An anonymous clone can leave several records on one node (old instance
                // numbers): the active one describes the node.
                let keep_existing = self.rscs[id].history.get(&node).is_some_and(|h| h.role > Role::Stopped && hist.role <= Role::Stopped);
                if !keep_existing {
                    self.rscs[id].history.insert(node, hist);
                }
            }
        }
        self.summarise_history();
    }

    /// Each resource's active nodes, role and failure from its per-node history.
    pub(crate) fn summarise_history(&mut self) {
        for id in 0..self.rscs.len() {
            self.apply_fail_counts(id);
            let r = &mut self.rscs[id];
            let mut role = Role::Stopped;
            let mut running = Vec::new();
            let mut failed = false;
            for (&n, h) in &r.history {
                if h.role > Role::Stopped {
                    running.push(n);
                    role = role.max(h.role);
                }
                if h.failed && !h.failure_ignored {
                    failed = true;
                }
            }
            r.running_on = running;
            r.role = role;
            r.failed = failed;
        }
    }

    pub(crate) fn op_on_fail(&self, id: RscId, task: &str, interval: u64) -> Option<OnFail> {
        let prim = self.rscs[id].prim.as_ref()?;
        let op = prim.ops.iter().find(|o| o.name == task && interval_ms(&o.interval) == Some(interval));
        let v = op.and_then(|o| o.get("on-fail")).map(str::to_string).or_else(|| {
            let mut d = BTreeMap::new();
            let ctx = RuleContext { now: Some(self.now), op: Some((task, interval)), ..Default::default() };
            flatten(&self.op_defaults, &ctx, &mut d);
            d.get("on-fail").cloned()
        });
        v.and_then(|v| OnFail::parse(&v))
    }

    pub(crate) fn reduce_history(&mut self, id: RscId, node: NodeId, ops: &[&cib::LrmOp]) -> NodeHistory {
        let mut h = NodeHistory::default();
        let fencing = self.options.stonith_enabled;
        for op in ops {
            let task = op.operation.as_str();
            let probe = task == "monitor" && op.interval_ms == 0;
            h.last_call_id = op.call_id;
            // A recurring op recorded before the resource's last start (or role change)
            // no longer runs: the executor stopped it then.
            if matches!(task, "start" | "migrate_from" | "promote" | "demote") {
                h.recurring.clear();
            }
            // Pending is the op status alone: a record the DC synthesized for a lost result
            // (op-status 2, call-id -1) is a failure, as Pacemaker reads it.
            if op.op_status == -1 {
                h.pending_task = Some(task.to_string());
                match task {
                    "start" | "migrate_from" => h.role = h.role.max(Role::Started),
                    "promote" => h.role = Role::Promoted,
                    _ => {}
                }
                continue;
            }
            h.known = true;
            if op.op_status == 1 {
                // cancelled
                continue;
            }
            let target = op.target_rc().unwrap_or(if probe { 7 } else { 0 });
            // Degraded results count as the healthy ones they degrade.
            let rc = match op.rc_code {
                190 => 0,
                191 => 8,
                rc => rc,
            };
            // "done" and "error" statuses are re-derived from the rc; others (timeout...) stand.
            let status_ok = op.op_status == 0 || op.op_status == 4;
            let success = status_ok && (rc == target || (rc == 0 && target == 7 && probe) || (rc == 7 && probe) || (rc == 8 && probe));
            // A failed probe whose failure-timeout has passed only says "not running".
            let timeout = self.rscs[id].failure_timeout_s;
            let expired = timeout > 0 && op.last_rc_change.is_some_and(|t| self.now.and_utc().timestamp() > t + timeout);
            if probe && !success && expired {
                h.role = Role::Stopped;
                continue;
            }
            if probe && (op.op_status == 7 || rc == 5) {
                // Not installed: stopped and cannot run here.
                h.role = Role::Stopped;
                h.not_installed = true;
                self.rscs[id].history_bans.insert(node, "not installed");
                continue;
            }
            if success || (status_ok && rc == 7 && task == "stop") {
                h.pending_task = None;
                match task {
                    "start" | "migrate_from" => {
                        h.role = Role::Started;
                        h.start_digest = op.digest.clone();
                        h.start_restart_digest = op.restart_digest.clone();
                        self.clear_failure(&mut h);
                    }
                    "stop" => {
                        h.role = Role::Stopped;
                        h.recurring.clear();
                        self.clear_failure(&mut h);
                    }
                    "promote" => {
                        h.role = Role::Promoted;
                        self.clear_failure(&mut h);
                    }
                    "demote" => {
                        h.role = Role::Unpromoted;
                        self.clear_failure(&mut h);
                    }
                    "migrate_to" => {
                        h.role = h.role.max(Role::Started);
                    }
                    "monitor" => {
                        match rc {
                            7 => {
                                h.role = Role::Stopped;
                                self.clear_failure(&mut h);
                            }
                            8 => h.role = Role::Promoted,
                            _ => {
                                h.role = if h.role == Role::Unpromoted { Role::Unpromoted } else { Role::Started };
                                if probe {
                                    h.start_digest.get_or_insert_with(|| op.digest.clone().unwrap_or_default());
                                }
                            }
                        }
                        if op.interval_ms > 0 {
                            h.recurring.insert(op.interval_ms, op.digest.clone());
                        }
                    }
                    _ => {}
                }
                continue;
            }
            // A failure.
            let on_fail = self.op_on_fail(id, task, op.interval_ms).unwrap_or(if task == "stop" {
                if fencing { OnFail::Fence } else { OnFail::Block }
            } else {
                OnFail::Restart
            });
            if on_fail == OnFail::Ignore {
                h.failure_ignored = true;
                if task != "stop" {
                    h.role = h.role.max(Role::Started);
                }
                continue;
            }
            let hard = matches!(rc, 2 | 4 | 5) || (rc == 3 && op.interval_ms == 0) || matches!(op.op_status, 5 | 6 | 7);
            if rc == 6 || op.op_status == 6 {
                self.rscs[id].banned_everywhere = true;
            }
            if hard {
                self.rscs[id].history_bans.insert(node, "hard error");
            }
            if task == "stop" {
                self.rscs[id].history_bans.insert(node, "__stop_fail__");
            }
            if on_fail == OnFail::Fence && fencing && !self.nodes[node].unclean {
                let why = format!("{} failed there", self.rscs[id].id);
                self.nodes[node].unclean = true;
                self.nodes[node].fence_reason = Some(why);
                self.fence_for_failure.insert(node);
            }
            h.failed = !self.nodes[node].unclean || self.fence_for_failure.contains(&node);
            h.on_fail = Some(h.on_fail.take().map_or(on_fail.clone(), |o: OnFail| o.max(on_fail.clone())));
            match task {
                "promote" => h.role = Role::Promoted,
                // A blocked failed demote leaves it promoted; otherwise it is no longer promoted.
                "demote" if on_fail == OnFail::Block => h.role = Role::Promoted,
                "demote" => h.role = Role::Unpromoted,
                "monitor" if rc == 8 => h.role = Role::Promoted,
                "monitor" if rc == 7 && !probe => h.role = h.role.max(Role::Started),
                _ => h.role = h.role.max(Role::Started),
            }
            if op.interval_ms > 0 {
                h.recurring.insert(op.interval_ms, op.digest.clone());
            }
        }
        h.known |= h.role > Role::Stopped;
        h
    }

    pub(crate) fn clear_failure(&self, h: &mut NodeHistory) {
        // Failures whose on-fail keeps them (stop/fence/standby) survive a later success.
        if !matches!(h.on_fail, Some(OnFail::Stop) | Some(OnFail::Fence) | Some(OnFail::Standby) | Some(OnFail::Block)) {
            h.failed = false;
            h.on_fail = None;
        }
    }

    pub(crate) fn apply_fail_counts(&mut self, id: RscId) {
        self.rscs[id].fail_counts.clear();
        let base = self.rscs[id].base_id.clone();
        let full = self.rscs[id].id.clone();
        for n in 0..self.nodes.len() {
            let mut count = Score::ZERO;
            let mut last: Option<i64> = None;
            for (k, v) in &self.nodes[n].attrs {
                if let Some(rest) = k.strip_prefix("fail-count-") {
                    let name = rest.split('#').next().unwrap_or(rest);
                    if name == base || name == full {
                        count = count.add(Score::parse(v).unwrap_or(Score::ZERO));
                    }
                } else if let Some(rest) = k.strip_prefix("last-failure-") {
                    let name = rest.split('#').next().unwrap_or(rest);
                    if name == base || name == full {
                        let t = v.parse::<i64>().unwrap_or(0);
                        last = Some(last.map_or(t, |l: i64| l.max(t)));
                    }
                }
            }
            if count.0 > 0 {
                self.rscs[id].fail_counts.insert(n, (count.0, last));
            }
        }
    }
}

