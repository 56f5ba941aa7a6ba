//! The fencer's link to the local halo-cibd: the devices the configuration allows on this
//! node are registered and kept current from a [`cibclient::Follower`] (the one copy of the
//! CIB that every daemon acting on it follows), as Pacemaker's fencer does without waiting
//! for the executor; and the CIB read whole for a fence request (topology,
//! `stonith-timeout`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cib::xml::{Document, Element};
use cibclient::Follower;

use crate::cib_devices::cib_devices;
use crate::fencer::Fencer;

/// How long halo-cibd has to answer a fence request's read of the CIB.
const QUERY_WAIT: Duration = Duration::from_secs(10);
/// A burst of changes is taken whole before the devices are read again: it ends after this
/// long without a change ...
const BURST_QUIET: Duration = Duration::from_millis(200);
/// ... or this long after its first change, so a steady stream of writes does not hold the
/// devices back.
const BURST_MAX: Duration = Duration::from_secs(2);

/// The whole CIB from the local halo-cibd, parsed.
pub async fn query_cib(sock: &Path) -> Result<Element, String> {
    let read = async { cibclient::Cib::connect(sock).await?.query().await };
    match tokio::time::timeout(QUERY_WAIT, read).await {
        Ok(r) => r.map(|d| d.root).map_err(|e| e.to_string()),
        Err(_) => Err(format!("halo-cibd did not answer the query within {} s", QUERY_WAIT.as_secs())),
    }
}

/// `admin_epoch.epoch`: what a configuration change bumps (a status change bumps only
/// num_updates).
fn config_version(root: &Element) -> String {
    format!("{}.{}", root.attr("admin_epoch").unwrap_or("0"), root.attr("epoch").unwrap_or("0"))
}

/// Whether a committed change (a v2 patchset) can change which devices exist, their
/// parameters, where they may run or the topology: any configuration change outside
/// `<resources>`, and inside it one naming a known device, creating a stonith primitive or
/// touching a template. Status changes and other resources' changes cannot; placing every
/// resource again for those would cost every node's fencer work on every write of a large
/// cluster.
pub fn touches_fencing(patch: &Element, devices: &[String]) -> bool {
    for c in patch.children_named("change") {
        let path = c.attr("path").unwrap_or("");
        if path == "/cib" || path.starts_with("/cib/status") {
            continue;
        }
        if !path.starts_with("/cib/configuration/resources") {
            return true;
        }
        let names_device = devices.iter().any(|d| path.contains(&format!("@id='{d}'")));
        let creates_device = c.iter_descendants().any(|e| e.name == "primitive" && e.attr("class") == Some("stonith"));
        if names_device || creates_device || path.contains("template") || c.iter_descendants().any(|e| e.name == "template") {
            return true;
        }
    }
    false
}

/// Register the devices the CIB allows here; again whenever the configuration changes in a
/// way that matters to fencing ([`touches_fencing`]). Bursts of changes are coalesced.
/// Runs for the daemon's life, following the CIB again when halo-cibd restarts.
pub async fn follow(fencer: Fencer, sock: PathBuf) {
    let mut warned = false;
    loop {
        let mut follower = match Follower::start_configuration_only(&sock).await {
            Ok(f) => f,
            Err(e) => {
                if !warned {
                    tracing::warn!("cannot follow the CIB yet ({e}); retrying");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        warned = false;
        let mut applied = sync(&fencer, &follower.doc).await;
        if let Err(e) = track(&fencer, &mut follower, &mut applied).await {
            tracing::warn!("stopped following the CIB ({e}); following it again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Read the devices again after each burst of changes that can matter to fencing and that
/// changed the configuration's version since `applied`. Err: the follower must start again.
async fn track(fencer: &Fencer, follower: &mut Follower, applied: &mut Option<String>) -> Result<(), cibclient::Error> {
    loop {
        let first = follower.next().await?;
        let known: Vec<String> = fencer.cib_view().into_iter().map(|d| d.device.id).collect();
        let mut touched = touches_fencing(&first.patch, &known);
        let until = Instant::now() + BURST_MAX;
        // Take what else comes at once: one read of the devices for a burst of writes.
        loop {
            let wait = BURST_QUIET.min(until.saturating_duration_since(Instant::now()));
            if wait.is_zero() {
                break;
            }
            match tokio::time::timeout(wait, follower.next()).await {
                Ok(more) => touched |= touches_fencing(&more?.patch, &known),
                Err(_) => break,
            }
        }
        let doc = follower.current().await?;
        if touched && applied.as_deref() != Some(config_version(&doc.root).as_str()) {
            if let Some(v) = sync(fencer, doc).await {
                *applied = Some(v);
            }
        }
    }
}

/// Make the CIB's registrations those that `doc` allows here; the configuration version
/// they come from, or None when the CIB cannot be read.
async fn sync(fencer: &Fencer, doc: &Document) -> Option<String> {
    let version = config_version(&doc.root);
    let doc = doc.clone();
    let now = chrono::Utc::now().naive_utc();
    let computed = tokio::task::spawn_blocking(move || cib::Cib::from_document(doc).map(|cib| cib_devices(&cib, now)).map_err(|e| e.to_string())).await;
    let (devices, problems) = match computed {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::warn!("the CIB from halo-cibd cannot be read: {e}");
            return None;
        }
        Err(e) => {
            tracing::error!("reading the CIB's devices failed: {e}");
            return None;
        }
    };
    for p in problems {
        tracing::warn!("{p}");
    }
    fencer.sync_cib(devices).await;
    Some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_that_can_matter_to_fencing_count() {
        let patch = |changes: &str| cib::xml::parse(&format!(r#"<diff format="2"><version><source admin_epoch="0" epoch="1" num_updates="0"/><target admin_epoch="0" epoch="2" num_updates="0"/></version>{changes}</diff>"#)).unwrap().root;
        let devices = vec!["fd".to_string()];
        let epoch = r#"<change operation="modify" path="/cib"><change-list><change-attr name="epoch" operation="set" value="2"/></change-list></change>"#;
        assert!(!touches_fencing(&patch(epoch), &devices));
        assert!(!touches_fencing(&patch(r#"<change operation="create" path="/cib/configuration/resources" position="0"><primitive id="web" class="ocf" provider="heartbeat" type="Dummy"/></change>"#), &devices));
        assert!(!touches_fencing(&patch(r#"<change operation="modify" path="/cib/status/node_state[@id='1']"><change-list/></change>"#), &devices));
        assert!(touches_fencing(&patch(r#"<change operation="create" path="/cib/configuration/resources" position="1"><primitive id="f2" class="stonith" type="fence_dummy"/></change>"#), &devices));
        assert!(touches_fencing(&patch(r#"<change operation="delete" path="/cib/configuration/resources/primitive[@id='fd']"/>"#), &devices));
        assert!(touches_fencing(&patch(r#"<change operation="create" path="/cib/configuration/constraints" position="0"><rsc_location id="l" rsc="web" node="n1" score="1"/></change>"#), &devices));
    }
}
