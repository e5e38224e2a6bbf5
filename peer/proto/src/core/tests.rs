//! The node manager's decisions, one scripted case each.
use super::*;
use slicefed_trust::caps::{ResourceCaps, Rights, Validity};
use slicefed_trust::fixtures::{
    DAY, T0, key, name, open_grant, policy_for, ticket_body, user_cert,
};
use slicefed_trust::objects::{NodeCert, SliceTicket, UserCert};
use slicefed_trust::{NodeSet, Pattern};

const NOW: u64 = T0 * 1000;

fn node(n: u8) -> NodeCore {
    node_trusting(n, policy_for(&[("princeton", &key(1))]))
}

fn node_trusting(n: u8, policy: slicefed_trust::policy::TrustPolicy) -> NodeCore {
    NodeCore::new(
        key(n),
        Capacity {
            max_slivers: 3,
            memory: 1 << 30,
            default_sliver_memory: 64 << 20,
        },
        policy,
    )
}

/// Node `n`'s certificate, named `node_name`, signed by `key(issuer)`.
fn node_cert(issuer: u8, n: u8, node_name: &str, validity: Validity) -> Vec<u8> {
    objects::sign(
        &key(issuer),
        &NodeCert {
            subject: key(n).public(),
            name: name(node_name),
            validity,
        },
    )
    .unwrap()
    .bytes
}

fn ticket(body: SliceTicket) -> Vec<u8> {
    let user = user_cert(&key(1), &key(3), "princeton.alice", "princeton.*").unwrap();
    let t = objects::sign(&key(3), &body).unwrap().bytes;
    Credential::new(t, [user]).to_bytes().unwrap()
}

/// Submits with the module the ticket names (as an honest driver would).
fn sub(n: &mut NodeCore, now: u64, cred: &[u8]) -> Vec<Output> {
    let module = Credential::from_bytes(cred)
        .ok()
        .and_then(|c| objects::open::<SliceTicket>(c.leaf()).ok())
        .map_or(ModuleHash([0; 32]), |t| t.body.module);
    n.submit(now, cred, module, &Invocation::default())
}

/// A revocation file by `key(revoker)` of `target` (a certificate issued by the root).
fn revocation_of(revoker: u8, target: &[u8], reason: &str) -> Vec<u8> {
    let target = Credential::new(target.to_vec(), []);
    slicefed_trust::fixtures::revocation_file(&key(revoker), &target, reason, T0).unwrap()
}

/// A load as an advert made at `ms` carries it.
fn sent(ms: u64) -> Load {
    Load {
        sent_ms: ms,
        ..Load::default()
    }
}

fn receipt(out: &[Output]) -> NodeReceipt {
    let bytes = out
        .iter()
        .find_map(|o| match o {
            Output::Receipt(b) => Some(b.clone()),
            _ => None,
        })
        .expect("a receipt");
    objects::open::<NodeReceipt>(&bytes).unwrap().body
}

#[test]
fn an_admitted_ticket_starts_a_logged_sliver_with_its_chains_limits() {
    let mut n = node(10);
    let out = sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 1)));
    let r = receipt(&out);
    assert!(r.admitted, "{}", r.reason);
    let plan = out
        .iter()
        .find_map(|o| match o {
            Output::Start(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(plan.memory, 64 << 20);
    assert_eq!(plan.who.user.as_ref().unwrap().as_str(), "princeton.alice");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Append(EntryBody::SliverCreated { .. })))
    );
    assert_eq!(n.load().slivers, 1);
}

#[test]
fn every_refusal_has_its_own_reason_in_a_signed_receipt() {
    let mut n = node(10);
    // Forged: a byte of the ticket's signature changed.
    let mut forged = ticket(ticket_body("princeton.codeen", 1));
    let len = forged.len();
    forged[len / 2] ^= 1;
    assert!(!receipt(&sub(&mut n, NOW, &forged)).admitted);
    // Expired.
    let r = receipt(&sub(
        &mut n,
        NOW + 3 * DAY * 1000,
        &ticket(ticket_body("princeton.codeen", 2)),
    ));
    assert!(r.reason.contains("expired"), "{}", r.reason);
    // Wrong audience.
    let mut b = ticket_body("princeton.codeen", 3);
    b.nodes = NodeSet::only(vec![key(11).public()]);
    let r = receipt(&sub(&mut n, NOW, &ticket(b)));
    assert!(r.reason.contains("audience"), "{}", r.reason);
    // Untrusted root.
    let mut other = NodeCore::new(key(10), n.capacity.clone(), policy_for(&[("mit", &key(9))]));
    let r = receipt(&sub(
        &mut other,
        NOW,
        &ticket(ticket_body("princeton.codeen", 4)),
    ));
    assert!(r.reason.contains("untrusted root"), "{}", r.reason);
    // Over the node's memory.
    let mut b = ticket_body("princeton.codeen", 5);
    b.caps.memory = Some(2 << 30);
    let r = receipt(&sub(&mut n, NOW, &ticket(b)));
    assert!(r.reason.contains("not enough memory"), "{}", r.reason);
    // Replayed.
    let t = ticket(ticket_body("princeton.codeen", 6));
    assert!(receipt(&sub(&mut n, NOW, &t)).admitted);
    let r = receipt(&sub(&mut n, NOW, &t));
    assert!(r.reason.contains("replayed"), "{}", r.reason);
    // Full.
    for i in 7..9 {
        assert!(
            receipt(&sub(
                &mut n,
                NOW,
                &ticket(ticket_body("princeton.codeen", i))
            ))
            .admitted
        );
    }
    let r = receipt(&sub(
        &mut n,
        NOW,
        &ticket(ticket_body("princeton.codeen", 9)),
    ));
    assert!(r.reason.contains("node full"), "{}", r.reason);
}

#[test]
fn a_chain_cap_on_slivers_is_enforced() {
    let mut n = node(10);
    let mut grant = open_grant(Rights::CREATE);
    grant.caps = ResourceCaps {
        max_slivers: Some(1),
        ..Default::default()
    };
    let user = objects::sign(
        &key(1),
        &UserCert {
            subject: key(3).public(),
            name: name("princeton.alice"),
            slices: Pattern::parse("princeton.*").unwrap(),
            grant,
        },
    )
    .unwrap()
    .bytes;
    let t = |i| {
        let t = objects::sign(&key(3), &ticket_body("princeton.codeen", i))
            .unwrap()
            .bytes;
        Credential::new(t, [user.clone()]).to_bytes().unwrap()
    };
    assert!(receipt(&sub(&mut n, NOW, &t(1))).admitted);
    let r = receipt(&sub(&mut n, NOW, &t(2)));
    assert!(r.reason.contains("over cap"), "{}", r.reason);
}

#[test]
fn expiry_and_revocation_stop_slivers_and_are_logged() {
    let mut n = node(10);
    sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 1)));
    assert!(n.tick(NOW + 1000, |_| None).is_empty());
    let out = n.tick(NOW + 2 * DAY * 1000, |_| None);
    assert_eq!(
        out,
        vec![Output::Stop {
            id: 1,
            reason: StopReason::Expired
        }]
    );
    let out = n.ended(1, "killed(expired)", Usage::default());
    assert!(matches!(
        &out[0],
        Output::Append(EntryBody::SliverStopped { .. })
    ));

    // Revoking the user's certificate stops their sliver, once.
    let user = user_cert(&key(1), &key(3), "princeton.alice", "princeton.*").unwrap();
    sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 2)));
    let rev = revocation_of(1, &user, "stolen laptop");
    let out = n.revocation(NOW, &rev).unwrap();
    assert!(out.contains(&Output::Stop {
        id: 2,
        reason: StopReason::Revoked
    }));
    assert!(out.iter().any(|o| matches!(o, Output::GossipRevocation(_))));
    assert!(
        n.revocation(NOW, &rev).unwrap().is_empty(),
        "gossiped on once"
    );
    // And the same user's next ticket is refused.
    let r = receipt(&sub(
        &mut n,
        NOW,
        &ticket(ticket_body("princeton.codeen", 3)),
    ));
    assert!(r.reason.contains("revoked"), "{}", r.reason);
    // A revocation by an unrelated key stops nothing.
    let mut n = node(10);
    sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 4)));
    let rev = revocation_of(99, &user, "grief");
    assert!(matches!(
        n.revocation(NOW, &rev),
        Err(CoreError::Revocation(RevocationError::Unentitled { .. }))
    ));
    assert_eq!(n.revocation_digest(), RevocationDigest::default());
}

#[test]
fn only_certified_nodes_become_members() {
    let mut n = node(10);
    let cert = objects::sign(
        &key(1),
        &NodeCert {
            subject: key(20).public(),
            name: name("princeton.node20"),
            validity: Validity::starting(T0 - DAY, 30 * DAY),
        },
    )
    .unwrap()
    .bytes;
    let cred = Credential::new(cert.clone(), []).to_bytes().unwrap();
    let out = n.advert(NOW, key(20).public(), &cred, sent(NOW)).unwrap();
    assert_eq!(out, vec![Output::Joined(key(20).public())]);
    assert_eq!(
        n.members()[&key(20).public()].name().as_str(),
        "princeton.node20"
    );
    // Someone else presenting that certificate is not that node.
    assert!(n.advert(NOW, key(21).public(), &cred, sent(NOW)).is_err());
    // A self-made certificate (untrusted root) is refused.
    let own = objects::sign(
        &key(21),
        &NodeCert {
            subject: key(21).public(),
            name: name("evil.node"),
            validity: Validity::starting(T0, DAY),
        },
    )
    .unwrap()
    .bytes;
    let err = n.advert(
        NOW,
        key(21).public(),
        &Credential::new(own, []).to_bytes().unwrap(),
        sent(NOW),
    );
    assert!(
        matches!(err, Err(CoreError::NotMember(ref r)) if r.contains("untrusted root")),
        "{err:?}"
    );
    // A user certificate is not a node certificate.
    let user = user_cert(&key(1), &key(21), "princeton.mallory", "princeton.*").unwrap();
    assert!(
        n.advert(
            NOW,
            key(21).public(),
            &Credential::new(user, []).to_bytes().unwrap(),
            sent(NOW)
        )
        .is_err()
    );
    // Silence makes a member leave.
    assert_eq!(
        n.tick(NOW + n.member_timeout_ms() + 1, |_| None),
        vec![Output::Left(key(20).public())]
    );
    assert!(n.members().is_empty());
}

fn node_credential(n: u8, validity: Validity) -> Vec<u8> {
    let cert = node_cert(1, n, &format!("princeton.node{n}"), validity);
    Credential::new(cert, []).to_bytes().unwrap()
}

#[test]
fn a_repeated_advert_is_not_judged_again_but_expiry_and_revocation_still_count() {
    let mut n = node(10);
    let short = Validity::starting(T0 - DAY, DAY + 100);
    let cred = node_credential(20, short);
    n.advert(NOW, key(20).public(), &cred, sent(NOW)).unwrap();
    // Within validity: accepted, last-seen moves, no output.
    let later = NOW + 10_000;
    assert!(
        n.advert(later, key(20).public(), &cred, sent(later))
            .unwrap()
            .is_empty()
    );
    assert_eq!(n.members()[&key(20).public()].last_seen_ms, later);
    // Past the certificate's end (and the skew), the same bytes are judged again and
    // refused.
    let expired = (T0 + 100 + 61) * 1000 + 1;
    assert!(
        n.advert(expired, key(20).public(), &cred, sent(expired))
            .is_err()
    );
    // A revocation of the certificate is honoured on the next advert.
    let mut n = node(10);
    let cred = node_credential(21, Validity::starting(T0 - DAY, 30 * DAY));
    n.advert(NOW, key(21).public(), &cred, sent(NOW)).unwrap();
    let leaf = Credential::from_bytes(&cred).unwrap().leaf().to_vec();
    let rev = revocation_of(1, &leaf, "decommissioned");
    // It leaves at once, not on its next advert: a revoked node that answered SWIM probes
    // and never advertised again would otherwise stay listed (and a voter) for ever.
    let out = n.revocation(NOW, &rev).unwrap();
    assert!(out.contains(&Output::Left(key(21).public())), "{out:?}");
    assert!(!n.members().contains_key(&key(21).public()));
    let err = n.advert(NOW + 1, key(21).public(), &cred, sent(NOW + 1));
    assert!(
        matches!(err, Err(CoreError::CredentialLapsed(ref r)) if r.contains("revoked")),
        "{err:?}"
    );
    assert!(!n.members().contains_key(&key(21).public()));
}

#[test]
fn swim_keeps_a_silent_member_listed_only_while_its_credential_holds() {
    let mut n = node(10);
    // Member 20's credential ends a day and 100 s after T0; member 21's holds a month.
    let short = Validity::starting(T0 - DAY, DAY + 100);
    let long = Validity::starting(T0 - DAY, 30 * DAY);
    n.advert(
        NOW,
        key(20).public(),
        &node_credential(20, short),
        sent(NOW),
    )
    .unwrap();
    n.advert(NOW, key(21).public(), &node_credential(21, long), sent(NOW))
        .unwrap();
    // Neither advertises again; both answer every SWIM probe, for minutes past the end of
    // 20's credential (and the clock skew).
    let mut now = NOW;
    let mut left = vec![];
    while now < (T0 + 100 + 5 * 60) * 1000 {
        now += MEMBER_TIMEOUT_MS / 8;
        left.extend(n.tick(now, |_| Some(now)));
    }
    assert_eq!(left, vec![Output::Left(key(20).public())]);
    assert!(n.members().contains_key(&key(21).public()));
}

#[test]
fn nodes_that_share_judgements_hold_one_per_credential_and_decide_alone() {
    let shared = SharedJudgements::default();
    let (mut a, mut b) = (node(10), node(11));
    a.share_judgements(shared.clone());
    b.share_judgements(shared);
    let cred = node_credential(21, Validity::starting(T0 - DAY, 30 * DAY));
    a.advert(NOW, key(21).public(), &cred, sent(NOW)).unwrap();
    b.advert(NOW, key(21).public(), &cred, sent(NOW)).unwrap();
    let (ma, mb) = (
        &a.members()[&key(21).public()],
        &b.members()[&key(21).public()],
    );
    assert!(Arc::ptr_eq(&ma.judgement, &mb.judgement));
    assert_eq!(ma.name().as_str(), "princeton.node21");
    // A revocation one node holds ends its judgement only: the other still takes the
    // member's adverts, and the revoking node refuses them.
    let leaf = Credential::from_bytes(&cred).unwrap().leaf().to_vec();
    a.revocation(NOW, &revocation_of(1, &leaf, "decommissioned"))
        .unwrap();
    assert!(
        a.advert(NOW + 1, key(21).public(), &cred, sent(NOW + 1))
            .is_err()
    );
    let later = NOW + 60_000;
    assert!(
        b.advert(later, key(21).public(), &cred, sent(later))
            .is_ok()
    );
    // A node whose policy does not trust the authority refuses, shared table or not.
    let mut c = NodeCore::new(
        key(12),
        Capacity {
            max_slivers: 3,
            memory: 1 << 30,
            default_sliver_memory: 64 << 20,
        },
        policy_for(&[("princeton", &key(2))]),
    );
    c.share_judgements(b.judgements.clone().unwrap());
    assert!(c.advert(NOW, key(21).public(), &cred, sent(NOW)).is_err());
}

#[test]
fn a_replayed_or_stale_advert_does_not_keep_a_member_listed() {
    let mut n = node(10);
    let cred = node_credential(20, Validity::starting(T0 - DAY, 30 * DAY));
    n.advert(NOW, key(20).public(), &cred, sent(NOW)).unwrap();
    // The same advert heard again later (a replay) moves nothing.
    let replay = n.advert(NOW + 20_000, key(20).public(), &cred, sent(NOW));
    assert!(
        matches!(replay, Err(CoreError::StaleAdvert(_))),
        "{replay:?}"
    );
    assert_eq!(n.members()[&key(20).public()].last_seen_ms, NOW);
    // An advert made long ago, or in the future, is not taken either.
    let old = n.advert(NOW + 200_000, key(20).public(), &cred, sent(NOW + 1_000));
    assert!(matches!(old, Err(CoreError::StaleAdvert(_))), "{old:?}");
    let future = n.advert(NOW, key(20).public(), &cred, sent(NOW + 120_000));
    assert!(
        matches!(future, Err(CoreError::StaleAdvert(_))),
        "{future:?}"
    );
    // So a dead member leaves on time though its adverts are replayed.
    let out = n.tick(NOW + n.member_timeout_ms() + 1, |_| None);
    assert_eq!(out, vec![Output::Left(key(20).public())]);
}

#[test]
fn a_member_entered_after_a_look_that_kept_nobody_still_leaves_when_silent() {
    // The look over members skips its walk when nobody kept can be past the deadline; a
    // look that dropped everyone keeps nobody, so a member entered later must lower that
    // bound, or it would never leave.
    let mut n = node(10);
    n.set_advert_timing(1_000, 120);
    let long = Validity::starting(T0 - DAY, 30 * DAY);
    n.advert(NOW, key(20).public(), &node_credential(20, long), sent(NOW))
        .unwrap();
    assert_eq!(n.member_timeout_ms(), MEMBER_TIMEOUT_MS);
    let emptied = NOW + MEMBER_TIMEOUT_MS + 1;
    assert_eq!(
        n.tick(emptied, |_| None),
        vec![Output::Left(key(20).public())]
    );
    assert!(n.members().is_empty());
    // Node 21 joins later, then falls silent; node 20 comes back with a new advert and
    // keeps talking (heard from, which only raises its last-seen).
    let joined = emptied + 1_000;
    n.advert(
        joined,
        key(21).public(),
        &node_credential(21, long),
        sent(joined),
    )
    .unwrap();
    n.advert(
        joined,
        key(20).public(),
        &node_credential(20, long),
        sent(joined),
    )
    .unwrap();
    let mut now = joined;
    let mut left = vec![];
    while now < joined + 2 * MEMBER_TIMEOUT_MS {
        now += MEMBER_TIMEOUT_MS / 8;
        // Member 20 is heard by SWIM all along; 21 by nothing.
        left.extend(n.tick(now, |k| (*k == key(20).public()).then_some(now)));
    }
    assert_eq!(left, vec![Output::Left(key(21).public())]);
    assert_eq!(n.members().len(), 1);
}

#[test]
fn members_leave_in_order_of_silence_and_the_interval_grows_with_the_federation() {
    let mut n = node(10);
    n.set_advert_timing(1_000, 120);
    let long = Validity::starting(T0 - DAY, 30 * DAY);
    for (i, k) in [20u8, 21, 22].into_iter().enumerate() {
        let cred = node_credential(k, long);
        n.advert(
            NOW + i as u64 * 10_000,
            key(k).public(),
            &cred,
            sent(NOW + i as u64 * 10_000),
        )
        .unwrap();
    }
    // 4 nodes at 2 adverts/s heard: one advert every 2 s each at most; a refresh every
    // 8 s; the timeout (three refreshes) stays 30 s.
    assert_eq!(n.advert_interval_ms(), 2_000);
    assert_eq!(n.member_timeout_ms(), MEMBER_TIMEOUT_MS);
    let out = n.tick(NOW + 10_000 + MEMBER_TIMEOUT_MS + 1, |_| None);
    assert_eq!(
        out,
        vec![
            Output::Left(key(20).public()),
            Output::Left(key(21).public())
        ]
    );
    assert_eq!(n.members().len(), 1);
    // Between two looks over the members (at least every eighth of the timeout) nobody
    // leaves; the next look drops the last one.
    // Node 22 was heard at NOW + 20 s: still fresh at NOW + 49 s (a look), silent past
    // the timeout at NOW + 50.5 s but not looked at until a gap later.
    let look = NOW + 49_000;
    assert!(n.tick(look, |_| None).is_empty());
    assert!(n.tick(NOW + 50_500, |_| None).is_empty(), "no look yet");
    assert_eq!(
        n.tick(look + MEMBER_TIMEOUT_MS / 8, |_| None),
        vec![Output::Left(key(22).public())]
    );
    // A thousand members at 2 adverts/s (120 a minute): every 500 s at most, a refresh every 2,000 s,
    // silence tolerated for three refreshes (SWIM notices a dead member long before).
    let mut big = node(11);
    big.set_advert_timing(5_000, 120);
    for i in 0..999u32 {
        let k = SecretKey::from_seed(&{
            let mut s = [7u8; 32];
            s[..4].copy_from_slice(&i.to_le_bytes());
            s
        });
        big.members.insert(
            k.public(),
            Member {
                last_seen_ms: NOW,
                last_sent_ms: NOW,
                ..Member::for_tests(name("princeton.x"), name("princeton"), Load::default())
            },
        );
    }
    assert_eq!(big.advert_interval_ms(), 500_000);
    assert_eq!(big.member_timeout_ms(), 6_000_000);
}

#[test]
fn a_node_that_missed_revocations_catches_up_from_a_members_page() {
    let user = user_cert(&key(1), &key(3), "princeton.alice", "princeton.*").unwrap();
    let rev = revocation_of(1, &user, "left the lab");
    // `a` honoured the revocation; `b` was away and runs alice's sliver.
    let mut a = node(20);
    a.revocation(NOW, &rev).unwrap();
    // A revocation counts in the digest at once (a node that missed one catches up now).
    assert_ne!(a.revocation_digest(), RevocationDigest::default());
    a.tick(NOW + 120_000, |_| None);
    let mut b = node(21);
    sub(&mut b, NOW, &ticket(ticket_body("princeton.codeen", 1)));
    assert_ne!(a.revocation_digest(), b.revocation_digest());
    // b reconciles with a (the node machine asks in turn, see `node::tests`).
    // The answer is a's page; b honours it (stops the sliver). b was down when it was
    // issued (up since an hour later), so its neighbours heard it: not gossiped on.
    let page = a
        .revocations_after(None, &[], &[], MAX_REVOCATIONS_PER_PAGE)
        .unwrap();
    assert_eq!(page, vec![rev.clone()]);
    let out = b
        .caught_up_revocation(NOW + 2_000, &page[0], NOW + 3_600_000)
        .unwrap();
    assert!(out.contains(&Output::Stop {
        id: 1,
        reason: StopReason::Revoked
    }));
    assert!(
        !out.iter().any(|o| matches!(o, Output::GossipRevocation(_))),
        "{out:?}"
    );
    // A node that was up when it was issued missed it through the network (a
    // partition): its neighbours may have too, so it passes it on.
    let mut d = node(22);
    let out = d
        .caught_up_revocation(NOW + 2_000, &page[0], NOW - 3_600_000)
        .unwrap();
    assert!(
        out.contains(&Output::GossipRevocation(rev.clone())),
        "{out:?}"
    );
    b.tick(NOW + 120_000, |_| None);
    assert_eq!(a.revocation_digest(), b.revocation_digest());
    // A restarted node re-reads what it had honoured from its own log, before it
    // restores slivers; the ticket chain then fails.
    let mut c = node(21);
    c.remember_revocation(NOW, &rev).unwrap();
    c.tick(NOW + 120_000, |_| None);
    assert_eq!(c.revocation_digest(), a.revocation_digest());
    let t = ticket(ticket_body("princeton.codeen", 1));
    let err = c.restore(NOW, 1, &t, &Invocation::default()).unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
    // The digest does not depend on arrival order.
    let bob = user_cert(&key(1), &key(4), "princeton.bob", "princeton.*").unwrap();
    let rev2 = revocation_of(1, &bob, "other");
    let (mut x, mut y) = (node(30), node(31));
    x.revocation(NOW, &rev).unwrap();
    x.revocation(NOW, &rev2).unwrap();
    y.revocation(NOW, &rev2).unwrap();
    y.revocation(NOW, &rev).unwrap();
    x.tick(NOW + 120_000, |_| None);
    y.tick(NOW + 120_000, |_| None);
    assert_eq!(x.revocation_digest(), y.revocation_digest());
    assert_eq!(x.revocation_digest().count, 2);
}

#[test]
fn the_owner_stays_in_control() {
    let mut n = node(10);
    sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 1)));
    let out = n.owner_stop(1, "abuse report").unwrap();
    assert!(
        matches!(&out[0], Output::Append(EntryBody::OwnerAction { action, .. }) if action.contains("abuse report"))
    );
    assert_eq!(
        out[1],
        Output::Stop {
            id: 1,
            reason: StopReason::Owner
        }
    );
    assert_eq!(n.owner_stop(9, "x"), Err(CoreError::NoSuchSliver(9)));
}

#[test]
fn the_module_must_be_the_one_the_ticket_names() {
    let mut n = node(10);
    let r = receipt(&n.submit(
        NOW,
        &ticket(ticket_body("princeton.codeen", 1)),
        ModuleHash::of(b"something else"),
        &Invocation::default(),
    ));
    assert!(r.reason.contains("the ticket names"), "{}", r.reason);
    assert_eq!(n.load().slivers, 0);
}

#[test]
fn the_arguments_must_be_the_ones_the_ticket_signs() {
    let mut n = node(10);
    let mut body = ticket_body("princeton.codeen", 1);
    let asked = Invocation::new(
        vec!["example.org:80".into()],
        vec![("MODE".into(), "probe".into())],
    );
    body.invocation = asked.hash();
    let t = ticket(body.clone());
    // A holder of the ticket (the node owner who received it, say) changes an argument.
    let changed = Invocation::new(vec!["victim.example:22".into()], asked.env.clone());
    let r = receipt(&n.submit(NOW, &t, body.module, &changed));
    assert!(!r.admitted);
    assert!(
        r.reason.contains("not the ones the ticket signs"),
        "{}",
        r.reason
    );
    // Or the environment.
    let env = Invocation::new(asked.args.clone(), vec![]);
    assert!(!receipt(&n.submit(NOW, &t, body.module, &env)).admitted);
    // What the researcher signed runs, and is recorded with the sliver.
    let out = n.submit(NOW, &t, body.module, &asked);
    assert!(receipt(&out).admitted);
    assert!(out.iter().any(|o| matches!(o,
        Output::Append(EntryBody::SliverCreated { invocation, .. }) if *invocation == asked)));
}

#[test]
fn a_sliver_that_cannot_start_is_refused_with_the_reason_and_logged() {
    let mut n = node(10);
    sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 1)));
    let out = n.start_failed(NOW, 1, "not a component");
    assert!(
        matches!(&out[0], Output::Append(EntryBody::SliverStopped { reason, .. }) if reason.contains("not a component"))
    );
    let r = receipt(&out);
    assert!(!r.admitted && r.reason.contains("not a component"));
    assert_eq!(n.load().slivers, 0);
}

#[test]
fn a_restart_restores_valid_slivers_under_their_ids_and_drops_expired_ones() {
    let mut n = node(10);
    let t = ticket(ticket_body("princeton.codeen", 1));
    sub(&mut n, NOW, &t);
    // A fresh core (the node restarted) long after the replay window.
    let mut again = node(10);
    again.continue_ids_from(50);
    let out = again
        .restore(NOW + 3_600_000, 1, &t, &Invocation::default())
        .unwrap();
    assert!(matches!(&out[0], Output::Start(p) if p.id == 1));
    assert!(
        matches!(&out[2], Output::Append(EntryBody::SliverCreated { who, .. }) if who.sliver == 1)
    );
    // New slivers take ids after the restored ones and the given floor.
    let out = sub(&mut again, NOW, &ticket(ticket_body("princeton.codeen", 2)));
    let id = out
        .iter()
        .find_map(|o| match o {
            Output::Start(p) => Some(p.id),
            _ => None,
        })
        .unwrap();
    assert_eq!(id, 50);
    // Past its validity, it does not come back.
    let mut late = node(10);
    let err = late
        .restore(NOW + 3 * DAY * 1000, 1, &t, &Invocation::default())
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn reasons_keep_every_byte_that_fits() {
    assert_eq!(within_bytes("abc", 2), "ab");
    assert_eq!(
        within_bytes("aé", 2),
        "a",
        "é is two bytes and does not fit"
    );
    assert_eq!(within_bytes("aé", 3), "aé");
    assert_eq!(within_bytes(&"x".repeat(600), 512).len(), 512);
}

#[test]
fn only_the_holder_renews_or_deletes_and_renewal_extends_life() {
    let mut n = node(10);
    sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 1)));
    let before = n.slivers().next().unwrap().not_after;
    // A renewal: the same holder, the same slice, later validity.
    let mut b = ticket_body("princeton.codeen", 2);
    b.validity = Validity::starting(T0, 5 * DAY);
    let out = n.renew(NOW, &ticket(b));
    assert!(receipt(&out).admitted, "{}", receipt(&out).reason);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Append(EntryBody::SliverRenewed { .. })))
    );
    assert!(n.slivers().next().unwrap().not_after > before);
    assert!(
        n.tick(NOW + 2 * DAY * 1000, |_| None).is_empty(),
        "renewed: not expired"
    );
    // A renewal for a slice with nothing here is refused with the reason.
    let r = receipt(&n.renew(NOW, &ticket(ticket_body("princeton.other", 3))));
    assert!(r.reason.contains("no sliver of slice"), "{}", r.reason);

    // Delete: someone else's signature stops nothing; the holder's stops the slice.
    let stranger =
        crate::wire::HolderRequest::sign(&key(7), key(10).public(), "princeton.codeen", T0)
            .unwrap();
    assert!(n.delete(NOW, &stranger).unwrap().is_empty());
    let holder =
        crate::wire::HolderRequest::sign(&key(3), key(10).public(), "princeton.codeen", T0)
            .unwrap();
    assert_eq!(
        n.delete(NOW, &holder).unwrap(),
        vec![Output::Stop {
            id: 1,
            reason: StopReason::Deleted
        }]
    );
    // The sandbox reports the stop, as the driver does; the sliver is gone.
    n.ended(1, "stopped", Usage::default());
    // The owner (the node's own key) stops anyone's slice, and it is said to be the owner.
    sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 4)));
    let owner =
        crate::wire::HolderRequest::sign(&key(10), key(10).public(), "princeton.codeen", T0)
            .unwrap();
    let out = n.delete(NOW, &owner).unwrap();
    assert!(
        matches!(
            &out[..],
            [Output::Stop {
                reason: StopReason::Owner,
                ..
            }]
        ),
        "{out:?}"
    );
    // One addressed to another node is an error.
    let elsewhere =
        crate::wire::HolderRequest::sign(&key(3), key(11).public(), "princeton.codeen", T0)
            .unwrap();
    assert!(n.delete(NOW, &elsewhere).is_err());
}

/// A slice delete file signed by `key(signer)`, certified as a user of `princeton.*` by the
/// root (key 1).
fn delete_of(signer: u8, slice: &str, tickets: Vec<CertId>, issued_at: u64) -> Vec<u8> {
    let user = user_cert(
        &key(1),
        &key(signer),
        &format!("princeton.u{signer}"),
        "princeton.*",
    )
    .unwrap();
    let body = objects::SliceDelete {
        slice: name(slice),
        tickets,
        issued_at,
        validity: Validity::starting(issued_at, DAY),
    };
    let d = objects::sign(&key(signer), &body).unwrap().bytes;
    Credential::new(d, [user]).to_bytes().unwrap()
}

fn stops(out: &[Output]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Output::Stop { id, reason } if *reason == StopReason::Deleted => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_slice_delete_ends_the_holders_slivers_is_logged_held_and_never_ends_a_later_slice() {
    let mut n = node(10);
    let t = ticket(ticket_body("princeton.codeen", 1));
    sub(&mut n, NOW, &t);
    let other = ticket(ticket_body("princeton.other", 2));
    sub(&mut n, NOW, &other);
    let digest = n.revocation_digest();
    // Its holder (key 3) deletes the slice, issued after the ticket.
    let del = delete_of(3, "princeton.codeen", vec![], T0 + 10);
    let out = n.revocation(NOW + 10_000, &del).unwrap();
    assert_eq!(stops(&out), vec![1], "only that slice's sliver stops");
    assert!(out.iter().any(|o| matches!(o,
        Output::Append(EntryBody::SliceDeleted { stopped, .. }) if stopped == &vec![1])));
    assert!(
        !out.iter().any(|o| matches!(o, Output::GossipRevocation(_))),
        "a delete is handed to every member by its holder, not flooded by each"
    );
    // Held with the revocations: once settled the digest changes, so members that lack it
    // catch up.
    n.tick(NOW + 200_000, |_| None);
    assert_ne!(n.revocation_digest(), digest);
    // Heard again: nothing new.
    assert!(n.revocation(NOW + 11_000, &del).unwrap().is_empty());
    // A restarted node that read it back from its log never restores that sliver.
    let mut again = node(10);
    again.remember_revocation(NOW + 20_000, &del).unwrap();
    let err = again
        .restore(NOW + 20_000, 1, &t, &Invocation::default())
        .unwrap_err();
    assert!(matches!(err, Refusal::Deleted(_)), "{err}");
    assert!(err.to_string().contains("deleted by its holder"), "{err}");
    // The other slice comes back.
    assert!(
        again
            .restore(NOW + 20_000, 2, &other, &Invocation::default())
            .is_ok()
    );
    // A later slice of the same name (a ticket issued after the delete) runs: replaying
    // the old delete ends nothing.
    let mut later = ticket_body("princeton.codeen", 3);
    later.issued_at = T0 + 20;
    later.validity = Validity::starting(T0 + 20, DAY);
    let out = sub(&mut again, NOW + 21_000, &ticket(later));
    assert!(receipt(&out).admitted, "{}", receipt(&out).reason);
    assert!(again.revocation(NOW + 22_000, &del).unwrap().is_empty());
    assert!(stops(&again.revocation(NOW + 22_000, &del).unwrap()).is_empty());
}

#[test]
fn a_delete_by_someone_else_or_an_uncertified_key_ends_nothing() {
    let mut n = node(10);
    sub(&mut n, NOW, &ticket(ticket_body("princeton.codeen", 1)));
    // Another certified user's delete of the same name: held (it is theirs to make), but
    // it ends only slivers they hold, and they hold none here.
    let theirs = delete_of(4, "princeton.codeen", vec![], T0 + 10);
    let out = n.revocation(NOW + 10_000, &theirs).unwrap();
    assert!(stops(&out).is_empty());
    // Naming the holder's ticket by id does not help them either.
    let t = ticket(ticket_body("princeton.codeen", 1));
    let id = CertId::of(Credential::from_bytes(&t).unwrap().leaf());
    let named = delete_of(4, "princeton.codeen", vec![id], T0 + 11);
    assert!(stops(&n.revocation(NOW + 10_000, &named).unwrap()).is_empty());
    // A key no authority here certified: refused, neither held nor passed on.
    let user = user_cert(&key(9), &key(8), "princeton.mallory", "princeton.*").unwrap();
    let body = objects::SliceDelete {
        slice: name("princeton.codeen"),
        tickets: vec![],
        issued_at: T0 + 12,
        validity: Validity::starting(T0 + 12, DAY),
    };
    let forged = Credential::new(objects::sign(&key(8), &body).unwrap().bytes, [user])
        .to_bytes()
        .unwrap();
    let digest = n.revocation_digest();
    assert!(matches!(
        n.revocation(NOW + 12_000, &forged),
        Err(CoreError::BadDelete(_))
    ));
    assert_eq!(n.revocation_digest(), digest);
    // A delete for a slice outside the signer's namespace is refused too.
    let outside = delete_of(3, "mit.codeen", vec![], T0 + 13);
    assert!(n.revocation(NOW + 13_000, &outside).is_err());
}

#[test]
fn two_nodes_that_differ_by_one_delete_differ_in_one_range_and_exchange_only_it() {
    let (mut a, mut b) = (node(10), node(11));
    let deletes: Vec<Vec<u8>> = (0..40)
        .map(|i| delete_of(3, &format!("princeton.s{i}"), vec![], T0 + i))
        .collect();
    for d in &deletes {
        a.revocation(NOW + 60_000, d).unwrap();
        b.revocation(NOW + 60_000, d).unwrap();
    }
    let settled = NOW + 300_000;
    a.tick(settled, |_| None);
    b.tick(settled, |_| None);
    assert_eq!(a.revocation_prints(), b.revocation_prints());
    // One more on a: exactly its range differs, and asking for that range brings it alone
    // (with whatever else shares its range).
    let extra = delete_of(3, "princeton.extra", vec![], T0 + 99);
    a.revocation(NOW + 60_000, &extra).unwrap();
    a.tick(settled, |_| None);
    let (pa, pb) = (a.revocation_prints(), b.revocation_prints());
    let differ: Vec<u8> = (0..=u8::MAX)
        .filter(|i| pa[usize::from(*i)] != pb[usize::from(*i)])
        .collect();
    let id = revocation_id(&extra).unwrap();
    assert_eq!(differ, vec![id.0[0]]);
    // Without a list of what b has, the range's other objects come too.
    let whole = a
        .revocations_after(None, &differ, &[], MAX_REVOCATIONS_PER_PAGE)
        .unwrap();
    assert!(whole.contains(&extra));
    assert!(whole.len() < deletes.len() / 4);
    // With b's list of what it holds there, the page is the one object b lacks.
    let have = b.revocation_prefixes(None, &differ);
    assert_eq!(have.len(), 8 * (whole.len() - 1));
    let page = a
        .revocations_after(None, &differ, &have, MAX_REVOCATIONS_PER_PAGE)
        .unwrap();
    assert_eq!(page, vec![extra.clone()]);
    // A list over the bound, or not of whole ids, is refused, with the reason.
    let flood = vec![0u8; 8 * (MAX_RECONCILE_HAVE + 1)];
    for bad in [&flood[..], &[0u8; 7][..]] {
        assert!(matches!(
            a.revocations_after(None, &differ, bad, MAX_REVOCATIONS_PER_PAGE),
            Err(CoreError::BadHaveList { .. })
        ));
    }
    for d in page {
        b.revocation(NOW + 60_000, &d).unwrap();
    }
    b.tick(settled, |_| None);
    assert_eq!(a.revocation_prints(), b.revocation_prints());
    assert_eq!(a.revocation_digest(), b.revocation_digest());
}

#[test]
fn a_delete_signed_under_a_certificate_revoked_later_is_forgotten_so_nodes_agree() {
    // `early` held key 3's delete before key 3's certificate was revoked; `late` hears of
    // it only after. Both hold key 4's.
    let (mut early, mut late) = (node(10), node(11));
    let void = delete_of(3, "princeton.codeen", vec![], T0 + 10);
    let kept = delete_of(4, "princeton.other", vec![], T0 + 10);
    early.revocation(NOW + 10_000, &void).unwrap();
    early.revocation(NOW + 10_000, &kept).unwrap();
    late.revocation(NOW + 10_000, &kept).unwrap();
    let user = user_cert(&key(1), &key(3), "princeton.u3", "princeton.*").unwrap();
    let rev = revocation_of(1, &user, "account compromised");
    early.revocation(NOW + 20_000, &rev).unwrap();
    late.revocation(NOW + 20_000, &rev).unwrap();
    assert!(matches!(
        late.revocation(NOW + 21_000, &void),
        Err(CoreError::BadDelete(_))
    ));
    // `early` no longer serves it, so the two hold the same set for members:
    // reconciliations between them stop differing (they fetched and refused it every time
    // before, for as long as it was held).
    early.tick(NOW + 300_000, |_| None);
    late.tick(NOW + 300_000, |_| None);
    assert_eq!(early.held_counts(), (1, 1));
    assert_eq!(early.held_counts(), late.held_counts());
    assert_eq!(early.revocation_prints(), late.revocation_prints());
    assert_eq!(early.revocation_digest(), late.revocation_digest());
    // But on `early` it still ends what it ended: key 3's ticket under its other,
    // unrevoked certificate (`princeton.alice`), issued before the delete, is not restored
    // there (a deleted slice does not come back), until the delete expires.
    let t = ticket(ticket_body("princeton.codeen", 1));
    let err = early
        .restore(NOW + 300_000, 1, &t, &Invocation::default())
        .unwrap_err();
    assert!(matches!(err, Refusal::Deleted(_)), "{err}");
}

#[test]
fn a_members_long_repeated_range_list_costs_one_lookup_per_id_and_answers_the_same() {
    let mut a = node(10);
    for i in 0..20 {
        a.revocation(
            NOW + 60_000,
            &delete_of(3, &format!("princeton.s{i}"), vec![], T0 + i),
        )
        .unwrap();
    }
    let first = a.revocations_after(None, &[], &[], 1).unwrap().remove(0);
    let b = revocation_id(&first).unwrap().0[0];
    let want = a
        .revocations_after(None, &[b], &[], MAX_REVOCATIONS_PER_PAGE)
        .unwrap();
    // A hostile asker repeats the range a million times: the same answer, read once.
    let hostile = vec![b; 1 << 20];
    assert_eq!(
        a.revocations_after(None, &hostile, &[], MAX_REVOCATIONS_PER_PAGE)
            .unwrap(),
        want
    );
    assert!(want.contains(&first));
}

#[test]
fn the_sensors_right_is_asked_for_granted_by_every_link_and_kept_through_renewals() {
    let mut n = node(10);
    // Asked and allowed by the chain (nothing takes it away): the sliver has it.
    let mut b = ticket_body("princeton.monitor", 1);
    b.network.sensors = true;
    sub(&mut n, NOW, &ticket(b));
    assert!(n.slivers().next().unwrap().network.sensors);
    // Not asked: not had.
    sub(&mut n, NOW, &ticket(ticket_body("princeton.quiet", 2)));
    assert!(
        !n.slivers()
            .find(|p| p.who.slice.as_str() == "princeton.quiet")
            .unwrap()
            .network
            .sensors
    );
    // A renewal that would drop it (or add it) is refused, with its reason: the slivers
    // keep the rights they started with, and their old chain stays the one revocations
    // follow.
    let mut renew = ticket_body("princeton.monitor", 3);
    renew.validity = Validity::starting(T0, 5 * DAY);
    let r = receipt(&n.renew(NOW, &ticket(renew)));
    assert!(!r.admitted);
    assert!(r.reason.contains("sensors right"), "{}", r.reason);
    let mut renew = ticket_body("princeton.quiet", 4);
    renew.network.sensors = true;
    let r = receipt(&n.renew(NOW, &ticket(renew)));
    assert!(
        !r.admitted && r.reason.contains("sensors right"),
        "{}",
        r.reason
    );
    // The same right renews.
    let mut renew = ticket_body("princeton.monitor", 5);
    renew.network.sensors = true;
    renew.validity = Validity::starting(T0, 5 * DAY);
    let r = receipt(&n.renew(NOW, &ticket(renew)));
    assert!(r.admitted, "{}", r.reason);
}

#[test]
fn an_owner_who_takes_the_sensors_right_away_refuses_tickets_that_ask_for_it() {
    let text = format!(
        "[[authority]]\nname = \"princeton\"\npublic_key = \"{}\"\nsensors = false\n",
        key(1).public().to_hex()
    );
    let policy = slicefed_trust::TrustPolicy::parse(&text).unwrap();
    // The owner's choice survives the policy being written back out.
    assert!(policy.to_toml().contains("sensors = false"));
    let mut n = NodeCore::new(
        key(10),
        Capacity {
            max_slivers: 3,
            memory: 1 << 30,
            default_sliver_memory: 64 << 20,
        },
        policy,
    );
    let mut asks = ticket_body("princeton.monitor", 1);
    asks.network.sensors = true;
    let r = receipt(&sub(&mut n, NOW, &ticket(asks)));
    assert!(!r.admitted);
    assert!(r.reason.contains("sensors"), "{}", r.reason);
    assert_eq!(n.ticket_counts().refused.get("sensors"), Some(&1));
    // A ticket that does not ask runs, without it.
    let r = receipt(&sub(
        &mut n,
        NOW,
        &ticket(ticket_body("princeton.quiet", 2)),
    ));
    assert!(r.admitted, "{}", r.reason);
    assert!(!n.slivers().next().unwrap().network.sensors);
}

#[test]
fn a_member_that_advertises_as_fast_as_it_signs_is_heard_at_an_honest_rate() {
    let mut n = node(10);
    let cred = node_credential(20, Validity::starting(T0 - DAY, 30 * DAY));
    n.advert(NOW, key(20).public(), &cred, sent(NOW)).unwrap();
    let least = (n.advert_interval_ms() / crate::core::ADVERT_GAP_SHARE)
        .min(crate::core::ADVERT_GAP_MAX_MS);
    // An advert every 10 ms for a minute, each newer than the last, and each claiming a
    // new SWIM start: only those a gap apart are taken (and so passed on); the rest are
    // ignored with their reason.
    let (mut taken, mut too_soon) = (0u64, 0u64);
    for i in 1..=6_000u64 {
        let at = NOW + i * 10;
        let load = Load {
            swim_bump: i,
            ..sent(at)
        };
        match n.advert(at, key(20).public(), &cred, load) {
            Ok(_) => taken += 1,
            Err(CoreError::AdvertTooSoon { gap_ms, least_ms }) => {
                assert!(gap_ms < least_ms && least_ms == least);
                too_soon += 1;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(taken, 60_000 / least, "taken {taken}, gap {least} ms");
    assert_eq!(taken + too_soon, 6_000);
    // A new credential every time (the same chain with an extra object makes a new
    // hash) is no way around it.
    let at = NOW + 60_000 + least;
    n.advert(at, key(20).public(), &cred, sent(at)).unwrap();
    let leaf = Credential::from_bytes(&cred).unwrap().leaf().to_vec();
    let junk = Credential::from_bytes(&node_credential(21, Validity::starting(T0, DAY)))
        .unwrap()
        .leaf()
        .to_vec();
    let other = Credential::new(leaf, [junk]).to_bytes().unwrap();
    let err = n.advert(at + 10, key(20).public(), &other, sent(at + 10));
    assert!(
        matches!(err, Err(CoreError::AdvertTooSoon { .. })),
        "{err:?}"
    );
    // A turn to unhealthy is heard at once; turning healthy again waits for the gap (a
    // member cannot toggle at will).
    let failing = Load {
        unhealthy: Some("disk full".into()),
        ..sent(at + 20)
    };
    n.advert(at + 20, key(20).public(), &cred, failing).unwrap();
    assert!(n.members()[&key(20).public()].load.unhealthy.is_some());
    let err = n.advert(at + 30, key(20).public(), &cred, sent(at + 30));
    assert!(
        matches!(err, Err(CoreError::AdvertTooSoon { .. })),
        "{err:?}"
    );
    // A revocation of its certificate ends it at once, and its next advert is refused,
    // gap or not.
    let leaf = Credential::from_bytes(&cred).unwrap().leaf().to_vec();
    let out = n
        .revocation(at, &revocation_of(1, &leaf, "decommissioned"))
        .unwrap();
    assert!(out.contains(&Output::Left(key(20).public())));
    let err = n.advert(at + 40, key(20).public(), &cred, sent(at + 40));
    assert!(
        matches!(err, Err(CoreError::CredentialLapsed(ref r)) if r.contains("revoked")),
        "{err:?}"
    );
    // In a large federation the gap asked is at most 10 s.
    let mut big = node(11);
    big.set_advert_timing(400_000, 30);
    big.advert(NOW, key(20).public(), &cred, sent(NOW)).unwrap();
    let taken = (1..=6_000u64)
        .filter(|i| {
            let at = NOW + i * 10;
            big.advert(at, key(20).public(), &cred, sent(at)).is_ok()
        })
        .count();
    assert_eq!(taken, 6, "one every {} ms", crate::core::ADVERT_GAP_MAX_MS);
}

#[test]
fn a_revocation_ends_only_the_members_its_signer_is_entitled_over() {
    use slicefed_trust::policy::{TrustPolicy, TrustedAuthority};
    use slicefed_trust::{ResourceCaps, caps::NetworkRights};
    // Two roots trusted for one namespace; sub-authority 5 certified by both.
    let root = |n: u8, label: &str| TrustedAuthority {
        name: name(label),
        key: key(n).public(),
        namespaces: vec![name("princeton")],
        caps: ResourceCaps::default(),
        network: NetworkRights::INHERIT,
    };
    let policy = TrustPolicy::new(vec![root(1, "princeton"), root(2, "other")]).unwrap();
    let mut n = node_trusting(10, policy);
    let by_princeton =
        slicefed_trust::fixtures::authority_cert(&key(1), &key(5), "princeton.cs").unwrap();
    let by_other =
        slicefed_trust::fixtures::authority_cert(&key(2), &key(5), "princeton.cs").unwrap();
    let node_cert = node_cert(
        5,
        20,
        "princeton.cs.node20",
        Validity::starting(T0 - DAY, 30 * DAY),
    );
    // Member 20 joined on the chain through the first root.
    let cred = Credential::new(node_cert.clone(), [by_princeton.clone()])
        .to_bytes()
        .unwrap();
    n.advert(NOW, key(20).public(), &cred, sent(NOW)).unwrap();
    // The other root revokes 20's certificate, carrying its own chain: held (it is
    // entitled there), but it is not entitled over 20's chain, so 20 stays a member.
    let theirs = Credential::new(node_cert.clone(), [by_other]);
    let rev = slicefed_trust::fixtures::revocation_file(&key(2), &theirs, "not ours", T0).unwrap();
    let out = n.revocation(NOW + 1, &rev).unwrap();
    assert!(!out.contains(&Output::Left(key(20).public())), "{out:?}");
    assert!(n.members().contains_key(&key(20).public()));
    // Sub-authority 5's own revocation (it signed 20's certificate) ends it.
    let mine = Credential::new(node_cert, [by_princeton]);
    let rev =
        slicefed_trust::fixtures::revocation_file(&key(5), &mine, "decommissioned", T0).unwrap();
    let out = n.revocation(NOW + 2, &rev).unwrap();
    assert!(out.contains(&Output::Left(key(20).public())), "{out:?}");
    assert!(!n.members().contains_key(&key(20).public()));
}

#[test]
fn only_a_nodes_own_certificate_can_have_lapsed_anything_else_expired_is_refused() {
    let mut n = node(10);
    let expired = Validity::starting(T0 - 30 * DAY, DAY);
    // Node 20's own certificate, past its end: lapsed (whoever passed it on may not know).
    let own = node_credential(20, expired);
    let err = n.advert(NOW, key(20).public(), &own, sent(NOW));
    assert!(
        matches!(err, Err(CoreError::CredentialLapsed(_))),
        "{err:?}"
    );
    // The same expired certificate offered for another node: not its credential at all.
    let err = n.advert(NOW, key(21).public(), &own, sent(NOW));
    assert!(matches!(err, Err(CoreError::NotMember(_))), "{err:?}");
    // A user's certificate signed in the past is no node's credential either.
    let user = objects::sign(
        &key(1),
        &UserCert {
            subject: key(21).public(),
            name: name("princeton.old"),
            slices: Pattern::parse("princeton.*").unwrap(),
            grant: slicefed_trust::caps::Grant {
                validity: expired,
                ..slicefed_trust::fixtures::open_grant(Rights::CREATE)
            },
        },
    )
    .unwrap()
    .bytes;
    let user = Credential::new(user, []).to_bytes().unwrap();
    let err = n.advert(NOW, key(21).public(), &user, sent(NOW));
    assert!(matches!(err, Err(CoreError::NotMember(_))), "{err:?}");
}
