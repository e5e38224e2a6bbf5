//! End-to-end on real hosts: every node, the researcher, the auditor and an outside victim
//! in a network namespace of its own (`common::hosts`), so each node has its own address
//! and the auditor has nothing but the network. Needs root and iproute2 (CI has both); it
//! fails with one line saying so otherwise, never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use common::hosts::Hosts;
use common::{Node, Shell, spawn_node_on, wait};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Nodes in the tests (the benchmark runs 10 and 30).
const NODES: usize = 5;
/// Hosts that are not nodes: the researcher's, the auditor's and the victim's; node `i` is
/// on host `FIRST_NODE + i`.
const RESEARCHER: usize = 0;
const AUDITOR: usize = 1;
const VICTIM: usize = 2;
const FIRST_NODE: usize = 3;

/// Node `i`'s address.
fn node_ip(hosts: &Hosts, i: usize) -> String {
    hosts.ip(FIRST_NODE + i)
}
const VICTIM_PORT: u16 = 9000;

/// A TCP server on the victim's host that logs who connected (answers `ok`).
fn victim(hosts: &Hosts) -> Arc<Mutex<Vec<SocketAddr>>> {
    let bind = format!("{}:{VICTIM_PORT}", hosts.ip(VICTIM));
    let listener = hosts
        .within(VICTIM, move || TcpListener::bind(bind))
        .unwrap()
        .unwrap();
    let seen = Arc::new(Mutex::new(vec![]));
    let s = seen.clone();
    std::thread::spawn(move || {
        for mut c in listener.incoming().map_while(Result::ok) {
            if let Ok(peer) = c.peer_addr() {
                s.lock().unwrap().push(peer);
            }
            // A silent client must not stall the server for the others.
            let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut line = String::new();
            let _ = BufReader::new(&c).read_line(&mut line);
            let _ = c.write_all(b"ok\n");
        }
    });
    seen
}

/// An authority, a researcher and a policy that lets slivers reach the victim (a private
/// address: closed to slivers unless the owner opens it).
fn setup(sh: &Shell, hosts: &Hosts) {
    let pk = sh.authority("princeton");
    let policy = format!(
        "[[authority]]\nname = \"princeton\"\npublic_key = \"{pk}\"\n\n[local]\nallow = [\"tcp:{}/32:{VICTIM_PORT}\"]\n",
        hosts.ip(VICTIM)
    );
    sh.write("trust.toml", policy.as_bytes());
    for guest in ["prober", "web_server"] {
        sh.write(
            &format!("{guest}.wasm"),
            &slicefed_sandbox::guests::bytes(guest).unwrap(),
        );
    }
    sh.user("princeton", "princeton.alice");
}

/// `n` nodes, one per host, each listening on its host's address.
fn federation(sh: &Shell, hosts: &Hosts, n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = vec![];
    for i in 0..n {
        let dir = format!("princeton.node{i}");
        sh.certified_node("princeton", &dir);
        let boot = nodes.first().map(|n| n.addr.clone());
        let (child, addr) = spawn_node_on(
            sh,
            Some((hosts, FIRST_NODE + i)),
            &dir,
            "trust.toml",
            boot.as_deref(),
            &[],
        );
        assert!(addr.contains(&node_ip(hosts, i)), "{addr}");
        nodes.push(Node {
            child: Some(child),
            dir,
            addr,
        });
    }
    // Every member is listed with its own host's address by every member, as seen from
    // the researcher's host.
    for node in &nodes {
        members_listed(sh, hosts, &node.addr, n);
    }
    let boot = nodes[0].addr.clone();
    let human = sh
        .run_on(hosts, RESEARCHER, &["nodes", "list", "--node", &boot])
        .ok();
    for i in 0..n {
        let shown = format!("{}:4001", node_ip(hosts, i));
        assert!(human.stdout.contains(&shown), "{}", human.stdout);
    }
    nodes
}

/// Waits until the node at `boot` lists every node with its host's address.
fn members_listed(sh: &Shell, hosts: &Hosts, boot: &str, n: usize) {
    wait("every member listed with its address", 60, || {
        let r = sh.run_on(
            hosts,
            RESEARCHER,
            &["nodes", "list", "--node", boot, "--json"],
        );
        let rows = (r.code == 0).then(|| r.json())?;
        let rows = rows.as_array()?.clone();
        let addrs: BTreeSet<String> = rows
            .iter()
            .flat_map(|x| x["addrs"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(String::from))
            .collect();
        (rows.len() == n
            && (0..n).all(|i| {
                let want = format!("/ip4/{}/tcp/4001/", node_ip(hosts, i));
                addrs.iter().any(|a| a.starts_with(&want))
            }))
        .then_some(())
    });
}

fn peer_id(sh: &Shell, node: &Node) -> String {
    sh.run(&["key", "show", &format!("{}/node.key", node.dir), "--json"])
        .ok()
        .json()["peer_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `audit who` in the auditor's namespace with nothing but `boot`: polled until the node's
/// checkpoint covering the flow is cosigned by a witness; returns the JSON and how long the
/// successful run took.
fn audit(
    sh: &Shell,
    hosts: &Hosts,
    boot: &str,
    remote: &str,
    observed: SocketAddr,
    bundle: &str,
) -> (serde_json::Value, std::time::Duration) {
    let source = observed.to_string();
    let args = [
        "audit",
        "who",
        "--remote",
        remote,
        "--source",
        &source,
        "--bootstrap",
        boot,
        "--bundle-out",
        bundle,
        "--trust",
        "trust.toml",
        "--json",
    ];
    let mut last = String::new();
    wait("a cosigned answer to the complaint", 60, || {
        let started = Instant::now();
        let r = sh.run_on(hosts, AUDITOR, &args);
        let took = started.elapsed();
        if r.code != 0 {
            last = format!("{}{}", r.stdout, r.stderr);
            eprintln!("audit who ({bundle}) not yet: {last}");
            return None;
        }
        let j = r.json();
        let cosigned = j["witnesses"].as_array().is_some_and(|w| !w.is_empty());
        cosigned.then_some((j, took))
    })
}

/// Verifies the bundle with the binary, then every single-byte change of it in process
/// (thousands of variants: spawning the binary for each would take minutes).
fn verify_and_tamper(sh: &Shell, bundle: &str) -> serde_json::Value {
    let v = sh
        .run(&["audit", "verify", bundle, "--trust", "trust.toml", "--json"])
        .ok()
        .json();
    assert_eq!(v["valid"], true, "{v}");
    let policy =
        slicefed_trust::TrustPolicy::parse(std::str::from_utf8(&sh.read("trust.toml")).unwrap())
            .unwrap();
    let bytes = sh.read(bundle);
    let check = |b: &[u8]| {
        slicefed_ledger::bundle::ProofBundle::from_bytes(b).and_then(|x| x.verify(&policy))
    };
    assert!(check(&bytes).is_ok());
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        assert!(
            check(&b).is_err(),
            "byte {i} changed and the bundle still verified"
        );
    }
    // And one changed byte through the binary: refused with one line.
    let mut b = bytes.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    sh.write("changed.bundle", &b);
    sh.run(&["audit", "verify", "changed.bundle", "--trust", "trust.toml"])
        .fails_with("changed.bundle");
    v
}

#[test]
fn an_auditor_with_only_the_network_traces_a_complaint_to_the_person_even_when_the_node_is_dead() {
    let hosts = Hosts::new(FIRST_NODE + NODES).unwrap_or_else(|e| panic!("{e}"));
    let sh = Shell::new();
    setup(&sh, &hosts);
    let seen = victim(&hosts);
    let mut nodes = federation(&sh, &hosts, NODES);
    let boot = nodes[0].addr.clone();

    // The researcher, on a host of their own, starts a prober on every node.
    let target = format!("{}:{VICTIM_PORT}", hosts.ip(VICTIM));
    let connect = format!("tcp:{}/32:{VICTIM_PORT}", hosts.ip(VICTIM));
    create_everywhere(
        &sh,
        &hosts,
        &boot,
        "princeton.probe",
        &[
            "--module",
            "prober.wasm",
            "--connect",
            &connect,
            "--",
            &target,
            "300",
            "0",
        ],
    );

    // The victim's log names every node's own address.
    let node_ips: BTreeSet<String> = (0..NODES).map(|i| node_ip(&hosts, i)).collect();
    wait("connections from all five hosts", 60, || {
        let ips: BTreeSet<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.ip().to_string())
            .collect();
        (ips == node_ips).then_some(())
    });

    // A complaint about a connection picked at random.
    let pick = {
        let v = seen.lock().unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as usize;
        v[nanos % v.len()]
    };
    let origin_index = (0..NODES)
        .find(|i| node_ip(&hosts, *i) == pick.ip().to_string())
        .unwrap();
    let origin = peer_id(&sh, &nodes[origin_index]);
    eprintln!("complaint: {pick} -> {target}, from node {origin_index} ({origin})");

    let (who, took) = audit(&sh, &hosts, &boot, &target, pick, "incident.bundle");
    eprintln!("audit who over the network (node alive): {took:?}");
    assert_eq!(who["node"], origin.as_str(), "{who}");
    assert_eq!(who["slice"], "princeton.probe");
    assert_eq!(who["user"], "princeton.alice");
    assert_eq!(who["authority"], "princeton");
    assert_eq!(who["flow"]["local"], pick.to_string());
    assert!(
        who["evidence_from"]
            .as_str()
            .unwrap()
            .contains("the node itself"),
        "{who}"
    );
    let v = verify_and_tamper(&sh, "incident.bundle");
    assert_eq!(v["user"], "princeton.alice");
    assert_eq!(v["node"], origin.as_str());

    // The node is SIGKILLed: the evidence comes from its witnesses.
    nodes[origin_index].kill();
    let other = (origin_index + 1) % NODES;
    let boot = nodes[other].addr.clone();
    let (who, took) = audit(&sh, &hosts, &boot, &target, pick, "dead.bundle");
    eprintln!("audit who over the network (node dead): {took:?}");
    assert_eq!(who["node"], origin.as_str(), "{who}");
    assert_eq!(who["slice"], "princeton.probe");
    assert_eq!(who["user"], "princeton.alice");
    assert!(
        who["evidence_from"].as_str().unwrap().contains("witness"),
        "{who}"
    );
    let v = verify_and_tamper(&sh, "dead.bundle");
    assert_eq!(v["node"], origin.as_str());
    assert!(!v["witnesses"].as_array().unwrap().is_empty(), "{v}");
}

/// `slice create NAME --nodes all` from the researcher's host, as alice; every node must run
/// it.
fn create_everywhere(sh: &Shell, hosts: &Hosts, boot: &str, slice: &str, extra: &[&str]) {
    create_on(sh, hosts, boot, slice, NODES, extra);
}

/// `slice create NAME --nodes all` from the researcher's host, as alice, in a federation
/// of `n`; all `n` must run it.
fn create_on(sh: &Shell, hosts: &Hosts, boot: &str, slice: &str, n: usize, extra: &[&str]) {
    let mut args = vec![
        "slice",
        "create",
        slice,
        "--nodes",
        "all",
        "--bootstrap",
        boot,
        "--key",
        "princeton.alice.key",
        "--cert",
        "princeton.alice.cert",
        "--json",
    ];
    args.extend(extra);
    let r = sh.run_on(hosts, RESEARCHER, &args).ok().json();
    let running = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "running")
        .count();
    assert_eq!(running, n, "{r}");
}

/// One HTTP GET with curl from the researcher's host: the body and the client's own
/// address and port.
fn get(hosts: &Hosts, url: &str) -> Option<(String, SocketAddr)> {
    let out = hosts
        .command(RESEARCHER, "curl")
        .args([
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "5",
            "--write-out",
            "\n%{local_ip}:%{local_port}",
            url,
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, client) = text.rsplit_once('\n')?;
    Some((body.to_string(), client.parse().ok()?))
}

#[test]
fn a_slice_serves_the_same_port_on_every_node_and_an_inbound_flow_is_traced() {
    let hosts = Hosts::new(FIRST_NODE + NODES).unwrap_or_else(|e| panic!("{e}"));
    let sh = Shell::new();
    setup(&sh, &hosts);
    let nodes = federation(&sh, &hosts, NODES);
    let boot = nodes[0].addr.clone();
    create_everywhere(
        &sh,
        &hosts,
        &boot,
        "princeton.web",
        &[
            "--module",
            "web_server.wasm",
            "--listen",
            "tcp:8080",
            "--env",
            "SLIVER_NAME=princeton.web",
            "--",
            "8080",
        ],
    );
    let url = |i: usize| format!("http://{}:8080/", node_ip(&hosts, i));
    for i in 0..NODES {
        wait("the web server up on every node", 30, || {
            get(&hosts, &url(i))
        });
    }

    // 100 requests spread over the five nodes: every one answered, by the node asked.
    let mut served: Vec<(usize, SocketAddr)> = vec![];
    let started = Instant::now();
    for n in 0..100 {
        let i = n % NODES;
        let (body, client) =
            get(&hosts, &url(i)).unwrap_or_else(|| panic!("request {n} to node {i} failed"));
        assert_eq!(
            body.trim_end(),
            format!("served by princeton.web at {}:8080", node_ip(&hosts, i)),
            "request {n}"
        );
        assert_eq!(client.ip().to_string(), hosts.ip(RESEARCHER));
        served.push((i, client));
    }
    eprintln!("100 requests over 5 nodes: {:?}", started.elapsed());
    // Every node's log holds its 20 inbound flows, as its owner sees them.
    for n in &nodes {
        wait("the inbound flows counted on every node", 30, || {
            let s = own_status(&sh, &n.dir);
            let flows: u64 = s["slivers"]
                .as_array()?
                .iter()
                .filter(|v| v["slice"] == "princeton.web")
                .filter_map(|v| v["flows"].as_u64())
                .sum();
            (flows >= 20).then_some(())
        });
    }

    // A client complains about what node i served it: the inbound flow is in that node's
    // log, attributed to the slice and its holder.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    let (i, client) = served[nanos % served.len()];
    let server: SocketAddr = format!("{}:8080", node_ip(&hosts, i)).parse().unwrap();
    let origin = peer_id(&sh, &nodes[i]);
    let (who, took) = audit(
        &sh,
        &hosts,
        &boot,
        &client.to_string(),
        server,
        "served.bundle",
    );
    eprintln!("audit who of an inbound flow: {took:?}");
    assert_eq!(who["node"], origin.as_str(), "{who}");
    assert_eq!(who["slice"], "princeton.web");
    assert_eq!(who["user"], "princeton.alice");
    assert_eq!(who["flow"]["remote"], client.to_string());
    let v = verify_and_tamper(&sh, "served.bundle");
    assert_eq!(v["node"], origin.as_str());
}

/// Whether a sliver of `slice` runs on the node in `dir`, as its owner sees it (the admin
/// socket answers whatever the network does).
fn runs_here(sh: &Shell, dir: &str, slice: &str) -> bool {
    let s = sh
        .run(&["node", "status", "--dir", dir, slice, "--json"])
        .ok()
        .json();
    s["slivers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["slice"] == slice && v["state"] == "running")
}

#[test]
fn a_node_cut_off_catches_up_on_a_revocation_a_delete_and_its_witnesses_after_the_heal() {
    let hosts = Hosts::new(FIRST_NODE + NODES).unwrap_or_else(|e| panic!("{e}"));
    let sh = Shell::new();
    setup(&sh, &hosts);
    sh.user("princeton", "princeton.bob");
    let _seen = victim(&hosts);
    let nodes = federation(&sh, &hosts, NODES);
    let boot = nodes[0].addr.clone();
    let target = format!("{}:{VICTIM_PORT}", hosts.ip(VICTIM));
    let connect = format!("tcp:{}/32:{VICTIM_PORT}", hosts.ip(VICTIM));
    create_everywhere(
        &sh,
        &hosts,
        &boot,
        "princeton.probe",
        &[
            "--module",
            "prober.wasm",
            "--connect",
            &connect,
            "--",
            &target,
            "300",
            "0",
        ],
    );
    // Bob serves a slice everywhere too; he deletes it during the partition.
    let as_bob = ["--key", "princeton.bob.key", "--cert", "princeton.bob.cert"];
    let mut args = vec![
        "slice",
        "create",
        "princeton.bobweb",
        "--nodes",
        "all",
        "--bootstrap",
        &boot,
        "--module",
        "web_server.wasm",
        "--listen",
        "tcp:8080",
        "--json",
    ];
    args.extend(as_bob);
    args.extend(["--", "8080"]);
    let r = sh.run_on(&hosts, RESEARCHER, &args).ok().json();
    let running = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "running")
        .count();
    assert_eq!(running, NODES, "{r}");
    let cut = NODES - 1;
    let cut_dir = nodes[cut].dir.clone();
    assert!(runs_here(&sh, &cut_dir, "princeton.probe"));
    assert!(runs_here(&sh, &cut_dir, "princeton.bobweb"));

    // The last node's link goes down; on the other side alice is revoked and bob deletes
    // his slice (the delete needs no answer from the node that is cut off).
    hosts.link(FIRST_NODE + cut, false).unwrap();
    sh.revoke("princeton", "princeton.alice.cert", "abuse", "alice.rev");
    sh.run_on(
        &hosts,
        RESEARCHER,
        &["authority", "publish", "alice.rev", "--bootstrap", &boot],
    )
    .ok();
    let mut args = vec!["slice", "delete", "princeton.bobweb", "--bootstrap", &boot];
    args.extend(as_bob);
    sh.run_on(&hosts, RESEARCHER, &args).ok();
    let gone = |dir: &str| {
        !runs_here(&sh, dir, "princeton.probe") && !runs_here(&sh, dir, "princeton.bobweb")
    };
    for n in &nodes[..cut] {
        wait(
            "the revoked and deleted slivers to stop on the connected side",
            30,
            || gone(&n.dir).then_some(()),
        );
    }
    // Cut off, the node has heard of neither.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        runs_here(&sh, &cut_dir, "princeton.probe") && runs_here(&sh, &cut_dir, "princeton.bobweb"),
        "the node that was cut off heard through a link that was down"
    );
    let entries_at_heal = own_status(&sh, &cut_dir)["ledger_entries"]
        .as_u64()
        .unwrap();

    // The link comes back: the node catches up and stops both slivers, and its witnesses
    // replicate and cosign what it logged since.
    hosts.link(FIRST_NODE + cut, true).unwrap();
    let healed = Instant::now();
    wait(
        "the revoked and deleted slivers to stop after the heal",
        60,
        || gone(&cut_dir).then_some(()),
    );
    eprintln!(
        "revoked and deleted slivers stopped on the node that was cut off {:?} after the heal",
        healed.elapsed()
    );
    wait("the node's log since the heal to be cosigned", 60, || {
        let s = own_status(&sh, &cut_dir);
        (s["ledger_entries"].as_u64().unwrap() > entries_at_heal
            && s["cosignatures"].as_u64().unwrap() >= 1)
            .then_some(())
    });
    eprintln!(
        "its log cosigned past the partition {:?} after the heal",
        healed.elapsed()
    );
}

/// The owner's view of the node in `dir` (`node status --json`).
fn own_status(sh: &Shell, dir: &str) -> serde_json::Value {
    sh.run(&["node", "status", "--dir", dir, "--json"])
        .ok()
        .json()
}

/// How long `audit verify` of `bench.bundle` takes (the last step of a complaint).
fn verified(sh: &Shell) -> std::time::Duration {
    let started = Instant::now();
    sh.run(&["audit", "verify", "bench.bundle", "--trust", "trust.toml"])
        .ok();
    started.elapsed()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// `what: p50 X ms, p99 Y ms, max Z ms` over `ms`.
fn summary(what: &str, mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "{what}: n={}, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    )
}

/// Slice creation from the researcher's host (or loopback with `hosts` none), `count`
/// times on all `n` nodes: each command's wall time.
fn creations(sh: &Shell, hosts: Option<&Hosts>, boot: &str, n: usize, count: usize) -> Vec<f64> {
    (0..count)
        .map(|k| {
            let slice = format!("princeton.bench{k}");
            let args = [
                "slice",
                "create",
                &slice,
                "--module",
                "web_server.wasm",
                "--nodes",
                "all",
                "--bootstrap",
                boot,
                "--key",
                "princeton.alice.key",
                "--cert",
                "princeton.alice.cert",
                "--json",
                "--",
                "0",
            ];
            let started = Instant::now();
            let r = match hosts {
                Some(h) => sh.run_on(h, RESEARCHER, &args),
                None => sh.run(&args),
            };
            let took = started.elapsed().as_secs_f64() * 1000.0;
            let j = r.ok().json();
            let running = j["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["status"] == "running")
                .count();
            assert_eq!(running, n, "{j}");
            took
        })
        .collect()
}

/// The figures of issue "real hosts", in one run on this machine:
/// `cargo test --release -p slicefed-cli --test e2e_hosts -- --ignored --nocapture`.
/// Slice creation at 10 and 30 namespaced nodes beside 10 on loopback; `audit who` over the
/// network, complaint to verified bundle, over 20 random complaints at 10 nodes, with the
/// origin alive and then SIGKILLed.
#[test]
#[ignore = "a benchmark: run it with --ignored --nocapture"]
fn bench_real_hosts() {
    const COUNT: usize = 20;
    let mut report = vec![];

    // Loopback, 10 nodes: the before-figure.
    {
        let sh = Shell::new();
        let pk = sh.authority("princeton");
        sh.policy("trust.toml", &[("princeton", &pk)]);
        sh.write(
            "web_server.wasm",
            &slicefed_sandbox::guests::bytes("web_server").unwrap(),
        );
        sh.user("princeton", "princeton.alice");
        let mut nodes: Vec<Node> = vec![];
        for i in 0..10 {
            let dir = format!("princeton.node{i}");
            sh.certified_node("princeton", &dir);
            let boot = nodes.first().map(|n| n.addr.clone());
            let (child, addr) = common::spawn_node(&sh, &dir, "trust.toml", boot.as_deref(), &[]);
            nodes.push(Node {
                child: Some(child),
                dir,
                addr,
            });
        }
        let boot = nodes[0].addr.clone();
        wait("10 loopback members", 60, || {
            let r = sh.run(&["nodes", "list", "--node", &boot, "--json"]);
            (r.code == 0 && r.json().as_array().is_some_and(|a| a.len() == 10)).then_some(())
        });
        let ms = creations(&sh, None, &boot, 10, COUNT);
        report.push(summary("slice create, 10 nodes on loopback", ms));
    }

    for n in [10usize, 30] {
        let hosts = Hosts::new(FIRST_NODE + n).unwrap_or_else(|e| panic!("{e}"));
        let sh = Shell::new();
        setup(&sh, &hosts);
        let seen = victim(&hosts);
        let mut nodes = federation(&sh, &hosts, n);
        let boot = nodes[0].addr.clone();
        let ms = creations(&sh, Some(&hosts), &boot, n, COUNT);
        report.push(summary(&format!("slice create, {n} namespaced nodes"), ms));
        if n != 10 {
            continue;
        }
        let target = format!("{}:{VICTIM_PORT}", hosts.ip(VICTIM));
        let connect = format!("tcp:{}/32:{VICTIM_PORT}", hosts.ip(VICTIM));
        create_on(
            &sh,
            &hosts,
            &boot,
            "princeton.probe",
            n,
            &[
                "--module",
                "prober.wasm",
                "--connect",
                &connect,
                "--",
                &target,
                "200",
                "0",
            ],
        );
        wait("connections from every node", 60, || {
            let ips: BTreeSet<String> = seen
                .lock()
                .unwrap()
                .iter()
                .map(|a| a.ip().to_string())
                .collect();
            (ips.len() == n).then_some(())
        });
        // Until every node's flows are cosigned: the first complaint about each node.
        let mut by_node: Vec<Vec<SocketAddr>> = vec![vec![]; n];
        for a in seen.lock().unwrap().iter() {
            if let Some(i) = (0..n).find(|i| node_ip(&hosts, *i) == a.ip().to_string()) {
                by_node[i].push(*a);
            }
        }
        for (i, list) in by_node.iter().enumerate() {
            audit(
                &sh,
                &hosts,
                &nodes[(i + 1) % n].addr,
                &target,
                list[0],
                "warm.bundle",
            );
        }
        let mut alive = vec![];
        for k in 0..COUNT {
            let i = k % n;
            let pick = by_node[i][k % by_node[i].len()];
            let (_, took) = audit(&sh, &hosts, &boot, &target, pick, "bench.bundle");
            alive.push((took + verified(&sh)).as_secs_f64() * 1000.0);
            verify_and_tamper(&sh, "bench.bundle");
        }
        report.push(summary(
            "audit who over the network, complaint to bundle, origin alive (10 nodes)",
            alive,
        ));
        // Node 3 dies; complaints about its connections come from its witnesses.
        let dead = 3;
        nodes[dead].kill();
        let other = nodes[0].addr.clone();
        let mut gone = vec![];
        for k in 0..COUNT {
            let pick = by_node[dead][k % by_node[dead].len()];
            let (who, took) = audit(&sh, &hosts, &other, &target, pick, "bench.bundle");
            assert!(
                who["evidence_from"].as_str().unwrap().contains("witness"),
                "{who}"
            );
            gone.push((took + verified(&sh)).as_secs_f64() * 1000.0);
            verify_and_tamper(&sh, "bench.bundle");
        }
        report.push(summary(
            "audit who over the network, complaint to bundle, origin SIGKILLed (10 nodes)",
            gone,
        ));
    }
    for line in report {
        println!("{line}");
    }
}
