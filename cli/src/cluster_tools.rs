//! Pacemaker's command-line tools that resource agents call, played by `halo` when it runs
//! under their names (the executor links them into the directory it gives agents as
//! `HA_SBIN_DIR` and first in `PATH`): `crm_attribute`, `crm_master`, `attrd_updater`,
//! `crm_node`. The node they act on is the one `HALO_CONFIG` names (the executor sets it),
//! else /etc/halo/corosync.conf; its own name and id come from its halo-membershipd.
//!
//! Spec: Pacemaker 2.1's `crm_attribute --help`, `attrd_updater --help`, `crm_node --help`
//! and CONTROLLER-NOTES §7.5-7.6 (what agents call). Transient attributes (`-l reboot`,
//! `--promotion`, `crm_master`, `attrd_updater`) go to the DC through the local controller,
//! which writes them; permanent node attributes and cluster options are written to the CIB
//! directly. `attrd_updater -B VALUE -d D` and `-Y -d D` set the attribute's dampening (the
//! DC applies it, `controld::attrs`); `-U` ignores `-d`, as 2.1.5 does. Deliberate
//! deviations: `crm_master` defaults to `-l reboot` (what every agent
//! passes); `-s`, `-i`, `-p` (private) are accepted and ignored; the quiet query of a missing
//! attribute exits 105 (Pacemaker's "No such object") with its message on stderr.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use common::paths::Daemon;
use proto::controld as cpb;
use proto::membership as mpb;

/// Exit code of a query for an attribute that is not set (CRM_EX_NOSUCH).
const EX_NOSUCH: i32 = 105;

/// If `halo` runs as one of the tools, do that tool's job and return its exit code.
pub fn dispatch() -> Option<i32> {
    let argv0 = std::env::args().next()?;
    let name = std::path::Path::new(&argv0).file_name()?.to_string_lossy().into_owned();
    if !matches!(name.as_str(), "crm_attribute" | "crm_master" | "attrd_updater" | "crm_node") {
        return None;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    Some(match rt.block_on(run(&name, &args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            1
        }
    })
}

/// `halo attribute`: node attributes as crm_attribute handles them (the same code), with
/// pcs-like words: `set NAME VALUE`, `query NAME`, `delete NAME`; `--node` (default this
/// node), `--lifetime reboot` (transient, the default: through the DC into the status) or
/// `forever` (permanent, in the node's configuration).
#[derive(clap::Subcommand)]
pub enum AttributeCmd {
    /// Set a node attribute.
    Set { name: String, value: String, #[command(flatten)] at: AttributeAt },
    /// Print a node attribute's value.
    Query { name: String, #[command(flatten)] at: AttributeAt },
    /// Delete a node attribute.
    Delete { name: String, #[command(flatten)] at: AttributeAt },
}

#[derive(clap::Args)]
pub struct AttributeAt {
    /// The node (default: this one).
    #[arg(long)]
    node: Option<String>,
    /// reboot (transient, the default) or forever (permanent).
    #[arg(long, default_value = "reboot", value_parser = ["reboot", "forever"])]
    lifetime: String,
}

pub fn attribute_cmd(cmd: AttributeCmd, dir: Option<&std::path::Path>) -> Result<i32> {
    let (mut args, at) = match cmd {
        AttributeCmd::Set { name, value, at } => (vec!["-n".to_string(), name, "-v".into(), value], at),
        AttributeCmd::Query { name, at } => (vec!["-n".to_string(), name, "-G".into(), "-q".into()], at),
        AttributeCmd::Delete { name, at } => (vec!["-n".to_string(), name, "-D".into()], at),
    };
    args.extend(["-l".to_string(), at.lifetime]);
    if let Some(n) = at.node {
        args.extend(["-N".to_string(), n]);
    }
    // The tools find the node's config as agents give it to them.
    // SAFETY: set before any thread of this process starts (the runtime is built below).
    unsafe { std::env::set_var("HALO_CONFIG", crate::local::config_path(dir)) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run("crm_attribute", &args))
}

fn node_dir() -> Option<PathBuf> {
    // local::socket wants the directory holding corosync.conf.
    let cfg = std::env::var_os("HALO_CONFIG").map(PathBuf::from)?;
    cfg.parent().map(|p| p.to_path_buf())
}

/// Options as getopt_long reads them: `-n X`, `-nX`, `--name X`, `--name=X`; flags alone.
struct Opts {
    pairs: Vec<(String, Option<String>)>,
}

impl Opts {
    fn parse(args: &[String], with_value: &[&str]) -> Result<Opts> {
        let mut pairs = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            let (key, inline) = if let Some(long) = a.strip_prefix("--") {
                match long.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (long.to_string(), None),
                }
            } else if let Some(short) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
                let (k, rest) = short.split_at(1);
                (k.to_string(), (!rest.is_empty()).then(|| rest.to_string()))
            } else {
                bail!("unexpected argument '{a}'");
            };
            let value = if with_value.contains(&key.as_str()) {
                match inline {
                    Some(v) => Some(v),
                    None => {
                        i += 1;
                        Some(args.get(i).cloned().ok_or_else(|| anyhow!("option '{a}' needs a value"))?)
                    }
                }
            } else {
                inline
            };
            pairs.push((key, value));
            i += 1;
        }
        Ok(Opts { pairs })
    }

    fn has(&self, keys: &[&str]) -> bool {
        self.pairs.iter().any(|(k, _)| keys.contains(&k.as_str()))
    }

    fn get(&self, keys: &[&str]) -> Option<String> {
        self.pairs.iter().rev().find(|(k, _)| keys.contains(&k.as_str())).and_then(|(_, v)| v.clone())
    }
}

/// This node's id and name, from its membership daemon.
async fn local_node() -> Result<(u32, String)> {
    let ch = crate::local::channel(node_dir().as_deref(), Daemon::Membershipd).await?;
    let s = mpb::membership_client::MembershipClient::new(ch).status(mpb::StatusRequest {}).await.map_err(|e| anyhow!("halo-membershipd: {}", e.message()))?.into_inner();
    Ok((s.local_nodeid, s.local_name))
}

fn configured_nodes() -> Result<Vec<(u32, String)>> {
    let cfg = crate::local::config_path(node_dir().as_deref());
    let parsed = common::config::ClusterConfig::load(&cfg).map_err(|e| anyhow!("{e}"))?;
    Ok(parsed.config.nodes.iter().map(|n| (n.nodeid, n.name.clone())).collect())
}

async fn node_id(name: Option<String>) -> Result<(u32, String)> {
    match name {
        None => local_node().await,
        Some(n) => configured_nodes()?.into_iter().find(|(_, x)| *x == n).ok_or_else(|| anyhow!("node '{n}' is not in the cluster's node list")),
    }
}

async fn cib_doc() -> Result<cib::xml::Element> {
    let sock = crate::local::socket(node_dir().as_deref(), Daemon::Cibd)?;
    let mut c = cibclient::Cib::connect(&sock).await.map_err(|e| anyhow!("{e}"))?;
    Ok(c.query().await.map_err(|e| anyhow!("{e}"))?.root)
}

async fn cib_write(w: proto::cib::WriteRequest) -> Result<()> {
    let sock = crate::local::socket(node_dir().as_deref(), Daemon::Cibd)?;
    let mut c = cibclient::Cib::connect(&sock).await.map_err(|e| anyhow!("{e}"))?;
    c.write(w).await.map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// How a transient update treats the attribute's dampening.
#[derive(Clone, Copy, Default)]
struct Delay {
    /// The attribute's delay from now on (ms).
    set_ms: Option<u64>,
    /// Only the delay changes (`attrd_updater -Y`).
    only: bool,
}

async fn transient(node: u32, name: &str, value: Option<&str>, delay: Delay) -> Result<()> {
    let ch = crate::local::channel(node_dir().as_deref(), Daemon::Controld).await?;
    let a = cpb::AttributeUpdate { dc: 0, node, name: name.into(), value: value.unwrap_or("").into(), delete: value.is_none(), dampen_ms: delay.set_ms, only_delay: delay.only };
    cpb::controller_client::ControllerClient::new(ch).update_attribute(a).await.map_err(|e| anyhow!("halo-controld: {}", e.message()))?;
    Ok(())
}

/// Where an attribute lives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Transient: `status/node_state/transient_attributes` (lifetime reboot).
    Status,
    /// Permanent: `configuration/nodes/node/instance_attributes`.
    Nodes,
    /// A cluster option: `crm_config`.
    CrmConfig,
}

fn find_value(cib: &cib::xml::Element, scope: Scope, node: u32, name: &str) -> Option<String> {
    let id = node.to_string();
    let section = match scope {
        Scope::Status => cib.child("status")?.children_named("node_state").find(|n| n.id() == Some(&id))?.child("transient_attributes")?,
        Scope::Nodes => cib.child("configuration")?.child("nodes")?.children_named("node").find(|n| n.id() == Some(&id))?,
        Scope::CrmConfig => cib.child("configuration")?.child("crm_config")?,
    };
    section.iter_descendants().find(|e| e.name == "nvpair" && e.attr("name") == Some(name)).and_then(|e| e.attr("value")).map(str::to_string)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A cluster option set (a modify) or deleted. (Permanent node attributes are the same edit
/// as `halo node standby`'s: `node_cmds::attr_patch`.)
fn crm_config_write(name: &str, value: Option<&str>) -> proto::cib::WriteRequest {
    use proto::cib::write_request::Op;
    let set_id = "cib-bootstrap-options";
    let nv_id = format!("{set_id}-{}", name.replace('#', "."));
    match value {
        Some(v) => {
            let xml = format!(
                r#"<crm_config><cluster_property_set id="{set_id}"><nvpair id="{}" name="{}" value="{}"/></cluster_property_set></crm_config>"#,
                xml_escape(&nv_id),
                xml_escape(name),
                xml_escape(v)
            );
            proto::cib::WriteRequest { op: Some(Op::Modify(proto::cib::Modify { xml })) }
        }
        None => proto::cib::WriteRequest { op: Some(Op::Delete(proto::cib::Delete { xml: format!(r#"<nvpair id="{}"/>"#, xml_escape(&nv_id)) })) },
    }
}

async fn run(tool: &str, args: &[String]) -> Result<i32> {
    match tool {
        "crm_node" => crm_node(args).await,
        "attrd_updater" => {
            let o = Opts::parse(args, &["n", "name", "U", "update", "v", "B", "update-both", "N", "node", "d", "delay", "s", "set", "l", "lifetime"])?;
            let name = o.get(&["n", "name"]).ok_or_else(|| anyhow!("an attribute name is required (-n)"))?;
            let (node, _) = node_id(o.get(&["N", "node"])).await?;
            if o.has(&["Q", "query"]) {
                return query(Scope::Status, node, &name, o.has(&["A", "all"]), false, None, true).await;
            }
            // -d counts with -B (value and delay) and -Y (delay only); -U ignores it, as
            // attrd_updater 2.1.5 does. A bare number is seconds.
            let delay_ms = match o.get(&["d", "delay"]) {
                Some(d) => Some(scheduler::interval_ms(&d).ok_or_else(|| anyhow!("invalid delay '{d}' (e.g. 5s, 500ms)"))?),
                None => None,
            };
            if o.has(&["D", "delete"]) {
                transient(node, &name, None, Delay::default()).await?;
            } else if let Some(v) = o.get(&["B", "update-both"]) {
                transient(node, &name, Some(&v), Delay { set_ms: delay_ms, only: false }).await?;
            } else if let Some(v) = o.get(&["U", "update", "v"]) {
                transient(node, &name, Some(&v), Delay::default()).await?;
            } else if o.has(&["Y", "update-delay"]) {
                let set_ms = Some(delay_ms.ok_or_else(|| anyhow!("-Y needs the new delay (-d)"))?);
                transient(node, &name, None, Delay { set_ms, only: true }).await?;
            } else if !o.has(&["R", "refresh"]) {
                bail!("nothing to do: give -U VALUE, -B VALUE, -Y, -D or -Q");
            }
            Ok(0)
        }
        "crm_master" => {
            let rsc = std::env::var("OCF_RESOURCE_INSTANCE").map_err(|_| anyhow!("OCF_RESOURCE_INSTANCE is not set: crm_master is for resource agents"))?;
            let o = Opts::parse(args, &["v", "update", "l", "lifetime", "N", "node", "d", "default"])?;
            attribute(&o, &format!("master-{rsc}"), Scope::Status).await
        }
        _ => {
            let o = Opts::parse(args, &["n", "name", "v", "update", "attr-value", "N", "node", "U", "l", "lifetime", "t", "type", "d", "default", "s", "set-name", "i", "id"])?;
            if o.has(&["p", "promotion"]) {
                let rsc = o.get(&["p", "promotion"]).or_else(|| std::env::var("OCF_RESOURCE_INSTANCE").ok()).ok_or_else(|| anyhow!("--promotion needs a resource (or OCF_RESOURCE_INSTANCE)"))?;
                return attribute(&o, &format!("master-{rsc}"), Scope::Status).await;
            }
            let name = o.get(&["n", "name"]).ok_or_else(|| anyhow!("an attribute name is required (-n)"))?;
            let lifetime = o.get(&["l", "lifetime"]);
            let scope = match (o.get(&["t", "type"]).as_deref(), lifetime.as_deref()) {
                (Some("status"), _) | (_, Some("reboot")) => Scope::Status,
                (Some("nodes"), _) | (_, Some("forever")) => Scope::Nodes,
                (Some("crm_config"), _) => Scope::CrmConfig,
                (Some(t), _) => bail!("attribute type '{t}' is not supported (nodes, status, crm_config)"),
                (None, _) if o.has(&["N", "node", "U"]) => Scope::Nodes,
                (None, _) => Scope::CrmConfig,
            };
            attribute(&o, &name, scope).await
        }
    }
}

/// Set, delete or query one attribute (crm_attribute and crm_master).
async fn attribute(o: &Opts, name: &str, scope: Scope) -> Result<i32> {
    let (node, node_name) = if scope == Scope::CrmConfig { (0, String::new()) } else { node_id(o.get(&["N", "node", "U"])).await? };
    if o.has(&["G", "query", "get-value"]) || !o.has(&["v", "update", "attr-value", "D", "delete", "delete-attr"]) {
        return query(scope, node, name, false, o.has(&["q", "quiet"]), o.get(&["d", "default"]), false).await;
    }
    let value = if o.has(&["D", "delete", "delete-attr"]) { None } else { o.get(&["v", "update", "attr-value"]) };
    match scope {
        Scope::Status => transient(node, name, value.as_deref(), Delay::default()).await?,
        Scope::Nodes => {
            let names = [node_name];
            crate::node_cmds::edit_live(node_dir().as_deref(), |doc| crate::node_cmds::attr_patch(doc, crate::node_cmds::Nodes::Named(&names), name, value.as_deref())).await?;
        }
        Scope::CrmConfig => cib_write(crm_config_write(name, value.as_deref())).await?,
    }
    Ok(0)
}

async fn query(scope: Scope, node: u32, name: &str, all: bool, quiet: bool, default: Option<String>, attrd: bool) -> Result<i32> {
    let cib = cib_doc().await?;
    let nodes: Vec<(u32, String)> = if all { configured_nodes()? } else { vec![(node, configured_nodes()?.into_iter().find(|(i, _)| *i == node).map(|(_, n)| n).unwrap_or_default())] };
    let mut code = 0;
    for (id, host) in nodes {
        match find_value(&cib, scope, id, name).or_else(|| default.clone()) {
            Some(v) if attrd => println!("name=\"{name}\" host=\"{host}\" value=\"{v}\""),
            Some(v) if quiet => println!("{v}"),
            Some(v) => {
                let s = match scope {
                    Scope::Status => "status",
                    Scope::Nodes => "nodes",
                    Scope::CrmConfig => "crm_config",
                };
                println!("scope={s}  name={name} value={v}");
            }
            None => {
                eprintln!("Error performing operation: No such device or address (attribute {name} is not set)");
                code = EX_NOSUCH;
            }
        }
    }
    Ok(code)
}

async fn crm_node(args: &[String]) -> Result<i32> {
    let o = Opts::parse(args, &["N", "node-id"])?;
    if o.has(&["n", "name"]) {
        println!("{}", local_node().await?.1);
    } else if o.has(&["i", "cluster-id"]) {
        println!("{}", local_node().await?.0);
    } else if o.has(&["q", "quorum"]) {
        let ch = crate::local::channel(node_dir().as_deref(), Daemon::Membershipd).await?;
        let q = mpb::membership_client::MembershipClient::new(ch).quorum(mpb::QuorumRequest {}).await.map_err(|e| anyhow!("halo-membershipd: {}", e.message()))?.into_inner();
        println!("{}", if q.quorate { 1 } else { 0 });
    } else if o.has(&["l", "list", "p", "partition"]) {
        let ch = crate::local::channel(node_dir().as_deref(), Daemon::Membershipd).await?;
        let s = mpb::membership_client::MembershipClient::new(ch).status(mpb::StatusRequest {}).await.map_err(|e| anyhow!("halo-membershipd: {}", e.message()))?.into_inner();
        if o.has(&["p", "partition"]) {
            let names: Vec<String> = s.nodes.iter().filter(|n| n.member).map(|n| n.name.clone()).collect();
            println!("{}", names.join(" "));
        } else {
            for n in &s.nodes {
                println!("{} {} {}", n.nodeid, n.name, if n.member { "member" } else { "lost" });
            }
        }
    } else {
        bail!("give -n (this node's name), -i (its id), -l (the nodes), -p (the partition) or -q (quorum)");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn options_read_as_getopt_reads_them() {
        let o = Opts::parse(&args("--promotion -v 10 -nfoo --lifetime=reboot -q"), &["n", "v", "lifetime"]).unwrap();
        assert_eq!(o.get(&["v"]).as_deref(), Some("10"));
        assert_eq!(o.get(&["n"]).as_deref(), Some("foo"));
        assert_eq!(o.get(&["lifetime"]).as_deref(), Some("reboot"));
        assert!(o.has(&["q"]) && o.has(&["promotion"]));
        // `--promotion` takes an optional value only with `=`.
        let o = Opts::parse(&args("--promotion=db -G"), &["n"]).unwrap();
        assert_eq!(o.get(&["promotion"]).as_deref(), Some("db"));
        assert!(Opts::parse(&args("-n"), &["n"]).is_err());
        assert!(Opts::parse(&args("stray"), &["n"]).is_err());
    }

    #[test]
    fn values_are_found_where_each_scope_keeps_them() {
        let cib = cib::xml::parse(
            r#"<cib><configuration><crm_config><cluster_property_set id="o"><nvpair id="o1" name="stonith-enabled" value="false"/></cluster_property_set></crm_config><nodes><node id="2" uname="n2"><instance_attributes id="nodes-2"><nvpair id="nodes-2-standby" name="standby" value="on"/></instance_attributes></node></nodes></configuration><status><node_state id="2"><transient_attributes id="2"><instance_attributes id="status-2"><nvpair id="status-2-master-db" name="master-db" value="10"/></instance_attributes></transient_attributes></node_state></status></cib>"#,
        )
        .unwrap()
        .root;
        assert_eq!(find_value(&cib, Scope::Status, 2, "master-db").as_deref(), Some("10"));
        assert_eq!(find_value(&cib, Scope::Status, 1, "master-db"), None);
        assert_eq!(find_value(&cib, Scope::Nodes, 2, "standby").as_deref(), Some("on"));
        assert_eq!(find_value(&cib, Scope::CrmConfig, 0, "stonith-enabled").as_deref(), Some("false"));
        let w = crm_config_write("no-quorum-policy", Some("freeze"));
        let Some(proto::cib::write_request::Op::Modify(m)) = w.op else { panic!() };
        assert_eq!(m.xml, r#"<crm_config><cluster_property_set id="cib-bootstrap-options"><nvpair id="cib-bootstrap-options-no-quorum-policy" name="no-quorum-policy" value="freeze"/></cluster_property_set></crm_config>"#);
    }
}
