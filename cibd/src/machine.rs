//! The CIB as a replicated state machine: the document every node derives from the same
//! committed log. Pure and deterministic — the same entries applied to the same start give
//! the same document on every node, including the same refusals.
//!
//! A log entry is a [`proto::cib::LogEntry`]: the write (`WriteRequest`, its XML as text)
//! and the node, incarnation and request number of the client waiting for it. A write that
//! the leader accepted can still be refused here (another write committed before it changed
//! the CIB); then it is a no-op on every node and its origin answers the client with the
//! refusal.

use cib::acl::{acl_for, Requester};
use cib::cibadmin;
use cib::ops::{self, Op, Version};
use cib::xml::{self, Document, Element};
use cib::CibError;
use proto::cib as pb;
use proto::cib::cib_error::Kind;
use proto::cib::write_request::Op as WireOp;

/// `crm_feature_set` of the CIBs halo creates (Pacemaker 2.1.5's).
use cib::FEATURE_SET;

/// The document a new cluster starts from: what `cibadmin --empty` writes, with the
/// nodes of the cluster configuration (`(nodeid, name)`). Every node computes the same one.
pub fn genesis(nodes: &[(u32, String)]) -> Document {
    let mut root = Element::new("cib");
    root.set_attr("crm_feature_set", FEATURE_SET);
    root.set_attr("validate-with", "pacemaker-3.9");
    root.set_attr("epoch", "1");
    root.set_attr("num_updates", "0");
    root.set_attr("admin_epoch", "0");
    let mut conf = Element::new("configuration");
    conf.push(Element::new("crm_config"));
    let mut list = Element::new("nodes");
    for (id, name) in nodes {
        let mut n = Element::new("node");
        n.set_attr("id", &id.to_string());
        n.set_attr("uname", name);
        list.push(n);
    }
    conf.push(list);
    conf.push(Element::new("resources"));
    conf.push(Element::new("constraints"));
    root.push(conf);
    root.push(Element::new("status"));
    // Through text, so the stored document is exactly what a reader of its XML would see.
    xml::parse(&Document { prolog: Vec::new(), root, epilog: Vec::new() }.to_xml()).expect("the genesis CIB is well-formed")
}

/// The requester of a log entry (None: privileged).
pub fn requester_of(e: &pb::LogEntry) -> Option<Requester> {
    (!e.user.is_empty()).then(|| Requester { user: e.user.clone(), groups: e.groups.clone() })
}

/// A refusal as the wire carries it.
pub fn refusal(kind: Kind, exit_code: i32, message: impl Into<String>) -> pb::CibError {
    pb::CibError { kind: kind as i32, message: message.into(), exit_code }
}

/// A CIB error as the wire carries it, with cibadmin's exit code.
pub fn cib_refusal(e: &CibError) -> pb::CibError {
    let kind = match e {
        CibError::NotFound { .. } => Kind::NotFound,
        CibError::AlreadyExists { .. } => Kind::Exists,
        CibError::StaleUpdate { .. } | CibError::PatchVersionMismatch { .. } => Kind::Stale,
        CibError::PermissionDenied { .. } => Kind::PermissionDenied,
        _ => Kind::Invalid,
    };
    refusal(kind, cibadmin::exit_code(e), e.to_string())
}

/// Read a write off the wire: its XML must be well-formed; the operation must be given.
pub fn decode_write(w: &pb::WriteRequest) -> Result<Op, CibError> {
    let parse = |s: &str, what: &str| {
        xml::parse(s).map(|d| d.root).map_err(|e| match e {
            CibError::Xml { line, message } => CibError::Xml { line, message: format!("{message} (in the {what})") },
            other => other,
        })
    };
    let section = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match w.op.as_ref() {
        None => Err(CibError::BadRequest("the write names no operation".into())),
        Some(WireOp::Replace(r)) => Ok(Op::Replace { section: section(&r.section), xml: parse(&r.xml, "replacement")? }),
        Some(WireOp::Modify(m)) => Ok(Op::Modify { xml: parse(&m.xml, "object")? }),
        Some(WireOp::Create(c)) => {
            if c.section.is_empty() {
                return Err(CibError::BadRequest("create needs a section (e.g. resources)".into()));
            }
            Ok(Op::Create { section: c.section.clone(), xml: parse(&c.xml, "object")? })
        }
        Some(WireOp::Delete(d)) => Ok(Op::Delete { xml: parse(&d.xml, "object")? }),
        Some(WireOp::Patch(p)) => Ok(Op::Patch { diff: parse(&p.xml, "patch")? }),
    }
}

/// Entries and snapshots above this size are stored and sent compressed (deflate).
const COMPRESS_ABOVE: usize = 16 * 1024;
/// Most bytes a compressed entry or snapshot may expand to (a corrupt or hostile one is refused).
const MAX_EXPANDED: u64 = 512 << 20;
const PLAIN: u8 = 0;
const DEFLATE: u8 = 1;

fn deflate(tag: u8, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::DeflateEncoder::new(vec![tag], flate2::Compression::fast());
    e.write_all(bytes).expect("writing to memory");
    e.finish().expect("writing to memory")
}

fn inflate(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes).take(MAX_EXPANDED + 1).read_to_end(&mut out).map_err(|e| format!("corrupt compressed data: {e}"))?;
    if out.len() as u64 > MAX_EXPANDED {
        return Err(format!("expands beyond {MAX_EXPANDED} bytes"));
    }
    Ok(out)
}

/// A log entry's bytes: a tag (plain or deflate) and the protobuf of the entry.
pub fn encode_entry(entry: &pb::LogEntry) -> Vec<u8> {
    use prost::Message as _;
    let raw = entry.encode_to_vec();
    if raw.len() > COMPRESS_ABOVE {
        deflate(DEFLATE, &raw)
    } else {
        let mut v = Vec::with_capacity(raw.len() + 1);
        v.push(PLAIN);
        v.extend_from_slice(&raw);
        v
    }
}

pub fn decode_entry(bytes: &[u8]) -> Result<pb::LogEntry, String> {
    use prost::Message as _;
    let raw = match bytes.split_first() {
        Some((&PLAIN, rest)) => std::borrow::Cow::Borrowed(rest),
        Some((&DEFLATE, rest)) => std::borrow::Cow::Owned(inflate(rest)?),
        Some((t, _)) => return Err(format!("unknown entry encoding {t}")),
        None => return Err("empty entry".into()),
    };
    pb::LogEntry::decode(&raw[..]).map_err(|e| e.to_string())
}

/// Record who changed the configuration and when on the CIB's root (an empty part of the
/// stamp is left out).
fn stamp_root(root: &mut Element, stamp: &pb::WriterStamp) {
    for (key, value) in [("cib-last-written", &stamp.time), ("update-user", &stamp.user), ("update-client", &stamp.client), ("update-origin", &stamp.node)] {
        if value.is_empty() {
            root.remove_attr(key);
        } else {
            root.set_attr(key, value);
        }
    }
}

/// The stamp of a write made now by `user` with program `client` on node `node`:
/// the time as Pacemaker writes cib-last-written (ctime-style, local time).
pub fn stamp_now(user: &str, client: &str, node: &str) -> pb::WriterStamp {
    pb::WriterStamp { time: chrono::Local::now().format("%a %b %e %H:%M:%S %Y").to_string(), user: user.into(), client: client.into(), node: node.into() }
}

/// What one applied write did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub version: Version,
    pub changed: bool,
}

/// The replicated document and the last log index applied to it.
pub struct CibMachine {
    doc: Document,
    index: u64,
    /// Counts changes of `doc`; a `check` result is valid while it stands still.
    generation: u64,
    /// The last `check`: the generation it saw, the operation and requester, and its
    /// validated result, reused when that operation is applied next (the leader's common
    /// case), so a write is validated once, not twice.
    checked: Option<(u64, Op, Option<Requester>, Result<Document, CibError>)>,
}

impl CibMachine {
    pub fn new(doc: Document, index: u64) -> CibMachine {
        CibMachine { doc, index, generation: 0, checked: None }
    }

    /// A state machine from a snapshot's data (the CIB's XML, compressed when large).
    pub fn from_snapshot(data: &[u8], index: u64) -> Result<CibMachine, CibError> {
        let bad = |why: String| CibError::BadRequest(format!("snapshot: {why}"));
        let xml_bytes = match data.split_first() {
            Some((&DEFLATE, rest)) => std::borrow::Cow::Owned(inflate(rest).map_err(bad)?),
            _ => std::borrow::Cow::Borrowed(data),
        };
        let text = std::str::from_utf8(&xml_bytes).map_err(|_| bad("not UTF-8".into()))?;
        Ok(CibMachine::new(xml::parse(text)?, index))
    }

    pub fn doc(&self) -> &Document {
        &self.doc
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn version(&self) -> Version {
        Version::of(&self.doc.root)
    }

    /// The snapshot's data: the CIB's XML (which starts with `<`), or a deflate tag and the
    /// compressed XML when large.
    pub fn snapshot(&self) -> Vec<u8> {
        let text = self.doc.to_xml();
        if text.len() > COMPRESS_ABOVE {
            deflate(DEFLATE, text.as_bytes())
        } else {
            text.into_bytes()
        }
    }

    /// `op` by `who` (None: a privileged requester) on the current document: the
    /// validated result, refused if the CIB's ACLs do not let `who` make that change.
    fn outcome(&self, op: &Op, who: Option<&Requester>) -> Result<Document, CibError> {
        let next = ops::apply_to_valid(&self.doc, op)?;
        if let Some(acl) = who.and_then(|w| acl_for(&self.doc, w)) {
            acl.check_write(&self.doc, &next)?;
        }
        Ok(next)
    }

    /// What `op` would do now, without doing it (the leader's check before proposing).
    pub fn check(&mut self, op: &Op, who: Option<&Requester>) -> Result<(), CibError> {
        let r = self.outcome(op, who);
        let out = r.as_ref().map(|_| ()).map_err(Clone::clone);
        self.checked = Some((self.generation, op.clone(), who.cloned(), r));
        out
    }

    /// `op` applied to the current document: the checked result if it is still valid.
    fn result_of(&mut self, op: &Op, who: Option<&Requester>) -> Result<Document, CibError> {
        match self.checked.take() {
            Some((generation, checked, by, r)) if generation == self.generation && checked == *op && by.as_ref() == who => r,
            _ => self.outcome(op, who),
        }
    }

    /// What `who` may read of the CIB: all of it (None), a filtered copy, or nothing.
    pub fn readable(&self, who: Option<&Requester>) -> Result<Option<Document>, CibError> {
        match who.and_then(|w| acl_for(&self.doc, w)) {
            None => Ok(None),
            Some(acl) => acl.filter(&self.doc).map(Some).ok_or_else(|| acl.read_denied()),
        }
    }

    /// Apply the committed entry at `index`: the write's outcome, and the patch from the
    /// old document when it changed something and `want_patch`. A write that changes the
    /// configuration records its `stamp` on the root, as Pacemaker's CIB does; status-only
    /// writes leave the last change alone.
    pub fn apply(&mut self, index: u64, op: &Op, who: Option<&Requester>, stamp: Option<&pb::WriterStamp>, want_patch: bool) -> (Result<Applied, CibError>, Option<Element>) {
        self.index = index;
        match self.result_of(op, who) {
            Err(e) => (Err(e), None),
            Ok(mut next) => {
                if let Some(stamp) = stamp {
                    let (old, new) = (Version::of(&self.doc.root), Version::of(&next.root));
                    if (old.admin_epoch, old.epoch) != (new.admin_epoch, new.epoch) {
                        stamp_root(&mut next.root, stamp);
                    }
                }
                // A change always moves the version (ops::bump); only when it did not is the
                // whole document compared.
                let changed = Version::of(&self.doc.root) != Version::of(&next.root) || !ops::same(&self.doc.root, &next.root);
                let patch = (changed && want_patch).then(|| cib::diff::diff(&self.doc, &next));
                if changed {
                    self.doc = next;
                    self.generation += 1;
                }
                (Ok(Applied { version: self.version(), changed }), patch)
            }
        }
    }

    /// Skip an entry that carries no write (raft's empty entries, an undecodable one).
    pub fn skip(&mut self, index: u64) {
        self.index = index;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(xml: &str) -> Op {
        Op::Create { section: "resources".into(), xml: xml::parse(xml).unwrap().root }
    }

    #[test]
    fn genesis_is_valid_and_deterministic() {
        let nodes = vec![(1, "node1".to_string()), (2, "node2".to_string())];
        let a = genesis(&nodes);
        assert_eq!(a.to_xml(), genesis(&nodes).to_xml());
        cib::Cib::from_document(a.clone()).expect("genesis validates");
        assert_eq!(Version::of(&a.root), Version { admin_epoch: 0, epoch: 1, num_updates: 0 });
        assert!(a.to_xml().contains(r#"<node id="2" uname="node2"/>"#));
    }

    #[test]
    fn refused_write_changes_nothing_and_same_entries_same_result() {
        let mut m1 = CibMachine::new(genesis(&[(1, "n1".into())]), 0);
        let mut m2 = CibMachine::new(genesis(&[(1, "n1".into())]), 0);
        let ok = create(r#"<primitive id="d" class="ocf" provider="heartbeat" type="Dummy"/>"#);
        let dup = ok.clone();
        for m in [&mut m1, &mut m2] {
            let (r, patch) = m.apply(1, &ok, None, None, true);
            assert!(r.unwrap().changed);
            assert!(patch.is_some());
            let before = m.doc().to_xml();
            let (r, patch) = m.apply(2, &dup, None, None, true);
            assert!(matches!(r, Err(CibError::AlreadyExists { .. })));
            assert!(patch.is_none());
            assert_eq!(m.doc().to_xml(), before);
            assert_eq!(m.index(), 2);
        }
        assert_eq!(m1.doc().to_xml(), m2.doc().to_xml());
        let snap = CibMachine::from_snapshot(&m1.snapshot(), 2).unwrap();
        assert_eq!(snap.doc().to_xml(), m1.doc().to_xml());
    }

    #[test]
    fn configuration_changes_record_their_writer_and_status_changes_do_not() {
        let mut m = CibMachine::new(genesis(&[(1, "n1".into())]), 0);
        let stamp = |t: &str| pb::WriterStamp { time: t.into(), user: "root".into(), client: "cibadmin".into(), node: "n1".into() };
        let (r, patch) = m.apply(1, &create(r#"<primitive id="d" class="ocf" provider="heartbeat" type="Dummy"/>"#), None, Some(&stamp("Thu Dec  3 21:14:09 2026")), true);
        assert!(r.unwrap().changed);
        let root = &m.doc().root;
        assert_eq!(root.attr("cib-last-written"), Some("Thu Dec  3 21:14:09 2026"));
        assert_eq!((root.attr("update-user"), root.attr("update-client"), root.attr("update-origin")), (Some("root"), Some("cibadmin"), Some("n1")));
        // The patch carries the stamp, so followers of the patches see it too.
        let mut follower = genesis(&[(1, "n1".into())]);
        follower = cib::diff::apply_patch(&follower, &patch.unwrap()).unwrap();
        assert_eq!(follower.to_xml(), m.doc().to_xml());
        // A status-only write keeps the last configuration change.
        let status = Op::Modify { xml: xml::parse(r#"<status><node_state id="1" uname="n1" in_ccm="true"/></status>"#).unwrap().root };
        assert!(m.apply(2, &status, None, Some(&stamp("Thu Dec  3 22:00:00 2026")), false).0.unwrap().changed);
        assert_eq!(m.doc().root.attr("cib-last-written"), Some("Thu Dec  3 21:14:09 2026"));
        cib::Cib::from_document(m.doc().clone()).expect("a stamped CIB validates");
    }

    #[test]
    fn entries_and_snapshots_round_trip_plain_and_compressed() {
        for n in [1, 5000] {
            let body: String = (0..n).map(|i| primitive_xml(i)).collect();
            let w = pb::WriteRequest { op: Some(WireOp::Modify(pb::Modify { xml: format!("<resources>{body}</resources>") })) };
            let e = pb::LogEntry { origin: 2, incarnation: 7, request: 9, write: Some(w), ..Default::default() };
            let bytes = encode_entry(&e);
            assert_eq!(bytes[0], if n == 1 { PLAIN } else { DEFLATE });
            assert_eq!(decode_entry(&bytes).unwrap(), e);
            let mut m = CibMachine::new(genesis(&[(1, "n1".into())]), 0);
            let op = decode_write(e.write.as_ref().unwrap()).unwrap();
            assert!(m.apply(1, &op, None, None, false).0.unwrap().changed);
            let snap = m.snapshot();
            assert_eq!(CibMachine::from_snapshot(&snap, 1).unwrap().doc().to_xml(), m.doc().to_xml());
        }
        // Corrupt or unknown encodings are errors, never panics.
        assert!(decode_entry(&[]).is_err());
        assert!(decode_entry(&[7, 1, 2]).is_err());
        assert!(decode_entry(&[DEFLATE, 0xff, 0x00, 0x13]).is_err());
        assert!(CibMachine::from_snapshot(&[DEFLATE, 0xde, 0xad], 1).is_err());
    }

    fn primitive_xml(i: usize) -> String {
        format!(r#"<primitive id="r{i}" class="ocf" provider="heartbeat" type="Dummy"/>"#)
    }

    #[test]
    fn decode_refuses_malformed() {
        let w = pb::WriteRequest { op: Some(WireOp::Modify(pb::Modify { xml: "<primitive id=".into() })) };
        let e = decode_write(&w).unwrap_err();
        assert!(e.to_string().contains("malformed XML"), "{e}");
        assert_eq!(cib_refusal(&e).exit_code, cibadmin::EX_CONFIG);
        assert!(decode_write(&pb::WriteRequest { op: None }).is_err());
    }
}
