//! `slice create|status|logs|renew|delete`: a slice is a set of tickets this client fans out
//! to nodes. There is no slice registry: status asks the nodes, which know only slivers.

use crate::files::read_bounded;
use crate::trust_cmds::{GrantFlags, issue_ticket};
use crate::util::{now, parse_duration, print_json, say};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use libp2p::Multiaddr;
use serde::Serialize;
use serde_json::json;
use slicefed_peer::client;
use slicefed_peer::node::MemberRow;
use slicefed_peer::wire::{HolderAction, HolderRequest, NodeStatus, Request, Response};
use slicefed_trust::objects::{self, NodeReceipt};
use slicefed_trust::{Invocation, NodeSet, PublicKey};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Largest module sent.
const MAX_MODULE_BYTES: usize = 15 << 20;
/// How long to wait for nodes.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Subcommand)]
pub enum SliceCmd {
    /// Deploy a module as a slice: a ticket to each chosen node, each answering with a
    /// signed receipt (running, or refused with its reason).
    Create(CreateArgs),
    /// Slivers of a slice on every node, with expiry and usage.
    Status(StatusArgs),
    /// A sliver's captured output.
    Logs(LogsArgs),
    /// Extend a slice's life with a new ticket to every node running it.
    Renew(RenewArgs),
    /// Stop a slice everywhere, nodes that are down included: one delete signed by the holder, which every node keeps and a returning node reconciles before it restores anything.
    Delete(StatusArgs),
}

#[derive(Args)]
pub struct Who {
    /// The researcher's key (for create, renew, delete).
    #[arg(long, env = "SLICEFED_KEY")]
    key: Option<PathBuf>,
    /// The researcher's certificate (or delegation) file (for create, renew).
    #[arg(long, env = "SLICEFED_CERT")]
    cert: Option<PathBuf>,
    /// A node to ask for the member list (multiaddr with /p2p/PEERID).
    #[arg(long, env = "SLICEFED_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<String>,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The slice name (e.g. princeton.codeen).
    name: String,
    #[arg(long)]
    module: PathBuf,
    /// Send this ticket (from `ticket issue`) instead of issuing one.
    #[arg(long)]
    ticket: Option<PathBuf>,
    /// `all`, a number of nodes (the least loaded), or PeerIds separated by commas.
    #[arg(long, default_value = "all")]
    nodes: String,
    #[command(flatten)]
    who: Who,
    #[command(flatten)]
    grant: GrantFlags,
    #[arg(long, value_parser = parse_duration, default_value = "14d")]
    valid_for: u64,
    /// Environment variables K=V given to every sliver.
    #[arg(long = "env", value_parser = crate::util::parse_env)]
    env: Vec<(String, String)>,
    #[arg(long)]
    json: bool,
    /// Arguments given to every sliver.
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Args)]
pub struct StatusArgs {
    name: String,
    #[command(flatten)]
    who: Who,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    name: String,
    /// The node (PeerId or name).
    #[arg(long = "node")]
    on: String,
    #[command(flatten)]
    who: Who,
    /// Keep printing new output.
    #[arg(long)]
    follow: bool,
}

#[derive(Args)]
pub struct RenewArgs {
    name: String,
    #[arg(long, value_parser = parse_duration)]
    valid_for: u64,
    /// The module the slice runs (the renewal ticket names it again).
    #[arg(long)]
    module: PathBuf,
    #[command(flatten)]
    who: Who,
    #[command(flatten)]
    grant: GrantFlags,
    #[arg(long)]
    json: bool,
    /// Environment variables the slivers run with (as given at creation: the renewal
    /// signs them again).
    #[arg(long = "env", value_parser = crate::util::parse_env)]
    env: Vec<(String, String)>,
    /// Arguments the slivers run with (as given at creation).
    #[arg(last = true)]
    args: Vec<String>,
}

impl Who {
    fn key(&self) -> Result<&PathBuf> {
        self.key
            .as_ref()
            .ok_or_else(|| anyhow!("no key: give --key or set SLICEFED_KEY"))
    }
    fn cert(&self) -> Result<&PathBuf> {
        self.cert
            .as_ref()
            .ok_or_else(|| anyhow!("no certificate: give --cert or set SLICEFED_CERT"))
    }
}

#[derive(Serialize)]
struct NodeResult {
    node: String,
    name: String,
    status: String,
    reason: String,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new()?)
}

/// The member list, from the first bootstrap node that answers. All are asked at once: a
/// researcher whose first bootstrap node is down should not wait out its timeout (in the
/// simulator that wait was the whole tail of slice creation).
pub fn members(bootstrap: &[String]) -> Result<Vec<MemberRow>> {
    let addrs = bootstrap
        .iter()
        .filter(|s| !s.is_empty())
        .map(|b| {
            b.parse::<Multiaddr>()
                .map_err(|e| anyhow!("`{b}` is not a multiaddr: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    if addrs.is_empty() {
        bail!("no node to ask: give --node or set SLICEFED_BOOTSTRAP");
    }
    runtime()?.block_on(async {
        let mut asked = tokio::task::JoinSet::new();
        for addr in addrs {
            asked.spawn(client::members(addr, Duration::from_secs(20)));
        }
        let mut last = anyhow!("no bootstrap node answered");
        // Dropping the set when one answers cancels the others.
        while let Some(answer) = asked.join_next().await {
            match answer {
                Ok(Ok(m)) => return Ok(m),
                Ok(Err(e)) => last = e.into(),
                Err(e) => last = anyhow!("asking a bootstrap node failed: {e}"),
            }
        }
        Err(last)
    })
}

fn dial_addr(m: &MemberRow) -> Result<Multiaddr> {
    m.addrs
        .iter()
        .find_map(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("no known address for node {} ({})", m.name, m.peer_id))
}

fn bar(n: usize, quiet: bool, what: &str) -> ProgressBar {
    let b = ProgressBar::with_draw_target(
        Some(n as u64),
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(what.to_string());
    b
}

/// Sends one request per node and collects the answers in node order.
fn fan_out(
    targets: &[MemberRow],
    make: impl Fn(&MemberRow) -> Result<Request>,
    quiet: bool,
    what: &str,
) -> Result<Vec<Result<Response, String>>> {
    let mut answers: Vec<Result<Response, String>> = (0..targets.len())
        .map(|_| Err("not asked".into()))
        .collect();
    let mut calls = vec![];
    let mut index = vec![];
    for (i, m) in targets.iter().enumerate() {
        match dial_addr(m).and_then(|a| Ok((a, make(m)?))) {
            Ok(c) => {
                calls.push(c);
                index.push(i);
            }
            Err(e) => {
                if let Some(a) = answers.get_mut(i) {
                    *a = Err(e.to_string());
                }
            }
        }
    }
    let pb = bar(calls.len(), quiet, what);
    runtime()?.block_on(client::call_all(calls, TIMEOUT, |k, r| {
        pb.inc(1);
        if let Some(i) = index.get(k)
            && let Some(a) = answers.get_mut(*i)
        {
            *a = r;
        }
    }))?;
    pb.finish_and_clear();
    Ok(answers)
}

fn choose(members: Vec<MemberRow>, nodes: &str) -> Result<Vec<MemberRow>> {
    if nodes == "all" {
        return Ok(members);
    }
    if let Ok(n) = nodes.parse::<usize>() {
        if n == 0 || n > members.len() {
            bail!("--nodes {n}: the federation has {} nodes", members.len());
        }
        let mut m = members;
        m.sort_by_key(|r| (r.slivers, std::cmp::Reverse(r.free_memory), r.name.clone()));
        m.truncate(n);
        return Ok(m);
    }
    let mut chosen = vec![];
    for p in nodes.split(',').filter(|s| !s.is_empty()) {
        let m = members
            .iter()
            .find(|m| m.peer_id == p || m.name == p)
            .ok_or_else(|| anyhow!("node {p} is not a member the bootstrap node knows"))?;
        chosen.push(m.clone());
    }
    Ok(chosen)
}

/// Opens a receipt and checks it is the node's, for this ticket.
fn read_receipt(
    bytes: &[u8],
    node: &MemberRow,
    ticket: &slicefed_trust::CertId,
) -> (String, String) {
    let opened = objects::open::<NodeReceipt>(bytes);
    match opened {
        Ok(r) if r.signer.peer_id() != node.peer_id => (
            "error".into(),
            "the receipt is signed by another key than the node's".into(),
        ),
        Ok(r) if &r.body.ticket != ticket => {
            ("error".into(), "the receipt is for another ticket".into())
        }
        Ok(r) if r.body.admitted => ("running".into(), String::new()),
        Ok(r) => ("refused".into(), r.body.reason),
        Err(e) => ("error".into(), format!("bad receipt: {e}")),
    }
}

/// Each node's answer to a ticket: `admitted` (its word for an admitted receipt), refused
/// with the node's reason, an error, or unreachable.
fn receipt_results(
    targets: &[MemberRow],
    answers: Vec<Result<Response, String>>,
    ticket: &slicefed_trust::CertId,
    admitted: &str,
) -> Vec<NodeResult> {
    targets
        .iter()
        .zip(answers)
        .map(|(m, ans)| {
            let (status, reason) = match ans {
                Ok(Response::Receipt(r)) => {
                    let (s, why) = read_receipt(&r, m, ticket);
                    (if s == "running" { admitted.into() } else { s }, why)
                }
                Ok(Response::Error(e)) => ("error".into(), e),
                Ok(_) => ("error".into(), "unexpected answer".into()),
                Err(e) => ("unreachable".into(), e),
            };
            NodeResult {
                node: m.peer_id.clone(),
                name: m.name.clone(),
                status,
                reason,
            }
        })
        .collect()
}

fn report(slice: &str, results: Vec<NodeResult>, json: bool, verb: &str) -> Result<ExitCode> {
    let ok = results
        .iter()
        .filter(|r| r.status == "running" || r.status == "renewed" || r.status == "deleted")
        .count();
    let all = results.len();
    if json {
        print_json(&json!({ "slice": slice, "nodes": results }))?;
    } else {
        for r in &results {
            if r.reason.is_empty() {
                say!("{:<24} {:<54} {}", r.name, r.node, r.status);
            } else {
                say!("{:<24} {:<54} {}: {}", r.name, r.node, r.status, r.reason);
            }
        }
        say!("slice {slice}: {verb} on {ok} of {all} nodes");
    }
    Ok(if ok == all && all > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

struct TicketFile {
    id: slicefed_trust::CertId,
    file: Vec<u8>,
}

fn create(a: CreateArgs) -> Result<ExitCode> {
    let module = read_bounded(&a.module, MAX_MODULE_BYTES)?;
    // Every file is judged before the network is asked anything.
    let given_ticket = match &a.ticket {
        Some(path) => Some(crate::files::read_credential_of(
            path,
            slicefed_trust::objects::Kind::SliceTicket,
        )?),
        None => {
            crate::files::read_secret_key(a.who.key()?)?;
            crate::files::read_opened(a.who.cert()?)?;
            None
        }
    };
    let members = members(&a.who.bootstrap)?;
    let targets = choose(members, &a.nodes)?;
    let keys: Vec<PublicKey> = targets
        .iter()
        .map(|m| PublicKey::parse(&m.peer_id))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("a member's peer id: {e}"))?;
    let ticket = match given_ticket {
        Some(cred) => {
            // Nodes refuse arguments the ticket does not sign: say so before asking them.
            // (Signatures are the nodes' to judge: each refuses a forgery with its reason.)
            let signed = objects::decode_envelope(cred.leaf())
                .and_then(|e| objects::decode_body::<objects::SliceTicket>(&e))
                .map(|t| t.invocation);
            if let Ok(signed) = signed
                && Invocation::new(a.args.clone(), a.env.clone()).hash() != signed
            {
                bail!(
                    "the arguments and --env given are not the ones the ticket signs (give the ones it was issued with)"
                );
            }
            TicketFile {
                id: slicefed_trust::CertId::of(cred.leaf()),
                file: cred.to_bytes().context("re-encoding the ticket")?,
            }
        }
        None => {
            let t = issue_ticket(
                a.who.key()?,
                a.who.cert()?,
                &a.name,
                &module,
                &Invocation::new(a.args.clone(), a.env.clone()),
                NodeSet::only(keys),
                &a.grant,
                a.valid_for,
            )?;
            TicketFile {
                id: t.id,
                file: t.file,
            }
        }
    };
    let answers = fan_out(
        &targets,
        |_| {
            Ok(Request::Submit {
                credential: ticket.file.clone(),
                module: module.clone(),
                args: a.args.clone(),
                env: a.env.clone(),
            })
        },
        a.json,
        &format!("creating {}", a.name),
    )?;
    let results = receipt_results(&targets, answers, &ticket.id, "running");
    report(&a.name, results, a.json, "running")
}

/// Every node's status for the slice (nodes that run none of it are left out).
pub fn statuses(
    bootstrap: &[String],
    slice: &str,
    quiet: bool,
) -> Result<Vec<(MemberRow, Result<NodeStatus, String>)>> {
    let members = members(bootstrap)?;
    let answers = fan_out(
        &members,
        |_| {
            Ok(Request::Status {
                slice: Some(slice.to_string()),
            })
        },
        quiet,
        "asking nodes",
    )?;
    Ok(members
        .into_iter()
        .zip(answers)
        .map(|(m, a)| {
            let s = match a {
                Ok(Response::Status(s)) => Ok(s),
                Ok(Response::Error(e)) | Err(e) => Err(e),
                Ok(_) => Err("unexpected answer".into()),
            };
            (m, s)
        })
        .collect())
}

fn status(a: StatusArgs) -> Result<ExitCode> {
    let all = statuses(&a.who.bootstrap, &a.name, a.json)?;
    let mut nodes = vec![];
    let mut expires = 0u64;
    let mut unreachable = vec![];
    for (m, s) in all {
        match s {
            Ok(s) => {
                for sl in s.slivers {
                    if sl.state == "running" {
                        expires = expires.max(sl.expires);
                    }
                    nodes.push(json!({
                        "node": m.peer_id, "name": m.name, "sliver": sl.id, "status": sl.state,
                        "cpu": sl.cpu_ms, "memory": sl.memory, "flows": sl.flows,
                        "bytes_out": sl.bytes_out, "bytes_in": sl.bytes_in,
                        "user": sl.user, "expires": sl.expires,
                    }));
                }
            }
            Err(e) => unreachable.push(json!({"node": m.peer_id, "name": m.name, "error": e})),
        }
    }
    let expires_text = if expires == 0 {
        "-".to_string()
    } else {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(expires))
            .to_string()
    };
    if a.json {
        print_json(
            &json!({ "slice": a.name, "expires": expires_text, "nodes": nodes, "unreachable": unreachable }),
        )?;
    } else {
        let running = nodes.iter().filter(|n| n["status"] == "running").count();
        say!(
            "slice {}: {running} sliver(s) running, expires {expires_text}",
            a.name
        );
        for n in &nodes {
            say!(
                "{:<24} sliver {:>4}  {:<28} cpu {:>6} ms  mem {:>6} KiB  flows {:>4}  out {:>8} B",
                n["name"].as_str().unwrap_or(""),
                n["sliver"],
                n["status"].as_str().unwrap_or(""),
                n["cpu"],
                n["memory"].as_u64().unwrap_or(0) >> 10,
                n["flows"],
                n["bytes_out"]
            );
        }
        for u in &unreachable {
            say!(
                "{:<24} unreachable: {}",
                u["name"].as_str().unwrap_or(""),
                u["error"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn logs(a: LogsArgs) -> Result<ExitCode> {
    let members = members(&a.who.bootstrap)?;
    let m = members
        .iter()
        .find(|m| m.peer_id == a.on || m.name == a.on)
        .ok_or_else(|| anyhow!("node {} is not a member the bootstrap node knows", a.on))?;
    let addr = dial_addr(m)?;
    // Output is the researcher's (and the node owner's): the request is signed.
    let key = crate::files::read_secret_key(a.who.key()?)?;
    let node = PublicKey::parse(&m.peer_id).map_err(|e| anyhow!("{}: {e}", m.name))?;
    let rt = runtime()?;
    let mut shown: Vec<usize> = vec![];
    loop {
        let asked = HolderRequest::sign_action(&key, node, &a.name, now(), HolderAction::ReadLogs)
            .context("signing the request")?;
        let r = rt.block_on(client::call(addr.clone(), Request::Logs(asked), TIMEOUT))?;
        let logs = match r {
            Response::Logs(logs) => logs,
            Response::Error(why) => bail!("{}: {why}", m.name),
            _ => bail!("{}: unexpected answer", m.name),
        };
        if logs.is_empty() && !a.follow {
            bail!("no sliver of slice {} on {}", a.name, m.name);
        }
        for (i, l) in logs.iter().enumerate() {
            if shown.len() <= i {
                shown.push(0);
            }
            let from = shown.get(i).copied().unwrap_or(0).min(l.stdout.len());
            let text = String::from_utf8_lossy(l.stdout.get(from..).unwrap_or_default());
            print!("{text}");
            if !a.follow {
                let err = String::from_utf8_lossy(&l.stderr);
                eprint!("{err}");
            }
            if let Some(s) = shown.get_mut(i) {
                *s = l.stdout.len();
            }
        }
        if !a.follow {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn renew(a: RenewArgs) -> Result<ExitCode> {
    let module = read_bounded(&a.module, MAX_MODULE_BYTES)?;
    let running: Vec<MemberRow> = statuses(&a.who.bootstrap, &a.name, a.json)?
        .into_iter()
        .filter(|(_, s)| {
            s.as_ref()
                .is_ok_and(|s| s.slivers.iter().any(|x| x.state == "running"))
        })
        .map(|(m, _)| m)
        .collect();
    if running.is_empty() {
        bail!("no node runs slice {}", a.name);
    }
    let keys: Vec<PublicKey> = running
        .iter()
        .map(|m| PublicKey::parse(&m.peer_id))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("a member's peer id: {e}"))?;
    // The renewal's ticket replaces the slivers' ticket: it signs the same module and the
    // same arguments and environment (nodes refuse a renewal that changes them).
    let ticket = issue_ticket(
        a.who.key()?,
        a.who.cert()?,
        &a.name,
        &module,
        &Invocation::new(a.args.clone(), a.env.clone()),
        NodeSet::only(keys),
        &a.grant,
        a.valid_for,
    )?;
    let answers = fan_out(
        &running,
        |_| {
            Ok(Request::Renew {
                credential: ticket.file.clone(),
            })
        },
        a.json,
        &format!("renewing {}", a.name),
    )?;
    let results = receipt_results(&running, answers, &ticket.id, "renewed");
    report(&a.name, results, a.json, "renewed")
}

fn delete(a: StatusArgs) -> Result<ExitCode> {
    // The tickets the up nodes run it under are named; every ticket of it issued until now
    // is ended too (renewals a down node never saw included). Nodes that are down now
    // reconcile the delete from their peers before they restore anything.
    let (members, statuses): (Vec<MemberRow>, Vec<_>) =
        statuses(&a.who.bootstrap, &a.name, a.json)?
            .into_iter()
            .unzip();
    let mut tickets: Vec<slicefed_trust::objects::CertId> = statuses
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .flat_map(|s| s.slivers.iter().filter_map(|x| parse_cert_id(&x.ticket)))
        .collect();
    tickets.sort();
    tickets.dedup();
    let delete = crate::trust_cmds::issue_delete(a.who.key()?, a.who.cert()?, &a.name, tickets)?;
    let answers = fan_out(
        &members,
        |_| {
            Ok(Request::Revoke {
                revocation: delete.file.clone(),
            })
        },
        a.json,
        &format!("deleting {}", a.name),
    )?;
    let mut results = vec![];
    let (mut stopped_total, mut held, mut refused) = (0, 0, 0);
    for (m, ans) in members.iter().zip(answers) {
        let (status, reason) = match ans {
            Ok(Response::Stopped(ids)) => {
                held += 1;
                if ids.is_empty() {
                    continue;
                }
                stopped_total += ids.len();
                (
                    "deleted".to_string(),
                    format!("{} sliver(s) stopped", ids.len()),
                )
            }
            Ok(Response::Error(e)) => {
                refused += 1;
                ("error".into(), e)
            }
            Ok(_) => {
                refused += 1;
                ("error".into(), "unexpected answer".into())
            }
            // The node takes the delete from its peers (gossip, or its catch-up when it
            // returns) before it runs anything again.
            Err(e) => (
                "pending".into(),
                format!("{e}; it takes the delete from its peers"),
            ),
        };
        results.push(NodeResult {
            node: m.peer_id.clone(),
            name: m.name.clone(),
            status,
            reason,
        });
    }
    let id = delete.id.to_string();
    if a.json {
        print_json(&json!({ "slice": a.name, "delete": id, "held_by": held,
            "stopped": stopped_total, "nodes": results }))?;
    } else {
        for r in &results {
            say!("{:<24} {:<54} {}: {}", r.name, r.node, r.status, r.reason);
        }
        say!(
            "slice {}: {stopped_total} sliver(s) stopped; the delete ({}) is held by {held} of {} nodes and reaches the others from them, those that are down included",
            a.name,
            id.get(..16).unwrap_or(&id),
            members.len()
        );
    }
    Ok(if held > 0 && refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A ticket id as status answers print it (64 hex digits).
fn parse_cert_id(hex: &str) -> Option<slicefed_trust::objects::CertId> {
    let mut id = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(slicefed_trust::objects::CertId(id))
}

pub fn slice(cmd: SliceCmd) -> Result<ExitCode> {
    match cmd {
        SliceCmd::Create(a) => create(a),
        SliceCmd::Status(a) => status(a),
        SliceCmd::Logs(a) => logs(a),
        SliceCmd::Renew(a) => renew(a),
        SliceCmd::Delete(a) => delete(a),
    }
}

#[derive(Args)]
pub struct PublishArgs {
    /// The revocation (from `authority revoke`).
    revocation: PathBuf,
    /// Nodes to hand it to (multiaddr with /p2p/PEERID), three at a time until one takes
    /// it; that one gossips it to all.
    #[arg(long, env = "SLICEFED_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<String>,
    #[arg(long)]
    json: bool,
}

/// Bootstrap nodes a revocation is handed to at once: one that hangs or dies mid-way must
/// not hold a revocation back (the first to take it gossips it to all; the others' copies
/// are duplicates gossip drops).
const PUBLISH_AT_ONCE: usize = 3;
/// Once one node took it, how long the others of its batch are still waited for (so the
/// requests on their way are delivered, not cut off, and their answers are reported).
const PUBLISH_GRACE: Duration = Duration::from_secs(2);

/// Hands a revocation to nodes, [`PUBLISH_AT_ONCE`] at a time, until one takes it; a node
/// that takes it honours it and gossips it to the federation. Each node's answer is
/// reported: one node's refusal (its owner's policy) is not the federation's.
pub fn publish(a: PublishArgs) -> Result<ExitCode> {
    let cred =
        crate::files::read_credential_of(&a.revocation, slicefed_trust::objects::Kind::Revocation)?;
    let revocation = cred.to_bytes()?;
    let mut addrs = vec![];
    for b in a.bootstrap.iter().filter(|s| !s.is_empty()) {
        let addr: Multiaddr = b
            .parse()
            .map_err(|e| anyhow!("`{b}` is not a multiaddr: {e}"))?;
        addrs.push((b.clone(), addr));
    }
    if addrs.is_empty() {
        bail!("no node to hand it to: give --bootstrap or set SLICEFED_BOOTSTRAP");
    }
    let rt = runtime()?;
    // What each node said: (node, "took" / "refused" / "failed", detail).
    let mut said: Vec<(String, &str, String)> = vec![];
    for batch in addrs.chunks(PUBLISH_AT_ONCE) {
        let calls = batch
            .iter()
            .map(|(_, addr)| {
                let req = Request::Revoke {
                    revocation: revocation.clone(),
                };
                (addr.clone(), req)
            })
            .collect();
        let open = rt.block_on(client::call_until(
            calls,
            TIMEOUT,
            PUBLISH_GRACE,
            |i, answer| {
                let shown = batch.get(i).map_or("?", |(b, _)| b.as_str()).to_string();
                let (status, detail) = match answer {
                    Ok(Response::Stopped(ids)) => {
                        ("took", format!("{} sliver(s) stopped there", ids.len()))
                    }
                    Ok(Response::Error(why)) => ("refused", why),
                    Ok(_) => ("failed", "unexpected answer".to_string()),
                    Err(e) => ("failed", e),
                };
                said.push((shown, status, detail));
                status == "took"
            },
        ))?;
        let unanswered: Vec<&str> = open
            .iter()
            .filter_map(|i| batch.get(*i).map(|(b, _)| b.as_str()))
            .collect();
        let Some((node, _, detail)) = said.iter().find(|(_, s, _)| *s == "took") else {
            continue;
        };
        if a.json {
            let nodes: Vec<_> = said
                .iter()
                .map(|(n, s, d)| json!({ "node": n, "status": s, "detail": d }))
                .collect();
            print_json(&json!({
                "published": true,
                "node": node,
                "nodes": nodes,
                "unanswered": unanswered,
            }))?;
        } else {
            say!("revocation handed to {node} ({detail}); it gossips it on");
            for (n, s, d) in said.iter().filter(|(n, _, _)| n != node) {
                say!("  {n}: {s}: {d}");
            }
            for n in &unanswered {
                say!("  {n}: no answer yet");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let each: Vec<String> = said
        .iter()
        .map(|(n, s, d)| format!("{n} {s}: {d}"))
        .collect();
    bail!("no node took the revocation ({})", each.join("; "))
}
