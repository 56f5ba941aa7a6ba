//! A fencing device as the fencer sees it: the agent, the parameters it is given, and the
//! fencer's own `pcmk_*` options (Pacemaker Explained, "Fencing": "Special Options for
//! Fencing Resources") that say which nodes it can fence, under which name, how, and when.
//!
//! Everything here is pure: deciding whether a device can fence a node may need the
//! agent's `list` or `status` output, which the caller runs and passes in.

use std::collections::BTreeMap;
use std::time::Duration;

use execd::agent::{AgentSpec, Standard};

/// How the fencer decides which nodes a device can fence (`pcmk_host_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCheck {
    /// Only the nodes in `pcmk_host_list` / `pcmk_host_map`.
    StaticList,
    /// The nodes the agent's `list` action prints.
    DynamicList,
    /// Whichever node the agent's `status` action (with that node as target) knows.
    Status,
    /// Any node.
    None,
}

impl HostCheck {
    pub fn name(self) -> &'static str {
        match self {
            HostCheck::StaticList => "static-list",
            HostCheck::DynamicList => "dynamic-list",
            HostCheck::Status => "status",
            HostCheck::None => "none",
        }
    }

    fn parse(s: &str) -> Option<HostCheck> {
        match s {
            "static-list" => Some(HostCheck::StaticList),
            "dynamic-list" => Some(HostCheck::DynamicList),
            "status" => Some(HostCheck::Status),
            "none" => Some(HostCheck::None),
            _ => None,
        }
    }
}

/// What the agent's meta-data says it supports (read once per agent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentInfo {
    pub actions: Vec<String>,
    pub parameters: Vec<String>,
}

impl AgentInfo {
    /// From the `metadata` action's output; None when it is not a resource-agent document.
    pub fn from_metadata(xml: &str) -> Option<AgentInfo> {
        let doc = cib::xml::parse(xml).ok()?;
        let root = &doc.root;
        if root.name != "resource-agent" {
            return None;
        }
        let mut info = AgentInfo::default();
        for e in root.iter_descendants() {
            match e.name.as_str() {
                "action" => info.actions.extend(e.attr("name").map(str::to_string)),
                "parameter" => info.parameters.extend(e.attr("name").map(str::to_string)),
                _ => {}
            }
        }
        Some(info)
    }

    pub fn supports(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action)
    }
}

/// A registered device.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: String,
    pub agent: AgentSpec,
    /// Parameters for the agent (every instance attribute that is not a `pcmk_` option).
    pub agent_params: BTreeMap<String, String>,
    /// `pcmk_host_list`.
    pub host_list: Vec<String>,
    /// `pcmk_host_map`: node -> the name the device knows it by (its port or plug).
    pub host_map: BTreeMap<String, String>,
    /// `pcmk_host_check` as configured (None: decided from the lists and the agent).
    pub host_check: Option<HostCheck>,
    /// `pcmk_host_argument`: the parameter that carries the target (None: `port`, or
    /// `plug` for an agent without `port`); `none` disables it.
    pub host_argument: Option<String>,
    /// `pcmk_<action>_action`, `pcmk_<action>_timeout`, `pcmk_<action>_retries`.
    pub action_names: BTreeMap<String, String>,
    pub action_timeouts: BTreeMap<String, Duration>,
    pub action_retries: BTreeMap<String, u32>,
    /// `pcmk_delay_base` (a time, or `node:time` pairs) and `pcmk_delay_max`.
    pub delay_base: DelayBase,
    pub delay_max: Duration,
    /// Higher is tried first (`priority`).
    pub priority: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DelayBase {
    #[default]
    Zero,
    All(Duration),
    PerNode(BTreeMap<String, Duration>),
}

/// Attempts of one action on one device unless `pcmk_<action>_retries` says otherwise.
pub const DEFAULT_RETRIES: u32 = 2;

impl Device {
    /// A device from a stonith resource's id, agent and instance (and meta) attributes; a
    /// one-line error naming the attribute when an option cannot be read.
    pub fn new(id: &str, agent: &str, params: &BTreeMap<String, String>, meta: &BTreeMap<String, String>) -> Result<Device, String> {
        if id.is_empty() {
            return Err("a fencing device needs an id".into());
        }
        let spec = if agent.contains(':') { AgentSpec::parse(agent)? } else { AgentSpec::parse(&format!("stonith:{agent}"))? };
        if spec.standard != Standard::Stonith {
            return Err(format!("device {id}: agent {agent} is not a fence agent (write it as stonith:fence_NAME)"));
        }
        let mut d = Device {
            id: id.to_string(),
            agent: spec,
            agent_params: BTreeMap::new(),
            host_list: Vec::new(),
            host_map: BTreeMap::new(),
            host_check: None,
            host_argument: None,
            action_names: BTreeMap::new(),
            action_timeouts: BTreeMap::new(),
            action_retries: BTreeMap::new(),
            delay_base: DelayBase::Zero,
            delay_max: Duration::ZERO,
            priority: 0,
        };
        let bad = |k: &str, v: &str, hint: &str| format!("device {id}: {k}={v:?} cannot be read: {hint}");
        for (k, v) in params {
            if k.contains(['\n', '\r', '=']) || v.contains(['\n', '\r', '\0']) {
                return Err(format!("device {id}: parameter {k:?} has a name or value that cannot be passed to a fence agent (line break, '=' or NUL)"));
            }
            let Some(opt) = k.strip_prefix("pcmk_") else {
                if k == "priority" {
                    d.priority = v.trim().parse().map_err(|_| bad(k, v, "expected an integer"))?;
                } else {
                    d.agent_params.insert(k.clone(), v.clone());
                }
                continue;
            };
            match opt {
                "host_list" => d.host_list = split_list(v),
                "host_map" => d.host_map = parse_host_map(v).map_err(|h| bad(k, v, &h))?,
                "host_check" => d.host_check = Some(HostCheck::parse(v.trim()).ok_or_else(|| bad(k, v, "use static-list, dynamic-list, status or none"))?),
                "host_argument" => d.host_argument = Some(v.trim().to_string()),
                "delay_max" => d.delay_max = parse_duration(v).map_err(|h| bad(k, v, &h))?,
                "delay_base" => d.delay_base = parse_delay_base(v).map_err(|h| bad(k, v, &h))?,
                _ => {
                    // pcmk_<action>_action / _timeout / _retries; other pcmk_ options are
                    // accepted and ignored, as Pacemaker does with ones it does not use.
                    if let Some(a) = opt.strip_suffix("_action") {
                        d.action_names.insert(a.to_string(), v.trim().to_string());
                    } else if let Some(a) = opt.strip_suffix("_timeout") {
                        d.action_timeouts.insert(a.to_string(), parse_duration(v).map_err(|h| bad(k, v, &h))?);
                    } else if let Some(a) = opt.strip_suffix("_retries") {
                        d.action_retries.insert(a.to_string(), v.trim().parse().map_err(|_| bad(k, v, "expected a count"))?);
                    }
                }
            }
        }
        if let Some(p) = meta.get("priority") {
            d.priority = p.trim().parse().map_err(|_| bad("priority", p, "expected an integer"))?;
        }
        Ok(d)
    }

    /// The host check in force: configured, else static-list when a list or map is given,
    /// else dynamic-list if the agent has `list`, else status if it has `status`, else none.
    pub fn effective_host_check(&self, info: Option<&AgentInfo>) -> HostCheck {
        if let Some(c) = self.host_check {
            return c;
        }
        if !self.host_list.is_empty() || !self.host_map.is_empty() {
            return HostCheck::StaticList;
        }
        match info {
            Some(i) if i.supports("list") => HostCheck::DynamicList,
            Some(i) if i.supports("status") => HostCheck::Status,
            Some(_) => HostCheck::None,
            // Without meta-data, the agent is asked for its list (fence-agents all have one).
            None => HostCheck::DynamicList,
        }
    }

    /// The name the device knows `target` by.
    pub fn port_for(&self, target: &str) -> String {
        self.host_map.get(target).cloned().unwrap_or_else(|| target.to_string())
    }

    /// Whether the static lists name `target` (for static-list).
    pub fn lists(&self, target: &str) -> bool {
        self.host_list.iter().any(|h| h.eq_ignore_ascii_case(target)) || self.host_map.keys().any(|h| h.eq_ignore_ascii_case(target))
    }

    /// The agent action that performs `action` (`pcmk_reboot_action=off` and the like).
    pub fn agent_action(&self, action: &str) -> String {
        self.action_names.get(action).cloned().unwrap_or_else(|| action.to_string())
    }

    pub fn retries(&self, action: &str) -> u32 {
        self.action_retries.get(action).copied().unwrap_or(DEFAULT_RETRIES).max(1)
    }

    /// The fixed part of the delay before fencing `target`.
    pub fn base_delay(&self, target: &str) -> Duration {
        match &self.delay_base {
            DelayBase::Zero => Duration::ZERO,
            DelayBase::All(d) => *d,
            DelayBase::PerNode(m) => m.get(target).copied().unwrap_or(Duration::ZERO),
        }
    }

    /// The parameter lines for one action: the device's parameters, then `action`, the target
    /// under the host argument, and `nodename` when there is a target.
    pub fn agent_args(&self, action: &str, target: Option<&str>, info: Option<&AgentInfo>) -> BTreeMap<String, String> {
        let mut p = self.agent_params.clone();
        p.insert("action".into(), action.to_string());
        if let Some(t) = target {
            let arg = match self.host_argument.as_deref() {
                Some(a) => Some(a.to_string()),
                None => Some(match info {
                    Some(i) if !i.parameters.iter().any(|p| p == "port") && i.parameters.iter().any(|p| p == "plug") => "plug".to_string(),
                    _ => "port".to_string(),
                }),
            };
            if let Some(a) = arg.filter(|a| a != "none" && !a.is_empty()) {
                p.insert(a, self.port_for(t));
            }
            p.insert("nodename".into(), t.to_string());
        }
        p
    }

    /// The targets the device's lists name.
    pub fn listed_targets(&self) -> Vec<String> {
        let mut v: Vec<String> = self.host_list.clone();
        v.extend(self.host_map.keys().cloned());
        v.sort();
        v.dedup();
        v
    }
}

/// `pcmk_host_list`: names separated by spaces, commas or semicolons.
fn split_list(v: &str) -> Vec<String> {
    v.split(|c: char| c.is_whitespace() || c == ',' || c == ';').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// `pcmk_host_map`: `node:port` (or `node=port`) pairs separated by `;` or spaces; a port
/// may itself be a comma list (`node2:2,3`).
pub fn parse_host_map(v: &str) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    for entry in v.split(|c: char| c == ';' || c.is_whitespace()).filter(|s| !s.is_empty()) {
        let Some(i) = entry.find([':', '=']) else {
            return Err(format!("entry {entry:?} is not NODE:PORT"));
        };
        let (node, port) = (&entry[..i], &entry[i + 1..]);
        if node.is_empty() || port.is_empty() {
            return Err(format!("entry {entry:?} is not NODE:PORT"));
        }
        m.insert(node.to_string(), port.to_string());
    }
    Ok(m)
}

/// A Pacemaker time value as fencing options use it: seconds unless a unit is given
/// (ms, s, m/min, h).
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let t = v.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| "expected a time such as 5s, 500ms or 2min".to_string())?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" | "msec" | "msecs" => n / 1000.0,
        "m" | "min" | "mins" => n * 60.0,
        "h" | "hr" | "hrs" => n * 3600.0,
        u => return Err(format!("unknown time unit {u:?} (use ms, s, min or h)")),
    };
    if !secs.is_finite() || secs < 0.0 || secs > 86_400.0 {
        return Err("a time between 0 and 24h is expected".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `pcmk_delay_base`: one time for every target, or `node:time` pairs.
fn parse_delay_base(v: &str) -> Result<DelayBase, String> {
    if v.contains(':') {
        let mut m = BTreeMap::new();
        for (node, t) in parse_host_map(v)? {
            m.insert(node, parse_duration(&t)?);
        }
        Ok(DelayBase::PerNode(m))
    } else {
        let d = parse_duration(v)?;
        Ok(if d.is_zero() { DelayBase::Zero } else { DelayBase::All(d) })
    }
}

/// The node names in a `list` action's output: one per line, the name first (fence-agents
/// print `plug,alias` or `plug alias`).
pub fn parse_list_output(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split([',', ' ', '\t']).find(|s| !s.is_empty()).map(str::to_string))
        .filter(|s| !s.starts_with('#'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn pcmk_options_are_the_fencers_and_the_rest_go_to_the_agent() {
        let d = Device::new(
            "f1",
            "stonith:fence_dummy",
            &params(&[
                ("pcmk_host_list", "node1, node2;node3"),
                ("pcmk_reboot_action", "off"),
                ("pcmk_reboot_retries", "4"),
                ("pcmk_off_timeout", "90s"),
                ("pcmk_delay_max", "2"),
                ("type", "file"),
            ]),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(d.host_list, ["node1", "node2", "node3"]);
        assert_eq!(d.agent_action("reboot"), "off");
        assert_eq!(d.agent_action("off"), "off");
        assert_eq!(d.retries("reboot"), 4);
        assert_eq!(d.retries("off"), DEFAULT_RETRIES);
        assert_eq!(d.action_timeouts["off"], Duration::from_secs(90));
        assert_eq!(d.delay_max, Duration::from_secs(2));
        assert_eq!(d.agent_params, params(&[("type", "file")]));
        assert_eq!(d.effective_host_check(None), HostCheck::StaticList);
        assert!(d.lists("NODE2") && !d.lists("node4"));
    }

    #[test]
    fn host_map_renames_the_target_under_the_host_argument() {
        let d = Device::new("f", "fence_x", &params(&[("pcmk_host_map", "node1:1;node2=2,3 node3:vm-3")]), &BTreeMap::new()).unwrap();
        assert_eq!(d.port_for("node2"), "2,3");
        let a = d.agent_args("off", Some("node3"), None);
        assert_eq!(a["port"], "vm-3");
        assert_eq!(a["nodename"], "node3");
        assert_eq!(a["action"], "off");
        let plug_only = AgentInfo { actions: vec![], parameters: vec!["plug".into()] };
        assert_eq!(d.agent_args("off", Some("node1"), Some(&plug_only))["plug"], "1");
        let none = Device::new("f", "fence_x", &params(&[("pcmk_host_argument", "none")]), &BTreeMap::new()).unwrap();
        let a = none.agent_args("off", Some("node1"), None);
        assert!(!a.contains_key("port") && a["nodename"] == "node1");
    }

    #[test]
    fn host_check_defaults_follow_the_lists_then_the_agent() {
        let d = Device::new("f", "fence_x", &BTreeMap::new(), &BTreeMap::new()).unwrap();
        let with = |a: &[&str]| AgentInfo { actions: a.iter().map(|s| s.to_string()).collect(), parameters: vec![] };
        assert_eq!(d.effective_host_check(Some(&with(&["list", "status"]))), HostCheck::DynamicList);
        assert_eq!(d.effective_host_check(Some(&with(&["status"]))), HostCheck::Status);
        assert_eq!(d.effective_host_check(Some(&with(&["off"]))), HostCheck::None);
    }

    #[test]
    fn bad_options_are_one_line_errors() {
        for (k, v) in [("pcmk_host_check", "sometimes"), ("pcmk_host_map", "node1"), ("pcmk_delay_max", "soon"), ("pcmk_reboot_retries", "-1"), ("priority", "high")] {
            let e = Device::new("f", "fence_x", &params(&[(k, v)]), &BTreeMap::new()).unwrap_err();
            assert!(e.contains(k) && !e.contains('\n'), "{e}");
        }
        assert!(Device::new("f", "ocf:heartbeat:Dummy", &BTreeMap::new(), &BTreeMap::new()).is_err());
        assert!(Device::new("f", "fence_x", &params(&[("plug", "a\naction=on")]), &BTreeMap::new()).is_err());
    }

    #[test]
    fn delays_and_lists() {
        let d = Device::new("f", "fence_x", &params(&[("pcmk_delay_base", "node1:5s;node2:500ms")]), &BTreeMap::new()).unwrap();
        assert_eq!(d.base_delay("node1"), Duration::from_secs(5));
        assert_eq!(d.base_delay("node2"), Duration::from_millis(500));
        assert_eq!(d.base_delay("node3"), Duration::ZERO);
        assert_eq!(parse_list_output("node1,alias\nnode2\n\nvm 3\n"), ["node1", "node2", "vm"]);
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
    }

    #[test]
    fn metadata_gives_actions_and_parameters() {
        let xml = r#"<?xml version="1.0"?><resource-agent name="fence_dummy"><parameters><parameter name="plug"/><parameter name="port"/></parameters><actions><action name="on"/><action name="monitor"/></actions></resource-agent>"#;
        let i = AgentInfo::from_metadata(xml).unwrap();
        assert!(i.supports("monitor") && !i.supports("list"));
        assert_eq!(i.parameters, ["plug", "port"]);
        assert!(AgentInfo::from_metadata("<html/>").is_none());
    }
}
