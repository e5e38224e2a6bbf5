//! Verifying a whole log: every entry decodes, follows its predecessor (`seq`, `prev`), and
//! every checkpoint is signed by the origin and matches the tree at its size. Reports the
//! first bad entry and why. Decoding and hashing run in parallel on every core.
//!
//! The same function checks a node's own segments when it opens them and an auditor's
//! export files, so there is one definition of "a valid log".

use crate::checkpoint::SignedCheckpoint;
use crate::entry;
use crate::merkle::{self, Hash, Tree};
use crate::records::{KIND_CHECKPOINT, KIND_ENTRY, Record};
use rayon::prelude::*;
use slicefed_trust::PublicKey;

/// The outcome of a replay.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The log's writer.
    pub origin: PublicKey,
    /// Entries read.
    pub entries: u64,
    /// Checkpoints read and verified.
    pub checkpoints: u64,
    /// True if nothing was wrong.
    pub valid: bool,
    /// The first bad entry, if any.
    pub first_bad: Option<u64>,
    /// What was wrong.
    pub error: Option<String>,
    /// Root of all entries.
    #[serde(with = "hex_hash")]
    pub root: Hash,
    /// Entries covered by the last valid checkpoint.
    pub checkpointed: u64,
}

mod hex_hash {
    pub fn serialize<S: serde::Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }
}

/// A verified log: the tree, the entry records' positions and the checkpoints.
pub struct Replayed<'a> {
    /// The report.
    pub report: Report,
    /// The tree over every entry.
    pub tree: Tree,
    /// Entry records in order.
    pub entries: Vec<Record<'a>>,
    /// Checkpoints in order.
    pub checkpoints: Vec<SignedCheckpoint>,
}

/// How much of each entry replay checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Integrity only: framing, CRC, each entry's header (index and link), leaf hashes, the
    /// tree and every checkpoint signature. Proves the log is exactly what its origin wrote
    /// and signed; bodies are not decoded.
    Hashes,
    /// Also decodes every body (bounded, canonical), proving the log is well-formed.
    Full,
}

/// Replays records (entries and checkpoints, in file order) of `origin`'s log.
pub fn replay<'a>(origin: PublicKey, records: &[Record<'a>], depth: Depth) -> Replayed<'a> {
    let entries: Vec<Record<'a>> = records
        .iter()
        .filter(|r| r.kind == KIND_ENTRY)
        .copied()
        .collect();
    let mut report = Report {
        origin,
        entries: entries.len() as u64,
        checkpoints: 0,
        valid: true,
        first_bad: None,
        error: None,
        root: merkle::EMPTY_ROOT,
        checkpointed: 0,
    };
    let tree = match fast_path(&entries, depth) {
        Some(chunks) => Tree::from_chunks(chunks),
        None => locate_fault(&entries, depth, &mut report),
    };
    report.root = tree.root();

    // Checkpoints: signed by the origin, sizes never shrink, roots match.
    let mut checkpoints = Vec::new();
    let mut seen_entries = 0u64;
    let mut last_size = 0u64;
    for r in records {
        if r.kind == KIND_ENTRY {
            seen_entries += 1;
            continue;
        }
        debug_assert_eq!(r.kind, KIND_CHECKPOINT);
        let cp = match SignedCheckpoint::from_bytes(r.payload) {
            Ok(cp) => cp,
            Err(e) => {
                fail(
                    &mut report,
                    Some(seen_entries),
                    format!("checkpoint after entry {seen_entries}: {e}"),
                );
                break;
            }
        };
        let c = cp.checkpoint;
        if c.origin != origin {
            fail(
                &mut report,
                Some(seen_entries),
                format!(
                    "checkpoint after entry {seen_entries} is by another origin, {}",
                    c.origin.peer_id()
                ),
            );
            break;
        }
        if c.size > seen_entries || c.size < last_size {
            fail(
                &mut report,
                Some(seen_entries.min(c.size)),
                format!(
                    "checkpoint of size {} after {seen_entries} entries (previous checkpoint {last_size}): entries were removed or reordered",
                    c.size
                ),
            );
            break;
        }
        if c.size > tree.len() {
            // Entries before it failed; that failure is already reported.
            break;
        }
        match tree.root_at(c.size) {
            Ok(root) if root == c.root => {}
            _ => {
                // Every link held, so the altered entry is the last one this checkpoint covers.
                let bad = c.size.saturating_sub(1);
                fail(
                    &mut report,
                    Some(bad),
                    format!(
                        "entry {bad} was altered: the tree at size {} does not match its signed checkpoint",
                        c.size
                    ),
                );
                break;
            }
        }
        last_size = c.size;
        report.checkpointed = c.size;
        report.checkpoints += 1;
        checkpoints.push(cp);
    }

    Replayed {
        report,
        tree,
        entries,
        checkpoints,
    }
}

/// The common case, a valid log: each chunk checks its entries and inner links and builds its
/// subtree while the leaves are in cache; only chunk boundaries are checked afterwards.
/// Returns `None` at the first sign of trouble, for [`locate_fault`] to explain.
fn fast_path(entries: &[Record<'_>], depth: Depth) -> Option<Vec<Vec<Vec<Hash>>>> {
    let chunks: Vec<Option<(entry::Header, Vec<Vec<Hash>>)>> = entries
        .par_chunks(merkle::CHUNK_LEAVES)
        .enumerate()
        .map(|(j, chunk)| {
            let base = (j * merkle::CHUNK_LEAVES) as u64;
            let mut leaves: Vec<Hash> = Vec::with_capacity(chunk.len());
            let mut first = None;
            for (k, r) in chunk.iter().enumerate() {
                let h = entry::header(r.payload).ok()?;
                if depth == Depth::Full {
                    entry::Entry::decode(r.payload).ok()?;
                }
                if h.seq != base + k as u64 {
                    return None;
                }
                match leaves.last() {
                    Some(prev) if h.prev != *prev => return None,
                    Some(_) => {}
                    None => first = Some(h),
                }
                leaves.push(merkle::leaf_hash(r.payload));
            }
            Some((first?, merkle::chunk_levels(leaves)))
        })
        .collect();
    let mut prev_last = [0u8; 32];
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        let (first, levels) = c?;
        if first.prev != prev_last {
            return None;
        }
        prev_last = *levels.first()?.last()?;
        out.push(levels);
    }
    Some(out)
}

/// The slow path for an invalid log: finds the first entry that does not decode or link,
/// says which entry is at fault and why, and returns the tree over the valid prefix.
fn locate_fault(entries: &[Record<'_>], depth: Depth, report: &mut Report) -> Tree {
    type Checked = Result<(entry::Header, Hash), String>;
    let checked: Vec<Checked> = entries
        .par_iter()
        .map(|r| {
            let h = entry::header(r.payload).map_err(|e| e.to_string())?;
            if depth == Depth::Full {
                entry::Entry::decode(r.payload).map_err(|e| e.to_string())?;
            }
            Ok((h, merkle::leaf_hash(r.payload)))
        })
        .collect();
    let ok = |i: usize| checked.get(i).and_then(|c| c.as_ref().ok());
    let mut leaves: Vec<Hash> = Vec::with_capacity(checked.len());
    for (i, c) in checked.iter().enumerate() {
        let iu = i as u64;
        let (h, leaf) = match c {
            Err(e) => {
                fail(report, Some(iu), format!("entry {iu}: {e}"));
                break;
            }
            Ok(x) => x,
        };
        let expected_prev = leaves.last().copied().unwrap_or([0; 32]);
        if h.seq != iu || h.prev != expected_prev {
            let linked = h.prev == expected_prev;
            let before_last = i
                .checked_sub(2)
                .and_then(|j| leaves.get(j))
                .copied()
                .unwrap_or([0; 32]);
            let (bad, why) = if linked {
                (
                    iu,
                    format!(
                        "entry {iu} was altered: it links correctly but carries sequence number {}",
                        h.seq
                    ),
                )
            } else if i > 0 && h.seq == iu - 1 && h.prev == before_last {
                let bad = iu - 1;
                (
                    bad,
                    format!(
                        "entry {bad} was inserted: the entry after it carries sequence number {} and links past it",
                        h.seq
                    ),
                )
            } else if h.seq != iu {
                (
                    iu,
                    format!(
                        "entry {iu} is missing or out of place: the entry found there carries sequence number {} (entries removed or reordered)",
                        h.seq
                    ),
                )
            } else {
                // Entry i-1 altered → only entry i's link breaks; entry i's own link field
                // altered → entry i+1's link breaks as well.
                let next_breaks = ok(i + 1).is_some_and(|(nh, _)| nh.prev != *leaf);
                let bad = if next_breaks || i == 0 { iu } else { iu - 1 };
                (
                    bad,
                    format!(
                        "entry {bad} was altered: entry {iu} does not link to the entry before it"
                    ),
                )
            };
            fail(report, Some(bad), why);
            break;
        }
        leaves.push(*leaf);
    }
    Tree::from_leaves(leaves)
}

fn fail(report: &mut Report, at: Option<u64>, why: String) {
    if report.valid {
        report.valid = false;
        report.first_bad = at;
        report.error = Some(why);
    }
}
