//! Every input of Pacemaker's scheduler regression suite parses, and
//! parse -> write -> parse gives the same document and the same typed views.

use std::path::PathBuf;

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/scheduler-cases/xml")
}

#[test]
fn all_scheduler_inputs_parse_and_round_trip() {
    let dir = cases_dir();
    let mut n = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("../shared/scheduler-cases/xml beside the repo") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        n += 1;
        let src = std::fs::read_to_string(&path).unwrap();
        match cib::Cib::parse(&src) {
            Err(e) => failures.push(format!("{}: {e}", path.display())),
            Ok(c) => {
                let written = c.to_xml();
                let again = cib::Cib::parse(&written).unwrap();
                assert_eq!(again.to_xml(), written, "{}", path.display());
                assert_eq!(strip_lines(again.doc.root), strip_lines(c.doc.root), "{}", path.display());
                assert_eq!(again.config, c.config, "{}", path.display());
                assert_eq!(again.status, c.status, "{}", path.display());
            }
        }
    }
    assert!(n >= 599, "expected the 599 cases, found {n}");
    assert!(failures.is_empty(), "{} of {n} failed:\n{}", failures.len(), failures.join("\n"));
}

/// Line numbers move when a multi-line attribute value is written with `&#10;`.
fn strip_lines(mut e: cib::Element) -> cib::Element {
    e.line = 0;
    e.children = e
        .children
        .into_iter()
        .map(|n| match n {
            cib::Node::Element(c) => cib::Node::from(strip_lines(std::sync::Arc::unwrap_or_clone(c))),
            other => other,
        })
        .collect();
    e
}
