//! Running one agent action, as Pacemaker's executor does (EXECD-NOTES §2, §7).
//!
//! The agent is exec'd directly with argv `[path, action]` (never through a shell); its
//! parameters reach it only through the environment (ocf) or stdin lines (stonith). It leads
//! its own process group, starts with default signal dispositions, an empty signal mask,
//! umask 022, a fixed working directory, stdin from /dev/null (a pipe of parameter lines for
//! fence agents) and a fixed minimal environment. The op is over when the agent is *reaped*
//! (a service it started in the background may keep the output pipes open): whatever output
//! is already there is drained, the rest is not waited for. On timeout or cancel the whole
//! process group gets SIGTERM, then SIGKILL after a short grace.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::agent::{AgentDirs, AgentSpec, Standard};
use crate::rc::{map_rc, OpStatus, OCF_ERR_ARGS, OCF_ERR_GENERIC, OCF_ERR_INSTALLED};

/// Output kept per stream; the rest is read and dropped.
pub const OUTPUT_CAP: usize = 256 * 1024;
/// Grace between SIGTERM and SIGKILL of a timed-out or cancelled agent's group.
pub const KILL_GRACE: Duration = Duration::from_millis(1000);
/// Most characters of an exit reason (Pacemaker's limit).
pub const EXIT_REASON_MAX: usize = 128;
const EXIT_REASON_PREFIX: &str = "ocf-exit-reason:";
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// One action to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRequest {
    /// The resource id (`OCF_RESOURCE_INSTANCE`).
    pub rsc: String,
    pub agent: AgentSpec,
    pub action: String,
    /// Instance attributes.
    pub params: BTreeMap<String, String>,
    /// Meta and op attributes, without the `CRM_meta_` prefix (dashes are made underscores).
    pub meta: BTreeMap<String, String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

/// What came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpResult {
    /// The agent's exit code mapped to OCF's (EXECD-NOTES §1.3, §3).
    pub rc: i32,
    pub status: OpStatus,
    pub exit_reason: String,
    pub stdout: String,
    pub stderr: String,
    pub started: SystemTime,
    pub exec_ms: u64,
}

/// What every op of a node shares: where agents are, `HA_RSCTMP`, the working directory,
/// the node's name (`CRM_meta_on_node` unless the request sets it).
#[derive(Debug, Clone)]
pub struct ExecEnv {
    pub dirs: AgentDirs,
    pub rsctmp: PathBuf,
    pub workdir: PathBuf,
    pub node_name: String,
    pub systemd: crate::systemd::Systemd,
    /// halo-fenced's socket, to which stonith resources' start, stop and monitor go.
    pub fencer: Option<PathBuf>,
    /// The cluster tools agents call (`crm_attribute`, `crm_master`, `attrd_updater`,
    /// `crm_node`: halo's own binary under those names) and the node's config they act on:
    /// (directory, config file). Agents get the directory as `HA_SBIN_DIR` and first in
    /// `PATH`, and the config as `HALO_CONFIG`.
    pub cluster_tools: Option<(PathBuf, PathBuf)>,
}

impl OpResult {
    fn refused(status: OpStatus, rc: i32, reason: String) -> OpResult {
        OpResult { rc, status, exit_reason: reason, stdout: String::new(), stderr: String::new(), started: SystemTime::now(), exec_ms: 0 }
    }
}

/// Check names and values before anything runs: environment names must be
/// `[A-Za-z0-9_]`, values must not hold NUL, stonith values no newline.
pub fn check_request(req: &OpRequest) -> Result<(), String> {
    let ok_name = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_name(&req.action.replace('-', "_")) {
        return Err(format!("action '{}' is not a valid action name", req.action));
    }
    for (k, v) in &req.params {
        if !ok_name(k) {
            return Err(format!("parameter name '{k}' is not allowed (letters, digits and _ only)"));
        }
        if v.contains('\0') {
            return Err(format!("the value of parameter '{k}' contains a NUL byte"));
        }
        if req.agent.standard == Standard::Stonith && (v.contains('\n') || v.contains('\r')) {
            return Err(format!("the value of fence parameter '{k}' contains a line break, which would inject a parameter"));
        }
    }
    for (k, v) in &req.meta {
        if !ok_name(&k.replace('-', "_")) || v.contains('\0') {
            return Err(format!("meta attribute '{k}' has a name or value that cannot be passed"));
        }
    }
    if req.rsc.contains('\0') || req.rsc.is_empty() {
        return Err("the resource id is empty or holds a NUL byte".into());
    }
    Ok(())
}

static PROCESS_UMASK: std::sync::Once = std::sync::Once::new();

/// Run `req`; `cancel` (when notified) kills it and reports `Cancelled`.
pub async fn run_op(env: &ExecEnv, req: &OpRequest, cancel: Option<Arc<Notify>>) -> OpResult {
    if let Err(e) = check_request(req) {
        return OpResult::refused(OpStatus::Invalid, OCF_ERR_ARGS, e);
    }
    if req.agent.standard == Standard::Systemd {
        return run_systemd_op(&env.systemd, req, cancel).await;
    }
    let path = match env.dirs.locate(&req.agent) {
        Ok(p) => p,
        Err(e) => return OpResult::refused(OpStatus::NotInstalled, OCF_ERR_INSTALLED, e),
    };
    let (args, stdin_lines): (Vec<String>, Option<String>) = match req.agent.standard {
        Standard::Stonith => (Vec::new(), Some(stonith_stdin(req))),
        Standard::Lsb => (vec![if req.action == "monitor" { "status".into() } else { req.action.clone() }], None),
        _ => (vec![req.action.clone()], None),
    };
    let mut cmd = tokio::process::Command::new(&path);
    cmd.args(&args).env_clear().envs(environment(env, req)).current_dir(&env.workdir);
    cmd.stdin(if stdin_lines.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0).kill_on_drop(false);
    // No pre_exec hook, so std spawns with posix_spawn (vfork semantics: the daemon's page
    // tables are not copied for every agent, the main cost of a fork at a few hundred ops a
    // second). posix_spawn gives the child an empty signal mask and SIGPIPE's default;
    // handlers the daemon installed reset on exec and it ignores no other signal; the
    // umask is the process's, set to 022 once here.
    PROCESS_UMASK.call_once(|| {
        // SAFETY: umask only sets the process's file mode mask.
        unsafe { libc::umask(0o022) };
    });
    let started = SystemTime::now();
    let t0 = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let status = if e.kind() == std::io::ErrorKind::PermissionDenied { OpStatus::NotInstalled } else { OpStatus::Error };
            return OpResult::refused(status, OCF_ERR_INSTALLED, format!("cannot execute {}: {e}", path.display()));
        }
    };
    let pgid = child.id().map(|p| p as i32);
    if let (Some(lines), Some(mut stdin)) = (stdin_lines, child.stdin.take()) {
        // A fence agent reads its parameters to EOF; a small write never blocks for long.
        tokio::spawn(async move {
            let _ = stdin.write_all(lines.as_bytes()).await;
        });
    }
    let mut out = Capture::new(child.stdout.take());
    let mut err = Capture::new(child.stderr.take());
    let deadline = tokio::time::sleep(Duration::from_millis(req.timeout_ms.max(1)));
    tokio::pin!(deadline);
    let cancelled = async {
        match &cancel {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(cancelled);
    enum End {
        Exited(std::process::ExitStatus),
        TimedOut,
        Cancelled,
    }
    let end = loop {
        tokio::select! {
            st = child.wait() => break match st { Ok(s) => End::Exited(s), Err(_) => End::Cancelled },
            _ = out.step(), if out.open => {}
            _ = err.step(), if err.open => {}
            _ = &mut deadline => break End::TimedOut,
            _ = &mut cancelled => break End::Cancelled,
        }
    };
    if !matches!(end, End::Exited(_)) {
        if let Some(g) = pgid {
            kill_group(g, &mut child).await;
        }
    }
    out.drain().await;
    err.drain().await;
    let exec_ms = t0.elapsed().as_millis() as u64;
    let stdout = out.text();
    let stderr = err.text();
    let reason = if req.agent.standard == Standard::Ocf { exit_reason(&stderr) } else { String::new() };
    let (rc, status, exit_reason) = match end {
        End::Exited(s) => match s.code() {
            Some(code) => (map_rc(req.agent.standard, &req.action, code), OpStatus::Done, reason),
            None => {
                let sig = std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0);
                (OCF_ERR_GENERIC, OpStatus::Error, format!("agent killed by signal {sig}"))
            }
        },
        End::TimedOut => (OCF_ERR_GENERIC, OpStatus::Timeout, format!("{} did not complete within {} ms", req.action, req.timeout_ms)),
        End::Cancelled => (0, OpStatus::Cancelled, String::new()),
    };
    OpResult { rc, status, exit_reason, stdout, stderr, started, exec_ms }
}

/// SIGTERM to the group, SIGKILL after [`KILL_GRACE`] (to the group even if the leader went:
/// what it started must not outlive a timed-out op), then reap the leader.
async fn kill_group(pgid: i32, child: &mut tokio::process::Child) {
    // SAFETY: signalling the process group this op created.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait().await;
}

/// A systemd op, cancellable like any other.
async fn run_systemd_op(sd: &crate::systemd::Systemd, req: &OpRequest, cancel: Option<Arc<Notify>>) -> OpResult {
    let op = crate::systemd::run_systemd(sd, req);
    match cancel {
        None => op.await,
        Some(n) => tokio::select! {
            r = op => r,
            _ = n.notified() => OpResult::refused(OpStatus::Cancelled, 0, String::new()),
        },
    }
}

/// The environment of an agent: a fixed base, then the OCF variables for ocf agents.
fn environment(env: &ExecEnv, req: &OpRequest) -> Vec<(String, String)> {
    let path = match &env.cluster_tools {
        Some((sbin, _)) => format!("{}:{PATH}", sbin.display()),
        None => PATH.to_string(),
    };
    let mut v: Vec<(String, String)> = vec![("PATH".into(), path), ("LC_ALL".into(), "C".into()), ("HA_RSCTMP".into(), env.rsctmp.display().to_string())];
    if let Some((sbin, config)) = &env.cluster_tools {
        v.push(("HA_SBIN_DIR".into(), sbin.display().to_string()));
        v.push(("HALO_CONFIG".into(), config.display().to_string()));
    }
    // In a sandbox every process of a node carries this marker (halo sandbox start sets it),
    // services started by agents included, so fence_sandbox can power all of the node off.
    if let Ok(node) = std::env::var("HALO_SANDBOX_NODE") {
        v.push(("HALO_SANDBOX_NODE".into(), node));
        // Sandbox nodes share one host: agents that keep state in /var/run (HA_VARRUN, e.g.
        // ocf:pacemaker:Stateful) get the node's own run-time directory, as HA_RSCTMP.
        v.push(("HA_VARRUN".into(), format!("{}/", env.rsctmp.display())));
    }
    if req.agent.standard == Standard::Stonith {
        // fence_sandbox finds its sandbox and halo through these; set by `halo sandbox start`.
        for k in ["HALO_SANDBOX", "HALO_BIN"] {
            if let Ok(val) = std::env::var(k) {
                v.push((k.into(), val));
            }
        }
    }
    if req.agent.standard != Standard::Ocf {
        return v;
    }
    let ocf_root = env.dirs.ocf_root.display().to_string();
    v.extend([
        ("OCF_ROOT".into(), ocf_root.clone()),
        ("OCF_FUNCTIONS_DIR".into(), format!("{ocf_root}/lib/heartbeat")),
        ("OCF_RA_VERSION_MAJOR".into(), "1".into()),
        ("OCF_RA_VERSION_MINOR".into(), "1".into()),
        ("OCF_RESOURCE_INSTANCE".into(), req.rsc.clone()),
        ("OCF_RESOURCE_TYPE".into(), req.agent.kind.clone()),
        ("OCF_RESOURCE_PROVIDER".into(), req.agent.provider.clone().unwrap_or_default()),
        ("OCF_EXIT_REASON_PREFIX".into(), EXIT_REASON_PREFIX.into()),
    ]);
    for (k, val) in &req.params {
        // OCF_CHECK_LEVEL is the one attribute passed without the prefix.
        if k == "OCF_CHECK_LEVEL" {
            v.push((k.clone(), val.clone()));
        } else {
            v.push((format!("OCF_RESKEY_{k}"), val.clone()));
        }
    }
    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    meta.insert("timeout".into(), req.timeout_ms.to_string());
    meta.insert("interval".into(), req.interval_ms.to_string());
    meta.insert("name".into(), req.action.clone());
    meta.insert("on_node".into(), env.node_name.clone());
    for (k, val) in &req.meta {
        meta.insert(k.replace('-', "_"), val.clone());
    }
    v.extend(meta.into_iter().map(|(k, val)| (format!("OCF_RESKEY_CRM_meta_{k}"), val)));
    v
}

/// A fence agent's stdin: `action=` then the parameters, one `key=value` per line.
fn stonith_stdin(req: &OpRequest) -> String {
    let mut s = format!("action={}\n", req.action);
    for (k, v) in &req.params {
        if k != "action" {
            s.push_str(&format!("{k}={v}\n"));
        }
    }
    s
}

/// The last `ocf-exit-reason:` line of stderr, cut to [`EXIT_REASON_MAX`] characters.
pub fn exit_reason(stderr: &str) -> String {
    stderr
        .lines()
        .filter_map(|l| l.find(EXIT_REASON_PREFIX).map(|i| &l[i + EXIT_REASON_PREFIX.len()..]))
        .last()
        .map(|r| r.trim().chars().take(EXIT_REASON_MAX).collect())
        .unwrap_or_default()
}

/// One output pipe, read as data arrives, kept up to [`OUTPUT_CAP`] bytes.
struct Capture<R> {
    pipe: Option<R>,
    buf: Vec<u8>,
    open: bool,
}

impl<R: AsyncRead + Unpin> Capture<R> {
    fn new(pipe: Option<R>) -> Self {
        let open = pipe.is_some();
        Capture { pipe, buf: Vec::new(), open }
    }

    async fn step(&mut self) {
        let Some(p) = self.pipe.as_mut() else { return std::future::pending().await };
        let mut chunk = [0u8; 8192];
        match p.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                self.open = false;
                self.pipe = None;
            }
            Ok(n) => self.keep(&chunk[..n]),
        }
    }

    fn keep(&mut self, data: &[u8]) {
        let room = OUTPUT_CAP.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// Take what is already in the pipe, without waiting for writers that are still alive.
    async fn drain(&mut self) {
        while self.open {
            match tokio::time::timeout(Duration::from_millis(5), self.step()).await {
                Ok(()) => {}
                Err(_) => break,
            }
        }
        self.pipe = None;
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reason_is_the_last_prefixed_line_cut_to_128() {
        let long = "x".repeat(300);
        let e = format!("noise\nocf-exit-reason:first\nmore\nERROR: ocf-exit-reason:{long}\n");
        assert_eq!(exit_reason(&e).len(), 128);
        assert_eq!(exit_reason("ocf-exit-reason: bad ip \n"), "bad ip");
        assert_eq!(exit_reason("nothing"), "");
    }

    #[test]
    fn requests_with_unpassable_names_or_values_are_refused() {
        let mut r = OpRequest {
            rsc: "r".into(),
            agent: AgentSpec::parse("stonith:fence_x").unwrap(),
            action: "status".into(),
            params: BTreeMap::new(),
            meta: BTreeMap::new(),
            interval_ms: 0,
            timeout_ms: 1000,
        };
        assert!(check_request(&r).is_ok());
        r.params.insert("plug".into(), "a\naction=off".into());
        assert!(check_request(&r).unwrap_err().contains("line break"));
        r.params.clear();
        r.params.insert("bad name".into(), "v".into());
        assert!(check_request(&r).is_err());
        r.params.clear();
        r.action = "status; rm".into();
        assert!(check_request(&r).is_err());
    }
}
