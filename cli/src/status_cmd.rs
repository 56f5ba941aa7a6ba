//! `halo status`: the cluster as crm_mon -1 shows it (text), or as XML or halo's JSON
//! contract; rendered by the `status` crate from the node's CIB, its fencer's history and
//! its membership's quorum.

use std::path::Path;

use anyhow::{anyhow, Result};
use chrono::Offset;
use common::paths::Daemon;
use proto::fenced as fpb;
use proto::membership as mpb;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// text (crm_mon -1), json (halo's contract for scripts) or xml (crm_mon --output-as=xml).
    #[arg(long, default_value = "text")]
    output: String,
}

pub fn run(args: StatusArgs, dir: Option<&Path>) -> Result<()> {
    let format: status::Format = args.output.parse().map_err(|e| anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let out = rt.block_on(async move {
        let cib_sock = crate::local::socket(dir, Daemon::Cibd)?;
        let xml = cibclient::Cib::connect(&cib_sock).await.map_err(|e| anyhow!("{e}; is the node running (`halo sandbox start`)?"))?.query_xml().await.map_err(|e| anyhow!("{e}"))?;
        let cib = cib::Cib::parse(&xml).map_err(|e| anyhow!("the CIB from halo-cibd: {e}"))?;
        let now = chrono::Local::now();
        let mut input = status::StatusInput::new(now.naive_local());
        input.utc_offset_s = now.offset().fix().local_minus_utc();
        // Membership and the fencer add what the CIB does not hold; without them the
        // status is still shown, from the CIB alone.
        if let Ok(ch) = crate::local::channel(dir, Daemon::Membershipd).await {
            let mut m = proto::membership::membership_client::MembershipClient::new(ch);
            if let Ok(s) = m.status(mpb::StatusRequest {}).await {
                input.local_node = Some(s.into_inner().local_name);
            }
            if let Ok(q) = m.quorum(mpb::QuorumRequest {}).await {
                input.quorum = Some(status::Quorum { quorate: q.into_inner().quorate });
            }
        }
        if let Ok(ch) = crate::local::channel(dir, Daemon::Fenced).await {
            let mut f = proto::fenced::fencer_client::FencerClient::new(ch);
            if let Ok(h) = f.history(fpb::HistoryRequest { target: String::new() }).await {
                input.fencing = Some(h.into_inner().entries.iter().filter_map(fence_event).collect());
            }
        }
        Ok::<_, anyhow::Error>(status::render(&cib, &input, format))
    })?;
    print!("{out}");
    Ok(())
}

fn fence_event(e: &fpb::HistoryEntry) -> Option<status::FenceEvent> {
    Some(status::FenceEvent {
        target: e.target.clone(),
        action: e.action.clone(),
        state: e.state.parse().ok()?,
        origin: e.origin.clone(),
        executioner: (!e.executioner.is_empty()).then(|| e.executioner.clone()),
        client: e.client.clone(),
        completed_ms: (e.completed_ms > 0).then_some(e.completed_ms as i64),
        exit_reason: (!e.reason.is_empty()).then(|| e.reason.clone()),
    })
}
