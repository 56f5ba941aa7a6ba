//! The DC's attribute writer: when a transient node attribute reaches the CIB. Sans-IO:
//! updates and time go in, the values to write come out.
//!
//! Spec: CONTROLLER-NOTES §7.2-7.3 (Pacemaker's attrd). The dampening delay belongs to the
//! attribute (set with `attrd_updater -B … -d D` or changed with `-Y -d D`); every change
//! restarts it (a trailing debounce) and the value current when it expires is written; an
//! update that does not change the value does not restart it. Without a delay a change is
//! written at once.
//!
//! The values waiting out their delay live in the DC's writer (Pacemaker keeps every value
//! in every node's attrd). So that a DC change loses none, each node keeps its own dampened
//! attributes ([`OwnDamped`]) and hands them to every DC it joins: the new DC waits out the
//! delay again and writes the value (the same value again changes nothing in the CIB).

use std::collections::BTreeMap;

use proto::controld as pb;

/// The node side: this node's own attributes that have a dampening delay, the last update
/// of each with its delay, to hand again to a new DC.
#[derive(Debug, Default)]
pub struct OwnDamped {
    delays: BTreeMap<String, u64>,
    last: BTreeMap<String, pb::AttributeUpdate>,
}

impl OwnDamped {
    /// An update of one of this node's attributes, on its way to the DC.
    pub fn note(&mut self, a: &pb::AttributeUpdate) {
        if let Some(d) = a.dampen_ms {
            self.delays.insert(a.name.clone(), d);
        }
        let delay = self.delays.get(&a.name).copied().unwrap_or(0);
        if delay == 0 {
            self.last.remove(&a.name);
            return;
        }
        let value = match (self.last.get(&a.name), a.only_delay) {
            // A change of delay alone keeps the value it had.
            (Some(prev), true) => pb::AttributeUpdate { dampen_ms: Some(delay), only_delay: false, ..prev.clone() },
            (None, true) => return,
            (_, false) => pb::AttributeUpdate { dampen_ms: Some(delay), ..a.clone() },
        };
        self.last.insert(a.name.clone(), value);
    }

    /// The updates to hand to `dc` (a DC this node has just joined).
    pub fn for_dc(&self, dc: u32) -> Vec<pb::AttributeUpdate> {
        self.last.values().map(|a| pb::AttributeUpdate { dc, ..a.clone() }).collect()
    }
}

/// A node's attribute: (node id, name).
pub type AttrKey = (u32, String);

/// A value to write: `None` deletes the attribute.
pub type AttrValue = Option<String>;

#[derive(Debug, Default)]
pub struct AttrWriter {
    /// Dampening per attribute name (ms).
    delays: BTreeMap<String, u64>,
    /// Values waiting out their delay, and when it ends (monotonic ms).
    waiting: BTreeMap<AttrKey, (AttrValue, u64)>,
    /// What this writer last wrote (or let through) per attribute.
    written: BTreeMap<AttrKey, AttrValue>,
}

impl AttrWriter {
    /// An update at `now_ms`. `delay_ms`: the attribute's new delay, if the update sets
    /// one; `only_delay`: the update changes the delay, not the value. Returns the value to
    /// write now, if any.
    pub fn update(&mut self, now_ms: u64, key: AttrKey, value: AttrValue, delay_ms: Option<u64>, only_delay: bool) -> Option<(AttrKey, AttrValue)> {
        if let Some(d) = delay_ms {
            self.delays.insert(key.1.clone(), d);
        }
        if only_delay {
            return None;
        }
        let delay = self.delays.get(&key.1).copied().unwrap_or(0);
        if delay == 0 {
            self.waiting.remove(&key);
            self.written.insert(key.clone(), value.clone());
            return Some((key, value));
        }
        let current = self.waiting.get(&key).map(|(v, _)| v).or_else(|| self.written.get(&key));
        if current == Some(&value) {
            return None;
        }
        self.waiting.insert(key, (value, now_ms + delay));
        None
    }

    /// When the next delay ends.
    pub fn next_due(&self) -> Option<u64> {
        self.waiting.values().map(|&(_, t)| t).min()
    }

    /// The values whose delay has ended by `now_ms`, to write now.
    pub fn due(&mut self, now_ms: u64) -> Vec<(AttrKey, AttrValue)> {
        let keys: Vec<AttrKey> = self.waiting.iter().filter(|(_, (_, t))| *t <= now_ms).map(|(k, _)| k.clone()).collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some((v, _)) = self.waiting.remove(&k) {
                self.written.insert(k.clone(), v.clone());
                out.push((k, v));
            }
        }
        out
    }

    /// A node left: its values (written or waiting) are gone with it.
    pub fn forget_node(&mut self, node: u32) {
        self.waiting.retain(|(n, _), _| *n != node);
        self.written.retain(|(n, _), _| *n != node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> AttrKey {
        (1, name.to_string())
    }

    fn set(v: &str) -> AttrValue {
        Some(v.to_string())
    }

    #[test]
    fn changes_faster_than_the_delay_are_written_once_with_the_last_value() {
        // CONTROLLER-NOTES §11, scenario 33: dampening 5 s, changes at 0, 2 and 4 s.
        let mut w = AttrWriter::default();
        assert_eq!(w.update(0, key("pingd"), set("100"), Some(5_000), false), None);
        assert_eq!(w.update(2_000, key("pingd"), set("200"), None, false), None);
        assert_eq!(w.update(4_000, key("pingd"), set("300"), None, false), None);
        assert_eq!(w.next_due(), Some(9_000));
        assert!(w.due(8_999).is_empty());
        assert_eq!(w.due(9_000), vec![(key("pingd"), set("300"))]);
        assert_eq!(w.next_due(), None);
    }

    #[test]
    fn an_unchanged_value_does_not_restart_the_delay_nor_write_again() {
        let mut w = AttrWriter::default();
        w.update(0, key("a"), set("1"), Some(1_000), false);
        w.update(500, key("a"), set("1"), None, false);
        assert_eq!(w.due(1_000), vec![(key("a"), set("1"))]);
        assert_eq!(w.update(2_000, key("a"), set("1"), None, false), None, "already written");
        assert_eq!(w.next_due(), None);
    }

    #[test]
    fn a_node_keeps_its_dampened_values_for_the_next_dc() {
        let update = |name: &str, value: &str, delay: Option<u64>, only_delay: bool| pb::AttributeUpdate { dc: 1, node: 2, name: name.into(), value: value.into(), delete: false, dampen_ms: delay, only_delay };
        let mut own = OwnDamped::default();
        own.note(&update("plain", "1", None, false));
        own.note(&update("pingd", "100", Some(5_000), false));
        own.note(&update("pingd", "200", None, false));
        // A new delay alone keeps the value.
        own.note(&update("pingd", "ignored", Some(3_000), true));
        let again = own.for_dc(3);
        assert_eq!(again.len(), 1, "only dampened values wait in a DC: {again:?}");
        assert_eq!((again[0].dc, again[0].name.as_str(), again[0].value.as_str(), again[0].dampen_ms, again[0].only_delay), (3, "pingd", "200", Some(3_000), false));
        // The new DC, starting empty, waits out the delay and writes the value.
        let mut w = AttrWriter::default();
        let a = &again[0];
        assert_eq!(w.update(0, (a.node, a.name.clone()), Some(a.value.clone()), a.dampen_ms, a.only_delay), None);
        assert_eq!(w.due(3_000), vec![((2, "pingd".to_string()), set("200"))]);
        // A delay set back to 0: nothing waits in a DC any more.
        own.note(&update("pingd", "300", Some(0), false));
        assert!(own.for_dc(3).is_empty());
    }

    #[test]
    fn without_a_delay_changes_and_deletes_are_written_at_once() {
        let mut w = AttrWriter::default();
        assert_eq!(w.update(0, key("b"), set("x"), None, false), Some((key("b"), set("x"))));
        assert_eq!(w.update(1, key("b"), None, None, false), Some((key("b"), None)));
        // -Y changes only the delay; the next change waits it out.
        assert_eq!(w.update(2, key("b"), set("ignored"), Some(3_000), true), None);
        assert_eq!(w.update(3, key("b"), set("y"), None, false), None);
        assert_eq!(w.due(3_003), vec![(key("b"), set("y"))]);
        // The delay belongs to the attribute (its name), on every node.
        assert_eq!(w.update(4, (2, "b".into()), set("z"), None, false), None);
        w.forget_node(2);
        assert_eq!(w.next_due(), None);
    }
}
