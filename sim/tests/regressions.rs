//! Bugs the simulator found, one named scenario each (BLUEPRINT "Style" rule 11), kept
//! after the fix. Each test asserts the behaviour we want. A scenario is a seed and the
//! options that exposed the bug; once the controller changes, a seed may take another
//! path, so each comment says what went wrong and how it was fixed (replay with
//! `HALO_SIM_SEED=<seed> HALO_SIM_TRACE=1` and the options below). A new bug is added
//! here `#[ignore]`d until it is fixed.

fn strict() -> sim::Options {
    sim::Options::from_env()
}

fn must_pass(seed: u64, opts: sim::Options) {
    if let Err(f) = sim::run(seed, &opts) {
        panic!("{f}");
    }
}

/// Bug A (controller), fixed: a start whose result never reaches the DC left no record. Seed
/// 74, three nodes: the result of `fencing start` on node2 is lost (the agent did start it,
/// as when halo-execd restarts under an op); at op timeout + cluster-delay the DC's timer
/// fails the action without writing anything (Pacemaker writes a synthesized op-status 2
/// record, CONTROLLER-NOTES §3.3 and catalogue item 15, after a pending record written
/// before the op runs), so the scheduler believes `fencing` stopped and later starts it on
/// node1: it runs on node1 and node2 (invariant 1). Fixed: the DC writes a pending record
/// before it sends a start, promote or migration, and a synthesized timeout record when
/// its timer runs out; the executor's history shows ops still running as pending.
#[test]
fn lost_start_result_makes_a_resource_run_twice() {
    must_pass(74, strict());
}

/// Bug A again, through the DC's own controller crash. Seed 505, five nodes: the DC
/// (node3) sends `d1 start` to its own node and its controller crashes; the executor
/// starts d1 and the result is lost with the controller. The next DC (node1) has no
/// record of it and starts d1 on node2 at once: d1 runs on node2 and node3 (invariant 1).
#[test]
fn dc_controller_crash_with_a_start_in_flight_starts_it_twice() {
    must_pass(505, strict());
}

/// Bug A again, through a node death. Seed 452, five nodes: node2 started d5 but the
/// result was lost; node2 dies; the DC fences node2 and, in the same graph and unordered
/// with the fence, starts d5 on node1, because the CIB never said d5 ran on node2
/// (invariant 2: recovered before the lost node was fenced).
#[test]
fn unrecorded_start_on_a_dead_node_is_recovered_before_its_fencing() {
    must_pass(452, strict());
}

/// Bug B (controller), fixed (actions for a node whose controller is away wait for it):
/// a replan storm while a member's controller is away. Seed 7, three
/// nodes: node2's controller crashes; during its 15 s grace the scheduler keeps planning
/// `d3_stop_0@node2` (d3 moves to node1); the DC fails that action at once ("its node is
/// not in the cluster"), the graph ends, the DC plans again at once: a new identical
/// transition every ~15 ms until the controller is back or the grace ends. Pacemaker keeps
/// the node's actions pending until the node is back or declared lost.
#[test]
fn no_replan_storm_while_a_controller_restarts() {
    must_pass(7, strict());
}

/// Bug D (controller), fixed (a fence given up on fails without calling for a new graph):
/// `stonith-max-attempts` was not honoured. Seed 0, with a fencer that
/// cannot fence the asking node itself (`self_fencing: false`): the DC, node2, must be
/// fenced; every attempt fails; after the 10th, `on_fence_done` clears `dirty` to give
/// up, but `step()` then sees the graph Terminated and sets `dirty` again, so the DC
/// retries every ~2 s forever (catalogue item 26). The default fencer shows it too when no
/// other node is left to fence the DC.
#[test]
fn fencing_gives_up_after_stonith_max_attempts() {
    must_pass(0, sim::Options { self_fencing: false, ..strict() });
}

/// Bug E (controller), fixed (the join wait is a deadline, offered only while ahead):
/// `poll_timeout()` returned a time in the past. Seed 1 (and most
/// seeds): after a member joins the group and before its Join arrives, the DC's join wait
/// is `since_ms + join_timeout_ms`, where `since_ms` is when this node became DC, long
/// past; so right after `handle_timeout(now)` the timer is due again and the daemon's loop
/// (`sleep(poll_timeout - now)`) spins until the Join arrives, or forever if it never
/// does. The same holds for the formation wait while a configured node is never seen.
#[test]
fn no_timer_is_due_again_right_after_handle_timeout() {
    must_pass(1, strict());
}

/// Bug F (controller, `seniority.rs`), fixed (a newcomer announces once every member that
/// was there before it has left): no DC was ever agreed once every member that knew
/// the order is gone. Members 1 and 3 know the order [1, 3]; node1 dies, and before its
/// loss is seen node4 and then node5 join (the announcement is owed by node1, dead); when
/// node1's loss is seen, node3 heads the order and owes the announcement, but node3 dies
/// too; when its loss is seen, nodes 4 and 5 are newcomers without a basis: neither
/// announces, and neither ever will (the simulator found it with node kills; seen as
/// "the simulation went idle" with every controller quorate and no DC).
#[test]
fn newcomers_agree_on_a_dc_when_every_old_member_is_gone() {
    use controld::seniority::Seniority;
    let mut s3 = Seniority::new(3);
    s3.on_confchg(&[1, 3], &[1, 3], &[]);
    assert_eq!(s3.dc(), Some(1));
    let (mut s4, mut s5) = (Seniority::new(4), Seniority::new(5));
    assert_eq!(s3.on_confchg(&[1, 3, 4], &[4], &[]), None, "node1 owes the announcement");
    s4.on_confchg(&[1, 3, 4], &[4], &[]);
    s3.on_confchg(&[1, 3, 4, 5], &[5], &[]);
    s4.on_confchg(&[1, 3, 4, 5], &[5], &[]);
    s5.on_confchg(&[1, 3, 4, 5], &[5], &[]);
    assert!(s3.on_confchg(&[3, 4, 5], &[], &[1]).is_some(), "node3 owes it now, and dies before sending it");
    s4.on_confchg(&[3, 4, 5], &[], &[1]);
    s5.on_confchg(&[3, 4, 5], &[], &[1]);
    let a4 = s4.on_confchg(&[4, 5], &[], &[3]);
    let a5 = s5.on_confchg(&[4, 5], &[], &[3]);
    assert!(a4.is_some() || a5.is_some() || s4.dc().is_some(), "nodes 4 and 5 never agree on a DC");
}

/// Bug G (controller), fixed (the DC checks `have-quorum` and `dc-uuid` in every CIB it
/// schedules from and writes them again if wrong): a deposed DC's late write left
/// `have-quorum="0"`. Seed 576, five
/// nodes: a partition leaves the DC, node5, in the minority {3, 5}; it writes
/// `have-quorum="0"`, which raft cannot take, and its writer offers it again (30 s at
/// most, `WRITE_RETRY_FOR`); node4 becomes DC of the majority and writes `have-quorum="1"`;
/// the partition heals within the 30 s, node5's write commits (`dc-uuid="5"
/// have-quorum="0"`) just before node4 fences node5; node4 believes it wrote the quorum
/// already (`quorum_written`) and never does again, so the scheduler
/// (`no-quorum-policy=stop`) stops every resource and nothing starts again.
/// Bug F in a whole run. Seed 13611, five nodes: at the end of the faults node3, the DC
/// and the only member that knew the order, is fenced; before its loss is seen, nodes 5,
/// 4, 1 and 2 reboot and join one after the other (each change owes an announcement by
/// node3, dead); when its loss is seen everyone left is a newcomer, and no DC is ever
/// agreed, not even once node3 comes back (liveness: the cluster stays unmanaged).
#[test]
fn a_dc_is_agreed_after_the_lone_old_member_dies_while_nodes_join() {
    must_pass(13611, strict());
}

#[test]
fn a_deposed_dcs_late_write_does_not_stop_the_cluster() {
    must_pass(576, strict());
}

/// Bug C (scheduler), fixed (a recurring record before the last start, promote or
/// demote no longer counts): a recurring op record older than the resource's last start counts
/// as a running monitor. Seed 57, without the administrator's refresh: d2's 10 s monitor
/// fails on node1 and the DC restarts d2 there; the graph's new monitor never fires
/// (another result aborts the graph), and the next graphs schedule none, because the old
/// `d2_monitor_10000` record (call 13, rc 7, older than the start, call 15; halo-execd
/// keeps a cancelled op's record in its history and the next join writes it back) makes
/// the scheduler think a monitor runs. d2's next failure is never seen and it stays
/// stopped (liveness). The same happens with a `_last_failure_0` copy of a failed monitor;
/// see `stale_failed_monitor_does_not_stand_for_a_running_one` for the scheduler alone.
#[test]
fn a_failed_monitor_is_rescheduled_after_the_restart() {
    must_pass(57, sim::Options { cleanup_after_faults: false, ..strict() });
}

/// Bug C on the scheduler alone: after a stop and a start, the only record of the 10 s
/// monitor is the failure copy (`fencing_last_failure_0`, call 13, older than the start,
/// call 15). Pacemaker 2.1.5 (`crm_simulate -x CIB -S -t 2026-01-01T00:01:40Z` on this very
/// CIB) schedules `fencing monitor=10000 on node1` and nothing else; halo schedules nothing.
#[test]
fn stale_failed_monitor_does_not_stand_for_a_running_one() {
    // Pacemaker's digests for a parameterless agent (start) and its 10 s monitor, so that
    // crm_simulate sees no definition change.
    let op = |id: &str, key: &str, task: &str, call: u32, rc: u32, interval: u32| {
        let tk = "1:1:0:sim";
        let digest = if interval > 0 { "4811cef7f7f94e3a35a70be7916cb2fd" } else { "f2317cad3d54cec5d7d7aa7d0bf35cf8" };
        format!(
            r#"<lrm_rsc_op id="{id}" operation_key="{key}" operation="{task}" crm-debug-origin="halo-execd" crm_feature_set="3.16.1" call-id="{call}" rc-code="{rc}" op-status="0" interval="{interval}" last-rc-change="1767225600" exec-time="1" queue-time="0" op-digest="{digest}" transition-key="{tk}" transition-magic="0:{rc};{tk}"/>"#
        )
    };
    let history = format!(
        r#"<lrm_resource id="fencing" class="stonith" type="fence_dummy">{}{}</lrm_resource>"#,
        op("fencing_last_0", "fencing_start_0", "start", 15, 0, 0),
        op("fencing_last_failure_0", "fencing_monitor_10000", "monitor", 13, 7, 10000)
    );
    let xml = format!(
        r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0" have-quorum="1" dc-uuid="1"><configuration><crm_config><cluster_property_set id="o"><nvpair id="o-s" name="stonith-enabled" value="true"/></cluster_property_set></crm_config><nodes><node id="1" uname="node1"/></nodes><resources><primitive id="fencing" class="stonith" type="fence_dummy"><operations><op id="fencing-mon" name="monitor" interval="10s"/></operations></primitive></resources><constraints/></configuration><status><node_state id="1" uname="node1" in_ccm="true" crmd="online" join="member" expected="member"><lrm id="1"><lrm_resources>{history}</lrm_resources></lrm></node_state></status></cib>"#
    );
    let cib = cib::Cib::parse(&xml).expect("the CIB is valid");
    let now = chrono::DateTime::from_timestamp(1_767_225_700, 0).unwrap().naive_utc();
    let graph = scheduler::schedule(&cib, now).graph();
    let keys: Vec<&str> = graph.actions.iter().map(|a| a.key.as_str()).collect();
    assert!(keys.contains(&"fencing_monitor_10000"), "no monitor scheduled for the restarted resource: {keys:?}");
}

/// Found when DCs without quorum began to act (no-quorum-policy), fixed: a DC that regained
/// quorum planned actions on nodes outside its ring, whose leaving it could not record
/// while it had no quorum; each failed at once ("not in the cluster") and it planned the
/// same graph again every few ms. Seed 15, five nodes: a partition leaves {2, 5} without
/// quorum; node 1 reboots and joins them, quorum returns, and the CIB still says nodes 3
/// and 4, across the partition, are in the membership. Now the DC writes the nodes outside
/// its ring as gone when quorum returns, and every node joins again.
#[test]
fn a_dc_that_regains_quorum_records_the_nodes_it_could_not() {
    must_pass(15, strict());
}

/// Found with the above, fixed: a DC planned actions for a node in its ring whose
/// controller had left while the DC was in another partition (so it never saw it leave):
/// not in the group and never given the controller's grace, each action failed at once,
/// again and again (seed 10, four nodes: node 1's controller crashes in the other half of a
/// partition). Now such a node's actions wait, as for any controller that is away.
#[test]
fn actions_wait_for_a_controller_that_left_unseen() {
    must_pass(10, strict());
}


/// Found when DCs without quorum began to act, fixed (losing or regaining quorum aborts the
/// running graph): seed 6434, three nodes. Node 3, DC, loses quorum while its graph still
/// holds a start of the fencing device; without quorum the start was sent at once and not
/// recorded; node 3 dies, and the next DC starts the device on node 1 before node 3 is
/// fenced (invariant 2).
#[test]
fn a_graph_made_with_quorum_stops_firing_when_quorum_is_lost() {
    must_pass(6434, strict());
}
