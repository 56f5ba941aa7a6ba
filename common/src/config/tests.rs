//! Parser tests: a realistic file, defaults, runtime timers, each error with its line, warnings.

use std::net::IpAddr;
use std::path::PathBuf;

use super::*;

/// A corosync.conf as pcs writes it for a 3-node knet cluster, plus halo's section.
pub(super) const REALISTIC: &str = "\
# Please read the corosync.conf.5 manual page
totem {
    version: 2
    cluster_name: webcluster
    transport: knet
    crypto_cipher: aes256
    crypto_hash: sha256
    token: 3000

    interface {
        linknumber: 0
        knet_transport: udp
    }
}

nodelist {
    node {
        ring0_addr: 192.168.122.11
        ring1_addr: 10.0.0.11
        name: alpha
        nodeid: 1
    }

    node {
        ring0_addr: 192.168.122.12
        ring1_addr: 10.0.0.12
        name: beta
        nodeid: 2
    }

    node {
        ring0_addr: 192.168.122.13
        ring1_addr: 10.0.0.13
        name: gamma
        nodeid: 3
        quorum_votes: 2
    }
}

quorum {
    provider: corosync_votequorum
    wait_for_all: 1
    auto_tie_breaker: 1
    auto_tie_breaker_node: 3 1
}

logging {
    to_logfile: yes
    logfile: /var/log/cluster/corosync.log
    to_syslog: yes
    timestamp: on
    logger_subsys {
        subsys: QUORUM
        debug: off
    }
}

halo {
    state_dir: /srv/halo/state
    run_dir: /srv/halo/run
    agents_dir: /srv/halo/agents
}
";

fn ok(text: &str) -> ParsedConfig {
    match parse(text) {
        Ok(p) => p,
        Err(e) => panic!("unexpected error: {e}\n{text}"),
    }
}

fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(p) => panic!("expected an error, got {:?}", p.config),
        Err(e) => e,
    }
}

/// A minimal valid file with `n` nodes, `totem_extra` and `extra` spliced in.
fn nodes_conf(n: u32, totem_extra: &str, extra: &str) -> String {
    let mut s = format!("totem {{\n    cluster_name: c\n{totem_extra}}}\nnodelist {{\n");
    for i in 1..=n {
        s.push_str(&format!("    node {{\n        nodeid: {i}\n        name: n{i}\n        ring0_addr: 10.0.0.{i}\n    }}\n"));
    }
    s.push_str("}\n");
    s.push_str(extra);
    s
}

#[test]
fn realistic_corosync_conf() {
    let p = ok(REALISTIC);
    let c = &p.config;
    assert_eq!(c.totem.cluster_name, "webcluster");
    assert_eq!(c.totem.token_ms, 3000);
    assert_eq!(c.totem.crypto_cipher, "aes256");
    assert_eq!(c.totem.crypto_hash, "sha256");
    assert_eq!(c.totem.transport, Transport::Knet);
    assert_eq!(c.totem.netmtu(), 65536);
    assert_eq!(c.nodes.len(), 3);
    assert_eq!(c.nodes[2].name, "gamma");
    assert_eq!(c.nodes[2].quorum_votes, 2);
    assert_eq!(c.nodes[0].ring1_addr, Some("10.0.0.11".parse().unwrap()));
    assert_eq!(c.expected_votes(), 4);
    assert_eq!(c.quorum.auto_tie_breaker_node, TieBreaker::List(vec![3, 1]));
    assert!(c.wait_for_all());
    assert!(c.logging.to_logfile && c.logging.timestamp && c.logging.to_stderr);
    assert_eq!(c.logging.logfile, Some(PathBuf::from("/var/log/cluster/corosync.log")));
    assert_eq!(c.halo.state_dir, PathBuf::from("/srv/halo/state"));
    assert_eq!(c.halo.log_dir, PathBuf::from("/var/log/halo"));
    assert_eq!(c.halo.agents_dir, Some(PathBuf::from("/srv/halo/agents")));
    assert_eq!(c.runtime_token_ms(), 3650);
    assert_eq!(c.consensus_ms(), 4380);
    let lines: Vec<usize> = p.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, vec![10, 50, 52], "{:#?}", p.warnings);
    assert!(p.warnings[0].message.contains("interface"));
    assert!(p.warnings[1].message.contains("logging.to_syslog") && p.warnings[1].message.contains("does not use"));
    assert!(p.warnings[2].message.contains("logger_subsys"));
}

#[test]
fn defaults() {
    let p = ok(&nodes_conf(2, "", ""));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let c = p.config;
    assert_eq!(c.totem, Totem { cluster_name: "c".into(), ..Totem::default() });
    assert_eq!(c.totem.token_ms, 1000);
    assert_eq!(c.totem.token_coefficient_ms, 650);
    assert_eq!(c.totem.consensus_ms, None);
    assert_eq!((c.totem.join_ms, c.totem.merge_ms), (50, 200));
    assert_eq!((c.totem.max_messages, c.totem.window_size), (17, 50));
    assert_eq!(c.totem.token_retransmits_before_loss_const, 4);
    assert_eq!(c.totem.crypto_cipher, "chacha20poly1305");
    assert_eq!(c.totem.port, 5405);
    assert_eq!(c.quorum, Quorum::default());
    assert_eq!(c.quorum.last_man_standing_window_ms, 10_000);
    assert_eq!(c.logging, Logging::default());
    assert_eq!(c.halo, HaloPaths::default());
    assert_eq!(c.halo.authkey, PathBuf::from("/etc/halo/authkey"));
    assert_eq!(c.nodes[1].quorum_votes, 1);
    // Two nodes: no coefficient.
    assert_eq!(c.runtime_token_ms(), 1000);
    assert_eq!(c.consensus_ms(), 1200);
    assert_eq!(c.token_retransmit_ms(), 238);
    assert_eq!(c.expected_votes(), 2);
    assert!(!c.wait_for_all());
}

#[test]
fn runtime_token_examples_from_the_notes() {
    let c = ok(&nodes_conf(3, "", "")).config;
    assert_eq!(c.runtime_token_ms(), 1650);
    assert_eq!(c.consensus_ms(), 1980);
    assert_eq!(c.token_retransmit_ms(), 392);
    let c = ok(&nodes_conf(3, "    token: 3000\n", "")).config;
    assert_eq!(c.runtime_token_ms(), 3650);
    assert_eq!(c.consensus_ms(), 4380);
    assert_eq!(c.token_retransmit_ms(), 869);
    assert_eq!(c.hold_ms(), 685);
    let c = ok(&nodes_conf(5, "    token_coefficient: 100\n    consensus: 5000\n", "")).config;
    assert_eq!(c.runtime_token_ms(), 1300);
    assert_eq!(c.consensus_ms(), 5000);
}

#[test]
fn node_lookups() {
    let c = ok(REALISTIC).config;
    assert_eq!(c.node_by_id(2).map(|n| n.name.as_str()), Some("beta"));
    assert_eq!(c.node_by_id(9), None);
    assert_eq!(c.node_by_name("gamma").map(|n| n.nodeid), Some(3));
    assert_eq!(c.local_node("10.0.0.12").map(|n| n.nodeid), Some(2));
    assert_eq!(c.local_node("192.168.122.11").map(|n| n.nodeid), Some(1));
    assert_eq!(c.local_node("alpha").map(|n| n.nodeid), Some(1));
    assert_eq!(c.local_node("10.9.9.9"), None);
    assert_eq!(c.local_node("delta"), None);
}

#[test]
fn quorum_options() {
    let two = nodes_conf(2, "", "quorum {\n    provider: corosync_votequorum\n    two_node: 1\n}\n");
    let c = ok(&two).config;
    assert!(c.two_node() && c.wait_for_all(), "two_node implies wait_for_all");
    let c = ok(&two.replace("two_node: 1", "two_node: 1\n    wait_for_all: 0")).config;
    assert!(c.two_node() && !c.wait_for_all(), "explicit wait_for_all wins");
    let c = ok(&nodes_conf(4, "", "quorum {\n expected_votes: 7\n last_man_standing: on\n last_man_standing_window: 2500\n auto_tie_breaker: yes\n auto_tie_breaker_node: highest\n}\n")).config;
    assert_eq!(c.expected_votes(), 7);
    assert!(c.quorum.last_man_standing && c.quorum.auto_tie_breaker);
    assert_eq!(c.quorum.last_man_standing_window_ms, 2500);
    assert_eq!(c.quorum.auto_tie_breaker_node, TieBreaker::Highest);
}

#[test]
fn two_node_with_three_nodes_is_a_warning() {
    let p = ok(&nodes_conf(3, "", "quorum {\n    two_node: 1\n}\n"));
    assert!(p.config.quorum.two_node, "stored as written");
    assert!(!p.config.two_node() && !p.config.wait_for_all(), "but not in force");
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert_eq!(p.warnings[0].line, 22);
    assert!(p.warnings[0].message.contains("3 nodes"));
}

#[test]
fn unknown_sections_and_keys_are_warnings_with_lines() {
    let text = nodes_conf(
        2,
        "    frobnicate: 3\n    token_warning: 75\n",
        "system {\n    sched_rr: yes\n}\nwidgets {\n}\nstray: 1\nquorum {\n    votes: 1\n}\nhalo {\n    colour: blue\n}\n",
    );
    let p = ok(&text);
    let got: Vec<(usize, &str)> = p.warnings.iter().map(|w| (w.line, w.message.as_str())).collect();
    let expect: [(usize, &str); 7] = [
        (3, "unknown key totem.frobnicate"),
        (4, "totem.token_warning is a Corosync option halo does not use"),
        (18, "section system { } is a Corosync section halo does not use"),
        (21, "unknown section widgets"),
        (23, "unknown top-level key 'stray'"),
        (25, "quorum.votes is a Corosync option"),
        (28, "unknown key halo.colour"),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for ((line, msg), (want_line, piece)) in got.iter().zip(expect) {
        assert_eq!(*line, want_line, "{msg}");
        assert!(msg.contains(piece), "'{piece}' not in '{msg}'");
    }
}

#[test]
fn duplicate_keys_warn_and_the_last_wins() {
    let p = ok(&nodes_conf(2, "    token: 2000\n    token: 1500\n", ""));
    assert_eq!(p.config.totem.token_ms, 1500);
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(p.warnings[0].line, 4);
    assert!(p.warnings[0].message.contains("first at line 3"));
}

#[test]
fn syntax_variants() {
    // `key = value`, CRLF, indentation with tabs, one-line empty sections, IPv6 addresses.
    let text = "totem {\r\n\tcluster_name = v6\r\n\tinterface { }\r\n}\r\nnodelist {\r\n  node {\r\n    nodeid: 1\r\n    ring0_addr: fe80::1\r\n  }\r\n  node {\r\n    nodeid: 2\r\n    ring0_addr: 2001:db8::2\r\n  }\r\n}\r\n";
    let p = ok(text);
    assert_eq!(p.config.totem.cluster_name, "v6");
    assert_eq!(p.config.nodes[1].ring0_addr, "2001:db8::2".parse::<IpAddr>().unwrap());
    assert_eq!(p.config.nodes[0].name, "node1", "a nameless node is named after its id");
    let lines: Vec<usize> = p.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, vec![3, 6, 10]);
}

#[test]
fn totem_keyfile_is_the_authkey_unless_halo_sets_one() {
    let c = ok(&nodes_conf(2, "    keyfile: /etc/corosync/authkey\n", "")).config;
    assert_eq!(c.halo.authkey, PathBuf::from("/etc/corosync/authkey"));
    let c = ok(&nodes_conf(2, "    keyfile: /etc/corosync/authkey\n", "halo {\n authkey: /k\n}\n")).config;
    assert_eq!(c.halo.authkey, PathBuf::from("/k"));
}

#[test]
fn cipher_none_is_accepted_with_a_warning() {
    let p = ok(&nodes_conf(2, "    crypto_cipher: none\n    transport: udpu\n", ""));
    assert_eq!(p.config.totem.crypto_cipher, "none");
    assert_eq!(p.config.totem.transport, Transport::Udpu);
    assert_eq!(p.config.totem.netmtu(), 1500);
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(p.warnings[0].line, 3);
}

/// (name, file, line, a piece of the message) for every refusal.
fn error_cases() -> Vec<(&'static str, String, usize, &'static str)> {
    let ext = |t: &str| nodes_conf(2, t, "");
    vec![
        ("non-numeric token", ext("    token: fast\n"), 3, "totem.token"),
        ("token with a trailing comment", ext("    token: 1000 # ms\n"), 3, "own line"),
        ("negative token", ext("    token: -5\n"), 3, "whole number"),
        ("zero token", ext("    token: 0\n"), 3, "from 1"),
        ("unknown cipher", ext("    crypto_cipher: rot13\n"), 3, "chacha20poly1305"),
        ("unknown hash", ext("    crypto_hash: crc32\n"), 3, "sha256"),
        ("unknown transport", ext("    transport: carrier-pigeon\n"), 3, "knet"),
        ("port out of range", ext("    port: 70000\n"), 3, "65535"),
        ("invalid ip", nodes_conf(2, "", "").replace("10.0.0.2", "10.0.0.300"), 13, "IPv4 or IPv6"),
        ("host name", nodes_conf(2, "", "").replace("10.0.0.1", "alpha.example"), 8, "host names"),
        ("nodeid 0", nodes_conf(2, "", "").replace("nodeid: 2", "nodeid: 0"), 11, "nonzero"),
        ("duplicate nodeid", nodes_conf(2, "", "").replace("nodeid: 2", "nodeid: 1"), 11, "first at line 6"),
        ("duplicate name", nodes_conf(2, "", "").replace("name: n2", "name: n1"), 12, "node name 'n1'"),
        ("duplicate address", nodes_conf(2, "", "").replace("10.0.0.2", "10.0.0.1"), 13, "address '10.0.0.1'"),
        ("ring1 reuses another's ring0", nodes_conf(2, "", "").replace("ring0_addr: 10.0.0.2", "ring0_addr: 10.0.0.2\n        ring1_addr: 10.0.0.1"), 14, "first at line 8"),
        ("missing nodelist", "totem {\n  cluster_name: x\n}\n\nquorum {\n}\n".to_string(), 6, "nodelist"),
        ("empty nodelist", "nodelist {\n}\n".to_string(), 1, "node { }"),
        ("missing ring0_addr", nodes_conf(2, "", "").replace("        ring0_addr: 10.0.0.2\n", ""), 10, "ring0_addr of node 2"),
        ("missing nodeid", nodes_conf(2, "", "").replace("        nodeid: 2\n", ""), 10, "nodeid"),
        ("extra closing brace", nodes_conf(2, "", "}\n"), 16, "closes no open section"),
        ("unclosed section", nodes_conf(2, "", "quorum {\n  two_node: 1\n"), 16, "never closed"),
        ("unclosed node", "nodelist {\n  node {\n    nodeid: 1\n}\n".to_string(), 1, "never closed"),
        ("expected_votes 0", nodes_conf(2, "", "quorum {\n    expected_votes: 0\n}\n"), 17, "at least 1"),
        ("consensus not above runtime token", nodes_conf(3, "    consensus: 1650\n", ""), 3, "runtime token 1650"),
        ("unknown quorum provider", nodes_conf(2, "", "quorum {\n    provider: corosync_qdevice\n}\n"), 17, "votequorum"),
        ("tie breaker names an unknown node", nodes_conf(2, "", "quorum {\n    auto_tie_breaker_node: 1 9\n}\n"), 17, "'9'"),
        ("tie breaker junk", nodes_conf(2, "", "quorum {\n    auto_tie_breaker_node: first\n}\n"), 17, "lowest"),
        ("bad boolean", nodes_conf(2, "", "quorum {\n    two_node: maybe\n}\n"), 17, "yes/no"),
        ("lms with 2 votes", nodes_conf(2, "", "quorum {\n    last_man_standing: 1\n}\n").replace("name: n2", "name: n2\n        quorum_votes: 2"), 18, "quorum_votes 1"),
        ("atb and lms, odd nodes, no wfa", nodes_conf(3, "", "quorum {\n  last_man_standing: 1\n  auto_tie_breaker: 1\n}\n"), 23, "wait_for_all"),
        ("all votes zero", nodes_conf(1, "", "").replace("name: n1", "name: n1\n        quorum_votes: 0"), 4, "expected_votes would be 0"),
        ("malformed line", ext("    just some words\n"), 3, "cannot read"),
        ("value then brace", ext("    token: 5 }\n"), 3, "own line"),
        ("bad section name", "totem stuff {\n}\n".to_string(), 1, "section name"),
        ("bad key", ext("    two words: 1\n"), 3, "key name"),
        ("empty cluster name", ext("    cluster_name:\n"), 3, "totem.cluster_name"),
        ("empty path", nodes_conf(2, "", "halo {\n  run_dir:\n}\n"), 17, "path"),
        ("deep nesting", "a {\nb {\nc {\nd {\ne {\nf {\ng {\nh {\ni {\n".to_string(), 9, "nested"),
    ]
}

#[test]
fn every_error_has_its_line_and_hint() {
    for (name, text, line, piece) in error_cases() {
        let e = err(&text);
        let msg = e.to_string();
        assert_eq!(e.line(), Some(line), "{name}: {msg}\n{text}");
        assert!(msg.contains(piece), "{name}: '{piece}' not in '{msg}'");
        assert!(msg.starts_with(&format!("line {line}: ")), "{name}: {msg}");
        assert!(!msg.contains('\n'), "{name}: one line: {msg}");
    }
}

#[test]
fn consensus_rules_depend_on_node_count() {
    // With two nodes there is no coefficient and consensus may be anything positive.
    assert!(parse(&nodes_conf(2, "    consensus: 500\n", "")).is_ok());
    // Above the runtime token with three nodes: accepted.
    assert_eq!(ok(&nodes_conf(3, "    consensus: 1651\n", "")).config.consensus_ms(), 1651);
}

#[test]
fn non_utf8_bytes_are_refused_with_their_line() {
    let mut bytes = nodes_conf(2, "", "").into_bytes();
    bytes.extend_from_slice(b"logging {\n  logfile: /tmp/\xff\n}\n");
    let e = parse_bytes(&bytes).unwrap_err();
    assert_eq!(e.line(), Some(17));
    assert!(e.to_string().contains("UTF-8"));
}

#[test]
fn oversized_input_is_refused() {
    let big = "#".repeat(MAX_CONFIG_BYTES + 1);
    assert!(matches!(parse(&big), Err(ConfigError::TooLarge { .. })));
}

#[test]
fn load_reports_the_path() {
    let missing = std::path::Path::new("/nonexistent/halo/corosync.conf");
    let e = ClusterConfig::load(missing).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/halo/corosync.conf"), "{e}");
    let dir = std::env::temp_dir().join(format!("halo-common-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.conf");
    std::fs::write(&file, nodes_conf(2, "    token: x\n", "")).unwrap();
    let e = ClusterConfig::load(&file).unwrap_err();
    assert_eq!(e.line(), Some(3));
    assert!(e.to_string().starts_with(&format!("{}: line 3: ", file.display())), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn round_trip_of_the_realistic_file() {
    let c = ok(REALISTIC).config;
    let text = c.to_corosync_conf();
    let again = ok(&text);
    assert_eq!(again.config, c, "{text}");
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(c.validate(), Ok(vec![]));
}

#[test]
fn round_trip_with_every_option_set() {
    let mut c = ok(&nodes_conf(4, "", "")).config;
    c.totem = Totem {
        cluster_name: "all".into(),
        token_ms: 700,
        token_coefficient_ms: 10,
        consensus_ms: Some(900),
        join_ms: 60,
        merge_ms: 250,
        max_messages: 20,
        window_size: 60,
        token_retransmits_before_loss_const: 10,
        crypto_cipher: "aes128".into(),
        crypto_hash: "sha512".into(),
        transport: Transport::Udp,
        netmtu: Some(9000),
        port: 6000,
    };
    c.nodes[0].ring1_addr = Some("::1".parse().unwrap());
    c.nodes[3].quorum_votes = 3;
    c.quorum = Quorum {
        provider: DEFAULT_QUORUM_PROVIDER.into(),
        expected_votes: Some(6),
        two_node: false,
        wait_for_all: Some(false),
        last_man_standing: false,
        last_man_standing_window_ms: 123,
        auto_tie_breaker: true,
        auto_tie_breaker_node: TieBreaker::List(vec![4, 2]),
    };
    c.logging = Logging { to_stderr: false, to_logfile: true, logfile: Some("/l/x.log".into()), debug: true, timestamp: true };
    c.halo = HaloPaths {
        state_dir: "/s".into(),
        run_dir: "/r".into(),
        log_dir: "/l".into(),
        agents_dir: Some("/a".into()),
        authkey: "/k".into(),
        controller: false,
    };
    let again = ok(&c.to_corosync_conf());
    assert_eq!(again.config, c);
}

#[test]
fn validate_catches_a_bad_config_built_in_code() {
    let mut c = ok(&nodes_conf(3, "", "")).config;
    c.nodes[2].nodeid = 1;
    assert!(matches!(c.validate(), Err(ConfigError::Duplicate { what: "nodeid", .. })));
}
