//! The stonith class in the executor (EXECD-NOTES §5): the executor never fences. `start`
//! registers the device with halo-fenced and then runs its monitor there, `stop` unregisters
//! it, a recurring `monitor` has halo-fenced run the device's monitor, and a probe (monitor
//! with interval 0) asks whether halo-fenced has the device registered. `meta-data` and
//! `validate-all` run the agent here; any other action (off, reboot, ...) is refused:
//! fencing is asked of halo-fenced (`halo stonith fence NODE`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use proto::fenced as pb;
use proto::fenced::fencer_client::FencerClient;
use tokio::sync::Notify;
use tonic::transport::Channel;

use crate::agent::Standard;
use crate::rc::{OpStatus, OCF_ERR_CONFIGURED, OCF_ERR_GENERIC, OCF_ERR_INSTALLED, OCF_ERR_UNIMPLEMENTED, OCF_NOT_RUNNING, OCF_SUCCESS};
use crate::run::{run_op, ExecEnv, OpRequest, OpResult};

/// Whether the executor runs `req` itself (every class but stonith, and a fence agent's
/// meta-data and validate-all) or hands it to halo-fenced.
pub fn runs_locally(req: &OpRequest) -> bool {
    req.agent.standard != Standard::Stonith || matches!(req.action.as_str(), "meta-data" | "metadata" | "validate-all")
}

/// Run an op the executor's way: stonith resources through halo-fenced, the rest directly.
pub async fn dispatch(env: &ExecEnv, req: &OpRequest, cancel: Option<Arc<Notify>>) -> OpResult {
    if runs_locally(req) {
        let mut req = req.clone();
        if req.agent.standard == Standard::Stonith && req.action == "meta-data" {
            // Fence agents spell it without the dash.
            req.action = "metadata".into();
        }
        return run_op(env, &req, cancel).await;
    }
    let op = via_fencer(env, req);
    match cancel {
        None => op.await,
        Some(n) => tokio::select! {
            r = op => r,
            _ = n.notified() => result(OCF_SUCCESS, OpStatus::Cancelled, String::new(), SystemTime::now(), Instant::now()),
        },
    }
}

fn result(rc: i32, status: OpStatus, reason: String, started: SystemTime, t0: Instant) -> OpResult {
    OpResult { rc, status, exit_reason: reason, stdout: String::new(), stderr: String::new(), started, exec_ms: t0.elapsed().as_millis() as u64 }
}

async fn connect(sock: Option<&Path>) -> Result<FencerClient<Channel>, String> {
    let sock = sock.ok_or_else(|| "this executor has no fencer (halo-fenced) configured".to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), proto::connect_unix(sock.to_path_buf())).await {
        Ok(Ok(ch)) => Ok(FencerClient::new(ch)),
        Ok(Err(e)) => Err(format!("cannot reach halo-fenced at {}: {e}", sock.display())),
        Err(_) => Err(format!("halo-fenced at {} did not answer", sock.display())),
    }
}

async fn via_fencer(env: &ExecEnv, req: &OpRequest) -> OpResult {
    let (started, t0) = (SystemTime::now(), Instant::now());
    let fail = |status: OpStatus, rc: i32, reason: String| result(rc, status, reason, started, t0);
    let action = req.action.as_str();
    if !matches!(action, "start" | "stop" | "monitor") {
        return fail(
            OpStatus::NotSupported,
            OCF_ERR_UNIMPLEMENTED,
            format!("the executor does not run {action} for fencing device {}: fencing is asked of halo-fenced (halo stonith fence NODE)", req.rsc),
        );
    }
    if let Err(e) = crate::run::check_request(req) {
        return fail(OpStatus::Invalid, crate::rc::OCF_ERR_ARGS, e);
    }
    let mut client = match connect(env.fencer.as_deref()).await {
        Ok(c) => c,
        // A fencer that is not running has no device registered: the stop is done.
        Err(_) if action == "stop" => return fail(OpStatus::Done, OCF_SUCCESS, String::new()),
        Err(e) => return fail(OpStatus::NotConnected, OCF_ERR_GENERIC, e),
    };
    let deadline = Duration::from_millis(req.timeout_ms.max(1)) + Duration::from_secs(5);
    let timeout_ms = req.timeout_ms;
    let call = async {
        match action {
            "stop" => client.remove(pb::RemoveRequest { id: req.rsc.clone() }).await.map(|_| fail(OpStatus::Done, OCF_SUCCESS, String::new())),
            "monitor" if req.interval_ms == 0 => {
                // A probe: did this node's executor register (start) the device? A device the
                // fencer has only from the CIB is usable here but not started here.
                let r = client.devices(pb::DevicesRequest { target: String::new() }).await?.into_inner();
                let on = r.devices.iter().any(|d| d.id == req.rsc && d.started);
                Ok(fail(OpStatus::Done, if on { OCF_SUCCESS } else { OCF_NOT_RUNNING }, String::new()))
            }
            "monitor" => client.monitor(pb::MonitorRequest { id: req.rsc.clone(), timeout_ms }).await.map(|r| monitor_result(r.into_inner(), started, t0)),
            _ => {
                let reg = pb::RegisterRequest {
                    id: req.rsc.clone(),
                    agent: req.agent.to_string(),
                    params: req.params.clone().into_iter().collect(),
                    meta: req.meta.clone().into_iter().collect(),
                };
                match client.register(reg).await {
                    Ok(_) => {}
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => return Ok(fail(OpStatus::NotInstalled, OCF_ERR_INSTALLED, s.message().to_string())),
                    Err(s) if s.code() == tonic::Code::InvalidArgument => return Ok(fail(OpStatus::ErrorHard, OCF_ERR_CONFIGURED, s.message().to_string())),
                    Err(s) => return Err(s),
                }
                // Started means usable: the device answers its monitor.
                client.monitor(pb::MonitorRequest { id: req.rsc.clone(), timeout_ms }).await.map(|r| monitor_result(r.into_inner(), started, t0))
            }
        }
    };
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(r)) => r,
        Ok(Err(s)) => fail(OpStatus::Error, OCF_ERR_GENERIC, format!("halo-fenced: {}", s.message())),
        Err(_) => fail(OpStatus::Timeout, OCF_ERR_GENERIC, format!("halo-fenced did not answer {action} of {} within {} ms", req.rsc, req.timeout_ms)),
    }
}

/// A device monitor's result as the op's: the device answered, or it did not.
fn monitor_result(r: pb::ActionResult, started: SystemTime, t0: Instant) -> OpResult {
    let status = OpStatus::from_i32(r.op_status);
    // A status check without a target may say "off" (rc 7): the device still answered.
    let ok = r.rc == OCF_SUCCESS || (r.action == "status" && r.rc == OCF_NOT_RUNNING);
    let (rc, status) = match status {
        OpStatus::NoFenceDevice => (OCF_NOT_RUNNING, OpStatus::Done),
        OpStatus::Done if ok => (OCF_SUCCESS, OpStatus::Done),
        OpStatus::Done => (OCF_ERR_GENERIC, OpStatus::Done),
        s => (if r.rc == OCF_SUCCESS { OCF_ERR_GENERIC } else { r.rc }, s),
    };
    let mut out = result(rc, status, if rc == OCF_SUCCESS { String::new() } else { r.reason }, started, t0);
    out.stdout = r.output;
    out
}
