//! The fencer's link to the local halo-cibd: reading the CIB (topology, `stonith-timeout`)
//! and following it, so the devices the configuration allows on this node are registered
//! and kept current, as Pacemaker's fencer does without waiting for the executor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::cib as pb;
use proto::cib::cib_client::CibClient;
use tonic::transport::Channel;

use crate::cib_devices::cib_devices;
use crate::fencer::Fencer;

async fn connect(sock: &Path) -> Result<CibClient<Channel>, String> {
    let ch = tokio::time::timeout(Duration::from_secs(5), proto::connect_unix(sock.to_path_buf()))
        .await
        .map_err(|_| format!("{} did not answer", sock.display()))?
        .map_err(|e| format!("cannot reach halo-cibd at {}: {e}", sock.display()))?;
    Ok(CibClient::new(ch).max_decoding_message_size(256 << 20))
}

/// The whole CIB from the local halo-cibd, as XML.
pub async fn query_cib_xml(sock: &Path) -> Result<String, String> {
    let mut c = connect(sock).await?;
    let r = tokio::time::timeout(Duration::from_secs(10), c.query(pb::QueryRequest { section: String::new(), xpath: String::new() }))
        .await
        .map_err(|_| "halo-cibd did not answer the query within 10 s".to_string())?
        .map_err(|e| format!("halo-cibd: {}", e.message()))?
        .into_inner();
    match r.error {
        Some(e) => Err(format!("halo-cibd: {}", e.message)),
        None => Ok(r.xml),
    }
}

/// The whole CIB from the local halo-cibd, parsed.
pub async fn query_cib(sock: &Path) -> Result<cib::xml::Element, String> {
    let xml = query_cib_xml(sock).await?;
    cib::xml::parse(&xml).map(|d| d.root).map_err(|e| format!("the CIB from halo-cibd does not parse: {e}"))
}

/// `admin_epoch.epoch` of a version `admin_epoch.epoch.num_updates`: what a configuration
/// change bumps (a status change bumps only num_updates).
fn config_version(v: &str) -> String {
    v.rsplit_once('.').map(|(c, _)| c.to_string()).unwrap_or_else(|| v.to_string())
}

/// Whether a committed change (a v2 patchset) can change which devices exist, their
/// parameters, where they may run or the topology: any configuration change outside
/// `<resources>`, and inside it one naming a known device, creating a stonith primitive or
/// touching a template. Status changes and other resources' changes cannot; reading the
/// whole CIB and placing every resource again for those would cost every node's fencer
/// work on every write of a large cluster.
pub fn touches_fencing(patch: &str, devices: &[String]) -> bool {
    let Ok(doc) = cib::xml::parse(patch) else { return true };
    for c in doc.root.children_named("change") {
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
/// Runs for the daemon's life, reconnecting when halo-cibd restarts.
pub async fn follow(fencer: Fencer, sock: PathBuf) {
    let mut applied: Option<String> = None;
    let mut warned = false;
    loop {
        let stream = match connect(&sock).await {
            Ok(mut c) => c.watch(pb::WatchRequest {}).await.map(|s| s.into_inner()).map_err(|e| e.message().to_string()),
            Err(e) => Err(e),
        };
        let mut stream = match stream {
            Ok(s) => s,
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
        sync(&fencer, &sock, &mut applied).await;
        'watch: while let Ok(Some(ev)) = stream.message().await {
            let known: Vec<String> = fencer.cib_view().into_iter().map(|d| d.device.id).collect();
            let mut due = applied.as_deref() != Some(config_version(&ev.version).as_str()) && touches_fencing(&ev.patch, &known);
            // Take what else is already queued: one read for a burst of writes.
            loop {
                match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
                    Ok(Ok(Some(more))) => due |= touches_fencing(&more.patch, &known),
                    Ok(_) => {
                        if due {
                            sync(&fencer, &sock, &mut applied).await;
                        }
                        break 'watch;
                    }
                    Err(_) => break,
                }
            }
            if due {
                sync(&fencer, &sock, &mut applied).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_that_can_matter_to_fencing_count() {
        let patch = |changes: &str| format!(r#"<diff format="2"><version><source admin_epoch="0" epoch="1" num_updates="0"/><target admin_epoch="0" epoch="2" num_updates="0"/></version>{changes}</diff>"#);
        let devices = vec!["fd".to_string()];
        let epoch = r#"<change operation="modify" path="/cib"><change-list><change-attr name="epoch" operation="set" value="2"/></change-list></change>"#;
        assert!(!touches_fencing(&patch(epoch), &devices));
        assert!(!touches_fencing(&patch(r#"<change operation="create" path="/cib/configuration/resources" position="0"><primitive id="web" class="ocf" provider="heartbeat" type="Dummy"/></change>"#), &devices));
        assert!(!touches_fencing(&patch(r#"<change operation="modify" path="/cib/status/node_state[@id='1']"><change-list/></change>"#), &devices));
        assert!(touches_fencing(&patch(r#"<change operation="create" path="/cib/configuration/resources" position="1"><primitive id="f2" class="stonith" type="fence_dummy"/></change>"#), &devices));
        assert!(touches_fencing(&patch(r#"<change operation="delete" path="/cib/configuration/resources/primitive[@id='fd']"/>"#), &devices));
        assert!(touches_fencing(&patch(r#"<change operation="create" path="/cib/configuration/constraints" position="0"><rsc_location id="l" rsc="web" node="n1" score="1"/></change>"#), &devices));
        assert!(touches_fencing("not xml", &devices));
    }
}

async fn sync(fencer: &Fencer, sock: &Path, applied: &mut Option<String>) {
    let xml = match query_cib_xml(sock).await {
        Ok(x) => x,
        Err(e) => return tracing::warn!("cannot read the CIB: {e}"),
    };
    let now = chrono::Utc::now().naive_utc();
    let computed = tokio::task::spawn_blocking(move || {
        let cib = cib::Cib::parse(&xml).map_err(|e| e.to_string())?;
        let version = format!("{}.{}", cib.attr("admin_epoch").unwrap_or("0"), cib.attr("epoch").unwrap_or("0"));
        Ok::<_, String>((version, cib_devices(&cib, now)))
    })
    .await;
    let (version, (devices, problems)) = match computed {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return tracing::warn!("the CIB from halo-cibd cannot be read: {e}"),
        Err(e) => return tracing::error!("reading the CIB's devices failed: {e}"),
    };
    for p in problems {
        tracing::warn!("{p}");
    }
    fencer.sync_cib(devices).await;
    *applied = Some(version);
}
