//! End-to-end: an auditor exports and replays a node's log with the real binary, and a
//! tampered export is refused with the first bad entry named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use common::Shell;
use slicefed_ledger::fixtures::flow;
use slicefed_ledger::{Ledger, LedgerOptions};
use slicefed_trust::fixtures::key;

/// A node directory with a ledger of `n` entries, written by a node key.
fn node_dir(sh: &Shell, n: u64) -> std::path::PathBuf {
    let dir = sh.path("node1");
    let l = Ledger::open(&dir.join("ledger"), key(9), LedgerOptions::default()).unwrap();
    l.append_all((0..n).map(|i| (i, flow(i))).collect())
        .unwrap();
    dir
}

#[test]
fn export_and_replay_a_node_log() {
    let sh = Shell::new();
    node_dir(&sh, 500);
    let e = sh
        .run(&[
            "audit",
            "export",
            "--dir",
            "node1",
            "--out",
            "node1.log",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(e["entries"], 500);
    assert_eq!(e["peer_id"], key(9).public().peer_id());

    let r = sh
        .run(&["audit", "replay", "node1", "node1.log", "--json"])
        .ok()
        .json();
    assert_eq!(r["valid"], true);
    assert_eq!(r["logs"].as_array().unwrap().len(), 2);
    for l in r["logs"].as_array().unwrap() {
        assert_eq!(l["entries"], 500);
        assert_eq!(l["valid"], true);
        assert_eq!(l["checkpointed"], 500);
    }
    sh.run(&["audit", "replay", "node1.log", "--depth", "hashes"])
        .ok();
    let human = sh.run(&["audit", "replay", "node1.log"]).ok();
    assert!(human.stdout.contains("500 entries"), "{}", human.stdout);
}

#[test]
fn a_tampered_export_is_refused_and_the_entry_named() {
    let sh = Shell::new();
    node_dir(&sh, 50);
    sh.run(&["audit", "export", "--dir", "node1", "--out", "node1.log"])
        .ok();
    let mut bytes = sh.read("node1.log");
    // A byte deep inside the file: some entry's record.
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    sh.write("tampered.log", &bytes);
    let r = sh.run(&["audit", "replay", "tampered.log", "--json"]);
    assert_eq!(r.code, 1);
    let j = r.json();
    assert_eq!(j["valid"], false);
    let first_bad = j["logs"][0]["first_bad"].as_u64().unwrap();
    assert!(first_bad < 50);
    let human = sh.run(&["audit", "replay", "tampered.log"]);
    assert_eq!(human.code, 1);
    assert!(
        human.stderr.contains(&format!("entry {first_bad}")),
        "{}",
        human.stderr
    );
}

#[test]
fn hostile_sources_get_one_line() {
    let sh = Shell::new();
    sh.write("random.log", &[7u8; 1000]);
    sh.write("empty.log", b"");
    sh.run(&["audit", "replay", "random.log"])
        .fails_with("random.log");
    sh.run(&["audit", "replay", "empty.log"])
        .fails_with("empty.log");
    sh.run(&["audit", "replay", "no-such-file"])
        .fails_with("no-such-file");
    std::fs::create_dir(sh.path("emptydir")).unwrap();
    sh.run(&["audit", "export", "--dir", "emptydir", "--out", "x.log"])
        .fails_with("emptydir");
    assert!(!sh.exists("x.log"));
    // A valid credential is not a log.
    sh.authority("princeton");
    sh.run(&["audit", "replay", "princeton/authority.pub"])
        .fails_with("authority.pub");
}
