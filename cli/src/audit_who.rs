//! `audit who`, `audit verify` and `audit fetch`: from a connection a victim saw to the
//! person responsible, with evidence anyone can check offline.

use crate::audit_cmds::WhoArgs;
use crate::files::{read_bounded, read_policy, write_atomic};
use crate::util::{parse_time, print_json, say, show_time};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use slicefed_ledger::bundle::{BUNDLE_VERSION, MAX_BUNDLE_BYTES, ProofBundle};
use slicefed_ledger::checkpoint::{Cosignature, SignedCheckpoint};
use slicefed_ledger::entry::{Entry, EntryBody, FlowRecord};
use slicefed_ledger::records;
use slicefed_ledger::replay::{self, Depth};
use slicefed_ledger::source::LogSource;
use slicefed_peer::wire::Cosigned;
use slicefed_peer::witness::witnesses_of;
use slicefed_trust::PublicKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Flows within this much of `--at` match.
const AT_WINDOW_MS: u64 = 600_000;
/// Largest cosignature file read.
const MAX_COSIG_FILE: usize = 64 << 20;

/// Cosigned checkpoints kept next to a node's log (`DIR/cosignatures`).
fn cosigned_of(source: &Path) -> Vec<(SignedCheckpoint, Vec<Cosignature>)> {
    let path = source.join("cosignatures");
    let Ok(bytes) = read_bounded(&path, MAX_COSIG_FILE) else {
        return vec![];
    };
    let mut out: Vec<(SignedCheckpoint, Vec<Cosignature>)> = vec![];
    let mut off = 0;
    while let Ok((rec, next)) = records::parse_one(&bytes, off) {
        off = next;
        if let Ok(c) = Cosigned::from_bytes(rec.payload) {
            match out.iter_mut().find(|(cp, _)| *cp == c.checkpoint) {
                Some((_, v)) => {
                    if !v.iter().any(|x| x.witness == c.cosignature.witness) {
                        v.push(c.cosignature);
                    }
                }
                None => out.push((c.checkpoint, vec![c.cosignature])),
            }
        }
    }
    out
}

struct Found {
    bundle: ProofBundle,
}

fn search(
    src_path: &Path,
    a: &WhoArgs,
    at_ms: Option<u64>,
    gathered: &[(SignedCheckpoint, Vec<Cosignature>)],
) -> Result<Option<Found>> {
    let src = LogSource::load(src_path).with_context(|| src_path.display().to_string())?;
    if let Some(n) = &a.node
        && &src.origin.peer_id() != n
    {
        return Ok(None);
    }
    let (recs, _) = src.records();
    let r = replay::replay(src.origin, &recs, Depth::Full);
    // Only the verified prefix is evidence.
    let good = r.report.first_bad.unwrap_or(r.report.entries);
    let mut flow: Option<(u64, Vec<u8>, FlowRecord)> = None;
    let mut created: Vec<(u64, Vec<u8>, EntryBody)> = vec![];
    for (seq, rec) in r.entries.iter().enumerate() {
        let seq = seq as u64;
        if seq >= good {
            break;
        }
        let Ok(e) = Entry::decode(rec.payload) else {
            continue;
        };
        match &e.body {
            EntryBody::Flow(f) => {
                // The node's side as the victim saw it: its port, and its address when
                // the flow recorded one (a log of another node that happens to have a
                // flow to the same server from the same port is not evidence).
                let hit = f.remote == a.remote
                    && local_port(a).is_none_or(|p| f.local.port() == p)
                    && a.source
                        .is_none_or(|s| f.local.ip().is_unspecified() || f.local.ip() == s.ip())
                    && at_ms.is_none_or(|t| {
                        t + AT_WINDOW_MS >= f.first_ms && t <= f.last_ms + AT_WINDOW_MS
                    });
                if hit {
                    flow = Some((seq, rec.payload.to_vec(), f.clone()));
                }
            }
            EntryBody::SliverCreated { .. } => {
                created.push((seq, rec.payload.to_vec(), e.body.clone()));
            }
            _ => {}
        }
    }
    let Some((flow_seq, flow_leaf, f)) = flow else {
        return Ok(None);
    };
    let Some((created_seq, created_leaf, _)) = created.into_iter().rfind(|(s, _, b)| {
        *s < flow_seq
            && matches!(b, EntryBody::SliverCreated { who, .. }
                    if who.slice == f.who.slice && who.sliver == f.who.sliver)
    }) else {
        bail!(
            "{}: the flow's sliver {} of {} has no SliverCreated entry before it",
            src_path.display(),
            f.who.sliver,
            f.who.slice
        );
    };
    // The checkpoint covering both with the most witnesses (then the largest).
    let mut candidates: Vec<(SignedCheckpoint, Vec<Cosignature>)> =
        r.checkpoints.iter().map(|c| (c.clone(), vec![])).collect();
    candidates.extend(cosigned_of(src_path));
    candidates.extend(gathered.iter().cloned());
    let best = candidates
        .into_iter()
        .filter(|(c, _)| {
            c.checkpoint.origin == src.origin
                && c.checkpoint.size > flow_seq
                && c.checkpoint.size <= good
                && r.tree.root_at(c.checkpoint.size).ok() == Some(c.checkpoint.root)
        })
        .max_by_key(|(c, v)| (v.len(), c.checkpoint.size));
    let Some((checkpoint, cosignatures)) = best else {
        bail!(
            "{}: no signed checkpoint covers the flow yet (entry {flow_seq})",
            src_path.display()
        );
    };
    let size = checkpoint.checkpoint.size;
    let bundle = ProofBundle {
        version: BUNDLE_VERSION,
        flow_proof: r.tree.inclusion_proof(flow_seq, size)?,
        flow_leaf,
        created_proof: r.tree.inclusion_proof(created_seq, size)?,
        created_leaf,
        checkpoint,
        cosignatures,
    };
    Ok(Some(Found { bundle }))
}

pub fn who(a: WhoArgs) -> Result<ExitCode> {
    let at_ms =
        a.at.as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|e| anyhow!("--at: {e}"))?
            .map(|s| s * 1000);
    let mut found = None;
    let mut evidence_from = String::from("the logs given");
    if a.ledger.is_empty() {
        let (f, from) = search_federation(&a, at_ms)?;
        found = f;
        evidence_from = from;
    } else {
        for src in &a.ledger {
            if let Some(f) = search(src, &a, at_ms, &[])? {
                found = Some(f);
                break;
            }
        }
    }
    let Some(f) = found else {
        if a.json {
            print_json(&json!({ "found": false, "searched": evidence_from }))?;
        } else {
            say!("no flow to {} in {evidence_from}", a.remote);
        }
        return Ok(ExitCode::FAILURE);
    };
    // Nothing is printed as a finding before the bundle verifies against the auditor's
    // trust policy: the person named is the one the ticket chain proves, not what the
    // node wrote (a node can log a creation entry naming anyone).
    let policy = read_policy(&a.trust)?;
    let bytes = f.bundle.to_bytes()?;
    let facts = ProofBundle::from_bytes(&bytes)
        .and_then(|b| b.verify(&policy))
        .map_err(|e| {
            anyhow!(
                "the evidence found does not verify against {}: {e} (the node's log names a flow, but nothing it proves can be trusted)",
                a.trust.display()
            )
        })?;
    if let Some(out) = &a.bundle_out {
        write_atomic(out, &bytes, 0o644, true)?;
    }
    let flow = &facts.flow;
    let flow_json = json!({
        "proto": format!("{:?}", flow.proto).to_lowercase(), "local": flow.local.to_string(),
        "remote": flow.remote.to_string(), "bytes_out": flow.bytes_out, "bytes_in": flow.bytes_in,
        "first": show_time(flow.first_ms / 1000), "last": show_time(flow.last_ms / 1000),
    });
    if a.json {
        print_json(&json!({
            "found": true, "node": facts.node, "slice": facts.slice, "sliver": facts.sliver,
            "user": facts.user, "authority": facts.authority, "root": facts.root,
            "ticket": facts.ticket.to_hex(), "flow": flow_json,
            "witnesses": facts.witnesses, "bundle": a.bundle_out,
            "evidence_from": evidence_from, "invocation": facts.invocation,
        }))?;
    } else {
        say!(
            "{} -> {} at {} was sliver {} of slice {} on node {}",
            flow.local,
            flow.remote,
            show_time(flow.first_ms / 1000),
            facts.sliver,
            facts.slice,
            facts.node
        );
        say!(
            "responsible: {} of authority {} (root {}), {} witness cosignature(s)",
            facts
                .user
                .as_ref()
                .map_or("(no person)".into(), |u| u.to_string()),
            facts.authority,
            facts.root,
            facts.witnesses.len()
        );
        say!("{}", describe_invocation(&facts.invocation));
        say!("evidence from {evidence_from}");
        if let Some(out) = &a.bundle_out {
            say!(
                "proof bundle -> {} (anyone checks it with `slicefed audit verify`)",
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Most logs fetched for one complaint (each replayed in full).
const MAX_LOGS_FETCHED: usize = 8;

/// The node-side port to match: `--source`'s, else `--local-port`.
fn local_port(a: &WhoArgs) -> Option<u16> {
    a.source.map(|s| s.port()).or(a.local_port)
}

/// `audit who` with no node files: the federation names the node that holds `--source`'s
/// address (members, and members that left in the last two days), and its log comes from
/// it or from its witnesses, with their cosignatures. Returns what was found and where the
/// evidence came from.
fn search_federation(a: &WhoArgs, at_ms: Option<u64>) -> Result<(Option<Found>, String)> {
    if a.bootstrap.is_empty() {
        bail!("give --ledger with node directories, or --bootstrap to ask the federation");
    }
    let Some(source) = a.source else {
        bail!(
            "--source (the address and port the connection came from) is needed to ask the federation"
        );
    };
    let scratch = tempfile::tempdir()?;
    let mut tried: Vec<String> = vec![];
    let mut searched: Vec<String> = vec![];
    // The bootstrap node's answer first; if none of those logs holds the flow (it knew
    // nothing, or it lies), what other members say too.
    // However the members answer, one complaint's search ends (each log has its own
    // deadline too).
    let search_deadline = std::time::Instant::now() + 2 * crate::audit_net::FETCH_DEADLINE;
    for wide in [false, true] {
        let mut holders = crate::audit_net::holders(&a.bootstrap, source.ip(), wide)?;
        if let Some(n) = &a.node {
            holders.retain(|h| &h.peer_id == n);
        }
        holders.retain(|h| !searched.contains(&h.peer_id));
        for h in holders.iter().take(MAX_LOGS_FETCHED) {
            if std::time::Instant::now() > search_deadline {
                tried.push("the search ran out of time".into());
                break;
            }
            searched.push(h.peer_id.clone());
            let fetched = match crate::audit_net::fetch_log(&a.bootstrap, h, scratch.path()) {
                Ok(f) => f,
                Err(e) => {
                    tried.push(format!("{}: {e:#}", h.peer_id));
                    continue;
                }
            };
            let from = format!("{} (log of {})", fetched.from, h.peer_id);
            // A log that does not load is skipped, not fatal: a lying member may send one.
            match search(&fetched.file, a, at_ms, &fetched.cosigned) {
                Ok(Some(f)) => return Ok((Some(f), from)),
                Ok(None) => tried.push(format!("{}: no matching flow in its log", h.peer_id)),
                Err(e) => tried.push(format!("{}: {e:#}", h.peer_id)),
            }
        }
    }
    if searched.is_empty() {
        bail!(
            "no member of the federation listens on {}, or did in the last two days",
            source.ip()
        );
    }
    if tried
        .iter()
        .all(|t| t.ends_with("no matching flow in its log"))
    {
        return Ok((None, format!("the logs of {}", searched.join(", "))));
    }
    bail!("{}", tried.join("; "))
}

pub fn verify(path: &Path, trust: &Path, json: bool) -> Result<ExitCode> {
    let policy = read_policy(trust)?;
    let bytes = read_bounded(path, MAX_BUNDLE_BYTES)?;
    let result = ProofBundle::from_bytes(&bytes).and_then(|b| b.verify(&policy));
    match result {
        Ok(f) => {
            if json {
                print_json(&json!({
                    "valid": true, "node": f.node, "slice": f.slice, "sliver": f.sliver,
                    "user": f.user, "authority": f.authority, "root": f.root,
                    "ticket": f.ticket.to_hex(), "witnesses": f.witnesses,
                    "invocation": f.invocation,
                    "flow": { "local": f.flow.local.to_string(), "remote": f.flow.remote.to_string(),
                              "bytes_out": f.flow.bytes_out, "bytes_in": f.flow.bytes_in },
                    "reason": "",
                }))?;
            } else {
                say!(
                    "valid: {} -> {} by sliver {} of {} on {}; responsible {} of {} (root {}), {} witness(es)",
                    f.flow.local,
                    f.flow.remote,
                    f.sliver,
                    f.slice,
                    f.node,
                    f.user
                        .as_ref()
                        .map_or("(no person)".into(), |u| u.to_string()),
                    f.authority,
                    f.root,
                    f.witnesses.len()
                );
                say!("{}", describe_invocation(&f.invocation));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                print_json(&json!({ "valid": false, "reason": e.to_string() }))?;
                Ok(ExitCode::FAILURE)
            } else {
                Err(anyhow!("{}: {e}", path.display()))
            }
        }
    }
}

pub fn fetch(origin: &str, bootstrap: &[String], out: &PathBuf, json: bool) -> Result<ExitCode> {
    let origin_key = PublicKey::parse(origin).map_err(|e| anyhow!("--origin: {e}"))?;
    let members = crate::slice_cmds::members(bootstrap)?;
    // Its witnesses first (as the live members compute them), then everyone else.
    let keys: Vec<PublicKey> = members
        .iter()
        .filter_map(|m| PublicKey::parse(&m.peer_id).ok())
        .collect();
    let first = witnesses_of(&origin_key, &keys, keys.len());
    let rt = tokio::runtime::Runtime::new()?;
    let mut last = anyhow!("no member holds a replica of {origin}");
    for w in first {
        let Some(m) = members.iter().find(|m| m.peer_id == w.peer_id()) else {
            continue;
        };
        let Some(addr) = crate::audit_net::dial(m) else {
            continue;
        };
        let deadline = std::time::Instant::now() + crate::audit_net::FETCH_DEADLINE;
        let file = match crate::audit_net::replica_from(&rt, &addr, origin_key, deadline) {
            Ok(f) => f,
            Err(e) => {
                last = e.context(m.name.clone());
                continue;
            }
        };
        write_atomic(out, &file, 0o644, true)?;
        let src = LogSource::load(out)?;
        if src.origin != origin_key {
            last = anyhow!("{}: sent a replica of another log", m.name);
            continue;
        }
        let r = src.replay();
        if !r.valid {
            last = anyhow!(
                "{}: its replica does not verify: {}",
                m.name,
                r.error.unwrap_or_default()
            );
            continue;
        }
        if json {
            print_json(
                &json!({ "origin": origin, "from": m.peer_id, "entries": r.entries,
                "checkpointed": r.checkpointed, "valid": true, "out": out }),
            )?;
        } else {
            say!(
                "recovered {} entries of {origin} from witness {} ({}), verified up to its checkpoint at {} -> {}",
                r.entries,
                m.name,
                m.peer_id,
                r.checkpointed,
                out.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    Err(last)
}

/// One line saying what the person asked the sliver to run with (their ticket signs it).
fn describe_invocation(i: &slicefed_trust::Invocation) -> String {
    let args = if i.args.is_empty() {
        "no arguments".to_string()
    } else {
        format!("arguments {:?}", i.args)
    };
    let env = if i.env.is_empty() {
        String::new()
    } else {
        let vars: Vec<String> = i.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(", environment {vars:?}")
    };
    format!("asked to run with {args}{env} (signed in the ticket)")
}
