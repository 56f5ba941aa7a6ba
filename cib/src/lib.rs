//! The CIB model: the XML document as read (written back unchanged), and typed
//! views of its configuration and status for the scheduler and the daemons.

pub mod acl;
pub mod cibadmin;
pub mod diff;
pub mod error;
pub mod model;
pub mod ops;
pub mod schema;
pub mod status;
pub mod xml;

use std::collections::BTreeSet;

pub use error::CibError;
pub use model::*;
pub use status::*;
pub use xml::{Children, Document, Element, Node};

/// The Pacemaker feature set halo speaks (`crm_feature_set` of the CIB and of records).
pub const FEATURE_SET: &str = "3.16.1";

/// A parsed, validated CIB.
#[derive(Debug, Clone)]
pub struct Cib {
    pub doc: Document,
    pub config: Configuration,
    pub status: Status,
}

/// Elements whose `id` attribute names another object instead of defining one.
const REFERENCE_ELEMENTS: &[&str] = &["resource_ref", "obj_ref", "role"];

impl Cib {
    pub fn parse(src: &str) -> Result<Cib, CibError> {
        let doc = xml::parse(src)?;
        Cib::from_document(doc)
    }

    pub fn from_document(doc: Document) -> Result<Cib, CibError> {
        let root = &doc.root;
        if root.name != "cib" {
            return Err(CibError::NotACib { found: root.name.clone(), line: root.line });
        }
        if let Some(v) = root.attr("validate-with") {
            check_schema(v)?;
        }
        let conf = root.child("configuration").ok_or(CibError::MissingAttribute {
            element: "cib".into(),
            line: root.line,
            attribute: "configuration (child element)",
        })?;
        check_unique_ids(conf)?;
        check_shapes(conf)?;
        let ix = model::RefIndex::new(root);
        let config = model::read_configuration(&ix, conf)?;
        check_references(conf, &config)?;
        let status = match root.child("status") {
            Some(s) => status::read_status(&ix, s)?,
            None => Status::default(),
        };
        Ok(Cib { doc, config, status })
    }

    pub fn to_xml(&self) -> String {
        self.doc.to_xml()
    }

    /// An attribute of the `<cib>` element (epoch, have-quorum, dc-uuid, execution-date...).
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.doc.root.attr(key)
    }
}

fn check_schema(v: &str) -> Result<(), CibError> {
    if v == "none" || v.starts_with("transitional-") {
        return Ok(());
    }
    let Some(ver) = v.strip_prefix("pacemaker-") else {
        return Err(CibError::UnsupportedSchema(v.to_string()));
    };
    if ver == "next" {
        return Ok(());
    }
    let mut parts = ver.splitn(2, '.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| CibError::UnsupportedSchema(v.to_string()))?;
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| CibError::UnsupportedSchema(v.to_string()))?;
    if (1..=3).contains(&major) && !(major == 3 && minor > 9) {
        Ok(())
    } else {
        Err(CibError::UnsupportedSchema(v.to_string()))
    }
}

fn check_unique_ids(conf: &Element) -> Result<(), CibError> {
    let mut seen: rustc_hash::FxHashMap<&str, u32> = rustc_hash::FxHashMap::default();
    for e in conf.iter_descendants() {
        // Node ids live in their own namespace (a remote node shares its resource's id).
        if e.attr("id-ref").is_some() || REFERENCE_ELEMENTS.contains(&e.name.as_str()) || e.name == "node" {
            continue;
        }
        if let Some(id) = e.attr("id") {
            if let Some(first) = seen.insert(id, e.line) {
                return Err(CibError::DuplicateId { id: id.to_string(), element: e.name.clone(), line: e.line, first_line: first });
            }
        }
    }
    Ok(())
}

/// Constraints must name resources, templates or tags that exist.
/// Shapes the schema requires that the typed views would otherwise accept (cibadmin refuses them).
fn check_shapes(conf: &Element) -> Result<(), CibError> {
    for e in conf.iter_descendants() {
        if e.name == "group" && e.attr("id-ref").is_none() && e.children_named("primitive").next().is_none() {
            return Err(CibError::InvalidValue {
                element: "group".into(),
                id: e.attr("id").unwrap_or("").to_string(),
                line: e.line,
                attribute: "members".into(),
                value: "none".into(),
                hint: "a group needs at least one primitive; delete the group instead".into(),
            });
        }
    }
    Ok(())
}

fn check_references(conf: &Element, config: &Configuration) -> Result<(), CibError> {
    let mut known: BTreeSet<&str> = BTreeSet::new();
    fn walk<'a>(r: &'a Resource, known: &mut BTreeSet<&'a str>) {
        known.insert(r.id());
        match r {
            Resource::Group(g) => g.members.iter().for_each(|m| {
                known.insert(&m.id);
            }),
            Resource::Clone(c) => walk(&c.child, known),
            Resource::Bundle(b) => {
                if let Some(p) = &b.primitive {
                    known.insert(&p.id);
                }
            }
            Resource::Primitive(_) => {}
        }
    }
    config.resources.iter().for_each(|r| walk(r, &mut known));
    known.extend(config.tags.keys().map(String::as_str));
    if let Some(res) = conf.child("resources") {
        known.extend(res.children_named("template").filter_map(|t| t.attr("id")));
    }
    let Some(cons) = conf.child("constraints") else { return Ok(()) };
    for c in cons.elements() {
        let id = c.attr("id").unwrap_or("").to_string();
        for key in ["rsc", "with-rsc", "first", "then"] {
            if let Some(target) = c.attr(key) {
                if !known.contains(target) {
                    return Err(CibError::DanglingReference { element: c.name.clone(), id, line: c.line, what: "resource", target: target.into() });
                }
            }
        }
        for set in c.children_named("resource_set") {
            for r in set.children_named("resource_ref") {
                if let Some(target) = r.attr("id") {
                    if !known.contains(target) {
                        return Err(CibError::DanglingReference { element: c.name.clone(), id, line: r.line, what: "resource", target: target.into() });
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config/>
    <nodes><node id="1" uname="n1"/></nodes>
    <resources>
      <primitive id="r1" class="ocf" provider="heartbeat" type="Dummy">
        <operations><op id="r1-mon" name="monitor" interval="10s"/></operations>
      </primitive>
      <group id="g"><primitive id="g1" class="ocf" provider="pacemaker" type="Dummy"/></group>
    </resources>
    <constraints><rsc_location id="l1" rsc="r1" node="n1" score="100"/></constraints>
  </configuration>
  <status/>
</cib>"#;

    #[test]
    fn reads_typed_views() {
        let cib = Cib::parse(SMALL).unwrap();
        assert_eq!(cib.config.nodes[0].uname, "n1");
        assert_eq!(cib.config.resources.len(), 2);
        assert_eq!(cib.config.resources[1].primitives()[0].agent_spec(), "ocf:pacemaker:Dummy");
        assert_eq!(cib.config.constraints.locations[0].score.as_deref(), Some("100"));
    }

    #[test]
    fn duplicate_id_names_both_lines() {
        let bad = SMALL.replace("id=\"g1\"", "id=\"r1\"");
        let err = Cib::parse(&bad).unwrap_err();
        assert!(matches!(err, CibError::DuplicateId { ref id, line: 9, first_line: 6, .. } if id == "r1"), "{err}");
    }

    #[test]
    fn dangling_constraint_is_refused() {
        let bad = SMALL.replace("rsc=\"r1\" node", "rsc=\"nope\" node");
        let err = Cib::parse(&bad).unwrap_err();
        assert!(err.to_string().contains("'nope'") && err.to_string().contains("l1"), "{err}");
    }

    #[test]
    fn empty_group_is_refused() {
        let bad = SMALL.replace(r#"<group id="g"><primitive id="g1" class="ocf" provider="pacemaker" type="Dummy"/></group>"#, r#"<group id="g"/>"#);
        let err = Cib::parse(&bad).unwrap_err();
        assert!(err.to_string().contains("at least one primitive"), "{err}");
    }

    #[test]
    fn unsupported_schema() {
        assert!(Cib::parse(&SMALL.replace("pacemaker-3.9", "pacemaker-4.0")).is_err());
        assert!(Cib::parse(&SMALL.replace("pacemaker-3.9", "pacemaker-1.0")).is_ok());
    }
}
