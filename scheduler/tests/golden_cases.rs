//! Golden regression test over Pacemaker's scheduler cases (`../shared/scheduler-cases`).
//!
//! For every case this builds the text `halo simulate -x NAME.xml -S [ARGS]` prints
//! (the few lines of cli/src/simulate.rs are repeated here, so the test needs no
//! binary), normalizes it and the expected summary the way
//! `../shared/tools/scheduler-conformance` does, and computes two of that tool's
//! metrics: `transition` (the Transition Summary lines as a multiset) and `status`
//! (the Current cluster status block, line for line).
//!
//! The cases known to match are listed in `testdata/matching-transition.txt` and
//! `testdata/matching-status.txt`. The test fails if a listed case stops matching.
//! Cases that match but are not listed are only reported; `HALO_BLESS=1 cargo test
//! -p halo-scheduler --test golden_cases` rewrites both lists with the current sets.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::Utc;

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
// What `halo simulate -x FILE -S [-t DATE]` prints (stdout, or the error on stderr).

fn simulate(xml_file: &Path, args: &[String]) -> String {
    let date = args.iter().position(|a| a == "-t").and_then(|i| args.get(i + 1));
    let src = match std::fs::read_to_string(xml_file) {
        Ok(s) => s,
        Err(e) => return format!("halo: cannot read {}: {e}\n", xml_file.display()),
    };
    let cib = match cib::Cib::parse(&src) {
        Ok(c) => c,
        Err(e) => return format!("halo: {}: {e}\n", xml_file.display()),
    };
    let date = match date {
        Some(d) => match scheduler::rules::parse_iso8601(d) {
            Some(t) => Some(t),
            None => return format!("halo: invalid date '{d}' for -t\n"),
        },
        None => None,
    };
    let (now, date_line) = scheduler::effective_now(&cib, date, Utc::now().naive_utc());
    let t = scheduler::schedule(&cib, now);
    let out = t.crm_simulate_text(date_line.as_deref(), false, true);
    out
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

/// Run every case; return the names matching each metric and the names that panicked.
fn run_all(dir: &Path, cases: &[Case]) -> (BTreeSet<String>, BTreeSet<String>, Vec<String>) {
    let (mut transition, mut status, mut panicked) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    // A panic is a case that does not match (the binary would print it on stderr);
    // keep the default hook from printing 599 backtraces.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for c in cases {
        let xml = dir.join("xml").join(format!("{}.xml", c.name));
        let actual = match std::panic::catch_unwind(|| simulate(&xml, &c.args)) {
            Ok(text) => text,
            Err(_) => {
                panicked.push(c.name.clone());
                String::from("halo: panicked\n")
            }
        };
        let exp_path = dir.join("summary").join(format!("{}.summary", c.name));
        let expected = std::fs::read_to_string(&exp_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", exp_path.display()));
        let o = compare(&normalize(&expected), &normalize(&actual));
        if o.transition {
            transition.insert(c.name.clone());
        }
        if o.status {
            status.insert(c.name.clone());
        }
    }
    std::panic::set_hook(hook);
    (transition, status, panicked)
}

#[test]
fn normalize_matches_the_conformance_tool() {
    let n = normalize("  Masters: [ a ]\n\n * R\t(ocf::pacemaker:Stateful):  Master n1\n Slave x Master[\n Masterful\n");
    assert_eq!(n, vec!["Promoted: [ a ]", "* R (ocf:pacemaker:Stateful): Promoted n1", "Unpromoted x Promoted[", "Masterful"]);
    // The regex consumes the space after a match, as Python's re.sub does.
    assert_eq!(normalize(" Master Master Master\n"), vec!["Promoted Master Promoted"]);
}

#[test]
fn golden_cases() {
    let dir = cases_dir();
    let cases = load_cases(&dir);
    let n = cases.len();
    assert!(n > 0, "no cases in {}", dir.display());
    let started = std::time::Instant::now();
    // Some CIBs nest deeply; give the scheduler the room a binary's main thread has, and more.
    let (transition, status, panicked) = {
        let dir = dir.clone();
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || run_all(&dir, &cases))
            .unwrap()
            .join()
            .expect("the case runner died")
    };
    eprintln!(
        "golden cases: {n} run in {:.1}s; transition matches {}, status matches {}, {} panicked",
        started.elapsed().as_secs_f64(),
        transition.len(),
        status.len(),
        panicked.len()
    );
    if !panicked.is_empty() {
        eprintln!("  panicked: {}", panicked.join(" "));
    }

    let lists = [("transition", testdata("matching-transition.txt"), &transition), ("status", testdata("matching-status.txt"), &status)];

    if std::env::var("HALO_BLESS").as_deref() == Ok("1") {
        for (metric, path, now) in &lists {
            let before = read_list(path);
            write_list(path, now);
            let lost: Vec<&String> = before.difference(now).collect();
            eprintln!(
                "HALO_BLESS=1: wrote {} ({} cases; {} added, {} removed{})",
                path.display(),
                now.len(),
                now.difference(&before).count(),
                lost.len(),
                if lost.is_empty() { String::new() } else { format!(": {metric} no longer matches {}", join(&lost)) }
            );
        }
        return;
    }

    let mut failures = Vec::new();
    for (metric, path, now) in &lists {
        let listed = read_list(path);
        let lost: Vec<&String> = listed.difference(now).collect();
        let gained = now.difference(&listed).count();
        if gained > 0 {
            eprintln!(
                "{gained} case(s) now match '{metric}' but are not listed in {}; \
                 record them with: HALO_BLESS=1 cargo test -p halo-scheduler --test golden_cases",
                path.display()
            );
        }
        if !lost.is_empty() {
            failures.push(format!("'{metric}' no longer matches for {} listed case(s): {}", lost.len(), join(&lost)));
        }
    }
    if !failures.is_empty() {
        panic!(
            "scheduler regression:\n  {}\nsee one with: cargo build --release && \
             ../shared/tools/scheduler-conformance --diff NAME -- target/release/halo simulate\n\
             (if the change is intended, rewrite the lists with HALO_BLESS=1)",
            failures.join("\n  ")
        );
    }
}

fn join(names: &[&String]) -> String {
    names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}
