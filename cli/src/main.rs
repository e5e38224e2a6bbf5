//! # slicefed
//!
//! The command-line interface of slicefed: one verb per user action (the contract, and where
//! it changed, is in `docs/DECISIONS.md`). This crate is a thin driver: it parses arguments, does the file IO, reads
//! the clock, and calls the libraries, which do no IO themselves.
//!
//! Exit status: 0 success; 1 the operation ran and failed or was refused (one line on
//! stderr naming the file and the problem); 2 usage error (clap's own exit code).

mod attack;
mod audit_cmds;
mod audit_net;
mod audit_who;
mod devnet;
mod files;
mod hosts;
mod node_cmds;
mod slice_cmds;
mod sliver_cmds;
mod trust_cmds;
mod util;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "slicefed",
    version,
    about = "A peer-to-peer slice federation: PlanetLab without a central PlanetLab Central"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and inspect ed25519 keys.
    #[command(subcommand)]
    Key(trust_cmds::KeyCmd),
    /// Run an authority: create its key, certify users, nodes and sub-authorities, revoke.
    #[command(subcommand)]
    Authority(trust_cmds::AuthorityCmd),
    /// Inspect and verify any signed object.
    #[command(subcommand)]
    Cert(trust_cmds::CertCmd),
    /// Issue slice tickets.
    #[command(subcommand)]
    Ticket(trust_cmds::TicketCmd),
    /// Set up and run a node.
    #[command(subcommand)]
    Node(node_cmds::NodeCmd),
    /// See the federation's nodes.
    #[command(subcommand)]
    Nodes(node_cmds::NodesCmd),
    /// Deploy, watch, renew and delete slices across the federation.
    #[command(subcommand)]
    Slice(slice_cmds::SliceCmd),
    /// Run slivers locally.
    #[command(subcommand)]
    Sliver(sliver_cmds::SliverCmd),
    /// A whole federation on loopback, narrated: the main job of a fresh checkout.
    Devnet(devnet::DevnetArgs),
    /// Export and replay node logs; trace packets back to people.
    #[command(subcommand)]
    Audit(audit_cmds::AuditCmd),
    /// Test only: a hostile client (floods a node) for the adversary tests and benchmarks.
    #[command(subcommand, hide = true)]
    Attack(attack::AttackCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Key(c) => trust_cmds::key(c),
        Command::Authority(c) => trust_cmds::authority(c),
        Command::Cert(c) => trust_cmds::cert(c),
        Command::Ticket(c) => trust_cmds::ticket(c),
        Command::Audit(c) => audit_cmds::audit(c),
        Command::Devnet(a) => devnet::devnet(a),
        Command::Sliver(c) => sliver_cmds::sliver(c),
        Command::Node(c) => node_cmds::node(c),
        Command::Slice(c) => slice_cmds::slice(c),
        Command::Nodes(c) => node_cmds::nodes(c),
        Command::Attack(c) => attack::attack(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the context chain joined by colons.
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}
