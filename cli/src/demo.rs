//! `halo demo`: the README's main job. A cluster of three nodes on this host (a sandbox in
//! a fresh directory, loopback addresses only) serves one web page (`ocf:halo:httpd` on
//! 127.0.0.100) while a client fetches it every 50 ms and the demo breaks things: the node
//! serving it loses power, the DC's controller is killed, the web server itself dies, and
//! the serving node is stopped cleanly. After each, it prints what halo did and how long
//! the page could not be fetched. Everything it starts is stopped at the end (unless
//! `--keep`), by pid.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

const NODES: [&str; 3] = ["node1", "node2", "node3"];
const WEB_IP: &str = "127.0.0.100";

#[derive(Args)]
pub struct DemoArgs {
    /// Directory for the demo's cluster (default: a new directory under /tmp).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// UDP port of the demo's nodes.
    #[arg(long, default_value_t = 5470)]
    pub port: u16,
    /// TCP port of the web page on 127.0.0.100.
    #[arg(long, default_value_t = 8080)]
    pub web_port: u16,
    /// Leave the cluster running at the end (stop it with `halo sandbox stop DIR`).
    #[arg(long)]
    pub keep: bool,
}

/// What the client saw: when it asked, and which node answered (None: no answer).
type Samples = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

struct Demo {
    dir: PathBuf,
    halo: PathBuf,
    web: SocketAddr,
    samples: Samples,
}

impl Demo {
    /// `halo ARGS` against `node`: exit code and stdout.
    fn halo(&self, node: &str, args: &[&str]) -> (i32, String) {
        let out = std::process::Command::new(&self.halo).args(args).arg("--dir").arg(self.dir.join(node)).output();
        match out {
            Ok(o) => (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned()),
            Err(_) => (-1, String::new()),
        }
    }

    fn sandbox(&self, args: &[&str]) -> Result<()> {
        let o = std::process::Command::new(&self.halo).arg("sandbox").args(args).output()?;
        if !o.status.success() {
            bail!("halo sandbox {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
        }
        Ok(())
    }

    fn status(&self, node: &str) -> Option<serde_json::Value> {
        let (code, out) = self.halo(node, &["status", "--output", "json"]);
        (code == 0).then(|| serde_json::from_str(&out).ok()).flatten()
    }

    /// Some node's view: the first one that answers.
    fn any_status(&self) -> Option<serde_json::Value> {
        NODES.iter().find_map(|n| self.status(n))
    }

    fn online(v: &serde_json::Value) -> usize {
        v["nodes"].as_array().map(|a| a.iter().filter(|n| n["state"] == "online").count()).unwrap_or(0)
    }

    fn web_nodes(v: &serde_json::Value) -> Vec<String> {
        let r = v["resources"].as_array().and_then(|a| a.iter().find(|r| r["id"] == "web").cloned()).unwrap_or_default();
        r["nodes"].as_array().map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect()).unwrap_or_default()
    }

    /// The node serving the page now, as the client last saw it.
    fn served_by(&self) -> Option<String> {
        self.samples.lock().expect("samples").last().and_then(|(_, n)| n.clone())
    }

    fn pid(&self, node: &str, daemon: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(node).join("run").join(format!("{daemon}.pid"))).ok()?.trim().parse().ok()
    }

    /// From `since`: when the page first failed, and when it was served again after that.
    fn outage(&self, since: Instant) -> Option<(Instant, Option<(Instant, String)>)> {
        let s = self.samples.lock().expect("samples");
        let mut after = s.iter().filter(|(t, _)| *t >= since);
        let (down, _) = after.find(|(_, n)| n.is_none())?;
        let back = after.find_map(|(t, n)| n.clone().map(|n| (*t, n)));
        Some((*down, back))
    }

    /// The outage that follows `since`: waits until the page is served again after it
    /// failed; if it did not fail within `grace`, it was never interrupted.
    fn report_outage(&self, since: Instant, grace: Duration) -> Result<String> {
        let deadline = since + grace + Duration::from_secs(60);
        loop {
            match self.outage(since) {
                Some((down, Some((back, node)))) => {
                    return Ok(format!("the page was unavailable for {} ms, then served by {node}", (back - down).as_millis()));
                }
                None if Instant::now() > since + grace => {
                    return Ok(format!("the page never stopped being served ({})", self.served_by().unwrap_or_default()));
                }
                Some((_, None)) if Instant::now() > deadline => bail!("the page was not served again within {:?}", deadline - since),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One GET of the page: the node that served it.
fn fetch(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let at = body.find("served by ")?;
    Some(body[at + 10..].split_whitespace().next()?.to_string())
}

pub fn run(args: DemoArgs) -> Result<()> {
    let dir = match args.workdir.clone() {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("halo-demo-{}", std::process::id())),
    };
    let halo = std::env::current_exe()?;
    let web: SocketAddr = format!("{WEB_IP}:{}", args.web_port).parse().expect("a literal address");
    if fetch(web).is_some() || TcpStream::connect_timeout(&web, Duration::from_millis(200)).is_ok() {
        bail!("{web} already answers: another demo is running? (use --web-port)");
    }
    let d = Demo { dir: dir.clone(), halo, web, samples: Arc::default() };
    let stop = Arc::new(AtomicBool::new(false));
    let result = scenario(&d, &args, &stop);
    stop.store(true, Ordering::SeqCst);
    if args.keep {
        println!("\nThe cluster keeps running in {} (stop it with `halo sandbox stop {}`).", dir.display(), dir.display());
    } else {
        // A throwaway cluster: powered off at once (its web server with it), not stopped
        // node by node, which would move the page around twice more.
        println!("\nPowering the demo's cluster off.");
        for n in NODES {
            let _ = d.sandbox(&["kill", &dir.to_string_lossy(), n]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn scenario(d: &Demo, args: &DemoArgs, stop: &Arc<AtomicBool>) -> Result<()> {
    let dir = d.dir.to_string_lossy().to_string();
    println!("halo demo: a three-node cluster on this host keeps a web page up through failures.\n");
    d.sandbox(&["create", &dir, "--nodes", "3", "--port", &args.port.to_string()]).context("creating the demo's cluster")?;
    let t0 = Instant::now();
    d.sandbox(&["start", &dir])?;
    let v = wait_for(Duration::from_secs(30), "three nodes online under a DC", || d.status("node1").filter(|v| Demo::online(v) == 3 && v["dc"].is_string()))?;
    println!("* Cluster formed in {} ms: node1, node2, node3 online, DC {}.", t0.elapsed().as_millis(), v["dc"].as_str().unwrap_or("?"));

    let (code, _) = d.halo("node1", &["stonith", "create", "fs", "fence_sandbox", "pcmk_host_list=node1 node2 node3"]);
    if code != 0 {
        bail!("cannot create the fence device");
    }
    let web = format!(
        r#"<primitive id="web" class="ocf" provider="halo" type="httpd"><instance_attributes id="web-ia"><nvpair id="web-ip" name="ip" value="{WEB_IP}"/><nvpair id="web-port" name="port" value="{}"/></instance_attributes><operations><op id="web-mon" name="monitor" interval="1s" timeout="10s"/></operations></primitive>"#,
        args.web_port
    );
    let (code, _) = d.halo("node1", &["cib", "create", "-o", "resources", "--xml", &web]);
    if code != 0 {
        bail!("cannot add the web resource");
    }
    println!("* Configured: fencing (fence_sandbox) and web (ocf:halo:httpd on {}, monitored every second).", d.web);

    // The client: one GET every 50 ms for the whole demo.
    {
        let (samples, stop, addr) = (d.samples.clone(), stop.clone(), d.web);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let answer = fetch(addr);
                samples.lock().expect("samples").push((Instant::now(), answer));
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }
    let first = wait_for(Duration::from_secs(30), "the page served", || d.served_by())?;
    println!("* The page is served by {first}: http://{}/\n", d.web);

    // 1. Power loss of the serving node.
    let victim = first.clone();
    println!("1. {victim} loses power (every process of it killed with SIGKILL).");
    let at = Instant::now();
    d.sandbox(&["kill", &dir, &victim])?;
    println!("   {}", d.report_outage(at, Duration::from_secs(10))?);
    let survivor = NODES.iter().find(|n| **n != victim).expect("three nodes");
    let (_, history) = d.halo(survivor, &["stonith", "history", &victim]);
    if let Some(line) = history.lines().find(|l| l.contains("reboot of")) {
        println!("   fencing: {}", line.trim());
    }
    wait_for(Duration::from_secs(60), "the fenced node back", || d.any_status().filter(|v| Demo::online(v) == 3))?;
    println!("   {victim} was rebooted by its fencing and rejoined; the page stays where it is.\n");

    // 2. The DC's controller dies.
    let v = d.any_status().ok_or_else(|| anyhow!("no node answers"))?;
    let dc = v["dc"].as_str().unwrap_or("node1").to_string();
    let serving = d.served_by().unwrap_or_default();
    println!("2. The DC's controller (halo-controld on {dc}) is killed with SIGKILL.");
    let pid = d.pid(&dc, "controld").ok_or_else(|| anyhow!("no pid file for halo-controld on {dc}"))?;
    let at = Instant::now();
    // SAFETY: signalling a daemon of the demo's own cluster, by its pid file.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for(Duration::from_secs(30), "the controller respawned", || d.pid(&dc, "controld").filter(|&p| p != pid))?;
    std::thread::sleep(Duration::from_secs(2));
    let v = wait_for(Duration::from_secs(30), "a DC again", || d.any_status().filter(|v| v["dc"].is_string() && Demo::online(v) == 3))?;
    println!("   halod respawned it; DC now {}; {}", v["dc"].as_str().unwrap_or("?"), d.report_outage(at, Duration::from_secs(3))?);
    if d.served_by().as_deref() != Some(serving.as_str()) {
        println!("   (the page moved from {serving} to {})", d.served_by().unwrap_or_default());
    }
    println!();

    // 3. The web server itself dies.
    let serving = d.served_by().ok_or_else(|| anyhow!("the page is not served"))?;
    println!("3. The web server on {serving} dies (SIGKILL to its process).");
    let rsctmp = d.dir.join(&serving).join("run").join("rsctmp");
    // ocf:halo:httpd keeps its server's pid in $HA_RSCTMP/httpd-<resource>.pid.
    let pidfile = rsctmp.join("httpd-web.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.lines().next()?.trim().parse().ok()).ok_or_else(|| anyhow!("no web server pid in {}", pidfile.display()))?;
    let at = Instant::now();
    // SAFETY: the demo's own web server, by the pid file its agent wrote.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    println!("   {} (its monitor failed; halo restarted it)", d.report_outage(at, Duration::from_secs(10))?);
    let v = wait_for(Duration::from_secs(10), "the failure counted", || d.any_status().filter(|v| v["resources"].as_array().is_some_and(|a| a.iter().any(|r| r["id"] == "web" && r["failcount"].as_i64() >= Some(1)))))?;
    println!("   fail count of web: {}\n", v["resources"].as_array().and_then(|a| a.iter().find(|r| r["id"] == "web")).map(|r| r["failcount"].to_string()).unwrap_or_default());

    // 4. A clean stop of the serving node.
    let serving = d.served_by().ok_or_else(|| anyhow!("the page is not served"))?;
    println!("4. {serving} is stopped cleanly (`halo cluster stop`): its resources move first.");
    let at = Instant::now();
    let (code, _) = d.halo(&serving, &["cluster", "stop"]);
    if code != 0 {
        bail!("halo cluster stop on {serving} failed");
    }
    let stopped_ms = at.elapsed().as_millis();
    println!("   {}; {serving} stopped after {stopped_ms} ms", d.report_outage(at, Duration::from_secs(5))?);
    // Its halod is gone before it is started again (else `sandbox start` finds it running).
    let halod: Option<i32> = std::fs::read_to_string(d.dir.join(&serving).join("halod.pid")).ok().and_then(|s| s.trim().parse().ok());
    if let Some(pid) = halod {
        // SAFETY: signal 0 only asks whether that pid (the node's halod) still exists.
        wait_for(Duration::from_secs(30), "the stopped node's halod gone", || (unsafe { libc::kill(pid, 0) } != 0).then_some(()))?;
    }
    d.sandbox(&["start", &dir, &serving])?;
    wait_for(Duration::from_secs(30), "the stopped node back", || d.any_status().filter(|v| Demo::online(v) == 3))?;
    println!("   {serving} started again and rejoined.\n");

    // The end: where web runs, as the cluster records it.
    let v = wait_for(Duration::from_secs(30), "web recorded as started", || {
        d.any_status().filter(|v| v["resources"].as_array().is_some_and(|a| a.iter().any(|r| r["id"] == "web" && r["role"] == "Started")))
    })?;
    let on = Demo::web_nodes(&v);
    let fetched = d.samples.lock().expect("samples").len();
    println!("Done: {fetched} requests; web runs on {} ({} node{}).", on.join(", "), on.len(), if on.len() == 1 { "" } else { "s" });
    let (_, text) = d.halo(survivor, &["status"]);
    println!("\n{}", text.trim_end());
    if on.len() != 1 {
        bail!("web is active on {on:?}");
    }
    Ok(())
}
