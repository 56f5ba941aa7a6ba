//! The JSON contract scripts rely on: exactly the documented keys, with the values the
//! text status shows.

mod common;

use std::collections::BTreeSet;

use common::{case_cib, golden, now_of};
use serde_json::{json, Value};
use status::{render, Format, Quorum, StatusInput};

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().expect("an object").keys().map(String::as_str).collect()
}

fn web_cluster(input: &StatusInput) -> Value {
    serde_json::from_str(&render(&case_cib("web-cluster"), input, Format::Json)).expect("valid JSON")
}

fn now() -> chrono::NaiveDateTime {
    now_of(&golden("web-cluster.crm_mon.txt"))
}

#[test]
fn exactly_the_contract_keys() {
    let v = web_cluster(&StatusInput::new(now()));
    assert_eq!(keys(&v), BTreeSet::from(["dc", "quorate", "nodes", "resources", "failed_actions"]));
    for n in v["nodes"].as_array().unwrap() {
        assert_eq!(keys(n), BTreeSet::from(["name", "id", "state", "dc", "standby", "maintenance"]));
    }
    for r in v["resources"].as_array().unwrap() {
        assert_eq!(keys(r), BTreeSet::from(["id", "agent", "role", "nodes", "failcount", "managed"]));
    }
    let failed: Value = serde_json::from_str(&render(&case_cib("failed-monitor"), &StatusInput::new(now()), Format::Json)).unwrap();
    for a in failed["failed_actions"].as_array().unwrap() {
        assert_eq!(keys(a), BTreeSet::from(["resource", "op", "interval_ms", "node", "rc", "status", "reason"]));
    }
}

#[test]
fn web_cluster_values() {
    let v = web_cluster(&StatusInput::new(now()));
    assert_eq!(v["dc"], json!("node2"));
    assert_eq!(v["quorate"], json!(true));
    assert_eq!(
        v["nodes"],
        json!([
            {"name": "node1", "id": "1", "state": "unclean", "dc": false, "standby": false, "maintenance": false},
            {"name": "node2", "id": "2", "state": "online", "dc": true, "standby": false, "maintenance": false},
            {"name": "node3", "id": "3", "state": "online", "dc": false, "standby": false, "maintenance": false},
        ])
    );
    assert_eq!(
        v["resources"],
        json!([
            {"id": "fence-all", "agent": "stonith:fence_dummy", "role": "Started", "nodes": ["node3"], "failcount": 0, "managed": true},
            {"id": "web-vip", "agent": "ocf:heartbeat:IPaddr2", "role": "Started", "nodes": ["node1"], "failcount": 0, "managed": true},
            {"id": "web-server", "agent": "ocf:heartbeat:apache", "role": "Started", "nodes": ["node1"], "failcount": 0, "managed": true},
        ])
    );
    assert_eq!(v["failed_actions"], json!([]));
}

#[test]
fn membership_quorum_overrides_the_cib() {
    let mut input = StatusInput::new(now());
    input.quorum = Some(Quorum { quorate: false });
    assert_eq!(web_cluster(&input)["quorate"], json!(false));
    let text = render(&case_cib("web-cluster"), &input, Format::Text);
    assert!(text.contains("  * Current DC: node2 (version unknown) - partition WITHOUT quorum\n"));
}

#[test]
fn clone_instances_and_roles() {
    // A promotable clone: one entry per instance, by instance id, with its role.
    let cib = case_cib("bug-1572-1");
    let v: Value = serde_json::from_str(&render(&cib, &StatusInput::new(now()), Format::Json)).unwrap();
    let roles: Vec<(String, String, Vec<String>)> = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"].as_str().unwrap().starts_with("rsc_drbd_7788"))
        .map(|r| {
            let nodes = r["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
            (r["id"].as_str().unwrap().to_string(), r["role"].as_str().unwrap().to_string(), nodes)
        })
        .collect();
    assert_eq!(
        roles,
        vec![
            ("rsc_drbd_7788:0".to_string(), "Unpromoted".to_string(), vec!["arc-dknightlx".to_string()]),
            ("rsc_drbd_7788:1".to_string(), "Promoted".to_string(), vec!["arc-tkincaidlx.wsicorp.com".to_string()]),
        ]
    );
}

#[test]
fn no_dc_is_null() {
    let cib = case_cib("anti-colocation-order");
    let v: Value = serde_json::from_str(&render(&cib, &StatusInput::new(now()), Format::Json)).unwrap();
    assert_eq!(v["dc"], Value::Null);
    assert!(v["nodes"].as_array().unwrap().iter().all(|n| n["dc"] == json!(false)));
}
