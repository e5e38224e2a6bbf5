//! The sans-IO boundary, checked by the compiler's own dependency resolution: the protocol
//! machines' crate and the simulator build without any IO or networking crate, so the
//! simulator runs exactly the node logic and nothing of the daemon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// Crates that do IO, networking or run code: none may be in these trees.
const FORBIDDEN: [&str; 5] = ["tokio", "libp2p", "wasmtime", "sled", "mio"];

fn normal_dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
        ])
        .arg(package)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn the_protocol_machines_and_the_simulator_depend_on_no_io_crate() {
    for package in ["slicefed-proto", "slicefed-simulations"] {
        let deps = normal_dependencies(package);
        assert!(deps.iter().any(|d| d == package), "{package}: {deps:?}");
        let bad: Vec<&String> = deps
            .iter()
            .filter(|d| {
                FORBIDDEN
                    .iter()
                    .any(|f| d.as_str() == *f || d.starts_with(&format!("{f}-")))
            })
            .collect();
        assert!(bad.is_empty(), "{package} depends on {bad:?}");
    }
    // And the daemon does (the check would catch nothing if cargo tree said nothing).
    let daemon = normal_dependencies("slicefed-peer");
    assert!(daemon.iter().any(|d| d == "libp2p"), "{daemon:?}");
}
