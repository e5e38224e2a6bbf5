//! End-to-end: federations of real `slicefed node run` processes on loopback, driven by the
//! real CLI as researchers, node owners and auditors would drive them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use common::Shell;
use std::process::Child;

use std::time::{Duration, Instant};

use common::{Node, running, statuses, victim, wait};

fn spawn(sh: &Shell, dir: &str, bootstrap: Option<&str>, extra: &[&str]) -> (Child, String) {
    common::spawn_node(sh, dir, "trust.toml", bootstrap, extra)
}

/// `n` certified nodes of `princeton` (the first is everyone's bootstrap); the node named
/// in `equivocate` runs the test hook that signs two histories.
fn federation(sh: &Shell, n: usize, equivocate: Option<usize>) -> Vec<Node> {
    let mut nodes: Vec<Node> = vec![];
    for i in 1..=n {
        let dir = format!("princeton.node{i}");
        sh.certified_node("princeton", &dir);
        let extra: &[&str] = if equivocate == Some(i) {
            &["--test-equivocate"]
        } else {
            &[]
        };
        let boot = nodes.first().map(|n| n.addr.clone());
        let (child, addr) = spawn(sh, &dir, boot.as_deref(), extra);
        nodes.push(Node {
            child: Some(child),
            dir,
            addr,
        });
    }
    let boot = nodes[0].addr.clone();
    let formed = std::time::Instant::now();
    let complete = |r: &common::Run| {
        r.code == 0
            && r.json().as_array().is_some_and(|rows| {
                rows.len() == n
                    && rows
                        .iter()
                        .all(|x| x["addrs"].as_array().is_some_and(|a| !a.is_empty()))
            })
    };
    while !complete(&sh.run(&["nodes", "list", "--node", &boot, "--json"])) {
        if formed.elapsed() > Duration::from_secs(60) {
            // What each node lists, so that a failure in CI says which member is missing
            // where (the daemons log nothing).
            for node in &nodes {
                let r = sh.run(&["nodes", "list", "--node", &node.addr, "--json"]);
                eprintln!(
                    "{} lists (exit {}): {}{}",
                    node.dir, r.code, r.stdout, r.stderr
                );
            }
            panic!("timed out waiting for every member with an address");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("membership formed in {:?}", formed.elapsed());
    nodes
}

fn setup(sh: &Shell) {
    let pk = sh.authority("princeton");
    sh.policy("trust.toml", &[("princeton", &pk)]);
    sh.write(
        "prober.wasm",
        &slicefed_sandbox::guests::bytes("prober").unwrap(),
    );
}

fn create(sh: &Shell, boot: &str, slice: &str, user: &str, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "slice",
        "create",
        slice,
        "--module",
        "prober.wasm",
        "--nodes",
        "all",
        "--bootstrap",
        boot,
        "--key",
    ];
    let key = format!("{user}.key");
    let cert = format!("{user}.cert");
    args.extend([key.as_str(), "--cert", cert.as_str(), "--json"]);
    args.extend(extra);
    sh.run(&args)
}

fn reasons(run: &common::Run) -> Vec<(String, String)> {
    run.json()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["status"].as_str().unwrap().to_string(),
                n["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn ten_nodes_run_a_slice_refuse_bad_tickets_each_with_its_reason_and_honour_a_revocation() {
    let sh = Shell::new();
    setup(&sh);
    // carol's certificate lives for one second: by the end of the test her ticket has
    // expired (beyond the 60 s clock-skew allowance).
    sh.run(&["key", "gen", "--out", "carol.key"]).ok();
    sh.run(&[
        "authority",
        "certify",
        "--authority",
        "princeton",
        "--subject",
        "carol.key",
        "--role",
        "user",
        "--name",
        "princeton.carol",
        "--slices",
        "princeton.*",
        "--valid-for",
        "1s",
        "--out",
        "carol.cert",
    ])
    .ok();
    sh.run(&[
        "ticket",
        "issue",
        "--key",
        "carol.key",
        "--cert",
        "carol.cert",
        "--slice",
        "princeton.late",
        "--module",
        "prober.wasm",
        "--out",
        "carol.ticket",
    ])
    .ok();
    let carol_made = Instant::now();

    sh.user("princeton", "princeton.alice");
    let nodes = federation(&sh, 10, None);
    let boot = nodes[0].addr.clone();
    let (target, seen) = victim();
    let port = target.rsplit(':').next().unwrap().to_string();
    let connect = format!("tcp:127.0.0.1/32:{port}");

    // A ticket for all 10 starts 10 slivers, each answering with a signed receipt.
    let r = create(
        &sh,
        &boot,
        "princeton.probe",
        "princeton.alice",
        &["--connect", &connect, "--", &target, "300", "0"],
    )
    .ok();
    let rs = reasons(&r);
    assert_eq!(rs.len(), 10);
    assert!(rs.iter().all(|(s, _)| s == "running"), "{rs:?}");
    assert_eq!(running(&sh, &boot, "princeton.probe"), 10);
    wait("a probe from every node", 30, || {
        (seen.lock().unwrap().len() >= 10).then_some(())
    });

    // Over cap: bob may run one sliver per node; his second slice is refused everywhere.
    sh.run(&["key", "gen", "--out", "princeton.bob.key"]).ok();
    sh.run(&[
        "authority",
        "certify",
        "--authority",
        "princeton",
        "--subject",
        "princeton.bob.key",
        "--role",
        "user",
        "--name",
        "princeton.bob",
        "--slices",
        "princeton.*",
        "--max-slivers",
        "1",
        "--out",
        "princeton.bob.cert",
    ])
    .ok();
    create(
        &sh,
        &boot,
        "princeton.first",
        "princeton.bob",
        &["--", "127.0.0.1:1", "60000"],
    )
    .ok();
    let r = create(&sh, &boot, "princeton.second", "princeton.bob", &[]);
    assert_eq!(r.code, 1);
    assert!(
        reasons(&r)
            .iter()
            .all(|(s, why)| s == "refused" && why.contains("over cap")),
        "{:?}",
        reasons(&r)
    );

    // Untrusted: mallory's authority is nobody's root.
    let _ = sh.authority("evil");
    sh.user("evil", "evil.mallory");
    let r = create(&sh, &boot, "evil.attack", "evil.mallory", &[]);
    assert!(
        reasons(&r)
            .iter()
            .all(|(s, why)| s == "refused" && why.contains("untrusted root")),
        "{:?}",
        reasons(&r)
    );

    // Forged: alice's ticket with one character of its slice name changed.
    sh.run(&[
        "ticket",
        "issue",
        "--key",
        "princeton.alice.key",
        "--cert",
        "princeton.alice.cert",
        "--slice",
        "princeton.honest",
        "--module",
        "prober.wasm",
        "--out",
        "honest.ticket",
    ])
    .ok();
    let mut t = sh.read("honest.ticket");
    let at = t.windows(6).position(|w| w == b"honest").unwrap();
    t[at] = b'H';
    sh.write("forged.ticket", &t);
    let r = create(
        &sh,
        &boot,
        "princeton.honest",
        "princeton.alice",
        &["--ticket", "forged.ticket"],
    );
    assert!(
        reasons(&r)
            .iter()
            .all(|(s, why)| s == "refused" && why.contains("signature")),
        "{:?}",
        reasons(&r)
    );

    // A module other than the one the ticket names.
    sh.write(
        "other.wasm",
        &slicefed_sandbox::guests::bytes("hello").unwrap(),
    );
    let r = sh.run(&[
        "slice",
        "create",
        "princeton.honest",
        "--module",
        "other.wasm",
        "--ticket",
        "honest.ticket",
        "--bootstrap",
        &boot,
        "--key",
        "princeton.alice.key",
        "--cert",
        "princeton.alice.cert",
        "--json",
    ]);
    assert!(
        reasons(&r)
            .iter()
            .all(|(s, why)| s == "refused" && why.contains("the ticket names")),
        "{:?}",
        reasons(&r)
    );

    // Revoked: the authority revokes alice; one node hears of it, gossip tells the rest,
    // and every one of her slivers stops.
    sh.revoke(
        "princeton",
        "princeton.alice.cert",
        "compromised key",
        "alice.rev",
    );
    let published = Instant::now();
    sh.run(&[
        "authority",
        "publish",
        "alice.rev",
        "--bootstrap",
        &nodes[4].addr,
    ])
    .ok();
    wait("alice's slivers to stop on every node", 30, || {
        (running(&sh, &boot, "princeton.probe") == 0).then_some(())
    });
    eprintln!(
        "revocation to all 10 slivers stopped: {:?}",
        published.elapsed()
    );
    let r = create(&sh, &boot, "princeton.again", "princeton.alice", &[]);
    assert!(
        reasons(&r)
            .iter()
            .all(|(s, why)| s == "refused" && why.contains("revoked")),
        "{:?}",
        reasons(&r)
    );

    // Expired: carol's certificate ended more than the skew allowance ago.
    let left = Duration::from_secs(63).saturating_sub(carol_made.elapsed());
    std::thread::sleep(left);
    let r = sh.run(&[
        "slice",
        "create",
        "princeton.late",
        "--module",
        "prober.wasm",
        "--ticket",
        "carol.ticket",
        "--bootstrap",
        &boot,
        "--key",
        "carol.key",
        "--cert",
        "carol.cert",
        "--json",
    ]);
    assert!(
        reasons(&r)
            .iter()
            .all(|(s, why)| s == "refused" && why.contains("expired")),
        "{:?}",
        reasons(&r)
    );

    // Hostile files to the new verbs: one line, exit 1, nothing written.
    sh.write("junk.bundle", &[0xff; 300]);
    sh.run(&["audit", "verify", "junk.bundle", "--trust", "trust.toml"])
        .fails_with("junk.bundle");
    sh.run(&[
        "slice",
        "create",
        "x.y",
        "--module",
        "prober.wasm",
        "--ticket",
        "junk.bundle",
        "--bootstrap",
        &boot,
    ])
    .fails_with("junk.bundle");
    sh.run(&["authority", "publish", "junk.bundle", "--bootstrap", &boot])
        .fails_with("junk.bundle");
}

#[test]
fn an_incident_is_traced_from_the_victims_side_and_a_dead_nodes_log_comes_back_from_witnesses() {
    let sh = Shell::new();
    setup(&sh);
    sh.user("princeton", "princeton.alice");
    let mut nodes = federation(&sh, 5, None);
    let boot = nodes[0].addr.clone();
    let (target, seen) = victim();
    let port = target.rsplit(':').next().unwrap().to_string();
    let connect = format!("tcp:127.0.0.1/32:{port}");
    create(
        &sh,
        &boot,
        "princeton.probe",
        "princeton.alice",
        &["--connect", &connect, "--", &target, "300", "0"],
    )
    .ok();
    let observed = wait("probes", 30, || {
        let v = seen.lock().unwrap();
        (v.len() >= 10).then(|| v[3])
    });
    // Give witnesses a few checkpoint rounds.
    std::thread::sleep(Duration::from_secs(4));

    // The victim knows only what it saw: its own address and the source port.
    let mut args = vec![
        "audit".to_string(),
        "who".into(),
        "--remote".into(),
        target.clone(),
        "--local-port".into(),
        observed.port().to_string(),
        "--bundle-out".into(),
        "incident.bundle".into(),
        "--trust".into(),
        "trust.toml".into(),
        "--json".into(),
        "--ledger".into(),
    ];
    args.extend(nodes.iter().map(|n| n.dir.clone()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let who = sh.run(&a).ok().json();
    assert_eq!(who["slice"], "princeton.probe");
    assert_eq!(who["user"], "princeton.alice");
    assert_eq!(who["authority"], "princeton");
    let v = sh
        .run(&[
            "audit",
            "verify",
            "incident.bundle",
            "--trust",
            "trust.toml",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["user"], "princeton.alice");
    assert!(!v["witnesses"].as_array().unwrap().is_empty(), "{v}");
    // Every single-byte change is refused.
    let bundle = sh.read("incident.bundle");
    for i in (0..bundle.len()).step_by(7) {
        let mut b = bundle.clone();
        b[i] ^= 0x20;
        sh.write("changed.bundle", &b);
        let r = sh.run(&["audit", "verify", "changed.bundle", "--trust", "trust.toml"]);
        assert_eq!(r.code, 1, "byte {i} changed and the bundle still verified");
    }
    // Verified offline by someone trusting another authority only: refused.
    let other = sh.authority("mit");
    sh.policy("mit-trust.toml", &[("mit", &other)]);
    sh.run(&[
        "audit",
        "verify",
        "incident.bundle",
        "--trust",
        "mit-trust.toml",
    ])
    .fails_with("untrusted");

    // SIGKILL node 3; its log comes back from its witnesses and verifies.
    let victim_node = &mut nodes[2];
    let origin = sh
        .run(&[
            "key",
            "show",
            &format!("{}/node.key", victim_node.dir),
            "--json",
        ])
        .ok()
        .json()["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    victim_node.kill();
    let got = sh
        .run(&[
            "audit",
            "fetch",
            "--origin",
            &origin,
            "--bootstrap",
            &boot,
            "--out",
            "recovered.sfexp",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(got["valid"], true);
    assert!(got["entries"].as_u64().unwrap() >= 3, "{got}");
    sh.run(&["audit", "replay", "recovered.sfexp"]).ok();

    // Restart it: the sliver whose ticket is still valid comes back.
    let dir = nodes[2].dir.clone();
    let (child, addr) = spawn(&sh, &dir, Some(&boot), &[]);
    nodes[2].child = Some(child);
    nodes[2].addr = addr;
    wait("the restarted node's sliver", 30, || {
        statuses(&sh, &boot, "princeton.probe")
            .iter()
            .any(|n| n["name"] == dir.as_str() && n["status"] == "running")
            .then_some(())
    });
    // And the holder deletes the slice everywhere.
    sh.run(&[
        "slice",
        "delete",
        "princeton.probe",
        "--bootstrap",
        &boot,
        "--key",
        "princeton.alice.key",
        "--cert",
        "princeton.alice.cert",
    ])
    .ok();
    wait("the slice to stop", 30, || {
        (running(&sh, &boot, "princeton.probe") == 0).then_some(())
    });
}

#[test]
fn an_equivocating_node_is_caught_and_the_proof_verifies_anywhere() {
    let sh = Shell::new();
    setup(&sh);
    let nodes = federation(&sh, 4, Some(2));
    let boot = nodes[0].addr.clone();
    let liar = sh
        .run(&["key", "show", "princeton.node2/node.key", "--json"])
        .ok()
        .json()["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait("every honest node to mark the liar", 60, || {
        let all = [0usize, 2, 3].iter().all(|&i| {
            let r = sh.run(&["nodes", "list", "--node", &nodes[i].addr, "--json"]);
            r.code == 0
                && r.json()
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["peer_id"] == liar.as_str() && m["health"] == "equivocated")
        });
        all.then_some(())
    });
    // The proof is in an honest node's log, and verifies here, with nothing else.
    let src = slicefed_ledger::source::LogSource::load(&sh.path("princeton.node1")).unwrap();
    let (recs, _) = src.records();
    let proof = recs
        .iter()
        .filter(|r| r.kind == slicefed_ledger::records::KIND_ENTRY)
        .find_map(
            |r| match slicefed_ledger::Entry::decode(r.payload).unwrap().body {
                slicefed_ledger::EntryBody::EquivocationSeen { proof } => Some(proof),
                _ => None,
            },
        )
        .expect("an EquivocationSeen entry");
    let p = slicefed_ledger::EquivocationProof::from_bytes(&proof).unwrap();
    p.verify().unwrap();
    assert_eq!(p.smaller.checkpoint.origin.peer_id(), liar);
    let _ = boot;
}

#[test]
fn devnet_once_runs_the_whole_tour() {
    let sh = Shell::new();
    let r = sh
        .run(&["devnet", "--once", "--nodes", "3", "--dir", "dev"])
        .ok();
    assert!(r.stdout.contains("every step succeeded"), "{}", r.stdout);
    assert!(r.stdout.contains("princeton.alice"));
}

/// What a node's own log says it did (owner actions), read while it runs.
fn owner_actions(sh: &Shell, dir: &str) -> Vec<String> {
    use slicefed_ledger::EntryBody;
    use slicefed_ledger::entry::Entry;
    use slicefed_ledger::records::KIND_ENTRY;
    use slicefed_ledger::source::LogSource;
    let Ok(src) = LogSource::load(&sh.path(&format!("{dir}/ledger"))) else {
        return vec![];
    };
    let (recs, _) = src.records();
    recs.iter()
        .filter(|r| r.kind == KIND_ENTRY)
        .filter_map(|r| Entry::decode(r.payload).ok())
        .filter_map(|e| match e.body {
            EntryBody::OwnerAction { action, .. } => Some(action),
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_down_while_its_slivers_owner_was_revoked_never_runs_that_sliver_again() {
    let sh = Shell::new();
    setup(&sh);
    sh.user("princeton", "princeton.alice");
    sh.user("princeton", "princeton.bob");
    let mut nodes = federation(&sh, 4, None);
    let boot = nodes[0].addr.clone();
    // Alice's slice and Bob's run on every node.
    for (slice, user) in [
        ("princeton.alices", "princeton.alice"),
        ("princeton.bobs", "princeton.bob"),
    ] {
        create(&sh, &boot, slice, user, &["--", "127.0.0.1:1", "60000"]).ok();
        assert_eq!(running(&sh, &boot, slice), 4);
    }
    // Node 3 goes down hard; while it is down, the authority revokes Alice.
    let down = nodes[2].dir.clone();
    nodes[2].kill();
    sh.revoke(
        "princeton",
        "princeton.alice.cert",
        "compromised key",
        "alice.rev",
    );
    // The authority's bootstrap list names a node that accepts connections and never
    // speaks, and the node that is down, before a node that answers: it is handed to
    // three at once, so the one that hangs holds nothing back.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_peer = nodes[1].addr.rsplit('/').next().unwrap();
    let hang = format!(
        "/ip4/127.0.0.1/tcp/{}/p2p/{silent_peer}",
        silent.local_addr().unwrap().port()
    );
    let list = format!("{hang},{},{boot}", nodes[2].addr);
    let published = sh
        .run(&[
            "authority",
            "publish",
            "alice.rev",
            "--bootstrap",
            &list,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(published["node"], boot.as_str(), "{published}");
    assert_eq!(
        published["unanswered"],
        serde_json::json!([hang]),
        "{published}"
    );
    // Each node that is up answers, and none runs it (a node that does not answer in time
    // is not a node that stopped it).
    wait(
        "alice's slivers to stop on the nodes that are up",
        30,
        || {
            let stopped = statuses(&sh, &boot, "princeton.alices")
                .iter()
                .filter(|n| n["name"] != down.as_str())
                .filter(|n| n["status"] != "running" && n["status"] != "unreachable")
                .count();
            (stopped == 3).then_some(())
        },
    );
    // Node 3 comes back. It catches up on the revocation from its members before it brings
    // anything back: Bob's sliver returns, Alice's never runs.
    let (child, addr) = spawn(&sh, &down, Some(&boot), &[]);
    nodes[2].child = Some(child);
    nodes[2].addr = addr.clone();
    let on_node3 = |slice: &str| -> Vec<serde_json::Value> {
        statuses(&sh, &addr, slice)
            .into_iter()
            .filter(|n| n["name"] == down.as_str())
            .collect()
    };
    wait("bob's sliver back on the restarted node", 60, || {
        assert!(
            on_node3("princeton.alices")
                .iter()
                .all(|n| n["status"] != "running"),
            "a revoked sliver came back"
        );
        on_node3("princeton.bobs")
            .iter()
            .any(|n| n["status"] == "running")
            .then_some(())
    });
    let actions = owner_actions(&sh, &down);
    assert!(
        actions
            .iter()
            .any(|a| a.contains("did not restore sliver") && a.contains("revoked")),
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.contains("restored sliver") && !a.contains("did not"))
            .count(),
        1,
        "{actions:?}"
    );
    // And it stays that way for the next 30 s.
    never_runs_for(30, || on_node3("princeton.alices"));
}

/// Watches for `secs` seconds that a slice never runs on a node (`on` is its status rows).
fn never_runs_for(secs: u64, on: impl Fn() -> Vec<serde_json::Value>) {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        let rows = on();
        assert!(
            rows.iter().all(|n| n["status"] != "running"),
            "it came back: {rows:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn a_node_down_while_its_slice_was_deleted_never_runs_that_sliver_again() {
    let sh = Shell::new();
    setup(&sh);
    sh.user("princeton", "princeton.alice");
    let mut nodes = federation(&sh, 4, None);
    let boot = nodes[0].addr.clone();
    for slice in ["princeton.gone", "princeton.kept"] {
        create(
            &sh,
            &boot,
            slice,
            "princeton.alice",
            &["--", "127.0.0.1:1", "60000"],
        )
        .ok();
        assert_eq!(running(&sh, &boot, slice), 4);
    }
    // Node 3 goes down hard; while it is down, Alice deletes one slice. The command does
    // not need node 3: the delete is held by the others and reaches it from them.
    let down = nodes[2].dir.clone();
    nodes[2].kill();
    let r = sh
        .run(&[
            "slice",
            "delete",
            "princeton.gone",
            "--bootstrap",
            &boot,
            "--key",
            "princeton.alice.key",
            "--cert",
            "princeton.alice.cert",
        ])
        .ok();
    assert!(r.stdout.contains("the delete"), "{}", r.stdout);
    assert_eq!(running(&sh, &boot, "princeton.gone"), 0);
    // Node 3 comes back: it reconciles with its members before it restores anything, so
    // the kept slice returns and the deleted one never runs again.
    let (child, addr) = spawn(&sh, &down, Some(&boot), &[]);
    nodes[2].child = Some(child);
    nodes[2].addr = addr.clone();
    let on_node3 = |slice: &str| -> Vec<serde_json::Value> {
        statuses(&sh, &addr, slice)
            .into_iter()
            .filter(|n| n["name"] == down.as_str())
            .collect()
    };
    wait("the kept slice back on the restarted node", 60, || {
        assert!(
            on_node3("princeton.gone")
                .iter()
                .all(|n| n["status"] != "running"),
            "a deleted sliver came back"
        );
        on_node3("princeton.kept")
            .iter()
            .any(|n| n["status"] == "running")
            .then_some(())
    });
    let actions = owner_actions(&sh, &down);
    assert!(
        actions
            .iter()
            .any(|a| a.contains("did not restore sliver") && a.contains("deleted by its holder")),
        "{actions:?}"
    );
    never_runs_for(30, || on_node3("princeton.gone"));
    // A later slice of the same name is not ended by the old delete, on node 3 either.
    create(
        &sh,
        &boot,
        "princeton.gone",
        "princeton.alice",
        &["--", "127.0.0.1:1", "60000"],
    )
    .ok();
    assert_eq!(running(&sh, &boot, "princeton.gone"), 4);
}
