//! Real wasmtime, real guests, real sockets: each hostile guest is stopped with its precise
//! reason while a well-behaved sliver on the same engine keeps answering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use slicefed_ledger::entry::{Attribution, Decision, Direction};
use slicefed_sandbox::{
    CollectFlows, KillReason, NoFlows, Outcome, Sandbox, SandboxConfig, SliverSpec, Stdio, guests,
};
use slicefed_trust::caps::{ConnectRule, ListenRule, NetworkRights, RuleSet};
use slicefed_trust::fixtures::name;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn sandbox() -> &'static Sandbox {
    static SB: OnceLock<(tempfile::TempDir, Sandbox)> = OnceLock::new();
    &SB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut c = SandboxConfig::new(dir.path());
        c.max_slivers = 32;
        let sb = Sandbox::new(c).unwrap();
        (dir, sb)
    })
    .1
}

fn spec(args: &[&str]) -> SliverSpec {
    SliverSpec {
        who: Attribution {
            slice: name("princeton.codeen"),
            sliver: 0,
            user: Some(name("princeton.alice")),
            authority: Some(name("princeton")),
        },
        memory: 64 << 20,
        cpu_share: 1,
        cpu_limit: None,
        lifetime: Some(Duration::from_secs(60)),
        network: NetworkRights::none(),
        egress_per_day: None,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![("SLICE".into(), "princeton.codeen".into())],
        stdio: Stdio::Capture(64 << 10),
        dir: None,
        flows: Arc::new(NoFlows),
        // Tests talk to servers on loopback, which a node owner must open explicitly.
        host: Arc::new(std::sync::RwLock::new(slicefed_sandbox::HostRules {
            local_allow: vec![
                slicefed_trust::caps::ConnectRule::parse("tcp:127.0.0.0/8:*").unwrap(),
                slicefed_trust::caps::ConnectRule::parse("udp:127.0.0.0/8:*").unwrap(),
            ],
            ..Default::default()
        })),
    }
}

fn run(guest: &str, s: SliverSpec) -> (Outcome, slicefed_sandbox::SliverHandle) {
    let sb = sandbox();
    let c = sb.compile(&guests::bytes(guest).unwrap()).unwrap();
    let h = sb.spawn(c, s).unwrap();
    let o = h
        .wait_timeout(Duration::from_secs(60))
        .expect("sliver did not end in 60 s");
    (o, h)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn hello_runs_and_its_output_is_captured() {
    let (o, h) = run("hello", spec(&["a", "b"]));
    assert_eq!(o, Outcome::Exited(0));
    let out = String::from_utf8(h.stdout.as_ref().unwrap().contents()).unwrap();
    assert!(
        out.contains("hello from a sliver of princeton.codeen"),
        "{out}"
    );
    assert!(out.contains("[\"a\", \"b\"]"), "{out}");
}

#[test]
fn a_cpu_hog_is_stopped_at_its_lifetime_and_at_its_cpu_limit() {
    let mut s = spec(&[]);
    s.lifetime = Some(Duration::from_millis(300));
    assert_eq!(run("cpu_hog", s).0, Outcome::Killed(KillReason::Lifetime));
    let mut s = spec(&[]);
    s.cpu_limit = Some(Duration::from_millis(200));
    let (o, h) = run("cpu_hog", s);
    assert_eq!(o, Outcome::Killed(KillReason::Cpu));
    assert!(h.usage().cpu >= Duration::from_millis(200));
}

#[test]
fn a_memory_bomb_is_stopped_for_memory() {
    let (o, h) = run("memory_bomb", spec(&[]));
    assert_eq!(o, Outcome::Killed(KillReason::Memory));
    assert!(h.usage().peak_memory <= 64 << 20);
}

/// The cap holds to the byte: a guest that needs exactly P bytes runs with a cap of P and is
/// stopped with a cap of P - 1.
#[test]
fn the_memory_cap_holds_to_the_byte() {
    let mut s = spec(&["8000000"]);
    s.memory = 256 << 20;
    let (o, h) = run("memory_bomb", s);
    assert_eq!(o, Outcome::Exited(0));
    let need = h.usage().peak_memory;
    assert!(need >= 8_000_000, "{need}");
    let mut s = spec(&["8000000"]);
    s.memory = need;
    let (o, h) = run("memory_bomb", s);
    assert_eq!(o, Outcome::Exited(0), "cap = need");
    assert_eq!(h.usage().peak_memory, need);
    let mut s = spec(&["8000000"]);
    s.memory = need - 1;
    let (o, h) = run("memory_bomb", s);
    assert_eq!(o, Outcome::Killed(KillReason::Memory), "cap = need - 1");
    assert!(h.usage().peak_memory < need);
}

#[test]
fn a_stack_overflow_traps() {
    match run("stack_overflow", spec(&[])).0 {
        Outcome::Trapped(t) => assert!(t.contains("stack"), "{t}"),
        o => panic!("{o}"),
    }
}

#[test]
fn a_log_spammer_keeps_only_its_buffer() {
    let mut s = spec(&[]);
    s.lifetime = Some(Duration::from_millis(500));
    s.stdio = Stdio::Capture(4096);
    let (o, h) = run("log_spammer", s);
    assert_eq!(o, Outcome::Killed(KillReason::Lifetime));
    let log = h.stdout.as_ref().unwrap();
    assert!(log.contents().len() <= 4096);
    let (written, dropped) = log.counts();
    assert!(
        written > 100_000 && dropped > 0,
        "written {written}, dropped {dropped}"
    );
}

#[test]
fn a_stopped_sliver_reports_who_stopped_it() {
    let sb = sandbox();
    let c = sb.compile(&guests::bytes("sleeper").unwrap()).unwrap();
    let h = sb.spawn(c, spec(&[])).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(h.outcome(), None);
    h.stop(KillReason::Expired);
    assert_eq!(
        h.wait_timeout(Duration::from_secs(10)),
        Some(Outcome::Killed(KillReason::Expired))
    );
}

#[test]
fn a_forbidden_connect_is_denied_in_the_guest_and_recorded() {
    let flows = Arc::new(CollectFlows::default());
    let mut s = spec(&["192.0.2.1:25"]);
    s.network = NetworkRights {
        connect: RuleSet::Only(vec![ConnectRule::parse("tcp:127.0.0.1:7000").unwrap()]),
        listen: RuleSet::Only(vec![]),
        sensors: false,
    };
    s.flows = flows.clone();
    let (o, h) = run("forbidden_connect", s);
    assert_eq!(
        o,
        Outcome::Exited(0),
        "{}",
        String::from_utf8_lossy(&h.stdout.as_ref().unwrap().contents())
    );
    let f = flows.flows();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].remote, "192.0.2.1:25".parse().unwrap());
    assert!(matches!(&f[0].decision, Decision::Denied(r) if r.contains("192.0.2.1:25")));
    assert_eq!(f[0].who.user.as_ref().unwrap().as_str(), "princeton.alice");
    assert_eq!(h.usage().flows_denied, 1);
}

#[test]
fn an_allowed_connect_reaches_a_real_server_and_is_recorded() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut c, peer) = server.accept().unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        c.write_all(&buf).unwrap();
        peer
    });
    let flows = Arc::new(CollectFlows::default());
    let mut s = spec(&[&addr.to_string(), "ping"]);
    s.network = NetworkRights {
        connect: RuleSet::Only(vec![
            ConnectRule::parse(&format!("tcp:127.0.0.1:{}", addr.port())).unwrap(),
        ]),
        listen: RuleSet::Only(vec![]),
        sensors: false,
    };
    s.flows = flows.clone();
    let (o, h) = run("tcp_client", s);
    let out = String::from_utf8_lossy(&h.stdout.as_ref().unwrap().contents()).into_owned();
    assert_eq!(
        o,
        Outcome::Exited(0),
        "{out} {}",
        String::from_utf8_lossy(&h.stderr.as_ref().unwrap().contents())
    );
    assert!(out.contains("echo: ping"), "{out}");
    let peer = echo.join().unwrap();
    // The connection's own record (with its real local address and bytes), and the count
    // of connect attempts to that destination (an attempt sends packets even when it fails).
    let all = flows.flows();
    let (f, attempts): (Vec<_>, Vec<_>) = all.iter().cloned().partition(|r| r.local.port() != 0);
    assert_eq!((f.len(), attempts.len()), (1, 1), "{all:?}");
    assert_eq!((attempts[0].remote, attempts[0].packets_out), (addr, 1));
    assert_eq!(f[0].remote, addr);
    assert_eq!(f[0].decision, Decision::Allowed);
    assert_eq!(f[0].direction, Direction::Outbound);
    // The record names the address the server saw, and the exact bytes each way.
    assert_eq!(
        f[0].local, peer,
        "the flow's local address is the one the server saw"
    );
    assert_eq!((f[0].bytes_out, f[0].bytes_in), (4, 4));
    assert!(f[0].last_ms >= f[0].first_ms);
    assert_eq!((h.usage().bytes_out, h.usage().bytes_in), (4, 4));
    assert!(
        out.contains(&format!(":{}", peer.port())),
        "{out} vs {peer}"
    );
}

#[test]
fn a_ticket_granting_loopback_still_cannot_reach_the_owners_machine_by_default() {
    // A real server on the owner's loopback that the sliver's rights name exactly.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let addr = server.local_addr().unwrap();
    let flows = Arc::new(CollectFlows::default());
    let mut s = spec(&[&addr.to_string(), "ping"]);
    s.network = NetworkRights {
        connect: RuleSet::Only(vec![ConnectRule::parse("tcp:0.0.0.0/0:*").unwrap()]),
        listen: RuleSet::Only(vec![]),
        sensors: false,
    };
    // The owner's default: nothing local is open.
    s.host = Arc::new(std::sync::RwLock::new(
        slicefed_sandbox::HostRules::default(),
    ));
    s.flows = flows.clone();
    let (_, h) = run("tcp_client", s);
    assert!(
        server.accept().is_err(),
        "the server on loopback must never see the sliver"
    );
    let f = flows.flows();
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        matches!(&f[0].decision, Decision::Denied(r) if r.contains("loopback") && r.contains("[local] allow")),
        "{:?}",
        f[0].decision
    );
    assert_eq!(h.usage().flows_denied, 1);
}

fn stdout_of(h: &slicefed_sandbox::SliverHandle) -> String {
    String::from_utf8_lossy(&h.stdout.as_ref().unwrap().contents()).into_owned()
}

#[test]
fn a_sliver_holds_at_most_its_share_of_sockets() {
    let mut s = spec(&["sockets", "1000"]);
    s.network = NetworkRights {
        connect: RuleSet::Only(vec![ConnectRule::parse("udp:0.0.0.0/0:53").unwrap()]),
        listen: RuleSet::Only(vec![]),
        sensors: false,
    };
    // A sandbox of its own, so the node-wide count is this sliver's alone.
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::new(SandboxConfig::new(dir.path())).unwrap();
    let c = sb.compile(&guests::bytes("net_hog").unwrap()).unwrap();
    let h = sb.spawn(c, s).unwrap();
    let o = h.wait_timeout(Duration::from_secs(60)).expect("ended");
    assert_eq!(o, Outcome::Exited(0));
    let out = stdout_of(&h);
    assert!(
        out.contains(&format!(
            "held {} sockets",
            slicefed_sandbox::sockets::MAX_SOCKETS_PER_SLIVER
        )),
        "{out}"
    );
    // Every socket came back when the sliver ended.
    assert_eq!(sb.sockets(), 0);
}

#[test]
fn datagrams_are_recorded_per_destination_with_their_bytes_and_count_against_egress() {
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = receiver.local_addr().unwrap();
    let flows = Arc::new(CollectFlows::default());
    let mut s = spec(&["udp", &to.to_string(), "500", "100"]);
    s.network = NetworkRights {
        connect: RuleSet::Only(vec![
            ConnectRule::parse(&format!("udp:127.0.0.1:{}", to.port())).unwrap(),
        ]),
        listen: RuleSet::Only(vec![]),
        sensors: false,
    };
    s.flows = flows.clone();
    let (o, h) = run("net_hog", s);
    assert_eq!(o, Outcome::Exited(0), "{}", stdout_of(&h));
    let out = stdout_of(&h);
    assert!(out.contains("sent 500 datagrams"), "{out}");
    // One record for the destination, not five hundred, with the count and the bytes.
    let f = flows.flows();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].remote, to);
    assert_eq!(f[0].decision, Decision::Allowed);
    assert_eq!((f[0].packets_out, f[0].bytes_out), (500, 50_000));
    assert_eq!(h.usage().bytes_out, 50_000);

    // Datagrams count against the daily egress cap like TCP bytes do.
    let mut s = spec(&["udp", &to.to_string(), "500", "100"]);
    s.network = NetworkRights {
        connect: RuleSet::Only(vec![
            ConnectRule::parse(&format!("udp:127.0.0.1:{}", to.port())).unwrap(),
        ]),
        listen: RuleSet::Only(vec![]),
        sensors: false,
    };
    s.egress_per_day = Some(10_000);
    let (o, h) = run("net_hog", s);
    assert_eq!(o, Outcome::Killed(KillReason::Egress), "{}", stdout_of(&h));
    assert!(h.usage().bytes_out <= 10_000);
}

#[test]
fn refused_attempts_are_aggregated_not_logged_one_by_one() {
    let flows = Arc::new(CollectFlows::default());
    let mut s = spec(&["connects", "192.0.2.1:25", "300"]);
    s.network = NetworkRights {
        connect: RuleSet::Only(vec![ConnectRule::parse("tcp:127.0.0.1:7000").unwrap()]),
        listen: RuleSet::Only(vec![]),
        sensors: false,
    };
    s.flows = flows.clone();
    let (o, h) = run("net_hog", s);
    assert_eq!(o, Outcome::Exited(0));
    assert!(
        stdout_of(&h).contains("300 connects failed"),
        "{}",
        stdout_of(&h)
    );
    let f = flows.flows();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].packets_out, 300);
    assert!(matches!(&f[0].decision, Decision::Denied(_)));
    assert_eq!(h.usage().flows_denied, 300);
}

#[test]
fn a_sliver_making_records_too_fast_is_stopped_and_every_record_is_kept() {
    // A scan of denied destinations: each port is its own destination, its own record.
    let flows = Arc::new(CollectFlows::default());
    let mut s = spec(&["scan", "192.0.2.1", "20000"]);
    s.network = NetworkRights {
        connect: RuleSet::Only(vec![ConnectRule::parse("tcp:127.0.0.1:7000").unwrap()]),
        listen: RuleSet::Only(vec![]),
        sensors: false,
    };
    s.flows = flows.clone();
    let (o, _) = run("net_hog", s);
    assert_eq!(o, Outcome::Killed(KillReason::Flows));
    let n = flows.flows().len() as u64;
    assert!(
        n > slicefed_sandbox::net::MAX_FLOW_RECORDS_PER_MINUTE,
        "{n} records: every attempt up to the kill is recorded"
    );
}

#[test]
fn the_daily_egress_cap_stops_the_sliver() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut c, _) = server.accept().unwrap();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        buf.len()
    });
    let flows = Arc::new(CollectFlows::default());
    let mut s = spec(&[&addr.to_string(), "more than ten bytes"]);
    s.network = NetworkRights {
        connect: RuleSet::Only(vec![
            ConnectRule::parse(&format!("tcp:127.0.0.1:{}", addr.port())).unwrap(),
        ]),
        listen: RuleSet::Only(vec![]),
        sensors: false,
    };
    s.egress_per_day = Some(10);
    s.flows = flows.clone();
    let (o, _) = run("tcp_client", s);
    assert_eq!(o, Outcome::Killed(KillReason::Egress));
    assert_eq!(
        t.join().unwrap(),
        0,
        "nothing past the cap reached the server"
    );
    let f: Vec<_> = flows
        .flows()
        .into_iter()
        .filter(|r| r.local.port() != 0)
        .collect();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].bytes_out, 0);
}

/// A real client reaches a listening sliver on an allowed port and cannot on another, and the
/// listener keeps answering while hostile slivers are stopped around it.
#[test]
fn a_listening_sliver_answers_while_hostile_slivers_are_stopped() {
    let port = free_port();
    let flows = Arc::new(CollectFlows::default());
    let mut s = spec(&[&port.to_string()]);
    s.network = NetworkRights {
        connect: RuleSet::Only(vec![]),
        listen: RuleSet::Only(vec![ListenRule::parse(&format!("tcp:{port}")).unwrap()]),
        sensors: false,
    };
    s.flows = flows.clone();
    let sb = sandbox();
    let echo = sb
        .spawn(sb.compile(&guests::bytes("tcp_echo").unwrap()).unwrap(), s)
        .unwrap();
    let ask = |msg: &str| -> String {
        for _ in 0..100 {
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                c.write_all(msg.as_bytes()).unwrap();
                let mut buf = vec![0u8; msg.len()];
                c.read_exact(&mut buf).unwrap();
                return String::from_utf8(buf).unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the echo sliver never listened");
    };
    assert_eq!(ask("first"), "first");

    // Hostile neighbours, all at once.
    let mut hog = spec(&[]);
    hog.lifetime = Some(Duration::from_millis(1500));
    let mut spam = spec(&[]);
    spam.lifetime = Some(Duration::from_millis(1500));
    let hostile: Vec<_> = [
        ("cpu_hog", hog),
        ("memory_bomb", spec(&[])),
        ("stack_overflow", spec(&[])),
        ("log_spammer", spam),
    ]
    .into_iter()
    .map(|(g, s)| {
        (
            g,
            sb.spawn(sb.compile(&guests::bytes(g).unwrap()).unwrap(), s)
                .unwrap(),
        )
    })
    .collect();
    for i in 0..5 {
        assert_eq!(ask(&format!("during {i}")), format!("during {i}"));
        std::thread::sleep(Duration::from_millis(100));
    }
    for (g, h) in &hostile {
        let o = h.wait_timeout(Duration::from_secs(30)).unwrap();
        let expected_ok = match *g {
            "cpu_hog" | "log_spammer" => o == Outcome::Killed(KillReason::Lifetime),
            "memory_bomb" => o == Outcome::Killed(KillReason::Memory),
            "stack_overflow" => matches!(o, Outcome::Trapped(ref t) if t.contains("stack")),
            _ => false,
        };
        assert!(expected_ok, "{g}: {o}");
    }
    assert_eq!(ask("after"), "after");
    echo.stop(KillReason::Stopped);
    assert_eq!(
        echo.wait_timeout(Duration::from_secs(10)),
        Some(Outcome::Killed(KillReason::Stopped))
    );
    let inbound = flows
        .flows()
        .iter()
        .filter(|f| f.direction == Direction::Inbound)
        .count();
    assert!(
        inbound >= 7,
        "every accepted connection is a flow record: {inbound}"
    );

    // Listening on a port the slice was not granted: permission denied in the guest. (WASI
    // 0.2's exit carries only success or failure, so the guest's message says which.)
    let other = free_port();
    let mut s = spec(&[&other.to_string()]);
    s.network = NetworkRights {
        connect: RuleSet::Only(vec![]),
        listen: RuleSet::Only(vec![ListenRule::parse(&format!("tcp:{port}")).unwrap()]),
        sensors: false,
    };
    let (o, h) = run("tcp_echo", s);
    assert_eq!(o, Outcome::Exited(1));
    let err = String::from_utf8_lossy(&h.stderr.as_ref().unwrap().contents()).into_owned();
    assert!(
        err.contains(&format!("listen {other}: permission denied")),
        "{err}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", other)).is_err(),
        "nothing listens on the refused port"
    );
}

/// CPU-bound slivers share the cores by weight. The precise figure (±10% goal) is in the
/// bench; this test asserts only the order and a generous ratio, never a timing.
#[test]
fn cpu_is_shared_by_weight() {
    let sb = sandbox();
    let c = sb.compile(&guests::bytes("cpu_hog").unwrap()).unwrap();
    let hogs: Vec<_> = [1u32, 4]
        .iter()
        .map(|w| {
            let mut s = spec(&[]);
            s.cpu_share = *w;
            s.lifetime = Some(Duration::from_millis(1500));
            sb.spawn(c.clone(), s).unwrap()
        })
        .collect();
    // Two more hogs so the two workers are always oversubscribed.
    let fillers: Vec<_> = (0..2)
        .map(|_| {
            let mut s = spec(&[]);
            s.cpu_share = 1;
            s.lifetime = Some(Duration::from_millis(1500));
            sb.spawn(c.clone(), s).unwrap()
        })
        .collect();
    for h in hogs.iter().chain(&fillers) {
        h.wait_timeout(Duration::from_secs(30)).unwrap();
    }
    let (light, heavy) = (
        hogs[0].usage().cpu.as_secs_f64(),
        hogs[1].usage().cpu.as_secs_f64(),
    );
    assert!(
        heavy > light * 1.5,
        "weight 4 got {heavy:.3}s, weight 1 got {light:.3}s"
    );
}
