//! Helpers shared by the status tests: where a case's CIB is, and "now" as crm_mon saw it.

#![allow(dead_code)]

use std::path::PathBuf;

use chrono::NaiveDateTime;

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

pub fn scheduler_cases() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/scheduler-cases/xml")
}

/// The CIB of a golden case: one of ours (`golden/NAME.cib.xml`), the repository's example,
/// or one of Pacemaker's scheduler cases.
pub fn case_cib(name: &str) -> cib::Cib {
    let own = golden_dir().join(format!("{name}.cib.xml"));
    let path = if own.exists() {
        own
    } else if name == "web-cluster" {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/web-cluster.xml")
    } else {
        scheduler_cases().join(format!("{name}.xml"))
    };
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (the scheduler cases live in ../shared beside the repository)", path.display()));
    cib::Cib::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn golden(file: &str) -> String {
    let path = golden_dir().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A ctime-style time ("Thu Dec  3 09:02:21 2026").
pub fn parse_ctime(s: &str) -> NaiveDateTime {
    let words: Vec<&str> = s.split_whitespace().collect();
    NaiveDateTime::parse_from_str(&words.join(" "), "%a %b %d %H:%M:%S %Y").unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// "now" as crm_mon printed it: the "Last updated" line of its text, or `<last_update time>`.
pub fn now_of(output: &str) -> NaiveDateTime {
    for line in output.lines() {
        if let Some(t) = line.trim_start().strip_prefix("* Last updated: ") {
            return parse_ctime(t);
        }
        if let Some(rest) = line.trim_start().strip_prefix("<last_update time=\"") {
            return parse_ctime(rest.split('"').next().unwrap_or(""));
        }
    }
    panic!("no Last updated in output")
}

/// crm_mon's XML without the sections halo does not produce (node attributes, node
/// history, tickets, bans).
pub fn strip_unproduced(xml: &str) -> String {
    let mut out = String::new();
    let mut skip: Option<String> = None;
    for line in xml.lines() {
        let t = line.trim_start();
        if let Some(end) = &skip {
            if t == end {
                skip = None;
            }
            continue;
        }
        let mut dropped = false;
        for tag in ["node_attributes", "node_history", "tickets", "bans"] {
            if t == format!("<{tag}/>") {
                dropped = true;
            } else if t == format!("<{tag}>") {
                skip = Some(format!("</{tag}>"));
                dropped = true;
            }
        }
        if !dropped {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// First differing line, for readable failures.
pub fn first_difference(got: &str, want: &str) -> String {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let i = (0..g.len().max(w.len())).find(|&i| g.get(i) != w.get(i)).unwrap_or(0);
    format!("line {}:\n   got: {:?}\n  want: {:?}", i + 1, g.get(i), w.get(i))
}
