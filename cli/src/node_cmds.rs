//! `node init`, `node run`, `node stop`, `nodes list`.

use crate::files;
use crate::util::{parse_duration, parse_size, print_json, say};
use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use serde_json::json;
use slicefed_peer::core::Capacity;
use slicefed_peer::node::{self, NodeConfig};
use slicefed_peer::wire::{AdminRequest, Response};
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
    /// Run the node: join the overlay, advertise, answer requests (until Ctrl-C).
    Run(RunArgs),
    /// What runs on your node, for whom, under which ticket and with what usage, over its
    /// local admin socket (answers even when the network does not: a partition, a flood).
    Status {
        #[arg(long)]
        dir: PathBuf,
        /// Only this slice.
        slice: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stop every sliver of a slice on your node, whoever holds it (signed with the node
    /// key, so only the owner can; the node's log records it as stopped by the owner).
    Stop {
        #[arg(long)]
        dir: PathBuf,
        /// The slice to stop here.
        slice: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[arg(long)]
    dir: PathBuf,
    /// The node certificate (from `authority certify --role node`).
    #[arg(long, env = "SLICEFED_CERT")]
    cert: PathBuf,
    /// The owner's trust policy.
    #[arg(long, env = "SLICEFED_TRUST")]
    trust: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: Vec<String>,
    /// Peers to join through (multiaddr with /p2p/PEERID).
    #[arg(long, env = "SLICEFED_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// How often to advertise.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    advert_interval: u64,
    /// Slivers at once on this machine.
    #[arg(long, default_value_t = 100)]
    max_slivers: u32,
    /// Memory for all slivers together.
    #[arg(long, value_parser = parse_size, default_value = "4GiB")]
    memory: u64,
    /// Where compiled modules are cached (default DIR/cache); nodes on one machine may
    /// share one.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Witnesses per log.
    #[arg(long, default_value_t = 3)]
    witnesses: usize,
    /// Do not bring back the slivers that ran before a crash or restart (they are logged
    /// as not restored and forgotten).
    #[arg(long)]
    no_restore: bool,
    /// Most bytes of one other node's log this node keeps as its witness.
    #[arg(long, value_parser = parse_size, default_value = "1GiB")]
    replica_quota: u64,
    /// Most bytes of all the logs this node keeps as a witness.
    #[arg(long, value_parser = parse_size, default_value = "16GiB")]
    replicas_quota: u64,
    /// Where to serve the node's sensors (Prometheus text at http://ADDR/metrics), or
    /// `off`. Loopback by default, on a port the system picks and writes to
    /// DIR/metrics.addr; name a fixed one (e.g. 127.0.0.1:9464) for a Prometheus server.
    #[arg(long, default_value = slicefed_peer::node::sensors::DEFAULT_METRICS_ADDR)]
    metrics: String,
    /// Where to serve the owner's dashboard (a web page at http://ADDR/), or `off`.
    /// Loopback by default, on a port the system picks and writes to DIR/dashboard.addr;
    /// beyond loopback it wants the token in DIR/dashboard.token.
    #[arg(long, default_value = slicefed_peer::node::sensors::DEFAULT_METRICS_ADDR)]
    dashboard: String,
    /// Test only: sign a second, forged history head to show equivocation is caught.
    #[arg(long, hide = true)]
    test_equivocate: bool,
}

#[derive(Subcommand)]
pub enum NodesCmd {
    /// List the members a node knows (ask the node at --node or SLICEFED_BOOTSTRAP).
    List {
        #[arg(long, env = "SLICEFED_BOOTSTRAP", value_delimiter = ',')]
        node: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

fn addr(s: &str) -> Result<libp2p::Multiaddr> {
    s.parse()
        .map_err(|e| anyhow!("`{s}` is not a multiaddr: {e}"))
}

pub fn nodes(cmd: NodesCmd) -> Result<ExitCode> {
    let NodesCmd::List { node, json } = cmd;
    let first = node
        .first()
        .ok_or_else(|| anyhow!("no node to ask: give --node or set SLICEFED_BOOTSTRAP"))?;
    let target = addr(first)?;
    let rt = tokio::runtime::Runtime::new()?;
    let rows = rt.block_on(slicefed_peer::client::members(
        target,
        std::time::Duration::from_secs(20),
    ))?;
    if json {
        print_json(&rows)?;
    } else {
        for r in &rows {
            let per_minute = (r.traffic.wire_in + r.traffic.wire_out) as f64 * 60.0
                / r.uptime_secs.max(1) as f64;
            say!(
                "{:<24} {:<16} {:<21} {:<54} slivers {:>4}  free {:>6} MiB  up {:>6}  {:>9}/min  {}",
                r.name,
                r.authority,
                reachable_at(&r.addrs),
                r.peer_id,
                r.slivers,
                r.free_memory >> 20,
                humantime::format_duration(std::time::Duration::from_secs(r.uptime_secs)),
                bytesize::ByteSize(per_minute as u64)
                    .display()
                    .iec_short()
                    .to_string(),
                r.health
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a member is reached, as `IP:PORT` (its first TCP listen address), or `-`.
fn reachable_at(addrs: &[String]) -> String {
    use libp2p::multiaddr::Protocol;
    addrs
        .iter()
        .filter_map(|a| a.parse::<libp2p::Multiaddr>().ok())
        .find_map(|m| {
            let mut ip = None;
            let mut port = None;
            for p in m.iter() {
                match p {
                    Protocol::Ip4(v4) => ip = Some(std::net::IpAddr::V4(v4)),
                    Protocol::Ip6(v6) => ip = Some(std::net::IpAddr::V6(v6)),
                    Protocol::Tcp(t) => port = Some(t),
                    _ => {}
                }
            }
            Some(std::net::SocketAddr::new(ip?, port?).to_string())
        })
        .unwrap_or_else(|| "-".into())
}

fn run(a: RunArgs) -> Result<ExitCode> {
    let key = files::read_secret_key(&a.dir.join("node.key"))?;
    let credential = files::read_credential_of(&a.cert, slicefed_trust::objects::Kind::NodeCert)?
        .to_bytes()
        .context("re-encoding the node certificate")?;
    let policy = files::read_policy(&a.trust)?;
    if a.advert_interval == 0 {
        bail!("--advert-interval must be at least 1s");
    }
    if a.witnesses == 0 {
        bail!("--witnesses must be at least 1");
    }
    let mut config = NodeConfig::new(key, credential, policy, a.dir.clone());
    config.cache_dir = a.cache;
    config.listen = a.listen.iter().map(|s| addr(s)).collect::<Result<_>>()?;
    let address_or_off = |flag: &str, at: &str| -> Result<Option<std::net::SocketAddr>> {
        match at {
            "off" => Ok(None),
            at => Ok(Some(at.parse().map_err(|e| {
                anyhow!("--{flag} `{at}`: not an address like 127.0.0.1:9464, nor `off` ({e})")
            })?)),
        }
    };
    config.metrics = address_or_off("metrics", &a.metrics)?;
    config.dashboard = address_or_off("dashboard", &a.dashboard)?;
    config.bootstrap = a
        .bootstrap
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| addr(s))
        .collect::<Result<_>>()?;
    config.advert_interval = std::time::Duration::from_secs(a.advert_interval);
    config.capacity = Capacity {
        max_slivers: a.max_slivers,
        memory: a.memory,
        default_sliver_memory: 64 << 20,
    };
    config.witnesses = a.witnesses;
    config.test_equivocate = a.test_equivocate;
    config.restore = !a.no_restore;
    config.replica_quota = a.replica_quota;
    config.replicas_quota = a.replicas_quota;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(node::run(config, |a| say!("listening on {a}"), async {
        crate::util::interrupted().await;
    }))?;
    Ok(ExitCode::SUCCESS)
}

fn admin(dir: &std::path::Path, req: &AdminRequest) -> Result<Response> {
    // The owner's local admin socket: served apart from the public port, so a flood there
    // cannot lock the owner out; only the node's user can reach it.
    slicefed_peer::admin::call(dir, req, std::time::Duration::from_secs(10)).with_context(|| {
        format!(
            "cannot reach the node's admin socket in {} (is the node running, and are you its owner?)",
            dir.display()
        )
    })
}

fn status(dir: &std::path::Path, slice: Option<String>, json: bool) -> Result<ExitCode> {
    let s = match admin(dir, &AdminRequest::Status { slice })? {
        Response::Status(s) => s,
        Response::Error(why) => bail!("the node refused: {why}"),
        _ => bail!("the node answered something other than its status"),
    };
    if json {
        print_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{} ({}): {} ledger entries, {} witness cosignature(s) on its latest checkpoint",
        s.name,
        s.node,
        s.ledger_entries,
        s.cosignatures
    );
    for v in &s.slivers {
        say!(
            "  sliver {:>4} {:<24} {:<10} {} of {}  cpu {} ms  memory {} KiB  flows {}  out {} B  in {} B",
            v.id,
            v.slice,
            v.state,
            v.user.as_deref().unwrap_or("(no person)"),
            v.authority.as_deref().unwrap_or("-"),
            v.cpu_ms,
            v.memory >> 10,
            v.flows,
            v.bytes_out,
            v.bytes_in
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn stop(dir: &std::path::Path, slice: &str, json: bool) -> Result<ExitCode> {
    let answer = admin(
        dir,
        &AdminRequest::Stop {
            slice: slice.to_string(),
        },
    )?;
    let ids = match answer {
        Response::Stopped(ids) => ids,
        Response::Error(why) => bail!("the node refused: {why}"),
        _ => bail!("the node answered something other than the slivers it stopped"),
    };
    if json {
        print_json(&json!({ "slice": slice, "stopped": ids }))?;
    } else if ids.is_empty() {
        say!("no sliver of {slice} runs on this node");
    } else {
        say!(
            "stopped {} sliver(s) of {slice}: {ids:?} (logged as stopped by the node owner)",
            ids.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn node(cmd: NodeCmd) -> Result<ExitCode> {
    let (dir, name, json) = match cmd {
        NodeCmd::Init { dir, name, json } => (dir, name, json),
        NodeCmd::Run(a) => return run(a),
        NodeCmd::Stop { dir, slice, json } => return stop(&dir, &slice, json),
        NodeCmd::Status { dir, slice, json } => return status(&dir, slice, json),
    };
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
