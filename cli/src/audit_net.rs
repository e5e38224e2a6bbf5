//! `audit who` over the network: from what a victim saw (a source address and port, about
//! when) to a node's log, fetched from the node or, when it is dead or does not answer,
//! from its witnesses, with the witnesses' cosignatures, all without any node's disk.
//!
//! Nothing a node sends is trusted: the log is written to a scratch file and replayed
//! (every entry, link, tree and checkpoint signature) before anything in it is used, a
//! cosignature is kept only if it verifies, and the bundle the search builds checks offline.

use anyhow::{Context, Result, anyhow, bail};
use libp2p::Multiaddr;
use slicefed_ledger::checkpoint::{Cosignature, SignedCheckpoint};
use slicefed_ledger::records::{self, EXPORT_MAGIC, KIND_CHECKPOINT, KIND_ENTRY};
use slicefed_peer::client;
use slicefed_peer::node::MemberRow;
use slicefed_peer::wire::{Request, Response};
use slicefed_peer::witness::witnesses_of;
use slicefed_trust::PublicKey;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a node is given to answer one request.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Members asked to vouch for a log: its witnesses as the live members rank them, and a
/// few more (a dead node's log is handed over to the next ones in that ranking).
const VOUCHERS_ASKED: usize = 6;
/// Most pages of a log fetched from its node (each at most `wire::MAX_PAGE_BYTES`).
const MAX_PAGES: usize = 100_000;
/// Largest log fetched over the network: a witness keeps at most 1 GiB of one log by
/// default, and a hostile node must not make the auditor hold more.
const MAX_FETCHED_LOG_BYTES: u64 = 1 << 30;
/// How long fetching one log may take, however slowly a hostile node trickles it.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(300);
/// Most cosignatures kept per checkpoint (what a bundle may carry).
const MAX_COSIGNATURES: usize = slicefed_ledger::bundle::MAX_BUNDLE_COSIGNATURES;

/// One node's log as the auditor got it.
pub struct Fetched {
    /// The export file written (replay it before use: [`slicefed_ledger::source::LogSource`]).
    pub file: PathBuf,
    /// Cosigned checkpoints gathered from the node and its witnesses (each cosignature
    /// checked against its checkpoint).
    pub cosigned: Vec<(SignedCheckpoint, Vec<Cosignature>)>,
    /// Where the log came from: `the node itself` or `witness PEERID`.
    pub from: String,
}

/// A member's first address that names the member itself (`/p2p/` its peer id): a lying
/// member list cannot send the auditor's request for one node to another.
pub fn dial(row: &MemberRow) -> Option<Multiaddr> {
    row.addrs
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .find(|m| client::peer_in(m).is_ok_and(|p| p.to_string() == row.peer_id))
}

/// A hostile node's words, made safe to print (no control characters).
fn quoted(s: &str) -> String {
    s.escape_debug().take(500).collect()
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new()?)
}

/// Asks the bootstrap nodes, all at once, and returns the first answer.
fn ask_bootstrap(
    rt: &tokio::runtime::Runtime,
    bootstrap: &[String],
    req: Request,
) -> Result<Response> {
    let addrs: Vec<Multiaddr> = bootstrap
        .iter()
        .filter(|s| !s.is_empty())
        .map(|b| {
            b.parse::<Multiaddr>()
                .map_err(|e| anyhow!("`{b}` is not a multiaddr: {e}"))
        })
        .collect::<Result<_>>()?;
    if addrs.is_empty() {
        bail!("no node to ask: give --bootstrap or set SLICEFED_BOOTSTRAP");
    }
    let mut first: Option<Response> = None;
    let mut last = String::from("no bootstrap node answered");
    rt.block_on(client::call_all(
        addrs.into_iter().map(|a| (a, req.clone())).collect(),
        ASK_TIMEOUT,
        |_, r| match r {
            Ok(Response::Error(e)) => last = quoted(&e),
            Ok(resp) if first.is_none() => first = Some(resp),
            Ok(_) => {}
            Err(e) => last = e,
        },
    ))?;
    first.ok_or_else(|| anyhow!("{last}"))
}

/// Most holders of one address taken in all (a machine runs few nodes; lying members could
/// name many).
const MAX_HOLDERS: usize = 64;
/// Most holders taken from one member's answer, so that one lying answer cannot fill the
/// list and crowd out the others'.
const MAX_HOLDERS_PER_ANSWER: usize = 4;

/// The rows of one answer that name a node key, at most [`MAX_HOLDERS_PER_ANSWER`].
fn plausible(rows: Vec<MemberRow>) -> Vec<MemberRow> {
    rows.into_iter()
        .filter(|r| PublicKey::parse(&r.peer_id).is_ok())
        .take(MAX_HOLDERS_PER_ANSWER)
        .collect()
}
/// Members asked who holds an address when the bootstrap node knows of none (it may have
/// joined after the node in question died).
const HOLDERS_ASKED: usize = 16;

/// The nodes that listen, or listened in the last two days, on `ip`, as the federation
/// remembers them: the bootstrap node's answer, or (when it knows none, or `wide`: its
/// answer led to no flow, and it may lie) the union with up to [`HOLDERS_ASKED`] members'
/// answers.
pub fn holders(bootstrap: &[String], ip: IpAddr, wide: bool) -> Result<Vec<MemberRow>> {
    let rt = runtime()?;
    let mut found = match ask_bootstrap(&rt, bootstrap, Request::AddressHolders { ip })? {
        Response::Members(rows) => plausible(rows),
        other => bail!("unexpected answer to who holds {ip}: {other:?}"),
    };
    if !found.is_empty() && !wide {
        return Ok(found);
    }
    let members = match ask_bootstrap(&rt, bootstrap, Request::Members)? {
        Response::Members(rows) => rows,
        other => bail!("unexpected answer to the member list: {other:?}"),
    };
    // Members asked are drawn at random: the list comes in key order, and keys that sort
    // first can be ground for, so "the first sixteen" would be an attacker's to take.
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("the system random source failed: {e}"))?;
    let seed = u64::from_le_bytes(seed);
    let mut dialable: Vec<(u64, Multiaddr)> = members
        .iter()
        .skip(1)
        .filter_map(dial)
        .enumerate()
        .map(|(i, a)| (splitmix64(seed.wrapping_add(i as u64)), a))
        .collect();
    dialable.sort_unstable_by_key(|(draw, _)| *draw);
    let calls: Vec<(Multiaddr, Request)> = dialable
        .into_iter()
        .take(HOLDERS_ASKED)
        .map(|(_, a)| (a, Request::AddressHolders { ip }))
        .collect();
    rt.block_on(client::call_all(calls, ASK_TIMEOUT, |_, r| {
        if let Ok(Response::Members(rows)) = r {
            for row in plausible(rows) {
                if !found.iter().any(|f| f.peer_id == row.peer_id) && found.len() < MAX_HOLDERS {
                    found.push(row);
                }
            }
        }
    }))?;
    Ok(found)
}

/// Fetches `origin`'s log, from the node first (at `row`'s address, unless it left) and
/// then from the members that vouch for it, and gathers cosignatures. The log is written
/// to `dir/PEERID.log`.
pub fn fetch_log(bootstrap: &[String], origin_row: &MemberRow, dir: &Path) -> Result<Fetched> {
    let origin = PublicKey::parse(&origin_row.peer_id)
        .map_err(|e| anyhow!("{}: not a node key: {e}", origin_row.peer_id))?;
    let rt = runtime()?;
    let members = match ask_bootstrap(&rt, bootstrap, Request::Members)? {
        Response::Members(rows) => rows,
        other => bail!("unexpected answer to the member list: {other:?}"),
    };
    let file = dir.join(format!("{}.log", origin.peer_id()));

    // Witnesses vouch (in parallel) whatever happens: their cosignatures make the bundle.
    let keys: Vec<PublicKey> = members
        .iter()
        .filter_map(|m| PublicKey::parse(&m.peer_id).ok())
        .collect();
    // Cosignatures count only from members other than the origin (a node cannot witness
    // itself, and keys made up for the occasion are nobody's).
    let witnesses_ok: std::collections::BTreeSet<PublicKey> =
        keys.iter().filter(|k| **k != origin).copied().collect();
    let ranked = witnesses_of(&origin, &keys, VOUCHERS_ASKED);
    let vouchers: Vec<&MemberRow> = ranked
        .iter()
        .filter_map(|k| members.iter().find(|m| m.peer_id == k.peer_id()))
        .collect();
    let mut cosigned: Vec<(SignedCheckpoint, Vec<Cosignature>)> = vec![];
    let mut vouched_by: Vec<&MemberRow> = vec![];
    let calls: Vec<(Multiaddr, Request)> = vouchers
        .iter()
        .filter_map(|m| dial(m).map(|a| (a, Request::Vouch { origin })))
        .collect();
    let callers: Vec<&MemberRow> = vouchers
        .iter()
        .filter(|m| dial(m).is_some())
        .copied()
        .collect();
    rt.block_on(client::call_all(calls, ASK_TIMEOUT, |i, r| {
        if let Ok(Response::Checkpoint {
            checkpoint: Some(cp),
            cosignatures,
        }) = r
            && cp.checkpoint.origin == origin
        {
            add_cosigned(&mut cosigned, cp, cosignatures, &witnesses_ok);
            if let Some(m) = callers.get(i) {
                vouched_by.push(m);
            }
        }
    }))?;

    // What the witnesses hold on disk: a log from the node that ends before it is cut
    // short (a guilty node hiding its last entries), and the replicas are used instead.
    let vouched_size = cosigned
        .iter()
        .map(|(c, _)| c.checkpoint.size)
        .max()
        .unwrap_or(0);
    let deadline = std::time::Instant::now() + FETCH_DEADLINE;

    // The node itself, unless it left.
    let mut why_not_node = String::from("it left the federation");
    if origin_row.health != "departed"
        && let Some(addr) = dial(origin_row)
    {
        let got = log_from_node(&rt, &addr, origin, vouched_size, deadline).and_then(
            |(bytes, cp, sigs)| {
                write_file(&file, &bytes)?;
                agrees_with_witnesses(&file, &cosigned)?;
                Ok((cp, sigs))
            },
        );
        match got {
            Ok((cp, sigs)) => {
                if let Some(cp) = cp {
                    add_cosigned(&mut cosigned, cp, sigs, &witnesses_ok);
                }
                return Ok(Fetched {
                    file,
                    cosigned,
                    from: "the node itself".into(),
                });
            }
            Err(e) => why_not_node = format!("{e:#}"),
        }
    }
    // Its witnesses' replicas, the ones that vouched first.
    let mut tried: Vec<String> = vec![];
    let others = vouchers
        .iter()
        .filter(|m| !vouched_by.iter().any(|v| v.peer_id == m.peer_id));
    for m in vouched_by.iter().copied().chain(others.copied()) {
        let Some(addr) = dial(m) else { continue };
        match replica_from(&rt, &addr, origin, deadline) {
            Ok(bytes) => {
                write_file(&file, &bytes)?;
                return Ok(Fetched {
                    file,
                    cosigned,
                    from: format!(
                        "witness {} (the node did not answer: {why_not_node})",
                        m.peer_id
                    ),
                });
            }
            Err(e) => tried.push(format!("member {}: {e:#}", m.peer_id)),
        }
    }
    bail!(
        "{}: the node did not give its log ({why_not_node}); {} of the {} members asked vouched for it; {}",
        origin.peer_id(),
        vouched_by.len(),
        vouchers.len(),
        tried.join("; ")
    )
}

/// Whether the log in `file` is the history its witnesses vouched for: the same root at
/// every size they cosigned. A node that serves another history of the same length (one
/// without the flow) signed two histories, and its witnesses' copies are used instead.
fn agrees_with_witnesses(
    file: &Path,
    vouched: &[(SignedCheckpoint, Vec<Cosignature>)],
) -> Result<()> {
    use slicefed_ledger::replay::{self, Depth};
    let src = slicefed_ledger::source::LogSource::load(file)?;
    let (recs, _) = src.records();
    let r = replay::replay(src.origin, &recs, Depth::Hashes);
    for (cp, _) in vouched.iter().filter(|(_, s)| !s.is_empty()) {
        let size = cp.checkpoint.size;
        match r.tree.root_at(size) {
            Ok(root) if root == cp.checkpoint.root => {}
            Ok(_) => bail!(
                "its log differs from the one its witnesses hold at entry {size}: it signed two histories"
            ),
            Err(_) => bail!("its log ends before entry {size}, which its witnesses hold"),
        }
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::files::write_atomic(path, bytes, 0o644, true).with_context(|| path.display().to_string())
}

/// Keeps cosignatures that verify and come from `allowed` witnesses, grouped by the
/// checkpoint they cosign, at most [`MAX_COSIGNATURES`] each (more would make the bundle
/// fail to decode).
fn add_cosigned(
    into: &mut Vec<(SignedCheckpoint, Vec<Cosignature>)>,
    cp: SignedCheckpoint,
    sigs: Vec<Cosignature>,
    allowed: &std::collections::BTreeSet<PublicKey>,
) {
    if cp.verify().is_err() || into.len() >= MAX_COSIGNATURES {
        return;
    }
    let good = sigs
        .into_iter()
        .filter(|s| allowed.contains(&s.witness) && s.verify(&cp).is_ok());
    if !into.iter().any(|(c, _)| *c == cp) {
        into.push((cp.clone(), vec![]));
    }
    let Some((_, have)) = into.iter_mut().find(|(c, _)| *c == cp) else {
        return;
    };
    for s in good {
        if have.len() < MAX_COSIGNATURES && !have.iter().any(|h| h.witness == s.witness) {
            have.push(s);
        }
    }
}

type NodeLog = (Vec<u8>, Option<SignedCheckpoint>, Vec<Cosignature>);

/// The node's latest checkpoint with its cosignatures, then its log page by page up to at
/// least that checkpoint, as an export file (header, entries, each page's end checkpoint).
fn log_from_node(
    rt: &tokio::runtime::Runtime,
    addr: &Multiaddr,
    origin: PublicKey,
    witnessed: u64,
    deadline: std::time::Instant,
) -> Result<NodeLog> {
    let (latest, sigs) =
        match rt.block_on(client::call(addr.clone(), Request::Checkpoint, ASK_TIMEOUT))? {
            Response::Checkpoint {
                checkpoint,
                cosignatures,
            } => (checkpoint, cosignatures),
            Response::Error(e) => bail!("{}", quoted(&e)),
            other => bail!("unexpected answer to Checkpoint: {other:?}"),
        };
    if let Some(cp) = &latest
        && cp.checkpoint.origin != origin
    {
        bail!("it answered with another node's checkpoint");
    }
    let want = latest.as_ref().map_or(0, |c| c.checkpoint.size);
    if want < witnessed {
        bail!(
            "its latest checkpoint is at entry {want}, before the {witnessed} its witnesses hold"
        );
    }
    let mut out = records::file_header(EXPORT_MAGIC, &origin);
    let mut size = 0u64;
    for _ in 0..MAX_PAGES {
        if size >= want && size > 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "it gave {size} of {want} entries in {} s",
                FETCH_DEADLINE.as_secs()
            );
        }
        let (end, leaves) = match rt.block_on(client::call(
            addr.clone(),
            Request::Entries { from: size },
            ASK_TIMEOUT,
        ))? {
            Response::Page { base, end, leaves } => {
                if base.checkpoint.origin != origin
                    || end.checkpoint.origin != origin
                    || base.checkpoint.size != size
                    || end.checkpoint.size != size + leaves.len() as u64
                {
                    bail!("its page from entry {size} does not match what it asked for");
                }
                (end, leaves)
            }
            Response::Error(e) => bail!("{}", quoted(&e)),
            other => bail!("unexpected answer to Entries: {other:?}"),
        };
        if leaves.is_empty() {
            break;
        }
        for l in &leaves {
            records::frame(KIND_ENTRY, l, &mut out);
        }
        records::frame(KIND_CHECKPOINT, &end.to_bytes()?, &mut out);
        if out.len() as u64 > MAX_FETCHED_LOG_BYTES {
            bail!("its log is over {MAX_FETCHED_LOG_BYTES} bytes");
        }
        size = end.checkpoint.size;
    }
    if size < want {
        bail!("it gave {size} of the {want} entries its checkpoint commits to");
    }
    Ok((out, latest, sigs))
}

/// The replica of `origin`'s log that the member at `addr` holds (an export file).
pub fn replica_from(
    rt: &tokio::runtime::Runtime,
    addr: &Multiaddr,
    origin: PublicKey,
    deadline: std::time::Instant,
) -> Result<Vec<u8>> {
    let mut file = vec![];
    loop {
        if std::time::Instant::now() > deadline {
            bail!("it gave {} bytes of its replica in time", file.len());
        }
        let req = Request::Replica {
            origin,
            offset: file.len() as u64,
        };
        match rt.block_on(client::call(addr.clone(), req, Duration::from_secs(30)))? {
            Response::Replica { total, chunk } => {
                if total > MAX_FETCHED_LOG_BYTES {
                    bail!("a replica of {total} bytes, over {MAX_FETCHED_LOG_BYTES}");
                }
                if chunk.is_empty() || file.len() as u64 + chunk.len() as u64 > total {
                    break;
                }
                file.extend_from_slice(&chunk);
                if file.len() as u64 >= total {
                    break;
                }
            }
            Response::Error(e) => bail!("{}", quoted(&e)),
            other => bail!("unexpected answer to Replica: {other:?}"),
        }
    }
    if file.is_empty() {
        bail!("an empty replica");
    }
    check_origin(&file, origin)?;
    Ok(file)
}

/// The file says whose log it is: it must be the one asked for (a member answering with
/// another node's genuine log would blame that node).
fn check_origin(file: &[u8], origin: PublicKey) -> Result<()> {
    match records::read_file_header(file, EXPORT_MAGIC) {
        Ok(k) if k == origin => Ok(()),
        Ok(k) => bail!(
            "it sent a replica of {}, not of {}",
            k.peer_id(),
            origin.peer_id()
        ),
        Err(e) => bail!("its replica is not a log: {}", quoted(&e)),
    }
}

/// SplitMix64's output function: a well-mixed 64-bit draw from a counter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicefed_ledger::checkpoint::Checkpoint;
    use slicefed_trust::fixtures::key;
    use std::collections::BTreeSet;

    fn cp(origin: u8, size: u64) -> SignedCheckpoint {
        Checkpoint {
            origin: key(origin).public(),
            size,
            root: [size as u8; 32],
            time_ms: 1,
        }
        .sign(&key(origin))
        .unwrap()
    }

    #[test]
    fn only_members_other_than_the_origin_cosign_and_a_bundles_worth_at_most() {
        let origin = 1;
        let c = cp(origin, 10);
        let members: BTreeSet<PublicKey> = (2..=100).map(|i| key(i).public()).collect();
        let sig = |k: u8| Cosignature::sign(&key(k), &c, 5).unwrap();
        let mut into = vec![];
        // The origin cosigning itself, a stranger's key, a cosignature of another
        // checkpoint, and one member twice: only the member, once.
        let other = Cosignature::sign(&key(2), &cp(origin, 11), 5).unwrap();
        add_cosigned(
            &mut into,
            c.clone(),
            vec![sig(origin), sig(200), other, sig(2), sig(2)],
            &members,
        );
        assert_eq!(into.len(), 1);
        assert_eq!(into[0].1.len(), 1);
        assert_eq!(into[0].1[0].witness, key(2).public());
        // A flood of members' cosignatures is capped at what a bundle may carry.
        add_cosigned(&mut into, c.clone(), (3..=100).map(sig).collect(), &members);
        assert_eq!(into[0].1.len(), MAX_COSIGNATURES);
        // A checkpoint its origin did not sign is dropped whole.
        let mut forged = cp(origin, 12);
        forged.checkpoint.size = 13;
        add_cosigned(&mut into, forged, vec![], &members);
        assert_eq!(into.len(), 1);
    }

    #[test]
    fn a_log_that_is_not_the_history_its_witnesses_hold_is_refused() {
        use slicefed_ledger::fixtures::flow;
        use slicefed_ledger::{Ledger, LedgerOptions};
        let dir = tempfile::tempdir().unwrap();
        // The same node key, two histories of the same length: the one its witnesses
        // hold, and the one it serves the auditor (without the flow).
        let log = |name: &str, offset: u64| {
            let l = Ledger::open(&dir.path().join(name), key(1), LedgerOptions::default()).unwrap();
            l.append_all((0..5).map(|i| (i, flow(i + offset))).collect())
                .unwrap();
            let cp = l.checkpoint().unwrap();
            let file = dir.path().join(format!("{name}.log"));
            l.export(&file).unwrap();
            (cp, file)
        };
        let (held, _) = log("held", 0);
        let (_, served) = log("served", 100);
        let vouched = |cp: &SignedCheckpoint| {
            vec![(cp.clone(), vec![Cosignature::sign(&key(2), cp, 1).unwrap()])]
        };
        let (_, honest) = log("honest", 0);
        assert!(agrees_with_witnesses(&honest, &vouched(&held)).is_ok());
        let err = agrees_with_witnesses(&served, &vouched(&held)).unwrap_err();
        assert!(err.to_string().contains("two histories"), "{err}");
        // Shorter than what they hold: refused too.
        let (mut longer, _) = log("longer", 0);
        longer.checkpoint.size = 50;
        let err = agrees_with_witnesses(&honest, &vouched(&longer)).unwrap_err();
        assert!(err.to_string().contains("ends before"), "{err}");
    }

    #[test]
    fn a_replica_of_another_node_is_refused() {
        let mine = records::file_header(EXPORT_MAGIC, &key(1).public());
        assert!(check_origin(&mine, key(1).public()).is_ok());
        let err = check_origin(&mine, key(2).public()).unwrap_err();
        assert!(err.to_string().contains("not of"), "{err}");
        assert!(check_origin(b"garbage", key(1).public()).is_err());
        assert!(check_origin(&[], key(1).public()).is_err());
    }

    #[test]
    fn a_hostile_nodes_words_are_printed_without_control_characters() {
        let q = quoted("ok\u{1b}[2J\nfake line");
        assert!(!q.contains('\u{1b}') && !q.contains('\n'), "{q}");
        assert!(quoted(&"x".repeat(10_000)).len() <= 500);
    }

    #[test]
    fn members_asked_are_drawn_from_the_whole_list_not_its_first_rows() {
        // The draw for the first row is not always the least: over seeds, the first row
        // ranks first about once in as many rows as there are.
        let rows = 64u64;
        let first_wins = (0..1_000u64)
            .filter(|seed| {
                let seed = splitmix64(*seed);
                (0..rows).min_by_key(|i| splitmix64(seed.wrapping_add(*i))) == Some(0)
            })
            .count();
        assert!(
            first_wins < 60,
            "the first row was drawn first {first_wins} times in 1,000"
        );
    }
}
