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
        /// The node directory to create (or `dir` in --config).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The config file `node run --config` will read: the directory is its `dir`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The node's name, as its authority will certify it (e.g. princeton.node1).
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Run the node: join the overlay, advertise, answer requests (until Ctrl-C).
    Run(Box<RunArgs>),
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
    /// A config file (TOML) with any of the options below by name (`dir`, `cert`,
    /// `trust`, `listen`, `bootstrap`, `advert_interval`, `max_slivers`, `memory`,
    /// `cache`, `witnesses`, `restore`, `replica_quota`, `replicas_quota`, `metrics`,
    /// `dashboard`); what the command line says wins. Relative paths in it are relative
    /// to the file. The Debian package's service runs `node run --config
    /// /etc/slicefed/node.toml`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The node directory (from `node init`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The node certificate (from `authority certify --role node`); then the config's
    /// `cert`, then SLICEFED_CERT.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// The owner's trust policy; then the config's `trust`, then SLICEFED_TRUST.
    #[arg(long)]
    trust: Option<PathBuf>,
    /// Listen address [default: /ip4/0.0.0.0/tcp/0].
    #[arg(long)]
    listen: Vec<String>,
    /// Peers to join through (multiaddr with /p2p/PEERID); then the config's
    /// `bootstrap`, then SLICEFED_BOOTSTRAP.
    #[arg(long, value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// How often to advertise [default: 5s].
    #[arg(long, value_parser = parse_duration)]
    advert_interval: Option<u64>,
    /// Slivers at once on this machine [default: 100].
    #[arg(long)]
    max_slivers: Option<u32>,
    /// Memory for all slivers together [default: 4GiB].
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// Where compiled modules are cached (default DIR/cache); nodes on one machine may
    /// share one.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Witnesses per log [default: 3].
    #[arg(long)]
    witnesses: Option<usize>,
    /// Do not bring back the slivers that ran before a crash or restart (they are logged
    /// as not restored and forgotten).
    #[arg(long)]
    no_restore: bool,
    /// Most bytes of one other node's log this node keeps as its witness [default: 1GiB].
    #[arg(long, value_parser = parse_size)]
    replica_quota: Option<u64>,
    /// Most bytes of all the logs this node keeps as a witness [default: 16GiB].
    #[arg(long, value_parser = parse_size)]
    replicas_quota: Option<u64>,
    /// Where to serve the node's sensors (Prometheus text at http://ADDR/metrics), or
    /// `off`. Loopback by default, on a port the system picks and writes to
    /// DIR/metrics.addr; name a fixed one (e.g. 127.0.0.1:9464) for a Prometheus server.
    #[arg(long)]
    metrics: Option<String>,
    /// Where to serve the owner's dashboard (a web page at http://ADDR/), or `off`.
    /// Loopback by default, on a port the system picks and writes to DIR/dashboard.addr;
    /// beyond loopback it wants the token in DIR/dashboard.token.
    #[arg(long)]
    dashboard: Option<String>,
    /// Test only: sign a second, forged history head to show equivocation is caught.
    #[arg(long, hide = true)]
    test_equivocate: bool,
}

/// `node run --config FILE`: the same options, by name; the command line wins.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunConfig {
    dir: Option<PathBuf>,
    cert: Option<PathBuf>,
    trust: Option<PathBuf>,
    #[serde(default)]
    listen: Vec<String>,
    #[serde(default)]
    bootstrap: Vec<String>,
    advert_interval: Option<String>,
    max_slivers: Option<u32>,
    memory: Option<String>,
    cache: Option<PathBuf>,
    witnesses: Option<usize>,
    restore: Option<bool>,
    replica_quota: Option<String>,
    replicas_quota: Option<String>,
    metrics: Option<String>,
    dashboard: Option<String>,
}

/// Largest config file read.
const MAX_CONFIG_BYTES: usize = 64 << 10;

impl RunConfig {
    fn load(path: &std::path::Path) -> Result<RunConfig> {
        let bytes = files::read_bounded(path, MAX_CONFIG_BYTES)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))?;
        let mut c: RunConfig =
            toml::from_str(text).map_err(|e| anyhow!("{}: {}", path.display(), e.message()))?;
        // Relative paths are the file's.
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        for p in [&mut c.dir, &mut c.cert, &mut c.trust, &mut c.cache]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(c)
    }
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
    let c = match &a.config {
        Some(path) => RunConfig::load(path)?,
        None => RunConfig::default(),
    };
    let from_config = |what: &str, v: Option<String>, parse: fn(&str) -> Result<u64, String>| {
        v.map(|s| parse(&s).map_err(|e| anyhow!("config `{what}`: {e}")))
            .transpose()
    };
    let dir = a
        .dir
        .or(c.dir)
        .ok_or_else(|| anyhow!("no node directory: give --dir or `dir` in --config"))?;
    // The command line, then the file, then the environment (a researcher's SLICEFED_CERT
    // or SLICEFED_BOOTSTRAP must not override the node's own file).
    let env_path = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cert = a
        .cert
        .or(c.cert)
        .or_else(|| env_path("SLICEFED_CERT"))
        .ok_or_else(|| anyhow!("no node certificate: give --cert or `cert` in --config"))?;
    let trust = a
        .trust
        .or(c.trust)
        .or_else(|| env_path("SLICEFED_TRUST"))
        .ok_or_else(|| anyhow!("no trust policy: give --trust or `trust` in --config"))?;
    let listen = match (a.listen.is_empty(), c.listen.is_empty()) {
        (false, _) => a.listen,
        (true, false) => c.listen,
        (true, true) => vec!["/ip4/0.0.0.0/tcp/0".to_string()],
    };
    let bootstrap = if !a.bootstrap.is_empty() {
        a.bootstrap
    } else if !c.bootstrap.is_empty() || a.config.is_some() {
        c.bootstrap
    } else {
        std::env::var("SLICEFED_BOOTSTRAP")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    };
    let advert_interval = match a.advert_interval {
        Some(v) => v,
        None => from_config("advert_interval", c.advert_interval, parse_duration)?.unwrap_or(5),
    };
    let memory = match a.memory {
        Some(v) => v,
        None => from_config("memory", c.memory, parse_size)?.unwrap_or(4 << 30),
    };
    let replica_quota = match a.replica_quota {
        Some(v) => v,
        None => from_config("replica_quota", c.replica_quota, parse_size)?.unwrap_or(1 << 30),
    };
    let replicas_quota = match a.replicas_quota {
        Some(v) => v,
        None => from_config("replicas_quota", c.replicas_quota, parse_size)?.unwrap_or(16 << 30),
    };
    let max_slivers = a.max_slivers.or(c.max_slivers).unwrap_or(100);
    let witnesses = a.witnesses.or(c.witnesses).unwrap_or(3);
    let restore = !a.no_restore && c.restore.unwrap_or(true);
    let default_addr = slicefed_peer::node::sensors::DEFAULT_METRICS_ADDR;
    let metrics = a
        .metrics
        .or(c.metrics)
        .unwrap_or_else(|| default_addr.into());
    let dashboard = a
        .dashboard
        .or(c.dashboard)
        .unwrap_or_else(|| default_addr.into());

    let key = files::read_secret_key(&dir.join("node.key"))?;
    let credential = files::read_credential_of(&cert, slicefed_trust::objects::Kind::NodeCert)?
        .to_bytes()
        .context("re-encoding the node certificate")?;
    let policy = files::read_policy(&trust)?;
    if advert_interval == 0 {
        bail!("--advert-interval must be at least 1s");
    }
    if witnesses == 0 {
        bail!("--witnesses must be at least 1");
    }
    let mut config = NodeConfig::new(key, credential, policy, dir.clone());
    config.cache_dir = a.cache.or(c.cache);
    config.listen = listen.iter().map(|s| addr(s)).collect::<Result<_>>()?;
    let address_or_off = |flag: &str, at: &str| -> Result<Option<std::net::SocketAddr>> {
        match at {
            "off" => Ok(None),
            at => Ok(Some(at.parse().map_err(|e| {
                anyhow!("--{flag} `{at}`: not an address like 127.0.0.1:9464, nor `off` ({e})")
            })?)),
        }
    };
    config.metrics = address_or_off("metrics", &metrics)?;
    config.dashboard = address_or_off("dashboard", &dashboard)?;
    config.bootstrap = bootstrap
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| addr(s))
        .collect::<Result<_>>()?;
    config.advert_interval = std::time::Duration::from_secs(advert_interval);
    config.capacity = Capacity {
        max_slivers,
        memory,
        default_sliver_memory: 64 << 20,
    };
    config.witnesses = witnesses;
    config.test_equivocate = a.test_equivocate;
    config.restore = restore;
    config.replica_quota = replica_quota;
    config.replicas_quota = replicas_quota;
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
        NodeCmd::Init {
            dir,
            config,
            name,
            json,
        } => {
            let from_config = match &config {
                Some(path) => RunConfig::load(path)?.dir,
                None => None,
            };
            let dir = dir
                .or(from_config)
                .ok_or_else(|| anyhow!("no node directory: give --dir or `dir` in --config"))?;
            (dir, name, json)
        }
        NodeCmd::Run(a) => return run(*a),
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
