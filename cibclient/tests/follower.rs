//! The follower against a stand-in halo-cibd: patches that apply, a gap read again whole,
//! and a `next` dropped while reading again that loses nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cib::xml::{parse, Document};
use cibclient::Follower;
use proto::cib as pb;
use proto::cib::cib_server::{Cib, CibServer};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status};

/// A CIB at `epoch`, with `n` primitives.
fn cib_at(epoch: u32, n: usize) -> Document {
    let rscs: String = (0..n).map(|i| format!(r#"<primitive id="r{i}" class="ocf" provider="heartbeat" type="Dummy"/>"#)).collect();
    parse(&format!(r#"<cib admin_epoch="0" epoch="{epoch}" num_updates="0" validate-with="pacemaker-3.9"><configuration><crm_config/><nodes/><resources>{rscs}</resources><constraints/></configuration><status/></cib>"#)).unwrap()
}

fn event(index: u64, from: &Document, to: &Document) -> pb::WatchEvent {
    pb::WatchEvent { index, version: String::new(), patch: cib::diff::diff(from, to).to_xml(), configuration: true }
}

struct Stand {
    /// What Query answers.
    doc: Arc<Mutex<Document>>,
    /// Query waits while this is false (a query whose caller went away may still wait: a
    /// gate, not a count).
    open: watch::Receiver<bool>,
    events: Mutex<Option<mpsc::Receiver<Result<pb::WatchEvent, Status>>>>,
}

#[tonic::async_trait]
impl Cib for Stand {
    async fn query(&self, _: Request<pb::QueryRequest>) -> Result<Response<pb::QueryReply>, Status> {
        self.open.clone().wait_for(|o| *o).await.map_err(|_| Status::unavailable("stopping"))?;
        Ok(Response::new(pb::QueryReply { xml: self.doc.lock().unwrap().root.to_xml(), ..Default::default() }))
    }
    async fn write(&self, _: Request<pb::WriteRequest>) -> Result<Response<pb::WriteReply>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    type WatchStream = ReceiverStream<Result<pb::WatchEvent, Status>>;
    async fn watch(&self, _: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let rx = self.events.lock().unwrap().take().ok_or_else(|| Status::unavailable("one watcher"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::CibStatus>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn change_voters(&self, _: Request<pb::ChangeVotersRequest>) -> Result<Response<pb::ChangeVotersReply>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
}

#[tokio::test]
async fn a_gap_is_read_again_whole_and_a_dropped_next_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("cibd.sock");
    let doc = Arc::new(Mutex::new(cib_at(1, 0)));
    let (open, gate) = watch::channel(true);
    let (tx, rx) = mpsc::channel(16);
    let stand = Stand { doc: doc.clone(), open: gate, events: Mutex::new(Some(rx)) };
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(tonic::transport::Server::builder().add_service(CibServer::new(stand)).serve_with_incoming(UnixListenerStream::new(listener)));

    let mut f = Follower::start(&sock).await.unwrap();
    assert_eq!(f.doc.root.attr("epoch"), Some("1"));

    // A patch that applies: the copy follows it, no read.
    tx.send(Ok(event(5, &cib_at(1, 0), &cib_at(2, 1)))).await.unwrap();
    let c = f.next().await.unwrap();
    assert_eq!((c.index, f.index, f.doc.root.attr("epoch")), (5, 5, Some("2")));
    assert!(c.paths().any(|p| p.starts_with("/cib/configuration")));

    // A gap (the patch is from epoch 3, the copy is at 2): the CIB is read again, and the
    // read is held back so that `next` is dropped in the middle of it.
    open.send_replace(false);
    *doc.lock().unwrap() = cib_at(4, 3);
    tx.send(Ok(event(7, &cib_at(3, 2), &cib_at(4, 3)))).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), f.next()).await.is_err(), "the read is held back");
    assert_eq!(f.index, 5, "the copy is not current while it is read again");
    open.send_replace(true);
    let c = tokio::time::timeout(Duration::from_secs(10), f.next()).await.expect("the missed change is returned").unwrap();
    assert_eq!((c.index, f.index, f.doc.root.attr("epoch")), (7, 7, Some("4")));
    assert_eq!(f.current().await.unwrap().root.attr("epoch"), Some("4"));

    // The stream ends: an error, to start again.
    drop(tx);
    assert!(f.next().await.is_err());
}
