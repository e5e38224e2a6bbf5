#![allow(clippy::expect_used, missing_docs)]
//! Builds the guest slivers in `guests/` for `wasm32-wasip2`, so tests, benchmarks and the
//! devnet never depend on a manual step. Adds the target with rustup when it is missing:
//! these machines set RUSTUP_AUTO_INSTALL=0, so rustup will not do it by itself.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let guests = manifest_dir.join("guests");
    println!("cargo:rerun-if-changed=guests/src");
    println!("cargo:rerun-if-changed=guests/Cargo.toml");
    println!("cargo:rerun-if-changed=build.rs");

    ensure_target();

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = out.join("guests-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--offline",
            "--target",
            TARGET,
            "--manifest-path",
        ])
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags are for the host, not for the guests.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the guest slivers: {e}"));
    if !status.success() {
        panic!("building the guest slivers for {TARGET} failed (see the output above)");
    }
    let dir = target_dir.join(TARGET).join("release");
    println!("cargo:rustc-env=SLICEFED_GUESTS_DIR={}", dir.display());
}

/// Makes sure the standard library for the guest target is installed.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .is_dir()
    {
        return;
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if let Ok(tc) = std::env::var("RUSTUP_TOOLCHAIN") {
        cmd.args(["--toolchain", &tc]);
    }
    match cmd.status() {
        Ok(s) if s.success() => {}
        other => panic!(
            "the {TARGET} target is not installed for {sysroot} and `rustup target add {TARGET}` failed ({other:?}); install it and build again"
        ),
    }
}
