//! What `cibadmin` shows a user, shared by `halo cib` on a file and halo-cibd: the exit
//! codes of Pacemaker's `crm_exit_t` for each refusal, and the text of a query's result.

use crate::error::CibError;
use crate::ops;
use crate::xml::{Document, Element, Node};

/// Refused by the CIB's ACLs (CRM_EX_INSUFFICIENT_PRIV, "Permission denied").
pub const EX_INSUFFICIENT_PRIV: i32 = 4;
/// Generic failure; also cibadmin's "Application of update diff failed" (patch newer than the CIB).
pub const EX_ERROR: i32 = 1;
/// Bad arguments (CRM_EX_USAGE): unknown section, unsupported xpath, impossible request.
pub const EX_USAGE: i32 = 64;
/// An input file cannot be read (CRM_EX_NOINPUT).
pub const EX_NOINPUT: i32 = 66;
/// The service is not there (CRM_EX_UNAVAILABLE): no cibd on the node, no raft leader.
pub const EX_UNAVAILABLE: i32 = 69;
/// The CIB file cannot be written (CRM_EX_CANTCREAT).
pub const EX_CANTCREAT: i32 = 73;
/// Not allowed (CRM_EX_NOPERM).
pub const EX_NOPERM: i32 = 77;
/// Unparsable input or a result that fails validation (CRM_EX_CONFIG; cibadmin's schema error).
pub const EX_CONFIG: i32 = 78;
/// Counters would go backwards, or a stale patch (CRM_EX_OLD).
pub const EX_OLD: i32 = 103;
/// No such object (CRM_EX_NOSUCH, "No such device or address").
pub const EX_NOSUCH: i32 = 105;
/// The object already exists (CRM_EX_EXISTS, "File exists").
pub const EX_EXISTS: i32 = 108;
/// The partition has no quorum (CRM_EX_QUORUM).
pub const EX_QUORUM: i32 = 109;
/// Timed out: the outcome is unknown (CRM_EX_TIMEOUT).
pub const EX_TIMEOUT: i32 = 124;

/// The exit code cibadmin gives for an error of this kind.
pub fn exit_code(e: &CibError) -> i32 {
    match e {
        CibError::NotFound { .. } => EX_NOSUCH,
        CibError::PermissionDenied { .. } => EX_INSUFFICIENT_PRIV,
        CibError::AlreadyExists { .. } => EX_EXISTS,
        CibError::StaleUpdate { .. } => EX_OLD,
        CibError::PatchVersionMismatch { from, current, .. } => {
            // CIB behind the patch: cibadmin asks for a full refresh (1); CIB ahead: stale patch (103).
            if parse_version(current) < parse_version(from) {
                EX_ERROR
            } else {
                EX_OLD
            }
        }
        CibError::BadPatch(_) => EX_ERROR,
        CibError::UnknownSection(_) | CibError::UnsupportedXpath { .. } | CibError::BadRequest(_) => EX_USAGE,
        _ => EX_CONFIG,
    }
}

fn parse_version(s: &str) -> Vec<u64> {
    s.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// What `cibadmin -Q` prints for a query (one match bare, several inside `<xpath-query>`),
/// with the number of matches.
pub fn query_text(doc: &Document, section: Option<&str>, xpath: Option<&str>) -> Result<(String, usize), CibError> {
    let found = ops::query(doc, section, xpath)?;
    let mut out = String::new();
    if found.len() == 1 {
        out.push_str(&dedented(&found[0]));
    } else {
        out.push_str("<xpath-query>\n");
        for e in &found {
            out.push_str("  ");
            out.push_str(&dedented(e).replace('\n', "\n  "));
            out.push('\n');
        }
        out.push_str("</xpath-query>");
    }
    out.push('\n');
    Ok((out, found.len()))
}

/// An element's text with its indentation in the file removed, so a nested element
/// prints flush left. The indentation is read off the blank text before its end tag.
fn dedented(e: &Element) -> String {
    let text = e.to_xml();
    let lead = match e.children.last() {
        Some(Node::Text(t)) if t.trim().is_empty() => t.rsplit('\n').next().filter(|_| t.contains('\n')).unwrap_or(""),
        _ => "",
    };
    if lead.is_empty() {
        text
    } else {
        text.replace(&format!("\n{lead}"), "\n")
    }
}
