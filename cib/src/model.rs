//! Typed views of the configuration: plain owned structs read from the XML tree.
//! `id-ref`s and resource templates are resolved here, so consumers never see them.
//! Values are kept as the strings the CIB holds; interpretation (scores, rules,
//! intervals) belongs to the scheduler, which evaluates them against nodes and time.

use std::collections::BTreeMap;

use crate::error::CibError;
use crate::xml::Element;

/// A set of name/value pairs (`instance_attributes`, `meta_attributes`,
/// `utilization`, `cluster_property_set`), possibly guarded by a rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NvSet {
    pub id: String,
    pub score: Option<String>,
    pub rule: Option<Rule>,
    pub pairs: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    pub id: String,
    pub score: Option<String>,
    pub score_attribute: Option<String>,
    pub boolean_op: Option<String>,
    pub role: Option<String>,
    pub exprs: Vec<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Attr { attribute: String, operation: String, value: Option<String>, value_type: Option<String>, value_source: Option<String> },
    Date { operation: String, start: Option<String>, end: Option<String>, date_spec: Option<Vec<(String, String)>>, duration: Option<Vec<(String, String)>> },
    Rsc { class: Option<String>, provider: Option<String>, rsc_type: Option<String> },
    Op { name: String, interval: Option<String> },
    Rule(Rule),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Op {
    pub id: String,
    pub name: String,
    pub interval: String,
    pub role: Option<String>,
    /// Attributes of the `<op>` element besides id/name/interval/role (timeout, on-fail, enabled...).
    pub attrs: Vec<(String, String)>,
    pub meta: Vec<NvSet>,
    pub instance: Vec<NvSet>,
}

impl Op {
    pub fn get(&self, key: &str) -> Option<&str> {
        if let Some((_, v)) = self.attrs.iter().find(|(k, _)| k == key) {
            return Some(v);
        }
        self.meta.iter().flat_map(|s| s.pairs.iter()).find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Primitive {
    pub id: String,
    pub class: String,
    pub provider: Option<String>,
    pub agent: String,
    pub template: Option<String>,
    pub instance: Vec<NvSet>,
    pub meta: Vec<NvSet>,
    pub utilization: Vec<NvSet>,
    pub ops: Vec<Op>,
    pub line: u32,
}

impl Primitive {
    /// `class:provider:type` as status displays print it.
    pub fn agent_spec(&self) -> String {
        match &self.provider {
            Some(p) => format!("{}:{}:{}", self.class, p, self.agent),
            None => format!("{}:{}", self.class, self.agent),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub id: String,
    pub meta: Vec<NvSet>,
    pub instance: Vec<NvSet>,
    pub members: Vec<Primitive>,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clone {
    pub id: String,
    /// `<master>` or `promotable=true`.
    pub promotable: bool,
    pub meta: Vec<NvSet>,
    pub instance: Vec<NvSet>,
    pub child: Box<Resource>,
    pub line: u32,
}

/// Bundles are kept as their raw element for now: scheduling them comes later.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub id: String,
    pub meta: Vec<NvSet>,
    pub primitive: Option<Primitive>,
    pub raw: Element,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Primitive(Primitive),
    Group(Group),
    Clone(Clone),
    Bundle(Bundle),
}

impl Resource {
    pub fn id(&self) -> &str {
        match self {
            Resource::Primitive(p) => &p.id,
            Resource::Group(g) => &g.id,
            Resource::Clone(c) => &c.id,
            Resource::Bundle(b) => &b.id,
        }
    }

    pub fn meta(&self) -> &[NvSet] {
        match self {
            Resource::Primitive(p) => &p.meta,
            Resource::Group(g) => &g.meta,
            Resource::Clone(c) => &c.meta,
            Resource::Bundle(b) => &b.meta,
        }
    }

    /// Every primitive below (or at) this resource, in document order.
    pub fn primitives(&self) -> Vec<&Primitive> {
        match self {
            Resource::Primitive(p) => vec![p],
            Resource::Group(g) => g.members.iter().collect(),
            Resource::Clone(c) => c.child.primitives(),
            Resource::Bundle(b) => b.primitive.iter().collect(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSet {
    pub id: String,
    pub sequential: Option<String>,
    pub require_all: Option<String>,
    pub ordering: Option<String>,
    pub action: Option<String>,
    pub role: Option<String>,
    pub score: Option<String>,
    pub kind: Option<String>,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Location {
    pub id: String,
    pub rsc: Option<String>,
    pub rsc_pattern: Option<String>,
    pub role: Option<String>,
    pub node: Option<String>,
    pub score: Option<String>,
    pub resource_discovery: Option<String>,
    pub rules: Vec<Rule>,
    pub sets: Vec<ResourceSet>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Colocation {
    pub id: String,
    pub rsc: Option<String>,
    pub with_rsc: Option<String>,
    pub rsc_role: Option<String>,
    pub with_rsc_role: Option<String>,
    pub score: Option<String>,
    pub node_attribute: Option<String>,
    pub influence: Option<String>,
    pub sets: Vec<ResourceSet>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Order {
    pub id: String,
    pub first: Option<String>,
    pub then: Option<String>,
    pub first_action: Option<String>,
    pub then_action: Option<String>,
    pub kind: Option<String>,
    pub score: Option<String>,
    pub symmetrical: Option<String>,
    pub require_all: Option<String>,
    pub sets: Vec<ResourceSet>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ticket {
    pub id: String,
    pub ticket: String,
    pub rsc: Option<String>,
    pub rsc_role: Option<String>,
    pub loss_policy: Option<String>,
    pub sets: Vec<ResourceSet>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Constraints {
    pub locations: Vec<Location>,
    pub colocations: Vec<Colocation>,
    pub orders: Vec<Order>,
    pub tickets: Vec<Ticket>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeConfig {
    pub id: String,
    pub uname: String,
    pub node_type: Option<String>,
    pub score: Option<String>,
    pub attrs: Vec<NvSet>,
    pub utilization: Vec<NvSet>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FencingLevel {
    pub id: String,
    pub target: Option<String>,
    pub index: String,
    pub devices: String,
}

/// The whole `<configuration>` section, typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Configuration {
    pub crm_config: Vec<NvSet>,
    pub rsc_defaults: Vec<NvSet>,
    pub op_defaults: Vec<NvSet>,
    pub nodes: Vec<NodeConfig>,
    pub resources: Vec<Resource>,
    pub constraints: Constraints,
    pub fencing_levels: Vec<FencingLevel>,
    /// tag id -> referenced object ids.
    pub tags: BTreeMap<String, Vec<String>>,
}

/// Resolves `id-ref` attributes against every id-carrying element of the document.
pub(crate) struct RefIndex<'a> {
    pub by_id: rustc_hash::FxHashMap<&'a str, &'a Element>,
}

impl<'a> RefIndex<'a> {
    pub fn new(root: &'a Element) -> RefIndex<'a> {
        let mut by_id = rustc_hash::FxHashMap::default();
        for e in root.iter_descendants() {
            if let Some(id) = e.attr("id") {
                by_id.entry(id).or_insert(e);
            }
        }
        RefIndex { by_id }
    }

    /// The element itself, or the one its `id-ref` points at.
    fn resolve(&self, e: &'a Element) -> Result<&'a Element, CibError> {
        match e.attr("id-ref") {
            None => Ok(e),
            Some(r) => self.by_id.get(r).copied().ok_or_else(|| CibError::DanglingReference {
                element: e.name.clone(),
                id: e.attr("id").unwrap_or(r).to_string(),
                line: e.line,
                what: "id-ref",
                target: r.to_string(),
            }),
        }
    }
}

fn opt(e: &Element, k: &str) -> Option<String> {
    e.attr(k).map(str::to_string)
}

fn req(e: &Element, k: &'static str) -> Result<String, CibError> {
    e.attr(k).map(str::to_string).ok_or_else(|| CibError::MissingAttribute { element: e.name.clone(), line: e.line, attribute: k })
}

pub(crate) fn read_nvset(ix: &RefIndex, e: &Element) -> Result<NvSet, CibError> {
    let src = ix.resolve(e)?;
    let mut set = NvSet { id: opt(e, "id").or_else(|| opt(src, "id")).unwrap_or_default(), score: opt(src, "score"), ..Default::default() };
    for c in src.elements() {
        match c.name.as_str() {
            "nvpair" => {
                let c = ix.resolve(c)?;
                set.pairs.push((req(c, "name")?, c.attr("value").unwrap_or("").to_string()));
            }
            "rule" => set.rule = Some(read_rule(ix, c)?),
            _ => {}
        }
    }
    Ok(set)
}

fn read_nvsets(ix: &RefIndex, parent: &Element, name: &str) -> Result<Vec<NvSet>, CibError> {
    parent.children_named(name).map(|e| read_nvset(ix, e)).collect()
}

fn pairs_of(e: &Element) -> Vec<(String, String)> {
    e.attrs.iter().filter(|(k, _)| k != "id").cloned().collect()
}

pub(crate) fn read_rule(ix: &RefIndex, e: &Element) -> Result<Rule, CibError> {
    let e = ix.resolve(e)?;
    let mut rule = Rule {
        id: opt(e, "id").unwrap_or_default(),
        score: opt(e, "score"),
        score_attribute: opt(e, "score-attribute"),
        boolean_op: opt(e, "boolean-op"),
        role: opt(e, "role"),
        exprs: Vec::new(),
    };
    for c in e.elements() {
        let c = ix.resolve(c)?;
        let expr = match c.name.as_str() {
            "expression" => Expr::Attr {
                attribute: req(c, "attribute")?,
                operation: req(c, "operation")?,
                value: opt(c, "value"),
                value_type: opt(c, "type"),
                value_source: opt(c, "value-source"),
            },
            "date_expression" => Expr::Date {
                operation: opt(c, "operation").unwrap_or_else(|| "in_range".into()),
                start: opt(c, "start"),
                end: opt(c, "end"),
                date_spec: c.child("date_spec").map(pairs_of),
                duration: c.child("duration").map(pairs_of),
            },
            "rsc_expression" => Expr::Rsc { class: opt(c, "class"), provider: opt(c, "provider"), rsc_type: opt(c, "type") },
            "op_expression" => Expr::Op { name: req(c, "name")?, interval: opt(c, "interval") },
            "rule" => Expr::Rule(read_rule(ix, c)?),
            _ => continue,
        };
        rule.exprs.push(expr);
    }
    Ok(rule)
}

fn read_op(ix: &RefIndex, e: &Element) -> Result<Op, CibError> {
    let e = ix.resolve(e)?;
    Ok(Op {
        id: opt(e, "id").unwrap_or_default(),
        name: req(e, "name")?,
        interval: opt(e, "interval").unwrap_or_else(|| "0".into()),
        role: opt(e, "role"),
        attrs: e.attrs.iter().filter(|(k, _)| !matches!(k.as_str(), "id" | "name" | "interval" | "role")).cloned().collect(),
        meta: read_nvsets(ix, e, "meta_attributes")?,
        instance: read_nvsets(ix, e, "instance_attributes")?,
    })
}

fn read_ops(ix: &RefIndex, e: &Element) -> Result<Vec<Op>, CibError> {
    let mut ops = Vec::new();
    for o in e.children_named("operations") {
        let o = ix.resolve(o)?;
        for op in o.children_named("op") {
            ops.push(read_op(ix, op)?);
        }
    }
    Ok(ops)
}

fn read_primitive(ix: &RefIndex, e: &Element) -> Result<Primitive, CibError> {
    let id = req(e, "id")?;
    let template = opt(e, "template");
    let mut p = Primitive {
        id,
        class: opt(e, "class").unwrap_or_default(),
        provider: opt(e, "provider"),
        agent: opt(e, "type").unwrap_or_default(),
        template: template.clone(),
        instance: read_nvsets(ix, e, "instance_attributes")?,
        meta: read_nvsets(ix, e, "meta_attributes")?,
        utilization: read_nvsets(ix, e, "utilization")?,
        ops: read_ops(ix, e)?,
        line: e.line,
    };
    if let Some(t) = template {
        let te = ix.by_id.get(t.as_str()).copied().filter(|t| t.name == "template").ok_or_else(|| CibError::DanglingReference {
            element: e.name.clone(),
            id: p.id.clone(),
            line: e.line,
            what: "template",
            target: t.clone(),
        })?;
        let tp = read_primitive(ix, &Element { attrs: te.attrs.iter().filter(|(k, _)| k != "template").cloned().collect(), ..te.clone() })?;
        p.class = tp.class;
        p.provider = tp.provider;
        p.agent = tp.agent;
        // The primitive's own sets come first so their values win over the template's.
        p.instance.extend(tp.instance);
        p.meta.extend(tp.meta);
        p.utilization.extend(tp.utilization);
        let own: Vec<(String, String)> = p.ops.iter().map(|o| (o.name.clone(), o.interval.clone())).collect();
        p.ops.extend(tp.ops.into_iter().filter(|o| !own.contains(&(o.name.clone(), o.interval.clone()))));
    }
    if p.class.is_empty() {
        return Err(CibError::MissingAttribute { element: e.name.clone(), line: e.line, attribute: "class" });
    }
    if p.agent.is_empty() {
        return Err(CibError::MissingAttribute { element: e.name.clone(), line: e.line, attribute: "type" });
    }
    Ok(p)
}

fn read_resource(ix: &RefIndex, e: &Element) -> Result<Option<Resource>, CibError> {
    Ok(Some(match e.name.as_str() {
        "primitive" => Resource::Primitive(read_primitive(ix, e)?),
        "group" => Resource::Group(Group {
            id: req(e, "id")?,
            meta: read_nvsets(ix, e, "meta_attributes")?,
            instance: read_nvsets(ix, e, "instance_attributes")?,
            members: e.children_named("primitive").map(|p| read_primitive(ix, p)).collect::<Result<_, _>>()?,
            line: e.line,
        }),
        "clone" | "master" => {
            let meta = read_nvsets(ix, e, "meta_attributes")?;
            let promotable = e.name == "master"
                || meta.iter().flat_map(|s| s.pairs.iter()).any(|(k, v)| k == "promotable" && is_true(v));
            let child = e
                .elements()
                .find_map(|c| read_resource(ix, c).transpose())
                .transpose()?
                .ok_or(CibError::MissingAttribute { element: e.name.clone(), line: e.line, attribute: "child resource" })?;
            Resource::Clone(Clone {
                id: req(e, "id")?,
                promotable,
                meta,
                instance: read_nvsets(ix, e, "instance_attributes")?,
                child: Box::new(child),
                line: e.line,
            })
        }
        "bundle" => Resource::Bundle(Bundle {
            id: req(e, "id")?,
            meta: read_nvsets(ix, e, "meta_attributes")?,
            primitive: e.child("primitive").map(|p| read_primitive(ix, p)).transpose()?,
            raw: e.clone(),
            line: e.line,
        }),
        _ => return Ok(None),
    }))
}

pub fn is_true(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "y" | "1")
}

fn read_sets(ix: &RefIndex, e: &Element) -> Result<Vec<ResourceSet>, CibError> {
    let mut sets = Vec::new();
    for s in e.children_named("resource_set") {
        let s = ix.resolve(s)?;
        sets.push(ResourceSet {
            id: opt(s, "id").unwrap_or_default(),
            sequential: opt(s, "sequential"),
            require_all: opt(s, "require-all"),
            ordering: opt(s, "ordering"),
            action: opt(s, "action"),
            role: opt(s, "role"),
            score: opt(s, "score"),
            kind: opt(s, "kind"),
            resources: s.children_named("resource_ref").map(|r| req(r, "id")).collect::<Result<_, _>>()?,
        });
    }
    Ok(sets)
}

fn read_constraints(ix: &RefIndex, e: &Element) -> Result<Constraints, CibError> {
    let mut c = Constraints::default();
    for x in e.elements() {
        let id = opt(x, "id").unwrap_or_default();
        match x.name.as_str() {
            "rsc_location" => c.locations.push(Location {
                id,
                rsc: opt(x, "rsc"),
                rsc_pattern: opt(x, "rsc-pattern"),
                role: opt(x, "role").or_else(|| opt(x, "rsc-role")),
                node: opt(x, "node"),
                score: opt(x, "score"),
                resource_discovery: opt(x, "resource-discovery"),
                rules: x.children_named("rule").map(|r| read_rule(ix, r)).collect::<Result<_, _>>()?,
                sets: read_sets(ix, x)?,
            }),
            "rsc_colocation" => c.colocations.push(Colocation {
                id,
                rsc: opt(x, "rsc"),
                with_rsc: opt(x, "with-rsc"),
                rsc_role: opt(x, "rsc-role"),
                with_rsc_role: opt(x, "with-rsc-role"),
                score: opt(x, "score"),
                node_attribute: opt(x, "node-attribute"),
                influence: opt(x, "influence"),
                sets: read_sets(ix, x)?,
            }),
            "rsc_order" => c.orders.push(Order {
                id,
                first: opt(x, "first"),
                then: opt(x, "then"),
                first_action: opt(x, "first-action"),
                then_action: opt(x, "then-action"),
                kind: opt(x, "kind"),
                score: opt(x, "score"),
                symmetrical: opt(x, "symmetrical"),
                require_all: opt(x, "require-all"),
                sets: read_sets(ix, x)?,
            }),
            "rsc_ticket" => c.tickets.push(Ticket {
                id,
                ticket: opt(x, "ticket").unwrap_or_default(),
                rsc: opt(x, "rsc"),
                rsc_role: opt(x, "rsc-role"),
                loss_policy: opt(x, "loss-policy"),
                sets: read_sets(ix, x)?,
            }),
            _ => {}
        }
    }
    Ok(c)
}

pub(crate) fn read_configuration(ix: &RefIndex, conf: &Element) -> Result<Configuration, CibError> {
    let mut out = Configuration::default();
    for sec in conf.elements() {
        match sec.name.as_str() {
            "crm_config" => out.crm_config = read_nvsets(ix, sec, "cluster_property_set")?,
            "rsc_defaults" => out.rsc_defaults = read_nvsets(ix, sec, "meta_attributes")?,
            "op_defaults" => out.op_defaults = read_nvsets(ix, sec, "meta_attributes")?,
            "nodes" => {
                for n in sec.children_named("node") {
                    let id = req(n, "id")?;
                    out.nodes.push(NodeConfig {
                        uname: opt(n, "uname").unwrap_or_else(|| id.clone()),
                        id,
                        node_type: opt(n, "type"),
                        score: opt(n, "score"),
                        attrs: read_nvsets(ix, n, "instance_attributes")?,
                        utilization: read_nvsets(ix, n, "utilization")?,
                    });
                }
            }
            "resources" => {
                for r in sec.elements() {
                    if let Some(res) = read_resource(ix, r)? {
                        out.resources.push(res);
                    }
                }
            }
            "constraints" => out.constraints = read_constraints(ix, sec)?,
            "fencing-topology" => {
                for l in sec.children_named("fencing-level") {
                    out.fencing_levels.push(FencingLevel {
                        id: opt(l, "id").unwrap_or_default(),
                        target: opt(l, "target"),
                        index: opt(l, "index").unwrap_or_default(),
                        devices: opt(l, "devices").unwrap_or_default(),
                    });
                }
            }
            "tags" => {
                for t in sec.children_named("tag") {
                    let refs = t.children_named("obj_ref").filter_map(|o| opt(o, "id")).collect();
                    out.tags.insert(req(t, "id")?, refs);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}
