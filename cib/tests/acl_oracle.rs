//! Differential test of `cib::acl` against Pacemaker's cibadmin in file mode
//! (`CIB_file=F CIB_user=U cibadmin ...`): random ACL sections on two base CIBs,
//! filtered reads compared element by element, writes compared allow/deny.
//! Skipped, with a note, when cibadmin is not installed.
//! `HALO_ACL_ORACLE_ROUNDS=N` runs more rounds (default 24).

use std::path::PathBuf;
use std::process::Command;

use cib::acl::{acl_for, Acl, Requester};
use cib::ops;
use cib::xml::{parse, Document, Element, Node};

const BASE_A: &str = r#"<cib validate-with="pacemaker-3.9" epoch="5" num_updates="3" admin_epoch="0" crm_feature_set="3.16.1" have-quorum="1" dc-uuid="1">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="opt-acl" name="enable-acl" value="true"/>
        <nvpair id="opt-stonith" name="stonith-enabled" value="false"/>
      </cluster_property_set>
    </crm_config>
    <nodes>
      <node id="1" uname="n1">
        <instance_attributes id="n1-ia"><nvpair id="n1-ia-site" name="site" value="a"/></instance_attributes>
      </node>
      <node id="2" uname="n2"/>
    </nodes>
    <resources>
      <primitive id="ip" class="ocf" provider="heartbeat" type="IPaddr2">
        <instance_attributes id="ip-ia">
          <nvpair id="ip-ia-ip" name="ip" value="10.0.0.1"/>
          <nvpair id="ip-ia-mask" name="cidr_netmask" value="24"/>
        </instance_attributes>
        <meta_attributes id="ip-meta"><nvpair id="ip-meta-tr" name="target-role" value="Started"/></meta_attributes>
        <operations><op id="ip-mon" name="monitor" interval="10s"/></operations>
      </primitive>
      <group id="web">
        <primitive id="fs" class="ocf" provider="heartbeat" type="Filesystem">
          <instance_attributes id="fs-ia"><nvpair id="fs-ia-dev" name="device" value="/dev/sdb1"/></instance_attributes>
        </primitive>
        <primitive id="www" class="ocf" provider="heartbeat" type="apache">
          <operations><op id="www-mon" name="monitor" interval="30s" timeout="20s"/></operations>
        </primitive>
      </group>
      <clone id="dummy-clone">
        <meta_attributes id="dummy-clone-meta"><nvpair id="dummy-clone-max" name="clone-max" value="2"/></meta_attributes>
        <primitive id="dummy" class="ocf" provider="pacemaker" type="Dummy"/>
      </clone>
    </resources>
    <constraints>
      <rsc_location id="loc-ip" rsc="ip" node="n1" score="100"/>
      <rsc_colocation id="col-web-ip" rsc="web" with-rsc="ip" score="INFINITY"/>
    </constraints>
    <rsc_defaults>
      <meta_attributes id="rsc-options"><nvpair id="rsc-stick" name="resource-stickiness" value="1"/></meta_attributes>
    </rsc_defaults>
    ACLS
  </configuration>
  <status>
    <node_state id="1" uname="n1" in_ccm="true" crmd="online" join="member" expected="member">
      <transient_attributes id="1"><instance_attributes id="status-1"><nvpair id="status-1-attr" name="attr" value="1"/></instance_attributes></transient_attributes>
    </node_state>
  </status>
</cib>"#;

const BASE_B: &str = r#"<cib validate-with="pacemaker-3.9" epoch="9" num_updates="0" admin_epoch="1" crm_feature_set="3.16.1">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="opt-maint" name="maintenance-mode" value="false"/>
      </cluster_property_set>
      <cluster_property_set id="acl-options">
        <nvpair id="opt-acl" name="enable-acl" value="yes"/>
      </cluster_property_set>
    </crm_config>
    <nodes>
      <node id="1" uname="a"/>
      <node id="2" uname="b"/>
    </nodes>
    <resources>
      <primitive id="db" class="ocf" provider="heartbeat" type="pgsql">
        <instance_attributes id="db-ia">
          <nvpair id="db-ia-data" name="pgdata" value="/var/lib/pgsql"/>
          <nvpair id="db-ia-port" name="pgport" value="5432"/>
        </instance_attributes>
        <meta_attributes id="db-meta">
          <nvpair id="db-meta-tr" name="target-role" value="Started"/>
          <nvpair id="db-meta-im" name="is-managed" value="true"/>
        </meta_attributes>
      </primitive>
      <primitive id="app" class="systemd" type="app">
        <operations>
          <op id="app-start" name="start" interval="0s" timeout="60s"/>
          <op id="app-mon" name="monitor" interval="15s"/>
        </operations>
      </primitive>
      <primitive id="fence" class="stonith" type="fence_dummy"/>
    </resources>
    <constraints>
      <rsc_order id="ord-db-app" first="db" then="app"/>
      <rsc_location id="loc-fence" rsc="fence" node="a" score="-INFINITY"/>
    </constraints>
    <op_defaults>
      <meta_attributes id="op-options"><nvpair id="op-timeout" name="timeout" value="30s"/></meta_attributes>
    </op_defaults>
    ACLS
  </configuration>
  <status/>
</cib>"#;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Every element outside `<acls>` with the names of its ancestors.
fn elements(doc: &Document) -> Vec<(Vec<String>, Element)> {
    fn walk(e: &Element, mut names: Vec<String>, out: &mut Vec<(Vec<String>, Element)>) {
        if e.name == "acls" {
            return;
        }
        names.push(e.name.clone());
        out.push((names.clone(), e.clone()));
        for c in e.elements() {
            walk(c, names.clone(), out);
        }
    }
    let mut out = Vec::new();
    walk(&doc.root, Vec::new(), &mut out);
    out
}

/// A random selector for one permission; the bool is false for an xpath outside halo's subset.
fn selector(rng: &mut Rng, els: &[(Vec<String>, Element)]) -> (String, bool) {
    let (names, e) = rng.pick(els);
    let tag = &e.name;
    // Node ids are not XML IDs: a reference to one fails validation.
    // Only configuration ids are XML IDs (node ids are not): a reference to another fails validation.
    let id = e.id().filter(|i| !i.starts_with(|c: char| c.is_ascii_digit()) && names.get(1).map(String::as_str) == Some("configuration"));
    let attr = (!e.attrs.is_empty()).then(|| rng.pick(&e.attrs).clone());
    match rng.below(11) {
        0 | 1 if id.is_some() => (format!("reference=\"{}\"", id.unwrap_or_default()), true),
        2 => (format!("object-type=\"{tag}\""), true),
        3 if attr.is_some() => (format!("object-type=\"{tag}\" attribute=\"{}\"", attr.unwrap_or_default().0), true),
        4 => (format!("xpath=\"/{}\"", names.join("/")), true),
        5 if id.is_some() => (format!("xpath=\"/{}[@id='{}']\"", names.join("/"), id.unwrap_or_default()), true),
        6 if attr.is_some() => {
            let (k, v) = attr.unwrap_or_default();
            (format!("xpath=\"//{tag}[@{k}='{v}']\""), true)
        }
        7 if names.len() > 3 => (format!("xpath=\"/{}//{tag}\"", names[..3].join("/")), true),
        8 => (format!("xpath=\"//{tag}\""), true),
        9 if rng.chance(25) => (format!("xpath=\"//{tag}[1]\""), false),
        9 if attr.is_some() => (format!("xpath=\"//{tag}/@{}\"", attr.unwrap_or_default().0), true),
        _ => (format!("xpath=\"//*[@id='{}']\"", e.id().unwrap_or("1")), true),
    }
}

/// One random `<acls>` section: roles of random permissions, users u0..u5 holding some of
/// them, u6 holding a broad write with random denials and reads.
/// Returns the section and whether it uses an xpath halo does not support.
fn random_acls(rng: &mut Rng, els: &[(Vec<String>, Element)], group: Option<&(String, String)>) -> (String, bool) {
    let mut s = String::from("<acls>\n");
    let roles = 2 + rng.below(3);
    let mut outside = false;
    for r in 0..roles {
        s.push_str(&format!("      <acl_role id=\"role{r}\">\n"));
        for p in 0..1 + rng.below(4) {
            let kind = match rng.below(20) {
                0..=6 => "read",
                7..=15 => "write",
                _ => "deny",
            };
            let (sel, ok) = selector(rng, els);
            outside |= !ok;
            s.push_str(&format!("        <acl_permission id=\"role{r}-p{p}\" kind=\"{kind}\" {sel}/>\n"));
        }
        s.push_str("      </acl_role>\n");
    }
    // A broad writer with holes, so that writes are allowed often enough.
    let top = rng.pick(&["/cib", "/cib/configuration", "/cib/configuration/resources", "/cib/configuration/constraints"]);
    s.push_str(&format!("      <acl_role id=\"broad\">\n        <acl_permission id=\"broad-w\" kind=\"write\" xpath=\"{top}\"/>\n"));
    for p in 0..1 + rng.below(3) {
        let kind = if rng.chance(60) { "deny" } else { "read" };
        let (sel, ok) = selector(rng, els);
        outside |= !ok;
        s.push_str(&format!("        <acl_permission id=\"broad-p{p}\" kind=\"{kind}\" {sel}/>\n"));
    }
    s.push_str("      </acl_role>\n      <acl_target id=\"u6\"><role id=\"broad\"/></acl_target>\n");
    let refs = |rng: &mut Rng| (0..roles).filter(|_| rng.chance(40)).map(|r| format!("<role id=\"role{r}\"/>")).collect::<String>();
    for u in 0..6 {
        let roles = refs(rng);
        if rng.chance(20) {
            s.push_str(&format!("      <acl_target id=\"t-u{u}\" name=\"u{u}\">{roles}</acl_target>\n"));
        } else {
            s.push_str(&format!("      <acl_target id=\"u{u}\">{roles}</acl_target>\n"));
        }
    }
    if let Some((_, g)) = group {
        s.push_str(&format!("      <acl_group id=\"{g}\">{}</acl_group>\n", refs(rng)));
    }
    s.push_str("    </acls>");
    (s, outside)
}

struct Oracle {
    dir: PathBuf,
}

impl Oracle {
    /// cibadmin's exit code and output for `args`, run as `user` on a fresh copy of `cib`.
    fn run(&self, cib: &str, user: &str, args: &[&str]) -> (i32, String) {
        let file = self.dir.join("cib.xml");
        std::fs::write(&file, cib).expect("write CIB file");
        let out = Command::new("cibadmin").args(args).env("CIB_file", &file).env("CIB_user", user).output().expect("run cibadmin");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A group from /etc/group that lists a member, as (member, group), for acl_group checks.
fn some_group() -> Option<(String, String)> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let member = f.get(3)?.split(',').next().filter(|m| !m.is_empty())?;
        let ok =
            |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') && !s.starts_with(|c: char| c.is_ascii_digit());
        (ok(f[0]) && ok(member)).then(|| (member.to_string(), f[0].to_string()))
    })
}

/// A random write: cibadmin's arguments and halo's result of the same operation (None when halo refuses it).
fn random_write(rng: &mut Rng, doc: &Document, els: &[(Vec<String>, Element)], n: usize) -> (Vec<String>, Option<Document>) {
    let with_id: Vec<&Element> = els.iter().map(|(_, e)| e).filter(|e| e.id().is_some() && e.name != "node_state").collect();
    let prims: Vec<&Element> = els.iter().map(|(_, e)| e).filter(|e| e.name == "primitive").collect();
    let xml = |s: &str| parse(s).map(|d| d.root).ok();
    match rng.below(9) {
        0 | 1 => {
            let cands: Vec<&&Element> =
                with_id.iter().filter(|e| matches!(e.name.as_str(), "nvpair" | "primitive" | "op" | "rsc_location" | "node")).collect();
            let e = rng.pick(&cands);
            let (k, v) = match e.name.as_str() {
                "nvpair" => ("value", format!("v{n}")),
                "primitive" => ("description", format!("d{n}")),
                "op" => ("timeout", format!("{}s", 10 + n)),
                "node" => ("description", format!("d{n}")),
                _ => ("score", format!("{n}")),
            };
            let frag = format!("<{} id=\"{}\" {k}=\"{v}\"/>", e.name, e.id().unwrap_or_default());
            let new = xml(&frag).and_then(|f| ops::modify(doc, f).ok());
            (vec!["-M".into(), "-X".into(), frag], new)
        }
        2 | 3 => {
            let p = rng.pick(&prims);
            let pid = p.id().unwrap_or_default();
            let score = if rng.chance(25) { " score=\"1\"" } else { "" };
            let name = rng.pick(&["target-role", "is-managed", "priority"]);
            let value = if *name == "priority" {
                "5"
            } else if *name == "is-managed" {
                "false"
            } else {
                "Stopped"
            };
            let set = match p.child("meta_attributes").and_then(|m| m.id()) {
                Some(mid) if rng.chance(50) => format!("<meta_attributes id=\"{mid}\">"),
                _ => format!("<meta_attributes id=\"{pid}-m{n}\"{score}>"),
            };
            let frag = format!(
                "<primitive id=\"{pid}\">{set}<nvpair id=\"{pid}-nv{n}\" name=\"{name}\" value=\"{value}\"/></meta_attributes></primitive>"
            );
            let new = xml(&frag).and_then(|f| ops::modify(doc, f).ok());
            (vec!["-M".into(), "-X".into(), frag], new)
        }
        4 => {
            let (section, frag) = if rng.chance(50) {
                ("resources", format!("<primitive id=\"new{n}\" class=\"ocf\" provider=\"pacemaker\" type=\"Dummy\"/>"))
            } else {
                let p = rng.pick(&prims);
                (
                    "constraints",
                    format!("<rsc_location id=\"loc-new{n}\" rsc=\"{}\" node=\"n1\" score=\"10\"/>", p.id().unwrap_or_default()),
                )
            };
            let new = xml(&frag).and_then(|f| ops::create(doc, section, f).ok());
            (vec!["-C".into(), "-o".into(), section.into(), "-X".into(), frag], new)
        }
        5 | 6 => {
            let cands: Vec<&&Element> = with_id
                .iter()
                .filter(|e| {
                    matches!(
                        e.name.as_str(),
                        "nvpair" | "meta_attributes" | "instance_attributes" | "op" | "rsc_location" | "rsc_colocation" | "rsc_order"
                    )
                })
                .collect();
            let e = rng.pick(&cands);
            let frag = format!("<{} id=\"{}\"/>", e.name, e.id().unwrap_or_default());
            let new = xml(&frag).and_then(|f| ops::delete(doc, f).ok());
            (vec!["-D".into(), "-X".into(), frag], new)
        }
        7 => {
            let mut p = (*rng.pick(&prims)).clone();
            let kids: Vec<usize> = p.children.iter().enumerate().filter(|(_, c)| matches!(c, Node::Element(_))).map(|(i, _)| i).collect();
            if !kids.is_empty() && rng.chance(60) {
                p.children.remove(*rng.pick(&kids));
            } else {
                p.set_attr("description", &format!("r{n}"));
            }
            let frag = p.to_xml();
            let new = ops::replace(doc, None, p).ok();
            (vec!["-R".into(), "-X".into(), frag], new)
        }
        _ => {
            let frag = if rng.chance(50) { "<cib have-quorum=\"0\"/>".to_string() } else { format!("<cib epoch=\"{}\"/>", 50 + n) };
            let new = xml(&frag).and_then(|f| ops::modify(doc, f).ok());
            (vec!["-M".into(), "-X".into(), frag], new)
        }
    }
}

#[derive(Default)]
struct Tally {
    agree: usize,
    total: usize,
    outside: usize,
    outside_agree: usize,
    skipped: usize,
    crashed: usize,
    allowed: usize,
    denied: usize,
    bad: Vec<String>,
}

impl Tally {
    fn add(&mut self, same: bool, outside: bool, what: impl FnOnce() -> String) {
        if outside {
            self.outside += 1;
            self.outside_agree += same as usize;
            return;
        }
        self.total += 1;
        if same {
            self.agree += 1;
        } else {
            self.bad.push(what());
        }
    }
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        100.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

#[test]
fn acl_matches_cibadmin() {
    if Command::new("cibadmin").arg("--version").output().is_err() {
        println!("NOTE: skipping the ACL differential test: cibadmin is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("halo-acl-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let oracle = Oracle { dir: dir.clone() };
    let rounds: usize = std::env::var("HALO_ACL_ORACLE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let group = some_group();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut reads, mut writes) = (Tally::default(), Tally::default());
    for round in 0..rounds {
        let base = if round % 2 == 0 { BASE_A } else { BASE_B };
        let plain = parse(&base.replace("ACLS", "")).expect("base CIB");
        let els = elements(&plain);
        let (acls, outside) = random_acls(&mut rng, &els, group.as_ref());
        let text = base.replace("ACLS", &acls);
        let doc = parse(&text).expect("generated CIB");
        let mut users: Vec<Requester> = (0..7).map(|u| Requester::new(&format!("u{u}"), &[])).collect();
        users.push(Requester::new("t-u0", &[]));
        users.push(Requester::new("stranger", &[]));
        if let Some((m, g)) = &group {
            users.push(Requester::new(m, &[g]));
        }
        for who in &users {
            let acl: Acl = acl_for(&doc, who).expect("enable-acl is set");
            let halo = acl.filter(&doc);
            let (rc, out) = oracle.run(&text, &who.user, &["-Q"]);
            let theirs = match rc {
                0 => {
                    reads.allowed += 1;
                    parse(&out).ok()
                }
                4 => {
                    reads.denied += 1;
                    None
                }
                _ => {
                    // cibadmin 2.1.5 segfaults filtering a read when one deny permission
                    // selects an element and one of its descendants (e.g. //*[@id='1']).
                    reads.crashed += (rc < 0) as usize;
                    reads.skipped += 1;
                    if std::env::var("HALO_ACL_ORACLE_DEBUG").is_ok() {
                        println!("skipped read rc {rc}:\n{acls}");
                    }
                    continue;
                }
            };
            let same = match (&halo, &theirs) {
                (Some(h), Some(t)) => ops::same(&h.root, &t.root),
                (None, None) => true,
                _ => false,
            };
            reads.add(same, outside, || {
                format!(
                    "read as {} (round {round}):\n{acls}\nhalo: {}\ncibadmin (rc {rc}): {out}",
                    who.user,
                    halo.map(|d| d.to_xml()).unwrap_or("none".into())
                )
            });
        }
        for n in 0..40 {
            let who = if rng.chance(40) { users[6].clone() } else { rng.pick(&users).clone() };
            let acl = acl_for(&doc, &who).expect("enable-acl is set");
            let (args, new) = random_write(&mut rng, &doc, &els, round * 100 + n);
            let Some(new) = new else {
                writes.skipped += 1;
                continue;
            };
            let halo = acl.check_request(&doc, &new);
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let (rc, _) = oracle.run(&text, &who.user, &argv);
            if rc != 0 && rc != 4 {
                writes.skipped += 1;
                continue;
            }
            if rc == 0 {
                writes.allowed += 1;
            } else {
                writes.denied += 1;
            }
            writes.add(halo.is_ok() == (rc == 0), outside, || {
                format!("write as {} (round {round}): cibadmin {}\n{acls}\nhalo: {halo:?}\ncibadmin rc {rc}", who.user, args.join(" "))
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("ACL differential vs cibadmin 2.1.5, {rounds} random ACL sections on 2 base CIBs:");
    println!(
        "  filtered reads agree: {}/{} ({:.1}%); cibadmin showed something {}, denied {}; skipped {} (cibadmin crashed: {})",
        reads.agree,
        reads.total,
        pct(reads.agree, reads.total),
        reads.allowed,
        reads.denied,
        reads.skipped,
        reads.crashed
    );
    println!(
        "  write decisions agree: {}/{} ({:.1}%); cibadmin allowed {}, denied {}; skipped {} (op refused by halo or cibadmin)",
        writes.agree,
        writes.total,
        pct(writes.agree, writes.total),
        writes.allowed,
        writes.denied,
        writes.skipped
    );
    println!(
        "  with an xpath outside halo's subset (matches nothing in halo): reads {}/{}, writes {}/{} agree",
        reads.outside_agree, reads.outside, writes.outside_agree, writes.outside
    );
    match &group {
        Some((m, g)) => println!("  acl_group checked with user {m} in group {g}"),
        None => println!("  NOTE: no group with members in /etc/group: acl_group not checked"),
    }
    for b in reads.bad.iter().chain(&writes.bad).take(4) {
        println!("DISAGREE {b}\n");
    }
    assert!(reads.total > 0 && writes.total > 0, "nothing compared");
    assert!(reads.bad.is_empty() && writes.bad.is_empty(), "{} read and {} write disagreements", reads.bad.len(), writes.bad.len());
}
