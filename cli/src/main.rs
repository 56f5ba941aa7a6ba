//! `halo`: the command line. For now: `halo simulate` (crm_simulate's what-if).

mod simulate;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "halo", version, about = "halo: a high-availability cluster stack (Pacemaker-compatible)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler over a CIB file and show what it would do (like crm_simulate).
    Simulate(simulate::SimulateArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(args),
    };
    if let Err(e) = result {
        eprintln!("halo: {e:#}");
        std::process::exit(1);
    }
}
