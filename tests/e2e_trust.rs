//! End-to-end: the trust journeys through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
use common::Shell;

/// authority → user → ticket → `cert verify` valid; then revoked → invalid with the reason.
#[test]
fn ticket_verifies_until_its_user_is_revoked() {
    let sh = Shell::new();
    let pk = sh.authority("princeton");
    sh.policy("trust.toml", &[("princeton", &pk)]);
    sh.user("princeton", "princeton.alice");
    sh.write("app.wasm", b"\0asm-not-really");
    sh.run(&[
        "ticket",
        "issue",
        "--key",
        "princeton.alice.key",
        "--cert",
        "princeton.alice.cert",
        "--slice",
        "princeton.codeen",
        "--module",
        "app.wasm",
        "--connect",
        "tcp:127.0.0.1:7000",
        "--memory",
        "64MiB",
        "--out",
        "codeen.ticket",
    ])
    .ok();

    let v = sh
        .run(&[
            "cert",
            "verify",
            "codeen.ticket",
            "--trust",
            "trust.toml",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["responsible"]["user"], "princeton.alice");
    assert_eq!(v["responsible"]["authority"], "princeton");

    let shown = sh
        .run(&["cert", "show", "codeen.ticket", "--json"])
        .ok()
        .json();
    assert_eq!(shown["kind"], "slice ticket");
    assert_eq!(shown["fields"]["slice"], "princeton.codeen");
    assert_eq!(shown["chain"][0]["kind"], "user certificate");

    sh.revoke(
        "princeton",
        "princeton.alice.cert",
        "stolen laptop",
        "alice.rev",
    );
    let r = sh.run(&[
        "cert",
        "verify",
        "codeen.ticket",
        "--trust",
        "trust.toml",
        "--revocation",
        "alice.rev",
        "--json",
    ]);
    assert_eq!(r.code, 1);
    let v = r.json();
    assert_eq!(v["valid"], false);
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("revoked") && reason.contains("stolen laptop"),
        "{reason}"
    );
}

#[test]
fn sub_authority_chain_and_namespace_escape() {
    let sh = Shell::new();
    let pk = sh.authority("princeton");
    sh.policy("trust.toml", &[("princeton", &pk)]);
    sh.run(&["authority", "init", "--name", "princeton.cs", "--out", "cs"])
        .ok();
    sh.run(&[
        "authority",
        "certify",
        "--authority",
        "princeton",
        "--subject",
        "cs/authority.pub",
        "--role",
        "authority",
        "--name",
        "princeton.cs",
        "--out",
        "cs/authority.cert",
    ])
    .ok();
    sh.run(&["key", "gen", "--out", "bob.key"]).ok();
    sh.run(&[
        "authority",
        "certify",
        "--authority",
        "cs",
        "--subject",
        "bob.key",
        "--role",
        "user",
        "--name",
        "princeton.cs.bob",
        "--out",
        "bob.cert",
    ])
    .ok();
    let v = sh
        .run(&[
            "cert",
            "verify",
            "bob.cert",
            "--trust",
            "trust.toml",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v["responsible"]["user"], "princeton.cs.bob");
    assert_eq!(v["responsible"]["authority"], "princeton.cs");
    assert_eq!(v["responsible"]["root"], "princeton");

    // Authority princeton certifying mit.alice: signed, but no node will accept it.
    sh.run(&["key", "gen", "--out", "mallory.key"]).ok();
    sh.run(&[
        "authority",
        "certify",
        "--authority",
        "princeton",
        "--subject",
        "mallory.key",
        "--role",
        "user",
        "--name",
        "mit.alice",
        "--out",
        "mallory.cert",
    ])
    .ok();
    sh.run(&["cert", "verify", "mallory.cert", "--trust", "trust.toml"])
        .fails_with("namespace escape");
}

#[test]
fn untrusted_and_expired() {
    let sh = Shell::new();
    let _ = sh.authority("princeton");
    let other = sh.authority("mit");
    sh.policy("mit-only.toml", &[("mit", &other)]);
    sh.user("princeton", "princeton.alice");
    sh.run(&[
        "cert",
        "verify",
        "princeton.alice.cert",
        "--trust",
        "mit-only.toml",
    ])
    .fails_with("untrusted root");
    let pk = sh
        .run(&["key", "show", "princeton/authority.pub", "--json"])
        .ok()
        .json()["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    sh.policy("trust.toml", &[("princeton", &pk)]);
    sh.run(&[
        "cert",
        "verify",
        "princeton.alice.cert",
        "--trust",
        "trust.toml",
        "--at",
        "2100-01-01T00:00:00Z",
    ])
    .fails_with("expired");
}

/// Every verb that reads a file: garbage, truncated, oversized → exit 1, one line naming
/// the file, no panic, nothing written.
#[test]
fn hostile_files_get_one_line_and_write_nothing() {
    let sh = Shell::new();
    let pk = sh.authority("princeton");
    sh.policy("trust.toml", &[("princeton", &pk)]);
    sh.user("princeton", "princeton.alice");
    sh.write("app.wasm", b"module");
    let good = sh.read("princeton.alice.cert");
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut random = vec![0u8; 300];
    for b in random.iter_mut() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        *b = rng as u8;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random", random),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("oversized", vec![b's'; 200_000]),
        ("empty", vec![]),
        ("trailing", [good.clone(), vec![0]].concat()),
    ];
    for (name, bytes) in &cases {
        let file = format!("{name}.bin");
        sh.write(&file, bytes);
        sh.run(&["cert", "show", &file]).fails_with(&file);
        sh.run(&["cert", "verify", &file, "--trust", "trust.toml"])
            .fails_with(&file);
        sh.run(&[
            "ticket",
            "issue",
            "--key",
            "princeton.alice.key",
            "--cert",
            &file,
            "--slice",
            "princeton.x",
            "--module",
            "app.wasm",
            "--out",
            "never.ticket",
        ])
        .fails_with(&file);
        sh.run(&[
            "authority",
            "revoke",
            "--authority",
            "princeton",
            "--cert",
            &file,
            "--out",
            "never.rev",
        ])
        .fails_with(&file);
        sh.run(&["cert", "verify", "princeton.alice.cert", "--trust", &file])
            .fails_with(&file);
        // As a key file (mode 0600 so the permission check passes and the content is judged).
        let key = format!("{name}.key");
        sh.write(&key, bytes);
        std::fs::set_permissions(
            sh.path(&key),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        sh.run(&[
            "ticket",
            "issue",
            "--key",
            &key,
            "--cert",
            "princeton.alice.cert",
            "--slice",
            "princeton.x",
            "--module",
            "app.wasm",
            "--out",
            "never.ticket",
        ])
        .fails_with(&key);
    }
    assert!(!sh.exists("never.ticket") && !sh.exists("never.rev"));
    // A valid object of the wrong kind, where a user certificate is needed.
    sh.run(&[
        "ticket",
        "issue",
        "--key",
        "princeton.alice.key",
        "--cert",
        "princeton/authority.pub",
        "--slice",
        "princeton.x",
        "--module",
        "app.wasm",
        "--out",
        "never.ticket",
    ])
    .fails_with("not a user certificate");
    // Valid but for another authority's key.
    sh.user("princeton", "princeton.bob");
    sh.run(&[
        "ticket",
        "issue",
        "--key",
        "princeton.alice.key",
        "--cert",
        "princeton.bob.cert",
        "--slice",
        "princeton.x",
        "--module",
        "app.wasm",
        "--out",
        "never.ticket",
    ])
    .fails_with("another key");
    assert!(!sh.exists("never.ticket"));
}

#[test]
fn secret_keys_are_private_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let sh = Shell::new();
    sh.run(&["key", "gen", "--out", "k"]).ok();
    assert_eq!(
        std::fs::metadata(sh.path("k"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let before = sh.read("k");
    sh.run(&["key", "gen", "--out", "k"])
        .fails_with("already exists");
    assert_eq!(sh.read("k"), before);

    sh.authority("princeton");
    sh.run(&[
        "authority",
        "certify",
        "--authority",
        "princeton",
        "--subject",
        "k",
        "--role",
        "user",
        "--name",
        "princeton.k",
        "--out",
        "k.cert",
    ])
    .ok();
    sh.write("m", b"x");
    std::fs::set_permissions(sh.path("k"), std::fs::Permissions::from_mode(0o644)).unwrap();
    sh.run(&[
        "ticket",
        "issue",
        "--key",
        "k",
        "--cert",
        "k.cert",
        "--slice",
        "princeton.s",
        "--module",
        "m",
        "--out",
        "t",
    ])
    .fails_with("readable by group or others");
    assert!(!sh.exists("t"));
}

#[test]
fn usage_errors_exit_2() {
    let sh = Shell::new();
    assert_eq!(sh.run(&["cert", "verify"]).code, 2);
    assert_eq!(sh.run(&["no-such-verb"]).code, 2);
    assert_eq!(
        sh.run(&["authority", "certify", "--role", "wizard"]).code,
        2
    );
}

/// A node owner creates a node and has their authority certify it; the certificate verifies
/// and names the authority.
#[test]
fn node_init_then_certify() {
    let sh = Shell::new();
    let pk = sh.authority("princeton");
    sh.policy("trust.toml", &[("princeton", &pk)]);
    let n = sh
        .run(&[
            "node",
            "init",
            "--dir",
            "node1",
            "--name",
            "princeton.node1",
            "--json",
        ])
        .ok()
        .json();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(sh.path("node1/node.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let subject = n["public_key"].as_str().unwrap().to_string();
    sh.run(&[
        "authority",
        "certify",
        "--authority",
        "princeton",
        "--subject",
        &subject,
        "--role",
        "node",
        "--name",
        "princeton.node1",
        "--out",
        "node1/node.cert",
    ])
    .ok();
    let v = sh
        .run(&[
            "cert",
            "verify",
            "node1/node.cert",
            "--trust",
            "trust.toml",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["responsible"]["authority"], "princeton");
    // Running init again never replaces the key.
    sh.run(&[
        "node",
        "init",
        "--dir",
        "node1",
        "--name",
        "princeton.node1",
    ])
    .fails_with("already exists");
}
