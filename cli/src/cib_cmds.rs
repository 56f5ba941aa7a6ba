//! `halo cib ...`: cibadmin-style reads and writes of the CIB (CIB-NOTES.md §3).
//!
//! With `--file F` the commands act on a CIB file, like `CIB_file=F cibadmin ...`;
//! without it they ask the node's halo-cibd (`cib_live.rs`). On a file, a write is all or nothing: the file is locked,
//! read, changed in memory with `cib::ops::apply_validated` (version bump and
//! re-validation), and only then replaced atomically (temporary file in the same
//! directory, fsync, rename, fsync of the directory). A refused write leaves the
//! file byte-for-byte as it was and prints one line, `halo: <what>: <why>; <hint>`.
//!
//! Exit codes are cibadmin's (Pacemaker's `crm_exit_t`) where cibadmin has one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use cib::ops::{self, Op};
use cib::xml::{self, Document, Element, Node};
use cib::CibError;
use clap::{Args, Subcommand};

use cib::cibadmin::{exit_code, EX_CANTCREAT, EX_CONFIG, EX_ERROR, EX_NOINPUT, EX_USAGE};

const FILE_MODE: &str = "The commands act on the running cluster through the node's halo-cibd (the node \
selected with --dir, else /etc/halo/corosync.conf); with --file F they act on a CIB file instead \
(like `CIB_file=F cibadmin ...`).";

#[derive(Subcommand)]
#[command(after_help = FILE_MODE)]
pub enum CibCmd {
    /// Print the whole CIB, one section, or what an xpath selects (cibadmin -Q).
    ///
    /// One xpath match is printed bare, several inside <xpath-query>. No match exits 105.
    #[command(after_help = FILE_MODE)]
    Query {
        #[command(flatten)]
        target: Target,
        /// Section: cib, configuration, status, crm_config, nodes, resources, constraints,
        /// rsc_defaults, op_defaults, fencing-topology, acls, tags or alerts.
        #[arg(long, short = 'o', visible_alias = "scope", value_name = "S")]
        section: Option<String>,
        /// An absolute xpath (the supported subset: steps joined by / or //, each a tag or *,
        /// with predicates [@attr] or [@attr='value'] joined by 'and').
        #[arg(long, short = 'A', value_name = "P")]
        xpath: Option<String>,
    },
    /// Replace the whole CIB, a section, or an object with the XML in NEWFILE (cibadmin -R).
    ///
    /// A <cib> replaces everything (its version may not be lower than the current one);
    /// a section element (<constraints>...) replaces that section; any other element
    /// replaces the first element with its tag and id (within --section if given).
    #[command(after_help = FILE_MODE)]
    Replace {
        #[command(flatten)]
        target: Target,
        /// Only look for the object to replace inside this section.
        #[arg(long, short = 'o', visible_alias = "scope", value_name = "S")]
        section: Option<String>,
        /// File holding the new XML.
        #[arg(value_name = "NEWFILE")]
        new: PathBuf,
    },
    /// Merge an object into the first element with its tag and id (cibadmin -M).
    ///
    /// Given attributes overwrite, none are removed; children are merged by tag and id,
    /// unknown ones appended. `value="value++"` / `value="value+=N"` add to the old value.
    #[command(after_help = FILE_MODE)]
    Modify {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        input: Input,
    },
    /// Append an object to a section (cibadmin -C -o S). Same tag and id there exits 108.
    #[command(after_help = FILE_MODE)]
    Create {
        #[command(flatten)]
        target: Target,
        /// The section to add to (e.g. resources, constraints).
        #[arg(long, short = 'o', visible_alias = "scope", value_name = "S")]
        section: String,
        #[command(flatten)]
        input: Input,
    },
    /// Delete the first element matching the given tag, id and attributes (cibadmin -D).
    ///
    /// As with cibadmin, nothing matching is not an error: the file is left as it is, exit 0.
    #[command(after_help = FILE_MODE)]
    Delete {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        input: Input,
    },
    /// Print the v2 patchset that turns CIB file A into CIB file B (like crm_diff -o A -n B).
    ///
    /// Exits 0 when the files are the same, 1 when they differ (as crm_diff and diff do).
    Diff {
        #[arg(value_name = "A")]
        old: PathBuf,
        #[arg(value_name = "B")]
        new: PathBuf,
    },
    /// Apply a v2 patchset (e.g. from `halo cib diff`) to the CIB (cibadmin -P).
    ///
    /// The patch's source version must equal the CIB's; the result takes its target version.
    #[command(after_help = FILE_MODE)]
    Patch {
        #[command(flatten)]
        target: Target,
        /// File holding the <diff format="2"> patchset.
        #[arg(value_name = "PATCHFILE")]
        patch: PathBuf,
    },
    /// Print each committed change of the running cluster's CIB as a v2 patchset, until interrupted.
    Watch {
        /// Only changes of the configuration (status-only writes are not shown).
        #[arg(long)]
        configuration: bool,
    },
    /// Raft state of the node's CIB replica: leader, term, voters, learners, indexes, version.
    Status,
    /// Set the CIB's raft voters (normally controld's job after fencing): e.g. `--set 1,2`.
    ///
    /// Shrinking to the nodes of a quorate partition is safe only once the others are fenced.
    /// A node being added back must be a caught-up learner.
    Voters {
        #[arg(long, value_delimiter = ',', required = true, value_name = "IDS")]
        set: Vec<u64>,
    },
}

#[derive(Args)]
pub struct Target {
    /// Act on this CIB file instead of the running cluster.
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Input {
    /// The object as an XML string.
    #[arg(long, short = 'X', value_name = "XML")]
    xml: Option<String>,
    /// A file holding the object.
    #[arg(long = "xml-file", short = 'x', value_name = "X")]
    xml_file: Option<PathBuf>,
}

/// A refusal: the exit code and the one line to print after `halo: `.
#[derive(Debug)]
pub(crate) struct Fail {
    pub code: i32,
    pub msg: String,
}

pub(crate) fn fail(code: i32, msg: impl Into<String>) -> Fail {
    Fail { code, msg: msg.into() }
}

/// Run a `halo cib` command; the process exit code.
pub fn run(cmd: CibCmd, dir: Option<&Path>) -> i32 {
    let live = match &cmd {
        CibCmd::Query { target, .. }
        | CibCmd::Replace { target, .. }
        | CibCmd::Modify { target, .. }
        | CibCmd::Create { target, .. }
        | CibCmd::Delete { target, .. }
        | CibCmd::Patch { target, .. } => target.file.is_none(),
        CibCmd::Diff { .. } => false,
        CibCmd::Watch { .. } | CibCmd::Status | CibCmd::Voters { .. } => true,
    };
    let r = if live { crate::cib_live::run(cmd, dir) } else { run_on_file(cmd) };
    match r {
        Ok(code) => code,
        Err(f) => {
            // One line, whatever the parts held.
            eprintln!("halo: {}", f.msg.replace(['\n', '\r'], " "));
            f.code
        }
    }
}

fn run_on_file(cmd: CibCmd) -> Result<i32, Fail> {
    let file = |t: Target| t.file.expect("file mode has a file");
    match cmd {
        CibCmd::Query { target, section, xpath } => query(&file(target), section.as_deref(), xpath.as_deref()),
        CibCmd::Replace { target, section, new } => {
            write(&file(target), "replace in", read_xml(&new, "NEWFILE").map(|xml| Op::Replace { section, xml }))
        }
        CibCmd::Modify { target, input } => write(&file(target), "modify", input.element().map(|xml| Op::Modify { xml })),
        CibCmd::Create { target, section, input } => {
            write(&file(target), "create in", input.element().map(|xml| Op::Create { section, xml }))
        }
        CibCmd::Delete { target, input } => write(&file(target), "delete from", input.element().map(|xml| Op::Delete { xml })),
        CibCmd::Diff { old, new } => diff(&old, &new),
        CibCmd::Patch { target, patch } => write(&file(target), "patch", read_xml(&patch, "PATCHFILE").map(|diff| Op::Patch { diff })),
        CibCmd::Watch { .. } | CibCmd::Status | CibCmd::Voters { .. } => unreachable!("live-only commands never reach file mode"),
    }
}

impl Input {
    pub(crate) fn element(&self) -> Result<Element, Fail> {
        match (&self.xml, &self.xml_file) {
            (Some(s), _) => parse_input(s, "--xml"),
            (None, Some(p)) => read_xml(p, "--xml-file"),
            (None, None) => Err(fail(EX_USAGE, "give the object with --xml XML or --xml-file X")),
        }
    }
}

fn read_text(path: &Path, role: &str) -> Result<String, Fail> {
    fs::read_to_string(path).map_err(|e| fail(EX_NOINPUT, format!("cannot read {role} {}: {e}", path.display())))
}

/// The root element of an XML input file.
pub(crate) fn read_xml(path: &Path, role: &str) -> Result<Element, Fail> {
    parse_input(&read_text(path, role)?, &format!("{role} {}", path.display()))
}

fn parse_input(src: &str, role: &str) -> Result<Element, Fail> {
    xml::parse(src).map(|d| d.root).map_err(|e| fail(EX_CONFIG, format!("{role} is not well-formed XML ({e})")))
}

fn parse_doc(path: &Path, src: &str) -> Result<Document, Fail> {
    xml::parse(src).map_err(|e| fail(EX_CONFIG, format!("{} is not a readable CIB: {e}", path.display())))
}

// ---------------------------------------------------------------------------
// Reads

fn query(file: &Path, section: Option<&str>, xpath: Option<&str>) -> Result<i32, Fail> {
    let src = read_text(file, "CIB file")?;
    let doc = parse_doc(file, &src)?;
    let (out, _) = cib::cibadmin::query_text(&doc, section, xpath).map_err(|e| {
        let hint = match &e {
            CibError::NotFound { .. } if xpath.is_some() => {
                format!("; check the path, e.g. `halo cib query --file {} --xpath \"//*[@id='ID']\"`", file.display())
            }
            CibError::NotFound { .. } => "; that section is absent from this CIB".to_string(),
            _ => String::new(),
        };
        fail(exit_code(&e), format!("query of {}: {e}{hint}", file.display()))
    })?;
    std::io::stdout().write_all(out.as_bytes()).map_err(|e| fail(EX_ERROR, format!("cannot write the query result: {e}")))?;
    Ok(0)
}

fn diff(old: &Path, new: &Path) -> Result<i32, Fail> {
    let a = parse_doc(old, &read_text(old, "A")?)?;
    let b = parse_doc(new, &read_text(new, "B")?)?;
    let d = cib::diff::diff(&a, &b);
    let mut out = String::new();
    pretty_patch(&d, 0, &mut out);
    out.push('\n');
    std::io::stdout().write_all(out.as_bytes()).map_err(|e| fail(EX_ERROR, format!("cannot write the patch: {e}")))?;
    let differ = d.children_named("change").next().is_some();
    Ok(if differ { 1 } else { 0 })
}

/// Indent the patch's own elements; created subtrees and change results are written as they are.
pub(crate) fn pretty_patch(e: &Element, depth: usize, out: &mut String) {
    const ENVELOPE: [&str; 4] = ["diff", "version", "change", "change-list"];
    let solid: Vec<&Node> = e.children.iter().filter(|n| !matches!(n, Node::Text(t) if t.trim().is_empty())).collect();
    if !ENVELOPE.contains(&e.name.as_str()) || solid.is_empty() {
        out.push_str(&e.to_xml());
        return;
    }
    if solid.iter().any(|n| !matches!(n, Node::Element(_))) {
        // Comments or text in the envelope (a hand-made patch): print it as it is.
        out.push_str(&e.to_xml());
        return;
    }
    let open = Element { children: Default::default(), ..e.clone() }.to_xml();
    out.push_str(open.strip_suffix("/>").unwrap_or(&open));
    out.push('>');
    for n in solid {
        let Node::Element(c) = n else { continue };
        out.push('\n');
        out.push_str(&"  ".repeat(depth + 1));
        if c.name == "change-result" {
            // A childless copy of the changed element: one line.
            out.push_str("<change-result>");
            c.elements().for_each(|r| out.push_str(&r.to_xml()));
            out.push_str("</change-result>");
        } else {
            pretty_patch(c, depth + 1, out);
        }
    }
    out.push('\n');
    out.push_str(&"  ".repeat(depth));
    out.push_str(&format!("</{}>", e.name));
}

// ---------------------------------------------------------------------------
// Writes

/// Apply `op` (or report why the request could not be read) to the CIB file: lock it,
/// read it, apply and validate in memory, then replace it atomically.
fn write(file: &Path, what: &str, op: Result<Op, Fail>) -> Result<i32, Fail> {
    let shown = file.display().to_string();
    let refused = |code: i32, why: String| fail(code, format!("cannot {what} {shown}: {why}; {shown} left unchanged"));
    let op = op.map_err(|f| refused(f.code, f.msg))?;
    // Write to the real file behind a symlink, not over the link.
    let path = fs::canonicalize(file).map_err(|e| fail(EX_NOINPUT, format!("cannot read CIB file {shown}: {e}")))?;
    let (_lock, src, meta) = lock_and_read(&path).map_err(|e| fail(EX_NOINPUT, format!("cannot read CIB file {shown}: {e}")))?;
    let doc = parse_doc(file, &src)?;
    let next = match ops::apply_validated(&doc, &op) {
        Ok(c) => c.doc,
        Err(e) => {
            let code = exit_code(&e);
            // A validation error may come from the file as it already is, not from the request.
            if code == EX_CONFIG && !matches!(op, Op::Replace { ref xml, .. } if xml.name == "cib") {
                if let Err(pre) = ops::validate_write(doc.clone()) {
                    return Err(refused(
                        code,
                        format!("the CIB in it is not valid already ({pre}); fix it first, e.g. with `halo cib replace`"),
                    ));
                }
            }
            return Err(refused(code, hint_for(&e, &op, &shown)));
        }
    };
    if ops::same(&doc.root, &next.root) {
        if let Op::Delete { xml } = &op {
            eprintln!("halo: nothing in {shown} matches {}; nothing deleted (as cibadmin: not an error)", opening_tag(xml));
        }
        return Ok(0);
    }
    atomic_replace(&path, next.to_xml().as_bytes(), &meta).map_err(|e| refused(EX_CANTCREAT, format!("cannot write: {e}")))?;
    Ok(0)
}

/// The error's own text plus what to try, where the error does not say it already.
fn hint_for(e: &CibError, op: &Op, file: &str) -> String {
    match (e, op) {
        (CibError::NotFound { .. }, Op::Create { section, .. }) => {
            format!("{e}; the section is absent: add it first with `halo cib modify --file {file} --xml '<configuration><{section}/></configuration>'`")
        }
        (CibError::NotFound { .. }, Op::Modify { xml } | Op::Replace { xml, .. }) => match xml.id() {
            Some(id) => format!(
                "{e}; look for it with `halo cib query --file {file} --xpath \"//*[@id='{id}']\"`, or add it with `halo cib create`"
            ),
            None => format!("{e}; the element needs the tag and id of an existing one"),
        },
        _ => e.to_string(),
    }
}

fn opening_tag(e: &Element) -> String {
    let mut s = Element { children: Default::default(), ..e.clone() }.to_xml();
    if s.len() > 200 {
        s.truncate(s.char_indices().take_while(|(i, _)| *i < 200).last().map_or(0, |(i, c)| i + c.len_utf8()));
        s.push('…');
    }
    s
}

/// Open and exclusively lock the file, making sure the lock is on the inode the path names
/// (another writer may have renamed a new file over it meanwhile); its text and metadata.
fn lock_and_read(path: &Path) -> std::io::Result<(File, String, fs::Metadata)> {
    loop {
        let f = File::open(path)?;
        // SAFETY: flock on a descriptor we own; released when `f` is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let held = f.metadata()?;
        let now = fs::metadata(path)?;
        if held.dev() == now.dev() && held.ino() == now.ino() {
            let text = std::io::read_to_string(&f)?;
            return Ok((f, text, held));
        }
    }
}

/// Write `bytes` to a new file beside `path`, fsync it, rename it over `path`, fsync the directory.
fn atomic_replace(path: &Path, bytes: &[u8], meta: &fs::Metadata) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "cib.xml".into());
    let tmp = dir.join(format!(".{name}.halo-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(meta.permissions().mode() & 0o7777).open(&tmp)?;
        // Keep the owner when we may (running as root); otherwise the file becomes ours, as with any editor.
        // SAFETY: fchown on a descriptor we own.
        unsafe { libc::fchown(f.as_raw_fd(), meta.uid(), meta.gid()) };
        f.set_permissions(fs::Permissions::from_mode(meta.permissions().mode() & 0o7777))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
