//! `sliver run`: one sliver, locally, no overlay.

use crate::files::{self, read_bounded};
use crate::util::{now, parse_duration, parse_size};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use slicefed_ledger::entry::{Attribution, EntryBody, Usage as LedgerUsage};
use slicefed_ledger::{Ledger, LedgerOptions};
use slicefed_sandbox::{
    LedgerFlows, NoFlows, Outcome, Sandbox, SandboxConfig, SliverSpec, Stdio, net::FlowSink,
};
use slicefed_trust::caps::{ConnectRule, ListenRule, NetworkRights, RuleSet};
use slicefed_trust::{ModuleHash, Name, SecretKey};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Largest module accepted.
const MAX_MODULE_BYTES: usize = 256 << 20;

#[derive(Subcommand)]
pub enum SliverCmd {
    /// Run one sliver locally; its stdout and stderr are this command's, its exit status
    /// is the guest's (or 1 with the reason it was stopped).
    Run(RunArgs),
    /// Write an example sliver to start from: `prober` (connects to ADDR every INTERVAL_MS
    /// milliseconds, COUNT times or forever with 0, and logs each outcome) or `hello`
    /// (prints its arguments and environment).
    Example {
        /// `prober` or `hello`.
        #[arg(value_parser = ["prober", "hello"])]
        name: String,
        /// Where to write the module (an existing file is not overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// The WASI component to run.
    module: PathBuf,
    /// Memory cap over all its memories and tables.
    #[arg(long, value_parser = parse_size, default_value = "128MiB")]
    memory: u64,
    /// CPU weight.
    #[arg(long, default_value_t = 1)]
    cpu_share: u32,
    /// Allowed outgoing connections: tcp|udp:ADDR/PREFIX:PORTS.
    #[arg(long, value_parser = ConnectRule::parse)]
    connect: Vec<ConnectRule>,
    /// Allowed listening ports: tcp|udp:PORTS.
    #[arg(long, value_parser = ListenRule::parse)]
    listen: Vec<ListenRule>,
    /// Environment variables K=V.
    #[arg(long = "env", value_parser = crate::util::parse_env)]
    env: Vec<(String, String)>,
    /// Egress cap per day over all TCP flows (e.g. 10GB).
    #[arg(long, value_parser = parse_size)]
    egress_daily: Option<u64>,
    /// Wall-clock lifetime.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<u64>,
    /// CPU time limit.
    #[arg(long, value_parser = parse_duration)]
    cpu_limit: Option<u64>,
    /// Record lifecycle and flows in a ledger in DIR (key DIR/node.key, made if missing).
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// The slice name recorded in the ledger.
    #[arg(long, default_value = "local.run")]
    slice: String,
    /// Arguments for the guest.
    #[arg(last = true)]
    args: Vec<String>,
}

fn ledger_key(dir: &Path) -> Result<SecretKey> {
    let path = dir.join("node.key");
    if path.exists() {
        return files::read_secret_key(&path);
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    let k = SecretKey::generate()?;
    files::write_secret_key(&path, &k)?;
    Ok(k)
}

pub fn sliver(cmd: SliverCmd) -> Result<ExitCode> {
    let a = match cmd {
        SliverCmd::Run(a) => a,
        SliverCmd::Example { name, out } => {
            let bytes = match name.as_str() {
                "hello" => slicefed_sandbox::guests::HELLO,
                _ => slicefed_sandbox::guests::PROBER,
            };
            files::write_atomic(&out, bytes, 0o644, false)?;
            crate::util::say!(
                "wrote {} ({} bytes, module hash {})",
                out.display(),
                bytes.len(),
                hex::encode(ModuleHash::of(bytes).0)
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    let module = read_bounded(&a.module, MAX_MODULE_BYTES)?;
    let slice = Name::parse(&a.slice)?;
    if a.cpu_share == 0 {
        bail!("--cpu-share must be at least 1");
    }
    let who = Attribution {
        slice,
        sliver: 1,
        user: std::env::var("USER")
            .ok()
            .and_then(|u| Name::parse(&format!("local.{u}")).ok()),
        authority: None,
    };
    let ledger = match &a.ledger {
        Some(dir) => {
            let key = ledger_key(dir)?;
            Some(Arc::new(
                Ledger::open(&dir.join("ledger"), key, LedgerOptions::default())
                    .with_context(|| format!("{}: cannot open the ledger", dir.display()))?,
            ))
        }
        None => None,
    };
    let cache = std::env::temp_dir().join(format!("slicefed-cache-{}", user_tag()));
    let mut config = SandboxConfig::new(&cache);
    config.max_slivers = 4;
    config.max_memory_per_sliver = a.memory.max(1 << 20);
    let sandbox = Sandbox::new(config).map_err(|e| anyhow!("{e}"))?;
    let compiled = sandbox
        .compile(&module)
        .map_err(|e| anyhow!("{}: {e}", a.module.display()))?;
    let flows: Arc<dyn FlowSink> = match &ledger {
        Some(l) => Arc::new(LedgerFlows::new(l.clone())),
        None => Arc::new(NoFlows),
    };
    if let Some(l) = &ledger {
        l.append(
            now() * 1000,
            EntryBody::OwnerAction {
                action: format!(
                    "sliver run of module {} ({})",
                    ModuleHash::of(&module),
                    a.module.display()
                ),
                who: Some(who.clone()),
            },
        )?;
    }
    let spec = SliverSpec {
        who: who.clone(),
        memory: a.memory,
        cpu_share: a.cpu_share,
        cpu_limit: a.cpu_limit.map(Duration::from_secs),
        lifetime: a.timeout.map(Duration::from_secs),
        network: NetworkRights {
            connect: RuleSet::Only(a.connect.clone()),
            listen: RuleSet::Only(a.listen.clone()),
            sensors: false,
        },
        egress_per_day: a.egress_daily,
        args: a.args.clone(),
        env: a.env.clone(),
        stdio: Stdio::Inherit,
        dir: None,
        flows: flows.clone(),
        // Whoever runs `sliver run` owns this machine: the destinations they name with
        // --connect are theirs to open, local ones included.
        host: Arc::new(std::sync::RwLock::new(slicefed_sandbox::HostRules {
            local_allow: a.connect.clone(),
            ..Default::default()
        })),
    };
    let handle = sandbox.spawn(compiled, spec).map_err(|e| anyhow!("{e}"))?;
    let outcome = handle.wait();
    let usage = handle.usage();
    if let Some(l) = &ledger {
        // Every flow reaches the ledger before the stop record.
        drop(flows);
        l.append(
            now() * 1000,
            EntryBody::SliverStopped {
                who,
                reason: outcome.to_string(),
                usage: LedgerUsage {
                    cpu_ns: usage.cpu.as_nanos() as u64,
                    peak_memory: usage.peak_memory,
                    bytes_in: usage.bytes_in,
                    bytes_out: usage.bytes_out,
                    flows: usage.flows_allowed + usage.flows_denied,
                },
            },
        )?;
        l.checkpoint()?;
    }
    match outcome {
        Outcome::Exited(0) => Ok(ExitCode::SUCCESS),
        Outcome::Exited(c) => Ok(ExitCode::from(u8::try_from(c).unwrap_or(1))),
        other => bail!("the sliver was stopped: {other}"),
    }
}

/// A per-user cache directory name: a hash of the home directory.
fn user_tag() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let h = slicefed_trust::ModuleHash::of(home.as_bytes()).to_hex();
    h.get(..12).unwrap_or_default().to_string()
}
