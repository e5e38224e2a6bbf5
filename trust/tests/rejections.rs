//! One test per rejection, each asserting its own error, plus the paths that must pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use slicefed_trust::caps::{ConnectRule, NodeSet, ResourceCaps, Rights, RuleSet, Validity};
use slicefed_trust::codec::CodecError;
use slicefed_trust::fixtures::{self, DAY, T0, key, name, open_grant, policy_for, ticket_body};
use slicefed_trust::objects::{self, Kind, ObjectError, Revocation, UserCert};
use slicefed_trust::verify::{MAX_CHAIN_LINKS, REPLAY_WINDOW_SECS, RevocationError};
use slicefed_trust::{Context, Pattern, Verifier, VerifyError};

fn at(now: u64) -> Context {
    Context { now, node: None }
}

fn pool(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(|b| b.as_slice()).collect()
}

#[test]
fn three_link_chain_verifies_and_names_the_responsible_person() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let mut v = Verifier::new(policy);
    let ok = v.verify(&ticket, &pool(&chain), &at(T0)).unwrap();
    assert_eq!(
        ok.responsible.user.as_ref().unwrap().as_str(),
        "princeton.cs.alice"
    );
    assert_eq!(ok.responsible.authority.as_str(), "princeton.cs");
    assert_eq!(ok.responsible.root.as_str(), "princeton");
    assert_eq!(ok.links.len(), 3);
    assert_eq!(ok.effective.caps.memory, Some(64 << 20));
    // The pool may come in any order.
    let reversed: Vec<Vec<u8>> = chain.iter().rev().cloned().collect();
    v.clear_cache();
    v.verify(&ticket, &pool(&reversed), &at(T0)).unwrap();
}

#[test]
fn wrong_domain_tag() {
    // A body signed as a delegation, presented as a user certificate.
    let (root, alice) = (key(1), key(3));
    let body = UserCert {
        subject: alice.public(),
        name: name("princeton.alice"),
        slices: Pattern::parse("princeton.*").unwrap(),
        grant: open_grant(Rights::CREATE),
    };
    let body_bytes = slicefed_trust::codec::encode("t", &body).unwrap();
    let forged = objects::sign_mislabelled(&root, Kind::UserCert, Kind::Delegation, &body_bytes);
    let mut v = Verifier::new(policy_for(&[("princeton", &root)]));
    // A node pays one verification and refuses it as forged...
    assert_eq!(
        v.verify(&forged, &[], &at(T0)).unwrap_err(),
        VerifyError::Object(ObjectError::BadSignature {
            kind: Kind::UserCert,
            signer: root.public(),
        })
    );
    // ...and a person asking why learns it was signed as another kind.
    assert_eq!(
        objects::diagnose_signature(&forged),
        ObjectError::WrongDomain {
            presented: Kind::UserCert,
            signed_as: Kind::Delegation
        }
    );
}

#[test]
fn bad_signature() {
    let (policy, mut ticket, chain) = fixtures::three_link_chain().unwrap();
    let n = ticket.len();
    ticket[n - 1] ^= 1; // last byte of the signature
    let err = Verifier::new(policy)
        .verify(&ticket, &pool(&chain), &at(T0))
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Object(ObjectError::BadSignature {
                kind: Kind::SliceTicket,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn trailing_bytes() {
    let (policy, mut ticket, chain) = fixtures::three_link_chain().unwrap();
    ticket.push(0);
    let err = Verifier::new(policy)
        .verify(&ticket, &pool(&chain), &at(T0))
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Object(ObjectError::Codec(CodecError::TrailingBytes {
                extra: 1,
                ..
            }))
        ),
        "{err}"
    );
}

#[test]
fn oversized_object() {
    let big = vec![0u8; objects::MAX_TICKET_BYTES + 1];
    let err = Verifier::new(policy_for(&[]))
        .verify(&big, &[], &at(T0))
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Object(ObjectError::Codec(CodecError::TooLarge { .. }))
        ),
        "{err}"
    );
}

#[test]
fn over_long_chain() {
    // root → a.b → a.b.c → a.b.c.d → a.b.c.d.e → user → ticket: 6 links.
    let root = key(1);
    let mut keys = vec![root];
    let mut certs = vec![];
    let mut ns = "a".to_string();
    for i in 0..4u8 {
        ns.push_str(&format!(".s{i}"));
        let child = key(10 + i);
        certs.push(fixtures::authority_cert(keys.last().unwrap(), &child, &ns).unwrap());
        keys.push(child);
    }
    let user = key(30);
    certs.push(
        fixtures::user_cert(
            keys.last().unwrap(),
            &user,
            &format!("{ns}.u"),
            &format!("{ns}.*"),
        )
        .unwrap(),
    );
    let ticket = objects::sign(&user, &ticket_body(&format!("{ns}.slice"), 1))
        .unwrap()
        .bytes;
    let mut v = Verifier::new(policy_for(&[("a", &key(1))]));
    assert_eq!(
        v.verify(&ticket, &pool(&certs), &at(T0)).unwrap_err(),
        VerifyError::ChainTooLong {
            leaf: Kind::SliceTicket,
            max: MAX_CHAIN_LINKS
        }
    );
    // One sub-authority fewer fits in five links.
    let (root, s1, s2, s3) = (key(1), key(10), key(11), key(12));
    let short = vec![
        fixtures::authority_cert(&root, &s1, "a.s0").unwrap(),
        fixtures::authority_cert(&s1, &s2, "a.s0.s1").unwrap(),
        fixtures::authority_cert(&s2, &s3, "a.s0.s1.s2").unwrap(),
        fixtures::user_cert(&s3, &user, "a.s0.s1.s2.u", "a.s0.s1.s2.*").unwrap(),
    ];
    let ticket = objects::sign(&user, &ticket_body("a.s0.s1.s2.slice", 1))
        .unwrap()
        .bytes;
    v.verify(&ticket, &pool(&short), &at(T0)).unwrap();
}

#[test]
fn expired() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let err = Verifier::new(policy)
        .verify(&ticket, &pool(&chain), &at(T0 + 2 * DAY))
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Expired {
                kind: Kind::SliceTicket,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn not_yet_valid() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let err = Verifier::new(policy)
        .verify(&ticket, &pool(&chain), &at(T0 - 3600))
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::NotYetValid {
                kind: Kind::SliceTicket,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn clock_skew_of_a_minute_is_tolerated() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let mut v = Verifier::new(policy);
    v.verify(&ticket, &pool(&chain), &at(T0 - 60)).unwrap();
    v.verify(&ticket, &pool(&chain), &at(T0 + DAY + 60))
        .unwrap();
    assert!(v.verify(&ticket, &pool(&chain), &at(T0 - 61)).is_err());
}

/// The user certificate of `three_link_chain` as a credential (itself, then its chain).
fn user_credential(chain: &[Vec<u8>]) -> objects::Credential {
    objects::Credential::new(chain[0].clone(), chain[1..].iter().cloned())
}

#[test]
fn revoked_middle_link() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let mut v = Verifier::new(policy);
    v.verify(&ticket, &pool(&chain), &at(T0)).unwrap(); // warm the cache: revocation must still bite
    let user_cert_id = objects::CertId::of(&chain[0]);
    // The sub-authority that issued it.
    let file = fixtures::revocation_file(&key(2), &user_credential(&chain), "key compromised", T0)
        .unwrap();
    v.add_revocation(&file, T0).unwrap();
    let err = v.verify(&ticket, &pool(&chain), &at(T0)).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Revoked {
            kind: Kind::UserCert,
            subject: "princeton.cs.alice".into(),
            id: user_cert_id,
            reason: "key compromised".into()
        }
    );
    // Sent again, or re-signed by the same key: nothing new is held.
    assert!(matches!(
        v.add_revocation(&file, T0),
        Err(RevocationError::AlreadyHeld { .. })
    ));
    // Re-signed by the same key: one per (target, revoker) is held, the one with the
    // smaller id, whatever order they arrive in (every node holds the same set).
    let again =
        fixtures::revocation_file(&key(2), &user_credential(&chain), "again", T0 + 1).unwrap();
    let id = |f: &[u8]| objects::CertId::of(objects::Credential::from_bytes(f).unwrap().leaf());
    let smaller = id(&file).min(id(&again));
    match v.add_revocation(&again, T0) {
        Ok(h) => {
            assert_eq!(h.revocation.id, smaller);
            assert_eq!(h.replaced, Some(id(&file)));
        }
        Err(RevocationError::AlreadyHeld { .. }) => assert_eq!(smaller, id(&file)),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(v.revocations().len(), 1);
    let mut other = Verifier::new(fixtures::three_link_chain().unwrap().0);
    other.add_revocation(&again, T0).unwrap();
    let _ = other.add_revocation(&file, T0);
    let held = |v: &Verifier| {
        v.revocations()
            .find(&objects::CertId::of(&chain[0]), &[key(2).public()])
            .unwrap()
            .id
    };
    assert_eq!(held(&v), held(&other));
}

#[test]
fn only_authorities_revoke_and_only_certificates() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let mut v = Verifier::new(policy);
    // Alice (a user) may not revoke her own ticket: otherwise anyone with a certificate could
    // sign tickets and revocations of them without end.
    let mut t = vec![ticket.clone()];
    t.extend(chain.iter().cloned());
    let ticket_cred = objects::Credential::new(t[0].clone(), t[1..].iter().cloned());
    let own = fixtures::revocation_file(&key(3), &ticket_cred, "mine", T0).unwrap();
    assert!(matches!(
        v.add_revocation(&own, T0),
        Err(RevocationError::NotRevocable {
            kind: Kind::SliceTicket
        })
    ));
    // Not even her authority revokes a ticket (it revokes her certificate).
    let by_root = fixtures::revocation_file(&key(1), &ticket_cred, "root", T0).unwrap();
    assert!(matches!(
        v.add_revocation(&by_root, T0),
        Err(RevocationError::NotRevocable { .. })
    ));
    // Padding after the chain is dropped: every node keeps, logs and passes on one file.
    let target = user_credential(&chain);
    let plain = fixtures::revocation_file(&key(1), &target, "root says", T0).unwrap();
    let mut c = objects::Credential::from_bytes(&plain).unwrap();
    c.objects.push(serde_bytes::ByteBuf::from(vec![7u8; 100]));
    let held = v.add_revocation(&c.to_bytes().unwrap(), T0).unwrap();
    assert_eq!(held.file, plain);
}

#[test]
fn only_the_issuer_or_a_key_above_it_may_revoke() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let mut v = Verifier::new(policy);
    let target = user_credential(&chain);
    // A flood by unrelated keys is refused before anything is held.
    for k in 50..60 {
        let junk = fixtures::revocation_file(&key(k), &target, "griefing", T0).unwrap();
        assert!(matches!(
            v.add_revocation(&junk, T0),
            Err(RevocationError::Unentitled { .. })
        ));
    }
    assert_eq!(v.revocations().len(), 0);
    v.verify(&ticket, &pool(&chain), &at(T0)).unwrap();
    // The user may not revoke their own issuer's statement either.
    let own = fixtures::revocation_file(&key(3), &target, "self", T0).unwrap();
    assert!(matches!(
        v.add_revocation(&own, T0),
        Err(RevocationError::Unentitled { .. })
    ));
    // A revocation that does not carry its target cannot be judged.
    let bare = objects::sign(
        &key(1),
        &Revocation {
            target: objects::CertId::of(&chain[0]),
            reason: "root says".into(),
            revoked_at: T0,
        },
    )
    .unwrap();
    let bare_file = objects::Credential::new(bare.bytes.clone(), [])
        .to_bytes()
        .unwrap();
    assert!(matches!(
        v.add_revocation(&bare_file, T0),
        Err(RevocationError::NoTarget { .. })
    ));
    // Nor one carrying another object than it names.
    let swapped = objects::Credential::new(bare.bytes, [chain[1].clone()])
        .to_bytes()
        .unwrap();
    assert!(matches!(
        v.add_revocation(&swapped, T0),
        Err(RevocationError::TargetMismatch { .. })
    ));
    // A target that does not chain to a trusted root: nobody here is entitled.
    let mut other = Verifier::new(fixtures::policy_for(&[("mit", &key(9))]));
    let root_says = fixtures::revocation_file(&key(1), &target, "root says", T0).unwrap();
    assert!(matches!(
        other.add_revocation(&root_says, T0),
        Err(RevocationError::Target { .. })
    ));
    // The root, two links above, may.
    v.add_revocation(&root_says, T0).unwrap();
    assert!(matches!(
        v.verify(&ticket, &pool(&chain), &at(T0)),
        Err(VerifyError::Revoked { .. })
    ));
    // And so may the issuer afterwards (a second entitled key), without displacing it.
    let issuer = fixtures::revocation_file(&key(2), &target, "issuer too", T0).unwrap();
    v.add_revocation(&issuer, T0).unwrap();
    assert_eq!(v.revocations().len(), 2);
}

#[test]
fn revocations_are_dropped_once_their_target_expires() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let mut v = Verifier::new(policy);
    let file = fixtures::revocation_file(&key(2), &user_credential(&chain), "gone", T0).unwrap();
    v.add_revocation(&file, T0).unwrap();
    assert!(v.prune_revocations(T0 + DAY).is_empty());
    assert!(v.verify(&ticket, &pool(&chain), &at(T0)).is_err());
    // Long after the user certificate ended, the revocation guards nothing.
    assert_eq!(v.prune_revocations(T0 + 400 * DAY).len(), 1);
    assert!(v.revocations().is_empty());
}

#[test]
fn replayed_nonce() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let mut v = Verifier::new(policy);
    v.admit_ticket(&ticket, &pool(&chain), &at(T0 + 5)).unwrap();
    let err = v
        .admit_ticket(&ticket, &pool(&chain), &at(T0 + 6))
        .unwrap_err();
    assert!(matches!(err, VerifyError::Replayed { .. }), "{err}");
}

#[test]
fn stale_ticket_outside_the_replay_window() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let err = Verifier::new(policy)
        .admit_ticket(&ticket, &pool(&chain), &at(T0 + REPLAY_WINDOW_SECS + 1))
        .unwrap_err();
    assert!(matches!(err, VerifyError::StaleTicket { .. }), "{err}");
}

#[test]
fn wrong_audience() {
    let (root, alice) = (key(1), key(3));
    let user = fixtures::user_cert(&root, &alice, "princeton.alice", "princeton.*").unwrap();
    let mut body = ticket_body("princeton.codeen", 1);
    body.nodes = NodeSet::only(vec![key(50).public(), key(51).public()]);
    let ticket = objects::sign(&alice, &body).unwrap().bytes;
    let mut v = Verifier::new(policy_for(&[("princeton", &root)]));
    let on = |n: u8| Context {
        now: T0,
        node: Some(key(n).public()),
    };
    v.verify(&ticket, &[&user], &on(50)).unwrap();
    assert_eq!(
        v.verify(&ticket, &[&user], &on(52)).unwrap_err(),
        VerifyError::WrongAudience {
            kind: Kind::SliceTicket,
            node: key(52).public().peer_id()
        }
    );
}

#[test]
fn untrusted_root() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let _ = policy;
    let other = policy_for(&[("mit", &key(7))]);
    let err = Verifier::new(other)
        .verify(&ticket, &pool(&chain), &at(T0))
        .unwrap_err();
    assert_eq!(
        err,
        VerifyError::UntrustedRoot {
            key: key(1).public()
        }
    );
}

#[test]
fn namespace_escape() {
    // Authority `princeton` certifying `mit.alice`.
    let (root, alice) = (key(1), key(3));
    let user = fixtures::user_cert(&root, &alice, "mit.alice", "mit.*").unwrap();
    let mut v = Verifier::new(policy_for(&[("princeton", &root), ("mit", &key(2))]));
    let err = v.verify(&user, &[], &at(T0)).unwrap_err();
    assert_eq!(
        err,
        VerifyError::NamespaceEscape {
            what: "name",
            name: "mit.alice".into(),
            issuer: "princeton".into(),
            allowed: "princeton.*".into()
        }
    );
    // A user of princeton asking for a slice of mit.
    let user = fixtures::user_cert(&root, &alice, "princeton.alice", "princeton.*").unwrap();
    let ticket = objects::sign(&alice, &ticket_body("mit.codeen", 1))
        .unwrap()
        .bytes;
    let err = v.verify(&ticket, &[&user], &at(T0)).unwrap_err();
    assert!(
        matches!(err, VerifyError::NamespaceEscape { what: "slice", .. }),
        "{err}"
    );
}

#[test]
fn widening_caps_is_rejected() {
    let (root, alice) = (key(1), key(3));
    let mut policy = policy_for(&[("princeton", &root)]);
    // Cap memory at the root: 32 MiB; the fixture ticket asks for 64 MiB.
    let mut a = policy.authorities()[0].clone();
    a.caps = ResourceCaps {
        memory: Some(32 << 20),
        ..Default::default()
    };
    policy = slicefed_trust::TrustPolicy::new(vec![a]).unwrap();
    let user = fixtures::user_cert(&root, &alice, "princeton.alice", "princeton.*").unwrap();
    let ticket = objects::sign(&alice, &ticket_body("princeton.codeen", 1))
        .unwrap()
        .bytes;
    let err = Verifier::new(policy)
        .verify(&ticket, &[&user], &at(T0))
        .unwrap_err();
    match err {
        VerifyError::Widening { kind, widening, .. } => {
            assert_eq!(kind, Kind::SliceTicket);
            assert_eq!(widening.what, "memory");
        }
        e => panic!("{e}"),
    }
}

#[test]
fn widening_network_is_rejected() {
    let (root, alice) = (key(1), key(3));
    let mut grant = open_grant(Rights::CREATE);
    grant.network.connect = RuleSet::Only(vec![ConnectRule::parse("tcp:10.0.0.0/8:80").unwrap()]);
    let user = objects::sign(
        &root,
        &UserCert {
            subject: alice.public(),
            name: name("princeton.alice"),
            slices: Pattern::parse("princeton.*").unwrap(),
            grant,
        },
    )
    .unwrap()
    .bytes;
    let mut body = ticket_body("princeton.codeen", 1);
    body.network.connect = RuleSet::Only(vec![ConnectRule::parse("tcp:10.0.0.0/8:81").unwrap()]);
    let ticket = objects::sign(&alice, &body).unwrap().bytes;
    let err = Verifier::new(policy_for(&[("princeton", &root)]))
        .verify(&ticket, &[&user], &at(T0))
        .unwrap_err();
    assert!(
        matches!(&err, VerifyError::Widening { widening, .. } if widening.what == "connect"),
        "{err}"
    );
}

#[test]
fn widening_validity_is_rejected() {
    let (root, alice) = (key(1), key(3));
    let user = fixtures::user_cert(&root, &alice, "princeton.alice", "princeton.*").unwrap();
    let mut body = ticket_body("princeton.codeen", 1);
    body.validity = Validity::starting(T0, 1000 * DAY);
    let ticket = objects::sign(&alice, &body).unwrap().bytes;
    let err = Verifier::new(policy_for(&[("princeton", &root)]))
        .verify(&ticket, &[&user], &at(T0))
        .unwrap_err();
    assert!(
        matches!(&err, VerifyError::Widening { widening, .. } if widening.what == "validity"),
        "{err}"
    );
}

#[test]
fn missing_right_and_wrong_issuer() {
    let (root, alice, bob) = (key(1), key(3), key(4));
    // Alice may only create; she cannot delegate.
    let user = objects::sign(
        &root,
        &UserCert {
            subject: alice.public(),
            name: name("princeton.alice"),
            slices: Pattern::parse("princeton.*").unwrap(),
            grant: open_grant(Rights::CREATE),
        },
    )
    .unwrap()
    .bytes;
    let delegation = objects::sign(
        &alice,
        &objects::Delegation {
            subject: bob.public(),
            slices: Pattern::parse("princeton.codeen").unwrap(),
            grant: open_grant(Rights::CREATE),
        },
    )
    .unwrap()
    .bytes;
    let mut v = Verifier::new(policy_for(&[("princeton", &root)]));
    let err = v.verify(&delegation, &[&user], &at(T0)).unwrap_err();
    assert!(
        matches!(err, VerifyError::MissingRight { right, .. } if right == Rights::DELEGATE),
        "{err}"
    );
    // A user cannot certify another user.
    let bob_cert = fixtures::user_cert(&alice, &bob, "princeton.bob", "princeton.*").unwrap();
    let err = v.verify(&bob_cert, &[&user], &at(T0)).unwrap_err();
    assert_eq!(
        err,
        VerifyError::WrongIssuer {
            kind: Kind::UserCert,
            issuer_role: "user"
        }
    );
}

#[test]
fn delegation_chain_verifies_and_keeps_the_user_responsible() {
    let (root, alice, service) = (key(1), key(3), key(5));
    let user = fixtures::user_cert(&root, &alice, "princeton.alice", "princeton.*").unwrap();
    let delegation = objects::sign(
        &alice,
        &objects::Delegation {
            subject: service.public(),
            slices: Pattern::parse("princeton.codeen").unwrap(),
            grant: open_grant(Rights::CREATE),
        },
    )
    .unwrap()
    .bytes;
    let ticket = objects::sign(&service, &ticket_body("princeton.codeen", 9))
        .unwrap()
        .bytes;
    let mut v = Verifier::new(policy_for(&[("princeton", &root)]));
    let ok = v.verify(&ticket, &[&user, &delegation], &at(T0)).unwrap();
    assert_eq!(ok.responsible.user.unwrap().as_str(), "princeton.alice");
    // The delegate's grant is exact: another slice escapes it.
    let other = objects::sign(&service, &ticket_body("princeton.other", 9))
        .unwrap()
        .bytes;
    assert!(matches!(
        v.verify(&other, &[&user, &delegation], &at(T0)),
        Err(VerifyError::NamespaceEscape { what: "slice", .. })
    ));
}

#[test]
fn tampered_chain_member_is_reported_precisely() {
    let (policy, ticket, mut chain) = fixtures::three_link_chain().unwrap();
    let n = chain[0].len();
    chain[0][n - 3] ^= 0x40;
    let err = Verifier::new(policy)
        .verify(&ticket, &pool(&chain), &at(T0))
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Object(ObjectError::BadSignature {
                kind: Kind::UserCert,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn a_ticket_is_not_a_user_certificate() {
    let (_, ticket, _) = fixtures::three_link_chain().unwrap();
    let err = objects::open::<UserCert>(&ticket).unwrap_err();
    assert_eq!(
        err,
        ObjectError::WrongKind {
            expected: Kind::UserCert,
            found: Kind::SliceTicket
        }
    );
}

#[test]
fn a_hostile_credential_costs_at_most_one_signature_check() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    // Seven chain objects that each claim to certify the attacker's key, "signed" by the
    // trusted root (the signatures are garbage), and a leaf the attacker signed.
    let attacker = key(66);
    let leaf = objects::sign(&attacker, &ticket_body("princeton.cs.evil", 9))
        .unwrap()
        .bytes;
    let mut junk = vec![];
    for i in 0..7u8 {
        let mut cert = fixtures::user_cert(
            &key(1),
            &attacker,
            &format!("princeton.x{i}"),
            "princeton.*",
        )
        .unwrap();
        let n = cert.len();
        cert[n - 1 - usize::from(i)] ^= 0x55;
        junk.push(cert);
    }
    let mut v = Verifier::new(policy);
    let err = v.verify(&leaf, &pool(&junk), &at(T0)).unwrap_err();
    assert!(
        matches!(err, VerifyError::Object(ObjectError::BadSignature { .. })),
        "{err}"
    );
    assert_eq!(v.signature_checks(), 1, "one forged link, one check");
    // The same junk again: a known forgery costs no check.
    let before = v.signature_checks();
    let _ = v.verify(&junk[0], &[], &at(T0));
    assert_eq!(v.signature_checks(), before);
    // A chain that leads to no trusted key costs none at all.
    let stranger = key(67);
    let self_made = fixtures::user_cert(&stranger, &attacker, "evil.alice", "evil.*").unwrap();
    let before = v.signature_checks();
    let err = v.verify(&leaf, &pool(&[self_made]), &at(T0)).unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
    assert_eq!(v.signature_checks(), before);
    // An honest chain costs one check per link, once.
    let before = v.signature_checks();
    v.verify(&ticket, &pool(&chain), &at(T0)).unwrap();
    assert_eq!(v.signature_checks() - before, 3);
    v.verify(&ticket, &pool(&chain), &at(T0)).unwrap();
    assert_eq!(v.signature_checks() - before, 3);
}

#[test]
fn verifiers_sharing_opened_objects_check_each_signature_once_between_them() {
    let (policy, ticket, chain) = fixtures::three_link_chain().unwrap();
    let shared = slicefed_trust::SharedOpened::default();
    let mut first = Verifier::with_shared(policy.clone(), shared.clone());
    let mut second = Verifier::with_shared(policy, shared.clone());
    first.verify(&ticket, &pool(&chain), &at(T0)).unwrap();
    assert_eq!(first.signature_checks(), 3);
    // The second verifier judges the same chain without checking a signature again, and
    // the shared table is the only copy (none is kept per verifier).
    second.verify(&ticket, &pool(&chain), &at(T0)).unwrap();
    assert_eq!(second.signature_checks(), 0);
    assert_eq!(shared.len(), 3);
    // Judgement is still each verifier's own: past its validity the chain is refused.
    assert!(
        second
            .verify(&ticket, &pool(&chain), &at(T0 + 10 * 365 * DAY))
            .is_err()
    );
}
