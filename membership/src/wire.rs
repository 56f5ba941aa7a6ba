//! Totem packets and their binary encoding. Every decode is bounds-checked and returns
//! an error instead of panicking: packets come from the network. Authentication and
//! encryption wrap these bytes one layer below (the daemon's transport).
//!
//! Layout: a one-byte packet type, then fields in a fixed order, integers little-endian,
//! sets and lists length-prefixed (u32) and capped (`MAX_LIST`, `MAX_PAYLOAD`).

use std::collections::BTreeSet;

use thiserror::Error;

pub type NodeId = u32;

/// Names one configuration: (representative nodeid, ring sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RingId {
    pub rep: NodeId,
    pub seq: u64,
}

impl std::fmt::Display for RingId {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}.{}", self.rep, self.seq)
    }
}

/// One application message (or a fragment of one) as ordered by the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMsg {
    /// Per-sender counter: identifies the message across fragments and rings.
    pub msg_id: u64,
    pub frag_index: u16,
    pub frag_count: u16,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    App(AppMsg),
    /// A message of an old ring re-sent during Recovery, wrapped in a new-ring message.
    Recovered(Box<Mcast>),
}

/// A data message: broadcast by its sender while it holds the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mcast {
    pub ring: RingId,
    pub seq: u64,
    pub sender: NodeId,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Token {
    pub ring: RingId,
    pub token_seq: u64,
    pub seq: u64,
    pub aru: u64,
    pub aru_addr: NodeId,
    pub rtr: Vec<u64>,
    pub fcc: u32,
    pub backlog: u32,
    /// Recovery: did anyone still have old messages to send during the last full rotation?
    pub retrans_prev: bool,
    /// Recovery: the same, accumulated over the rotation in progress.
    pub retrans_cur: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub sender: NodeId,
    pub proc_set: BTreeSet<NodeId>,
    pub fail_set: BTreeSet<NodeId>,
    pub ring_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberEntry {
    pub old_ring: RingId,
    pub old_aru: u64,
    pub high_delivered: u64,
    pub received_flg: bool,
    pub filled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitToken {
    pub ring: RingId,
    pub members: Vec<NodeId>,
    pub entries: Vec<MemberEntry>,
    /// 1 during the first rotation, 2 during the second.
    pub rotation: u8,
    pub token_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Token(Token),
    Mcast(Mcast),
    Join(Join),
    Commit(CommitToken),
    MergeDetect { sender: NodeId, ring: RingId },
    /// Ask the representative to release a held (idle) token: new data is waiting.
    HoldCancel { sender: NodeId, ring: RingId },
}

pub const MAX_LIST: usize = 4096;
pub const MAX_PAYLOAD: usize = 64 * 1024;
const MAX_NESTING: u8 = 1;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("packet truncated at byte {0}")]
    Truncated(usize),
    #[error("unknown packet type {0}")]
    UnknownType(u8),
    #[error("list of {0} entries exceeds the limit of {MAX_LIST}")]
    ListTooLong(usize),
    #[error("payload of {0} bytes exceeds the limit of {MAX_PAYLOAD}")]
    PayloadTooLong(usize),
    #[error("{0} trailing bytes after the packet")]
    Trailing(usize),
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn ring(&mut self, r: RingId) {
        self.u32(r.rep);
        self.u64(r.seq);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn set(&mut self, s: &BTreeSet<NodeId>) {
        self.u32(s.len() as u32);
        for &n in s {
            self.u32(n);
        }
    }
    fn mcast(&mut self, m: &Mcast) {
        self.ring(m.ring);
        self.u64(m.seq);
        self.u32(m.sender);
        match &m.body {
            Body::App(a) => {
                self.u8(0);
                self.u64(a.msg_id);
                self.u16(a.frag_index);
                self.u16(a.frag_count);
                self.bytes(&a.payload);
            }
            Body::Recovered(inner) => {
                self.u8(1);
                self.mcast(inner);
            }
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated(self.pos))?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid("boolean")),
        }
    }
    fn ring(&mut self) -> Result<RingId, WireError> {
        Ok(RingId { rep: self.u32()?, seq: self.u64()? })
    }
    fn len(&mut self, limit: usize, err: fn(usize) -> WireError) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n > limit {
            return Err(err(n));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, WireError> {
        let n = self.len(MAX_PAYLOAD, WireError::PayloadTooLong)?;
        Ok(self.take(n)?.to_vec())
    }
    /// Sets travel sorted and without repeats: anything else is not a packet we sent.
    fn set(&mut self) -> Result<BTreeSet<NodeId>, WireError> {
        let n = self.len(MAX_LIST, WireError::ListTooLong)?;
        let v: Vec<NodeId> = (0..n).map(|_| self.u32()).collect::<Result<_, _>>()?;
        if v.windows(2).any(|w| w[0] >= w[1]) {
            return Err(WireError::Invalid("node set not sorted"));
        }
        Ok(v.into_iter().collect())
    }
    fn mcast(&mut self, depth: u8) -> Result<Mcast, WireError> {
        let ring = self.ring()?;
        let seq = self.u64()?;
        let sender = self.u32()?;
        let body = match self.u8()? {
            0 => {
                let msg_id = self.u64()?;
                let frag_index = self.u16()?;
                let frag_count = self.u16()?;
                if frag_count == 0 || frag_index >= frag_count {
                    return Err(WireError::Invalid("fragment index"));
                }
                Body::App(AppMsg { msg_id, frag_index, frag_count, payload: self.bytes()? })
            }
            1 if depth < MAX_NESTING => Body::Recovered(Box::new(self.mcast(depth + 1)?)),
            _ => return Err(WireError::Invalid("message body")),
        };
        Ok(Mcast { ring, seq, sender, body })
    }
}

impl Packet {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64));
        match self {
            Packet::Token(t) => {
                w.u8(1);
                w.ring(t.ring);
                w.u64(t.token_seq);
                w.u64(t.seq);
                w.u64(t.aru);
                w.u32(t.aru_addr);
                w.u32(t.rtr.len() as u32);
                for &s in &t.rtr {
                    w.u64(s);
                }
                w.u32(t.fcc);
                w.u32(t.backlog);
                w.u8(t.retrans_prev as u8);
                w.u8(t.retrans_cur as u8);
            }
            Packet::Mcast(m) => {
                w.u8(2);
                w.mcast(m);
            }
            Packet::Join(j) => {
                w.u8(3);
                w.u32(j.sender);
                w.set(&j.proc_set);
                w.set(&j.fail_set);
                w.u64(j.ring_seq);
            }
            Packet::Commit(c) => {
                w.u8(4);
                w.ring(c.ring);
                w.u32(c.members.len() as u32);
                for (m, e) in c.members.iter().zip(&c.entries) {
                    w.u32(*m);
                    w.ring(e.old_ring);
                    w.u64(e.old_aru);
                    w.u64(e.high_delivered);
                    w.u8(e.received_flg as u8);
                    w.u8(e.filled as u8);
                }
                w.u8(c.rotation);
                w.u64(c.token_seq);
            }
            Packet::MergeDetect { sender, ring } => {
                w.u8(5);
                w.u32(*sender);
                w.ring(*ring);
            }
            Packet::HoldCancel { sender, ring } => {
                w.u8(6);
                w.u32(*sender);
                w.ring(*ring);
            }
        }
        w.0
    }

    pub fn decode(buf: &[u8]) -> Result<Packet, WireError> {
        let mut r = Reader { buf, pos: 0 };
        let p = match r.u8()? {
            1 => {
                let ring = r.ring()?;
                let token_seq = r.u64()?;
                let seq = r.u64()?;
                let aru = r.u64()?;
                let aru_addr = r.u32()?;
                let n = r.len(MAX_LIST, WireError::ListTooLong)?;
                let rtr = (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?;
                Packet::Token(Token {
                    ring,
                    token_seq,
                    seq,
                    aru,
                    aru_addr,
                    rtr,
                    fcc: r.u32()?,
                    backlog: r.u32()?,
                    retrans_prev: r.bool()?,
                    retrans_cur: r.bool()?,
                })
            }
            2 => Packet::Mcast(r.mcast(0)?),
            3 => Packet::Join(Join { sender: r.u32()?, proc_set: r.set()?, fail_set: r.set()?, ring_seq: r.u64()? }),
            4 => {
                let ring = r.ring()?;
                let n = r.len(MAX_LIST, WireError::ListTooLong)?;
                let mut members = Vec::with_capacity(n);
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push(r.u32()?);
                    entries.push(MemberEntry {
                        old_ring: r.ring()?,
                        old_aru: r.u64()?,
                        high_delivered: r.u64()?,
                        received_flg: r.bool()?,
                        filled: r.bool()?,
                    });
                }
                if members.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(WireError::Invalid("commit token members not sorted"));
                }
                let rotation = r.u8()?;
                if !(1..=2).contains(&rotation) {
                    return Err(WireError::Invalid("commit token rotation"));
                }
                Packet::Commit(CommitToken { ring, members, entries, rotation, token_seq: r.u64()? })
            }
            5 => Packet::MergeDetect { sender: r.u32()?, ring: r.ring()? },
            6 => Packet::HoldCancel { sender: r.u32()?, ring: r.ring()? },
            t => return Err(WireError::UnknownType(t)),
        };
        if r.pos != buf.len() {
            return Err(WireError::Trailing(buf.len() - r.pos));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Packet> {
        let ring = RingId { rep: 1, seq: 8 };
        let app = Mcast { ring, seq: 3, sender: 2, body: Body::App(AppMsg { msg_id: 9, frag_index: 0, frag_count: 1, payload: b"hi".to_vec() }) };
        vec![
            Packet::Token(Token { ring, token_seq: 5, seq: 7, aru: 6, aru_addr: 2, rtr: vec![4, 5], fcc: 3, backlog: 1, retrans_prev: true, retrans_cur: false }),
            Packet::Mcast(app.clone()),
            Packet::Mcast(Mcast { ring, seq: 4, sender: 1, body: Body::Recovered(Box::new(app)) }),
            Packet::Join(Join { sender: 1, proc_set: [1, 2, 3].into(), fail_set: [3].into(), ring_seq: 8 }),
            Packet::Commit(CommitToken { ring, members: vec![1, 2], entries: vec![MemberEntry::default(); 2], rotation: 1, token_seq: 0 }),
            Packet::MergeDetect { sender: 1, ring },
            Packet::HoldCancel { sender: 2, ring },
        ]
    }

    #[test]
    fn round_trip() {
        for p in samples() {
            assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
        }
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for p in samples() {
            let bytes = p.encode();
            for cut in 0..bytes.len() {
                assert!(Packet::decode(&bytes[..cut]).is_err());
            }
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut b = bytes.clone();
                let i = (x as usize) % b.len();
                b[i] ^= (x >> 32) as u8 | 1;
                // Either a clean error or a packet that encodes back to the same bytes.
                if let Ok(q) = Packet::decode(&b) {
                    assert_eq!(q.encode(), b);
                }
            }
        }
    }
}
