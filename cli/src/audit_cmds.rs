//! `audit export|replay|who|verify|fetch`.

use crate::files::write_atomic;
use crate::util::{print_json, say};
use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::json;
use slicefed_ledger::replay::Depth;
use slicefed_ledger::source::LogSource;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Write a node's log as one self-contained file for offline audit.
    Export {
        /// The node directory (or its ledger directory).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Verify whole logs: every entry, link, tree and checkpoint signature.
    Replay {
        /// Node directories, ledger directories or export files.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        /// `full` also decodes every entry; `hashes` checks integrity only (faster).
        #[arg(long, value_enum, default_value = "full")]
        depth: ReplayDepth,
        #[arg(long)]
        json: bool,
    },
    /// Map an observed connection to the flow, the sliver, its ticket chain, the person
    /// and their authority, and write a proof bundle.
    Who(WhoArgs),
    /// Check a proof bundle offline with nothing but a trust policy.
    Verify {
        bundle: PathBuf,
        #[arg(long, env = "SLICEFED_TRUST")]
        trust: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Recover a node's log from its witnesses (e.g. after the node died).
    Fetch {
        /// The node whose log to recover (PeerId).
        #[arg(long)]
        origin: String,
        /// A member to ask for the member list.
        #[arg(long, env = "SLICEFED_BOOTSTRAP", value_delimiter = ',')]
        bootstrap: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct WhoArgs {
    /// The address and port the connection went to, as the victim saw its own side.
    #[arg(long)]
    pub remote: std::net::SocketAddr,
    /// The source address and port the victim saw (the node's side of the connection):
    /// over the network (`--bootstrap`), the address finds the node.
    #[arg(long)]
    pub source: Option<std::net::SocketAddr>,
    /// The source port the victim saw (the node-side port), when the address is not known.
    #[arg(long)]
    pub local_port: Option<u16>,
    /// About when (RFC 3339 or unix seconds); matches flows within 10 minutes of it.
    #[arg(long)]
    pub at: Option<String>,
    /// Only this node's log (PeerId).
    #[arg(long)]
    pub node: Option<String>,
    /// Node directories or export files to search (instead of asking the federation).
    #[arg(long, num_args = 1..)]
    pub ledger: Vec<PathBuf>,
    /// Ask the federation instead: a member to ask (multiaddr with /p2p/PEERID). The node
    /// behind `--source` gives its log, or its witnesses do when it is dead or refuses.
    #[arg(long, env = "SLICEFED_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<String>,
    /// The auditor's trust policy: what is found is printed only once its proof bundle
    /// verifies against it (the person named is the one the ticket chain proves).
    #[arg(long, env = "SLICEFED_TRUST")]
    pub trust: PathBuf,
    /// Write the proof bundle here.
    #[arg(long)]
    pub bundle_out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReplayDepth {
    Hashes,
    Full,
}

pub fn audit(cmd: AuditCmd) -> Result<ExitCode> {
    match cmd {
        AuditCmd::Who(a) => crate::audit_who::who(a),
        AuditCmd::Verify {
            bundle,
            trust,
            json,
        } => crate::audit_who::verify(&bundle, &trust, json),
        AuditCmd::Fetch {
            origin,
            bootstrap,
            out,
            json,
        } => crate::audit_who::fetch(&origin, &bootstrap, &out, json),
        AuditCmd::Export { dir, out, json } => {
            if !dir.is_dir() {
                bail!("{}: not a directory", dir.display());
            }
            let src = LogSource::load(&dir).with_context(|| "cannot read the log".to_string())?;
            let (bytes, entries, torn) = src.export();
            write_atomic(&out, &bytes, 0o644, true)?;
            if json {
                print_json(
                    &json!({ "origin": src.origin.to_hex(), "peer_id": src.origin.peer_id(),
                    "entries": entries, "out": out, "incomplete": torn }),
                )?;
            } else {
                say!(
                    "exported {entries} entries of {} -> {}",
                    src.origin.peer_id(),
                    out.display()
                );
                if let Some(t) = torn {
                    eprintln!("warning: the log ends in a damaged record, not exported: {t}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Replay {
            sources,
            depth,
            json,
        } => {
            let depth = match depth {
                ReplayDepth::Hashes => Depth::Hashes,
                ReplayDepth::Full => Depth::Full,
            };
            let mut logs = Vec::new();
            let mut all_valid = true;
            for s in &sources {
                let doc = match LogSource::load(s) {
                    Ok(src) => {
                        let r = src.replay_at(depth);
                        all_valid &= r.valid;
                        json!({ "source": s, "origin": r.origin.to_hex(), "peer_id": r.origin.peer_id(),
                            "entries": r.entries, "checkpoints": r.checkpoints, "checkpointed": r.checkpointed,
                            "root": hex::encode(r.root), "valid": r.valid, "first_bad": r.first_bad, "error": r.error })
                    }
                    Err(e) => {
                        all_valid = false;
                        json!({ "source": s, "origin": null, "entries": 0, "valid": false, "first_bad": null,
                            "error": e.to_string() })
                    }
                };
                logs.push(doc);
            }
            if json {
                print_json(&json!({ "valid": all_valid, "logs": logs }))?;
            } else {
                for l in &logs {
                    let src = l["source"].as_str().unwrap_or_default();
                    if l["valid"] == true {
                        say!(
                            "valid    {src}: {} entries by {}, {} signed checkpoints (last covers {})",
                            l["entries"],
                            l["peer_id"].as_str().unwrap_or_default(),
                            l["checkpoints"],
                            l["checkpointed"]
                        );
                    } else {
                        eprintln!(
                            "invalid  {src}: {}",
                            l["error"].as_str().unwrap_or("unknown error")
                        );
                    }
                }
            }
            Ok(if all_valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
