//! `halo simulate -x FILE -S`: the same text `crm_simulate -x FILE -S` prints.

use std::io::Write;

use anyhow::{anyhow, Context, Result};
use chrono::Utc;
use clap::Args;

#[derive(Args)]
pub struct SimulateArgs {
    /// CIB file to read (a live cluster's CIB comes later).
    #[arg(short = 'x', long = "xml-file", value_name = "FILE")]
    xml_file: String,
    /// Simulate the transition's execution and show the resulting cluster status.
    #[arg(short = 'S', long = "simulate")]
    simulate: bool,
    /// Show the transition without simulating it (the default when -S is absent).
    #[arg(short = 'R', long = "run")]
    run: bool,
    /// Show allocation scores.
    #[arg(short = 's', long = "show-scores")]
    show_scores: bool,
    /// Set "now" (ISO 8601, e.g. 2005-020T11:30) instead of the CIB's execution-date or the clock.
    #[arg(short = 't', long = "set-datetime", value_name = "DATE")]
    date: Option<String>,
    /// Write the transition graph as XML to FILE.
    #[arg(short = 'G', long = "save-graph", value_name = "FILE")]
    graph: Option<String>,
    /// Also print the summary (accepted for crm_simulate compatibility).
    #[arg(short = 'L', long = "live-check")]
    live: bool,
}

pub fn run(args: SimulateArgs) -> Result<()> {
    let src = std::fs::read_to_string(&args.xml_file).with_context(|| format!("cannot read {}", args.xml_file))?;
    let cib = cib::Cib::parse(&src).map_err(|e| anyhow!("{}: {e}", args.xml_file))?;
    let date = match &args.date {
        Some(d) => Some(scheduler::rules::parse_iso8601(d).ok_or_else(|| anyhow!("invalid date '{d}' for -t: use ISO 8601, e.g. 2024-01-31T12:00:00Z"))?),
        None => None,
    };
    let (now, date_line) = scheduler::effective_now(&cib, date, Utc::now().naive_utc());
    let t = scheduler::schedule(&cib, now);
    let out = t.crm_simulate_text(date_line.as_deref(), args.show_scores, args.simulate);
    if let Some(g) = &args.graph {
        std::fs::write(g, t.graph_xml()).with_context(|| format!("cannot write the graph to {g}"))?;
    }
    let _ = (args.run, args.live);
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}
