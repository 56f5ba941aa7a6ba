//! Which fencing devices the configuration allows on a node, as Pacemaker's fencer decides
//! it from the CIB: every stonith primitive that is not disabled (`target-role=Stopped`) and
//! whose node table (location constraints, rules, node health, as the scheduler builds it)
//! has the node with a score that is not negative. Its instance attributes (rules
//! evaluated) become the device's parameters.

use std::time::Duration;

use chrono::NaiveDateTime;
use cib::Cib;
use scheduler::allocate::Allocator;
use scheduler::Role;
use scheduler::Cluster;

use crate::device::Device;

/// A fencing device of the configuration: the device, the nodes it may run on (by name, in
/// order) and the interval of its monitor op, if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct CibDevice {
    pub device: Device,
    pub allowed: Vec<String>,
    pub monitor: Option<Duration>,
}

/// Every fencing device of the configuration, and one line per device that could not be read.
pub fn cib_devices(cib: &Cib, now: NaiveDateTime) -> (Vec<CibDevice>, Vec<String>) {
    let mut cluster = Cluster::unpack(cib, now);
    let colocs = cluster.colocations();
    let tables = {
        let mut alloc = Allocator::new(&mut cluster, &colocs);
        alloc.build_tables();
        alloc.base.clone()
    };
    let (mut devices, mut problems) = (Vec::new(), Vec::new());
    for (id, r) in cluster.rscs.iter().enumerate() {
        let Some(prim) = r.prim.as_ref().filter(|p| p.class == "stonith") else { continue };
        // Clone instances of a fencing device are not devices of their own.
        if r.parent.is_some_and(|p| cluster.rscs[p].prim.is_none() && cluster.clone_of(id).is_some()) {
            continue;
        }
        if r.target_role == Some(Role::Stopped) {
            continue;
        }
        let mut allowed: Vec<String> = tables
            .get(&id)
            .map(|t| t.iter().filter(|(_, s)| s.0 >= 0).map(|(&n, _)| cluster.nodes[n].name.clone()).collect())
            .unwrap_or_default();
        allowed.sort();
        let monitor = prim
            .ops
            .iter()
            .filter(|o| o.name == "monitor" && o.get("enabled").is_none_or(|e| cib::model::is_true(e)))
            .filter_map(|o| scheduler::interval_ms(&o.interval))
            .find(|&ms| ms > 0)
            .map(Duration::from_millis);
        match Device::new(&r.id, &format!("stonith:{}", prim.agent), &r.params, &r.meta) {
            Ok(device) => devices.push(CibDevice { device, allowed, monitor }),
            Err(e) => problems.push(e),
        }
    }
    (devices, problems)
}

/// The devices `node` may use, and one line per device that could not be read.
pub fn allowed_devices(cib: &Cib, node: &str, now: NaiveDateTime) -> (Vec<Device>, Vec<String>) {
    let (all, problems) = cib_devices(cib, now);
    (all.into_iter().filter(|d| d.allowed.iter().any(|n| n.eq_ignore_ascii_case(node))).map(|d| d.device).collect(), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cib(extra_constraints: &str, target_role: &str) -> Cib {
        let xml = format!(
            r#"<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0"><configuration><crm_config/>
            <nodes><node id="1" uname="node1"/><node id="2" uname="node2"/><node id="3" uname="node3"/></nodes>
            <resources>
              <primitive id="fd" class="stonith" type="fence_dummy">
                <instance_attributes id="fd-ia"><nvpair id="fd-t" name="type" value="file"/><nvpair id="fd-h" name="pcmk_host_list" value="node1 node2"/></instance_attributes>
                <meta_attributes id="fd-ma">{target_role}</meta_attributes>
              </primitive>
              <primitive id="dummy" class="ocf" provider="heartbeat" type="Dummy"/>
            </resources>
            <constraints>{extra_constraints}</constraints></configuration><status/></cib>"#
        );
        Cib::parse(&xml).unwrap()
    }

    fn now() -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap().naive_utc()
    }

    #[test]
    fn devices_follow_bans_and_target_role() {
        let c = cib(r#"<rsc_location id="ban" rsc="fd" node="node2" score="-INFINITY"/>"#, "");
        let (d, p) = allowed_devices(&c, "node1", now());
        assert!(p.is_empty());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].id, "fd");
        assert_eq!(d[0].agent_params["type"], "file");
        assert_eq!(d[0].host_list, ["node1", "node2"]);
        assert!(allowed_devices(&c, "node2", now()).0.is_empty(), "banned on node2");
        assert!(allowed_devices(&c, "node9", now()).0.is_empty(), "not a node of the CIB");
        let stopped = cib("", r#"<nvpair id="fd-tr" name="target-role" value="Stopped"/>"#);
        assert!(allowed_devices(&stopped, "node1", now()).0.is_empty(), "disabled");
        let (all, _) = cib_devices(&c, now());
        assert_eq!(all[0].allowed, ["node1", "node3"]);
        assert_eq!(all[0].monitor, None);
    }

    #[test]
    fn an_opt_in_cluster_needs_a_positive_location() {
        let xml = cib(r#"<rsc_location id="pref" rsc="fd" node="node3" score="100"/>"#, "").to_xml().replace("<crm_config/>", r#"<crm_config><cluster_property_set id="o"><nvpair id="o-s" name="symmetric-cluster" value="false"/></cluster_property_set></crm_config>"#);
        let c = Cib::parse(&xml).unwrap();
        assert!(allowed_devices(&c, "node1", now()).0.is_empty());
        assert_eq!(allowed_devices(&c, "node3", now()).0.len(), 1);
    }
}
