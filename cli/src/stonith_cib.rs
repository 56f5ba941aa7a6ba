//! `halo stonith create|delete`: fencing devices in the running cluster's CIB, written as
//! pcs writes them (ids `ID-instance_attributes-NAME`, a 60 s monitor). Everything is
//! checked before the one write: the agent exists here and gives meta-data, every parameter
//! is one it lists (unless --force), the `pcmk_*` options read as the fencer will read them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use cib::xml::Element;
use execd::agent::AgentSpec;
use execd::run::{run_op, OpRequest};
use fenced::device::{AgentInfo, Device};
use proto::cib as pb;
use proto::cib::write_request::Op as WireOp;

use crate::cib_cmds::Fail;

fn from_fail(f: Fail) -> anyhow::Error {
    anyhow!("{}", f.msg)
}

fn nvset(kind: &str, id: &str, pairs: &BTreeMap<String, String>) -> Element {
    let mut set = Element::new(kind);
    let set_id = format!("{id}-{kind}");
    set.set_attr("id", &set_id);
    for (k, v) in pairs {
        let mut p = Element::new("nvpair");
        p.set_attr("id", &format!("{set_id}-{k}"));
        p.set_attr("name", k);
        p.set_attr("value", v);
        set.push(p);
    }
    set
}

/// The `<primitive>` for a device, checked.
pub async fn device_element(dir: Option<&Path>, id: &str, agent: &str, options: &[String], force: bool) -> Result<Element> {
    let name = agent.strip_prefix("stonith:").unwrap_or(agent);
    let spec = AgentSpec::parse(&format!("stonith:{name}")).map_err(|e| anyhow!("{e}"))?;
    if !cib::schema::is_ncname(id) {
        bail!("'{id}' is not a valid id: start with a letter or _, then letters, digits, - _ .");
    }
    // pcs's grammar: instance attributes, then `meta K=V...`, `op monitor K=V...`.
    let (mut params, mut meta, mut monitor) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    enum Part {
        Params,
        Meta,
        OpName,
        Monitor,
    }
    let mut part = Part::Params;
    for o in options {
        match (o.as_str(), &part) {
            ("meta", _) => part = Part::Meta,
            ("op", _) => part = Part::OpName,
            ("monitor", Part::OpName) => part = Part::Monitor,
            (other, Part::OpName) => bail!("only a monitor op can be given for a fencing device, not '{other}'"),
            _ => {
                let Some((k, v)) = o.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                    bail!("'{o}' is not NAME=VALUE (write meta attributes after the word meta, the monitor's after op monitor)");
                };
                let into = match part {
                    Part::Params => &mut params,
                    Part::Meta => &mut meta,
                    _ => &mut monitor,
                };
                if into.insert(k.to_string(), v.to_string()).is_some() {
                    bail!("{k} is given twice");
                }
            }
        }
    }
    let interval = monitor.remove("interval").unwrap_or_else(|| "60s".to_string());
    if scheduler::interval_ms(&interval).is_none_or(|ms| ms == 0) {
        bail!("op monitor interval={interval} is not a time such as 60s (and not 0)");
    }
    // Read the options as the fencer will: a bad pcmk_ option is refused now, not at fencing time.
    Device::new(id, &spec.to_string(), &params, &meta).map_err(|e| anyhow!("{e}"))?;
    let env = crate::agent_cmds::exec_env(dir)?;
    env.dirs.locate(&spec).map_err(|e| anyhow!("{e} (see `halo agent list stonith`)"))?;
    let req = OpRequest { rsc: id.into(), agent: spec.clone(), action: "metadata".into(), params: BTreeMap::new(), meta: BTreeMap::new(), interval_ms: 0, timeout_ms: 20_000 };
    let r = run_op(&env, &req, None).await;
    let info = (r.rc == 0).then(|| AgentInfo::from_metadata(&r.stdout)).flatten().ok_or_else(|| anyhow!("{spec} gives no usable meta-data (rc {}); is it a fence agent?", r.rc))?;
    if !force {
        let unknown: Vec<&String> = params.keys().filter(|k| !k.starts_with("pcmk_") && *k != "priority" && !info.parameters.contains(k)).collect();
        if let Some(k) = unknown.first() {
            bail!("{spec} has no parameter '{k}' (it has: {}); use --force to set it anyway", info.parameters.join(", "));
        }
    }
    let mut prim = Element::new("primitive");
    prim.set_attr("id", id);
    prim.set_attr("class", "stonith");
    prim.set_attr("type", &spec.kind);
    if !params.is_empty() {
        prim.push(nvset("instance_attributes", id, &params));
    }
    if !meta.is_empty() {
        prim.push(nvset("meta_attributes", id, &meta));
    }
    let mut ops = Element::new("operations");
    let mut mon = Element::new("op");
    mon.set_attr("name", "monitor");
    mon.set_attr("interval", &interval);
    for (k, v) in &monitor {
        mon.set_attr(k, v);
    }
    mon.set_attr("id", &format!("{id}-monitor-interval-{interval}"));
    ops.push(mon);
    prim.push(ops);
    Ok(prim)
}

pub async fn create(dir: Option<&Path>, id: &str, agent: &str, options: &[String], force: bool) -> Result<i32> {
    let prim = device_element(dir, id, agent, options, force).await?;
    let req = pb::WriteRequest { op: Some(WireOp::Create(pb::Create { section: "resources".into(), xml: prim.to_xml() })) };
    crate::cib_live::send_write(dir, "create in", req).await.map_err(from_fail)?;
    Ok(0)
}

pub async fn delete(dir: Option<&Path>, id: &str) -> Result<i32> {
    if !cib::schema::is_ncname(id) {
        bail!("'{id}' is not a valid id");
    }
    let found = crate::cib_live::query_xpath(dir, &format!("//primitive[@id='{id}']")).await.map_err(from_fail)?;
    let Some(p) = found.first() else {
        bail!("there is no fencing device '{id}' in the CIB (see `halo stonith devices`)");
    };
    if p.attr("class") != Some("stonith") {
        bail!("'{id}' is not a fencing device (class {}); remove it with `halo cib delete`", p.attr("class").unwrap_or("?"));
    }
    let req = pb::WriteRequest { op: Some(WireOp::Delete(pb::Delete { xml: format!("<primitive id=\"{id}\"/>") })) };
    crate::cib_live::send_write(dir, "delete from", req).await.map_err(from_fail)?;
    Ok(0)
}
