//! The durable store: appends, reads, proofs, reopen, torn-tail repair, refusal to open a
//! corrupted log, equivocation proofs, and the never-trusted index.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use common::{flow, node_key};
use slicefed_ledger::index::Index;
use slicefed_ledger::merkle::{self, verify_consistency, verify_inclusion};
use slicefed_ledger::source::LogSource;
use slicefed_ledger::store::list_segments;
use slicefed_ledger::{Checkpoint, EquivocationProof, Ledger, LedgerError, LedgerOptions, Tree};
use std::io::Write;

fn open(dir: &std::path::Path) -> Ledger {
    Ledger::open(dir, node_key(), LedgerOptions::default()).unwrap()
}

#[test]
fn appends_are_read_back_and_proven() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    for i in 0..100 {
        let a = l.append(i, flow(i)).unwrap();
        assert_eq!(a.seq, i);
    }
    let cp = l.checkpoint().unwrap();
    assert_eq!(cp.checkpoint.size, 100);
    cp.verify().unwrap();
    for i in [0u64, 1, 50, 99] {
        let e = l.entry(i).unwrap();
        assert_eq!(e.seq, i);
        assert_eq!(e.body, flow(i));
        let leaf = merkle::leaf_hash(&l.read(i).unwrap());
        let proof = l.inclusion_proof(i, 100).unwrap();
        verify_inclusion(&leaf, i, 100, &proof, &cp.checkpoint.root).unwrap();
    }
    let old = l.root_at(37).unwrap();
    verify_consistency(
        37,
        100,
        &old,
        &cp.checkpoint.root,
        &l.consistency_proof(37, 100).unwrap(),
    )
    .unwrap();
    assert!(matches!(l.read(100), Err(LedgerError::Range(_))));
}

#[test]
fn reopen_continues_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = {
        let l = open(dir.path());
        l.append_all((0..10).map(|i| (i, flow(i))).collect())
            .unwrap();
        l.root_at(10).unwrap()
    };
    let l = open(dir.path());
    assert_eq!(l.size().unwrap(), 10);
    assert_eq!(l.root_at(10).unwrap(), root);
    // A clean close leaves a checkpoint covering everything.
    assert_eq!(l.latest_checkpoint().unwrap().unwrap().checkpoint.size, 10);
    assert_eq!(l.append(10, flow(10)).unwrap().seq, 10);
    assert_eq!(
        l.entry(10).unwrap().prev,
        merkle::leaf_hash(&l.read(9).unwrap())
    );
}

#[test]
fn another_key_cannot_open_the_log() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let err = Ledger::open(
        dir.path(),
        slicefed_trust::fixtures::key(7),
        LedgerOptions::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, LedgerError::WrongOrigin { .. }), "{err}");
}

#[test]
fn segments_roll_and_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LedgerOptions {
        segment_bytes: 4096,
        ..Default::default()
    };
    {
        let l = Ledger::open(dir.path(), node_key(), opts.clone()).unwrap();
        for i in 0..200 {
            l.append(i, flow(i)).unwrap();
        }
        assert!(list_segments(dir.path()).unwrap().len() > 3);
        for i in (0..200).step_by(17) {
            assert_eq!(l.entry(i).unwrap().body, flow(i));
        }
    }
    let l = Ledger::open(dir.path(), node_key(), opts).unwrap();
    assert_eq!(l.size().unwrap(), 200);
    assert_eq!(l.entry(199).unwrap().body, flow(199));
    assert!(LogSource::load(dir.path()).unwrap().replay().valid);
}

#[test]
fn torn_tail_is_truncated_and_everything_before_survives() {
    let dir = tempfile::tempdir().unwrap();
    {
        let l = open(dir.path());
        l.append_all((0..20).map(|i| (i, flow(i))).collect())
            .unwrap();
    }
    let seg = list_segments(dir.path()).unwrap().pop().unwrap();
    // A half-written frame at the end, as a crash mid-write leaves it.
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9]).unwrap();
    drop(f);
    let l = open(dir.path());
    assert_eq!(l.size().unwrap(), 20);
    assert_eq!(l.append(20, flow(20)).unwrap().seq, 20);
    // Zeros at the end (a torn write on some filesystems) are a torn tail too.
    drop(l);
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0u8; 64]).unwrap();
    drop(f);
    assert_eq!(open(dir.path()).size().unwrap(), 21);
}

#[test]
fn corruption_in_the_middle_refuses_to_open_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let l = open(dir.path());
        l.append_all((0..50).map(|i| (i, flow(i))).collect())
            .unwrap();
    }
    let seg = list_segments(dir.path()).unwrap().pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[500] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let err = Ledger::open(dir.path(), node_key(), LedgerOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        bytes,
        "a refused open must not repair anything"
    );
}

#[test]
fn export_replays_clean_and_names_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    l.append_all((0..30).map(|i| (i, flow(i))).collect())
        .unwrap();
    let out = dir.path().join("node.log");
    assert_eq!(l.export(&out).unwrap(), 30);
    let src = LogSource::load(&out).unwrap();
    let r = src.replay();
    assert!(r.valid, "{:?}", r.error);
    assert_eq!(r.entries, 30);
    assert_eq!(r.checkpointed, 30);
    assert_eq!(r.origin, node_key().public());
    assert_eq!(r.root, l.root_at(30).unwrap());
}

#[test]
fn equivocation_is_proven_and_a_tampered_proof_is_not() {
    let k = node_key();
    let leaves = |tag: u8, n: u64| -> Tree {
        let mut t = Tree::new();
        for i in 0..n {
            t.push(merkle::leaf_hash(&[tag, i as u8]));
        }
        t
    };
    let honest = leaves(1, 10);
    let forked = {
        let mut t = leaves(1, 6);
        for i in 6..12 {
            t.push(merkle::leaf_hash(&[2, i as u8]));
        }
        t
    };
    let cp = |t: &Tree, size: u64| {
        Checkpoint {
            origin: k.public(),
            size,
            root: t.root_at(size).unwrap(),
            time_ms: size,
        }
        .sign(&k)
        .unwrap()
    };
    // Different sizes: a 10-entry history and a 12-entry one that disagree after entry 6.
    let p = EquivocationProof::build(cp(&honest, 10), cp(&forked, 12), &forked).unwrap();
    p.verify().unwrap();
    let bytes = p.to_bytes().unwrap();
    EquivocationProof::from_bytes(&bytes).unwrap();
    for i in 0..bytes.len() {
        let mut m = bytes.clone();
        m[i] ^= 1;
        assert!(
            EquivocationProof::from_bytes(&m).is_err(),
            "byte {i} flipped and the proof still verified"
        );
    }
    // Same size, different roots.
    EquivocationProof::build(cp(&honest, 8), cp(&forked, 8), &forked).unwrap();
    // Consistent checkpoints are not an equivocation.
    assert!(EquivocationProof::build(cp(&honest, 4), cp(&honest, 10), &honest).is_err());
    assert!(EquivocationProof::build(cp(&forked, 5), cp(&forked, 12), &forked).is_err());
}

#[test]
fn index_is_rebuilt_when_deleted_corrupted_or_stale_and_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(&dir.path().join("ledger"));
    l.append_all((0..400).map(|i| (i, flow(i))).collect())
        .unwrap();
    let idx_dir = dir.path().join("index");
    let remote: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let want: Vec<u64> = (0..400).filter(|i| i % 200 == 7).collect();
    let hits = |idx: &Index| {
        idx.flows_to(&l, remote, Some(80))
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect::<Vec<_>>()
    };
    {
        let idx = Index::open(&idx_dir, &l).unwrap();
        assert_eq!(hits(&idx), want);
        assert_eq!(
            idx.entries_of_slice(&l, "princeton.codeen").unwrap().len(),
            400
        );
        // A lie in the index: entry 3 does not go to 192.0.2.7. It is dropped, not believed.
        idx.insert_raw_remote(remote, 80, 3).unwrap();
        assert_eq!(hits(&idx), want);
    }
    // Deleted: rebuilt.
    std::fs::remove_dir_all(&idx_dir).unwrap();
    let idx = Index::open(&idx_dir, &l).unwrap();
    assert!(idx.rebuilt);
    assert_eq!(hits(&idx), want);
    drop(idx);
    // Corrupted files: rebuilt.
    for f in std::fs::read_dir(&idx_dir).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            std::fs::write(&p, b"garbage garbage garbage").unwrap();
        }
    }
    let idx = Index::open(&idx_dir, &l).unwrap();
    assert!(idx.rebuilt);
    assert_eq!(hits(&idx), want);
    drop(idx);
    // Built for another log (disagreeing root): rebuilt.
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(other_dir.path());
    other
        .append_all((0..500).map(|i| (i, flow(i + 1))).collect())
        .unwrap();
    drop(Index::open(&idx_dir, &other).unwrap());
    let idx = Index::open(&idx_dir, &l).unwrap();
    assert!(idx.rebuilt);
    assert_eq!(hits(&idx), want);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = Ledger::open(dir.path(), node_key(), LedgerOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, LedgerError::Locked(_)), "{err}");
}
