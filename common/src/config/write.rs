//! Writing a [`ClusterConfig`] back in corosync.conf syntax. Every setting is
//! written explicitly (defaults included), except unset optional ones, so that
//! `parse(&c.to_corosync_conf())` gives `c` back for any config the parser produced.

use std::fmt::Write as _;
use std::path::Path;

use super::{ClusterConfig, TieBreaker};

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn show(p: &Path) -> std::borrow::Cow<'_, str> {
    p.to_string_lossy()
}

impl ClusterConfig {
    /// The config as corosync.conf text (plus halo's own keys and `halo { }` section).
    pub fn to_corosync_conf(&self) -> String {
        // Writing to a String cannot fail; the results are ignored on purpose.
        let mut o = String::new();
        let t = &self.totem;
        let _ = writeln!(o, "# halo cluster configuration (corosync.conf syntax)");
        let _ = writeln!(o, "totem {{");
        let _ = writeln!(o, "    version: 2");
        let _ = writeln!(o, "    cluster_name: {}", t.cluster_name);
        let _ = writeln!(o, "    transport: {}", t.transport);
        let _ = writeln!(o, "    token: {}", t.token_ms);
        let _ = writeln!(o, "    token_coefficient: {}", t.token_coefficient_ms);
        if let Some(c) = t.consensus_ms {
            let _ = writeln!(o, "    consensus: {c}");
        }
        let _ = writeln!(o, "    join: {}", t.join_ms);
        let _ = writeln!(o, "    merge: {}", t.merge_ms);
        let _ = writeln!(o, "    max_messages: {}", t.max_messages);
        let _ = writeln!(o, "    window_size: {}", t.window_size);
        let _ = writeln!(o, "    token_retransmits_before_loss_const: {}", t.token_retransmits_before_loss_const);
        let _ = writeln!(o, "    crypto_cipher: {}", t.crypto_cipher);
        let _ = writeln!(o, "    crypto_hash: {}", t.crypto_hash);
        if let Some(mtu) = t.netmtu {
            let _ = writeln!(o, "    netmtu: {mtu}");
        }
        let _ = writeln!(o, "    port: {}", t.port);
        let _ = writeln!(o, "}}\n");

        let _ = writeln!(o, "nodelist {{");
        for n in &self.nodes {
            let _ = writeln!(o, "    node {{");
            let _ = writeln!(o, "        nodeid: {}", n.nodeid);
            let _ = writeln!(o, "        name: {}", n.name);
            let _ = writeln!(o, "        ring0_addr: {}", n.ring0_addr);
            if let Some(a) = n.ring1_addr {
                let _ = writeln!(o, "        ring1_addr: {a}");
            }
            let _ = writeln!(o, "        quorum_votes: {}", n.quorum_votes);
            let _ = writeln!(o, "    }}");
        }
        let _ = writeln!(o, "}}\n");

        let q = &self.quorum;
        let _ = writeln!(o, "quorum {{");
        let _ = writeln!(o, "    provider: {}", q.provider);
        if let Some(e) = q.expected_votes {
            let _ = writeln!(o, "    expected_votes: {e}");
        }
        let _ = writeln!(o, "    two_node: {}", flag(q.two_node));
        if let Some(w) = q.wait_for_all {
            let _ = writeln!(o, "    wait_for_all: {}", flag(w));
        }
        let _ = writeln!(o, "    last_man_standing: {}", flag(q.last_man_standing));
        let _ = writeln!(o, "    last_man_standing_window: {}", q.last_man_standing_window_ms);
        let _ = writeln!(o, "    auto_tie_breaker: {}", flag(q.auto_tie_breaker));
        let atb = match &q.auto_tie_breaker_node {
            TieBreaker::Lowest => "lowest".to_string(),
            TieBreaker::Highest => "highest".to_string(),
            TieBreaker::List(ids) => ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
        };
        let _ = writeln!(o, "    auto_tie_breaker_node: {atb}");
        let _ = writeln!(o, "}}\n");

        let l = &self.logging;
        let _ = writeln!(o, "logging {{");
        let _ = writeln!(o, "    to_stderr: {}", yes_no(l.to_stderr));
        let _ = writeln!(o, "    to_logfile: {}", yes_no(l.to_logfile));
        if let Some(f) = &l.logfile {
            let _ = writeln!(o, "    logfile: {}", show(f));
        }
        let _ = writeln!(o, "    debug: {}", if l.debug { "on" } else { "off" });
        let _ = writeln!(o, "    timestamp: {}", if l.timestamp { "on" } else { "off" });
        let _ = writeln!(o, "}}\n");

        let h = &self.halo;
        let _ = writeln!(o, "halo {{");
        let _ = writeln!(o, "    state_dir: {}", show(&h.state_dir));
        let _ = writeln!(o, "    run_dir: {}", show(&h.run_dir));
        let _ = writeln!(o, "    log_dir: {}", show(&h.log_dir));
        if let Some(a) = &h.agents_dir {
            let _ = writeln!(o, "    agents_dir: {}", show(a));
        }
        let _ = writeln!(o, "    authkey: {}", show(&h.authkey));
        if !h.controller {
            let _ = writeln!(o, "    controller: off");
        }
        let _ = writeln!(o, "}}");
        o
    }
}
