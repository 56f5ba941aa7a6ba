use thiserror::Error;

/// Every way a CIB can be refused. Each message is one line: what, where, a hint.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CibError {
    #[error("malformed XML at line {line}: {message}")]
    Xml { line: u32, message: String },
    #[error("not a CIB: root element is <{found}> (line {line}); expected <cib>")]
    NotACib { found: String, line: u32 },
    #[error(
        "duplicate id '{id}' on <{element}> at line {line} (first used at line {first_line}); ids must be unique in the configuration"
    )]
    DuplicateId { id: String, element: String, line: u32, first_line: u32 },
    #[error("<{element} id=\"{id}\"> at line {line} refers to unknown {what} '{target}'; define it or fix the reference")]
    DanglingReference { element: String, id: String, line: u32, what: &'static str, target: String },
    #[error("<{element}> at line {line} has no '{attribute}' attribute; add it")]
    MissingAttribute { element: String, line: u32, attribute: &'static str },
    #[error("invalid value '{value}' for {attribute} on <{element} id=\"{id}\"> at line {line}: {hint}")]
    InvalidValue { element: String, id: String, line: u32, attribute: String, value: String, hint: String },
    #[error("unknown element <{element}> in {} (line {line}); Pacemaker's schema does not allow it there{hint}", tag(.parent, .parent_id))]
    UnknownElement { element: String, parent: String, parent_id: String, line: u32, hint: String },
    #[error("unknown attribute \"{attribute}\" on {} (line {line}); Pacemaker's schema does not allow it{hint}", tag(.element, .id))]
    UnknownAttribute { element: String, id: String, line: u32, attribute: String, hint: String },
    #[error("unsupported schema '{0}': halo reads pacemaker-1.0 up to pacemaker-3.9")]
    UnsupportedSchema(String),
    #[error("no match for {what} (cibadmin: No such device or address)")]
    NotFound { what: String },
    #[error("<{element} id=\"{id}\"> already exists in <{section}> (cibadmin: File exists); modify or replace it instead")]
    AlreadyExists { element: String, id: String, section: String },
    #[error("unknown CIB section '{0}': use cib, configuration, status, crm_config, nodes, resources, constraints, rsc_defaults, op_defaults, fencing-topology, acls, tags or alerts")]
    UnknownSection(String),
    #[error("unsupported xpath '{xpath}' ({reason}): halo supports absolute paths of steps joined by / or //, each step a tag or *, with predicates [@attr] or [@attr='value'] joined by 'and'")]
    UnsupportedXpath { xpath: String, reason: String },
    #[error(
        "update is older than the existing configuration: version {update} < {current} (admin_epoch.epoch.num_updates); raise the counters"
    )]
    StaleUpdate { current: String, update: String },
    #[error("patch was made against version {from} but the CIB is at {current}: {hint}")]
    PatchVersionMismatch { from: String, current: String, hint: &'static str },
    #[error("invalid patch: {0}")]
    BadPatch(String),
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("permission denied: user '{user}' may not {action} {}; ask an administrator for {} permission on it (CIB ACLs)", target(.action, .element, .id), need(.action))]
    PermissionDenied { user: String, action: &'static str, element: String, id: String },
}

/// What a refused request was about: the whole CIB for a read of `<cib>`, else the element.
fn target(action: &str, name: &str, id: &str) -> String {
    if action == "read" && name == "cib" {
        "the CIB".to_string()
    } else {
        tag(name, id)
    }
}

fn need(action: &str) -> &'static str {
    if action == "read" {
        "read"
    } else {
        "write"
    }
}

/// `<name id="id">`, or `<name>` when there is no id.
fn tag(name: &str, id: &str) -> String {
    if id.is_empty() {
        format!("<{name}>")
    } else {
        format!("<{name} id=\"{id}\">")
    }
}
