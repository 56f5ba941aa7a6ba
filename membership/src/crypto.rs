//! Packet protection for every totem datagram: authenticated encryption with
//! XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`) plus per-sender replay protection.
//! Sans-IO: the daemon calls [`PacketCrypto::seal`] before each send and
//! [`PacketCrypto::open`] on each received datagram; nothing here touches a socket or a clock.
//!
//! Datagram layout (integers little-endian, as in `wire`):
//!
//! ```text
//! offset  size  field
//!      0     2  magic "HT"
//!      2     1  version (1)
//!      3     4  key_id      (AuthKey::key_id(): which cluster key sealed this)
//!      7     4  sender      (nodeid)
//!     11     8  boot_epoch  (increases across restarts of the sender)
//!     19     8  counter     (per sender, strictly increasing within one boot epoch)
//!     27     n  ciphertext of the payload
//!   27+n    16  Poly1305 tag
//! ```
//!
//! The whole 27-byte header is the AEAD associated data, so every field of it is
//! authenticated. The 24-byte XChaCha20 nonce is `sender || boot_epoch || counter ||
//! [version, 0, 0, 0]`: unique for every datagram ever sealed under one key as long as
//! (a) each nodeid is used by one node, (b) a node's boot epoch really increases across
//! restarts, and (c) only one `PacketCrypto` seals per (key, node, epoch) — which is why
//! `PacketCrypto` is not `Clone`.
//!
//! Replay protection, per sender: the highest boot epoch seen (a lower one is
//! [`DropReason::StaleEpoch`], a higher one starts a fresh window) and, within the epoch, a
//! sliding window of [`REPLAY_WINDOW`] counters (a repeat, or a counter older than the
//! window, is [`DropReason::Replayed`]). The state changes only after the tag has been
//! verified, so a forged datagram cannot move a window or an epoch. At most [`MAX_SENDERS`]
//! senders are tracked; beyond that the least recently heard one is forgotten (never this
//! node itself).
//!
//! Limits, by construction: a receiver that restarts has no window, so it accepts (once)
//! a replayed datagram of a sender's current epoch; so does a receiver for a sender it
//! evicted from a full table. Totem's own ring/sequence checks still apply above this layer.

use std::collections::HashMap;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use thiserror::Error;

use crate::wire::NodeId;

pub const MAGIC: [u8; 2] = *b"HT";
pub const VERSION: u8 = 1;
/// Cleartext (authenticated) header length.
pub const HEADER_LEN: usize = 2 + 1 + 4 + 4 + 8 + 8;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to its payload: budget this against the MTU.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Counters accepted behind the highest one seen from a sender (each at most once).
pub const REPLAY_WINDOW: u64 = 1024;
/// Senders whose replay state is kept at once.
pub const MAX_SENDERS: usize = 4096;

const WINDOW_WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Why a datagram was dropped by [`PacketCrypto::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DropReason {
    #[error("malformed datagram (too short, bad magic or unknown version)")]
    Malformed,
    #[error("datagram sealed with another cluster key (key id differs)")]
    WrongKey,
    #[error("authentication failed (forged, corrupted, or same key id but other key bytes)")]
    BadAuth,
    #[error("replayed datagram (counter repeated or older than the replay window)")]
    Replayed,
    #[error("datagram from an earlier boot epoch of its sender")]
    StaleEpoch,
}

/// Per-outcome counters of [`PacketCrypto::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CryptoStats {
    pub accepted: u64,
    pub malformed: u64,
    pub wrong_key: u64,
    pub bad_auth: u64,
    pub replayed: u64,
    pub stale_epoch: u64,
}

/// The cleartext header of a sealed datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub key_id: u32,
    pub sender: NodeId,
    pub boot_epoch: u64,
    pub counter: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..2].copy_from_slice(&MAGIC);
        h[2] = VERSION;
        h[3..7].copy_from_slice(&self.key_id.to_le_bytes());
        h[7..11].copy_from_slice(&self.sender.to_le_bytes());
        h[11..19].copy_from_slice(&self.boot_epoch.to_le_bytes());
        h[19..27].copy_from_slice(&self.counter.to_le_bytes());
        h
    }

    /// Parse the header of a datagram; `Malformed` if it is shorter than header + tag,
    /// or the magic or version is wrong. Nothing is authenticated yet.
    pub fn parse(datagram: &[u8]) -> Result<Header, DropReason> {
        if datagram.len() < OVERHEAD {
            return Err(DropReason::Malformed);
        }
        let h = datagram.get(..HEADER_LEN).ok_or(DropReason::Malformed)?;
        if h.get(0..2) != Some(&MAGIC[..]) || h.get(2) != Some(&VERSION) {
            return Err(DropReason::Malformed);
        }
        Ok(Header {
            key_id: u32::from_le_bytes(field(h, 3)?),
            sender: u32::from_le_bytes(field(h, 7)?),
            boot_epoch: u64::from_le_bytes(field(h, 11)?),
            counter: u64::from_le_bytes(field(h, 19)?),
        })
    }

    fn nonce(&self) -> XNonce {
        let mut n = [0u8; 24];
        n[0..4].copy_from_slice(&self.sender.to_le_bytes());
        n[4..12].copy_from_slice(&self.boot_epoch.to_le_bytes());
        n[12..20].copy_from_slice(&self.counter.to_le_bytes());
        n[20] = VERSION;
        XNonce::from(n)
    }
}

fn field<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], DropReason> {
    let end = at.checked_add(N).ok_or(DropReason::Malformed)?;
    buf.get(at..end).and_then(|s| <[u8; N]>::try_from(s).ok()).ok_or(DropReason::Malformed)
}

/// Sliding anti-replay window over one sender's counters in one epoch. Bit `c % WINDOW`
/// records counter `c` for `c` in `highest - WINDOW + 1 ..= highest`.
#[derive(Debug, Clone)]
struct Window {
    highest: u64,
    bits: [u64; WINDOW_WORDS],
}

impl Window {
    fn starting_at(counter: u64) -> Window {
        let mut w = Window { highest: counter, bits: [0; WINDOW_WORDS] };
        w.set(counter);
        w
    }

    fn slot(counter: u64) -> (usize, u64) {
        let i = counter % REPLAY_WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn get(&self, counter: u64) -> bool {
        let (word, mask) = Window::slot(counter);
        self.bits[word] & mask != 0
    }

    fn set(&mut self, counter: u64) {
        let (word, mask) = Window::slot(counter);
        self.bits[word] |= mask;
    }

    fn clear(&mut self, counter: u64) {
        let (word, mask) = Window::slot(counter);
        self.bits[word] &= !mask;
    }

    fn check(&self, counter: u64) -> Result<(), DropReason> {
        if counter > self.highest {
            return Ok(());
        }
        if self.highest - counter >= REPLAY_WINDOW || self.get(counter) {
            return Err(DropReason::Replayed);
        }
        Ok(())
    }

    /// Record `counter`; call only after `check` passed and the datagram authenticated.
    fn accept(&mut self, counter: u64) {
        if counter > self.highest {
            if counter - self.highest >= REPLAY_WINDOW {
                self.bits = [0; WINDOW_WORDS];
            } else {
                for c in self.highest + 1..counter {
                    self.clear(c);
                }
            }
            self.highest = counter;
        }
        self.set(counter);
    }
}

#[derive(Debug, Clone)]
struct SenderState {
    epoch: u64,
    window: Window,
    /// Value of `PacketCrypto::tick` when this sender was last accepted (for eviction).
    last_used: u64,
}

/// Seals this node's datagrams and opens everyone's (including its own). One instance per
/// (key, node, boot epoch): never duplicate it, or nonces would repeat.
pub struct PacketCrypto {
    cipher: XChaCha20Poly1305,
    key_id: u32,
    local_node: NodeId,
    boot_epoch: u64,
    next_counter: u64,
    senders: HashMap<NodeId, SenderState>,
    tick: u64,
    stats: CryptoStats,
}

impl std::fmt::Debug for PacketCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("PacketCrypto")
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .field("local_node", &self.local_node)
            .field("boot_epoch", &self.boot_epoch)
            .field("next_counter", &self.next_counter)
            .field("tracked_senders", &self.senders.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl PacketCrypto {
    /// key: 32 bytes derived from the cluster authkey (`AuthKey::packet_key()`);
    /// key_id: `AuthKey::key_id()`, so a node holding another key drops our packets
    /// cleanly; boot_epoch: increases across restarts of this node (wall-clock
    /// milliseconds at start, or a persisted counter).
    pub fn new(key: [u8; 32], key_id: u32, local_node: NodeId, boot_epoch: u64) -> PacketCrypto {
        PacketCrypto {
            cipher: XChaCha20Poly1305::new(&Key::from(key)),
            key_id,
            local_node,
            boot_epoch,
            next_counter: 0,
            senders: HashMap::new(),
            tick: 0,
            stats: CryptoStats::default(),
        }
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn local_node(&self) -> NodeId {
        self.local_node
    }

    pub fn boot_epoch(&self) -> u64 {
        self.boot_epoch
    }

    /// How many senders have replay state (at most [`MAX_SENDERS`]).
    pub fn tracked_senders(&self) -> usize {
        self.senders.len()
    }

    /// Encrypt and authenticate one datagram from this node: `OVERHEAD` bytes longer
    /// than `payload`.
    ///
    /// Panics only if this node's 2^64 counters of the epoch are exhausted or the payload
    /// exceeds ChaCha20's 256 GiB limit: neither is reachable, and either would otherwise
    /// mean reusing a nonce.
    pub fn seal(&mut self, payload: &[u8]) -> Vec<u8> {
        let header = Header {
            key_id: self.key_id,
            sender: self.local_node,
            boot_epoch: self.boot_epoch,
            counter: self.next_counter,
        };
        self.next_counter = self
            .next_counter
            .checked_add(1)
            .expect("packet counter exhausted for this boot epoch: restart with a new epoch");
        let aad = header.encode();
        let mut out = Vec::with_capacity(OVERHEAD + payload.len());
        out.extend_from_slice(&aad);
        out.extend_from_slice(payload);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&header.nonce(), &aad, &mut out[HEADER_LEN..])
            .expect("XChaCha20-Poly1305 payload length limit exceeded");
        out.extend_from_slice(&tag);
        out
    }

    /// Check and decrypt a datagram: the sender nodeid and the payload, or why it was
    /// dropped. Never panics on any input; replay state changes only for authentic ones.
    ///
    /// Checks in order: header shape (`Malformed`), key id (`WrongKey`), the sender's
    /// replay state, read-only and before any crypto (`StaleEpoch`, `Replayed`: so a
    /// corrupted copy of an already-accepted datagram counts as replayed), the tag
    /// (`BadAuth`); then the sender's epoch and window move.
    pub fn open(&mut self, datagram: &[u8]) -> Result<(NodeId, Vec<u8>), DropReason> {
        let r = self.open_inner(datagram);
        let s = &mut self.stats;
        let n = match r {
            Ok(_) => &mut s.accepted,
            Err(DropReason::Malformed) => &mut s.malformed,
            Err(DropReason::WrongKey) => &mut s.wrong_key,
            Err(DropReason::BadAuth) => &mut s.bad_auth,
            Err(DropReason::Replayed) => &mut s.replayed,
            Err(DropReason::StaleEpoch) => &mut s.stale_epoch,
        };
        *n = n.saturating_add(1);
        r
    }

    pub fn stats(&self) -> CryptoStats {
        self.stats
    }

    fn open_inner(&mut self, datagram: &[u8]) -> Result<(NodeId, Vec<u8>), DropReason> {
        let header = Header::parse(datagram)?;
        if header.key_id != self.key_id {
            return Err(DropReason::WrongKey);
        }
        // Cheap pre-checks that need no key (they read the state, never change it).
        self.check_replay(&header)?;

        let body = datagram.get(HEADER_LEN..).ok_or(DropReason::Malformed)?;
        let split = body.len().checked_sub(TAG_LEN).ok_or(DropReason::Malformed)?;
        let (ciphertext, tag) = body.split_at(split);
        let tag = Tag::clone_from_slice(tag);
        let aad = datagram.get(..HEADER_LEN).ok_or(DropReason::Malformed)?;
        let mut plain = ciphertext.to_vec();
        self.cipher
            .decrypt_in_place_detached(&header.nonce(), aad, &mut plain, &tag)
            .map_err(|_| DropReason::BadAuth)?;

        // Authentic: now (and only now) move the sender's replay state.
        self.record(&header);
        Ok((header.sender, plain))
    }

    fn check_replay(&self, h: &Header) -> Result<(), DropReason> {
        if h.sender == self.local_node && h.boot_epoch != self.boot_epoch {
            // Our nodeid from another incarnation: an echo of an earlier boot (or a
            // duplicate nodeid). Accepting it would move our own epoch and make this
            // incarnation's packets to ourselves (the single-node token) stale.
            return Err(DropReason::StaleEpoch);
        }
        match self.senders.get(&h.sender) {
            None => Ok(()),
            Some(s) if h.boot_epoch < s.epoch => Err(DropReason::StaleEpoch),
            Some(s) if h.boot_epoch > s.epoch => Ok(()),
            Some(s) => s.window.check(h.counter),
        }
    }

    fn record(&mut self, h: &Header) {
        self.tick = self.tick.wrapping_add(1);
        let tick = self.tick;
        if let Some(s) = self.senders.get_mut(&h.sender) {
            if h.boot_epoch > s.epoch {
                s.epoch = h.boot_epoch;
                s.window = Window::starting_at(h.counter);
            } else {
                s.window.accept(h.counter);
            }
            s.last_used = tick;
            return;
        }
        if self.senders.len() >= MAX_SENDERS {
            let local = self.local_node;
            let victim = self
                .senders
                .iter()
                .filter(|(&id, _)| id != local)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(&id, _)| id);
            if let Some(id) = victim {
                self.senders.remove(&id);
            }
        }
        self.senders.insert(
            h.sender,
            SenderState {
                epoch: h.boot_epoch,
                window: Window::starting_at(h.counter),
                last_used: tick,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;

    const KEY: [u8; 32] = [7u8; 32];
    const KID: u32 = 0xdead_beef;

    fn node(id: NodeId, epoch: u64) -> PacketCrypto {
        PacketCrypto::new(KEY, KID, id, epoch)
    }

    #[test]
    fn round_trip() {
        let mut a = node(1, 100);
        let mut b = node(2, 200);
        for payload in [&b""[..], b"x", b"hello totem", &[0xffu8; 1400][..]] {
            let d = a.seal(payload);
            assert_eq!(d.len(), payload.len() + OVERHEAD);
            assert_eq!(b.open(&d), Ok((1, payload.to_vec())));
        }
        // The payload is not in the clear.
        let d = a.seal(b"secret secret secret");
        assert!(!d.windows(6).any(|w| w == b"secret"));
        assert_eq!(b.stats(), CryptoStats { accepted: 4, ..Default::default() });
        assert_eq!(b.tracked_senders(), 1);
    }

    #[test]
    fn header_fields_on_the_wire() {
        let mut a = PacketCrypto::new(KEY, 0x0102_0304, 9, 0x1122);
        a.seal(b"first");
        let d = a.seal(b"second");
        assert_eq!(
            Header::parse(&d),
            Ok(Header { key_id: 0x0102_0304, sender: 9, boot_epoch: 0x1122, counter: 1 })
        );
        assert_eq!(&d[0..3], b"HT\x01");
    }

    #[test]
    fn other_key_is_dropped() {
        let mut a = node(1, 1);
        // Different key id: dropped before any crypto.
        let mut other_id = PacketCrypto::new([9u8; 32], KID ^ 1, 2, 1);
        let d = a.seal(b"join");
        assert_eq!(other_id.open(&d), Err(DropReason::WrongKey));
        // Same key id, other key bytes: the tag does not verify.
        let mut same_id = PacketCrypto::new([9u8; 32], KID, 2, 1);
        assert_eq!(same_id.open(&d), Err(DropReason::BadAuth));
        // And the other direction.
        let mut good = node(3, 1);
        assert_eq!(good.open(&other_id.seal(b"x")), Err(DropReason::WrongKey));
        assert_eq!(good.open(&same_id.seal(b"x")), Err(DropReason::BadAuth));
        assert_eq!(other_id.stats().wrong_key, 1);
        assert_eq!(same_id.stats().bad_auth, 1);
        assert_eq!(good.tracked_senders(), 0);
        // The rejected attempts did not create state; a real packet still opens.
        assert_eq!(good.open(&d), Ok((1, b"join".to_vec())));
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let mut a = node(1, 5);
        let d = a.seal(b"a membership packet");
        for byte in 0..d.len() {
            for bit in 0..8 {
                let mut f = d.clone();
                f[byte] ^= 1 << bit;
                // A fresh receiver each time, and one that has seen the original.
                let mut fresh = node(2, 1);
                // (6 is not one bit away from sender 1: a flip cannot claim to be `seen`.)
                let mut seen = node(6, 1);
                assert!(seen.open(&d).is_ok());
                let expect = match byte {
                    0..=2 => DropReason::Malformed,
                    3..=6 => DropReason::WrongKey,
                    _ => DropReason::BadAuth,
                };
                assert_eq!(fresh.open(&f), Err(expect), "byte {byte} bit {bit}");
                let r = seen.open(&f);
                assert!(r.is_err(), "byte {byte} bit {bit}");
                match byte {
                    0..=2 => assert_eq!(r, Err(DropReason::Malformed)),
                    3..=6 => assert_eq!(r, Err(DropReason::WrongKey)),
                    // Lowering the epoch of a known sender is caught as stale, a counter
                    // already seen as replayed: still a drop, without state change.
                    11..=18 => {
                        assert!(matches!(r, Err(DropReason::BadAuth | DropReason::StaleEpoch)))
                    }
                    19..=26 => {
                        assert!(matches!(r, Err(DropReason::BadAuth | DropReason::Replayed)))
                    }
                    7..=10 => assert_eq!(r, Err(DropReason::BadAuth)),
                    // Header intact: a (corrupted) copy of a counter already accepted is
                    // dropped by the replay pre-check before any crypto.
                    _ => assert_eq!(r, Err(DropReason::Replayed)),
                }
                assert_eq!(seen.stats().accepted, 1);
            }
        }
    }

    #[test]
    fn truncations_and_extensions_are_rejected() {
        let mut a = node(1, 5);
        let mut b = node(2, 5);
        let d = a.seal(b"payload bytes");
        for len in 0..d.len() {
            let r = b.open(&d[..len]);
            if len < OVERHEAD {
                assert_eq!(r, Err(DropReason::Malformed), "len {len}");
            } else {
                assert_eq!(r, Err(DropReason::BadAuth), "len {len}");
            }
        }
        let mut longer = d.clone();
        longer.push(0);
        assert_eq!(b.open(&longer), Err(DropReason::BadAuth));
        assert_eq!(b.open(&[]), Err(DropReason::Malformed));
        assert_eq!(b.stats().accepted, 0);
        assert_eq!(b.open(&d), Ok((1, b"payload bytes".to_vec())));
    }

    #[test]
    fn bad_magic_and_version_are_malformed() {
        let mut a = node(1, 5);
        let mut b = node(2, 5);
        let d = a.seal(b"p");
        let mut m = d.clone();
        m[0] = b'X';
        assert_eq!(b.open(&m), Err(DropReason::Malformed));
        let mut v = d.clone();
        v[2] = 2;
        assert_eq!(b.open(&v), Err(DropReason::Malformed));
        assert_eq!(b.stats().malformed, 2);
    }

    #[test]
    fn replay_of_the_same_datagram_is_rejected() {
        let mut a = node(1, 5);
        let mut b = node(2, 5);
        let d = a.seal(b"join");
        assert!(b.open(&d).is_ok());
        assert_eq!(b.open(&d), Err(DropReason::Replayed));
        assert_eq!(b.open(&d), Err(DropReason::Replayed));
        let d2 = a.seal(b"next");
        assert!(b.open(&d2).is_ok());
        assert_eq!(b.open(&d), Err(DropReason::Replayed));
        assert_eq!(b.open(&d2), Err(DropReason::Replayed));
        assert_eq!(b.stats().replayed, 4);
        assert_eq!(b.stats().accepted, 2);
    }

    #[test]
    fn out_of_order_within_the_window_is_accepted_once_each() {
        let mut a = node(1, 5);
        let mut b = node(2, 5);
        let ds: Vec<Vec<u8>> = (0..300u32).map(|i| a.seal(&i.to_le_bytes())).collect();
        let mut order: Vec<usize> = (0..ds.len()).collect();
        order.shuffle(&mut SmallRng::seed_from_u64(1));
        for &i in &order {
            assert_eq!(b.open(&ds[i]), Ok((1, (i as u32).to_le_bytes().to_vec())));
        }
        for d in &ds {
            assert_eq!(b.open(d), Err(DropReason::Replayed));
        }
        // Newest first, then the rest backwards.
        let mut c = node(3, 5);
        for d in ds.iter().rev() {
            assert!(c.open(d).is_ok());
        }
    }

    #[test]
    fn too_old_is_rejected() {
        let mut a = node(1, 5);
        let mut b = node(2, 5);
        let n = REPLAY_WINDOW as usize + 100;
        let ds: Vec<Vec<u8>> = (0..n).map(|_| a.seal(b"m")).collect();
        let last = n - 1;
        assert!(b.open(&ds[last]).is_ok());
        // Counters `last - WINDOW + 1 ..= last` are inside the window, older ones are not.
        let oldest_ok = last + 1 - REPLAY_WINDOW as usize;
        for d in &ds[..oldest_ok] {
            assert_eq!(b.open(d), Err(DropReason::Replayed));
        }
        assert!(b.open(&ds[oldest_ok]).is_ok());
        assert!(b.open(&ds[last - 1]).is_ok());
        // A jump far ahead drops the whole window.
        let mut far = node(3, 5);
        assert!(far.open(&ds[0]).is_ok());
        assert!(far.open(&ds[last]).is_ok());
        assert_eq!(far.open(&ds[1]), Err(DropReason::Replayed));
        assert!(far.open(&ds[oldest_ok]).is_ok());
    }

    #[test]
    fn restart_with_higher_epoch() {
        let mut b = node(2, 1);
        let mut a1 = node(1, 1000);
        let old: Vec<Vec<u8>> = (0..5).map(|_| a1.seal(b"old")).collect();
        assert!(b.open(&old[0]).is_ok());
        assert!(b.open(&old[1]).is_ok());
        // Node 1 restarts: counters start again, under a higher epoch.
        let mut a2 = node(1, 2000);
        let new0 = a2.seal(b"new");
        assert_eq!(b.open(&new0), Ok((1, b"new".to_vec())));
        // Late or replayed packets of the earlier boot are stale now.
        for d in &old {
            assert_eq!(b.open(d), Err(DropReason::StaleEpoch));
        }
        assert_eq!(b.open(&new0), Err(DropReason::Replayed));
        assert!(b.open(&a2.seal(b"new")).is_ok());
        assert_eq!(b.stats().stale_epoch, 5);
        // Same key, same counter, different epoch: different nonce, different bytes.
        assert_ne!(old[0][HEADER_LEN..], new0[HEADER_LEN..]);
    }

    #[test]
    fn own_packets_open_but_not_other_incarnations() {
        let mut a = node(1, 50);
        let d = a.seal(b"token");
        assert_eq!(a.open(&d), Ok((1, b"token".to_vec())));
        assert_eq!(a.open(&d), Err(DropReason::Replayed));
        let d = a.seal(b"token");
        assert!(a.open(&d).is_ok());
        // An echo of this node's earlier boot, and a packet claiming our id from a later one.
        let mut earlier = node(1, 49);
        assert_eq!(a.open(&earlier.seal(b"old")), Err(DropReason::StaleEpoch));
        let mut later = node(1, 51);
        assert_eq!(a.open(&later.seal(b"dup")), Err(DropReason::StaleEpoch));
        let d = a.seal(b"token");
        assert!(a.open(&d).is_ok());
    }

    /// A datagram with a valid header for `sender`/`epoch`/`counter` but a garbage body.
    fn forge(sender: NodeId, epoch: u64, counter: u64, body: &[u8]) -> Vec<u8> {
        let h = Header { key_id: KID, sender, boot_epoch: epoch, counter };
        let mut d = h.encode().to_vec();
        d.extend_from_slice(body);
        d.extend_from_slice(&[0u8; TAG_LEN]);
        d
    }

    #[test]
    fn forgeries_do_not_poison_the_window() {
        let mut a = node(1, 10);
        let mut b = node(2, 10);
        let first = a.seal(b"1");
        assert!(b.open(&first).is_ok());
        // Huge counter, higher epoch, lower counter, under a different key: all forged.
        assert_eq!(b.open(&forge(1, 10, u64::MAX, b"x")), Err(DropReason::BadAuth));
        assert_eq!(b.open(&forge(1, u64::MAX, 0, b"x")), Err(DropReason::BadAuth));
        assert_eq!(b.open(&forge(1, 10, 5000, b"x")), Err(DropReason::BadAuth));
        let mut evil = PacketCrypto::new([1u8; 32], KID, 1, u64::MAX);
        assert_eq!(b.open(&evil.seal(b"x")), Err(DropReason::BadAuth));
        // Unknown senders with forged packets do not get tracked.
        for s in 100..200 {
            assert_eq!(b.open(&forge(s, 1, 1, b"")), Err(DropReason::BadAuth));
        }
        assert_eq!(b.tracked_senders(), 1);
        // The legitimate sender carries on.
        for _ in 0..3 {
            assert!(b.open(&a.seal(b"more")).is_ok());
        }
        // Taking a real sealed datagram and bumping its counter does not help either.
        let mut d = a.seal(b"z");
        d[19..27].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(b.open(&d), Err(DropReason::BadAuth));
        assert!(b.open(&a.seal(b"z")).is_ok());
        assert_eq!(b.stats().bad_auth, 105);
        assert_eq!(b.stats().accepted, 5);
    }

    #[test]
    fn sender_table_is_bounded() {
        let mut b = node(0, 1);
        let d = b.seal(b"self");
        assert!(b.open(&d).is_ok());
        let mut firsts = Vec::new();
        for s in 1..=(MAX_SENDERS as u32 + 10) {
            let mut n = node(s, 1);
            let d = n.seal(b"hi");
            assert!(b.open(&d).is_ok());
            firsts.push(d);
            assert!(b.tracked_senders() <= MAX_SENDERS);
        }
        assert_eq!(b.tracked_senders(), MAX_SENDERS);
        // Recent senders are still protected; this node's own state was not evicted.
        assert_eq!(b.open(firsts.last().unwrap()), Err(DropReason::Replayed));
        assert!(b.senders.contains_key(&0));
        // The least recently heard were forgotten (a documented limit: one replay each).
        assert!(!b.senders.contains_key(&1));
        assert!(b.open(&firsts[0]).is_ok());
    }

    /// Reference model of the window: accepted iff never accepted before and not older
    /// than `REPLAY_WINDOW` behind the highest accepted counter.
    #[test]
    fn window_matches_a_model() {
        let mut rng = SmallRng::seed_from_u64(0x5eed);
        for _ in 0..20 {
            let mut a = node(1, 3);
            let mut b = node(2, 3);
            let n = rng.gen_range(1..3000usize);
            let ds: Vec<Vec<u8>> = (0..n).map(|_| a.seal(b"")).collect();
            let mut seen = BTreeSet::new();
            let mut highest: Option<u64> = None;
            for _ in 0..n * 2 {
                // Mostly moving forward, with stragglers and duplicates.
                let c = match (highest, rng.gen_range(0..4)) {
                    (Some(h), 0) => h.saturating_sub(rng.gen_range(0..1500)),
                    (Some(h), 1) => h,
                    (Some(h), _) => (h + rng.gen_range(0..50)).min(n as u64 - 1),
                    (None, _) => rng.gen_range(0..n as u64),
                };
                let ok =
                    !seen.contains(&c) && highest.is_none_or(|h| c > h || h - c < REPLAY_WINDOW);
                let r = b.open(&ds[c as usize]);
                assert_eq!(r.is_ok(), ok, "counter {c} highest {highest:?}");
                if !ok {
                    assert_eq!(r, Err(DropReason::Replayed));
                } else {
                    seen.insert(c);
                    highest = Some(highest.map_or(c, |h| h.max(c)));
                }
            }
        }
    }

    #[test]
    fn random_datagrams_never_panic() {
        let mut rng = SmallRng::seed_from_u64(0xc0ffee);
        let mut a = node(1, 7);
        let mut b = node(2, 7);
        let valid: Vec<Vec<u8>> = (0..64).map(|i| a.seal(&vec![i as u8; i * 7])).collect();
        let mut accepted = 0u64;
        for round in 0..20_000 {
            let d: Vec<u8> = match round % 4 {
                // Pure noise, of lengths around the header.
                0 => {
                    let len = rng.gen_range(0..OVERHEAD * 3);
                    (0..len).map(|_| rng.gen()).collect()
                }
                // Noise behind a plausible header (right magic, version, key id).
                1 => {
                    let body: Vec<u8> = (0..rng.gen_range(0..80)).map(|_| rng.gen()).collect();
                    let mut d = forge(rng.gen_range(0..8), rng.gen(), rng.gen(), &body);
                    if rng.gen_bool(0.5) {
                        d.truncate(rng.gen_range(0..=d.len()));
                    }
                    d
                }
                // A valid datagram with a few random byte changes, truncation or extension.
                _ => {
                    let mut d = valid[rng.gen_range(0..valid.len())].clone();
                    for _ in 0..rng.gen_range(0..4) {
                        let i = rng.gen_range(0..d.len());
                        d[i] = rng.gen();
                    }
                    match rng.gen_range(0..4) {
                        0 => d.truncate(rng.gen_range(0..=d.len())),
                        1 => d.extend((0..rng.gen_range(1..20)).map(|_| rng.gen::<u8>())),
                        _ => {}
                    }
                    d
                }
            };
            let unchanged = valid.contains(&d);
            if let Ok((sender, _)) = b.open(&d) {
                assert!(unchanged, "a modified datagram was accepted");
                assert_eq!(sender, 1);
                accepted += 1;
            }
        }
        // Each original is accepted at most once however often it came by.
        assert!(accepted <= valid.len() as u64);
        let s = b.stats();
        assert_eq!(
            s.accepted + s.malformed + s.wrong_key + s.bad_auth + s.replayed + s.stale_epoch,
            20_000
        );
        assert_eq!(s.accepted, accepted);
    }

    #[test]
    fn drop_reasons_display() {
        assert!(DropReason::WrongKey.to_string().contains("key"));
        let c = node(1, 1);
        assert!(!format!("{c:?}").contains("07, 07"));
    }
}
