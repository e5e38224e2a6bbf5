//! The role guides in `docs/guides/` are run as written, so they cannot rot: every ```sh
//! block of a guide, in order, becomes one bash script (`set -euo pipefail`), run in an
//! empty directory with the `slicefed` under test first on `PATH`. The guides check their
//! own results (`grep` for what a user should see), so a guide that no longer describes
//! what slicefed does fails here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The ```sh blocks of a markdown file, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = vec![];
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```sh block");
    blocks
}

fn run_guide(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/guides")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let blocks = shell_blocks(&text);
    assert!(blocks.len() >= 3, "{name} has no runnable steps");
    let script = format!("set -euo pipefail\nset -x\n{}", blocks.join("\n"));
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(common::Shell::bin()).parent().unwrap().to_owned();
    let path_var = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = dir.path().join("guide.out");
    let out_file = std::fs::File::create(&log).unwrap();
    let err_file = out_file.try_clone().unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path_var)
        .env_remove("SLICEFED_BOOTSTRAP")
        .env_remove("SLICEFED_KEY")
        .env_remove("SLICEFED_CERT")
        .env_remove("SLICEFED_TRUST")
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        // Its own process group, so everything it started can be ended with it.
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
    let _ = child.wait();
    let mut out = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let tail: Vec<&str> = out.lines().rev().take(60).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    match status {
        Some(s) if s.success() => {
            let ran = out.lines().filter(|l| l.starts_with("+ slicefed ")).count();
            assert!(ran >= 5, "{name}: only {ran} slicefed commands ran:\n{out}");
        }
        Some(s) => panic!(
            "{name} failed ({s}); the end of its run:\n{}",
            tail.join("\n")
        ),
        None => panic!(
            "{name} did not finish in 300 s; the end of its run:\n{}",
            tail.join("\n")
        ),
    }
}

#[test]
fn the_node_owners_guide_runs_as_written() {
    run_guide("node-owner.md");
}

#[test]
fn the_researchers_guide_runs_as_written() {
    run_guide("researcher.md");
}

#[test]
fn the_auditors_guide_runs_as_written() {
    run_guide("auditor.md");
}

#[test]
fn shell_blocks_are_found_in_order() {
    let md = "text\n```sh\na\nb\n```\n```toml\nx\n```\n```sh\nc\n```\n";
    assert_eq!(shell_blocks(md), vec!["a\nb\n", "c\n"]);
}

/// `docs/CLI.md` lists every verb with its usage line; each must be what the binary says
/// (a flag renamed or a verb dropped fails here), and every verb the binary has is listed.
#[test]
fn the_cli_contract_matches_the_binary() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CLI.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let verbs = text
        .split("## Verbs")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("a code block under ## Verbs");
    let mut listed = vec![];
    for line in verbs.lines().filter(|l| l.starts_with("slicefed ")) {
        let words: Vec<&str> = line
            .split_whitespace()
            .skip(1)
            .take_while(|w| !w.starts_with(['[', '-', '<']))
            .collect();
        let out = Command::new(common::Shell::bin())
            .args(&words)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let usage = help
            .lines()
            .find_map(|l| l.strip_prefix("Usage: "))
            .unwrap_or_default();
        assert_eq!(
            usage,
            line,
            "docs/CLI.md is out of date for `{}`",
            words.join(" ")
        );
        listed.push(words.join(" "));
    }
    // Every verb of every command group is listed.
    let top = Command::new(common::Shell::bin())
        .arg("--help")
        .output()
        .unwrap();
    let commands = |help: &str| -> Vec<String> {
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|c| c != "help")
            .collect()
    };
    for group in commands(&String::from_utf8_lossy(&top.stdout)) {
        let sub = Command::new(common::Shell::bin())
            .args([group.as_str(), "--help"])
            .output()
            .unwrap();
        let subs = commands(&String::from_utf8_lossy(&sub.stdout));
        if subs.is_empty() {
            assert!(
                listed.contains(&group),
                "docs/CLI.md does not list `{group}`"
            );
        }
        for s in subs {
            let verb = format!("{group} {s}");
            assert!(listed.contains(&verb), "docs/CLI.md does not list `{verb}`");
        }
    }
}
