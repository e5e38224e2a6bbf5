//! Hostile input to every verb that reads a file and is not already covered by
//! `e2e_trust::hostile_files_get_one_line_and_write_nothing` (which does `cert show|verify`,
//! `ticket issue`, `authority revoke`, key files and trust policies): random, truncated,
//! oversized, empty, trailing bytes, a valid object of the wrong kind, and a valid object
//! for another authority. The contract: exit 1, one line on stderr naming what was wrong,
//! no panic, and nothing written in the working directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use common::Shell;
use std::collections::BTreeMap;
use std::path::Path;

/// Every file under `dir` with its bytes, to show a refused command changed nothing.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Runs `args`, checks the failure contract naming `needle`, and that nothing changed.
fn refused(sh: &Shell, args: &[&str], needle: &str) {
    let before = snapshot(sh.dir.path());
    sh.run(args).fails_with(needle);
    let after = snapshot(sh.dir.path());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "`slicefed {}` created or removed files",
        args.join(" ")
    );
    assert!(
        before == after,
        "`slicefed {}` changed a file",
        args.join(" ")
    );
}

fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn every_file_reading_verb_refuses_hostile_files_with_one_line_and_writes_nothing() {
    let sh = Shell::new();
    let princeton = sh.authority("princeton");
    let mit = sh.authority("mit");
    sh.policy("trust.toml", &[("princeton", &princeton)]);
    sh.user("princeton", "princeton.alice");
    sh.user("mit", "mit.bob");
    sh.write("app.wasm", b"\0asm not really");
    // A node directory whose key is fine, for `node run` and `node stop`.
    sh.run(&["node", "init", "--dir", "n1", "--name", "princeton.node1"])
        .ok();
    sh.run(&[
        "authority",
        "certify",
        "--authority",
        "princeton",
        "--subject",
        "n1/node.key",
        "--role",
        "node",
        "--name",
        "princeton.node1",
        "--out",
        "n1/node.cert",
    ])
    .ok();
    // Valid objects to misuse: a ticket, a revocation, and bob's (mit's) revocation.
    sh.run(&[
        "ticket",
        "issue",
        "--key",
        "princeton.alice.key",
        "--cert",
        "princeton.alice.cert",
        "--slice",
        "princeton.x",
        "--module",
        "app.wasm",
        "--out",
        "alice.ticket",
    ])
    .ok();
    sh.run(&[
        "authority",
        "revoke",
        "--authority",
        "mit",
        "--cert",
        "mit.bob.cert",
        "--out",
        "bob.rev",
    ])
    .ok();
    // Nobody listens here: a verb that reached the network would fail differently.
    let nowhere = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWGR5cX1eL3ThoFp8PJjTYBY1WFkUMGbrmqGHDnkuQ8zmD";
    let good_cert = sh.read("princeton.alice.cert");
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("random", random_bytes(3000, 0x9e37_79b9_7f4a_7c15)),
        ("truncated", good_cert[..good_cert.len() / 2].to_vec()),
        ("oversized", vec![b'x'; 20 << 20]),
        ("empty", vec![]),
        ("trailing", [good_cert.clone(), vec![0]].concat()),
    ];
    for (name, bytes) in &hostile {
        let f = format!("{name}.bin");
        sh.write(&f, bytes);
        // Auditor verbs.
        refused(&sh, &["audit", "verify", &f, "--trust", "trust.toml"], &f);
        refused(&sh, &["audit", "replay", &f], &f);
        refused(
            &sh,
            &[
                "audit",
                "who",
                "--remote",
                "127.0.0.1:80",
                "--ledger",
                &f,
                "--trust",
                "trust.toml",
                "--bundle-out",
                "never.bundle",
            ],
            &f,
        );
        // Researcher verbs: a hostile ticket, certificate or module is judged before the
        // network is asked anything.
        refused(
            &sh,
            &["authority", "publish", &f, "--bootstrap", nowhere],
            &f,
        );
        refused(
            &sh,
            &[
                "slice",
                "create",
                "princeton.x",
                "--module",
                "app.wasm",
                "--nodes",
                "all",
                "--ticket",
                &f,
                "--bootstrap",
                nowhere,
            ],
            &f,
        );
        refused(
            &sh,
            &[
                "slice",
                "create",
                "princeton.x",
                "--module",
                "app.wasm",
                "--nodes",
                "all",
                "--key",
                "princeton.alice.key",
                "--cert",
                &f,
                "--bootstrap",
                nowhere,
            ],
            &f,
        );
        // Node owner verbs.
        refused(
            &sh,
            &[
                "node",
                "run",
                "--dir",
                "n1",
                "--cert",
                &f,
                "--trust",
                "trust.toml",
            ],
            &f,
        );
        // Whatever sits where the admin socket should be, `node stop` says it cannot
        // reach the node and writes nothing.
        std::fs::create_dir_all(sh.path("n1/admin")).unwrap();
        std::fs::write(sh.path("n1/admin/socket"), bytes).unwrap();
        refused(
            &sh,
            &["node", "stop", "--dir", "n1", "princeton.x"],
            "admin socket",
        );
        std::fs::remove_file(sh.path("n1/admin/socket")).unwrap();
        std::fs::remove_dir(sh.path("n1/admin")).unwrap();
    }
    // An oversized module is refused before anything is sent.
    sh.write("huge.wasm", &vec![0u8; 20 << 20]);
    refused(
        &sh,
        &[
            "slice",
            "create",
            "princeton.x",
            "--module",
            "huge.wasm",
            "--nodes",
            "all",
            "--key",
            "princeton.alice.key",
            "--cert",
            "princeton.alice.cert",
            "--bootstrap",
            nowhere,
        ],
        "huge.wasm",
    );

    // Valid objects of the wrong kind.
    refused(
        &sh,
        &[
            "authority",
            "publish",
            "alice.ticket",
            "--bootstrap",
            nowhere,
        ],
        "not a revocation",
    );
    refused(
        &sh,
        &[
            "slice",
            "create",
            "princeton.x",
            "--module",
            "app.wasm",
            "--nodes",
            "all",
            "--ticket",
            "princeton.alice.cert",
            "--bootstrap",
            nowhere,
        ],
        "not a slice ticket",
    );
    refused(
        &sh,
        &["audit", "verify", "alice.ticket", "--trust", "trust.toml"],
        "alice.ticket",
    );
    refused(&sh, &["audit", "replay", "alice.ticket"], "alice.ticket");
    refused(
        &sh,
        &[
            "node",
            "run",
            "--dir",
            "n1",
            "--cert",
            "princeton.alice.cert",
            "--trust",
            "trust.toml",
        ],
        "princeton.alice.cert",
    );
    refused(
        &sh,
        &[
            "node",
            "run",
            "--dir",
            "n1",
            "--cert",
            "n1/node.cert",
            "--trust",
            "alice.ticket",
        ],
        "alice.ticket",
    );

    // Valid, but for another authority: a node owner who trusts only princeton will not
    // start with a node certificate from mit.
    let pk = sh
        .run(&["key", "show", "n1/node.key", "--json"])
        .ok()
        .json()["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    sh.run(&[
        "authority",
        "certify",
        "--authority",
        "mit",
        "--subject",
        &pk,
        "--role",
        "node",
        "--name",
        "mit.node1",
        "--out",
        "mit-node.cert",
    ])
    .ok();
    refused(
        &sh,
        &[
            "node",
            "run",
            "--dir",
            "n1",
            "--cert",
            "mit-node.cert",
            "--trust",
            "trust.toml",
        ],
        "untrusted",
    );
    // And mit's revocation is refused by `cert verify` under princeton's policy.
    let _ = mit;
    refused(
        &sh,
        &["cert", "verify", "bob.rev", "--trust", "trust.toml"],
        "bob.rev",
    );
    assert!(!sh.exists("never.bundle"));
}
