use thiserror::Error;

/// Every way a CIB can be refused. Each message is one line: what, where, a hint.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CibError {
    #[error("malformed XML at line {line}: {message}")]
    Xml { line: u32, message: String },
    #[error("not a CIB: root element is <{found}> (line {line}); expected <cib>")]
    NotACib { found: String, line: u32 },
    #[error("duplicate id '{id}' on <{element}> at line {line} (first used at line {first_line}); ids must be unique in the configuration")]
    DuplicateId { id: String, element: String, line: u32, first_line: u32 },
    #[error("<{element} id=\"{id}\"> at line {line} refers to unknown {what} '{target}'; define it or fix the reference")]
    DanglingReference { element: String, id: String, line: u32, what: &'static str, target: String },
    #[error("<{element}> at line {line} has no '{attribute}' attribute; add it")]
    MissingAttribute { element: String, line: u32, attribute: &'static str },
    #[error("invalid value '{value}' for {attribute} on <{element} id=\"{id}\"> at line {line}: {hint}")]
    InvalidValue { element: String, id: String, line: u32, attribute: String, value: String, hint: String },
    #[error("unsupported schema '{0}': halo reads pacemaker-1.0 up to pacemaker-3.9")]
    UnsupportedSchema(String),
}
