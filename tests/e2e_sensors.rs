//! End-to-end: a node's sensors (`/metrics`), scraped with a real HTTP client (curl) from a
//! running federation and parsed by a real OpenMetrics parser (the `prometheus_client`
//! Python package's, which CI installs): the named families are there, and their values
//! are what the node's other interfaces say.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use common::{Node, Shell, spawn_node, statuses, victim, wait};
use std::io::Write;
use std::process::{Command, Stdio};

/// Parses OpenMetrics text with the `prometheus_client` package's strict parser; returns
/// `{sample name: [{labels, value}]}`.
const PARSER: &str = r#"
import json, sys
try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    sys.exit("this test needs python3 with prometheus_client (pip install prometheus_client)")
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.setdefault(s.name, []).append({"labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

/// GET /metrics of the node in `dir` (its address is in `DIR/metrics.addr`), parsed.
fn scrape(sh: &Shell, dir: &str) -> serde_json::Value {
    let addr = String::from_utf8(sh.read(&format!("{dir}/metrics.addr"))).unwrap();
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "5"])
        .arg(format!("http://{}/metrics", addr.trim()))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut py = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    py.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let parsed = py.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "the OpenMetrics parser refused the scrape: {}\n{}",
        String::from_utf8_lossy(&parsed.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&parsed.stdout).unwrap()
}

/// The value of `name` with exactly these labels (missing: none).
fn value(m: &serde_json::Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    m[name].as_array()?.iter().find_map(|s| {
        let l = s["labels"].as_object()?;
        (l.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| l.get(*k).and_then(|x| x.as_str()) == Some(v)))
        .then(|| s["value"].as_f64())?
    })
}

/// The sum of `name` over every label set.
fn sum(m: &serde_json::Value, name: &str) -> f64 {
    m[name]
        .as_array()
        .map_or(0.0, |v| v.iter().filter_map(|s| s["value"].as_f64()).sum())
}

/// Two nodes, alice's probe slice on both, and a forged ticket refused; returns the nodes
/// and the bootstrap address.
fn a_federation_with_a_slice_and_a_refusal(sh: &Shell) -> (Vec<Node>, String) {
    let pk = sh.authority("princeton");
    sh.policy("trust.toml", &[("princeton", &pk)]);
    sh.write(
        "prober.wasm",
        &slicefed_sandbox::guests::bytes("prober").unwrap(),
    );
    sh.user("princeton", "princeton.alice");
    let mut nodes: Vec<Node> = vec![];
    for dir in ["princeton.node1", "princeton.node2"] {
        sh.certified_node("princeton", dir);
        let boot = nodes.first().map(|n| n.addr.clone());
        let (child, addr) = spawn_node(sh, dir, "trust.toml", boot.as_deref(), &[]);
        nodes.push(Node {
            child: Some(child),
            dir: dir.into(),
            addr,
        });
    }
    let boot = nodes[0].addr.clone();
    wait("both members", 60, || {
        let r = sh.run(&["nodes", "list", "--node", &boot, "--json"]);
        (r.code == 0 && r.json().as_array().is_some_and(|a| a.len() == 2)).then_some(())
    });

    // A slice on both nodes, probing a server.
    let (target, _seen) = victim();
    let port = target.rsplit(':').next().unwrap().to_string();
    let connect = format!("tcp:127.0.0.1/32:{port}");
    sh.run(&[
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
        "--connect",
        &connect,
        "--",
        &target,
        "200",
        "0",
    ])
    .ok();
    // A forged ticket (one character of its slice name changed): refused everywhere.
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
    let r = sh.run(&[
        "slice",
        "create",
        "princeton.honest",
        "--module",
        "prober.wasm",
        "--nodes",
        "all",
        "--bootstrap",
        &boot,
        "--ticket",
        "forged.ticket",
        "--json",
    ]);
    assert!(r.stdout.contains("refused"), "{}", r.stdout);
    (nodes, boot)
}

#[test]
fn a_scrape_parses_and_says_what_runs_who_was_refused_and_why() {
    let sh = Shell::new();
    let (_nodes, boot) = a_federation_with_a_slice_and_a_refusal(&sh);

    // What `slice status` says runs on node 1.
    let running_here = statuses(&sh, &boot, "princeton.probe")
        .iter()
        .filter(|n| n["name"] == "princeton.node1" && n["status"] == "running")
        .count() as f64;
    assert_eq!(running_here, 1.0);

    let m = wait("the sensors to show the slice and the refusal", 30, || {
        let m = scrape(&sh, "princeton.node1");
        let flows = sum(&m, "slicefed_sliver_flows");
        (value(&m, "slicefed_slivers", &[("state", "running")]) == Some(running_here)
            && sum(&m, "slicefed_tickets_refused_total") >= 1.0
            && flows >= 1.0)
            .then_some(m)
    });
    // Every family the owner's guide lists is there.
    for family in [
        "slicefed_members",
        "slicefed_slivers",
        "slicefed_slice_slivers",
        "slicefed_tickets_admitted_total",
        "slicefed_tickets_refused_total",
        "slicefed_revocations_held",
        "slicefed_deletes_held",
        "slicefed_restore_waiting_slivers",
        "slicefed_restore_caught_up_members",
        "slicefed_ledger_entries",
        "slicefed_ledger_pending_appends",
        "slicefed_ledger_append_seconds_bucket",
        "slicefed_ledger_cosignatures",
        "slicefed_witnessed_logs",
        "slicefed_witnessed_entries",
        "slicefed_sliver_cpu_seconds",
        "slicefed_sliver_memory_bytes",
        "slicefed_sliver_flows",
        "slicefed_sliver_sent_bytes",
        "slicefed_sliver_received_bytes",
        "libp2p_bandwidth_bytes_total",
        "libp2p_swarm_connections_incoming_total",
    ] {
        assert!(m.get(family).is_some(), "no {family} in the scrape: {m}");
    }
    // The values are the node's.
    assert_eq!(value(&m, "slicefed_members", &[("state", "ok")]), Some(1.0));
    assert_eq!(
        value(
            &m,
            "slicefed_slice_slivers",
            &[("slice", "princeton.probe")]
        ),
        Some(1.0)
    );
    assert!(value(&m, "slicefed_tickets_admitted_total", &[]).unwrap() >= 1.0);
    let refused: Vec<String> = m["slicefed_tickets_refused_total"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["labels"]["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refused, vec!["bad_signature".to_string()], "{m}");
    assert!(value(&m, "slicefed_ledger_entries", &[]).unwrap() >= 2.0);
    assert!(sum(&m, "slicefed_sliver_memory_bytes") > 0.0);

    // The slice deleted: its series go, the counts follow.
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
    wait("the sensors to drop the deleted slice", 30, || {
        let m = scrape(&sh, "princeton.node1");
        (value(&m, "slicefed_slivers", &[("state", "running")]) == Some(0.0)
            && m.get("slicefed_sliver_flows")
                .is_none_or(|v| v.as_array().is_none_or(|a| a.is_empty()))
            && value(
                &m,
                "slicefed_slice_slivers",
                &[("slice", "princeton.probe")],
            )
            .is_none())
        .then_some(())
    });
}

/// The flow records of the node in `dir` to `to`: (allowed, denial reason).
fn flows_to(sh: &Shell, dir: &str, to: std::net::SocketAddr) -> Vec<(bool, String)> {
    use slicefed_ledger::entry::{Decision, Entry, EntryBody};
    let src = slicefed_ledger::source::LogSource::load(&sh.path(dir)).unwrap();
    let (recs, _) = src.records();
    let r =
        slicefed_ledger::replay::replay(src.origin, &recs, slicefed_ledger::replay::Depth::Full);
    r.entries
        .iter()
        .filter_map(|rec| match Entry::decode(rec.payload).ok()?.body {
            EntryBody::Flow(f) if f.remote == to => Some(match f.decision {
                Decision::Allowed => (true, String::new()),
                Decision::Denied(why) => (false, why),
            }),
            _ => None,
        })
        .collect()
}

#[test]
fn only_a_slice_with_the_sensors_right_reads_its_nodes_sensors() {
    let sh = Shell::new();
    let pk = sh.authority("princeton");
    // The owner opens all of loopback to slivers: the sensors stay closed all the same.
    sh.policy("trust.toml", &[("princeton", &pk)]);
    sh.write(
        "reader.wasm",
        &slicefed_sandbox::guests::bytes("sensors_reader").unwrap(),
    );
    sh.user("princeton", "princeton.alice");
    sh.certified_node("princeton", "princeton.node1");
    let (child, boot) = spawn_node(&sh, "princeton.node1", "trust.toml", None, &[]);
    let _node = Node {
        child: Some(child),
        dir: "princeton.node1".into(),
        addr: boot.clone(),
    };
    let metrics = String::from_utf8(sh.read("princeton.node1/metrics.addr")).unwrap();
    let metrics = metrics.trim().to_string();
    // A slice whose reader asks `target` (an address on the node) twice a second.
    let create = |slice: &str, sensors: bool, target: &str| {
        let mut args = vec![
            "slice",
            "create",
            slice,
            "--module",
            "reader.wasm",
            "--nodes",
            "all",
            "--bootstrap",
            &boot,
            "--key",
            "princeton.alice.key",
            "--cert",
            "princeton.alice.cert",
            "--connect",
            "tcp:127.0.0.0/8:*",
        ];
        if sensors {
            args.push("--sensors");
        }
        args.extend(["--", target, "500"]);
        sh.run(&args).ok();
    };
    create("princeton.monitor", true, &metrics);
    create("princeton.snoop", false, &metrics);
    // The right opens the sensors, not the owner's dashboard (its own port).
    let dashboard = String::from_utf8(sh.read("princeton.node1/dashboard.addr")).unwrap();
    let dashboard = dashboard.trim().to_string();
    create("princeton.peek", true, &dashboard);
    let logs = |slice: &str| {
        sh.run(&[
            "slice",
            "logs",
            slice,
            "--node",
            "princeton.node1",
            "--bootstrap",
            &boot,
            "--key",
            "princeton.alice.key",
        ])
        .ok()
        .stdout
    };
    // With the right: it reads the node's sensors (its own slice among the slivers).
    let seen = wait("the monitor to read the sensors", 30, || {
        let out = logs("princeton.monitor");
        out.contains("slicefed_slivers{state=\"running\"} 3")
            .then_some(out)
    });
    assert!(seen.contains("read "), "{seen}");
    // Without it: refused, and the refusal is a denied flow in the node's log.
    let refused = wait("the snoop to be refused", 30, || {
        let out = logs("princeton.snoop");
        out.contains(&format!("sensors {metrics}:")).then_some(out)
    });
    assert!(!refused.contains("read "), "{refused}");
    let peeked = wait("the peek at the dashboard to be refused", 30, || {
        let out = logs("princeton.peek");
        out.contains(&format!("sensors {dashboard}:"))
            .then_some(out)
    });
    assert!(!peeked.contains("read "), "{peeked}");
    let to: std::net::SocketAddr = metrics.parse().unwrap();
    wait("both slices' flows to the sensors in the log", 30, || {
        let flows = flows_to(&sh, "princeton.node1", to);
        (flows.iter().any(|(ok, _)| *ok)
            && flows
                .iter()
                .any(|(ok, why)| !*ok && why.contains("no right to read")))
        .then_some(())
    });
}

/// CPU seconds the process `pid` has used (user + system, from /proc).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// The cost of the sensors, measured:
/// `cargo test --release -p slicefed-cli --test e2e_sensors -- --ignored --nocapture`.
/// A node running 1,000 idle slivers: how long a scrape takes (goal < 50 ms), and how much
/// the node's CPU rises with a scrape every 5 s against the same minute without (goal
/// < 1% of a core).
#[test]
#[ignore = "a benchmark: run it with --ignored --nocapture"]
fn bench_sensors_of_a_node_with_a_thousand_idle_slivers() {
    const SLIVERS: usize = 1_000;
    let sh = Shell::new();
    let pk = sh.authority("princeton");
    sh.policy("trust.toml", &[("princeton", &pk)]);
    sh.write(
        "sleeper.wasm",
        &slicefed_sandbox::guests::bytes("sleeper").unwrap(),
    );
    sh.user("princeton", "princeton.alice");
    sh.certified_node("princeton", "princeton.node1");
    let mut child = Command::new(Shell::bin())
        .current_dir(sh.dir.path())
        .args(["node", "run", "--dir", "princeton.node1"])
        .args([
            "--cert",
            "princeton.node1/node.cert",
            "--trust",
            "trust.toml",
        ])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--cache", "cache"])
        .args(["--max-slivers", "1100", "--memory", "80GiB"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let boot = {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(out).lines();
        loop {
            let l = lines.next().unwrap().unwrap();
            if let Some(a) = l.strip_prefix("listening on ") {
                break a.to_string();
            }
        }
    };
    let pid = child.id();
    let _node = Node {
        child: Some(child),
        dir: "princeton.node1".into(),
        addr: boot.clone(),
    };
    let started = std::time::Instant::now();
    for i in 0..SLIVERS {
        let slice = format!("princeton.idle{i}");
        sh.run(&[
            "slice",
            "create",
            &slice,
            "--module",
            "sleeper.wasm",
            "--nodes",
            "all",
            "--bootstrap",
            &boot,
            "--key",
            "princeton.alice.key",
            "--cert",
            "princeton.alice.cert",
            "--memory",
            "16MiB",
        ])
        .ok();
    }
    eprintln!("{SLIVERS} slivers started in {:?}", started.elapsed());
    let m = wait("every sliver in the sensors", 120, || {
        let m = scrape(&sh, "princeton.node1");
        (value(&m, "slicefed_slivers", &[("state", "running")]) == Some(SLIVERS as f64))
            .then_some(m)
    });
    assert_eq!(
        m["slicefed_sliver_cpu_seconds"].as_array().unwrap().len(),
        SLIVERS
    );
    let addr = String::from_utf8(sh.read("princeton.node1/metrics.addr")).unwrap();
    let url = format!("http://{}/metrics", addr.trim());
    let get = || {
        let t = std::time::Instant::now();
        let out = Command::new("curl")
            .args([
                "--silent",
                "--fail",
                "--output",
                "/dev/null",
                "--write-out",
                "%{size_download} %{time_total}",
            ])
            .arg(&url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut it = text.split_whitespace();
        let bytes: u64 = it.next().unwrap().parse().unwrap();
        let secs: f64 = it.next().unwrap().parse().unwrap();
        (bytes, secs * 1000.0, t.elapsed())
    };
    let mut ms: Vec<f64> = (0..20).map(|_| get().1).collect();
    ms.sort_by(f64::total_cmp);
    let (bytes, _, _) = get();
    println!(
        "scrape of a node with {SLIVERS} idle slivers ({bytes} bytes): p50 {:.1} ms, max {:.1} ms (goal < 50 ms; {:.0}% of it)",
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        ms[ms.len() - 1] / 50.0 * 100.0
    );
    // The same minute's CPU without scrapes, then with one every 5 s.
    let window = std::time::Duration::from_secs(60);
    let c0 = cpu_seconds(pid);
    std::thread::sleep(window);
    let quiet = (cpu_seconds(pid) - c0) / window.as_secs_f64();
    let c1 = cpu_seconds(pid);
    let t1 = std::time::Instant::now();
    while t1.elapsed() < window {
        get();
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
    let scraped = (cpu_seconds(pid) - c1) / t1.elapsed().as_secs_f64();
    println!(
        "node CPU with {SLIVERS} idle slivers: {:.2}% of a core without scrapes, {:.2}% with one every 5 s: +{:.2}% (goal < 1%)",
        quiet * 100.0,
        scraped * 100.0,
        (scraped - quiet) * 100.0
    );
}

/// Headless Chromium (Debian's package), as root, with the flags that keep it off the
/// network it must not reach.
fn chromium(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("this test needs Debian's chromium package (CI installs it)")
}

#[test]
fn the_dashboard_renders_in_a_real_browser() {
    let sh = Shell::new();
    let (_nodes, _boot) = a_federation_with_a_slice_and_a_refusal(&sh);
    let addr = String::from_utf8(sh.read("princeton.node1/dashboard.addr")).unwrap();
    let url = format!("http://{}/", addr.trim());
    // The board refreshes each tick: wait until it has the slice and the refusal.
    wait(
        "the dashboard to show the slice and the refusal",
        30,
        || {
            let out = Command::new("curl")
                .args(["--silent", "--fail", &url])
                .output()
                .ok()?;
            let page = String::from_utf8_lossy(&out.stdout).into_owned();
            (page.contains("princeton.probe") && page.contains("bad_signature")).then_some(())
        },
    );
    let profile = sh.path("chromium-profile");
    let dom = chromium(&["--dump-dom", &url], &profile);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    // What the browser built from the page: this node's sliver, for whom, the refusal
    // with its reason, the federation and a chart.
    let table = |id: &str| -> String {
        let start = dom
            .find(&format!("<table id=\"{id}\""))
            .unwrap_or_else(|| panic!("no table {id} in the DOM:\n{dom}"));
        let end = dom[start..].find("</table>").unwrap() + start;
        dom[start..end].to_string()
    };
    let slivers = table("slivers");
    assert!(slivers.contains("princeton.probe"), "{slivers}");
    assert!(slivers.contains("princeton.alice"), "{slivers}");
    assert!(slivers.contains("running"), "{slivers}");
    let refusals = table("refusals");
    assert!(refusals.contains("bad_signature"), "{refusals}");
    assert!(refusals.contains("signature"), "{refusals}");
    let members = table("members");
    assert!(members.contains("princeton.node2"), "{members}");
    assert!(
        dom.contains("id=\"chart-slivers\"") && dom.contains("class=\"series\""),
        "no chart in the DOM"
    );
    // Sorting is the server's: by name, node1 before node2.
    let by_name = String::from_utf8_lossy(
        &chromium(&["--dump-dom", &format!("{url}?sort=name")], &profile).stdout,
    )
    .into_owned();
    let (one, two) = (
        by_name.find(">princeton.node1<").unwrap(),
        by_name.find(">princeton.node2<").unwrap(),
    );
    assert!(one < two, "sorted by name: node1 first");
    // A screenshot, as the node owner's guide shows it.
    let shot = sh.path("dashboard.png");
    let out = chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1400",
            "--hide-scrollbars",
            &url,
        ],
        &profile,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    if let Some(to) = std::env::var_os("SLICEFED_DASHBOARD_SCREENSHOT") {
        std::fs::write(to, &png).unwrap();
    }
}
