//! `slicefed-simulations SCENARIO [--seed N] [--nodes N] [--hours H] [--out DIR]`: runs a
//! scenario of the deterministic simulator and writes its figures and plots.

use anyhow::{Context, Result};
use clap::Parser;
use slicefed_simulations::report::{self, Summary};
use slicefed_simulations::scenario::Scenario;
use slicefed_simulations::sim::Sim;
use std::path::PathBuf;
use std::process::ExitCode;

/// See the dependency's comment in `Cargo.toml`: a whole federation on one heap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs slicefed's node logic for a simulated federation.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Which scenario (`all` runs every one but `short` and `planetary-10k`).
    #[arg(value_parser = parse_scenario)]
    scenario: Vec<Option<Scenario>>,
    /// The seed: the same seed gives the same trace.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Honest nodes (default: the scenario's).
    #[arg(long)]
    nodes: Option<usize>,
    /// Simulated hours (default: the scenario's).
    #[arg(long)]
    hours: Option<f64>,
    /// Witnesses per log (default 3); results are named `SCENARIO-kN` when it is not 3.
    #[arg(long)]
    witnesses: Option<usize>,
    /// Where to write the summary, series and plots.
    #[arg(long, default_value = "docs/simulations")]
    out: PathBuf,
    /// Print the summary as JSON only.
    #[arg(long)]
    json: bool,
}

fn parse_scenario(s: &str) -> Result<Option<Scenario>, String> {
    if s == "all" {
        return Ok(None);
    }
    Scenario::from_name(s).map(Some).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        format!("unknown scenario `{s}`: one of all, {}", names.join(", "))
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slicefed-simulations: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let mut list: Vec<Scenario> = vec![];
    for s in &args.scenario {
        match s {
            Some(s) => list.push(*s),
            // `all` leaves out the CI scenario and the 10,000-node one (which does not
            // finish in reasonable time yet; run it by name).
            None => list.extend(
                Scenario::ALL
                    .iter()
                    .filter(|s| !matches!(s, Scenario::Short | Scenario::Planetary10k)),
            ),
        }
    }
    if list.is_empty() {
        list.push(Scenario::Planetary);
    }
    for s in list {
        let mut cfg = s.config(args.seed, args.nodes, args.hours);
        let mut name = s.name().to_string();
        if let Some(k) = args.witnesses.filter(|k| *k != cfg.witnesses) {
            cfg.witnesses = k.max(1);
            name = format!("{name}-k{}", cfg.witnesses);
        }
        let started = std::time::Instant::now();
        let mut sim = Sim::new(cfg).context("building the simulated world")?;
        let trace = sim.run();
        let wall = started.elapsed().as_secs_f64();
        let summary = Summary::new(
            &name,
            sim.config(),
            &sim.metrics,
            sim.traffic_per_node_minute(),
            sim.messages_per_node_minute(),
            wall,
            trace,
        );
        report::write(&args.out, &summary, &sim.metrics)
            .with_context(|| format!("writing results under {}", args.out.display()))?;
        if args.json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            println!("{}", summary.human());
            for (what, [run, last]) in [
                ("swim", sim.swim_parts_per_node_minute()),
                ("adverts", sim.advert_parts_per_node_minute()),
            ] {
                for (when, parts) in [("whole run", run), ("last sample period", last)] {
                    let parts: Vec<String> = parts
                        .iter()
                        .map(|(name, b)| format!("{name} {:.2}", b / 1024.0))
                        .collect();
                    println!(
                        "  {what} KiB per up node per minute, {when}: {}",
                        parts.join(", ")
                    );
                }
            }
            println!(
                "  swim counters, every honest node summed: {:?}",
                sim.swim_stats()
            );
            println!();
        }
    }
    Ok(())
}
