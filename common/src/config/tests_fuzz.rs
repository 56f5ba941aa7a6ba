//! Property tests with a tiny seeded PRNG (no extra dependencies): the parser
//! never panics, every accepted file satisfies the config invariants, and
//! writing then parsing gives the same config back. A failure prints its seed.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::tests::REALISTIC;
use super::*;

/// xorshift64*: enough randomness for mutation testing, fully reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Properties every accepted config has, whatever the input was.
fn check_invariants(c: &ClusterConfig, seed: u64) {
    assert!(!c.nodes.is_empty(), "seed {seed}: no nodes");
    let ids: BTreeSet<u32> = c.nodes.iter().map(|n| n.nodeid).collect();
    assert_eq!(ids.len(), c.nodes.len(), "seed {seed}: duplicate ids");
    assert!(!ids.contains(&0), "seed {seed}: nodeid 0");
    let names: BTreeSet<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names.len(), c.nodes.len(), "seed {seed}: duplicate names");
    let mut addrs = BTreeSet::new();
    for n in &c.nodes {
        assert!(addrs.insert(n.ring0_addr), "seed {seed}: duplicate address");
        if let Some(a) = n.ring1_addr {
            assert!(addrs.insert(a), "seed {seed}: duplicate address");
        }
    }
    assert!(c.expected_votes() >= 1, "seed {seed}: expected votes 0");
    assert!(c.totem.token_ms >= 1 && c.totem.max_messages >= 1 && c.totem.window_size >= 1);
    if c.nodes.len() >= 3 {
        assert!(c.consensus_ms() > c.runtime_token_ms(), "seed {seed}: consensus not above token");
    }
    assert!(CIPHERS.contains(&c.totem.crypto_cipher.as_str()), "seed {seed}");
    assert!(HASHES.contains(&c.totem.crypto_hash.as_str()), "seed {seed}");
    if let TieBreaker::List(list) = &c.quorum.auto_tie_breaker_node {
        assert!(list.iter().all(|id| ids.contains(id)), "seed {seed}: unknown tie breaker");
    }
    // Derived timers never panic, even at extremes.
    let _ = (c.token_retransmit_ms(), c.hold_ms(), c.consensus_ms(), c.wait_for_all());
}

fn check_round_trip(c: &ClusterConfig, seed: u64) {
    let text = c.to_corosync_conf();
    match parse(&text) {
        Ok(again) => {
            assert_eq!(&again.config, c, "seed {seed}: round trip changed the config\n{text}");
            assert_eq!(again.config.to_corosync_conf(), text, "seed {seed}: writer not stable");
        }
        Err(e) => panic!("seed {seed}: written config refused: {e}\n{text}"),
    }
}

/// Whatever the outcome, it is a value: an error has a line inside the file and one line of text.
fn check_outcome(bytes: &[u8], seed: u64) -> Option<ClusterConfig> {
    match parse_bytes(bytes) {
        Ok(p) => {
            check_invariants(&p.config, seed);
            let lines = bytes.split(|&b| b == b'\n').count();
            for w in &p.warnings {
                assert!(w.line >= 1 && w.line <= lines, "seed {seed}: warning line {}", w.line);
            }
            Some(p.config)
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "seed {seed}: multi-line error {msg:?}");
            if let Some(line) = e.line() {
                let lines = bytes.split(|&b| b == b'\n').count().max(1);
                assert!(line >= 1 && line <= lines, "seed {seed}: line {line} of {lines}: {msg}");
            }
            None
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    const ALPHABET: &[u8] = b"{}:=#\n\r \tabcnode12345.totemnodelistquorum_addr";
    for seed in 0..3000u64 {
        let mut rng = Rng::new(seed);
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len)
            .map(|_| if rng.chance(4) { rng.next() as u8 } else { *rng.pick(ALPHABET) })
            .collect();
        let _ = check_outcome(&bytes, seed);
    }
}

const WORDS: &[&str] = &[
    "", "0", "1", "-1", "4294967295", "4294967296", "18446744073709551615", "99999999999999999999",
    "yes", "no", "none", "aes256", "chacha20poly1305", "fe80::1", "10.0.0.1", "127.0.0.1",
    "lowest", "highest", "1 2 3", "3 1", "{", "}", "# x", "node", "totem {", "nodelist {",
    "quorum {", "two_node: 1", "consensus: 1", "nodeid: 0", "ring0_addr: 192.168.122.11",
    "é", "\u{0}", "name: alpha",
];

fn mutate(text: &mut Vec<u8>, rng: &mut Rng) {
    let lines = |t: &Vec<u8>| -> Vec<Vec<u8>> { t.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect() };
    match rng.below(7) {
        0 => {
            // insert a word at a random byte
            let at = rng.below(text.len() + 1);
            let w = rng.pick(WORDS).as_bytes().to_vec();
            text.splice(at..at, w);
        }
        1 => {
            // delete a few bytes
            let at = rng.below(text.len() + 1);
            let end = (at + 1 + rng.below(8)).min(text.len());
            if at < end {
                text.drain(at..end);
            }
        }
        2 | 3 => {
            // replace the value of a random `key: value` line
            let mut ls = lines(text);
            let i = rng.below(ls.len());
            if let Some(colon) = ls[i].iter().position(|&b| b == b':') {
                ls[i].truncate(colon + 1);
                ls[i].push(b' ');
                ls[i].extend_from_slice(rng.pick(WORDS).as_bytes());
            }
            *text = ls.join(&b'\n');
        }
        4 => {
            // duplicate a line
            let mut ls = lines(text);
            let i = rng.below(ls.len());
            let l = ls[i].clone();
            ls.insert(rng.below(ls.len() + 1), l);
            *text = ls.join(&b'\n');
        }
        5 => {
            // delete a line
            let mut ls = lines(text);
            if !ls.is_empty() {
                ls.remove(rng.below(ls.len()));
            }
            *text = ls.join(&b'\n');
        }
        _ => {
            // swap two lines
            let mut ls = lines(text);
            let (a, b) = (rng.below(ls.len()), rng.below(ls.len()));
            ls.swap(a, b);
            *text = ls.join(&b'\n');
        }
    }
}

#[test]
fn mutations_of_a_valid_config_never_panic_and_accepted_ones_round_trip() {
    let mut accepted = 0;
    for seed in 0..3000u64 {
        let mut rng = Rng::new(seed);
        let mut text = REALISTIC.as_bytes().to_vec();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut text, &mut rng);
        }
        if let Some(c) = check_outcome(&text, seed) {
            accepted += 1;
            check_round_trip(&c, seed);
        }
    }
    // The mutations must leave a good share of files valid, or the round-trip check tests nothing.
    assert!(accepted > 300, "only {accepted} mutated files accepted");
}

fn random_config(rng: &mut Rng) -> ClusterConfig {
    let n = 1 + rng.below(6);
    let mut ids = BTreeSet::new();
    while ids.len() < n {
        let range = if rng.chance(3) { 1000 } else { 8 };
        ids.insert(1 + rng.below(range) as u32);
    }
    let all_one_vote = rng.chance(2);
    let nodes: Vec<NodeEntry> = ids
        .iter()
        .map(|&id| NodeEntry {
            nodeid: id,
            name: format!("node-{id}"),
            ring0_addr: IpAddr::V4(Ipv4Addr::new(10, (id >> 8) as u8, id as u8, 1)),
            ring1_addr: rng.chance(2).then(|| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, id as u16))),
            quorum_votes: if all_one_vote { 1 } else { rng.below(4) as u32 + 1 },
        })
        .collect();
    let mut c = ClusterConfig { nodes, ..ClusterConfig::default() };
    let t = &mut c.totem;
    t.cluster_name = format!("c{}", rng.below(100));
    t.token_ms = 1 + rng.below(10_000) as u64;
    t.token_coefficient_ms = rng.below(1000) as u64;
    t.join_ms = 1 + rng.below(500) as u64;
    t.merge_ms = 1 + rng.below(500) as u64;
    t.max_messages = 1 + rng.below(100) as u32;
    t.window_size = 1 + rng.below(100) as u32;
    t.token_retransmits_before_loss_const = 1 + rng.below(10) as u32;
    t.crypto_cipher = rng.pick(CIPHERS).to_string();
    t.crypto_hash = rng.pick(HASHES).to_string();
    t.transport = *rng.pick(&[Transport::Knet, Transport::Udpu, Transport::Udp]);
    t.netmtu = rng.chance(2).then(|| 576 + rng.below(60_000) as u32);
    t.port = 1 + rng.below(65_535) as u16;
    if rng.chance(2) {
        let floor = if n >= 3 { c.runtime_token_ms() + 1 } else { 1 };
        c.totem.consensus_ms = Some(floor + rng.below(5000) as u64);
    }
    let q = &mut c.quorum;
    q.expected_votes = rng.chance(3).then(|| 1 + rng.below(20) as u32);
    q.two_node = rng.chance(3);
    q.wait_for_all = *rng.pick(&[None, Some(true), Some(false)]);
    q.last_man_standing = all_one_vote && rng.chance(2);
    q.last_man_standing_window_ms = 1 + rng.below(100_000) as u64;
    q.auto_tie_breaker = rng.chance(2);
    if q.auto_tie_breaker && q.last_man_standing && n % 2 == 1 {
        q.wait_for_all = Some(true);
    }
    q.auto_tie_breaker_node = match rng.below(3) {
        0 => TieBreaker::Lowest,
        1 => TieBreaker::Highest,
        _ => TieBreaker::List(ids.iter().copied().filter(|_| rng.chance(2)).chain(ids.first().copied()).collect::<BTreeSet<_>>().into_iter().rev().collect()),
    };
    let l = &mut c.logging;
    (l.to_stderr, l.to_logfile, l.debug, l.timestamp) = (rng.chance(2), rng.chance(2), rng.chance(2), rng.chance(2));
    l.logfile = rng.chance(2).then(|| format!("/var/log/x{}.log", rng.below(9)).into());
    let h = &mut c.halo;
    h.state_dir = format!("/tmp/sandbox/node{}/state", rng.below(9)).into();
    h.agents_dir = rng.chance(2).then(|| "relative/agents".into());
    h.controller = rng.chance(2);
    c
}

#[test]
fn random_configs_written_then_parsed_are_unchanged() {
    for seed in 0..500u64 {
        let mut rng = Rng::new(seed);
        let c = random_config(&mut rng);
        check_invariants(&c, seed);
        if let Err(e) = c.validate() {
            panic!("seed {seed}: generated config refused: {e}\n{}", c.to_corosync_conf());
        }
        check_round_trip(&c, seed);
    }
}
