//! Adversary tests with real node processes: every attack of the hostile-network issue,
//! performed as an attacker would (the CLI where it can, a hostile client built from the
//! project's crates where it cannot), each asserting the defended outcome and that the node
//! keeps serving its honest users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use common::{Node, Shell, running, spawn_node, victim, wait};
use slicefed_ledger::EntryBody;
use slicefed_ledger::entry::Entry;
use slicefed_ledger::records::KIND_ENTRY;
use slicefed_ledger::source::LogSource;
use slicefed_peer::wire::{Request, Response, WitnessNote};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `n` nodes certified by princeton under policy `trust`, joined through the first.
fn nodes(sh: &Shell, n: usize, trust: &str, extra: &[&str]) -> Vec<Node> {
    let mut out: Vec<Node> = vec![];
    for i in 1..=n {
        let dir = format!("princeton.node{i}");
        sh.certified_node("princeton", &dir);
        let boot = out.first().map(|n| n.addr.clone());
        let (child, addr) = spawn_node(sh, &dir, trust, boot.as_deref(), extra);
        out.push(Node {
            child: Some(child),
            dir,
            addr,
        });
    }
    let boot = out[0].addr.clone();
    wait("every node a member", 60, || {
        let r = sh.run(&["nodes", "list", "--node", &boot, "--json"]);
        (r.code == 0 && r.json().as_array().is_some_and(|rows| rows.len() == n)).then_some(())
    });
    out
}

/// A shell with princeton, its researcher alice, and the example modules.
fn princeton(sh: &Shell, open_loopback: bool) {
    let pk = sh.authority("princeton");
    if open_loopback {
        sh.policy("trust.toml", &[("princeton", &pk)]);
    } else {
        sh.policy_closed("trust.toml", &[("princeton", &pk)]);
    }
    sh.user("princeton", "princeton.alice");
    for m in ["prober", "tcp_client", "net_hog", "sleeper"] {
        sh.write(
            &format!("{m}.wasm"),
            &slicefed_sandbox::guests::bytes(m).unwrap(),
        );
    }
}

/// `slice create` as alice, on every node; returns the run (JSON on stdout).
fn create(sh: &Shell, boot: &str, slice: &str, module: &str, args: &[&str]) -> common::Run {
    let mut all = vec![
        "slice",
        "create",
        slice,
        "--module",
        module,
        "--nodes",
        "all",
        "--bootstrap",
        boot,
        "--key",
        "princeton.alice.key",
        "--cert",
        "princeton.alice.cert",
        "--connect",
        "tcp:0.0.0.0/0:1-65535",
        "--connect",
        "udp:0.0.0.0/0:1-65535",
        "--json",
        "--",
    ];
    all.extend(args);
    sh.run(&all)
}

/// The entries of a node's log of one kind (read-only, while the node runs).
fn entries(sh: &Shell, dir: &str, kind: &str) -> usize {
    let src = LogSource::load(&sh.path(&format!("{dir}/ledger"))).unwrap();
    let (recs, _) = src.records();
    recs.iter()
        .filter(|r| r.kind == KIND_ENTRY)
        .filter_map(|r| Entry::decode(r.payload).ok())
        .filter(|e| e.body.kind() == kind)
        .count()
}

#[test]
fn junk_revocations_are_refused_and_the_real_one_is_honoured_everywhere() {
    let sh = Shell::new();
    princeton(&sh, true);
    let ns = nodes(&sh, 3, "trust.toml", &[]);
    let boot = ns[0].addr.clone();
    let (target, _) = victim();
    create(
        &sh,
        &boot,
        "princeton.probe",
        "prober.wasm",
        &[&target, "500", "0"],
    )
    .ok();
    wait("alice's slice on every node", 30, || {
        (running(&sh, &boot, "princeton.probe") == 3).then_some(())
    });

    // Anyone can make a revocation of alice's certificate: five authorities that never
    // certified her do. Each node refuses each before holding, logging or passing it on.
    for i in 0..5 {
        let evil = format!("evil{i}");
        sh.authority(&evil);
        let file = format!("{evil}.rev");
        sh.run(&[
            "authority",
            "revoke",
            "--authority",
            &evil,
            "--cert",
            "princeton.alice.cert",
            "--out",
            &file,
        ])
        .ok();
        for n in &ns {
            sh.run(&["authority", "publish", &file, "--bootstrap", &n.addr])
                .fails_with("may not revoke");
        }
    }
    // Alice herself may not revoke her authority's statement about her either.
    sh.run(&["key", "show", "princeton.alice.key"]).ok();
    for n in &ns {
        assert_eq!(entries(&sh, &n.dir, "revocation-seen"), 0, "{}", n.dir);
    }
    assert_eq!(running(&sh, &boot, "princeton.probe"), 3);

    // Her own authority's revocation, handed to one node, stops her slivers everywhere.
    sh.run(&[
        "authority",
        "revoke",
        "--authority",
        "princeton",
        "--cert",
        "princeton.alice.cert",
        "--out",
        "real.rev",
    ])
    .ok();
    sh.run(&["authority", "publish", "real.rev", "--bootstrap", &boot])
        .ok();
    wait("the real revocation honoured on every node", 30, || {
        (running(&sh, &boot, "princeton.probe") == 0).then_some(())
    });
    // Sent again, to every node: nothing new is held or logged.
    for n in &ns {
        sh.run(&["authority", "publish", "real.rev", "--bootstrap", &n.addr])
            .ok();
    }
    std::thread::sleep(Duration::from_secs(2));
    for n in &ns {
        assert_eq!(entries(&sh, &n.dir, "revocation-seen"), 1, "{}", n.dir);
    }
}

#[test]
fn the_owner_stops_a_slice_through_the_admin_socket_during_a_flood() {
    let sh = Shell::new();
    princeton(&sh, true);
    let ns = nodes(&sh, 1, "trust.toml", &[]);
    let node = &ns[0];
    let (target, _) = victim();
    create(
        &sh,
        &node.addr,
        "princeton.probe",
        "prober.wasm",
        &[&target, "500", "0"],
    )
    .ok();
    // The attacker: bare connections from another address, junk requests from throwaway
    // identities, as fast as one process can.
    let flood = Command::new(Shell::bin())
        .current_dir(sh.dir.path())
        .args(["attack", "flood", "--target", &node.addr, "--seconds", "15"])
        .args(["--source-ip", "127.0.0.2", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    // An honest researcher still gets a slice created...
    let r = create(
        &sh,
        &node.addr,
        "princeton.second",
        "sleeper.wasm",
        &["60000"],
    )
    .ok();
    assert_eq!(r.json()["nodes"][0]["status"], "running", "{}", r.stdout);
    // ...and the owner stops a slice through the admin socket.
    let t = Instant::now();
    let r = sh
        .run(&[
            "node",
            "stop",
            "--dir",
            &node.dir,
            "princeton.probe",
            "--json",
        ])
        .ok();
    let took = t.elapsed();
    assert_eq!(
        r.json()["stopped"].as_array().unwrap().len(),
        1,
        "{}",
        r.stdout
    );
    println!("node stop under the flood answered in {took:?}");
    let out = flood.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("flood: {report}");
    assert!(report["bare_connects"].as_u64().unwrap() > 0, "{report}");
    assert!(report["requests"].as_u64().unwrap() > 100, "{report}");
    // The node is alive and answering after it.
    sh.run(&["nodes", "list", "--node", &node.addr]).ok();
}

#[test]
fn slivers_cannot_reach_the_owners_machine_or_networks_by_default() {
    let sh = Shell::new();
    princeton(&sh, false);
    let ns = nodes(&sh, 1, "trust.toml", &[]);
    let node = &ns[0];
    let (target, seen) = victim();
    let own_port = node
        .addr
        .split("/tcp/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_string();
    // Tickets that grant every address; the owner's default closes the machine anyway.
    for (i, to) in [
        target.clone(),
        format!("127.0.0.1:{own_port}"),
        "169.254.169.254:80".into(),
        "10.0.0.1:80".into(),
    ]
    .iter()
    .enumerate()
    {
        let slice = format!("princeton.reach{i}");
        create(&sh, &node.addr, &slice, "tcp_client.wasm", &[to, "hello"]).ok();
        let logs = wait("the sliver's answer", 30, || {
            let r = sh.run(&[
                "slice",
                "logs",
                &slice,
                "--node",
                node.addr.rsplit('/').next().unwrap(),
                "--bootstrap",
                &node.addr,
                "--key",
                "princeton.alice.key",
            ]);
            // The sliver's stderr comes out on the command's stderr.
            let both = format!("{}{}", r.stdout, r.stderr);
            both.contains("permission denied").then_some(both)
        });
        assert!(logs.contains(to.as_str()), "{logs}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "the owner's loopback service was reached"
    );
    // The denials are in the node's log, with the reason.
    let src = LogSource::load(&sh.path(&format!("{}/ledger", node.dir))).unwrap();
    let (recs, _) = src.records();
    let denied: Vec<String> = recs
        .iter()
        .filter(|r| r.kind == KIND_ENTRY)
        .filter_map(|r| Entry::decode(r.payload).ok())
        .filter_map(|e| match e.body {
            EntryBody::Flow(f) => match f.decision {
                slicefed_ledger::entry::Decision::Denied(why) => Some(why),
                _ => None,
            },
            _ => None,
        })
        .collect();
    for needle in [
        "loopback",
        "port of the node itself",
        "link-local",
        "private",
    ] {
        assert!(
            denied.iter().any(|d| d.contains(needle)),
            "no denial for {needle}: {denied:?}"
        );
    }
}

#[test]
fn a_ticket_run_with_other_arguments_is_refused() {
    let sh = Shell::new();
    princeton(&sh, true);
    let ns = nodes(&sh, 1, "trust.toml", &[]);
    let node = &ns[0];
    sh.run(&[
        "ticket",
        "issue",
        "--key",
        "princeton.alice.key",
        "--cert",
        "princeton.alice.cert",
        "--slice",
        "princeton.batch",
        "--module",
        "prober.wasm",
        "--connect",
        "tcp:0.0.0.0/0:1-65535",
        "--out",
        "batch.ticket",
        "--",
        "192.0.2.1:80",
        "1000",
        "1",
    ])
    .ok();
    // The node owner who received it submits it with arguments of their choice, straight
    // to a node (the CLI would refuse first).
    let credential = sh.read("batch.ticket");
    let module = sh.read("prober.wasm");
    let submit = |args: &[&str]| {
        let req = Request::Submit {
            credential: credential.clone(),
            module: module.clone(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![],
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let addr = node.addr.parse().unwrap();
        match rt
            .block_on(slicefed_peer::client::call(
                addr,
                req,
                Duration::from_secs(20),
            ))
            .unwrap()
        {
            Response::Receipt(r) => {
                slicefed_trust::objects::open::<slicefed_trust::objects::NodeReceipt>(&r)
                    .unwrap()
                    .body
            }
            other => panic!("{other:?}"),
        }
    };
    let r = submit(&["198.51.100.7:22", "10", "0"]);
    assert!(!r.admitted);
    assert!(
        r.reason.contains("not the ones the ticket signs"),
        "{}",
        r.reason
    );
    // What alice signed runs, and the node records it.
    let r = submit(&["192.0.2.1:80", "1000", "1"]);
    assert!(r.admitted, "{}", r.reason);
    let src = LogSource::load(&sh.path(&format!("{}/ledger", node.dir))).unwrap();
    let (recs, _) = src.records();
    let recorded: Vec<Vec<String>> = recs
        .iter()
        .filter(|r| r.kind == KIND_ENTRY)
        .filter_map(|r| Entry::decode(r.payload).ok())
        .filter_map(|e| match e.body {
            EntryBody::SliverCreated { invocation, .. } => Some(invocation.args),
            _ => None,
        })
        .collect();
    assert_eq!(recorded, vec![vec!["192.0.2.1:80", "1000", "1"]]);
}

#[test]
fn hostile_slivers_and_members_end_at_their_quotas_and_neighbours_are_unaffected() {
    let sh = Shell::new();
    princeton(&sh, true);
    let ns = nodes(&sh, 2, "trust.toml", &[]);
    let boot = ns[0].addr.clone();
    let node_id = boot.rsplit('/').next().unwrap().to_string();
    let (target, seen) = victim();
    create(
        &sh,
        &boot,
        "princeton.neighbour",
        "prober.wasm",
        &[&target, "300", "0"],
    )
    .ok();
    // A sliver that opens sockets until it is refused: it gets its share, no more.
    create(
        &sh,
        &boot,
        "princeton.hog",
        "net_hog.wasm",
        &["sockets", "100000"],
    )
    .ok();
    let logs = wait("the hog's report", 30, || {
        let r = sh.run(&[
            "slice",
            "logs",
            "princeton.hog",
            "--node",
            &node_id,
            "--bootstrap",
            &boot,
            "--key",
            "princeton.alice.key",
        ]);
        r.stdout.contains("held").then_some(r.stdout)
    });
    assert!(
        logs.contains(&format!(
            "held {} sockets",
            slicefed_sandbox::sockets::MAX_SOCKETS_PER_SLIVER
        )),
        "{logs}"
    );
    // Its neighbour kept probing all along.
    let before = seen.lock().unwrap().len();
    std::thread::sleep(Duration::from_secs(2));
    assert!(seen.lock().unwrap().len() > before, "the neighbour stopped");

    // Capacity is counted at admission: past it, a ticket is refused with the reason,
    // never admitted and then left to die.
    for i in 0..4 {
        create(
            &sh,
            &boot,
            &format!("princeton.fill{i}"),
            "sleeper.wasm",
            &["60000"],
        );
    }
    let r = create(&sh, &boot, "princeton.one_more", "sleeper.wasm", &["60000"]);
    let why = r.json()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["reason"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>();
    assert!(why.iter().all(|w| w.contains("node full")), "{why:?}");

    // A member (node 2's key) tells node 1 about logs of keys it made up: node 1 holds,
    // fetches and logs nothing for them.
    let key_text = sh.read(&format!("{}/node.key", ns[1].dir));
    let member = slicefed_trust::SecretKey::from_file_text(&key_text).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for i in 0..20u8 {
        let made_up = slicefed_trust::SecretKey::from_seed(&[i; 32]);
        let cp = slicefed_ledger::checkpoint::Checkpoint {
            origin: made_up.public(),
            size: 1_000_000,
            root: [i; 32],
            time_ms: 0,
        }
        .sign(&made_up)
        .unwrap();
        let answer = rt.block_on(as_member(&member, &boot, WitnessNote::Offer(cp)));
        assert!(
            answer.contains("does not know"),
            "an offer of a made-up log: {answer}"
        );
    }
    assert!(
        !sh.path(&format!("{}/replicas", ns[0].dir))
            .read_dir()
            .unwrap()
            .any(|e| {
                let name = e.unwrap().file_name().to_string_lossy().to_string();
                (0..20u8).any(|i| {
                    name.starts_with(
                        &slicefed_trust::SecretKey::from_seed(&[i; 32])
                            .public()
                            .to_hex(),
                    )
                })
            }),
        "a replica file for a made-up origin"
    );
}

/// Sends a witnessing note to the node at `addr` from a swarm with a member's key.
async fn as_member(key: &slicefed_trust::SecretKey, addr: &str, note: WitnessNote) -> String {
    use futures::StreamExt;
    use libp2p::request_response;
    use libp2p::swarm::SwarmEvent;
    use slicefed_peer::net::BehaviourEvent;
    let (mut swarm, _) = slicefed_peer::net::swarm(key).unwrap();
    let addr: libp2p::Multiaddr = addr.parse().unwrap();
    let peer = slicefed_peer::client::peer_in(&addr).unwrap();
    let bytes = Request::Witness(note).to_bytes().unwrap();
    swarm
        .behaviour_mut()
        .rpc
        .send_request_with_addresses(&peer, bytes, vec![addr]);
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return "no answer".into(),
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. }, ..
                })) => {
                    return match Response::from_bytes(&response) {
                        Ok(Response::Error(e)) => e,
                        Ok(other) => format!("{other:?}"),
                        Err(e) => e.to_string(),
                    };
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::OutboundFailure { error, .. })) => {
                    return error.to_string();
                }
                _ => {}
            }
        }
    }
}

/// A small tmpfs at `path`, unmounted when dropped (the full-disk test needs root).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: std::path::PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount for the full-disk test: {e}"));
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs for the full-disk test (it needs root, as CI has): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_closed_and_the_node_recovers_when_it_can_write() {
    let sh = Shell::new();
    princeton(&sh, true);
    let disk = Tmpfs::mount(sh.path("disk"), "16m");
    let dir = "disk/n1";
    let pk = sh
        .run(&[
            "node",
            "init",
            "--dir",
            dir,
            "--name",
            "princeton.node1",
            "--json",
        ])
        .ok()
        .json()["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    sh.run(&[
        "authority",
        "certify",
        "--authority",
        "princeton",
        "--subject",
        &pk,
        "--role",
        "node",
        "--name",
        "princeton.node1",
        "--out",
        "disk/n1/node.cert",
    ])
    .ok();
    let (child, addr) = spawn_node(&sh, dir, "trust.toml", None, &[]);
    let mut node = Node {
        child: Some(child),
        dir: dir.into(),
        addr: addr.clone(),
    };
    let (target, seen) = victim();
    create(
        &sh,
        &addr,
        "princeton.probe",
        "prober.wasm",
        &[&target, "200", "0"],
    )
    .ok();
    wait("the prober reaching its target", 30, || {
        (!seen.lock().unwrap().is_empty()).then_some(())
    });

    // The disk fills up.
    let mut filler = std::fs::File::create(sh.path("disk/filler")).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while std::io::Write::write_all(&mut filler, &chunk).is_ok() {}
    let _ = filler.sync_all();
    let health = |sh: &Shell| {
        let r = sh.run(&["nodes", "list", "--node", &addr, "--json"]);
        r.json()[0]["health"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let h = wait("the node to say it is unhealthy", 30, || {
        let h = health(&sh);
        h.starts_with("unhealthy").then_some(h)
    });
    assert!(h.contains("ledger"), "{h}");
    // Nothing new runs unrecorded: a ticket is refused with the reason...
    let r = create(&sh, &addr, "princeton.more", "sleeper.wasm", &["60000"]);
    let reason = r.json()["nodes"][0]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("cannot record"), "{reason}");
    // ...and the running sliver's new connections are denied.
    std::thread::sleep(Duration::from_millis(500));
    let during = seen.lock().unwrap().len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(seen.lock().unwrap().len(), during, "a flow ran unrecorded");
    let stderr = std::fs::read_to_string(sh.path("disk_n1.stderr")).unwrap();
    assert!(stderr.contains("the ledger cannot write"), "{stderr}");

    // The disk is cleaned up: the node recovers by itself.
    drop(filler);
    std::fs::remove_file(sh.path("disk/filler")).unwrap();
    wait("the node healthy again", 30, || {
        (health(&sh) == "ok").then_some(())
    });
    let r = create(&sh, &addr, "princeton.after", "sleeper.wasm", &["60000"]).ok();
    assert_eq!(r.json()["nodes"][0]["status"], "running", "{}", r.stdout);
    let back = seen.lock().unwrap().len();
    wait("the prober's flows again", 30, || {
        (seen.lock().unwrap().len() > back).then_some(())
    });
    // What it logged replays whole: nothing acknowledged was lost.
    node.kill();
    sh.run(&["audit", "replay", dir]).ok();
    drop(disk);
}
