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

const NODES: usize = 5;
const RESEARCHER: usize = NODES;
const AUDITOR: usize = NODES + 1;
const VICTIM: usize = NODES + 2;
const VICTIM_PORT: u16 = 9000;

/// A TCP server on the victim's host that logs who connected (answers `ok`).
fn victim(hosts: &Hosts) -> Arc<Mutex<Vec<SocketAddr>>> {
    let bind = format!("{}:{VICTIM_PORT}", hosts.ip(VICTIM));
    let listener = hosts.within(VICTIM, move || TcpListener::bind(bind).unwrap());
    let seen = Arc::new(Mutex::new(vec![]));
    let s = seen.clone();
    std::thread::spawn(move || {
        for mut c in listener.incoming().map_while(Result::ok) {
            if let Ok(peer) = c.peer_addr() {
                s.lock().unwrap().push(peer);
            }
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

/// `NODES` nodes, one per host, each listening on its host's address.
fn federation(sh: &Shell, hosts: &Hosts) -> Vec<Node> {
    let mut nodes: Vec<Node> = vec![];
    for i in 0..NODES {
        let dir = format!("princeton.node{i}");
        sh.certified_node("princeton", &dir);
        let boot = nodes.first().map(|n| n.addr.clone());
        let (child, addr) = spawn_node_on(
            sh,
            Some((hosts, i)),
            &dir,
            "trust.toml",
            boot.as_deref(),
            &[],
        );
        assert!(addr.contains(&hosts.ip(i)), "{addr}");
        nodes.push(Node {
            child: Some(child),
            dir,
            addr,
        });
    }
    // Every member is listed with its own host's address by every member, as seen from
    // the researcher's host.
    for n in &nodes {
        members_listed(sh, hosts, &n.addr);
    }
    let boot = nodes[0].addr.clone();
    let human = sh
        .run_on(hosts, RESEARCHER, &["nodes", "list", "--node", &boot])
        .ok();
    for i in 0..NODES {
        let shown = format!("{}:4001", hosts.ip(i));
        assert!(human.stdout.contains(&shown), "{}", human.stdout);
    }
    nodes
}

/// Waits until the node at `boot` lists every node with its host's address.
fn members_listed(sh: &Shell, hosts: &Hosts, boot: &str) {
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
        (rows.len() == NODES
            && (0..NODES).all(|i| {
                let want = format!("/ip4/{}/tcp/4001/", hosts.ip(i));
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
    let hosts = Hosts::new(NODES + 3);
    let sh = Shell::new();
    setup(&sh, &hosts);
    let seen = victim(&hosts);
    let mut nodes = federation(&sh, &hosts);
    let boot = nodes[0].addr.clone();

    // The researcher, on a host of their own, starts a prober on every node.
    let target = format!("{}:{VICTIM_PORT}", hosts.ip(VICTIM));
    let connect = format!("tcp:{}/32:{VICTIM_PORT}", hosts.ip(VICTIM));
    let r = sh
        .run_on(
            &hosts,
            RESEARCHER,
            &[
                "slice",
                "create",
                "princeton.probe",
                "--module",
                "prober.wasm",
                "--nodes",
                "all",
                "--bootstrap",
                &boot,
                "--key",
                "princeton.alice.key",
                "--cert",
                "princeton.alice.cert",
                "--json",
                "--connect",
                &connect,
                "--",
                &target,
                "300",
                "0",
            ],
        )
        .ok()
        .json();
    let running = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "running")
        .count();
    assert_eq!(running, NODES, "{r}");

    // The victim's log names every node's own address.
    let node_ips: BTreeSet<String> = (0..NODES).map(|i| hosts.ip(i)).collect();
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
        .find(|i| hosts.ip(*i) == pick.ip().to_string())
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
    assert_eq!(running, NODES, "{r}");
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
    let hosts = Hosts::new(NODES + 3);
    let sh = Shell::new();
    setup(&sh, &hosts);
    let nodes = federation(&sh, &hosts);
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
    let url = |i: usize| format!("http://{}:8080/", hosts.ip(i));
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
            format!("served by princeton.web at {}:8080", hosts.ip(i)),
            "request {n}"
        );
        assert_eq!(client.ip().to_string(), hosts.ip(RESEARCHER));
        served.push((i, client));
    }
    eprintln!("100 requests over 5 nodes: {:?}", started.elapsed());

    // A client complains about what node i served it: the inbound flow is in that node's
    // log, attributed to the slice and its holder.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    let (i, client) = served[nanos % served.len()];
    let server: SocketAddr = format!("{}:8080", hosts.ip(i)).parse().unwrap();
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
fn a_node_cut_off_during_a_revocation_stops_the_revoked_sliver_after_the_heal() {
    let hosts = Hosts::new(NODES + 3);
    let sh = Shell::new();
    setup(&sh, &hosts);
    let _seen = victim(&hosts);
    let nodes = federation(&sh, &hosts);
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
    let cut = NODES - 1;
    assert!(runs_here(&sh, &nodes[cut].dir, "princeton.probe"));

    // The last node's link goes down; alice is revoked on the other side.
    hosts.link(cut, false);
    sh.run(&[
        "authority",
        "revoke",
        "--authority",
        "princeton",
        "--cert",
        "princeton.alice.cert",
        "--reason",
        "abuse",
        "--out",
        "alice.rev",
    ])
    .ok();
    sh.run_on(
        &hosts,
        RESEARCHER,
        &["authority", "publish", "alice.rev", "--bootstrap", &boot],
    )
    .ok();
    for n in &nodes[..cut] {
        wait(
            "the revoked sliver to stop on the connected side",
            30,
            || (!runs_here(&sh, &n.dir, "princeton.probe")).then_some(()),
        );
    }
    // Cut off, the node has not heard.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        runs_here(&sh, &nodes[cut].dir, "princeton.probe"),
        "the node that was cut off heard of the revocation through a link that was down"
    );

    // The link comes back: the node catches up and stops the sliver.
    hosts.link(cut, true);
    let healed = Instant::now();
    wait("the revoked sliver to stop after the heal", 60, || {
        (!runs_here(&sh, &nodes[cut].dir, "princeton.probe")).then_some(())
    });
    eprintln!(
        "revoked sliver stopped on the node that was cut off {:?} after the heal",
        healed.elapsed()
    );
}
