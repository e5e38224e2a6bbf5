//! Property tests: any byte flipped, entry removed, reordered, or inserted after a
//! checkpoint is detected by replay and located.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use common::{flow, node_key};
use proptest::prelude::*;
use slicefed_ledger::entry::{Entry, HEADER_BYTES};
use slicefed_ledger::merkle;
use slicefed_ledger::records::{self, EXPORT_MAGIC, FILE_HEADER_BYTES, KIND_ENTRY};
use slicefed_ledger::source::LogSource;
use slicefed_ledger::{Ledger, LedgerOptions, Report};
use std::sync::OnceLock;
use std::time::Duration;

const ENTRIES: u64 = 40;

/// One export file, made once: 40 entries in batches of 4, a checkpoint after every batch.
fn export() -> &'static Vec<u8> {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let opts = LedgerOptions {
            checkpoint_interval: Duration::ZERO,
            ..Default::default()
        };
        let l = Ledger::open(&dir.path().join("l"), node_key(), opts).unwrap();
        for chunk in (0..ENTRIES).collect::<Vec<_>>().chunks(4) {
            l.append_all(chunk.iter().map(|i| (*i, flow(*i))).collect())
                .unwrap();
        }
        let out = dir.path().join("x");
        l.export(&out).unwrap();
        std::fs::read(out).unwrap()
    })
}

/// (kind, payload) of every record.
fn records_of(file: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let (recs, err) = records::parse_all(file, FILE_HEADER_BYTES);
    assert!(err.is_none());
    recs.iter().map(|r| (r.kind, r.payload.to_vec())).collect()
}

/// Re-frames records with valid CRCs: the tamperer who knows the format.
fn reframe(recs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = records::file_header(EXPORT_MAGIC, &node_key().public());
    for (k, p) in recs {
        records::frame(*k, p, &mut out);
    }
    out
}

fn replay_bytes(bytes: &[u8]) -> Result<Report, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    LogSource::load(&p)
        .map(|s| s.replay())
        .map_err(|e| e.to_string())
}

/// Position in the record list of entry `k`.
fn entry_pos(recs: &[(u8, Vec<u8>)], k: u64) -> usize {
    recs.iter()
        .enumerate()
        .filter(|(_, (kind, _))| *kind == KIND_ENTRY)
        .nth(k as usize)
        .unwrap()
        .0
}

#[test]
fn the_untouched_export_replays_clean() {
    let r = replay_bytes(export()).unwrap();
    assert!(r.valid, "{:?}", r.error);
    assert_eq!(r.entries, ENTRIES);
    assert_eq!(r.checkpoints, ENTRIES / 4);
}

/// Every byte of the file, flipped: never accepted; a flip inside entry k's frame is
/// located at entry k.
#[test]
fn every_raw_byte_flip_is_detected_and_located() {
    let file = export();
    let (recs, _) = records::parse_all(file, FILE_HEADER_BYTES);
    // (start, end, entry index or None for a checkpoint frame).
    let mut spans = Vec::new();
    let mut k = 0u64;
    for r in &recs {
        let end = r.offset + records::FRAME_BYTES + 1 + r.payload.len();
        spans.push((r.offset, end, (r.kind == KIND_ENTRY).then_some(k)));
        if r.kind == KIND_ENTRY {
            k += 1;
        }
    }
    for pos in 0..file.len() {
        let mut m = file.clone();
        m[pos] ^= 0x04;
        match replay_bytes(&m) {
            Err(_) => assert!(
                pos < FILE_HEADER_BYTES,
                "byte {pos}: load failed outside the header"
            ),
            Ok(r) => {
                assert!(
                    !r.valid,
                    "byte {pos} flipped and the log still replays valid"
                );
                if let Some((_, _, Some(k))) =
                    spans.iter().find(|(s, e, _)| (*s..*e).contains(&pos))
                {
                    assert_eq!(
                        r.first_bad,
                        Some(*k),
                        "byte {pos} is in entry {k}: {:?}",
                        r.error
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A tamperer who re-frames with valid CRCs and flips a byte of entry k's leaf.
    #[test]
    fn reframed_byte_flip_is_located(k in 0..ENTRIES, at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut recs = records_of(export());
        let p = entry_pos(&recs, k);
        let payload = &mut recs[p].1;
        let i = at.index(payload.len());
        payload[i] ^= 1 << bit;
        let r = replay_bytes(&reframe(&recs)).unwrap();
        prop_assert!(!r.valid);
        // Flipping the link field of the very last entry leaves only one broken link, which
        // cannot say which of the two neighbours changed.
        let in_prev = (9..HEADER_BYTES - 8).contains(&i);
        if in_prev && k == ENTRIES - 1 {
            prop_assert!(r.first_bad == Some(k) || r.first_bad == Some(k - 1), "{:?}", r.error);
        } else {
            prop_assert_eq!(r.first_bad, Some(k), "{:?}", r.error);
        }
    }

    #[test]
    fn removed_entry_is_located(k in 0..ENTRIES) {
        let mut recs = records_of(export());
        recs.remove(entry_pos(&recs, k));
        let r = replay_bytes(&reframe(&recs)).unwrap();
        prop_assert!(!r.valid);
        prop_assert_eq!(r.first_bad, Some(k), "{:?}", r.error);
    }

    #[test]
    fn swapped_entries_are_located(k in 0..ENTRIES - 1) {
        let mut recs = records_of(export());
        let (a, b) = (entry_pos(&recs, k), entry_pos(&recs, k + 1));
        recs.swap(a, b);
        let r = replay_bytes(&reframe(&recs)).unwrap();
        prop_assert!(!r.valid);
        prop_assert_eq!(r.first_bad, Some(k), "{:?}", r.error);
    }

    /// A forged entry inserted right after a checkpoint, with a correct sequence number and
    /// link to its predecessor: located at the insertion point.
    #[test]
    fn inserted_entry_after_a_checkpoint_is_located(batch in 1..ENTRIES / 4) {
        let mut recs = records_of(export());
        let k = batch * 4; // entries 0..k precede this checkpoint
        let prev = merkle::leaf_hash(&recs[entry_pos(&recs, k - 1)].1);
        let forged = Entry { seq: k, prev, time_ms: 0, body: flow(999) }.encode().unwrap();
        recs.insert(entry_pos(&recs, k), (KIND_ENTRY, forged));
        let r = replay_bytes(&reframe(&recs)).unwrap();
        prop_assert!(!r.valid);
        prop_assert_eq!(r.first_bad, Some(k), "{:?}", r.error);
    }

    /// The thorough tamperer renumbers and relinks everything after the insertion: only the
    /// signed checkpoints catch it, and replay points at the first checkpointed range.
    #[test]
    fn relinked_insertion_is_caught_by_the_next_checkpoint(batch in 1..ENTRIES / 4) {
        let recs = records_of(export());
        let k = batch * 4;
        let mut out = Vec::new();
        let mut prev = [0u8; 32];
        let mut seq = 0u64;
        for (kind, payload) in &recs {
            if *kind != KIND_ENTRY {
                out.push((*kind, payload.clone()));
                continue;
            }
            let mut push = |e: Entry, out: &mut Vec<(u8, Vec<u8>)>| {
                let bytes = Entry { seq, prev, ..e }.encode().unwrap();
                prev = merkle::leaf_hash(&bytes);
                seq += 1;
                out.push((KIND_ENTRY, bytes));
            };
            let e = Entry::decode(payload).unwrap();
            if e.seq == k {
                push(Entry { seq: 0, prev: [0; 32], time_ms: 0, body: flow(999) }, &mut out);
            }
            push(e, &mut out);
        }
        let r = replay_bytes(&reframe(&out)).unwrap();
        prop_assert!(!r.valid);
        let bad = r.first_bad.unwrap();
        prop_assert!(bad >= k.saturating_sub(1) && bad <= k + 4, "first bad {} for insertion at {}: {:?}", bad, k, r.error);
    }
}
