//! The typed client of the local halo-cibd, and the CIB follower: a local copy of the CIB
//! kept current from the Watch stream (each committed change is a v2 patchset applied in
//! commit order; a patch that does not apply — a gap — makes it read the whole CIB again).
//! One follower for every daemon that acts on the CIB.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cib::xml::Document;
use proto::cib as pb;
use proto::cib::cib_client::CibClient;
use tonic::transport::Channel;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach halo-cibd at {path}: {reason}")]
    Unreachable { path: String, reason: String },
    #[error("halo-cibd: {0}")]
    Refused(String),
    /// Nothing was changed and the same write may simply be sent again (no raft leader
    /// at that moment: the next one holds it until a leader is known).
    #[error("halo-cibd: {0}")]
    Unavailable(String),
    #[error("the CIB from halo-cibd does not parse: {0}")]
    Malformed(String),
}

/// A connection to the node's halo-cibd.
#[derive(Clone)]
pub struct Cib {
    client: CibClient<Channel>,
}

impl Cib {
    pub async fn connect(sock: &Path) -> Result<Cib, Error> {
        let unreachable = |reason: String| Error::Unreachable { path: sock.display().to_string(), reason };
        let ch = tokio::time::timeout(Duration::from_secs(5), proto::connect_unix(sock.to_path_buf()))
            .await
            .map_err(|_| unreachable("no answer within 5 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Cib { client: CibClient::new(ch).max_decoding_message_size(256 << 20).max_encoding_message_size(64 << 20) })
    }

    /// The whole CIB as XML, with its version.
    pub async fn query_xml(&mut self) -> Result<String, Error> {
        let r = self.client.query(pb::QueryRequest::default()).await.map_err(|e| Error::Refused(e.message().to_string()))?.into_inner();
        match r.error {
            Some(e) => Err(Error::Refused(e.message)),
            None => Ok(r.xml),
        }
    }

    pub async fn query(&mut self) -> Result<Document, Error> {
        let xml = self.query_xml().await?;
        cib::xml::parse(&xml).map_err(|e| Error::Malformed(e.to_string()))
    }

    /// One write; its raft index once committed, or the refusal.
    pub async fn write(&mut self, w: pb::WriteRequest) -> Result<pb::WriteReply, Error> {
        let r = self.client.write(w).await.map_err(|e| Error::Refused(e.message().to_string()))?.into_inner();
        match r.error {
            Some(e) if e.kind == pb::cib_error::Kind::Unavailable as i32 => Err(Error::Unavailable(e.message)),
            Some(e) => Err(Error::Refused(e.message)),
            None => Ok(r),
        }
    }

    /// The committed changes from now on (with `configuration_only`, those of the configuration).
    pub async fn watch(&mut self, configuration_only: bool) -> Result<tonic::Streaming<pb::WatchEvent>, Error> {
        Ok(self.client.watch(pb::WatchRequest { configuration_only }).await.map_err(|e| Error::Refused(e.message().to_string()))?.into_inner())
    }

    pub async fn status(&mut self) -> Result<pb::CibStatus, Error> {
        Ok(self.client.status(pb::StatusRequest {}).await.map_err(|e| Error::Refused(e.message().to_string()))?.into_inner())
    }

    /// Make `voters` the CIB's raft voters; the voters it has afterwards.
    pub async fn change_voters(&mut self, voters: Vec<u64>) -> Result<Vec<u64>, Error> {
        Ok(self.client.change_voters(pb::ChangeVotersRequest { voters }).await.map_err(|e| Error::Refused(e.message().to_string()))?.into_inner().voters)
    }
}

/// What changed in one committed write, as far as a follower's user cares.
#[derive(Debug, Clone)]
pub struct Change {
    pub index: u64,
    /// The patchset, parsed.
    pub patch: cib::xml::Element,
}

impl Change {
    /// The paths the patch changes (`/cib/status/...`, `/cib/configuration/...`).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.patch.children_named("change").filter_map(|c| c.attr("path"))
    }
}

/// A local copy of the CIB, current up to `index`.
pub struct Follower {
    sock: PathBuf,
    cib: Cib,
    stream: tonic::Streaming<pb::WatchEvent>,
    pub doc: Document,
    /// The raft index of the last change applied (0 before the first).
    pub index: u64,
    /// A change whose patch did not apply: `doc` must be read again whole before it is used,
    /// and the change is returned once it is. Kept here, so a `next` or `current` dropped
    /// while reading (a `select!`, a timeout) loses nothing: the next call reads again.
    missed: Option<Change>,
    stale: bool,
    /// Told of configuration changes only: the copy's status (and version) lag, so a change
    /// usually finds the copy behind and reads it whole (expected, not a gap).
    configuration_only: bool,
}

impl Follower {
    /// Subscribe first, then read: no change falls between the two.
    pub async fn start(sock: &Path) -> Result<Follower, Error> {
        Self::start_with(sock, false).await
    }

    /// A follower of the configuration alone (the fencer's): status-only writes, most of a
    /// cluster's, are not even sent to it. Its copy is whole and current as of the last
    /// configuration change; the status in it may be older.
    pub async fn start_configuration_only(sock: &Path) -> Result<Follower, Error> {
        Self::start_with(sock, true).await
    }

    async fn start_with(sock: &Path, configuration_only: bool) -> Result<Follower, Error> {
        let mut cib = Cib::connect(sock).await?;
        let stream = cib.watch(configuration_only).await?;
        let doc = cib.query().await?;
        Ok(Follower { sock: sock.to_path_buf(), cib, stream, doc, index: 0, missed: None, stale: false, configuration_only })
    }

    /// The next committed change, applied to `doc`. A patch that does not apply to the
    /// copy (it missed something) makes it read the whole CIB again. Err: the stream
    /// ended (halo-cibd went away); start a new follower. Cancel-safe.
    pub async fn next(&mut self) -> Result<Change, Error> {
        if self.missed.is_none() {
            let ev = match self.stream.message().await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Err(Error::Unreachable { path: self.sock.display().to_string(), reason: "the watch stream ended".into() }),
                Err(e) => return Err(Error::Unreachable { path: self.sock.display().to_string(), reason: e.message().to_string() }),
            };
            let patch = cib::xml::parse(&ev.patch).map_err(|e| Error::Malformed(e.to_string()))?.root;
            // In place (no copy of the whole CIB per change): a patch that fails leaves the
            // copy part-changed, and it is read again whole (or the follower is dropped on an
            // error).
            match cib::diff::apply_patch_in_place(&mut self.doc, &patch) {
                Ok(()) => {
                    self.index = self.index.max(ev.index);
                    return Ok(Change { index: ev.index, patch });
                }
                Err(e) => {
                    if self.configuration_only {
                        tracing::debug!("the configuration changed; reading the CIB again ({e})");
                    } else {
                        tracing::warn!("the CIB copy missed a change ({e}); reading it again");
                    }
                    self.missed = Some(Change { index: ev.index, patch });
                    self.stale = true;
                }
            }
        }
        self.current().await?;
        Ok(self.missed.take().expect("a missed change is kept until it is returned"))
    }

    /// The copy, whole: a read again that a dropped `next` left unfinished is finished
    /// first. Cancel-safe.
    pub async fn current(&mut self) -> Result<&Document, Error> {
        if self.stale {
            self.doc = self.cib.query().await?;
            self.stale = false;
            self.index = self.index.max(self.missed.as_ref().map_or(0, |c| c.index));
        }
        Ok(&self.doc)
    }
}
