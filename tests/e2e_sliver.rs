//! End-to-end: `slicefed sliver run` runs real guest components; with `--ledger` its flows
//! and lifecycle land in a ledger that `audit replay` accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use common::Shell;
use slicefed_sandbox::guests;
use std::io::{Read, Write};
use std::net::TcpListener;

fn guest(name: &str) -> String {
    guests::path(name).display().to_string()
}

#[test]
fn hello_runs_with_args_and_env() {
    let sh = Shell::new();
    let r = sh
        .run(&[
            "sliver",
            "run",
            &guest("hello"),
            "--env",
            "SLICE=princeton.codeen",
            "--",
            "one",
            "two",
        ])
        .ok();
    assert!(
        r.stdout.contains("hello from a sliver of princeton.codeen"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("[\"one\", \"two\"]"), "{}", r.stdout);
}

/// The guest's stderr is the command's, so slicefed's own reason is the last line.
#[test]
fn stopped_slivers_exit_1_with_the_reason() {
    let sh = Shell::new();
    for (args, reason) in [
        (
            vec![guest("memory_bomb"), "--memory".into(), "16MiB".into()],
            "killed(memory)",
        ),
        (
            vec![guest("cpu_hog"), "--timeout".into(), "300ms".into()],
            "killed(lifetime)",
        ),
        (
            vec![guest("cpu_hog"), "--cpu-limit".into(), "200ms".into()],
            "killed(cpu)",
        ),
        (vec![guest("stack_overflow")], "stack"),
    ] {
        let mut all = vec!["sliver", "run"];
        all.extend(args.iter().map(String::as_str));
        let r = sh.run(&all);
        assert_eq!(r.code, 1, "{all:?}: {}", r.stderr);
        // The guest's own stderr comes first and may end mid-line (a failed allocation's
        // message is cut short), so the reason is looked for in what follows it.
        let last = r.stderr.trim_end().lines().last().unwrap_or_default();
        let ours = last
            .find("error: the sliver was stopped")
            .map(|at| &last[at..])
            .unwrap_or_default();
        assert!(ours.contains(reason), "{all:?}: {last}");
    }
}

#[test]
fn flows_land_in_a_ledger_that_replays() {
    let sh = Shell::new();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut c, _) = server.accept().unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        c.write_all(&b).unwrap();
    });
    let rule = format!("tcp:127.0.0.1:{}", addr.port());
    let r = sh
        .run(&[
            "sliver",
            "run",
            &guest("tcp_client"),
            "--connect",
            &rule,
            "--ledger",
            "node",
            "--",
            &addr.to_string(),
            "ping",
        ])
        .ok();
    assert!(r.stdout.contains("echo: ping"), "{}", r.stdout);
    t.join().unwrap();
    // A denied connect by the same node.
    sh.run(&[
        "sliver",
        "run",
        &guest("forbidden_connect"),
        "--connect",
        &rule,
        "--ledger",
        "node",
        "--",
        "192.0.2.1:25",
    ])
    .ok();
    let v = sh.run(&["audit", "replay", "node", "--json"]).ok().json();
    assert_eq!(v["valid"], true);
    // The first run: owner action, its connect attempts to the server, the connection,
    // stop; the second: owner action, the denied attempt, stop.
    assert_eq!(v["logs"][0]["entries"], 7);
    assert_eq!(v["logs"][0]["checkpointed"], 7);
}

#[test]
fn a_file_that_is_not_a_component_gets_one_line() {
    let sh = Shell::new();
    sh.write("junk.wasm", &[0x42; 500]);
    sh.run(&["sliver", "run", "junk.wasm"])
        .fails_with("junk.wasm");
    sh.run(&["sliver", "run", "missing.wasm"])
        .fails_with("missing.wasm");
}
