//! `halo simulate -x FILE -S`: the same text `crm_simulate -x FILE -S` prints.

use std::io::Write;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
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

fn fmt_date(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

pub fn run(args: SimulateArgs) -> Result<()> {
    let src = std::fs::read_to_string(&args.xml_file).with_context(|| format!("cannot read {}", args.xml_file))?;
    let cib = cib::Cib::parse(&src).map_err(|e| anyhow!("{}: {e}", args.xml_file))?;
    let mut date_line = None;
    let now = match &args.date {
        Some(d) => scheduler::rules::parse_iso8601(d).ok_or_else(|| anyhow!("invalid date '{d}' for -t: use ISO 8601, e.g. 2024-01-31T12:00:00Z"))?,
        None => match cib.attr("execution-date").and_then(|v| v.parse::<i64>().ok()).and_then(|s| DateTime::<Utc>::from_timestamp(s, 0)) {
            Some(t) => {
                date_line = Some(format!("Using the original execution date of: {}", fmt_date(t.naive_utc())));
                t.naive_utc()
            }
            None => Utc::now().naive_utc(),
        },
    };
    let t = scheduler::schedule(&cib, now);
    let mut out = String::new();
    if let Some(d) = &date_line {
        out.push_str(d);
        out.push('\n');
    }
    let text = t.simulate_text();
    if args.show_scores {
        // Scores go between the current status and the transition summary.
        let (status, rest) = text.split_at(text.find("\nTransition Summary:").unwrap_or(text.len()));
        out.push_str(status);
        out.push('\n');
        out.push_str(&t.scores_text());
        out.push_str(rest);
    } else {
        out.push_str(&text);
    }
    if args.simulate {
        if let Some(d) = &date_line {
            out.push_str(d);
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&t.revised_text());
    }
    if let Some(g) = &args.graph {
        std::fs::write(g, t.graph_xml()).with_context(|| format!("cannot write the graph to {g}"))?;
    }
    let _ = (args.run, args.live);
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}
