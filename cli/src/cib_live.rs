//! `halo cib ...` against the running cluster: the node's halo-cibd over its Unix socket.
//! A write goes to whichever node `--dir` names; that node forwards it to the raft leader
//! and answers once a majority has committed it. Output and exit codes are cibadmin's.

use std::io::Write as _;
use std::path::Path;

use cib::cibadmin::{EX_ERROR, EX_NOSUCH, EX_UNAVAILABLE, EX_USAGE};
use common::paths::{Daemon, NodePaths};
use proto::cib as pb;
use proto::cib::cib_client::CibClient;
use proto::cib::write_request::Op as WireOp;
use tonic::transport::Channel;

use crate::cib_cmds::{fail, pretty_patch, read_xml, CibCmd, Fail};
use crate::cluster::config_path;

pub fn run(cmd: CibCmd, dir: Option<&Path>) -> Result<i32, Fail> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| fail(EX_ERROR, format!("cannot start: {e}")))?;
    rt.block_on(run_async(cmd, dir))
}

async fn connect(dir: Option<&Path>) -> Result<CibClient<Channel>, Fail> {
    let cfg = config_path(dir);
    let parsed = common::config::ClusterConfig::load(&cfg).map_err(|e| fail(EX_USAGE, format!("{e}; or act on a CIB file with --file F")))?;
    let sock = NodePaths::from_config(&parsed.config).socket(Daemon::Cibd);
    let ch = proto::connect_unix(sock.clone()).await.map_err(|e| {
        fail(EX_UNAVAILABLE, format!("cannot reach halo-cibd at {} ({e}); is the node running (`halo sandbox start`)? or act on a CIB file with --file F", sock.display()))
    })?;
    Ok(CibClient::new(ch).max_decoding_message_size(256 << 20).max_encoding_message_size(64 << 20))
}

fn rpc_fail(e: tonic::Status) -> Fail {
    let code = match e.code() {
        tonic::Code::PermissionDenied => cib::cibadmin::EX_INSUFFICIENT_PRIV,
        tonic::Code::Unavailable => EX_UNAVAILABLE,
        _ => EX_ERROR,
    };
    fail(code, format!("halo-cibd: {}", e.message()))
}

async fn run_async(cmd: CibCmd, dir: Option<&Path>) -> Result<i32, Fail> {
    // Read the inputs before connecting, so a bad file is reported as such.
    let write = |op: WireOp| pb::WriteRequest { op: Some(op) };
    let (what, req) = match cmd {
        CibCmd::Query { section, xpath, .. } => return query(dir, section.unwrap_or_default(), xpath.unwrap_or_default()).await,
        CibCmd::Watch { configuration } => return watch(dir, configuration).await,
        CibCmd::Status => return status(dir).await,
        CibCmd::Voters { set } => return voters(dir, set).await,
        CibCmd::Diff { .. } => unreachable!("diff acts on files"),
        CibCmd::Replace { section, new, .. } => {
            let xml = read_xml(&new, "NEWFILE")?.to_xml();
            ("replace in", write(WireOp::Replace(pb::Replace { section: section.unwrap_or_default(), xml })))
        }
        CibCmd::Modify { input, .. } => ("modify", write(WireOp::Modify(pb::Modify { xml: input.element()?.to_xml() }))),
        CibCmd::Create { section, input, .. } => ("create in", write(WireOp::Create(pb::Create { section, xml: input.element()?.to_xml() }))),
        CibCmd::Delete { input, .. } => ("delete from", write(WireOp::Delete(pb::Delete { xml: input.element()?.to_xml() }))),
        CibCmd::Patch { patch, .. } => ("patch", write(WireOp::Patch(pb::Patch { xml: read_xml(&patch, "PATCHFILE")?.to_xml() }))),
    };
    send_write(dir, what, req).await.map(|_| 0)
}

/// One write to the running cluster's CIB through the node `dir` names.
pub(crate) async fn send_write(dir: Option<&Path>, what: &str, req: pb::WriteRequest) -> Result<(), Fail> {
    let mut c = connect(dir).await?;
    let r = c.write(req).await.map_err(rpc_fail)?.into_inner();
    match r.error {
        Some(e) => Err(fail(e.exit_code, format!("cannot {what} the CIB: {}", e.message))),
        None => Ok(()),
    }
}

/// The elements an xpath selects in the running cluster's CIB (empty when none).
pub(crate) async fn query_xpath(dir: Option<&Path>, xpath: &str) -> Result<Vec<cib::xml::Element>, Fail> {
    let mut c = connect(dir).await?;
    let r = c.query(pb::QueryRequest { section: String::new(), xpath: xpath.to_string() }).await.map_err(rpc_fail)?.into_inner();
    if let Some(e) = r.error {
        return if e.exit_code == EX_NOSUCH { Ok(Vec::new()) } else { Err(fail(e.exit_code, format!("query of the CIB: {}", e.message))) };
    }
    let root = cib::xml::parse(&r.xml).map_err(|e| fail(EX_ERROR, format!("the CIB's answer does not parse: {e}")))?.root;
    Ok(if root.name == "xpath-query" { root.elements().cloned().collect() } else { vec![root] })
}

async fn query(dir: Option<&Path>, section: String, xpath: String) -> Result<i32, Fail> {
    let mut c = connect(dir).await?;
    let has_xpath = !xpath.is_empty();
    let r = c.query(pb::QueryRequest { section, xpath }).await.map_err(rpc_fail)?.into_inner();
    if let Some(e) = r.error {
        let hint = if e.exit_code == EX_NOSUCH && has_xpath { "; check the path, e.g. `halo cib query --xpath \"//*[@id='ID']\"`" } else { "" };
        return Err(fail(e.exit_code, format!("query of the CIB: {}{hint}", e.message)));
    }
    std::io::stdout().write_all(r.xml.as_bytes()).map_err(|e| fail(EX_ERROR, format!("cannot write the query result: {e}")))?;
    Ok(0)
}

async fn watch(dir: Option<&Path>, configuration_only: bool) -> Result<i32, Fail> {
    let mut c = connect(dir).await?;
    let mut s = c.watch(pb::WatchRequest { configuration_only }).await.map_err(rpc_fail)?.into_inner();
    loop {
        match s.message().await {
            Ok(Some(ev)) => {
                let mut out = format!("<!-- index {} version {} -->\n", ev.index, ev.version);
                match cib::xml::parse(&ev.patch) {
                    Ok(d) => pretty_patch(&d.root, 0, &mut out),
                    Err(_) => out.push_str(&ev.patch),
                }
                out.push('\n');
                let mut o = std::io::stdout().lock();
                o.write_all(out.as_bytes()).and_then(|_| o.flush()).map_err(|e| fail(EX_ERROR, format!("cannot write: {e}")))?;
            }
            Ok(None) => return Err(fail(EX_UNAVAILABLE, "halo-cibd ended the watch (node stopping?)")),
            Err(e) => return Err(rpc_fail(e)),
        }
    }
}

async fn status(dir: Option<&Path>) -> Result<i32, Fail> {
    let mut c = connect(dir).await?;
    let s = c.status(pb::StatusRequest {}).await.map_err(rpc_fail)?.into_inner();
    let ids = |v: &[u64]| if v.is_empty() { "-".to_string() } else { v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ") };
    println!("node:      {}", s.node_id);
    println!("leader:    {}", if s.leader == 0 { "none".to_string() } else { s.leader.to_string() });
    println!("term:      {}", s.term);
    println!("voters:    {}", ids(&s.voters));
    println!("learners:  {}", ids(&s.learners));
    println!("commit:    {}", s.commit_index);
    println!("applied:   {}", s.applied_index);
    println!("version:   {}", s.version);
    println!("quorate:   {}", if s.quorate { "yes" } else { "no" });
    Ok(0)
}

async fn voters(dir: Option<&Path>, set: Vec<u64>) -> Result<i32, Fail> {
    let mut c = connect(dir).await?;
    let r = c
        .change_voters(pb::ChangeVotersRequest { voters: set })
        .await
        .map_err(|e| fail(EX_ERROR, format!("cannot change the CIB's voters: {}", e.message())))?
        .into_inner();
    println!("voters: {}", r.voters.iter().map(u64::to_string).collect::<Vec<_>>().join(" "));
    Ok(0)
}
