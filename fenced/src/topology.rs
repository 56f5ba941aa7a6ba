//! Fencing topology (`<fencing-topology>`): which devices fence a node, level by level.
//! A level applies to a node named by `target`, by the regular expression `target-pattern`,
//! or by a node attribute (`target-attribute` = `target-value`); levels are tried in
//! ascending `index`, and a level succeeds only when all of its devices do (Pacemaker
//! Explained, "Fencing Topology").

use cib::xml::Element;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub id: String,
    pub index: u32,
    pub devices: Vec<String>,
}

/// The levels that apply to `target`, in the order they are tried.
pub fn levels_for(cib: &Element, target: &str) -> Result<Vec<Level>, String> {
    let mut out = Vec::new();
    for topo in cib.iter_descendants().filter(|e| e.name == "fencing-topology") {
        for l in topo.children_named("fencing-level") {
            let id = l.attr("id").unwrap_or("").to_string();
            if !applies(cib, l, target)? {
                continue;
            }
            let index: u32 = l.attr("index").and_then(|i| i.parse().ok()).ok_or_else(|| format!("fencing level {id}: index must be a positive number"))?;
            let devices: Vec<String> = l.attr("devices").unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
            if devices.is_empty() {
                return Err(format!("fencing level {id} names no devices"));
            }
            out.push(Level { id, index, devices });
        }
    }
    out.sort_by_key(|l| l.index);
    Ok(out)
}

fn applies(cib: &Element, level: &Element, target: &str) -> Result<bool, String> {
    if let Some(t) = level.attr("target") {
        return Ok(t.eq_ignore_ascii_case(target));
    }
    if let Some(p) = level.attr("target-pattern") {
        let re = regex::Regex::new(p).map_err(|e| format!("fencing level {}: target-pattern {p:?}: {e}", level.attr("id").unwrap_or("")))?;
        return Ok(re.is_match(target));
    }
    if let (Some(name), Some(value)) = (level.attr("target-attribute"), level.attr("target-value")) {
        return Ok(node_attribute(cib, target, name).as_deref() == Some(value));
    }
    Ok(false)
}

/// A node's attribute as the configuration's `<nodes>` section gives it.
fn node_attribute(cib: &Element, node: &str, name: &str) -> Option<String> {
    let nodes = cib.iter_descendants().find(|e| e.name == "nodes")?;
    let n = nodes.children_named("node").find(|n| n.attr("uname") == Some(node))?;
    n.children_named("instance_attributes")
        .flat_map(|s| s.children_named("nvpair"))
        .find(|p| p.attr("name") == Some(name))
        .and_then(|p| p.attr("value").map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_by_name_pattern_and_attribute_in_index_order() {
        let xml = r#"<cib><configuration><nodes>
            <node id="1" uname="node1"><instance_attributes id="na"><nvpair id="nv" name="rack" value="r1"/></instance_attributes></node>
            <node id="2" uname="node2"/></nodes>
            <fencing-topology>
              <fencing-level id="l2" target="node1" index="2" devices="ipmi"/>
              <fencing-level id="l1" target="node1" index="1" devices="pdu1, pdu2"/>
              <fencing-level id="lp" target-pattern="^node[0-9]$" index="3" devices="last"/>
              <fencing-level id="la" target-attribute="rack" target-value="r1" index="4" devices="rackpdu"/>
            </fencing-topology></configuration></cib>"#;
        let doc = cib::xml::parse(xml).unwrap();
        let l = levels_for(&doc.root, "node1").unwrap();
        let ids: Vec<&str> = l.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["l1", "l2", "lp", "la"]);
        assert_eq!(l[0].devices, ["pdu1", "pdu2"]);
        let l = levels_for(&doc.root, "node2").unwrap();
        assert_eq!(l.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), ["lp"]);
        assert!(levels_for(&doc.root, "other").unwrap().is_empty());
    }
}
