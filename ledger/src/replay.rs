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

/// Replays records (entries and checkpoints, in file order) of `origin`'s log.
pub fn replay<'a>(origin: PublicKey, records: &[Record<'a>]) -> Replayed<'a> {
    let entries: Vec<Record<'a>> = records
        .iter()
        .filter(|r| r.kind == KIND_ENTRY)
        .copied()
        .collect();
    // Parallel: each entry's header, leaf hash and full canonical decode.
    let checked: Vec<Result<(entry::Header, Hash), String>> = entries
        .par_iter()
        .map(|r| {
            let h = entry::header(r.payload).map_err(|e| e.to_string())?;
            // The body is decoded only to prove it is well-formed and canonical.
            entry::Entry::decode(r.payload).map_err(|e| e.to_string())?;
            Ok((h, merkle::leaf_hash(r.payload)))
        })
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
    let fail = |report: &mut Report, at: Option<u64>, why: String| {
        if report.valid {
            report.valid = false;
            report.first_bad = at;
            report.error = Some(why);
        }
    };

    let mut leaves: Vec<Hash> = Vec::with_capacity(checked.len());
    for (i, c) in checked.iter().enumerate() {
        let i = i as u64;
        match c {
            Err(e) => {
                fail(&mut report, Some(i), format!("entry {i}: {e}"));
                break;
            }
            Ok((h, leaf)) => {
                let expected_prev = leaves.last().copied().unwrap_or([0; 32]);
                if h.seq != i || h.prev != expected_prev {
                    let (bad, why) = if h.seq > i {
                        (i, format!("entry {i} is missing: the entry found there carries sequence number {} (entries removed or reordered)", h.seq))
                    } else if h.seq < i {
                        let bad = i.saturating_sub(1);
                        (bad, format!("entry {bad} was inserted: the entry after it carries sequence number {}", h.seq))
                    } else {
                        // Entry i-1 altered → only entry i's link breaks; entry i's own link
                        // field altered → entry i+1's link breaks as well.
                        let next_breaks = checked
                            .get(i as usize + 1)
                            .and_then(|n| n.as_ref().ok())
                            .is_some_and(|(nh, _)| nh.prev != *leaf);
                        let bad = if next_breaks || i == 0 { i } else { i - 1 };
                        (bad, format!("entry {bad} was altered: entry {i} does not link to the entry before it"))
                    };
                    fail(&mut report, Some(bad), why);
                    break;
                }
                leaves.push(*leaf);
            }
        }
    }

    let tree = Tree::from_leaves(leaves);
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
