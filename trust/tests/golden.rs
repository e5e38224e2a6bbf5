//! Golden vectors: the exact bytes of one object of every kind, from fixed keys. A change
//! here is a wire-format change: bump the envelope version or a kind's tag, never silently.
//! Regenerate deliberately with `SLICEFED_BLESS=1 cargo test -p slicefed-trust --test golden`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use slicefed_trust::caps::{
    ConnectRule, ListenRule, NodeSet, ResourceCaps, Rights, RuleSet, Validity,
};
use slicefed_trust::fixtures::{DAY, T0, key, name, open_grant, ticket_body};
use slicefed_trust::objects::{
    self, AuthorityCert, AuthorityRoot, CertId, Credential, Delegation, NodeCert, NodeReceipt,
    Revocation, SliceDelete, UserCert,
};
use slicefed_trust::verify::open_any;
use slicefed_trust::{Kind, Pattern};
use std::path::PathBuf;

fn vectors() -> Vec<(&'static str, Vec<u8>)> {
    let (root, sub, alice, node, service) = (key(1), key(2), key(3), key(4), key(5));
    let mut user_grant = open_grant(Rights::CREATE.union(Rights::DELEGATE));
    user_grant.caps = ResourceCaps {
        memory: Some(256 << 20),
        cpu_share: Some(4),
        max_slivers: Some(100),
        egress_per_day: Some(10_000_000_000),
    };
    user_grant.network.connect =
        RuleSet::Only(vec![ConnectRule::parse("tcp:0.0.0.0/0:*").unwrap()]);
    user_grant.network.listen = RuleSet::Only(vec![ListenRule::parse("tcp:8000-8999").unwrap()]);
    let mut ticket = ticket_body("princeton.codeen", 7);
    ticket.nodes = NodeSet::only(vec![node.public()]);
    ticket.network.connect =
        RuleSet::Only(vec![ConnectRule::parse("tcp:127.0.0.1/32:7000").unwrap()]);
    vec![
        (
            "authority-root",
            objects::sign(
                &root,
                &AuthorityRoot {
                    name: name("princeton"),
                    created: T0,
                },
            )
            .unwrap()
            .bytes,
        ),
        (
            "authority-certificate",
            objects::sign(
                &root,
                &AuthorityCert {
                    subject: sub.public(),
                    namespace: name("princeton.cs"),
                    grant: open_grant(Rights::ALL),
                },
            )
            .unwrap()
            .bytes,
        ),
        (
            "user-certificate",
            objects::sign(
                &root,
                &UserCert {
                    subject: alice.public(),
                    name: name("princeton.alice"),
                    slices: Pattern::parse("princeton.*").unwrap(),
                    grant: user_grant.clone(),
                },
            )
            .unwrap()
            .bytes,
        ),
        (
            "node-certificate",
            objects::sign(
                &root,
                &NodeCert {
                    subject: node.public(),
                    name: name("princeton.node1"),
                    validity: Validity::starting(T0, DAY),
                },
            )
            .unwrap()
            .bytes,
        ),
        (
            "delegation",
            objects::sign(
                &alice,
                &Delegation {
                    subject: service.public(),
                    slices: Pattern::parse("princeton.codeen").unwrap(),
                    grant: open_grant(Rights::CREATE),
                },
            )
            .unwrap()
            .bytes,
        ),
        (
            "slice-ticket",
            objects::sign(&alice, &ticket).unwrap().bytes,
        ),
        (
            "revocation",
            objects::sign(
                &root,
                &Revocation {
                    target: CertId([9; 32]),
                    reason: "key compromised".into(),
                    revoked_at: T0,
                },
            )
            .unwrap()
            .bytes,
        ),
        (
            "node-receipt",
            objects::sign(
                &node,
                &NodeReceipt {
                    ticket: CertId([8; 32]),
                    admitted: false,
                    reason: "over capacity".into(),
                    at: T0,
                },
            )
            .unwrap()
            .bytes,
        ),
        (
            "slice-delete",
            objects::sign(
                &alice,
                &SliceDelete {
                    slice: name("princeton.codeen"),
                    tickets: vec![CertId([9; 32])],
                    issued_at: T0 + 60,
                    validity: Validity::starting(T0 + 60, DAY),
                },
            )
            .unwrap()
            .bytes,
        ),
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn every_kind_matches_its_golden_bytes() {
    let bless = std::env::var_os("SLICEFED_BLESS").is_some();
    let all = vectors();
    assert_eq!(all.len(), Kind::ALL.len(), "one vector per kind");
    for (file, bytes) in all {
        let path = golden_dir().join(format!("{file}.hex"));
        let hex = hex::encode(&bytes);
        if bless {
            std::fs::write(&path, format!("{hex}\n")).unwrap();
        }
        let want =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(hex, want.trim(), "{file}: wire bytes changed");
        // And the golden bytes open as the kind they claim.
        let opened = open_any(&hex::decode(want.trim()).unwrap()).unwrap();
        assert_eq!(opened.kind.tag(), format!("slicefed/{file}"));
    }
}

#[test]
fn credential_file_golden() {
    let all = vectors();
    let cred = Credential::new(all[5].1.clone(), [all[2].1.clone()])
        .to_bytes()
        .unwrap();
    let path = golden_dir().join("credential.hex");
    if std::env::var_os("SLICEFED_BLESS").is_some() {
        std::fs::write(&path, format!("{}\n", hex::encode(&cred))).unwrap();
    }
    assert_eq!(
        hex::encode(&cred),
        std::fs::read_to_string(&path).unwrap().trim()
    );
    assert_eq!(Credential::from_bytes(&cred).unwrap().objects.len(), 2);
}
