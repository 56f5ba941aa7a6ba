//! Golden regression test over Pacemaker's scheduler cases (`../shared/scheduler-cases`).
//!
//! For every case this builds the text `halo simulate -x NAME.xml -S [ARGS]` prints
//! (the few lines of cli/src/simulate.rs are repeated here, so the test needs no
//! binary), normalizes it and the expected summary the way
//! `../shared/tools/scheduler-conformance` does, and computes two of that tool's
//! metrics: `transition` (the Transition Summary lines as a multiset) and `status`
//! (the Current cluster status block, line for line). From the same run it compares the
//! transition graph (`halo simulate -G`) with Pacemaker's `exp/NAME.exp`: `graph` (same
//! actions, each with the same inputs; see `golden_cases/graph.rs`), and, where the
//! transition matches but the graph does not, the data-protecting orderings of
//! Pacemaker's graph that halo's lacks (fencing before a start, a stop before the start
//! elsewhere, a demote before a promote).
//!
//! The cases known to match are listed in `testdata/matching-transition.txt`,
//! `testdata/matching-status.txt` and `testdata/matching-graph.txt`. The test fails if a
//! listed case stops matching. The known missing data-protecting orderings are listed in
//! `testdata/data-orderings-missing.txt`; the test fails on any other. Cases that match but
//! are not listed, and listed orderings no longer missing, are only reported;
//! `HALO_BLESS=1 cargo test -p halo-scheduler --test golden_cases` rewrites all four lists
//! with the current sets. `GOLDEN_GRAPH_DUMP=DIR` writes halo's graphs as `DIR/NAME.exp`.
//! Without `../shared/scheduler-cases` the tests print one line and pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::Utc;

#[path = "golden_cases/graph.rs"]
mod graph;

const SECTIONS: [&str; 4] = ["Current cluster status:", "Transition Summary:", "Executing Cluster Transition:", "Revised Cluster Status:"];

struct Case {
    name: String,
    args: Vec<String>,
}

struct Outcome {
    transition: bool,
    status: bool,
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/scheduler-cases")
}

fn testdata(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(file)
}

// ---------------------------------------------------------------------------
// What `halo simulate -x FILE -S [-t DATE]` prints (stdout, or the error on stderr), and
// the graph `-G FILE` writes (none when it prints an error).

fn simulate(xml_file: &Path, args: &[String]) -> (String, Option<String>) {
    let date = args.iter().position(|a| a == "-t").and_then(|i| args.get(i + 1));
    let src = match std::fs::read_to_string(xml_file) {
        Ok(s) => s,
        Err(e) => return (format!("halo: cannot read {}: {e}\n", xml_file.display()), None),
    };
    let cib = match cib::Cib::parse(&src) {
        Ok(c) => c,
        Err(e) => return (format!("halo: {}: {e}\n", xml_file.display()), None),
    };
    let date = match date {
        Some(d) => match scheduler::rules::parse_iso8601(d) {
            Some(t) => Some(t),
            None => return (format!("halo: invalid date '{d}' for -t\n"), None),
        },
        None => None,
    };
    let (now, date_line) = scheduler::effective_now(&cib, date, Utc::now().naive_utc());
    let t = scheduler::schedule(&cib, now);
    let out = t.crm_simulate_text(date_line.as_deref(), false, true);
    (out, Some(t.graph_xml()))
}

// ---------------------------------------------------------------------------
// scheduler-conformance's normalize(), split_sections() and compare().

/// Python's `str.isspace()`.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.splitlines()` boundaries.
fn py_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// `re.sub(r" Master( |\[|$)", r" Promoted\1", text, flags=re.M)`.
fn rename_master(text: &str) -> String {
    const PAT: &str = " Master";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(PAT) {
        let after = &rest[i + PAT.len()..];
        match after.chars().next() {
            Some(c @ (' ' | '[')) => {
                out.push_str(&rest[..i]);
                out.push_str(" Promoted");
                out.push(c);
                rest = &after[1..];
            }
            None | Some('\n') => {
                out.push_str(&rest[..i]);
                out.push_str(" Promoted");
                rest = after;
            }
            Some(_) => {
                out.push_str(&rest[..i + 1]);
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn normalize(text: &str) -> Vec<String> {
    let text = text.replace("ocf::", "ocf:");
    let text = text.replace("Masters:", "Promoted:").replace("Slaves:", "Unpromoted:");
    let text = rename_master(&text);
    let text = text.replace(" Slave ", " Unpromoted ");
    // splitlines() treats "\r\n" as one break; an extra empty line is dropped anyway.
    text.split(py_line_break)
        .map(|l| {
            let mut folded = String::with_capacity(l.len());
            let mut in_space = false;
            for c in l.chars() {
                if py_space(c) {
                    in_space = true;
                } else {
                    if in_space && !folded.is_empty() {
                        folded.push(' ');
                    }
                    in_space = false;
                    folded.push(c);
                }
            }
            folded
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// The lines of one section (those before the first header belong to none).
fn section<'a>(lines: &'a [String], name: &str) -> Vec<&'a str> {
    let mut cur: Option<&str> = None;
    let mut out = Vec::new();
    for l in lines {
        if SECTIONS.contains(&l.as_str()) {
            cur = Some(l.as_str());
            continue;
        }
        if cur == Some(name) {
            out.push(l.as_str());
        }
    }
    out
}

fn compare(expected: &[String], actual: &[String]) -> Outcome {
    let multiset = |lines: &[String]| {
        let mut v = section(lines, "Transition Summary:");
        v.sort_unstable();
        v.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    Outcome {
        transition: multiset(expected) == multiset(actual),
        status: section(expected, "Current cluster status:") == section(actual, "Current cluster status:"),
    }
}

// ---------------------------------------------------------------------------
// cases.json: a minimal JSON reader (std only).

/// Numbers and booleans are read but not needed by this test.
#[allow(dead_code)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, b: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", b as char, self.i))
        }
    }
    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(kv));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    kv.push((k, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(kv));
                        }
                        _ => return Err(format!("bad object at byte {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return Err(format!("bad array at byte {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                t.parse().map(Json::Num).map_err(|_| format!("bad value at byte {start}"))
            }
            None => Err("unexpected end of input".into()),
        }
    }
    fn hex4(&mut self) -> Result<u32, String> {
        let h = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(h).map_err(|e| e.to_string())?, 16).map_err(|e| e.to_string())
    }
    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at byte {}", self.i));
        }
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let b = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\x08',
                        b'f' => '\x0c',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) && self.s[self.i..].starts_with(b"\\u") {
                                self.i += 2;
                                let lo = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            char::from_u32(cp).unwrap_or('\u{FFFD}')
                        }
                        _ => return Err(format!("bad escape at byte {}", self.i)),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(b),
            }
        }
    }
}

fn load_cases(dir: &Path) -> Vec<Case> {
    let path = dir.join("cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (the scheduler cases live in ../shared beside the repository)", path.display()));
    let json = Reader { s: text.as_bytes(), i: 0 }.value().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Json::Arr(items) = json else { panic!("{}: expected a list of cases", path.display()) };
    items
        .iter()
        .map(|c| Case {
            name: c.get("name").and_then(Json::as_str).expect("a case without a name").to_string(),
            args: match c.get("args") {
                Some(Json::Arr(a)) => a.iter().filter_map(Json::as_str).map(str::to_string).collect(),
                _ => Vec::new(),
            },
        })
        .collect()
}

// ---------------------------------------------------------------------------

fn read_list(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
        .unwrap_or_default()
}

fn write_list(path: &Path, names: &BTreeSet<String>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = String::new();
    for n in names {
        text.push_str(n);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// What one run over all cases found.
struct Run {
    cases: usize,
    secs: f64,
    transition: BTreeSet<String>,
    status: BTreeSet<String>,
    /// Same actions and same inputs as Pacemaker's graph.
    graph: BTreeSet<String>,
    /// Same actions, some inputs differ.
    graph_actions_only: BTreeSet<String>,
    /// Cases whose transition summary matches and graph does not, with the data-protecting
    /// orderings of Pacemaker's graph that halo's lacks (only those that lack one).
    missing: BTreeMap<String, Vec<graph::Missing>>,
    /// The same over every case where halo and Pacemaker both have a graph (for the report).
    missing_any: usize,
    panicked: Vec<String>,
    /// Graphs that could not be read (Pacemaker's or halo's).
    unreadable: Vec<String>,
}

/// Run every case once; every test reads the same run.
fn run() -> Option<&'static Run> {
    static RUN: OnceLock<Option<Run>> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = cases_dir();
        if !dir.join("cases.json").exists() {
            eprintln!("golden cases: skipped, {} is absent", dir.display());
            return None;
        }
        let cases = load_cases(&dir);
        assert!(!cases.is_empty(), "no cases in {}", dir.display());
        // Some CIBs nest deeply; give the scheduler the room a binary's main thread has, and more.
        let run = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || run_all(&dir, &cases))
            .unwrap()
            .join()
            .expect("the case runner died");
        Some(run)
    })
    .as_ref()
}

fn run_all(dir: &Path, cases: &[Case]) -> Run {
    let started = std::time::Instant::now();
    let mut r = Run {
        cases: cases.len(),
        secs: 0.0,
        transition: BTreeSet::new(),
        status: BTreeSet::new(),
        graph: BTreeSet::new(),
        graph_actions_only: BTreeSet::new(),
        missing: BTreeMap::new(),
        missing_any: 0,
        panicked: Vec::new(),
        unreadable: Vec::new(),
    };
    // A panic is a case that does not match (the binary would print it on stderr);
    // keep the default hook from printing 599 backtraces.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for c in cases {
        let xml = dir.join("xml").join(format!("{}.xml", c.name));
        let (actual, graph_xml) = match std::panic::catch_unwind(|| simulate(&xml, &c.args)) {
            Ok(out) => out,
            Err(_) => {
                r.panicked.push(c.name.clone());
                (String::from("halo: panicked\n"), None)
            }
        };
        let exp_path = dir.join("summary").join(format!("{}.summary", c.name));
        let expected = std::fs::read_to_string(&exp_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", exp_path.display()));
        let o = compare(&normalize(&expected), &normalize(&actual));
        if o.transition {
            r.transition.insert(c.name.clone());
        }
        if o.status {
            r.status.insert(c.name.clone());
        }

        let Some(graph_xml) = graph_xml else { continue };
        if let Some(d) = std::env::var_os("GOLDEN_GRAPH_DUMP") {
            let _ = std::fs::create_dir_all(&d);
            let _ = std::fs::write(Path::new(&d).join(format!("{}.exp", c.name)), &graph_xml);
        }
        let exp_path = dir.join("exp").join(format!("{}.exp", c.name));
        let exp_xml = std::fs::read_to_string(&exp_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", exp_path.display()));
        let (pcmk, halo) = match (graph::parse(&exp_xml), graph::parse(&graph_xml)) {
            (Ok(p), Ok(h)) => (p, h),
            (p, h) => {
                let why = [p.err().map(|e| format!("exp: {e}")), h.err().map(|e| format!("halo: {e}"))];
                r.unreadable.push(format!("{} ({})", c.name, why.into_iter().flatten().collect::<Vec<_>>().join("; ")));
                continue;
            }
        };
        match graph::compare(&pcmk, &halo) {
            graph::Verdict::Match => {
                r.graph.insert(c.name.clone());
                continue;
            }
            graph::Verdict::ActionsOnly => {
                r.graph_actions_only.insert(c.name.clone());
            }
            graph::Verdict::Differ => {}
        }
        let missing = graph::missing_data_orderings(&pcmk, &halo);
        if !missing.is_empty() {
            r.missing_any += 1;
            if o.transition {
                r.missing.insert(c.name.clone(), missing);
            }
        }
    }
    std::panic::set_hook(hook);
    r.secs = started.elapsed().as_secs_f64();
    r
}

fn blessing() -> bool {
    std::env::var("HALO_BLESS").as_deref() == Ok("1")
}

const BLESS_HINT: &str = "HALO_BLESS=1 cargo test -p halo-scheduler --test golden_cases";

/// Lists that may grow, never shrink: fail when a listed case no longer matches.
fn check_lists(lists: &[(&str, PathBuf, &BTreeSet<String>)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (metric, path, now) in lists {
        let listed = read_list(path);
        if blessing() {
            write_list(path, now);
            let lost: Vec<&String> = listed.difference(now).collect();
            eprintln!(
                "HALO_BLESS=1: wrote {} ({} cases; {} added, {} removed{})",
                path.display(),
                now.len(),
                now.difference(&listed).count(),
                lost.len(),
                if lost.is_empty() { String::new() } else { format!(": {metric} no longer matches {}", join(&lost)) }
            );
            continue;
        }
        let lost: Vec<&String> = listed.difference(now).collect();
        let gained = now.difference(&listed).count();
        if gained > 0 {
            eprintln!("{gained} case(s) now match '{metric}' but are not listed in {}; record them with: {BLESS_HINT}", path.display());
        }
        if !lost.is_empty() {
            failures.push(format!("'{metric}' no longer matches for {} listed case(s): {}", lost.len(), join(&lost)));
        }
    }
    failures
}

#[test]
fn normalize_matches_the_conformance_tool() {
    let n = normalize("  Masters: [ a ]\n\n * R\t(ocf::pacemaker:Stateful):  Master n1\n Slave x Master[\n Masterful\n");
    assert_eq!(n, vec!["Promoted: [ a ]", "* R (ocf:pacemaker:Stateful): Promoted n1", "Unpromoted x Promoted[", "Masterful"]);
    // The regex consumes the space after a match, as Python's re.sub does.
    assert_eq!(normalize(" Master Master Master\n"), vec!["Promoted Master Promoted"]);
}

#[test]
fn graph_metric_on_small_graphs() {
    // (action element, inputs) per synapse; ids count from `first_id` to show they are ignored.
    fn graph_xml(first_id: usize, synapses: &[(&str, &[&str])]) -> String {
        let mut out = String::from("<transition_graph cluster-delay=\"60s\" transition_id=\"0\">\n");
        for (i, (action, inputs)) in synapses.iter().enumerate() {
            let id = |e: &str| e.replacen("ID", &(first_id + i).to_string(), 1);
            out.push_str(&format!("<synapse id=\"{i}\"><action_set>{}</action_set><inputs>", id(action)));
            for t in inputs.iter() {
                out.push_str(&format!("<trigger>{t}</trigger>"));
            }
            out.push_str("</inputs></synapse>\n");
        }
        out.push_str("</transition_graph>\n");
        out
    }
    const FENCE: &str = r#"<crm_event id="ID" operation="stonith" operation_key="stonith-n1-reboot" on_node="n1" on_node_uuid="1"/>"#;
    const R_STOP: &str = r#"<pseudo_event id="ID" operation="stop" operation_key="R_stop_0"/>"#;
    const R_START: &str = r#"<rsc_op id="ID" operation="start" operation_key="R_start_0" on_node="n2" on_node_uuid="2"><attributes CRM_meta_timeout="20000"/></rsc_op>"#;
    const S_START: &str = r#"<rsc_op id="ID" operation="start" operation_key="S_start_0" on_node="n2" on_node_uuid="2"/>"#;
    let exp = graph::parse(&graph_xml(0, &[(FENCE, &[]), (R_STOP, &[FENCE]), (R_START, &[R_STOP, FENCE]), (S_START, &[FENCE])])).unwrap();
    // Other ids, attributes and synapse order: the same graph.
    let same = graph::parse(&graph_xml(7, &[(S_START, &[FENCE]), (R_START, &[FENCE, R_STOP]), (FENCE, &[]), (R_STOP, &[FENCE])])).unwrap();
    assert_eq!(graph::compare(&exp, &same), graph::Verdict::Match);
    // R's start is after the fencing through its stop (kept); S's start is not (missing).
    let halo = graph::parse(&graph_xml(0, &[(FENCE, &[]), (R_STOP, &[FENCE]), (R_START, &[R_STOP]), (S_START, &[])])).unwrap();
    assert_eq!(graph::compare(&exp, &halo), graph::Verdict::ActionsOnly);
    let missing: Vec<String> = graph::missing_data_orderings(&exp, &halo).iter().map(|m| m.to_string()).collect();
    assert_eq!(missing, vec!["fence-then-start: stonith-n1-reboot@n1 -> S_start_0@n2"]);
    // Without the fencing at all: both starts miss it, and the graphs differ.
    let unfenced = graph::parse(&graph_xml(0, &[(R_STOP, &[]), (R_START, &[R_STOP]), (S_START, &[])])).unwrap();
    assert_eq!(graph::compare(&exp, &unfenced), graph::Verdict::Differ);
    assert_eq!(graph::missing_data_orderings(&exp, &unfenced).len(), 2);
    assert!(graph::missing_data_orderings(&exp, &unfenced).iter().all(|m| m.absent));
}

#[test]
fn golden_cases() {
    let Some(r) = run() else { return };
    eprintln!(
        "golden cases: {} run in {:.1}s (summary and graph); transition matches {}, status matches {}, {} panicked",
        r.cases,
        r.secs,
        r.transition.len(),
        r.status.len(),
        r.panicked.len()
    );
    if !r.panicked.is_empty() {
        eprintln!("  panicked: {}", r.panicked.join(" "));
    }
    let failures = check_lists(&[
        ("transition", testdata("matching-transition.txt"), &r.transition),
        ("status", testdata("matching-status.txt"), &r.status),
    ]);
    if !failures.is_empty() {
        panic!(
            "scheduler regression:\n  {}\nsee one with: cargo build --release && \
             ../shared/tools/scheduler-conformance --diff NAME -- target/release/halo simulate\n\
             (if the change is intended, rewrite the lists with HALO_BLESS=1)",
            failures.join("\n  ")
        );
    }
}

/// `testdata/data-orderings-missing.txt`: a case name, then its missing orderings indented.
fn read_missing(path: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut case: Option<String> = None;
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let c = case.clone().unwrap_or_else(|| panic!("{}: an ordering before any case: {line}", path.display()));
            out.entry(c).or_default().insert(line.trim().trim_end_matches(graph::ABSENT).to_string());
        } else {
            let c = line.trim().to_string();
            out.entry(c.clone()).or_default();
            case = Some(c);
        }
    }
    out
}

fn write_missing(path: &Path, missing: &BTreeMap<String, Vec<graph::Missing>>) {
    let mut text = String::from(
        "# Cases whose transition summary matches Pacemaker's but whose graph lacks a data-protecting\n\
         # ordering of Pacemaker's graph (see scheduler/tests/golden_cases/graph.rs): the case, then\n\
         # each missing ordering, indented (kind: first -> then). This list may shrink, never grow.\n",
    );
    for (case, ms) in missing {
        text.push_str(case);
        text.push('\n');
        for m in ms {
            text.push_str(&format!("  {m}\n"));
        }
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

#[test]
fn golden_graphs() {
    let Some(r) = run() else { return };
    let n_missing: usize = r.missing.values().map(Vec::len).sum();
    eprintln!(
        "graph: {} of {} cases match actions and inputs; {} more match actions only; \
         {} of the {} cases whose transition matches but graph does not miss a data-protecting ordering ({} orderings; {} cases over all)",
        r.graph.len(),
        r.cases,
        r.graph_actions_only.len(),
        r.missing.len(),
        r.transition.difference(&r.graph).count(),
        n_missing,
        r.missing_any
    );
    let mut by_kind: BTreeMap<graph::Kind, (usize, BTreeSet<&str>)> = BTreeMap::new();
    for (case, ms) in &r.missing {
        for m in ms {
            let e = by_kind.entry(m.kind).or_default();
            e.0 += 1;
            e.1.insert(case);
        }
    }
    for (k, (n, cases)) in &by_kind {
        let some: Vec<&str> = cases.iter().take(4).copied().collect();
        eprintln!("  {}: {n} ordering(s) in {} case(s), e.g. {}", k.name(), cases.len(), some.join(" "));
    }
    if !r.unreadable.is_empty() {
        eprintln!("  graphs not read: {}", r.unreadable.join(", "));
    }

    let mut failures = check_lists(&[("graph", testdata("matching-graph.txt"), &r.graph)]);
    let path = testdata("data-orderings-missing.txt");
    let listed = read_missing(&path);
    if blessing() {
        write_missing(&path, &r.missing);
        eprintln!("HALO_BLESS=1: wrote {} ({} cases, {n_missing} orderings)", path.display(), r.missing.len());
    } else {
        let mut new = Vec::new();
        for (case, ms) in &r.missing {
            let known = listed.get(case);
            for m in ms {
                if !known.is_some_and(|k| k.contains(&m.id())) {
                    new.push(format!("{case}: {m}"));
                }
            }
        }
        if !new.is_empty() {
            failures.push(format!(
                "{} data-protecting ordering(s) of Pacemaker's graph missing from halo's and not listed in {}:\n    {}",
                new.len(),
                path.display(),
                new.join("\n    ")
            ));
        }
        let fixed: Vec<&String> = listed.keys().filter(|c| !r.missing.contains_key(*c)).collect();
        if !fixed.is_empty() {
            eprintln!("{} listed case(s) no longer miss a data-protecting ordering: {}; remove them with: {BLESS_HINT}", fixed.len(), join(&fixed));
        }
    }
    if !r.unreadable.is_empty() {
        failures.push(format!("graphs not read: {}", r.unreadable.join(", ")));
    }
    if !failures.is_empty() {
        panic!(
            "scheduler graph regression:\n  {}\nsee one with: GOLDEN_GRAPH_DUMP=DIR cargo test --release -p halo-scheduler --test golden_cases, \
             then compare DIR/NAME.exp with ../shared/scheduler-cases/exp/NAME.exp\n\
             (if the change is intended, rewrite the lists with HALO_BLESS=1)",
            failures.join("\n  ")
        );
    }
}

fn join(names: &[&String]) -> String {
    names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}
