//! The DC runs a transition: a graph taken from the scheduler, its actions dispatched to
//! nodes and the fencer, results recorded and confirmed, fencing outcomes.

use super::*;

impl Controller {
    /// The DC: a node's result.
    pub(super) fn on_result(&mut self, from: u32, r: pb::OpResult) {
        if r.dc != self.cfg.me || self.dc.is_none() {
            return;
        }
        let node = from.to_string();
        let name = self.name(from);
        if r.op_status == OP_CANCELLED {
            let op_id = format!("{}_{}_{}", r.rsc, r.task, r.interval_ms);
            self.write(records::delete_op(&node, &r.rsc, &op_id), AfterWrite::Nothing);
            return;
        }
        let parsed = records::parse_transition_key(&r.transition_key);
        let expected = parsed.map(|p| p.2).unwrap_or(0);
        let probe = r.task == "monitor" && r.interval_ms == 0;
        let rc = match r.rc {
            OCF_DEGRADED => 0,
            OCF_DEGRADED_PROMOTED => OCF_RUNNING_PROMOTED,
            x => x,
        };
        let as_expected = r.op_status == OP_DONE && rc == expected;
        // A probe that finds a resource running or stopped reports state, not a failure.
        let failure = !as_expected && !(probe && r.op_status == OP_DONE && matches!(rc, 0 | OCF_NOT_RUNNING | OCF_RUNNING_PROMOTED));
        let agent = r.agent.clone();
        let (uuid_matches, current) = {
            let d = self.dc.as_ref().expect("checked above");
            let mine = parsed.is_some_and(|p| p.3 == self.cfg.dc_uuid);
            let current = parsed.and_then(|(a, t, _, _)| {
                let e = d.engine.as_ref()?;
                (mine && e.id == t && matches!(e.state(a), Some(crate::engine::ActionState::InFlight { .. }))).then_some((t, a))
            });
            (mine, current)
        };
        // The shutdown lock the graph's action carries is recorded with its success.
        let lock = current
            .filter(|_| as_expected)
            .and_then(|(_, a)| match &self.dc.as_ref()?.engine.as_ref()?.action(a)?.kind {
                ActionKind::Rsc(op) => op.shutdown_lock,
                _ => None,
            });
        let write = match records::record_op(&node, &name, &r.rsc, &agent, &r.lrm_rsc_op, failure, lock) {
            Ok(w) => w,
            Err(e) => return tracing::warn!("a result from {name} is refused: {e}"),
        };
        let on_fail_ignore = current.and_then(|(_, a)| self.dc.as_ref()?.engine.as_ref()?.action(a).cloned()).is_some_and(|a| matches!(&a.kind, ActionKind::Rsc(op) if op.on_fail.as_deref() == Some("ignore")));
        match current {
            Some((t, a)) => self.write(write, AfterWrite::Confirm { transition: t, action: a, ok: as_expected || on_fail_ignore }),
            None => {
                self.write(write, AfterWrite::Nothing);
                // A result no graph waits for: a recurring op's later result, another DC's or
                // an older transition's. Recorded; if it is not what was expected, plan again.
                if !as_expected {
                    let d = self.dc.as_mut().expect("checked above");
                    d.dirty = true;
                    if let Some(e) = d.engine.as_mut() {
                        e.abort();
                    }
                }
                let _ = uuid_matches;
            }
        }
        if failure && !probe {
            let start_fatal = self.dc.as_ref().and_then(|d| d.engine.as_ref()).map(|e| e.graph.start_failure_is_fatal).unwrap_or(true);
            let attrs = records::failure_attrs(&r.rsc, &r.task, r.interval_ms, start_fatal, on_fail_ignore, self.now.epoch_s);
            if !attrs.is_empty() {
                self.write(records::transient_attrs(&node, &name, &attrs), AfterWrite::Nothing);
            }
        }
        if r.op_status == OP_TIMEOUT {
            tracing::warn!("{} {} on {name} timed out", r.rsc, r.task);
        }
    }

    pub(super) fn on_graph(&mut self, seq: u64, graph: Option<(Graph, CibFacts)>) {
        let Some(d) = self.dc.as_mut() else { return };
        if d.scheduling != Some(seq) {
            return;
        }
        d.scheduling = None;
        let Some((graph, facts)) = graph else {
            tracing::error!("the scheduler failed; waiting for the next change");
            return;
        };
        d.seen.extend(facts.seen.iter().copied());
        d.locked = facts.locked.clone();
        // The CIB must say who the DC is and whether it has quorum (a former DC's late write
        // may have changed them): put it right, and plan from the corrected CIB.
        let (me, quorate) = (self.cfg.me, self.quorate);
        if facts.have_quorum != Some(quorate) || facts.dc_uuid.as_deref() != Some(me.to_string().as_str()) {
            tracing::info!("the CIB says have-quorum={:?} dc-uuid={:?}: writing them again", facts.have_quorum, facts.dc_uuid);
            d.quorum_written = None;
            d.dirty = true;
            return;
        }
        if d.dirty {
            // Something changed while the scheduler ran: its graph is obsolete (§3.1).
            return;
        }
        d.recheck_by = graph.recheck_by;
        d.transitions += 1;
        let id = d.transitions;
        let n = graph.actions.len();
        if n == 0 {
            tracing::info!("transition {id}: nothing to do");
            return;
        }
        tracing::info!("transition {id}: {n} actions");
        let mut e = Engine::new(id, graph, self.cfg.node_action_limit);
        let fired = e.fire(self.now.ms);
        let d = self.dc.as_mut().expect("checked above");
        d.engine = Some(e);
        d.unsent.clear();
        // Failure attributes a clear_failcount action removes: known now, from this CIB.
        d.fail_attrs = facts.fail_attrs;
        self.dispatch(fired);
    }

    pub(super) fn dispatch(&mut self, fired: Vec<usize>) {
        for i in fired {
            let Some(d) = self.dc.as_ref() else { return };
            let Some(e) = d.engine.as_ref() else { return };
            let t = e.id;
            let a = e.graph.actions[i].clone();
            let stonith_timeout = e.graph.stonith_timeout_ms;
            let target = a.node.as_ref().and_then(|(name, _)| self.id_of(name));
            match &a.kind {
                ActionKind::Pseudo => {}
                ActionKind::Rsc(op) => {
                    // A node whose controller is away but may come back (its grace): the
                    // action waits for it, as Pacemaker's wait for a node's result does,
                    // until it rejoins (the graph is aborted then) or counts as lost.
                    // (Also a node in the ring whose controller this DC never saw leave: it
                    // left while this DC was in another partition.)
                    let away = target.filter(|n| d.gone.contains_key(n) || !self.seniority.members().contains(n) && self.ring.contains(n));
                    if let Some(n) = away {
                        tracing::info!("{} waits: the controller of its node is away", a.key);
                        let until = self.now.ms + self.cfg.controller_grace_ms;
                        let d = self.dc.as_mut().expect("checked");
                        d.gone.entry(n).or_insert(until);
                        d.unsent.insert(i);
                        continue;
                    }
                    let Some(target) = target.filter(|n| self.seniority.members().contains(n)) else {
                        tracing::warn!("{} cannot run: its node is not in the cluster", a.key);
                        self.confirm(t, i, false);
                        continue;
                    };
                    let key = records::transition_key(i, t, op.expected_rc, &self.cfg.dc_uuid);
                    let mut meta: std::collections::HashMap<String, String> = op.meta.clone().into_iter().collect();
                    meta.insert("transition_key".into(), key.clone());
                    meta.insert("on_node".into(), self.name(target));
                    meta.insert("on_node_uuid".into(), target.to_string());
                    if op.is_probe() {
                        meta.insert("op_target_rc".into(), op.expected_rc.to_string());
                    }
                    let req = xpb::OpRequest {
                        rsc: op.rsc.clone(),
                        agent: op.agent_spec(),
                        action: op.task.clone(),
                        params: op.params.clone().into_iter().collect(),
                        meta,
                        interval_ms: op.interval_ms,
                        timeout_ms: op.timeout_ms,
                    };
                    let msg = pb::PeerMessage { body: Some(pb::peer_message::Body::Execute(pb::Execute { to: target, transition_key: key.clone(), op: Some(req) })) };
                    // An op that may make a resource active (or promoted) somewhere is
                    // recorded as pending before it is sent: if its result is lost with
                    // the node's controller or with this DC, the CIB still says it may
                    // have run (§3.3). Pacemaker records every op pending; the others need
                    // no record for safety (a lost stop or probe is simply done again) and
                    // each record costs a CIB round trip before the op may run.
                    let may_activate = matches!(op.task.as_str(), "start" | "promote" | "migrate_to" | "migrate_from");
                    let record_pending = op.meta.get("record_pending").is_none_or(|v| cib::model::is_true(v));
                    if may_activate && record_pending {
                        let (node_id, name) = (target.to_string(), self.name(target));
                        let rec = cib::status::unfinished_op_record(&op.rsc, &op.task, op.interval_ms, &key, None, self.now.epoch_s, "halo-controld");
                        match records::record_op(&node_id, &name, &op.rsc, &op.agent_spec(), &rec.to_xml(), false, None) {
                            Ok(w) => {
                                self.dc.as_mut().expect("checked").unsent.insert(i);
                                self.write(w, AfterWrite::Send { transition: t, action: i, msg });
                            }
                            Err(e) => {
                                tracing::error!("{}: its pending record cannot be made: {e}", a.key);
                                self.confirm(t, i, false);
                            }
                        }
                        continue;
                    }
                    self.outbox.push_back(Action::Broadcast(msg));
                }
                ActionKind::Fence { action } => {
                    let Some((name, _)) = &a.node else {
                        self.confirm(t, i, false);
                        continue;
                    };
                    let failures = d.fence_failures.get(name).copied().unwrap_or(0);
                    if failures >= self.cfg.stonith_max_attempts {
                        // stonith-max-attempts: not tried again until the node rejoins or
                        // a new DC takes over; what needs it waits, the rest goes on.
                        tracing::error!("fencing {name} failed {failures} times: not tried again (stonith-max-attempts)");
                        if let Some(e) = self.dc.as_mut().and_then(|d| d.engine.as_mut()) {
                            e.give_up(i);
                        }
                        continue;
                    }
                    self.outbox.push_back(Action::Fence { transition: t, action: i, target: name.clone(), fence_action: action.clone(), timeout_ms: stonith_timeout });
                }
                ActionKind::Shutdown => {
                    // Its resources are off: the node's controller may exit (this one too,
                    // when the DC itself stops: the scheduler orders it after the others').
                    match target {
                        Some(n) if n == self.cfg.me => {
                            if self.shutting_down {
                                // The DC goes last and says so itself (§6.1 step 6): the next
                                // DC finds it down, not lost.
                                // It exits once this transition is done: what the graph
                                // starts elsewhere (the resources it just stopped) is its
                                // to start, not left for the next DC to find.
                                self.write(records::node_left_cleanly(&n.to_string()), AfterWrite::Nothing);
                                self.exit_after_transition = true;
                            }
                        }
                        Some(n) => self.outbox.push_back(Action::Broadcast(pb::PeerMessage { body: Some(pb::peer_message::Body::Shutdown(pb::Shutdown { to: n })) })),
                        None => {}
                    }
                    self.confirm(t, i, true);
                }
                ActionKind::ClearFailcount { rsc } => {
                    let node_id = a.node.as_ref().map(|(_, id)| id.clone()).unwrap_or_default();
                    let names: Vec<String> = d.fail_attrs.get(&node_id).into_iter().flatten().filter(|n| attr_is_for(n, rsc)).cloned().collect();
                    self.write(records::delete_op(&node_id, rsc, &format!("{rsc}_last_failure_0")), AfterWrite::Nothing);
                    self.write(records::delete_transient_attrs(&node_id, &names), AfterWrite::Confirm { transition: t, action: i, ok: true });
                }
            }
        }
    }

    pub(super) fn confirm(&mut self, transition: u64, action: usize, ok: bool) {
        let Some(d) = self.dc.as_mut() else { return };
        let Some(e) = d.engine.as_mut().filter(|e| e.id == transition) else { return };
        if e.confirm(action, ok) && !ok {
            d.dirty = true;
        }
        let fired = e.fire(self.now.ms);
        self.dispatch(fired);
    }

    pub(super) fn on_write_done(&mut self, tag: u64, result: Result<u64, String>) {
        let Some(d) = self.dc.as_mut() else { return };
        let Some(after) = d.writes.remove(&tag) else { return };
        let result_ok = result.is_ok();
        match result {
            Ok(index) => d.last_index = d.last_index.max(index),
            Err(_) if matches!(after, AfterWrite::MayBeRefused) => {}
            Err(e) => {
                tracing::error!("a status write was refused: {e}");
                d.dirty = true;
            }
        }
        self.after_write(after, result_ok);
    }

    /// The fencer reports `target` fenced, not by this DC's transition (an administrator's
    /// `halo stonith confirm`, another node's request): the DC records the node down and
    /// plans again, as Pacemaker's DC does on a fencing notice, so recovery that waited
    /// for that fencing goes on.
    pub(super) fn on_fenced_elsewhere(&mut self, target: &str, executioner: &str, origin: &str) {
        let Some(d) = self.dc.as_mut() else { return };
        let Some((&id, name)) = self.cfg.nodes.iter().find(|(_, n)| n.as_str() == target) else { return };
        if id == self.cfg.me || d.engine.as_ref().is_some_and(|e| e.fences(target)) {
            // This DC's own fencing is recorded when its result comes (on_fence_done).
            return;
        }
        tracing::info!("node {target} was fenced by {executioner} for {origin}");
        d.fence_failures.remove(target);
        d.dirty = true;
        if let Some(e) = d.engine.as_mut() {
            e.abort();
        }
        let (node_id, name) = (id.to_string(), name.clone());
        if self.writable() {
            self.write(records::node_fields(&node_id, &name, &[("in_ccm", "false"), ("crmd", "offline"), ("join", "down"), ("expected", "down")]), AfterWrite::Nothing);
            self.write(records::node_fenced(&node_id), AfterWrite::Nothing);
        } else {
            self.fenced_unrecorded.insert(node_id, name);
        }
    }

    pub(super) fn on_fence_done(&mut self, transition: u64, action: usize, ok: bool, reason: &str) {
        let Some(d) = self.dc.as_ref() else { return };
        let Some(a) = d.engine.as_ref().filter(|e| e.id == transition).and_then(|e| e.action(action)).cloned() else { return };
        let Some((name, node_id)) = a.node.clone() else { return };
        if ok {
            tracing::info!("node {name} was fenced");
            self.dc.as_mut().expect("checked").fence_failures.remove(&name);
            if self.quorate && !self.writable() {
                // A quorate partition without the CIB's majority (a two-node survivor): once
                // every voter it lost is fenced, the CIB's voters shrink to those here.
                self.fenced_unrecorded.insert(node_id.clone(), name.clone());
                let fenced: BTreeSet<u32> = self.fenced_unrecorded.keys().filter_map(|i| i.parse().ok()).collect();
                let lost_all_fenced = self.cib_voters.iter().all(|v| self.ring.contains(v) || fenced.contains(v));
                let keep: Vec<u32> = self.cib_voters.iter().copied().filter(|v| self.ring.contains(v)).collect();
                if lost_all_fenced && !keep.is_empty() {
                    tracing::info!("the CIB's voters lost here are fenced: shrinking them to {keep:?}");
                    self.outbox.push_back(Action::SetCibVoters { voters: keep });
                }
            }
            self.write(records::node_fields(&node_id, &name, &[("in_ccm", "false"), ("crmd", "offline"), ("join", "down"), ("expected", "down")]), AfterWrite::Nothing);
            self.write(records::node_fenced(&node_id), AfterWrite::Confirm { transition, action, ok: true });
        } else {
            let max = self.cfg.stonith_max_attempts;
            let d = self.dc.as_mut().expect("checked");
            let n = d.fence_failures.entry(name.clone()).or_insert(0);
            *n += 1;
            tracing::error!("fencing {name} failed ({reason}); attempt {n} of {max}");
            if *n >= max {
                // Given up: the graph goes on without it and calls for no new one.
                tracing::error!("too many failures to fence {name}: giving up until it rejoins or another DC takes over");
                if let Some(e) = d.engine.as_mut() {
                    e.give_up(action);
                }
            } else {
                self.confirm(transition, action, false);
            }
        }
    }
}
