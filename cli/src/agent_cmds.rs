//! `halo agent ...`: list, describe, run and test resource agents on this host, with the
//! executor's own code (`execd::run`), no cluster needed. Like `crm_resource
//! --list-agents`, `--show-metadata`, `pcs resource debug-start` and `ocf-tester`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use execd::agent::{AgentDirs, AgentSpec, Standard};
use execd::rc::{rc_name, OpStatus};
use execd::run::{run_op, ExecEnv, OpRequest, OpResult};

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Agents found on this host: all standards, one (ocf, lsb, stonith), or ocf:PROVIDER.
    List {
        #[arg(value_name = "STANDARD[:PROVIDER]")]
        filter: Option<String>,
    },
    /// An agent's meta-data as readable text (parameters, actions); --xml prints it raw.
    Describe {
        agent: String,
        #[arg(long)]
        xml: bool,
    },
    /// Run one action of an agent and exit with its (OCF) exit code.
    Exec {
        agent: String,
        action: String,
        /// An instance attribute, passed as OCF_RESKEY_K (fence agents: a stdin line).
        #[arg(long = "param", short = 'p', value_name = "K=V")]
        params: Vec<String>,
        /// A meta attribute, passed as OCF_RESKEY_CRM_meta_K.
        #[arg(long = "meta", value_name = "K=V")]
        meta: Vec<String>,
        /// Seconds before the agent's process group is killed.
        #[arg(long, default_value_t = 20.0)]
        timeout: f64,
        /// The resource id (OCF_RESOURCE_INSTANCE); default: the agent's type.
        #[arg(long)]
        rsc: Option<String>,
    },
    /// Check an agent the way ocf-tester does: meta-data, validate-all, monitor when
    /// stopped, start, monitor, start again, stop, stop again, monitor.
    Test {
        agent: String,
        #[arg(long = "param", short = 'p', value_name = "K=V")]
        params: Vec<String>,
        #[arg(long, default_value_t = 20.0)]
        timeout: f64,
        #[arg(long)]
        rsc: Option<String>,
    },
}

pub(crate) fn exec_env(dir: Option<&Path>) -> Result<ExecEnv> {
    let dirs = AgentDirs::discover(std::env::current_exe().ok().as_deref());
    let (rsctmp, node_name) = match dir {
        Some(d) => {
            let parsed = common::config::ClusterConfig::load(&d.join("corosync.conf")).map_err(|e| anyhow!("{e}"))?;
            let paths = common::paths::NodePaths::from_config(&parsed.config);
            let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (paths.run_dir.join("rsctmp"), name)
        }
        None => (PathBuf::from("/run/resource-agents"), hostname()),
    };
    std::fs::create_dir_all(&rsctmp).map_err(|e| anyhow!("cannot create HA_RSCTMP {}: {e}", rsctmp.display()))?;
    Ok(ExecEnv { dirs, rsctmp, workdir: PathBuf::from("/"), node_name, systemd: execd::systemd::Systemd::host(), fencer: None, cluster_tools: None })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

fn pairs(v: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    v.iter()
        .map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| anyhow!("{what} '{p}' is not K=V")))
        .collect()
}

fn spec(s: &str) -> Result<AgentSpec> {
    AgentSpec::parse(s).map_err(|e| anyhow!("{e}"))
}

/// Run an agent command; the process exit code.
pub fn run(cmd: AgentCmd, dir: Option<&Path>) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cmd {
        AgentCmd::List { filter } => list(filter.as_deref()),
        AgentCmd::Describe { agent, xml } => rt.block_on(describe(&exec_env(dir)?, &spec(&agent)?, xml)),
        AgentCmd::Exec { agent, action, params, meta, timeout, rsc } => {
            let agent = spec(&agent)?;
            let req = OpRequest {
                rsc: rsc.unwrap_or_else(|| agent.kind.clone()),
                agent,
                action,
                params: pairs(&params, "--param")?,
                meta: pairs(&meta, "--meta")?,
                interval_ms: 0,
                timeout_ms: (timeout * 1000.0) as u64,
            };
            let r = rt.block_on(run_op(&exec_env(dir)?, &req, None));
            print!("{}", r.stdout);
            eprint!("{}", r.stderr);
            eprintln!("halo: {} {} on {}: {}", req.agent, req.action, req.rsc, outcome(&r));
            Ok(r.rc)
        }
        AgentCmd::Test { agent, params, timeout, rsc } => {
            let agent = spec(&agent)?;
            let rsc = rsc.unwrap_or_else(|| format!("halo-test-{}", agent.kind));
            rt.block_on(tester(&exec_env(dir)?, agent, rsc, pairs(&params, "--param")?, (timeout * 1000.0) as u64))
        }
    }
}

fn outcome(r: &OpResult) -> String {
    let mut s = format!("rc {} ({})", r.rc, rc_name(r.rc));
    if r.status != OpStatus::Done {
        s.push_str(&format!(", {}", r.status.name()));
    }
    if !r.exit_reason.is_empty() {
        s.push_str(&format!(": {}", r.exit_reason));
    }
    s.push_str(&format!(", {} ms", r.exec_ms));
    s
}

fn list(filter: Option<&str>) -> Result<i32> {
    let dirs = AgentDirs::discover(std::env::current_exe().ok().as_deref());
    let (standards, provider) = match filter {
        None => (vec![Standard::Ocf, Standard::Lsb, Standard::Stonith], None),
        Some(f) => {
            let (s, p) = match f.split_once(':') {
                Some((s, p)) => (s, Some(p.to_string())),
                None => (f, None),
            };
            let st = Standard::parse(s).ok_or_else(|| anyhow!("unknown standard '{s}': use ocf, lsb, systemd or stonith (ocf:PROVIDER for one provider)"))?;
            (vec![st], p)
        }
    };
    for st in standards {
        if st == Standard::Systemd {
            eprintln!("halo: systemd units are not listed (ask `systemctl list-unit-files`); use them as systemd:NAME");
            continue;
        }
        for a in dirs.list(st, provider.as_deref()) {
            println!("{a}");
        }
    }
    Ok(0)
}

async fn metadata(env: &ExecEnv, agent: &AgentSpec) -> Result<String> {
    let req = OpRequest {
        rsc: agent.kind.clone(),
        agent: agent.clone(),
        action: if agent.standard == Standard::Stonith { "metadata".into() } else { "meta-data".into() },
        params: BTreeMap::new(),
        meta: BTreeMap::new(),
        interval_ms: 0,
        timeout_ms: 30_000,
    };
    let r = run_op(env, &req, None).await;
    if r.rc != 0 || r.status != OpStatus::Done {
        bail!("meta-data of {agent} failed: {}", outcome(&r));
    }
    Ok(r.stdout)
}

async fn describe(env: &ExecEnv, agent: &AgentSpec, raw: bool) -> Result<i32> {
    let xml = metadata(env, agent).await?;
    if raw {
        print!("{xml}");
        return Ok(0);
    }
    let doc = cib::xml::parse(&without_doctype(&xml)).map_err(|e| anyhow!("the meta-data of {agent} is not well-formed XML: {e}"))?;
    let root = &doc.root;
    let text = |e: Option<&cib::xml::Element>| e.map(|e| e.text().split_whitespace().collect::<Vec<_>>().join(" ")).unwrap_or_default();
    println!("{agent} - {}", root.attr("shortdesc").map(str::to_string).unwrap_or_else(|| text(root.child("shortdesc"))));
    let long = text(root.child("longdesc"));
    if !long.is_empty() {
        println!("\n{long}");
    }
    if let Some(ps) = root.child("parameters") {
        println!("\nParameters:");
        for p in ps.children_named("parameter") {
            let content = p.child("content");
            let mut flags = Vec::new();
            if p.attr("required") == Some("1") {
                flags.push("required".to_string());
            }
            if p.attr("unique") == Some("1") {
                flags.push("unique".to_string());
            }
            if let Some(t) = content.and_then(|c| c.attr("type")) {
                flags.push(t.to_string());
            }
            if let Some(d) = content.and_then(|c| c.attr("default")) {
                flags.push(format!("default: {d}"));
            }
            println!("  {} ({})", p.attr("name").unwrap_or("?"), flags.join(", "));
            let sd = p.attr("shortdesc").map(str::to_string).unwrap_or_else(|| text(p.child("shortdesc")));
            if !sd.is_empty() {
                println!("      {sd}");
            }
        }
    }
    if let Some(acts) = root.child("actions") {
        println!("\nActions:");
        for a in acts.children_named("action") {
            let extra: Vec<String> = ["timeout", "interval", "depth", "role"].iter().filter_map(|k| a.attr(k).map(|v| format!("{k}={v}"))).collect();
            println!("  {:<14} {}", a.attr("name").unwrap_or("?"), extra.join(" "));
        }
    }
    Ok(0)
}

/// Meta-data often starts with `<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">`, which
/// halo's XML reader (made for CIBs) refuses; the declaration carries nothing needed here.
fn without_doctype(xml: &str) -> String {
    let Some(start) = xml.find("<!DOCTYPE") else { return xml.to_string() };
    let mut depth = 0;
    for (i, c) in xml[start..].char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '>' if depth == 0 => return format!("{}{}", &xml[..start], &xml[start + i + 1..]),
            _ => {}
        }
    }
    xml.to_string()
}

/// The ocf-tester sequence; exit 0 when every step passed.
async fn tester(env: &ExecEnv, agent: AgentSpec, rsc: String, params: BTreeMap<String, String>, timeout_ms: u64) -> Result<i32> {
    let mut failed = 0;
    let mut check = |name: &str, ok: bool, detail: String| {
        println!("{} {name}{}", if ok { "PASS" } else { "FAIL" }, if ok || detail.is_empty() { String::new() } else { format!(": {detail}") });
        if !ok {
            failed += 1;
        }
    };
    match metadata(env, &agent).await {
        Ok(xml) => match cib::xml::parse(&without_doctype(&xml)) {
            Ok(d) => check("meta-data is a <resource-agent> document", d.root.name == "resource-agent", format!("root is <{}>", d.root.name)),
            Err(e) => check("meta-data is well-formed XML", false, e.to_string()),
        },
        Err(e) => check("meta-data", false, e.to_string()),
    }
    let step = |action: &str| {
        let req = OpRequest {
            rsc: rsc.clone(),
            agent: agent.clone(),
            action: action.to_string(),
            params: params.clone(),
            meta: BTreeMap::new(),
            interval_ms: 0,
            timeout_ms,
        };
        async move { run_op(env, &req, None).await }
    };
    let expect: [(&str, &[i32], &str); 8] = [
        ("validate-all", &[0], "validate-all accepts the parameters"),
        ("monitor", &[7], "monitor reports not running before start"),
        ("start", &[0], "start"),
        ("monitor", &[0, 8], "monitor reports running after start"),
        ("start", &[0], "start again is a success (idempotent)"),
        ("stop", &[0], "stop"),
        ("stop", &[0], "stop again is a success (idempotent)"),
        ("monitor", &[7], "monitor reports not running after stop"),
    ];
    for (action, want, what) in expect {
        let r = step(action).await;
        let ok = r.status == OpStatus::Done && want.contains(&r.rc);
        check(what, ok, if ok { String::new() } else { outcome(&r) });
        if !ok && action == "start" {
            // Leave nothing running behind a failed start.
            let _ = step("stop").await;
        }
    }
    println!("{} of {} checks failed", failed, expect.len() + 1);
    Ok(if failed == 0 { 0 } else { 1 })
}
