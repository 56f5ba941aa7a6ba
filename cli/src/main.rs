//! `halo`: the command line: what-if scheduling, sandbox clusters, and the status of a node.

mod agent_cmds;
mod cib_cmds;
mod cib_live;
mod cluster_cmds;
mod cluster_tools;
mod cluster;
mod demo;
mod sandbox;
mod local;
mod node_cmds;
mod resource_cmds;
mod simulate;
mod status_cmd;
mod stonith_cib;
mod stonith_cmds;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "halo", version, about = "halo: a high-availability cluster stack (Pacemaker-compatible)")]
struct Cli {
    /// The node to talk to: its directory holding corosync.conf (e.g. a sandbox's DIR/node1).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A three-node cluster on this host keeping a web page up through failures (loopback only).
    Demo(demo::DemoArgs),
    /// Run the scheduler over a CIB file and show what it would do (like crm_simulate).
    Simulate(simulate::SimulateArgs),
    /// A local cluster of several nodes on loopback addresses.
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCmd),
    /// Quorum of the node's partition.
    #[command(subcommand)]
    Quorum(cluster::QuorumCmd),
    /// Totem membership of the node.
    #[command(subcommand)]
    Membership(cluster::MembershipCmd),
    /// Process groups: send, listen, benchmark.
    #[command(subcommand)]
    Cpg(cluster::CpgCmd),
    /// Resource agents on this host: list, describe, exec, test.
    #[command(subcommand)]
    Agent(agent_cmds::AgentCmd),
    /// Read and change the CIB like cibadmin: the running cluster's, or a file's with --file.
    #[command(subcommand)]
    Cib(cib_cmds::CibCmd),
    /// The cluster's status, as crm_mon -1 shows it (--output json|xml for scripts).
    Status(status_cmd::StatusArgs),
    /// Fencing: fence a node, its history, the devices that can fence it.
    #[command(subcommand)]
    Stonith(stonith_cmds::StonithCmd),
    /// Nodes: standby, maintenance (permanent node attributes, as pcs writes them).
    #[command(subcommand)]
    Node(node_cmds::NodeCmd),
    /// Resources: cleanup, refresh, fail counts (as pcs and crm_resource do them).
    #[command(subcommand)]
    Resource(resource_cmds::ResourceCmd),
    /// Node attributes: set, query, delete (transient or permanent), as crm_attribute.
    #[command(subcommand)]
    Attribute(cluster_tools::AttributeCmd),
    /// This node in the cluster: a clean stop (as pcs cluster stop).
    #[command(subcommand)]
    Cluster(cluster_cmds::ClusterCmd),
}

fn main() {
    // Die quietly on a closed pipe (`halo ... | head`), as command-line tools do.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // Run as crm_attribute, crm_master, attrd_updater or crm_node (agents call them).
    if let Some(code) = cluster_tools::dispatch() {
        std::process::exit(code);
    }
    let cli = Cli::parse();
    let dir = cli.dir.as_deref();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Sandbox(cmd) => sandbox::run(cmd),
        Command::Quorum(cmd) => block_on(cluster::quorum(dir, cmd)),
        Command::Membership(cmd) => block_on(cluster::membership(dir, cmd)),
        Command::Cpg(cmd) => block_on(cluster::cpg(dir, cmd)),
        Command::Cib(cmd) => std::process::exit(cib_cmds::run(cmd, dir)),
        Command::Agent(cmd) => agent_cmds::run(cmd, dir).map(|code| std::process::exit(code)),
        Command::Status(args) => status_cmd::run(args, dir),
        Command::Stonith(cmd) => stonith_cmds::run(cmd, dir).map(|code| std::process::exit(code)),
        Command::Node(cmd) => node_cmds::run(cmd, dir).map(|code| std::process::exit(code)),
        Command::Resource(cmd) => resource_cmds::run(cmd, dir).map(|code| std::process::exit(code)),
        Command::Attribute(cmd) => cluster_tools::attribute_cmd(cmd, dir).map(|code| std::process::exit(code)),
        Command::Cluster(cmd) => cluster_cmds::run(cmd, dir).map(|code| std::process::exit(code)),
    };
    if let Err(e) = result {
        eprintln!("halo: {e:#}");
        std::process::exit(1);
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}
