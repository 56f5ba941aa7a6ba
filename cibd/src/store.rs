//! Durable raft storage on sled.
//!
//! [`SledStorage`] implements [`raft::Storage`] for one node in a sled database at a
//! directory. It is the only place that knows about sled (BLUEPRINT "Style" 12: sled calls
//! itself beta, so it stays behind this one module and its crash test; if that test ever
//! loses an acknowledged write, replace sled with redb rather than patch around it).
//!
//! Layout (format version 1). Values are raft's protobuf messages encoded with the raft
//! crate's own codec (`protobuf` 2) and are opaque bytes to sled.
//!
//! * tree `raft_entries`: key = entry index, 8 bytes big-endian; value = `Entry`.
//!   Entries are contiguous from `first_index()` to `last_index()`.
//! * tree `raft_meta`:
//!   `version` (1 byte), `hard_state` (`HardState`), `conf_state` (`ConfState`),
//!   `log_base` (16 bytes: index and term of the last discarded entry, big-endian; the log
//!   starts at `log_base.index + 1`), `snapshot_meta` (`SnapshotMetadata`, absent = none),
//!   `snapshot_data` (the snapshot's opaque bytes).
//!
//! Every mutator runs as one sled transaction over both trees (sled recovers a transaction
//! all-or-nothing) and then flushes, so it is durable when it returns and a crash never
//! leaves half an append, a hard state without its entries, or a compaction without its
//! base. The mutators check raft's own rules and refuse, without writing anything, a call
//! that would break the store's invariants:
//!
//! * entries are contiguous, `log_base.index + 1 == first_index`;
//! * `log_base.index <= hard_state.commit <= last_index`, and commit never goes back;
//! * a compacted prefix is always covered by the stored snapshot
//!   (`log_base.index <= snapshot.index <= commit`).
//!
//! Differences from raft's `MemStorage` (on purpose): `compact(i)` drops entries `<= i`
//! (`MemStorage::compact(i)` drops `< i`) and remembers the term of `i`, so `term(first - 1)`
//! keeps answering after a compaction as the trait asks; `snapshot()` returns the stored
//! snapshot (made by `create_snapshot` or received by `apply_snapshot`) with its data, and
//! `SnapshotTemporarilyUnavailable` when there is none recent enough, instead of a dataless
//! snapshot at the commit index.

use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use sled::transaction::{TransactionError, Transactional};

/// On-disk format version written at creation and checked at open.
pub const FORMAT_VERSION: u8 = 1;

/// sled page cache size: bounds the memory the store holds on to (sled's default is 1 GiB).
const CACHE_CAPACITY: u64 = 64 << 20;

/// How long `open` waits for a lock sled has not released yet (see `open_db`).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

const ENTRIES_TREE: &[u8] = b"raft_entries";
const META_TREE: &[u8] = b"raft_meta";
const KEY_VERSION: &[u8] = b"version";
const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_LOG_BASE: &[u8] = b"log_base";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";

/// Errors of the raft store. Every message is one line and names the store's path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("raft store {}: cannot open sled database: {source}", .path.display())]
    Open { path: PathBuf, source: sled::Error },
    #[error("raft store {}: no store here (create it with create or create_with_conf_state)", .path.display())]
    NotFound { path: PathBuf },
    #[error("raft store {}: a store already exists here", .path.display())]
    AlreadyExists { path: PathBuf },
    #[error("raft store {}: unsupported format version {found} (this build reads {FORMAT_VERSION})", .path.display())]
    Version { path: PathBuf, found: u8 },
    #[error("raft store {}: {op} failed: {source}", .path.display())]
    Sled { path: PathBuf, op: &'static str, source: sled::Error },
    #[error("raft store {}: cannot encode {what}: {source}", .path.display())]
    Encode { path: PathBuf, what: String, source: protobuf::ProtobufError },
    #[error("raft store {}: cannot decode {what}: {source}", .path.display())]
    Decode { path: PathBuf, what: String, source: protobuf::ProtobufError },
    #[error("raft store {}: corrupt: {detail}", .path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("raft store {}: append at {index} would overwrite compacted entries (first index {first_index})", .path.display())]
    AppendCompacted { path: PathBuf, index: u64, first_index: u64 },
    #[error("raft store {}: append at {index} leaves a gap after last index {last_index}", .path.display())]
    AppendGap { path: PathBuf, index: u64, last_index: u64 },
    #[error("raft store {}: appended entries are not contiguous: {got} follows {prev}", .path.display())]
    AppendNotContiguous { path: PathBuf, prev: u64, got: u64 },
    #[error("raft store {}: append at {index} would overwrite committed entries (commit {commit})", .path.display())]
    OverwriteCommitted { path: PathBuf, index: u64, commit: u64 },
    #[error("raft store {}: hard state commit {commit} is beyond last index {last_index}", .path.display())]
    CommitBeyondLog { path: PathBuf, commit: u64, last_index: u64 },
    #[error("raft store {}: hard state commit {commit} goes back from {stored}", .path.display())]
    CommitRegressed { path: PathBuf, commit: u64, stored: u64 },
    #[error("raft store {}: snapshot at {index} is out of date (first index {first_index}, commit {commit})", .path.display())]
    SnapshotOutOfDate { path: PathBuf, index: u64, first_index: u64, commit: u64 },
    #[error("raft store {}: cannot snapshot index {index}: not committed (commit {commit})", .path.display())]
    SnapshotUncommitted { path: PathBuf, index: u64, commit: u64 },
    #[error("raft store {}: cannot snapshot index {index}: older than the stored snapshot at {stored}", .path.display())]
    SnapshotStale { path: PathBuf, index: u64, stored: u64 },
    #[error("raft store {}: cannot compact to {index}: beyond last index {last_index}", .path.display())]
    CompactBeyondLog { path: PathBuf, index: u64, last_index: u64 },
    #[error("raft store {}: cannot compact to {index}: no snapshot covers it (snapshot at {snapshot})", .path.display())]
    CompactBeyondSnapshot { path: PathBuf, index: u64, snapshot: u64 },
    #[error("raft store {}: an earlier write failed; reopen the store", .path.display())]
    Poisoned { path: PathBuf },
}

impl From<StoreError> for raft::Error {
    fn from(e: StoreError) -> raft::Error {
        match e {
            StoreError::SnapshotOutOfDate { .. } => raft::Error::Store(StorageError::SnapshotOutOfDate),
            e => raft::Error::Store(StorageError::Other(Box::new(e))),
        }
    }
}

/// The state kept in memory; it mirrors what sled holds (updated under the write lock, right
/// after each transaction commits).
#[derive(Debug, Clone, Default)]
struct State {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the entry just before the first one in the log.
    base_index: u64,
    base_term: u64,
    /// Metadata of the stored snapshot; `index == 0` means there is none.
    snapshot: SnapshotMetadata,
    /// Last index in the log (`base_index` when the log is empty).
    last_index: u64,
}

impl State {
    fn first_index(&self) -> u64 {
        self.base_index + 1
    }
}

/// Writes of one mutation, applied in one transaction over both trees.
#[derive(Default)]
struct Writes {
    entries: sled::Batch,
    meta: sled::Batch,
}

/// Durable `raft::Storage` on sled. Readers and mutators take `&self` (an internal lock
/// orders them), so the store can be used through `RawNode::store()`.
pub struct SledStorage {
    path: PathBuf,
    db: sled::Db,
    entries: sled::Tree,
    meta: sled::Tree,
    state: RwLock<State>,
    /// Set when a write failed part-way (its transaction or flush): what is on disk is then
    /// unknown, so every later mutator refuses until the store is reopened.
    poisoned: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStorage").field("path", &self.path).field("state", &*self.read()).finish()
    }
}

fn entry_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn encode_base(index: u64, term: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&index.to_be_bytes());
    b[8..].copy_from_slice(&term.to_be_bytes());
    b
}

impl SledStorage {
    /// Opens an existing store; fails with [`StoreError::NotFound`] if `dir` holds none.
    pub fn open(dir: &Path) -> Result<SledStorage, StoreError> {
        if !dir.join("db").exists() {
            return Err(StoreError::NotFound { path: dir.to_path_buf() });
        }
        let store = Self::open_db(dir)?;
        match store.meta.get(KEY_VERSION).map_err(|e| store.sled_err("read version", e))? {
            None => return Err(StoreError::NotFound { path: store.path.clone() }),
            Some(v) if v.as_ref() != [FORMAT_VERSION] => {
                return Err(StoreError::Version { path: store.path.clone(), found: v.first().copied().unwrap_or(0) })
            }
            Some(_) => {}
        }
        let state = store.load()?;
        *store.write() = state;
        Ok(store)
    }

    /// Creates an empty, uninitialized store (like `MemStorage::new()`), for a node that
    /// joins an existing cluster and will receive a snapshot.
    pub fn create(dir: &Path) -> Result<SledStorage, StoreError> {
        Self::create_inner(dir, ConfState::default())
    }

    /// Creates a store for a fresh node of a new cluster: empty log, the given voters
    /// (like `MemStorage::new_with_conf_state`). Use the same `ConfState` on every node.
    pub fn create_with_conf_state(dir: &Path, conf_state: ConfState) -> Result<SledStorage, StoreError> {
        Self::create_inner(dir, conf_state)
    }

    fn create_inner(dir: &Path, conf_state: ConfState) -> Result<SledStorage, StoreError> {
        let store = Self::open_db(dir)?;
        if store.meta.get(KEY_VERSION).map_err(|e| store.sled_err("read version", e))?.is_some() {
            return Err(StoreError::AlreadyExists { path: store.path.clone() });
        }
        // A creation that crashed before its transaction may have left stray keys behind.
        let mut w = Writes::default();
        for kv in store.entries.iter() {
            let (k, _) = kv.map_err(|e| store.sled_err("scan entries", e))?;
            w.entries.remove(k);
        }
        for kv in store.meta.iter() {
            let (k, _) = kv.map_err(|e| store.sled_err("scan meta", e))?;
            w.meta.remove(k);
        }
        w.meta.insert(KEY_HARD_STATE, store.encode(&HardState::default(), "hard state")?);
        w.meta.insert(KEY_CONF_STATE, store.encode(&conf_state, "conf state")?);
        w.meta.insert(KEY_LOG_BASE, &encode_base(0, 0)[..]);
        // The version key goes last in the same transaction: its presence marks a complete store.
        w.meta.insert(KEY_VERSION, &[FORMAT_VERSION][..]);
        store.commit("create", w)?;
        *store.write() = State { conf_state, ..State::default() };
        Ok(store)
    }

    fn open_db(dir: &Path) -> Result<SledStorage, StoreError> {
        let path = dir.to_path_buf();
        // Every mutator flushes, so sled's periodic flusher thread is not needed.
        let config = sled::Config::new().path(dir).cache_capacity(CACHE_CAPACITY).flush_every_ms(None);
        // sled 0.34 releases its file lock lazily after the last handle is dropped
        // (spacejam/sled#1234, #1289): a reopen right after a close can see the lock still
        // held. Retry that one error for a bounded time; anything else fails at once.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(source) => return Err(StoreError::Open { path, source }),
            }
        };
        let entries = db.open_tree(ENTRIES_TREE).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let meta = db.open_tree(META_TREE).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        Ok(SledStorage { path, db, entries, meta, state: RwLock::new(State::default()), poisoned: Default::default() })
    }

    /// The directory of this store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.read().hard_state.clone()
    }

    /// The stored conf state.
    pub fn conf_state(&self) -> ConfState {
        self.read().conf_state.clone()
    }

    /// Metadata of the stored snapshot (`index == 0`: none).
    pub fn snapshot_metadata(&self) -> SnapshotMetadata {
        self.read().snapshot.clone()
    }

    /// The stored snapshot with its data, if any (what a restarting replica restores before
    /// applying the committed entries after it).
    pub fn latest_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let st = self.read();
        if st.snapshot.index == 0 {
            return Ok(None);
        }
        self.read_snapshot(&st).map(Some)
    }

    /// Re-reads everything from disk and checks the invariants (contiguous entries whose
    /// index matches their key, the log base, commit within the log, the snapshot covering
    /// the compacted prefix) and that the in-memory view matches the disk. `open` runs the
    /// same checks.
    pub fn verify(&self) -> Result<(), StoreError> {
        let st = self.read();
        let disk = self.load()?;
        let same = disk.hard_state == st.hard_state
            && disk.conf_state == st.conf_state
            && (disk.base_index, disk.base_term, disk.last_index) == (st.base_index, st.base_term, st.last_index)
            && disk.snapshot == st.snapshot;
        if !same {
            return Err(self.corrupt(format!("in-memory state {st:?} differs from disk {disk:?}")));
        }
        Ok(())
    }

    /// Appends entries, first truncating any existing entries from `ents[0].index` on
    /// (raft's conflicting suffix). Durable and atomic when it returns.
    pub fn append(&self, ents: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = ents.first() else { return Ok(()) };
        let mut st = self.mutate()?;
        let start = first.index;
        if start < st.first_index() {
            return Err(StoreError::AppendCompacted { path: self.path.clone(), index: start, first_index: st.first_index() });
        }
        if start > st.last_index + 1 {
            return Err(StoreError::AppendGap { path: self.path.clone(), index: start, last_index: st.last_index });
        }
        if start <= st.last_index && start <= st.hard_state.commit {
            return Err(StoreError::OverwriteCommitted { path: self.path.clone(), index: start, commit: st.hard_state.commit });
        }
        let mut w = Writes::default();
        let mut prev = start - 1;
        for e in ents {
            if e.index != prev + 1 {
                return Err(StoreError::AppendNotContiguous { path: self.path.clone(), prev, got: e.index });
            }
            prev = e.index;
            w.entries.insert(&entry_key(e.index)[..], self.encode(e, &format!("entry {}", e.index))?);
        }
        let new_last = prev;
        for i in new_last + 1..=st.last_index {
            w.entries.remove(&entry_key(i)[..]);
        }
        self.commit("append", w)?;
        st.last_index = new_last;
        Ok(())
    }

    /// Stores the hard state. Its commit must be within the log and must not go back
    /// (persist a Ready's entries before its hard state).
    pub fn set_hardstate(&self, hs: HardState) -> Result<(), StoreError> {
        let mut st = self.mutate()?;
        if hs.commit > st.last_index {
            return Err(StoreError::CommitBeyondLog { path: self.path.clone(), commit: hs.commit, last_index: st.last_index });
        }
        if hs.commit < st.hard_state.commit {
            return Err(StoreError::CommitRegressed { path: self.path.clone(), commit: hs.commit, stored: st.hard_state.commit });
        }
        let mut w = Writes::default();
        w.meta.insert(KEY_HARD_STATE, self.encode(&hs, "hard state")?);
        self.commit("set hard state", w)?;
        st.hard_state = hs;
        Ok(())
    }

    /// Stores the conf state.
    pub fn set_conf_state(&self, cs: ConfState) -> Result<(), StoreError> {
        let mut st = self.mutate()?;
        let mut w = Writes::default();
        w.meta.insert(KEY_CONF_STATE, self.encode(&cs, "conf state")?);
        self.commit("set conf state", w)?;
        st.conf_state = cs;
        Ok(())
    }

    /// Replaces everything with a snapshot received from the leader: the log becomes empty
    /// after the snapshot's index, commit becomes that index, the term is raised to the
    /// snapshot's term if lower, the conf state is the snapshot's, and the snapshot (with its
    /// data) becomes the stored one. Refused (`SnapshotOutOfDate`) if its index is before
    /// the first index or the commit.
    pub fn apply_snapshot(&self, mut snapshot: Snapshot) -> Result<(), StoreError> {
        let mut st = self.mutate()?;
        let meta = snapshot.take_metadata();
        let index = meta.index;
        if index < st.first_index() || index < st.hard_state.commit {
            return Err(StoreError::SnapshotOutOfDate {
                path: self.path.clone(),
                index,
                first_index: st.first_index(),
                commit: st.hard_state.commit,
            });
        }
        let mut hs = st.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = index;
        let cs = meta.get_conf_state().clone();
        let mut w = Writes::default();
        for i in st.first_index()..=st.last_index {
            w.entries.remove(&entry_key(i)[..]);
        }
        w.meta.insert(KEY_HARD_STATE, self.encode(&hs, "hard state")?);
        w.meta.insert(KEY_CONF_STATE, self.encode(&cs, "conf state")?);
        w.meta.insert(KEY_LOG_BASE, &encode_base(index, meta.term)[..]);
        w.meta.insert(KEY_SNAPSHOT_META, self.encode(&meta, "snapshot metadata")?);
        w.meta.insert(KEY_SNAPSHOT_DATA, &snapshot.data[..]);
        self.commit("apply snapshot", w)?;
        st.hard_state = hs;
        st.conf_state = cs;
        st.base_index = index;
        st.base_term = meta.term;
        st.last_index = index;
        st.snapshot = meta;
        Ok(())
    }

    /// Records a snapshot of the applied state machine at `index` (which must be committed
    /// and not older than the stored snapshot), with the conf state as of `index`. Does not
    /// touch the log; call [`compact`](Self::compact) afterwards to drop the covered entries.
    pub fn create_snapshot(&self, index: u64, conf_state: ConfState, data: Vec<u8>) -> Result<(), StoreError> {
        let mut st = self.mutate()?;
        if index == 0 || index > st.hard_state.commit {
            return Err(StoreError::SnapshotUncommitted { path: self.path.clone(), index, commit: st.hard_state.commit });
        }
        if index < st.snapshot.index || index < st.base_index {
            let stored = st.snapshot.index.max(st.base_index);
            return Err(StoreError::SnapshotStale { path: self.path.clone(), index, stored });
        }
        let term = self.term_locked(&st, index).map_err(|e| self.corrupt(format!("no term for committed index {index}: {e}")))?;
        let mut meta = SnapshotMetadata { index, term, ..Default::default() };
        meta.set_conf_state(conf_state);
        let mut w = Writes::default();
        w.meta.insert(KEY_SNAPSHOT_META, self.encode(&meta, "snapshot metadata")?);
        w.meta.insert(KEY_SNAPSHOT_DATA, data);
        self.commit("create snapshot", w)?;
        st.snapshot = meta;
        Ok(())
    }

    /// Drops the entries `<= index`, remembering the term of `index` (so `term(index)` still
    /// answers). The stored snapshot must cover `index`. A no-op if already compacted there.
    pub fn compact(&self, index: u64) -> Result<(), StoreError> {
        let mut st = self.mutate()?;
        if index <= st.base_index {
            return Ok(());
        }
        if index > st.last_index {
            return Err(StoreError::CompactBeyondLog { path: self.path.clone(), index, last_index: st.last_index });
        }
        if index > st.snapshot.index {
            return Err(StoreError::CompactBeyondSnapshot { path: self.path.clone(), index, snapshot: st.snapshot.index });
        }
        let term = self.term_locked(&st, index).map_err(|e| self.corrupt(format!("no term for index {index}: {e}")))?;
        let mut w = Writes::default();
        for i in st.first_index()..=index {
            w.entries.remove(&entry_key(i)[..]);
        }
        w.meta.insert(KEY_LOG_BASE, &encode_base(index, term)[..]);
        self.commit("compact", w)?;
        st.base_index = index;
        st.base_term = term;
        Ok(())
    }

    // ---- internals ----

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The write lock, for a mutator: refused once a write has failed.
    fn mutate(&self) -> Result<RwLockWriteGuard<'_, State>, StoreError> {
        let st = self.write();
        if self.poisoned.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Poisoned { path: self.path.clone() });
        }
        Ok(st)
    }

    fn sled_err(&self, op: &'static str, source: sled::Error) -> StoreError {
        StoreError::Sled { path: self.path.clone(), op, source }
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt { path: self.path.clone(), detail }
    }

    fn encode<M: protobuf::Message>(&self, m: &M, what: &str) -> Result<Vec<u8>, StoreError> {
        m.write_to_bytes().map_err(|source| StoreError::Encode { path: self.path.clone(), what: what.to_string(), source })
    }

    fn decode<M: protobuf::Message>(&self, bytes: &[u8], what: &str) -> Result<M, StoreError> {
        M::parse_from_bytes(bytes).map_err(|source| StoreError::Decode { path: self.path.clone(), what: what.to_string(), source })
    }

    /// Applies one mutation atomically (one transaction over both trees) and makes it durable.
    fn commit(&self, op: &'static str, w: Writes) -> Result<(), StoreError> {
        let r = self.commit_inner(op, w);
        if r.is_err() {
            self.poisoned.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        r
    }

    fn commit_inner(&self, op: &'static str, w: Writes) -> Result<(), StoreError> {
        (&self.entries, &self.meta)
            .transaction(|(entries, meta)| {
                entries.apply_batch(&w.entries)?;
                meta.apply_batch(&w.meta)?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(source) => self.sled_err(op, source),
                TransactionError::Abort(()) => self.corrupt(format!("{op}: transaction aborted")),
            })?;
        self.db.flush().map_err(|e| self.sled_err(op, e))?;
        Ok(())
    }

    fn get_meta(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.meta.get(key).map_err(|e| self.sled_err("read meta", e))
    }

    fn read_entry(&self, index: u64) -> Result<Entry, StoreError> {
        let v = self
            .entries
            .get(entry_key(index))
            .map_err(|e| self.sled_err("read entry", e))?
            .ok_or_else(|| self.corrupt(format!("entry {index} missing")))?;
        let e: Entry = self.decode(&v, &format!("entry {index}"))?;
        if e.index != index {
            return Err(self.corrupt(format!("entry under key {index} has index {}", e.index)));
        }
        Ok(e)
    }

    fn term_locked(&self, st: &State, idx: u64) -> raft::Result<u64> {
        if idx == st.base_index {
            return Ok(st.base_term);
        }
        if idx < st.base_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > st.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.read_entry(idx)?.term)
    }

    fn read_snapshot(&self, st: &State) -> Result<Snapshot, StoreError> {
        let data = self.get_meta(KEY_SNAPSHOT_DATA)?.ok_or_else(|| self.corrupt("snapshot data missing".into()))?;
        let mut snap = Snapshot::default();
        snap.set_metadata(st.snapshot.clone());
        snap.data = data.to_vec().into();
        Ok(snap)
    }

    /// Reads the whole state from disk and checks the invariants.
    fn load(&self) -> Result<State, StoreError> {
        let hard_state: HardState = match self.get_meta(KEY_HARD_STATE)? {
            Some(v) => self.decode(&v, "hard state")?,
            None => return Err(self.corrupt("hard state missing".into())),
        };
        let conf_state: ConfState = match self.get_meta(KEY_CONF_STATE)? {
            Some(v) => self.decode(&v, "conf state")?,
            None => return Err(self.corrupt("conf state missing".into())),
        };
        let (base_index, base_term) = match self.get_meta(KEY_LOG_BASE)? {
            Some(v) if v.len() == 16 => {
                let mut i = [0u8; 8];
                let mut t = [0u8; 8];
                i.copy_from_slice(&v[..8]);
                t.copy_from_slice(&v[8..]);
                (u64::from_be_bytes(i), u64::from_be_bytes(t))
            }
            Some(v) => return Err(self.corrupt(format!("log base has {} bytes, not 16", v.len()))),
            None => return Err(self.corrupt("log base missing".into())),
        };
        let snapshot: SnapshotMetadata = match self.get_meta(KEY_SNAPSHOT_META)? {
            Some(v) => self.decode(&v, "snapshot metadata")?,
            None => SnapshotMetadata::default(),
        };
        if snapshot.index != 0 && self.get_meta(KEY_SNAPSHOT_DATA)?.is_none() {
            return Err(self.corrupt(format!("snapshot at {} has no data", snapshot.index)));
        }
        let mut expect = base_index + 1;
        for kv in self.entries.iter() {
            let (k, v) = kv.map_err(|e| self.sled_err("scan entries", e))?;
            let key: [u8; 8] = k.as_ref().try_into().map_err(|_| self.corrupt(format!("entry key of {} bytes", k.len())))?;
            let index = u64::from_be_bytes(key);
            if index != expect {
                return Err(self.corrupt(format!("log not contiguous: expected entry {expect}, found {index} (log base {base_index})")));
            }
            let e: Entry = self.decode(&v, &format!("entry {index}"))?;
            if e.index != index {
                return Err(self.corrupt(format!("entry under key {index} has index {}", e.index)));
            }
            expect += 1;
        }
        let last_index = expect - 1;
        if hard_state.commit > last_index {
            return Err(self.corrupt(format!("commit {} beyond last index {last_index}", hard_state.commit)));
        }
        if hard_state.commit < base_index {
            return Err(self.corrupt(format!("commit {} before log base {base_index}", hard_state.commit)));
        }
        if snapshot.index < base_index {
            return Err(self.corrupt(format!("snapshot at {} does not cover the compacted log up to {base_index}", snapshot.index)));
        }
        if snapshot.index > hard_state.commit {
            return Err(self.corrupt(format!("snapshot at {} beyond commit {}", snapshot.index, hard_state.commit)));
        }
        Ok(State { hard_state, conf_state, base_index, base_term, snapshot, last_index })
    }
}

impl Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let st = self.read();
        Ok(RaftState::new(st.hard_state.clone(), st.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        let st = self.read();
        if low < st.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > st.last_index + 1 {
            panic!("raft store {}: index out of bound (last: {}, high: {high})", self.path.display(), st.last_index + 1);
        }
        if low >= high {
            return Ok(Vec::new());
        }
        // Same rule as raft::util::limit_size: the first entry always, then entries while the
        // running total stays within max_size; stop reading as soon as it would not.
        let limit = match max_size {
            None | Some(raft::NO_LIMIT) => u64::MAX,
            Some(m) => m,
        };
        let mut out = Vec::with_capacity((high - low).min(256) as usize);
        let mut size = 0u64;
        let mut expect = low;
        for kv in self.entries.range(entry_key(low)..entry_key(high)) {
            let (k, v) = kv.map_err(|e| self.sled_err("read entries", e))?;
            if k.as_ref() != entry_key(expect) {
                return Err(self.corrupt(format!("entry {expect} missing from the log")).into());
            }
            let e: Entry = self.decode(&v, &format!("entry {expect}"))?;
            size += u64::from(e.compute_size());
            if !out.is_empty() && size > limit {
                return Ok(out);
            }
            out.push(e);
            expect += 1;
        }
        if expect != high {
            return Err(self.corrupt(format!("entry {expect} missing from the log")).into());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let st = self.read();
        self.term_locked(&st, idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.read().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.read().last_index)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let st = self.read();
        if st.snapshot.index == 0 || st.snapshot.index < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.read_snapshot(&st)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use raft::eraftpb::EntryType;
    use raft::storage::MemStorage;

    /// A unique directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            let p = std::env::temp_dir().join(format!(
                "cibd-store-{tag}-{}-{nanos}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    fn voters(v: &[u64]) -> ConfState {
        ConfState::from((v.to_vec(), Vec::<u64>::new()))
    }

    fn entry(index: u64, term: u64, data: Vec<u8>) -> Entry {
        Entry { index, term, data: data.into(), ..Default::default() }
    }

    fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState { term, vote, commit, ..Default::default() }
    }

    fn random_bytes(rng: &mut SmallRng, max: usize) -> Vec<u8> {
        let n = rng.gen_range(0..=max);
        (0..n).map(|_| rng.gen()).collect()
    }

    #[test]
    fn store_basics_and_errors() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<SledStorage>();
        let dir = TempDir::new("basics");
        let p = dir.path().join("db");
        assert!(matches!(SledStorage::open(&p), Err(StoreError::NotFound { .. })));
        let s = SledStorage::create_with_conf_state(&p, voters(&[1, 2, 3])).unwrap();
        assert_eq!(s.first_index(), Ok(1));
        assert_eq!(s.last_index(), Ok(0));
        assert_eq!(s.term(0), Ok(0));
        assert_eq!(s.term(1), Err(raft::Error::Store(StorageError::Unavailable)));
        assert!(s.initial_state().unwrap().initialized());
        assert_eq!(s.snapshot(0, 2), Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)));
        s.append(&[entry(1, 1, b"a".to_vec()), entry(2, 1, b"b".to_vec()), entry(3, 2, b"c".to_vec())]).unwrap();
        s.set_hardstate(hard_state(2, 1, 2)).unwrap();
        let e = s.create_snapshot(3, voters(&[1, 2, 3]), b"x".to_vec()).unwrap_err();
        assert!(matches!(e, StoreError::SnapshotUncommitted { .. }), "{e}");
        s.create_snapshot(2, voters(&[1, 2, 3]), b"cib@2".to_vec()).unwrap();
        s.compact(2).unwrap();
        assert_eq!(s.first_index(), Ok(3));
        assert_eq!(s.term(2), Ok(1));
        assert_eq!(s.term(1), Err(raft::Error::Store(StorageError::Compacted)));
        let e = s.append(&[entry(2, 3, vec![])]).unwrap_err();
        assert!(matches!(e, StoreError::AppendCompacted { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&p.display().to_string()) && !msg.contains('\n'), "{msg}");
        drop(s);
        assert!(matches!(SledStorage::create(&p), Err(StoreError::AlreadyExists { .. })));
        let s = SledStorage::open(&p).unwrap();
        assert_eq!((s.first_index(), s.last_index(), s.term(2)), (Ok(3), Ok(3), Ok(1)));
        let snap = s.snapshot(0, 2).unwrap();
        assert_eq!((snap.get_metadata().index, snap.get_metadata().term, &snap.data[..]), (2, 1, &b"cib@2"[..]));
        assert_eq!(s.latest_snapshot().unwrap(), Some(snap));
        assert_eq!(s.hard_state(), hard_state(2, 1, 2));
        s.verify().unwrap();

        // Compact the whole log: first_index moves past it, its last term is kept.
        s.set_hardstate(hard_state(2, 1, 3)).unwrap();
        s.create_snapshot(3, voters(&[1, 2, 3]), b"cib@3".to_vec()).unwrap();
        s.compact(3).unwrap();
        assert_eq!((s.first_index(), s.last_index(), s.term(3)), (Ok(4), Ok(3), Ok(2)));
        assert_eq!(s.entries(4, 4, None, ctx()), Ok(vec![]));
        assert_eq!(s.entries(3, 4, None, ctx()), Err(raft::Error::Store(StorageError::Compacted)));
        s.append(&[entry(4, 2, b"d".to_vec())]).unwrap();
        drop(s);
        let s = SledStorage::open(&p).unwrap();
        assert_eq!((s.first_index(), s.last_index(), s.term(3), s.term(4)), (Ok(4), Ok(4), Ok(2), Ok(2)));
        assert_eq!(s.entries(4, 5, Some(0), ctx()).unwrap()[0].data[..], b"d"[..]);

        // A received snapshot replaces everything.
        let mut sn = Snapshot::default();
        sn.mut_metadata().index = 10;
        sn.mut_metadata().term = 5;
        sn.mut_metadata().set_conf_state(voters(&[1, 2, 3, 4]));
        sn.data = b"cib@10".to_vec().into();
        s.apply_snapshot(sn.clone()).unwrap();
        assert_eq!((s.first_index(), s.last_index(), s.term(10)), (Ok(11), Ok(10), Ok(5)));
        assert_eq!(s.hard_state(), hard_state(5, 1, 10));
        assert_eq!(s.conf_state(), voters(&[1, 2, 3, 4]));
        assert_eq!(s.snapshot(10, 2), Ok(sn));
        s.verify().unwrap();
    }

    /// The store under test next to raft's MemStorage, plus what MemStorage does not keep.
    struct ModelRun {
        seed: u64,
        dir: TempDir,
        mem: MemStorage,
        sled: Option<SledStorage>,
        /// The snapshot the store must return (None: SnapshotTemporarilyUnavailable).
        snap: Option<Snapshot>,
        /// (index, term) of the entry before the first one.
        base: (u64, u64),
        rng: SmallRng,
        counts: BTreeMap<&'static str, usize>,
    }

    impl ModelRun {
        fn s(&self) -> &SledStorage {
            self.sled.as_ref().unwrap()
        }

        /// Term of `i` in `[first - 1, last]`, from MemStorage (which forgets the term at
        /// the compaction point, hence `base`).
        fn term_of(&self, i: u64) -> u64 {
            if i == self.base.0 {
                self.base.1
            } else {
                self.mem.term(i).unwrap()
            }
        }

        fn bump(&mut self, what: &'static str) {
            *self.counts.entry(what).or_default() += 1;
        }

        fn step(&mut self, step: usize) {
            let first = self.mem.first_index().unwrap();
            let last = self.mem.last_index().unwrap();
            let hs = self.mem.initial_state().unwrap().hard_state;
            let snap_idx = self.snap.as_ref().map_or(0, |s| s.get_metadata().index);
            let at = format!("seed {} step {step}", self.seed);
            match self.rng.gen_range(0..100) {
                0..=39 => {
                    // Append at the end or over the uncommitted tail (truncation).
                    let lo = first.max(hs.commit + 1);
                    let start = if lo > last { last + 1 } else { self.rng.gen_range(lo..=last + 1) };
                    let n = self.rng.gen_range(1..=6);
                    let term = self.term_of(start - 1).max(hs.term).max(1) + self.rng.gen_range(0..=1);
                    let ents: Vec<Entry> = (start..start + n)
                        .map(|i| {
                            let mut e = entry(i, term, random_bytes(&mut self.rng, 160));
                            if self.rng.gen_ratio(1, 5) {
                                e.context = random_bytes(&mut self.rng, 20).into();
                                e.entry_type = EntryType::EntryConfChangeV2;
                            }
                            e
                        })
                        .collect();
                    self.s().append(&ents).unwrap_or_else(|e| panic!("{at}: append: {e}"));
                    self.mem.wl().append(&ents).unwrap();
                    self.bump(if start <= last { "append (truncating)" } else { "append" });
                }
                40..=59 => {
                    let commit = self.rng.gen_range(hs.commit..=last);
                    let nhs = hard_state(hs.term + self.rng.gen_range(0..=1), self.rng.gen_range(0..=3), commit);
                    self.s().set_hardstate(nhs.clone()).unwrap_or_else(|e| panic!("{at}: set_hardstate: {e}"));
                    self.mem.wl().set_hardstate(nhs);
                    self.bump("set_hardstate");
                }
                60..=67 => {
                    let lo = snap_idx.max(self.base.0).max(1);
                    if lo > hs.commit {
                        return;
                    }
                    let index = self.rng.gen_range(lo..=hs.commit);
                    let cs = self.mem.initial_state().unwrap().conf_state;
                    let data = random_bytes(&mut self.rng, 3000);
                    self.s()
                        .create_snapshot(index, cs.clone(), data.clone())
                        .unwrap_or_else(|e| panic!("{at}: create_snapshot: {e}"));
                    let mut sn = Snapshot::default();
                    sn.mut_metadata().index = index;
                    sn.mut_metadata().term = self.term_of(index);
                    sn.mut_metadata().set_conf_state(cs);
                    sn.data = data.into();
                    self.snap = Some(sn);
                    self.bump("create_snapshot");
                }
                68..=74 => {
                    // Compact within the snapshot (sometimes a no-op at or below the base).
                    // Never the whole log: MemStorage, left without entries, falls back to its
                    // last applied snapshot for first_index (the store does not; see the basics test).
                    let top = snap_idx.min(last.saturating_sub(1));
                    let index = if top > self.base.0 && !self.rng.gen_ratio(1, 5) {
                        self.rng.gen_range(self.base.0 + 1..=top)
                    } else {
                        self.rng.gen_range(self.base.0.saturating_sub(2)..=self.base.0)
                    };
                    let term = if index >= self.base.0 { self.term_of(index) } else { 0 };
                    self.s().compact(index).unwrap_or_else(|e| panic!("{at}: compact({index}): {e}"));
                    if index > self.base.0 {
                        self.mem.wl().compact(index + 1).unwrap();
                        self.base = (index, term);
                        self.bump("compact");
                    } else {
                        self.bump("compact (no-op)");
                    }
                }
                75..=79 => {
                    let lo = first.max(hs.commit).max(1);
                    let index = self.rng.gen_range(lo..=last + 5);
                    let top = if last >= first { self.term_of(last) } else { self.base.1 };
                    let term = hs.term.max(top).max(1) + self.rng.gen_range(0..=1);
                    let mut sn = Snapshot::default();
                    sn.mut_metadata().index = index;
                    sn.mut_metadata().term = term;
                    let n = self.rng.gen_range(1..=5);
                    sn.mut_metadata().set_conf_state(ConfState::from(((1..=n).collect::<Vec<u64>>(), vec![n + 1])));
                    sn.data = random_bytes(&mut self.rng, 5000).into();
                    self.s().apply_snapshot(sn.clone()).unwrap_or_else(|e| panic!("{at}: apply_snapshot: {e}"));
                    self.mem.wl().apply_snapshot(sn.clone()).unwrap();
                    self.base = (index, term);
                    self.snap = Some(sn);
                    self.bump("apply_snapshot");
                }
                80..=83 => {
                    let n = self.rng.gen_range(1..=5);
                    let cs = voters(&(1..=n).collect::<Vec<u64>>());
                    self.s().set_conf_state(cs.clone()).unwrap();
                    self.mem.wl().set_conf_state(cs);
                    self.bump("set_conf_state");
                }
                84..=91 => {
                    self.sled = None;
                    self.sled = Some(SledStorage::open(self.dir.path()).unwrap_or_else(|e| panic!("{at}: reopen: {e}")));
                    self.bump("reopen");
                }
                _ => self.invalid(first, last, &hs, snap_idx, &at),
            }
        }

        /// A call that breaks a rule: must fail with the right error and change nothing
        /// (the comparison that follows checks the latter).
        fn invalid(&mut self, first: u64, last: u64, hs: &HardState, snap_idx: u64, at: &str) {
            let s = self.sled.as_ref().unwrap();
            let (want, r) = match self.rng.gen_range(0..9) {
                0 => ("AppendGap", s.append(&[entry(last + 2, hs.term, vec![1])])),
                1 if first > 1 => ("AppendCompacted", s.append(&[entry(first - 1, hs.term, vec![2])])),
                2 => ("AppendNotContiguous", s.append(&[entry(last + 1, hs.term, vec![]), entry(last + 3, hs.term, vec![])])),
                3 if hs.commit >= first => {
                    let i = self.rng.gen_range(first..=hs.commit);
                    ("OverwriteCommitted", s.append(&[entry(i, hs.term + 1, vec![])]))
                }
                4 => ("CommitBeyondLog", s.set_hardstate(hard_state(hs.term, 0, last + 1))),
                5 if hs.commit > 0 => ("CommitRegressed", s.set_hardstate(hard_state(hs.term, 0, hs.commit - 1))),
                6 if snap_idx < last => {
                    ("CompactBeyondSnapshot", s.compact(last.min(snap_idx + 1 + self.rng.gen_range(0..3))))
                }
                7 => ("SnapshotUncommitted", s.create_snapshot(hs.commit + 1, voters(&[1]), vec![])),
                8 if first > 1 => {
                    let mut sn = Snapshot::default();
                    sn.mut_metadata().index = first - 1;
                    sn.mut_metadata().term = hs.term;
                    ("SnapshotOutOfDate", s.apply_snapshot(sn))
                }
                _ => return,
            };
            let e = match r {
                Ok(()) => panic!("{at}: expected {want}, got Ok"),
                Err(e) => e,
            };
            let got = format!("{e:?}");
            let got = got.split([' ', '{']).next().unwrap();
            assert_eq!(got, want, "{at}: {e}");
            let msg = e.to_string();
            assert!(!msg.contains('\n') && msg.contains(&self.dir.path().display().to_string()), "{at}: {msg}");
            self.bump("rejected");
        }

        /// Every Storage method answers as MemStorage does (save its documented quirks).
        fn compare(&mut self, step: usize) {
            let at = format!("seed {} step {step}", self.seed);
            let (mem, s) = (&self.mem, self.sled.as_ref().unwrap());
            let (ms, ss) = (mem.initial_state().unwrap(), s.initial_state().unwrap());
            assert_eq!(ss.hard_state, ms.hard_state, "{at}: hard state");
            assert_eq!(ss.conf_state, ms.conf_state, "{at}: conf state");
            let first = mem.first_index().unwrap();
            let last = mem.last_index().unwrap();
            assert_eq!(s.first_index(), Ok(first), "{at}: first_index");
            assert_eq!(s.last_index(), Ok(last), "{at}: last_index");
            for i in first..=last + 2 {
                assert_eq!(s.term(i), mem.term(i), "{at}: term({i})");
            }
            // MemStorage keeps the term before first_index only when it came from an
            // applied snapshot; the store always keeps it.
            assert_eq!(first - 1, self.base.0, "{at}: base");
            assert_eq!(s.term(first - 1), Ok(self.base.1), "{at}: term(first - 1)");
            if let Ok(t) = mem.term(first - 1) {
                assert_eq!(t, self.base.1, "{at}: mem term(first - 1)");
            }
            if first >= 2 {
                assert_eq!(s.term(first - 2), Err(raft::Error::Store(StorageError::Compacted)), "{at}: term(first - 2)");
            }
            if first <= last {
                assert_eq!(s.entries(first, last + 1, None, ctx()), mem.entries(first, last + 1, None, ctx()), "{at}: all entries");
            }
            for _ in 0..6 {
                let lo = self.rng.gen_range(first.saturating_sub(1)..=last + 1);
                let hi = self.rng.gen_range(lo..=last + 1);
                if lo == hi && first > last {
                    continue; // MemStorage indexes its empty Vec here and panics.
                }
                let max: Option<u64> = match self.rng.gen_range(0..4) {
                    0 => None,
                    1 => Some(0),
                    2 => Some(raft::NO_LIMIT),
                    _ => Some(self.rng.gen_range(0..700)),
                };
                assert_eq!(s.entries(lo, hi, max, ctx()), mem.entries(lo, hi, max, ctx()), "{at}: entries({lo}, {hi}, {max:?})");
            }
            let unavailable = Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
            match &self.snap {
                None => assert_eq!(s.snapshot(0, 2), unavailable, "{at}: no snapshot"),
                Some(sn) => {
                    let idx = sn.get_metadata().index;
                    assert_eq!(s.snapshot(idx, 2).as_ref(), Ok(sn), "{at}: snapshot");
                    assert_eq!(s.snapshot(idx + 1, 2), unavailable, "{at}: snapshot newer than stored");
                }
            }
            s.verify().unwrap_or_else(|e| panic!("{at}: verify: {e}"));
        }
    }

    #[test]
    fn store_model_matches_memstorage() {
        let seeds: Vec<u64> = match std::env::var("CIBD_STORE_SEED") {
            Ok(s) => vec![s.parse().unwrap()],
            Err(_) => vec![1, 2, 3, 4, 5, 6],
        };
        let steps = 300;
        let mut total: BTreeMap<&'static str, usize> = BTreeMap::new();
        for seed in seeds {
            let dir = TempDir::new("model");
            let cs = voters(&[1, 2, 3]);
            let sled = SledStorage::create_with_conf_state(dir.path(), cs.clone()).unwrap();
            let mut run = ModelRun {
                seed,
                dir,
                mem: MemStorage::new_with_conf_state(cs),
                sled: Some(sled),
                snap: None,
                base: (0, 0),
                rng: SmallRng::seed_from_u64(seed),
                counts: BTreeMap::new(),
            };
            run.compare(0);
            for step in 1..=steps {
                run.step(step);
                run.compare(step);
            }
            for (k, v) in std::mem::take(&mut run.counts) {
                *total.entry(k).or_default() += v;
            }
            run.sled = None;
        }
        println!("model test ops: {total:?}");
        if std::env::var("CIBD_STORE_SEED").is_ok() {
            return;
        }
        for op in ["append", "append (truncating)", "set_hardstate", "create_snapshot", "compact", "apply_snapshot", "reopen", "rejected"] {
            assert!(total.get(op).copied().unwrap_or(0) > 0, "op {op} never exercised: {total:?}");
        }
    }

    // ---- crash test ----

    const CRASH_CHILD_ENV: &str = "CIBD_STORE_CRASH_CHILD";
    const CRASH_SEED_ENV: &str = "CIBD_STORE_CRASH_SEED";
    const CRASH_TAG: &str = "CIBD-CRASH";

    /// Entry payload, a function of (index, term) so the parent can check it; some are
    /// large enough to be stored by sled as blobs.
    fn crash_data(index: u64, term: u64) -> Vec<u8> {
        let len = if index.is_multiple_of(97) { 40_000 } else { ((index * 31 + term * 7) % 600) as usize };
        let pat = format!("cib-{index}-{term};");
        pat.bytes().cycle().take(len.max(1)).collect()
    }

    fn crash_snapshot_data(index: u64) -> Vec<u8> {
        format!("snapshot-{index};").bytes().cycle().take(2000 + (index % 5000) as usize).collect()
    }

    /// The writer, run in a child process and killed at random.
    #[test]
    fn store_crash_child_writer() {
        let Ok(dir) = std::env::var(CRASH_CHILD_ENV) else { return };
        let seed: u64 = std::env::var(CRASH_SEED_ENV).unwrap().parse().unwrap();
        let dir = PathBuf::from(dir);
        let stdout = std::io::stdout();
        let say = |line: String| {
            let mut out = stdout.lock();
            if writeln!(out, "{CRASH_TAG} {line}").and_then(|_| out.flush()).is_err() {
                std::process::exit(0); // parent gone
            }
        };
        let store = match SledStorage::open(&dir) {
            Ok(s) => s,
            Err(StoreError::NotFound { .. }) => {
                say("W create".into());
                let s = SledStorage::create_with_conf_state(&dir, voters(&[1])).unwrap();
                say("A".into());
                s
            }
            Err(e) => panic!("child open: {e}"),
        };
        say("ready".into());
        let mut rng = SmallRng::seed_from_u64(seed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let hs = store.hard_state();
            let last = store.last_index().unwrap();
            let base = store.first_index().unwrap() - 1;
            let snap = store.snapshot_metadata().index;
            let cur_term = hs.term.max(store.term(last).unwrap()).max(1);
            let r = rng.gen_range(0..100);
            if r < 55 || (r < 65 && hs.commit == last) {
                let n = rng.gen_range(1..=12);
                let start = last + 1;
                let ents: Vec<Entry> = (start..start + n).map(|i| entry(i, cur_term, crash_data(i, cur_term))).collect();
                say(format!("W append {start} {n} {cur_term}"));
                store.append(&ents).unwrap();
                say("A".into());
            } else if r < 65 {
                // A new term overwrites the uncommitted tail.
                let start = rng.gen_range(hs.commit + 1..=last);
                let n = rng.gen_range(1..=6);
                let term = cur_term + 1;
                let ents: Vec<Entry> = (start..start + n).map(|i| entry(i, term, crash_data(i, term))).collect();
                say(format!("W append {start} {n} {term}"));
                store.append(&ents).unwrap();
                say("A".into());
            } else if r < 90 {
                let commit = rng.gen_range(hs.commit..=last);
                say(format!("W hs {cur_term} {commit}"));
                store.set_hardstate(hard_state(cur_term, 1, commit)).unwrap();
                say("A".into());
            } else if r < 96 {
                if hs.commit > snap {
                    say(format!("W snap {}", hs.commit));
                    store.create_snapshot(hs.commit, voters(&[1]), crash_snapshot_data(hs.commit)).unwrap();
                    say("A".into());
                }
            } else if snap > base {
                let index = rng.gen_range(base + 1..=snap);
                say(format!("W compact {index}"));
                store.compact(index).unwrap();
                say("A".into());
            }
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum CrashOp {
        Create,
        Append { start: u64, n: u64, term: u64 },
        HardState { term: u64, commit: u64 },
        Snap { index: u64 },
        Compact { index: u64 },
    }

    impl CrashOp {
        fn parse(s: &str) -> CrashOp {
            let w: Vec<&str> = s.split_whitespace().collect();
            let num = |i: usize| -> u64 { w[i].parse().unwrap() };
            match w[0] {
                "create" => CrashOp::Create,
                "append" => CrashOp::Append { start: num(1), n: num(2), term: num(3) },
                "hs" => CrashOp::HardState { term: num(1), commit: num(2) },
                "snap" => CrashOp::Snap { index: num(1) },
                "compact" => CrashOp::Compact { index: num(1) },
                _ => panic!("bad crash op {s:?}"),
            }
        }
    }

    /// What the store must hold: entries index -> term, log base, hard state, snapshot.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    struct CrashModel {
        created: bool,
        entries: BTreeMap<u64, u64>,
        base: (u64, u64),
        hs: (u64, u64, u64), // term, vote, commit
        snap: (u64, u64),    // index, term
    }

    impl CrashModel {
        fn term_of(&self, i: u64) -> u64 {
            if i == self.base.0 {
                self.base.1
            } else {
                self.entries[&i]
            }
        }

        fn apply(&mut self, op: &CrashOp) {
            match *op {
                CrashOp::Create => self.created = true,
                CrashOp::Append { start, n, term } => {
                    self.entries.split_off(&start);
                    for i in start..start + n {
                        self.entries.insert(i, term);
                    }
                }
                CrashOp::HardState { term, commit } => self.hs = (term, 1, commit),
                CrashOp::Snap { index } => self.snap = (index, self.term_of(index)),
                CrashOp::Compact { index } => {
                    self.base = (index, self.term_of(index));
                    self.entries = self.entries.split_off(&(index + 1));
                }
            }
        }

        /// Reads a store back from disk, checking invariants and entry payloads.
        fn recover(dir: &Path) -> Result<CrashModel, String> {
            let s = match SledStorage::open(dir) {
                Ok(s) => s,
                Err(StoreError::NotFound { .. }) => return Ok(CrashModel::default()),
                Err(e) => return Err(format!("reopen: {e}")),
            };
            s.verify().map_err(|e| format!("verify: {e}"))?;
            let (first, last) = (s.first_index().unwrap(), s.last_index().unwrap());
            let hs = s.hard_state();
            if hs.commit > last || hs.commit + 1 < first {
                return Err(format!("commit {} outside log [{first}, {last}]", hs.commit));
            }
            let mut m = CrashModel {
                created: true,
                base: (first - 1, s.term(first - 1).map_err(|e| e.to_string())?),
                hs: (hs.term, hs.vote, hs.commit),
                ..CrashModel::default()
            };
            if first <= last {
                let ents = s.entries(first, last + 1, None, ctx()).map_err(|e| e.to_string())?;
                if ents.len() as u64 != last + 1 - first {
                    return Err(format!("{} entries in [{first}, {last}]", ents.len()));
                }
                for (e, i) in ents.iter().zip(first..) {
                    if e.index != i {
                        return Err(format!("entry {i} has index {}", e.index));
                    }
                    if e.data[..] != crash_data(i, e.term)[..] {
                        return Err(format!("entry {i} (term {}) has the wrong data", e.term));
                    }
                    m.entries.insert(i, e.term);
                }
            }
            if let Some(sn) = s.latest_snapshot().map_err(|e| e.to_string())? {
                let md = sn.get_metadata();
                if sn.data[..] != crash_snapshot_data(md.index)[..] {
                    return Err(format!("snapshot {} has the wrong data", md.index));
                }
                m.snap = (md.index, md.term);
            }
            Ok(m)
        }

        /// Acknowledged writes of `self` missing from `got`: entries, hard state, snapshot.
        fn lost_in(&self, got: &CrashModel) -> usize {
            let mut lost = self.entries.iter().filter(|&(i, t)| got.entries.get(i) != Some(t) && *i > got.base.0).count();
            lost += self.entries.keys().filter(|&&i| i <= got.base.0 && i > got.snap.0).count();
            lost += usize::from(got.hs.2 < self.hs.2 || got.hs.0 < self.hs.0);
            lost += usize::from(got.snap.0 < self.snap.0);
            lost += usize::from(self.created && !got.created);
            lost
        }
    }

    /// Kills and reaps the child (by its pid, via Child::kill = SIGKILL) even if the test panics.
    struct ChildGuard(Option<Child>);

    impl Drop for ChildGuard {
        fn drop(&mut self) {
            if let Some(mut c) = self.0.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    #[test]
    fn store_crash_kill_writer_loses_no_acknowledged_write() {
        if std::env::var(CRASH_CHILD_ENV).is_ok() {
            return;
        }
        let seed: u64 = std::env::var("CIBD_STORE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0xC1BD);
        let root = TempDir::new("crash");
        let dir = root.path().join("store");
        let stderr_log = root.path().join("child-stderr.log");
        let exe = std::env::current_exe().unwrap();
        let mut rng = SmallRng::seed_from_u64(seed);
        let started = Instant::now();
        let budget = Duration::from_secs(16);
        let target_rounds = 20;
        let mut model = CrashModel::default();
        let (mut rounds, mut acked_ops, mut entries_checked, mut inflight_landed, mut lost_total) = (0, 0, 0, 0, 0);
        while rounds < target_rounds && started.elapsed() < budget {
            let child = Command::new(&exe)
                .args(["--exact", "store::tests::store_crash_child_writer", "--nocapture", "--test-threads=1"])
                .env(CRASH_CHILD_ENV, &dir)
                .env(CRASH_SEED_ENV, (seed.wrapping_mul(1000) + rounds as u64).to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(std::fs::File::create(&stderr_log).unwrap()))
                .spawn()
                .unwrap();
            let mut guard = ChildGuard(Some(child));
            let stdout = guard.0.as_mut().unwrap().stdout.take().unwrap();
            let lines = Arc::new(Mutex::new(Vec::<String>::new()));
            let reader = {
                let lines = Arc::clone(&lines);
                std::thread::spawn(move || {
                    let mut r = BufReader::new(stdout);
                    let mut buf = Vec::new();
                    loop {
                        buf.clear();
                        match r.read_until(b'\n', &mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(_) if buf.last() == Some(&b'\n') => {
                                let l = String::from_utf8_lossy(&buf[..buf.len() - 1]).to_string();
                                // The harness may print "test ... " before our tag on the same line.
                                if let Some(at) = l.find(CRASH_TAG) {
                                    lines.lock().unwrap().push(l[at + CRASH_TAG.len()..].trim().to_string());
                                }
                            }
                            Ok(_) => break, // torn last line: not acknowledged
                        }
                    }
                })
            };
            // Mostly kill while it writes; sometimes while it opens/recovers the store.
            if rng.gen_ratio(1, 5) {
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..60)));
            } else {
                let t0 = Instant::now();
                while !lines.lock().unwrap().iter().any(|l| l == "ready") {
                    if let Some(st) = guard.0.as_mut().unwrap().try_wait().unwrap() {
                        panic!("writer exited early ({st}): {}", std::fs::read_to_string(&stderr_log).unwrap_or_default());
                    }
                    assert!(t0.elapsed() < Duration::from_secs(5), "writer never got ready");
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::thread::sleep(Duration::from_millis(rng.gen_range(5..300)));
            }
            let mut child = guard.0.take().unwrap();
            if let Some(st) = child.try_wait().unwrap() {
                panic!("writer exited before the kill ({st}): {}", std::fs::read_to_string(&stderr_log).unwrap_or_default());
            }
            child.kill().unwrap(); // SIGKILL to this pid
            let status = child.wait().unwrap();
            assert!(!status.success(), "writer was not killed: {status}");
            reader.join().unwrap();
            rounds += 1;

            // Replay what the writer acknowledged; at most one op was in flight.
            let mut inflight: Option<CrashOp> = None;
            for l in lines.lock().unwrap().iter() {
                if let Some(op) = l.strip_prefix("W ") {
                    assert!(inflight.is_none(), "two ops in flight");
                    inflight = Some(CrashOp::parse(op));
                } else if l == "A" {
                    model.apply(&inflight.take().expect("ack without op"));
                    acked_ops += 1;
                }
            }
            let got = CrashModel::recover(&dir).unwrap_or_else(|e| panic!("round {rounds}: {e}"));
            let after = inflight.as_ref().map(|op| {
                let mut m = model.clone();
                m.apply(op);
                m
            });
            entries_checked += model.entries.len();
            let landed = Some(&got) == after.as_ref();
            let lost = if got == model || landed { 0 } else { model.lost_in(&got) };
            lost_total += lost;
            if landed {
                inflight_landed += 1;
                model = got;
            } else if got != model {
                println!("lost acknowledged writes: {lost_total}");
                panic!(
                    "round {rounds}: recovered store is neither the acknowledged state nor that plus the op in flight \
                     ({inflight:?}); lost acknowledged writes: {lost}\nacknowledged: {model:?}\nrecovered: {got:?}"
                );
            }
        }
        println!(
            "crash test: {rounds} kill rounds in {:.1?}, {acked_ops} acknowledged writes, {entries_checked} acknowledged entries checked \
             after kills, {inflight_landed} unacknowledged in-flight writes found whole, log now [{}, {}] commit {} snapshot {}",
            started.elapsed(),
            model.base.0 + 1,
            model.entries.keys().last().copied().unwrap_or(model.base.0),
            model.hs.2,
            model.snap.0,
        );
        println!("lost acknowledged writes: {lost_total}");
        assert_eq!(lost_total, 0);
        assert!(rounds >= 10, "only {rounds} kill rounds in the time budget");
        assert!(acked_ops > 0, "the writer never acknowledged a write");
    }
}

/// The replica persists through this store: every call is durable when it returns.
impl crate::replica::Persist for SledStorage {
    fn append(&mut self, entries: &[Entry]) -> raft::Result<()> {
        SledStorage::append(self, entries).map_err(Into::into)
    }
    fn set_hardstate(&mut self, hs: &HardState) -> raft::Result<()> {
        SledStorage::set_hardstate(self, hs.clone()).map_err(Into::into)
    }
    fn set_conf_state(&mut self, cs: &ConfState) -> raft::Result<()> {
        SledStorage::set_conf_state(self, cs.clone()).map_err(Into::into)
    }
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> raft::Result<()> {
        SledStorage::apply_snapshot(self, snapshot.clone()).map_err(Into::into)
    }
}
