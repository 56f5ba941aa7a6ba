//! The simulated executor of one node: halo-execd's semantics (EXECD-NOTES §2 queues and
//! recurring ops, §6 the `lrm_rsc_op` record; `execd/src/executor.rs`,
//! `execd/src/history.rs`) over Dummy-like agents whose state is one bit per resource.
//!
//! Agents: `start` makes the resource run, `stop` makes it stop, `monitor` (probe or
//! recurring) answers 0 when it runs and 7 (OCF_NOT_RUNNING) when not; anything else
//! succeeds. Each resource has a FIFO with at most one op active (as execd's worker).
//! A recurring op runs at once when registered, then `interval` after each run completed;
//! its first result after a registration is reported, later ones only when rc or status
//! change. Records carry the op's `transition_key` meta as `transition-key` and
//! `transition-magic`, like `OpRecord::to_element`.
//!
//! Faults (the world decides them per op, see `Outcome`): a failed agent (rc 1), an agent
//! that hangs until the executor's own timeout (op-status 2 after the op timeout), a result
//! that is lost (the effect may or may not have happened; nothing is reported).
//!
//! Simplifications: no parallelism limit, no meta-data, no reload/migrate/promote logic
//! (they succeed and change nothing); as in halo-execd, a cancelled recurring op keeps
//! its record in the history unless a run was in flight (the next join writes it back);
//! `op-digest` is computed as execd does but the scheduler does not compare digests.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cib::xml::Element;
use md5::{Digest, Md5};
use proto::execd as xpb;

pub const OCF_SUCCESS: i32 = 0;
pub const OCF_ERR_GENERIC: i32 = 1;
pub const OCF_NOT_RUNNING: i32 = 7;
const STATUS_DONE: i32 = 0;
const STATUS_CANCELLED: i32 = 1;
const STATUS_TIMEOUT: i32 = 2;

/// How an op ends, chosen by the world when the op begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The agent does what it is asked.
    Normal,
    /// The agent fails (rc 1) and changes nothing.
    Fail,
    /// The agent hangs; the executor kills it at the op timeout (op-status 2, rc 1). `took`:
    /// whether the action took effect before it hung.
    Timeout { took: bool },
    /// The result never comes back (the op ran, or not: `took`).
    Lost { took: bool },
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    pub req: xpb::OpRequest,
    /// For a one-shot op: the controller incarnation that asked (its result goes only there).
    pub requester: Option<u64>,
    /// For a recurring run: the registration's generation.
    pub generation: Option<u64>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
struct Recurring {
    req: xpb::OpRequest,
    generation: u64,
    last: Option<(i32, i32)>,
}

/// One record (`lrm_rsc_op`) as the executor stores it.
#[derive(Debug, Clone)]
struct Record {
    id: String,
    operation_key: String,
    operation: String,
    interval_ms: u64,
    call_id: u64,
    rc: i32,
    status: i32,
    last_rc_change: u64,
    exec_ms: u64,
    digest: String,
    transition_key: Option<String>,
}

impl Record {
    fn to_element(&self) -> Element {
        let mut e = Element::new("lrm_rsc_op");
        for (k, v) in [
            ("id", self.id.clone()),
            ("operation_key", self.operation_key.clone()),
            ("operation", self.operation.clone()),
            ("crm-debug-origin", "halo-execd".to_string()),
            ("crm_feature_set", cib::FEATURE_SET.to_string()),
            ("exit-reason", String::new()),
            ("call-id", self.call_id.to_string()),
            ("rc-code", self.rc.to_string()),
            ("op-status", self.status.to_string()),
            ("interval", self.interval_ms.to_string()),
            ("last-rc-change", self.last_rc_change.to_string()),
            ("exec-time", self.exec_ms.to_string()),
            ("queue-time", "0".to_string()),
            ("op-digest", self.digest.clone()),
        ] {
            e.set_attr(k, &v);
        }
        if let Some(key) = &self.transition_key {
            e.set_attr("transition-key", key);
            e.set_attr("transition-magic", &format!("{}:{};{key}", self.status, self.rc));
        }
        e
    }
}

#[derive(Debug, Clone, Default)]
struct History {
    agent: String,
    last: Option<Record>,
    last_failure: Option<Record>,
    recurring: BTreeMap<(String, u64), Record>,
}

/// A recurring op to run again after its interval: (action, interval ms, generation).
pub type Rearm = (String, u64, u64);

/// Where a finished op's event goes.
#[derive(Debug)]
pub enum Report {
    /// To the controller incarnation that asked (a one-shot op).
    Requester(u64, xpb::OpEvent),
    /// To whichever controller is subscribed now (a recurring op's news).
    Subscribers(xpb::OpEvent),
}

#[derive(Default)]
pub struct Executor {
    /// Resources whose agent says they run.
    running: BTreeSet<String>,
    history: BTreeMap<String, History>,
    queues: BTreeMap<String, VecDeque<Job>>,
    active: BTreeMap<String, Job>,
    recurring: BTreeMap<(String, String, u64), Recurring>,
    next_call: u64,
    next_job: u64,
    next_generation: u64,
}

/// execd's `op_digest`: MD5 of `" <parameters k="v" .../>\n"`, parameters sorted.
fn op_digest(params: &std::collections::HashMap<String, String>) -> String {
    let sorted: BTreeMap<&String, &String> = params.iter().collect();
    let mut e = Element::new("parameters");
    for (k, v) in sorted {
        e.set_attr(k, v);
    }
    format!("{:x}", Md5::digest(format!(" {}\n", e.to_xml()).as_bytes()))
}

fn failed(action: &str, rc: i32, status: i32) -> bool {
    if status == STATUS_CANCELLED {
        return false;
    }
    if status != STATUS_DONE {
        return true;
    }
    match action {
        "monitor" | "status" => !matches!(rc, 0 | 7 | 8 | 190 | 191),
        _ => rc != OCF_SUCCESS,
    }
}

impl Executor {
    pub fn running(&self) -> &BTreeSet<String> {
        &self.running
    }

    /// Resources that run, or whose start is under way (their agent may have started them).
    pub fn maybe_running(&self) -> BTreeSet<String> {
        let mut s = self.running.clone();
        s.extend(self.active.values().filter(|j| j.req.action == "start").map(|j| j.req.rsc.clone()));
        s
    }

    /// The call id of the resource's last one-shot op here (its `<rsc>_last_0` record).
    pub fn last_call(&self, rsc: &str) -> Option<u64> {
        self.history.get(rsc)?.last.as_ref().map(|r| r.call_id)
    }

    /// Forget a resource's records (cleanup): ops still queued or running show as pending.
    pub fn forget(&mut self, rsc: &str) {
        self.history.remove(rsc);
    }

    /// A resource fails on its own (it stops running; its monitor will say 7).
    pub fn crash_resource(&mut self, rsc: &str) -> bool {
        self.running.remove(rsc)
    }

    fn job(&mut self, req: xpb::OpRequest, requester: Option<u64>, generation: Option<u64>, outcome: Outcome) -> Job {
        self.next_job += 1;
        Job { id: self.next_job, req, requester, generation, outcome }
    }

    /// A one-shot op (or a recurring registration when `interval_ms > 0`). Returns the job
    /// to begin now, if the resource was idle.
    pub fn submit(&mut self, req: xpb::OpRequest, requester: u64, outcome: Outcome) -> Option<Job> {
        let rsc = req.rsc.clone();
        if req.interval_ms > 0 {
            let key = (rsc.clone(), req.action.clone(), req.interval_ms);
            self.next_generation += 1;
            let generation = self.next_generation;
            // Queued repeats of an older registration are dropped when they come up.
            self.recurring.insert(key, Recurring { req: req.clone(), generation, last: None });
            let j = self.job(req, None, Some(generation), outcome);
            self.queues.entry(rsc.clone()).or_default().push_back(j);
        } else {
            let j = self.job(req, Some(requester), None, outcome);
            self.queues.entry(rsc.clone()).or_default().push_back(j);
        }
        self.next(&rsc)
    }

    /// A recurring op is due again (its timer fired). Returns the job to begin now.
    pub fn due(&mut self, rsc: &str, action: &str, interval_ms: u64, generation: u64, outcome: Outcome) -> Option<Job> {
        let key = (rsc.to_string(), action.to_string(), interval_ms);
        let req = match self.recurring.get(&key) {
            Some(r) if r.generation == generation => r.req.clone(),
            _ => return None,
        };
        let j = self.job(req, None, Some(generation), outcome);
        self.queues.entry(rsc.to_string()).or_default().push_back(j);
        self.next(rsc)
    }

    /// The next job of an idle resource, made active.
    fn next(&mut self, rsc: &str) -> Option<Job> {
        if self.active.contains_key(rsc) {
            return None;
        }
        let q = self.queues.get_mut(rsc)?;
        while let Some(j) = q.pop_front() {
            if let Some(g) = j.generation {
                let key = (rsc.to_string(), j.req.action.clone(), j.req.interval_ms);
                if self.recurring.get(&key).map(|r| r.generation) != Some(g) {
                    continue;
                }
            }
            self.active.insert(rsc.to_string(), j.clone());
            return Some(j);
        }
        None
    }

    /// Cancel recurring ops of a resource (before a stop, as the controller asks).
    pub fn cancel(&mut self, rsc: &str, ops: &[(String, u64)]) {
        for (action, iv) in ops {
            self.recurring.remove(&(rsc.to_string(), action.clone(), *iv));
        }
    }

    /// The active job of `rsc` finished (at `now_ms`, epoch `epoch_s`). Returns what to
    /// report, whether a recurring op must be armed again (interval, generation), and the
    /// resource's next job to begin.
    pub fn complete(&mut self, rsc: &str, job_id: u64, exec_ms: u64, epoch_s: u64) -> (Option<Report>, Option<Rearm>, Option<Job>) {
        let Some(job) = self.active.get(rsc).filter(|j| j.id == job_id).cloned() else {
            return (None, None, None);
        };
        self.active.remove(rsc);
        let req = &job.req;
        let took = match job.outcome {
            Outcome::Normal => true,
            Outcome::Fail => false,
            Outcome::Timeout { took } | Outcome::Lost { took } => took,
        };
        if took {
            match req.action.as_str() {
                "start" => {
                    self.running.insert(rsc.to_string());
                }
                "stop" => {
                    self.running.remove(rsc);
                }
                _ => {}
            }
        }
        let is_monitor = matches!(req.action.as_str(), "monitor" | "status");
        let (mut rc, mut status) = match job.outcome {
            Outcome::Normal if is_monitor => (if self.running.contains(rsc) { OCF_SUCCESS } else { OCF_NOT_RUNNING }, STATUS_DONE),
            Outcome::Normal => (OCF_SUCCESS, STATUS_DONE),
            Outcome::Fail => (OCF_ERR_GENERIC, STATUS_DONE),
            Outcome::Timeout { .. } => (OCF_ERR_GENERIC, STATUS_TIMEOUT),
            // The agent's own answer, as recorded in the executor's history (only the report
            // is lost): what it did, or a failure if it did not.
            Outcome::Lost { .. } if is_monitor => (if self.running.contains(rsc) { OCF_SUCCESS } else { OCF_NOT_RUNNING }, STATUS_DONE),
            Outcome::Lost { took } => (if took { OCF_SUCCESS } else { OCF_ERR_GENERIC }, STATUS_DONE),
        };
        // A recurring run whose registration is gone was cancelled while it ran.
        let key = (rsc.to_string(), req.action.clone(), req.interval_ms);
        let registered = job.generation.is_some_and(|g| self.recurring.get(&key).map(|r| r.generation) == Some(g));
        // Registered again while it ran: forgotten; the new registration's first run reports.
        if job.generation.is_some() && !registered && self.recurring.contains_key(&key) {
            let next = self.next(rsc);
            return (None, None, next);
        }
        if job.generation.is_some() && !registered {
            rc = OCF_SUCCESS;
            status = STATUS_CANCELLED;
        }
        let record = self.record(req, rc, status, exec_ms, epoch_s);
        let mut event = xpb::OpEvent {
            rsc: rsc.to_string(),
            operation_key: record.operation_key.clone(),
            action: req.action.clone(),
            interval_ms: req.interval_ms,
            call_id: record.call_id,
            rc,
            op_status: status,
            last_rc_change: record.last_rc_change,
            exec_ms,
            op_digest: record.digest.clone(),
            lrm_rsc_op: record.to_element().to_xml(),
            ..Default::default()
        };
        event.exit_reason.clear();
        let lost = matches!(job.outcome, Outcome::Lost { .. });
        let next = self.next(rsc);
        match job.generation {
            None => {
                let report = (!lost).then(|| Report::Requester(job.requester.unwrap_or(0), event));
                (report, None, next)
            }
            Some(_) if !registered => (Some(Report::Subscribers(event)), None, next),
            Some(g) => {
                let r = self.recurring.get_mut(&key).expect("registered");
                let news = r.last != Some((rc, status)) && !lost;
                if news {
                    r.last = Some((rc, status));
                }
                (news.then_some(Report::Subscribers(event)), Some((req.action.clone(), req.interval_ms, g)), next)
            }
        }
    }

    fn record(&mut self, req: &xpb::OpRequest, rc: i32, status: i32, exec_ms: u64, now: u64) -> Record {
        self.next_call += 1;
        let call_id = self.next_call;
        let h = self.history.entry(req.rsc.clone()).or_default();
        h.agent = req.agent.clone();
        let operation_key = format!("{}_{}_{}", req.rsc, req.action, req.interval_ms);
        let previous = if req.interval_ms > 0 { h.recurring.get(&(req.action.clone(), req.interval_ms)) } else { h.last.as_ref() };
        let last_rc_change = match previous {
            Some(p) if p.operation_key == operation_key && p.rc == rc => p.last_rc_change,
            _ => now,
        };
        let id = if req.interval_ms > 0 { operation_key.clone() } else { format!("{}_last_0", req.rsc) };
        let rec = Record {
            id,
            operation_key,
            operation: req.action.clone(),
            interval_ms: req.interval_ms,
            call_id,
            rc,
            status,
            last_rc_change,
            exec_ms,
            digest: op_digest(&req.params),
            transition_key: req.meta.get("transition_key").cloned(),
        };
        if failed(&req.action, rc, status) {
            h.last_failure = Some(Record { id: format!("{}_last_failure_0", req.rsc), ..rec.clone() });
        }
        if req.interval_ms > 0 {
            if status == STATUS_CANCELLED {
                h.recurring.remove(&(req.action.clone(), req.interval_ms));
            } else {
                h.recurring.insert((req.action.clone(), req.interval_ms), rec.clone());
            }
        } else {
            h.last = Some(rec.clone());
        }
        rec
    }

    /// The executor's history as `History` returns it: `<lrm_resources>`.
    pub fn history_xml(&self) -> String {
        // One-shot ops accepted and not finished: the newest stands as `<rsc>_last_0`
        // (pending), as halo-execd's history shows them.
        let mut pending: BTreeMap<&str, &xpb::OpRequest> = BTreeMap::new();
        for j in self.active.values().chain(self.queues.values().flatten()) {
            if j.generation.is_none() && j.req.interval_ms == 0 {
                // The active one first, then the queue in order: the last seen is the newest.
                pending.insert(&j.req.rsc, &j.req);
            }
        }
        let mut history: BTreeMap<&str, History> = self.history.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        for (rsc, req) in &pending {
            history.entry(rsc).or_default().agent = req.agent.clone();
        }
        let mut list = Element::new("lrm_resources");
        for (id, h) in &history {
            let mut e = cib::status::lrm_resource_element(id, &h.agent);
            let waiting = pending.get(id).map(|req| cib::status::unfinished_op_record(id, &req.action, 0, req.meta.get("transition_key").map_or("", |k| k.as_str()), None, 0, "halo-execd"));
            let last = h.last.iter().filter(|_| pending.get(id).is_none());
            if let Some(p) = waiting {
                e.push(p);
            }
            for r in last.chain(h.last_failure.iter()).chain(h.recurring.values()) {
                e.push(r.to_element());
            }
            list.push(e);
        }
        list.to_xml()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: &str, interval_ms: u64) -> xpb::OpRequest {
        let mut meta = std::collections::HashMap::new();
        meta.insert("transition_key".to_string(), "3:1:0:uuid".to_string());
        xpb::OpRequest { rsc: "d1".into(), agent: "ocf:heartbeat:Dummy".into(), action: action.into(), meta, interval_ms, timeout_ms: 20_000, ..Default::default() }
    }

    fn run(x: &mut Executor, j: Option<Job>) -> (Option<Report>, Option<Rearm>) {
        let j = j.expect("a job begins");
        let (r, again, next) = x.complete(&j.req.rsc.clone(), j.id, 10, 1000);
        assert!(next.is_none());
        (r, again)
    }

    fn rc(r: &Option<Report>) -> Option<i32> {
        match r {
            Some(Report::Requester(_, e)) | Some(Report::Subscribers(e)) => Some(e.rc),
            None => None,
        }
    }

    #[test]
    fn ocf_semantics_records_and_recurring_news() {
        let mut x = Executor::default();
        let j = x.submit(req("monitor", 0), 1, Outcome::Normal);
        assert_eq!(rc(&run(&mut x, j).0), Some(OCF_NOT_RUNNING), "a probe of a stopped resource");
        let j = x.submit(req("start", 0), 1, Outcome::Normal);
        assert_eq!(rc(&run(&mut x, j).0), Some(0));
        assert!(x.running().contains("d1"));
        let j = x.submit(req("monitor", 10_000), 1, Outcome::Normal);
        let (r, again) = run(&mut x, j);
        assert_eq!(rc(&r), Some(0), "a recurring op reports its first result");
        let (_, iv, g) = again.expect("armed again");
        let j = x.due("d1", "monitor", iv, g, Outcome::Normal);
        assert!(run(&mut x, j).0.is_none(), "then only changes");
        x.crash_resource("d1");
        let j = x.due("d1", "monitor", iv, g, Outcome::Normal);
        assert_eq!(rc(&run(&mut x, j).0), Some(OCF_NOT_RUNNING));
        let h = x.history_xml();
        // rc 7 is no failure to the executor (the DC judges it against the expected rc).
        assert!(h.contains(r#"id="d1_monitor_10000""#) && h.contains(r#"id="d1_last_0""#) && !h.contains("last_failure"), "{h}");
        assert!(h.contains(r#"transition-key="3:1:0:uuid""#) && h.contains(r#"transition-magic="0:7;3:1:0:uuid""#), "{h}");
        x.cancel("d1", &[("monitor".into(), 10_000)]);
        assert!(x.due("d1", "monitor", iv, g, Outcome::Normal).is_none(), "cancelled");
        let j = x.submit(req("start", 0), 1, Outcome::Lost { took: true });
        assert!(run(&mut x, j).0.is_none(), "a lost result is not reported");
        assert!(x.running().contains("d1"), "but it took effect");
    }

    #[test]
    fn ops_of_a_resource_run_one_at_a_time() {
        let mut x = Executor::default();
        let first = x.submit(req("start", 0), 1, Outcome::Normal).expect("begins");
        assert!(x.submit(req("stop", 0), 1, Outcome::Normal).is_none(), "queued behind the start");
        assert!(x.maybe_running().contains("d1"), "a start under way may have taken effect");
        let (_, _, next) = x.complete("d1", first.id, 10, 1000);
        assert_eq!(next.expect("the stop begins").req.action, "stop");
    }
}
