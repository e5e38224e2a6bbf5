//! `node init` (the rest of the node verbs arrive with the daemon, issue #5).

use crate::files;
use crate::util::{print_json, say};
use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;
use slicefed_trust::{Name, SecretKey};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Create a node directory with its key (the node's libp2p identity).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The node's name, as its authority will certify it (e.g. princeton.node1).
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn node(cmd: NodeCmd) -> Result<ExitCode> {
    let NodeCmd::Init { dir, name, json } = cmd;
    let name = Name::parse(&name)?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    let key_path = dir.join("node.key");
    let key = SecretKey::generate()?;
    files::write_secret_key(&key_path, &key)?;
    let pk = key.public();
    if json {
        print_json(
            &json!({ "name": name, "public_key": pk.to_hex(), "peer_id": pk.peer_id(), "key": key_path }),
        )?;
    } else {
        say!("node {name} created in {}", dir.display());
        say!("public key {}\npeer id    {}", pk.to_hex(), pk.peer_id());
        say!("\nAsk your authority to certify it:");
        say!(
            "  slicefed authority certify --authority AUTH_DIR --subject {} --role node --name {name} --out {}/node.cert",
            pk.to_hex(),
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
