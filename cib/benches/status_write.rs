//! What one status write costs each node on a large CIB: the DC's batch of results (a
//! `modify` of `<status>` naming 100 resources on each of 3 nodes) on a CIB of 1,000
//! primitives whose three `lrm_resources` hold 1,000 histories each. Per write: parsing
//! the write, applying and checking it (every replica), the patch for watchers (every
//! replica), and a follower applying that patch (every controller and fencer).
//! Run: `cargo bench -p halo-cib --bench status_write`.

use std::time::Instant;

use cib::ops::Op;

const RESOURCES: usize = 1000;
const NODES: usize = 3;

fn op(rsc: usize, node: usize, task: &str, call: usize) -> String {
    format!(
        r#"<lrm_rsc_op id="r{rsc}_last_0" operation_key="r{rsc}_{task}_0" operation="{task}" crm-debug-origin="do_update_resource" crm_feature_set="3.19.0" transition-key="{rsc}:1:0:0a1b2c3d" transition-magic="0:0;{rsc}:1:0:0a1b2c3d" exit-reason="" on_node="node{node}" call-id="{call}" rc-code="0" op-status="0" interval="0" last-rc-change="1700000000" exec-time="12" queue-time="0" op-digest="f2317cad3d54cec5d7d7aa7d0bf35cf8"/>"#
    )
}

fn history(node: usize, rscs: impl Iterator<Item = usize>, task: &str) -> String {
    let mut s = format!(
        r#"<node_state id="{node}" uname="node{node}" in_ccm="true" crmd="online" join="member" expected="member"><lrm id="{node}"><lrm_resources>"#
    );
    for r in rscs {
        s.push_str(&format!(r#"<lrm_resource id="r{r}" class="ocf" provider="heartbeat" type="Dummy">{}</lrm_resource>"#, op(r, node, task, r + 1)));
    }
    s.push_str("</lrm_resources></lrm></node_state>");
    s
}

fn cib_text() -> String {
    let mut s = String::from(
        r#"<cib admin_epoch="0" epoch="10" num_updates="0" validate-with="pacemaker-3.9" crm_feature_set="3.19.0" have-quorum="1" dc-uuid="1"><configuration><crm_config/><nodes>"#,
    );
    for n in 1..=NODES {
        s.push_str(&format!(r#"<node id="{n}" uname="node{n}"/>"#));
    }
    s.push_str("</nodes><resources>");
    for r in 0..RESOURCES {
        s.push_str(&format!(
            r#"<primitive id="r{r}" class="ocf" provider="heartbeat" type="Dummy"/>"#
        ));
    }
    s.push_str("</resources><constraints/></configuration><status>");
    for n in 1..=NODES {
        s.push_str(&history(n, 0..RESOURCES, "monitor"));
    }
    s.push_str("</status></cib>");
    s
}

fn write_text(round: usize, per_node: usize) -> String {
    let mut s = String::from("<status>");
    for n in 1..=NODES {
        let first = (round * per_node * NODES + (n - 1) * per_node) % RESOURCES;
        s.push_str(&history(n, first..first + per_node, "start"));
    }
    s.push_str("</status>");
    s
}

fn main() {
    let doc = cib::xml::parse(&cib_text()).expect("the bench's CIB parses");
    // A burst's batch, and the small write of results that trickle in.
    let only: Option<usize> = std::env::var("HALO_BENCH_PER_NODE")
        .ok()
        .and_then(|v| v.parse().ok());
    for per_node in [100, 10, 1]
        .into_iter()
        .filter(|p| only.is_none_or(|o| o == *p))
    {
        measure(&doc, per_node);
    }
}

fn measure(doc: &cib::xml::Document, per_node: usize) {
    let rounds = if std::env::var("HALO_BENCH_PER_NODE").is_ok() {
        200
    } else {
        10
    };
    let (mut parse_ms, mut apply_ms, mut diff_ms, mut wire_ms, mut follow_ms) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut current = doc.clone();
    let mut follower = doc.clone();
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    for round in 0..rounds {
        let text = write_text(round, per_node);
        let t = Instant::now();
        let write = cib::xml::parse(&text).expect("the write parses").root;
        parse_ms += ms(t);
        let t = Instant::now();
        let next = cib::ops::apply_to_valid(&current, &Op::Modify { xml: write })
            .expect("the write applies");
        apply_ms += ms(t);
        let t = Instant::now();
        let patch = cib::diff::diff(&current, &next);
        diff_ms += ms(t);
        let t = Instant::now();
        let patch = cib::xml::parse(&patch.to_xml())
            .expect("the patch parses")
            .root;
        wire_ms += ms(t);
        let t = Instant::now();
        cib::diff::apply_patch_in_place(&mut follower, &patch).expect("the patch applies");
        follow_ms += ms(t);
        current = next;
    }
    assert!(
        cib::ops::same(&current.root, &follower.root),
        "the follower's copy is the replica's"
    );
    let r = rounds as f64;
    println!("one status write ({} results) on a CIB of {RESOURCES} primitives and {} histories, mean of {rounds}:", NODES * per_node, RESOURCES * NODES);
    println!(
        "  parse the write {:.2} ms, apply + check {:.2} ms, patch for watchers {:.2} ms",
        parse_ms / r,
        apply_ms / r,
        diff_ms / r
    );
    println!(
        "  patch written and read {:.2} ms, a follower applying it {:.2} ms",
        wire_ms / r,
        follow_ms / r
    );
    println!(
        "  per replica {:.2} ms; per follower {:.2} ms",
        (parse_ms + apply_ms + diff_ms + wire_ms) / r,
        (wire_ms / 2.0 + follow_ms) / r
    );
}
