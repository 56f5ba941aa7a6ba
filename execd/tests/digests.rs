//! `op-digest` as Pacemaker computes it: for every start op recorded in Pacemaker's scheduler
//! cases (../shared/scheduler-cases/xml), the digest of the primitive's instance attributes
//! must equal the recorded one. Some cases change parameters on purpose after the op ran
//! (that is what they test), so a small share differs; the rest must match.

use std::collections::BTreeMap;

#[test]
fn op_digests_match_pacemakers_recorded_ones() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/scheduler-cases/xml");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: {} not found", dir.display());
        return;
    };
    let (mut total, mut equal) = (0, 0);
    for f in rd.flatten() {
        let Ok(text) = std::fs::read_to_string(f.path()) else { continue };
        let Ok(doc) = cib::xml::parse(&text) else { continue };
        let mut params: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for p in doc.root.descendants().into_iter().filter(|e| e.name == "primitive") {
            let mut m = BTreeMap::new();
            for ia in p.children_named("instance_attributes") {
                for nv in ia.children_named("nvpair") {
                    if let (Some(k), Some(v)) = (nv.attr("name"), nv.attr("value")) {
                        m.insert(k.to_string(), v.to_string());
                    }
                }
            }
            params.insert(p.attr("id").unwrap_or_default().to_string(), m);
        }
        for r in doc.root.descendants().into_iter().filter(|e| e.name == "lrm_resource") {
            let Some(p) = r.attr("id").and_then(|id| params.get(id)) else { continue };
            for op in r.children_named("lrm_rsc_op").filter(|o| o.attr("operation") == Some("start")) {
                let Some(d) = op.attr("op-digest") else { continue };
                total += 1;
                if execd::history::op_digest(p) == d {
                    equal += 1;
                }
            }
        }
    }
    eprintln!("op-digest equal to Pacemaker's in {equal} of {total} recorded start ops");
    assert!(total > 1000);
    assert!(equal * 100 >= total * 90, "{equal} of {total}");
}
