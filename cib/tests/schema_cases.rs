//! The schema check accepts every input of Pacemaker's scheduler regression suite
//! (a failure here means the generated table is too strict).

use std::path::PathBuf;

#[test]
fn all_scheduler_inputs_pass_the_schema_check() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/scheduler-cases/xml");
    let mut n = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("../shared/scheduler-cases/xml beside the repo") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        n += 1;
        let doc = cib::xml::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for p in cib::schema::problems(&doc) {
            failures.push(format!("{}: {p}", path.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(n >= 599, "expected the 599 cases, found {n}");
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}

/// The committed table is what the generator makes from the installed schemas (skipped without them).
#[test]
fn committed_table_matches_the_generator() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let rng_dir = std::path::Path::new("/usr/share/pacemaker");
    if !rng_dir.join("pacemaker-3.9.rng").exists() {
        println!("NOTE: skipping the table regeneration check: no Pacemaker schemas in {}", rng_dir.display());
        return;
    }
    let out = match std::process::Command::new("python3").arg(root.join("tools/gen_schema_table.py")).arg(rng_dir).output() {
        Ok(o) if o.status.success() => o.stdout,
        _ => {
            println!("NOTE: skipping the table regeneration check: python3 or the generator failed");
            return;
        }
    };
    let committed = std::fs::read(root.join("cib/src/schema_table.rs")).unwrap();
    assert!(out == committed, "cib/src/schema_table.rs is stale: run python3 tools/gen_schema_table.py > cib/src/schema_table.rs");
}
