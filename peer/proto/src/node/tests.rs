//! Scripted sequences of the node machine with no IO: what a router would see.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::core::Capacity;
use crate::wire::{AdvertBody, HolderRequest};
use proptest::prelude::*;
use slicefed_ledger::checkpoint::Checkpoint;
use slicefed_ledger::merkle::{Tree, leaf_hash};
use slicefed_trust::fixtures::{DAY, T0, key, name, policy_for, ticket_body, user_cert};
use slicefed_trust::objects::{self, NodeCert, NodeReceipt, SliceTicket};
use slicefed_trust::{Invocation, caps::Validity};

const NOW: u64 = T0 * 1000 + 1_000;
const TICK: u64 = 1_000;

fn machine(n: u8) -> Node {
    let core = NodeCore::new(
        key(n),
        Capacity {
            max_slivers: 3,
            memory: 1 << 30,
            default_sliver_memory: 64 << 20,
        },
        policy_for(&[("princeton", &key(1))]),
    );
    Node::new(core, Settings::new(TICK), NOW)
}

fn node_credential(n: u8) -> Vec<u8> {
    let cert = objects::sign(
        &key(1),
        &NodeCert {
            subject: key(n).public(),
            name: name(&format!("princeton.node{n}")),
            validity: Validity::starting(T0 - DAY, 30 * DAY),
        },
    )
    .unwrap()
    .bytes;
    Credential::new(cert, []).to_bytes().unwrap()
}

fn advert(n: u8, at_ms: u64) -> Vec<u8> {
    advert_with(n, at_ms, true)
}

/// An advert by node `n`, carrying its credential or naming it by hash.
fn advert_with(n: u8, at_ms: u64, full: bool) -> Vec<u8> {
    advert_of_start(n, at_ms, full, 1)
}

/// An advert by node `n` naming SWIM start `swim_bump`.
fn advert_of_start(n: u8, at_ms: u64, full: bool, swim_bump: u64) -> Vec<u8> {
    let credential = node_credential(n);
    AdvertBody {
        node: key(n).public(),
        credential_hash: serde_bytes::ByteArray::new(crate::core::credential_hash(&credential)),
        credential: if full { credential } else { vec![] },
        slivers: 0,
        free_memory: 1 << 30,
        load_x100: 0,
        uptime_secs: 1,
        version: "test".into(),
        tags: vec![],
        traffic: Default::default(),
        addrs: vec![],
        time_ms: at_ms,
        swim_bump,
        unhealthy: None,
    }
    .sign(&key(n))
    .unwrap()
    .to_bytes()
    .unwrap()
}

/// Members `ns` advertise to `m` at `now`.
fn join(m: &mut Node, ns: &[u8], now: u64) -> Vec<Effect> {
    let mut out = vec![];
    for &n in ns {
        // A listed member that advertised less than the least gap ago is not heard again
        // so soon (`CoreError::AdvertTooSoon`): ignored, not refused. Any other advert is
        // taken.
        let least = (m.core().advert_interval_ms() / crate::core::ADVERT_GAP_SHARE)
            .min(crate::core::ADVERT_GAP_MAX_MS);
        let too_soon = m
            .core()
            .members()
            .get(&key(n).public())
            .is_some_and(|mm| now.saturating_sub(mm.last_sent_ms) < least);
        let e = m.handle(
            now,
            Input::Gossip {
                id: u64::from(n),
                source: Some(key(n).public()),
                topic: Topic::Advert,
                data: advert(n, now),
            },
        );
        let expected = if too_soon {
            Verdict::Ignore
        } else {
            Verdict::Accept
        };
        assert!(
            e.contains(&Effect::Verdict {
                id: u64::from(n),
                verdict: expected
            }),
            "{e:?}"
        );
        out.extend(e);
    }
    out
}

/// Answers every request in `effects` (and in the effects the answers bring) that
/// `member` answers; returns the answers' effects.
fn serve(
    m: &mut Node,
    now: u64,
    effects: &[Effect],
    member: &mut dyn FnMut(&Request) -> Option<Response>,
) -> Vec<Effect> {
    let mut all = vec![];
    let mut asks: Vec<Effect> = effects.to_vec();
    while let Some(e) = asks.pop() {
        let Effect::Send {
            token: Some(token),
            request,
            ..
        } = e
        else {
            continue;
        };
        let Some(response) = member(&request) else {
            continue;
        };
        let answer = m.handle(now, Input::Answer { token, response });
        asks.extend(answer.iter().cloned());
        all.extend(durable(m, now, answer));
    }
    all
}

/// A member whose range fingerprints are `prints` and that holds `revocation`: it answers
/// a reconciliation with them, and a page request (which must name only the revocation's
/// range) with the revocation.
fn holder_of(prints: Vec<u64>, revocation: Vec<u8>) -> impl FnMut(&Request) -> Option<Response> {
    let range = crate::core::revocation_id(&revocation).unwrap().0[0];
    move |request| match request {
        Request::RevocationPrints { .. } => Some(Response::RevocationPrints(prints.clone())),
        Request::Revocations { buckets, .. } => {
            assert_eq!(buckets, &vec![range], "only the range that differs");
            Some(Response::Revocations(vec![serde_bytes::ByteBuf::from(
                revocation.clone(),
            )]))
        }
        _ => None,
    }
}

/// An honest member that holds what `prints` says `m` holds.
fn same_as(prints: Vec<u64>) -> impl FnMut(&Request) -> Option<Response> {
    move |r| match r {
        Request::RevocationPrints { unless: Some(_) } => Some(Response::HeldSame),
        Request::RevocationPrints { unless: None } => {
            Some(Response::RevocationPrints(prints.clone()))
        }
        _ => None,
    }
}

/// A ticket for `slice` by alice (key 3, certified by the root key 1).
fn ticket(slice: &str, nonce: u8) -> (Vec<u8>, ModuleHash) {
    let user = user_cert(&key(1), &key(3), "princeton.alice", "princeton.*").unwrap();
    let body: SliceTicket = ticket_body(slice, nonce);
    let module = body.module;
    let t = objects::sign(&key(3), &body).unwrap().bytes;
    (Credential::new(t, [user]).to_bytes().unwrap(), module)
}

fn submit(m: &mut Node, now: u64, reply: ReplyId, cred: &[u8], module: ModuleHash) -> Vec<Effect> {
    m.handle(
        now,
        Input::Submit {
            reply,
            credential: cred.to_vec(),
            module,
            invocation: Invocation::default(),
        },
    )
}

fn writes(e: &[Effect]) -> Vec<WriteId> {
    e.iter()
        .filter_map(|e| match e {
            Effect::Append { write, .. } | Effect::Persist { write, .. } => Some(*write),
            _ => None,
        })
        .collect()
}

/// A router whose disk never fails: every write reported durable, what follows collected.
fn durable(m: &mut Node, now: u64, effects: Vec<Effect>) -> Vec<Effect> {
    let mut all = vec![];
    let mut queue = effects;
    while !queue.is_empty() {
        let ws = writes(&queue);
        all.append(&mut queue);
        for w in ws {
            queue.extend(m.handle(now, Input::Written { write: w }));
        }
    }
    all
}

fn reply_of(e: &[Effect], to: ReplyId) -> Option<&Response> {
    e.iter().find_map(|e| match e {
        Effect::Reply { to: t, response } if *t == to => Some(response),
        _ => None,
    })
}

fn receipt(r: &Response) -> NodeReceipt {
    match r {
        Response::Receipt(b) => objects::open::<NodeReceipt>(b).unwrap().body,
        other => panic!("not a receipt: {other:?}"),
    }
}

/// The token of the first request among `e` that `what` picks and whose answer is waited for.
fn asked_token(e: &[Effect], what: impl Fn(&Request) -> bool) -> Option<Token> {
    e.iter().find_map(|x| match x {
        Effect::Send {
            token: Some(t),
            request,
            ..
        } if what(request) => Some(*t),
        _ => None,
    })
}

fn started(e: &[Effect]) -> Vec<u64> {
    e.iter()
        .filter_map(|e| match e {
            Effect::Start { plan, .. } => Some(plan.id),
            _ => None,
        })
        .collect()
}

#[test]
fn an_admitted_ticket_is_answered_only_after_its_creation_is_durable_and_it_runs() {
    let mut m = machine(9);
    let (cred, module) = ticket("princeton.codeen", 1);
    let first = submit(&mut m, NOW, 7, &cred, module);
    // Only the creation's append: no start, no answer yet.
    assert!(matches!(
        first.as_slice(),
        [Effect::Append {
            body: EntryBody::SliverCreated { .. },
            ..
        }]
    ));
    let w = writes(&first)[0];
    let then = m.handle(NOW, Input::Written { write: w });
    assert!(matches!(then.first(), Some(Effect::Save { from: 7, .. })));
    let id = started(&then)[0];
    assert!(reply_of(&then, 7).is_none(), "answered before it runs");
    let ran = m.handle(NOW, Input::Started { id });
    assert!(receipt(reply_of(&ran, 7).unwrap()).admitted);
}

#[test]
fn an_append_failure_never_yields_an_admitted_receipt_and_the_node_fails_closed() {
    let mut m = machine(9);
    let (cred, module) = ticket("princeton.codeen", 1);
    let first = submit(&mut m, NOW, 7, &cred, module);
    let w = writes(&first)[0];
    let after = m.handle(
        NOW,
        Input::WriteFailed {
            write: w,
            why: "No space left on device".into(),
        },
    );
    assert!(started(&after).is_empty());
    let r = receipt(reply_of(&after, 7).unwrap());
    assert!(!r.admitted);
    assert!(r.reason.contains("No space left"), "{}", r.reason);
    // A late "written" for it changes nothing.
    assert!(m.handle(NOW, Input::Written { write: w }).is_empty());
    // The next ticket is refused, with the reason, and nothing is appended.
    let (cred2, module2) = ticket("princeton.other", 2);
    let next = submit(&mut m, NOW, 8, &cred2, module2);
    assert!(writes(&next).is_empty());
    let r = receipt(reply_of(&next, 8).unwrap());
    assert!(!r.admitted && r.reason.contains("ledger"), "{}", r.reason);
    assert!(m.core().load().unhealthy.is_some());
    // Once it writes again, tickets are taken.
    m.handle(NOW, Input::LedgerRecovered);
    let (cred3, module3) = ticket("princeton.third", 3);
    assert_eq!(writes(&submit(&mut m, NOW, 9, &cred3, module3)).len(), 1);
}

#[test]
fn a_refused_ticket_is_answered_at_once_with_its_reason_and_logs_nothing() {
    let mut m = machine(9);
    let (cred, _) = ticket("princeton.codeen", 1);
    let e = submit(&mut m, NOW, 7, &cred, ModuleHash::of(b"another module"));
    assert!(writes(&e).is_empty());
    let r = receipt(reply_of(&e, 7).unwrap());
    assert!(!r.admitted && r.reason.contains("module"), "{}", r.reason);
    // Garbage is refused the same way.
    let e = submit(&mut m, NOW, 8, b"not a ticket", ModuleHash::of(b"x"));
    assert!(!receipt(reply_of(&e, 8).unwrap()).admitted);
}

#[test]
fn a_stop_that_comes_while_a_sliver_starts_is_carried_out_once_it_runs() {
    let mut m = machine(9);
    let (cred, module) = ticket("princeton.codeen", 1);
    let first = submit(&mut m, NOW, 7, &cred, module);
    let e = durable(&mut m, NOW, first);
    let id = started(&e)[0];
    // The owner stops the slice before the sandbox reports it running.
    let asked = m.handle(
        NOW,
        Input::Owner {
            reply: 8,
            request: AdminRequest::Stop {
                slice: "princeton.codeen".into(),
            },
        },
    );
    let stop = durable(&mut m, NOW, asked);
    assert!(!stop.iter().any(|e| matches!(e, Effect::Stop { .. })));
    assert_eq!(reply_of(&stop, 8), Some(&Response::Stopped(vec![id])));
    let ran = m.handle(NOW, Input::Started { id });
    assert!(ran.contains(&Effect::Stop {
        id,
        reason: StopReason::Owner
    }));
    assert!(receipt(reply_of(&ran, 7).unwrap()).admitted);
}

/// princeton's revocation of alice's user certificate ("stolen laptop").
fn alices_revocation() -> Vec<u8> {
    let user = user_cert(&key(1), &key(3), "princeton.alice", "princeton.*").unwrap();
    slicefed_trust::fixtures::revocation_file(
        &key(1),
        &Credential::new(user, []),
        "stolen laptop",
        T0,
    )
    .unwrap()
}

#[test]
fn revocations_are_heard_from_members_only_and_stop_what_they_revoke() {
    let mut m = machine(9);
    let (cred, module) = ticket("princeton.codeen", 1);
    let first = submit(&mut m, NOW, 7, &cred, module);
    let e = durable(&mut m, NOW, first);
    let id = started(&e)[0];
    m.handle(NOW, Input::Started { id });
    let revocation = alices_revocation();
    let gossip = |source: u8| Input::Gossip {
        id: 1,
        source: Some(key(source).public()),
        topic: Topic::Revocation,
        data: revocation.clone(),
    };
    // From a node that is not a member: rejected, nothing stopped or logged.
    let e = m.handle(NOW, gossip(5));
    assert_eq!(
        e,
        vec![Effect::Verdict {
            id: 1,
            verdict: Verdict::Reject(GossipRefused::NotMember("a revocation"))
        }]
    );
    join(&mut m, &[5], NOW);
    let e = m.handle(NOW, gossip(5));
    assert!(e.contains(&Effect::Stop {
        id,
        reason: StopReason::Revoked
    }));
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Append {
            body: EntryBody::RevocationSeen { .. },
            ..
        }
    )));
    // Heard on gossip: not published again by this node.
    assert!(!e.iter().any(|e| matches!(e, Effect::Publish { .. })));
}

#[test]
fn revocation_gossip_from_a_stranger_makes_a_node_ask_a_member_now_once_a_second() {
    let mut m = machine(9);
    join(&mut m, &[6], NOW);
    let revocation = alices_revocation();
    let gossip = Input::Gossip {
        id: 1,
        source: Some(key(5).public()),
        topic: Topic::Revocation,
        data: revocation,
    };
    let asks = |e: &[Effect]| {
        e.iter()
            .filter(|e| {
                matches!(e, Effect::Send { to, request: Request::RevocationPrints { .. }, .. }
                    if *to == key(6).public())
            })
            .count()
    };
    // Refused (gossip is heard from members only), nothing held, but the member is asked
    // at once instead of at the next turn.
    let e = m.handle(NOW, gossip.clone());
    assert!(e.contains(&Effect::Verdict {
        id: 1,
        verdict: Verdict::Reject(GossipRefused::NotMember("a revocation"))
    }));
    assert!(!e.iter().any(|e| matches!(e, Effect::Append { .. })));
    assert_eq!(asks(&e), 1);
    let token = asked_token(&e, |r| matches!(r, Request::RevocationPrints { .. })).unwrap();
    // A stranger repeating it within the second costs nothing more, nor while that
    // reconciliation is under way; once it is answered, a second later, one ask.
    assert_eq!(asks(&m.handle(NOW + 500, gossip.clone())), 0);
    assert_eq!(asks(&m.handle(NOW + 1_000, gossip.clone())), 0);
    m.handle(
        NOW + 1_100,
        Input::Answer {
            token,
            response: Response::HeldSame,
        },
    );
    assert_eq!(asks(&m.handle(NOW + 2_000, gossip.clone())), 1);
    // A member that does not answer holds the next ask back for three seconds, not for a
    // whole request timeout (a revocation must not wait on it).
    assert_eq!(asks(&m.handle(NOW + 3_500, gossip.clone())), 0);
    assert_eq!(asks(&m.handle(NOW + 5_000, gossip)), 1);
}

#[test]
fn after_unheard_revocation_gossip_a_node_asks_the_next_member_while_answers_bring_nothing() {
    let mut m = machine(9);
    join(&mut m, &[5, 6, 7, 8], NOW);
    let gossip = Input::Gossip {
        id: 1,
        source: Some(key(4).public()),
        topic: Topic::Revocation,
        data: alices_revocation(),
    };
    // Each reconciliation ask: to whom, with what token.
    let asks = |e: &[Effect]| -> Vec<(PublicKey, Token)> {
        e.iter()
            .filter_map(|e| match e {
                Effect::Send {
                    to,
                    token: Some(t),
                    request: Request::RevocationPrints { .. },
                } => Some((*to, *t)),
                _ => None,
            })
            .collect()
    };
    // The periodic turn's ask goes first, so that this test sees only the unheard ones
    // (the turn asks every five seconds).
    let turn = asks(&m.handle(NOW - 1, Input::Wake));
    assert_eq!(turn.len(), 1);
    m.handle(
        NOW - 1,
        Input::Answer {
            token: turn[0].1,
            response: Response::HeldSame,
        },
    );
    let first = asks(&m.handle(NOW, gossip.clone()));
    assert_eq!(first.len(), 1);
    let mut asked = vec![first[0].0];
    let mut token = first[0].1;
    let mut at = NOW;
    // The member asked did not hold it yet (its digest was this node's): a second after
    // the last ask the next member in turn is asked, three times more at most.
    for _ in 0..3 {
        let e = m.handle(
            at + 100,
            Input::Answer {
                token,
                response: Response::HeldSame,
            },
        );
        assert!(asks(&e).is_empty(), "not before a second has passed");
        assert!(e.contains(&Effect::WakeAt(at + 1_000)), "{e:?}");
        at += 1_000;
        let again = asks(&m.handle(at, Input::Wake));
        assert_eq!(again.len(), 1);
        assert!(
            !asked.contains(&again[0].0),
            "the next member, not one asked"
        );
        asked.push(again[0].0);
        token = again[0].1;
    }
    // Retries spent: an empty answer ends it (junk gossip cannot buy more than the ask a
    // second it always could).
    let e = m.handle(
        at + 100,
        Input::Answer {
            token,
            response: Response::HeldSame,
        },
    );
    assert!(!e.contains(&Effect::WakeAt(at + 1_000)), "{e:?}");
    assert!(asks(&m.handle(at + 1_000, Input::Wake)).is_empty());
    // A storm: more revocations heard while the first ask's chain of pages runs are asked
    // for once that chain may be given up on, though no gossip comes again (the member
    // fetched from may have held only the first).
    at += 5_000;
    let turn = asks(&m.handle(at, Input::Wake));
    assert_eq!(turn.len(), 1);
    m.handle(
        at,
        Input::Answer {
            token: turn[0].1,
            response: Response::HeldSame,
        },
    );
    let e = m.handle(at, gossip.clone());
    let one = asks(&e);
    assert_eq!(one.len(), 1, "{e:?}");
    assert!(asks(&m.handle(at + 200, gossip.clone())).is_empty());
    let mut theirs = vec![0u64; 256];
    theirs[0] = 1;
    let e = m.handle(
        at + 300,
        Input::Answer {
            token: one[0].1,
            response: Response::RevocationPrints(theirs.clone()),
        },
    );
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Send {
            request: Request::Revocations { .. },
            ..
        }
    )));
    assert!(asks(&m.handle(at + 1_000, Input::Wake)).is_empty());
    assert_eq!(asks(&m.handle(at + 3_000, Input::Wake)).len(), 1);
    // Prints that differ but a page that brings nothing (a member that holds less, or a
    // hostile one) count as an empty answer: the next member is asked a second later.
    at += 20_000;
    let turn = asks(&m.handle(at, Input::Wake));
    for (_, t) in turn {
        m.handle(
            at,
            Input::Answer {
                token: t,
                response: Response::HeldSame,
            },
        );
    }
    let one = asks(&m.handle(at, gossip));
    assert_eq!(one.len(), 1);
    let e = m.handle(
        at + 100,
        Input::Answer {
            token: one[0].1,
            response: Response::RevocationPrints(theirs.clone()),
        },
    );
    let page = asked_token(&e, |r| matches!(r, Request::Revocations { .. })).unwrap();
    let e = m.handle(
        at + 200,
        Input::Answer {
            token: page,
            response: Response::Revocations(vec![]),
        },
    );
    assert!(e.contains(&Effect::WakeAt(at + 1_000)), "{e:?}");
    assert_eq!(asks(&m.handle(at + 1_000, Input::Wake)).len(), 1);
}

#[test]
fn a_holders_delete_stops_its_slivers_and_is_answered_once_durable() {
    let mut m = machine(9);
    let (cred, module) = ticket("princeton.codeen", 1);
    let first = submit(&mut m, NOW, 7, &cred, module);
    let e = durable(&mut m, NOW, first);
    let id = started(&e)[0];
    m.handle(NOW, Input::Started { id });
    // Someone else's delete is refused with the reason.
    let forged = HolderRequest::sign(&key(4), key(9).public(), "princeton.codeen", T0 + 1).unwrap();
    let e = m.handle(
        NOW,
        Input::Request {
            reply: 1,
            from: None,
            request: Request::Delete(forged),
        },
    );
    assert_eq!(reply_of(&e, 1), Some(&Response::Stopped(vec![])));
    let d = HolderRequest::sign(&key(3), key(9).public(), "princeton.codeen", T0 + 1).unwrap();
    let e = m.handle(
        NOW,
        Input::Request {
            reply: 2,
            from: None,
            request: Request::Delete(d),
        },
    );
    assert!(e.contains(&Effect::Stop {
        id,
        reason: StopReason::Deleted
    }));
    // The sandbox reports the end; its files go once the end is durable.
    let ended = m.handle(
        NOW,
        Input::Ended {
            id,
            outcome: "stopped".into(),
            usage: Usage::default(),
        },
    );
    assert!(!ended.contains(&Effect::Forget { id }));
    let all = durable(&mut m, NOW, ended);
    assert!(all.contains(&Effect::Forget { id }));
}

#[test]
fn equivocation_proofs_are_taken_about_members_only() {
    let mut m = machine(9);
    join(&mut m, &[5], NOW);
    let cp = |root: u8| {
        Checkpoint {
            origin: key(5).public(),
            size: 4,
            root: [root; 32],
            time_ms: NOW,
        }
        .sign(&key(5))
        .unwrap()
    };
    let proof = EquivocationProof::build(cp(1), cp(2), &Tree::new()).unwrap();
    let e = m.handle(
        NOW,
        Input::Gossip {
            id: 3,
            source: Some(key(5).public()),
            topic: Topic::Equivocation,
            data: proof.to_bytes().unwrap(),
        },
    );
    assert!(e.contains(&Effect::Verdict {
        id: 3,
        verdict: Verdict::Accept
    }));
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Append {
            body: EntryBody::EquivocationSeen { .. },
            ..
        }
    )));
    assert!(
        m.witnessing()
            .witness()
            .offenders()
            .contains_key(&key(5).public())
    );
    // About a key nobody certified: neither kept, logged nor passed on.
    let made_up = |root: u8| {
        Checkpoint {
            origin: key(77).public(),
            size: 4,
            root: [root; 32],
            time_ms: NOW,
        }
        .sign(&key(77))
        .unwrap()
    };
    let e = m.handle(
        NOW,
        Input::Gossip {
            id: 4,
            source: Some(key(5).public()),
            topic: Topic::Equivocation,
            data: EquivocationProof::build(made_up(1), made_up(2), &Tree::new())
                .unwrap()
                .to_bytes()
                .unwrap(),
        },
    );
    assert_eq!(
        e,
        vec![Effect::Verdict {
            id: 4,
            verdict: Verdict::Ignore
        }]
    );
}

#[test]
fn the_log_of_a_member_that_left_is_offered_to_its_new_witnesses() {
    let mut m = machine(9);
    let others = [4, 5, 6, 7, 8, 10, 11];
    join(&mut m, &others, NOW);
    // This node holds a verified replica of member 5's log.
    let mut tree = Tree::new();
    for i in 0..3u8 {
        tree.push(leaf_hash(&[i]));
    }
    let cp = Checkpoint {
        origin: key(5).public(),
        size: 3,
        root: tree.root_at(3).unwrap(),
        time_ms: NOW,
    }
    .sign(&key(5))
    .unwrap();
    m.witnessing_mut()
        .witness_mut()
        .restore(key(5).public(), tree, Some(cp.clone()), 100);
    // Everyone but 5 keeps advertising; 5 goes silent and leaves.
    let mut now = NOW;
    let mut offered = vec![];
    let mut left = false;
    for _ in 0..600 {
        now += TICK;
        let alive: Vec<u8> = others.iter().copied().filter(|n| *n != 5).collect();
        join(&mut m, &alive, now);
        for e in m.handle(now, Input::Tick { log_size: 0 }) {
            match e {
                Effect::Left(k) if k == key(5).public() => left = true,
                Effect::Send {
                    to,
                    request: Request::Witness(crate::wire::WitnessNote::Offer(c)),
                    ..
                } if c == cp => offered.push(to),
                _ => {}
            }
        }
        if !offered.is_empty() {
            break;
        }
    }
    assert!(left);
    assert!(!offered.is_empty());
    assert!(!offered.contains(&key(5).public()));
}

fn saved(id: u64, cred: &[u8]) -> Saved {
    Saved {
        id,
        credential: cred.to_vec(),
        invocation: Invocation::default(),
    }
}

fn logged_as(id: u64, cred: &[u8]) -> BTreeMap<u64, (CertId, InvocationHash)> {
    let t = CertId::of(Credential::from_bytes(cred).unwrap().leaf());
    BTreeMap::from([(id, (t, Invocation::default().hash()))])
}

/// Restarts `m` with sliver 4 (alice's ticket for `princeton.codeen`) saved and logged;
/// returns the ticket.
fn restart_with_sliver_4(m: &mut Node) -> Vec<u8> {
    let (cred, _) = ticket("princeton.codeen", 1);
    m.handle(
        NOW,
        Input::Restart {
            saved: vec![saved(4, &cred)],
            logged: logged_as(4, &cred),
        },
    );
    cred
}

/// Ticks `m` from `now` for `n` ticks with members `ns` advertising; returns everything.
fn run_ticks(m: &mut Node, now: &mut u64, n: usize, ns: &[u8]) -> Vec<Effect> {
    let mut all = vec![];
    for _ in 0..n {
        *now += TICK;
        // A restart asks members as it learns them (not at its next tick).
        let e = join(m, ns, *now);
        let e = durable(m, *now, e);
        let prints = m.core().revocation_prints();
        all.extend(serve(m, *now, &e, &mut same_as(prints)));
        all.extend(e);
        let e = m.handle(*now, Input::Tick { log_size: 0 });
        let e = durable(m, *now, e);
        let prints = m.core().revocation_prints();
        all.extend(serve(m, *now, &e, &mut same_as(prints)));
        all.extend(e);
    }
    all
}

#[test]
fn a_restarted_node_restores_its_slivers_only_after_catching_up_with_members() {
    let mut m = machine(9);
    restart_with_sliver_4(&mut m);
    assert!(m.restoring());
    // Alone for a tick: nothing yet (it listens first).
    let mut now = NOW;
    assert!(started(&run_ticks(&mut m, &mut now, 1, &[])).is_empty());
    // Members that hold what it holds: caught up with three, it restores under the old id
    // at once (within the tick they were heard in: a quorum needs no listening period).
    let e = run_ticks(&mut m, &mut now, 1, &[4, 5, 6]);
    assert_eq!(started(&e), vec![4]);
    assert!(e.contains(&Effect::Start {
        plan: m.core().slivers().next().unwrap().clone(),
        from: StartFrom::Saved
    }));
    assert!(!m.restoring());
}

/// A node restarted with sliver 4 (alice's slice) saved and logged, and the revocation of
/// alice's certificate that it has not heard of.
fn restarted_with_alice_revoked() -> (Node, Vec<u8>) {
    let mut m = machine(9);
    restart_with_sliver_4(&mut m);
    let revocation = alices_revocation();
    (m, revocation)
}

#[test]
fn a_sliver_revoked_while_its_node_was_down_never_comes_back() {
    let (mut m, revocation) = restarted_with_alice_revoked();
    let mut now = NOW;
    // Member 4 holds the revocation; members 5 and 6 hold what this node holds.
    let all = run_ticks_with_holder(&mut m, &mut now, 10, &[4, 5, 6], &revocation);
    assert!(!m.restoring());
    assert!(started(&all).is_empty(), "a revoked sliver came back");
    assert!(all.contains(&Effect::Forget { id: 4 }));
    assert!(all.iter().any(|e| matches!(
        e,
        Effect::Append { body: EntryBody::OwnerAction { action, .. }, .. }
            if action.contains("did not restore sliver 4")
    )));
}

/// Ticks with members `ns` listed; member 4 holds `revocation`, the others what this node
/// holds. Returns everything.
fn run_ticks_with_holder(
    m: &mut Node,
    now: &mut u64,
    n: usize,
    ns: &[u8],
    revocation: &[u8],
) -> Vec<Effect> {
    let id = crate::core::revocation_id(revocation).unwrap();
    let mut prints = vec![0u64; crate::core::REVOCATION_BUCKETS];
    prints[usize::from(id.0[0])] = 7;
    let mut member4 = holder_of(prints, revocation.to_vec());
    let mut all = vec![];
    for _ in 0..n {
        *now += TICK;
        let e = join(m, ns, *now);
        let joined = durable(m, *now, e);
        let e = m.handle(*now, Input::Tick { log_size: 0 });
        let ticked = durable(m, *now, e);
        for e in [joined, ticked] {
            for x in &e {
                let Effect::Send { to, .. } = x else { continue };
                let one = std::slice::from_ref(x);
                if *to == key(4).public() {
                    all.extend(serve(m, *now, one, &mut member4));
                } else {
                    let ours = m.core().revocation_prints();
                    all.extend(serve(m, *now, one, &mut same_as(ours)));
                }
            }
            all.extend(e);
        }
    }
    all
}

#[test]
fn a_restarted_node_that_knew_members_waits_for_as_many_and_never_concludes_it_is_alone() {
    let mut m = machine(9);
    let revocation = alices_revocation();
    // It knew members 4, 5 and 6 before it went down (their credentials are on its disk).
    m.remember_credentials([4, 5, 6].map(|n| (key(n).public(), Arc::from(node_credential(n)))));
    restart_with_sliver_4(&mut m);
    let mut now = NOW;
    // Its network is slow to come up (the machine under load): no member is heard for
    // twice as long as a node that knew none waits before it concludes it is alone.
    let e = run_ticks(&mut m, &mut now, 2 * RESTORE_ALONE_TICKS as usize, &[]);
    assert!(started(&e).is_empty());
    assert!(!e.contains(&Effect::Forget { id: 4 }));
    assert!(m.restoring(), "out of touch is not alone: it waits");
    // Then member 5, which missed the revocation too: its answer alone, however long the
    // node listens short of settling, does not release the restore.
    let e = run_ticks_with_holder(
        &mut m,
        &mut now,
        RESTORE_ALONE_TICKS as usize - 1,
        &[5],
        &revocation,
    );
    assert!(started(&e).is_empty());
    assert!(m.restoring(), "one answer of the three members it knew");
    // Member 4, which holds the revocation, comes back too (member 6 died meanwhile): the
    // node settles for the two it lists, and the revoked sliver never runs.
    let e = run_ticks_with_holder(&mut m, &mut now, 3, &[4, 5], &revocation);
    assert!(!m.restoring());
    assert!(started(&e).is_empty(), "a revoked sliver came back");
    assert!(e.contains(&Effect::Forget { id: 4 }));
}

#[test]
fn a_restarted_node_that_knew_no_member_and_hears_none_concludes_it_is_alone() {
    let mut m = machine(9);
    restart_with_sliver_4(&mut m);
    let mut now = NOW;
    let e = run_ticks(&mut m, &mut now, RESTORE_ALONE_TICKS as usize - 1, &[]);
    assert!(started(&e).is_empty(), "it listens first");
    let e = run_ticks(&mut m, &mut now, 2, &[]);
    assert_eq!(started(&e), vec![4], "a federation of one restores its own");
    assert!(!m.restoring());
}

#[test]
fn members_that_raced_to_be_listed_first_do_not_release_a_restore_without_one_it_knew() {
    let mut m = machine(20);
    let revocation = alices_revocation();
    // It knew member 4, which holds the revocation. Members 5 to 10 joined while it was
    // down and are listed first (they raced to greet it), all six answering that they
    // hold what it holds: the whole asked set, every one answered.
    m.remember_credentials([(key(4).public(), Arc::from(node_credential(4)))]);
    restart_with_sliver_4(&mut m);
    let mut now = NOW;
    let raced: Vec<u8> = (5..=10).collect();
    let e = run_ticks_with_holder(&mut m, &mut now, 1, &raced, &revocation);
    assert_eq!(prints_asked(&e).len(), RESTORE_QUORUM * 2);
    assert!(started(&e).is_empty());
    assert!(
        m.restoring(),
        "six answers, none from a member it knew: it waits"
    );
    // Member 4 comes: asked though the asked set is full, and its answer ends the wait.
    let mut all_members = raced.clone();
    all_members.push(4);
    let e = run_ticks_with_holder(&mut m, &mut now, 1, &all_members, &revocation);
    assert_eq!(prints_asked(&e), vec![key(4).public()]);
    assert!(!m.restoring());
    assert!(started(&e).is_empty(), "a revoked sliver came back");
    assert!(e.contains(&Effect::Forget { id: 4 }));
}

/// The members asked for their revocation prints (a restart's catch-up).
fn prints_asked(e: &[Effect]) -> Vec<PublicKey> {
    prints_tokens(e).into_iter().map(|(_, k)| k).collect()
}

fn prints_tokens(e: &[Effect]) -> Vec<(Token, PublicKey)> {
    e.iter()
        .filter_map(|x| match x {
            Effect::Send {
                to,
                token: Some(t),
                request: Request::RevocationPrints { unless: None },
            } => Some((*t, *to)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_saved_sliver_its_own_log_does_not_record_is_not_restored() {
    let mut m = machine(9);
    let (cred, _) = ticket("princeton.codeen", 1);
    let (other, _) = ticket("princeton.codeen", 2);
    // The file says one ticket; the log recorded another (a file planted or swapped).
    m.handle(
        NOW,
        Input::Restart {
            saved: vec![saved(4, &cred)],
            logged: logged_as(4, &other),
        },
    );
    // Alone (no member heard): it waits longer before it concludes so, then decides.
    let mut now = NOW;
    let e = run_ticks(&mut m, &mut now, RESTORE_LISTEN_TICKS as usize + 1, &[]);
    assert!(e.is_empty() || started(&e).is_empty());
    assert!(
        m.restoring(),
        "alone, it does not restore after three ticks"
    );
    let e = run_ticks(&mut m, &mut now, RESTORE_ALONE_TICKS as usize, &[]);
    assert!(started(&e).is_empty());
    assert!(e.contains(&Effect::Forget { id: 4 }));
}

#[test]
fn notes_from_strangers_are_refused() {
    let mut m = machine(9);
    let cp = Checkpoint {
        origin: key(5).public(),
        size: 1,
        root: [1; 32],
        time_ms: NOW,
    }
    .sign(&key(5))
    .unwrap();
    let e = m.handle(
        NOW,
        Input::Request {
            reply: 1,
            from: Some(key(5).public()),
            request: Request::Witness(crate::wire::WitnessNote::Checkpoint(cp)),
        },
    );
    assert!(matches!(reply_of(&e, 1), Some(Response::Error(why)) if why.contains("members")));
    assert_eq!(m.table_sizes(), [0; 7]);
}

// ---- hostile sequences ------------------------------------------------------------------

/// A random input: hostile bytes where a peer sends bytes, random ids where a router
/// reports.
fn arb_input() -> impl Strategy<Value = (u64, Input)> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..300);
    let id = 0u64..64;
    let who = prop_oneof![Just(None), (0u8..12).prop_map(|n| Some(key(n).public()))];
    let topic = prop_oneof![
        Just(Topic::Advert),
        Just(Topic::Revocation),
        Just(Topic::Equivocation)
    ];
    prop_oneof![
        (0u64..5_000, 0u64..9).prop_map(|(dt, log_size)| (dt, Input::Tick { log_size })),
        (0u64..3_000).prop_map(|dt| (dt, Input::Wake)),
        // SWIM packets from members and strangers: junk, and junk after a valid header.
        (id.clone(), who.clone(), bytes.clone(), any::<bool>()).prop_map(
            |(reply, from, b, framed)| {
                let mut data = vec![];
                if framed && let Some(k) = from {
                    let h = foca::Header {
                        src: crate::swim::SwimId { key: k, bump: 1 },
                        src_incarnation: 0,
                        dst: crate::swim::SwimId {
                            key: key(9).public(),
                            bump: NOW,
                        },
                        message: foca::Message::Ping(1),
                    };
                    foca::Codec::encode_header(&mut crate::swim::codec::SwimCodec, &h, &mut data)
                        .unwrap();
                    data = crate::swim::codec::to_wire(&data, &k, &key(9).public()).unwrap();
                }
                data.extend(b);
                (
                    0,
                    Input::Request {
                        reply,
                        from,
                        request: Request::Swim(data),
                    },
                )
            }
        ),
        (id.clone(), who.clone(), bytes.clone()).prop_map(|(reply, from, b)| {
            let request = Request::from_bytes(&b).unwrap_or(Request::Members);
            (
                0,
                Input::Request {
                    reply,
                    from,
                    request,
                },
            )
        }),
        (id.clone(), bytes.clone()).prop_map(|(token, b)| {
            let response = Response::from_bytes(&b).unwrap_or(Response::Done);
            (0, Input::Answer { token, response })
        }),
        id.clone().prop_map(|token| (0, Input::NoAnswer { token })),
        (id.clone(), who.clone(), topic, bytes.clone()).prop_map(|(gid, source, topic, data)| {
            (
                0,
                Input::Gossip {
                    id: gid,
                    source,
                    topic,
                    data,
                },
            )
        }),
        (0u8..12, 0u64..2_000).prop_map(|(n, dt)| (
            dt,
            Input::Gossip {
                id: 0,
                source: Some(key(n).public()),
                topic: Topic::Advert,
                data: advert(n, NOW + 100_000),
            }
        )),
        (id.clone(), bytes.clone()).prop_map(|(reply, b)| (
            0,
            Input::Submit {
                reply,
                credential: b,
                module: ModuleHash::of(b"module"),
                invocation: Invocation::default(),
            }
        )),
        (id.clone(), 1u8..4).prop_map(|(reply, n)| (
            0,
            Input::Submit {
                reply,
                credential: ticket("princeton.codeen", n).0,
                module: ModuleHash::of(b"module"),
                invocation: Invocation::default(),
            }
        )),
        id.clone().prop_map(|write| (0, Input::Written { write })),
        id.clone().prop_map(|write| (
            0,
            Input::WriteFailed {
                write,
                why: "disk".into()
            }
        )),
        Just((0, Input::LedgerRecovered)),
        (0u64..8).prop_map(|id| (0, Input::Started { id })),
        (0u64..8).prop_map(|id| (
            0,
            Input::StartFailed {
                id,
                why: "no".into()
            }
        )),
        (0u64..8).prop_map(|id| (
            0,
            Input::Ended {
                id,
                outcome: "exit".into(),
                usage: Usage::default()
            }
        )),
        (id, bytes).prop_map(|(sid, b)| (
            0,
            Input::Restart {
                saved: vec![Saved {
                    id: sid,
                    credential: b,
                    invocation: Invocation::default()
                }],
                logged: BTreeMap::new()
            }
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever peers send and however the router reports, the machine never panics, never
    /// holds more than its bounds, and every admitted receipt follows a durable creation.
    #[test]
    fn random_inputs_never_panic_nor_grow_past_bounds(inputs in proptest::collection::vec(arb_input(), 1..120)) {
        let mut m = machine(9);
        let mut now = NOW;
        let mut durable_writes = BTreeSet::new();
        let mut creations: BTreeMap<WriteId, ReplyId> = BTreeMap::new();
        for (dt, input) in inputs {
            now += dt;
            if let Input::Written { write } = &input {
                durable_writes.insert(*write);
            }
            for e in m.handle(now, input) {
                match e {
                    Effect::Append { write, body: EntryBody::SliverCreated { .. } } => {
                        creations.insert(write, 0);
                    }
                    Effect::Reply { response: Response::Receipt(r), .. } => {
                        let body = objects::open::<NodeReceipt>(&r).unwrap().body;
                        if body.admitted {
                            prop_assert!(creations.keys().any(|w| durable_writes.contains(w)));
                        }
                    }
                    _ => {}
                }
            }
            let [asked, held, writes, starting, saved, ended, waiting] = m.table_sizes();
            prop_assert!(asked <= MAX_ASKED && held <= MAX_HELD && writes <= MAX_HELD * 8);
            prop_assert!(starting <= 3 && saved <= MAX_SAVED && ended <= MAX_ENDED);
            prop_assert!(waiting <= MAX_ENDED_WAITING);
        }
    }
}

#[test]
fn members_that_only_claim_to_hold_what_it_holds_do_not_release_a_restore() {
    let mut m = machine(9);
    restart_with_sliver_4(&mut m);
    // Three members advertise but never answer a reconciliation: being a member is not
    // being caught up with, so nothing is restored.
    let mut now = NOW;
    let mut asked = 0;
    for _ in 0..(RESTORE_LISTEN_TICKS + 5) {
        now += TICK;
        let e = join(&mut m, &[4, 5, 6], now);
        let mut e = durable(&mut m, now, e);
        assert!(started(&e).is_empty());
        e.extend(m.handle(now, Input::Tick { log_size: 0 }));
        asked += e
            .iter()
            .filter(|x| {
                matches!(
                    x,
                    Effect::Send {
                        request: Request::RevocationPrints { unless: None },
                        ..
                    }
                )
            })
            .count();
        assert!(started(&durable(&mut m, now, e)).is_empty());
    }
    assert!(m.restoring());
    assert_eq!(asked, 3, "each member asked once");
    // Members that do reconcile release it (restored as soon as three have answered).
    let e = run_ticks(&mut m, &mut now, 2, &[7, 8, 10]);
    assert_eq!(started(&e), vec![4]);
}

#[test]
fn a_running_node_reconciles_with_members_in_turn_and_fetches_only_what_differs() {
    let mut m = machine(9);
    let mut now = NOW;
    // Started with nothing saved: it catches up with its members at once, then settles
    // into one reconciliation per period.
    m.handle(
        now,
        Input::Restart {
            saved: vec![],
            logged: BTreeMap::new(),
        },
    );
    run_ticks(
        &mut m,
        &mut now,
        RESTORE_LISTEN_TICKS as usize + 2,
        &[4, 5, 6],
    );
    assert!(!m.restoring());
    let period = crate::core::RECONCILE_EVERY_MS / TICK;
    let mut asked = vec![];
    for _ in 0..(3 * period) {
        now += TICK;
        let e = join(&mut m, &[4, 5, 6], now);
        durable(&mut m, now, e);
        let e = m.handle(now, Input::Tick { log_size: 0 });
        for x in &e {
            if let Effect::Send {
                to,
                request: Request::RevocationPrints { unless },
                ..
            } = x
            {
                // It sends its own digest, so a member holding the same answers in a word.
                assert_eq!(*unless, Some(m.core().revocation_digest()));
                asked.push(*to);
            }
        }
        let prints = m.core().revocation_prints();
        serve(&mut m, now, &e, &mut same_as(prints));
    }
    assert_eq!(asked.len(), 3, "one reconciliation per period: {asked:?}");
    asked.sort();
    asked.dedup();
    assert_eq!(asked.len(), 3, "each member in turn");

    // A member that holds a revocation this node missed: its range is fetched, and the
    // revocation is held.
    let revocation = alices_revocation();
    let id = crate::core::revocation_id(&revocation).unwrap();
    let mut theirs = m.core().revocation_prints();
    theirs[usize::from(id.0[0])] ^= 7;
    let mut holder = holder_of(theirs, revocation.clone());
    let before = m.core().revocation_digest();
    for _ in 0..period {
        now += TICK;
        let e = m.handle(now, Input::Tick { log_size: 0 });
        serve(&mut m, now, &e, &mut holder);
    }
    assert_ne!(
        m.core().revocation_digest(),
        before,
        "the missed revocation is held"
    );

    // A hostile member's prints that differ everywhere cost one page per range it names,
    // and what it sends that is not a valid revocation is not held.
    let junk = vec![u64::MAX; crate::core::REVOCATION_BUCKETS];
    let held = m.core().revocation_digest();
    let mut liar = |request: &Request| match request {
        Request::RevocationPrints { .. } => Some(Response::RevocationPrints(junk.clone())),
        Request::Revocations { .. } => {
            Some(Response::Revocations(vec![serde_bytes::ByteBuf::from(
                vec![0u8; 64],
            )]))
        }
        _ => None,
    };
    for _ in 0..period {
        now += TICK;
        let e = m.handle(now, Input::Tick { log_size: 0 });
        serve(&mut m, now, &e, &mut liar);
    }
    assert_eq!(m.core().revocation_digest(), held);
}

/// The token of the credential request in `e`, if there is one.
fn credential_ask(e: &[Effect]) -> Option<Token> {
    asked_token(e, |r| matches!(r, Request::Credential))
}

#[test]
fn an_advert_naming_an_unknown_credential_is_held_back_until_its_sender_gives_it() {
    let mut m = machine(9);
    let gossip = |n: u8, at: u64, full: bool| Input::Gossip {
        id: u64::from(n),
        source: Some(key(n).public()),
        topic: Topic::Advert,
        data: advert_with(n, at, full),
    };
    // By hash, from a node never heard in full: not taken, not passed on; asked for.
    let e = m.handle(NOW, gossip(4, NOW, false));
    assert!(e.contains(&Effect::Verdict {
        id: 4,
        verdict: Verdict::Ignore
    }));
    let token = credential_ask(&e).expect("the credential is asked for");
    assert!(m.core().members().is_empty());
    // Asked once at a time: a second advert does not ask again.
    let again = m.handle(NOW + 1, gossip(4, NOW + 1, false));
    assert!(credential_ask(&again).is_none());
    // The wrong credential (another node's) is refused, and not asked for again soon.
    let e = m.handle(
        NOW + 2,
        Input::Answer {
            token,
            response: Response::Credential {
                credential: node_credential(5),
                addrs: vec![],
            },
        },
    );
    assert!(m.core().members().is_empty(), "{e:?}");
    let later = m.handle(NOW + 3, gossip(4, NOW + 3, false));
    assert!(credential_ask(&later).is_none());
    // Node 6's advert by hash, then its own credential: a member, probed by SWIM.
    let e = m.handle(NOW + 4, gossip(6, NOW + 4, false));
    let token = credential_ask(&e).unwrap();
    m.handle(
        NOW + 5,
        Input::Answer {
            token,
            response: Response::Credential {
                credential: node_credential(6),
                addrs: vec![],
            },
        },
    );
    assert!(m.core().members().contains_key(&key(6).public()));
    assert_eq!(m.swim_active(), 1);
    // Later adverts by hash are taken at once, once an honest member's gap has passed.
    let later = NOW + 60_000;
    let e = m.handle(later, gossip(6, later, false));
    assert!(e.contains(&Effect::Verdict {
        id: 6,
        verdict: Verdict::Accept
    }));
}

#[test]
fn a_swim_packet_from_a_node_not_listed_asks_for_its_credential_and_a_strangers_is_refused() {
    let mut m = machine(9);
    let ping = |n: u8| {
        let mut data = vec![];
        let h = foca::Header {
            src: crate::swim::SwimId {
                key: key(n).public(),
                bump: 77,
            },
            src_incarnation: 0,
            dst: crate::swim::SwimId {
                key: key(9).public(),
                bump: NOW,
            },
            message: foca::Message::Ping(1),
        };
        foca::Codec::encode_header(&mut crate::swim::codec::SwimCodec, &h, &mut data).unwrap();
        data.extend([0, 0]);
        let data = crate::swim::codec::to_wire(&data, &key(n).public(), &key(9).public()).unwrap();
        Input::Request {
            reply: u64::from(n),
            from: Some(key(n).public()),
            request: Request::Swim(data),
        }
    };
    let e = m.handle(NOW, ping(4));
    assert!(matches!(
        reply_of(&e, 4),
        Some(Response::Error(why)) if why.contains("not a member")
    ));
    let token = credential_ask(&e).unwrap();
    m.handle(
        NOW + 1,
        Input::Answer {
            token,
            response: Response::Credential {
                credential: node_credential(4),
                addrs: vec![],
            },
        },
    );
    // A member now, probed under the identity its packet named; its next ping is answered.
    assert!(m.core().members().contains_key(&key(4).public()));
    let e = m.handle(NOW + 2, ping(4));
    assert_eq!(reply_of(&e, 4), Some(&Response::Done));
    assert!(e.iter().any(|x| matches!(
        x,
        Effect::Send { to, request: Request::Swim(_), token: None } if *to == key(4).public()
    )));
    // A stranger whose credential is refused is not asked again for a while.
    let e = m.handle(NOW + 3, ping(7));
    let token = credential_ask(&e).unwrap();
    m.handle(
        NOW + 4,
        Input::Answer {
            token,
            response: Response::Error("no".into()),
        },
    );
    let e = m.handle(NOW + 5, ping(7));
    assert!(credential_ask(&e).is_none());
}

#[test]
fn the_first_three_answers_alone_do_not_release_a_restore() {
    let (mut m, revocation) = restarted_with_alice_revoked();
    let id = crate::core::revocation_id(&revocation).unwrap();
    let mut prints = vec![0u64; crate::core::REVOCATION_BUCKETS];
    prints[usize::from(id.0[0])] = 7;
    let mut member4 = holder_of(prints, revocation);
    // Four members come; three answer at once with what this node holds (stale, or
    // hostile), the one that holds the revocation answers later.
    let now = NOW + TICK;
    let e = join(&mut m, &[5, 6, 7, 4], now);
    let e = durable(&mut m, now, e);
    let mut late = vec![];
    let mut all = vec![];
    for x in &e {
        let Effect::Send {
            to,
            request: Request::RevocationPrints { .. },
            ..
        } = x
        else {
            continue;
        };
        if *to == key(4).public() {
            late.push(x.clone());
        } else {
            let ours = m.core().revocation_prints();
            all.extend(serve(
                &mut m,
                now,
                std::slice::from_ref(x),
                &mut same_as(ours),
            ));
        }
    }
    assert_eq!(late.len(), 1, "member 4 was asked too");
    assert!(m.restoring(), "three answers, one outstanding: it waits");
    assert!(started(&all).is_empty());
    // The fourth answer brings the revocation: the sliver does not come back.
    all.extend(serve(&mut m, now, &late, &mut member4));
    assert!(!m.restoring());
    assert!(started(&all).is_empty(), "a revoked sliver came back");
    assert!(all.contains(&Effect::Forget { id: 4 }));
}

#[test]
fn two_nodes_that_connect_ask_each_others_credential_without_adverts() {
    let (mut a, mut b) = (machine(9), machine(4));
    let swim_to = |e: &[Effect], to: u8| -> Option<Vec<u8>> {
        e.iter().find_map(|x| match x {
            Effect::Send {
                to: t,
                request: Request::Swim(data),
                ..
            } if *t == key(to).public() => Some(data.clone()),
            _ => None,
        })
    };
    let asks_credential_of = |e: &[Effect], of: u8| {
        e.iter().any(|x| {
            matches!(x, Effect::Send { to, request: Request::Credential, .. } if *to == key(of).public())
        })
    };
    // a's transport connected to b: a says hello.
    let e = a.handle(
        NOW,
        Input::Connected {
            peer: key(4).public(),
        },
    );
    let hello = swim_to(&e, 4).expect("a hello to b");
    // b does not list a: a bare ack back, and a's credential asked for.
    let e = b.handle(
        NOW,
        Input::Request {
            reply: 1,
            from: Some(key(9).public()),
            request: Request::Swim(hello),
        },
    );
    assert!(asks_credential_of(&e, 9), "{e:?}");
    let ack = swim_to(&e, 9).expect("a bare ack to a");
    // The ack makes a ask b's credential in turn.
    let e = a.handle(
        NOW,
        Input::Request {
            reply: 2,
            from: Some(key(4).public()),
            request: Request::Swim(ack),
        },
    );
    assert!(asks_credential_of(&e, 4), "{e:?}");
    // Once b is a member, a connection to it says nothing.
    let e = join(&mut a, &[4], NOW + 1);
    drop(e);
    let e = a.handle(
        NOW + 2,
        Input::Connected {
            peer: key(4).public(),
        },
    );
    assert!(swim_to(&e, 4).is_none());
}

/// A SWIM packet from node `n` (a bare hello, as a node just started sends) to `to`.
fn swim_packet(n: u8, to: u8) -> Vec<u8> {
    let hello = crate::swim::Swim::new(&key(n), NOW, 1).hello(key(to).public());
    let Some(crate::swim::SwimEvent::Send { data, .. }) = hello.into_iter().next() else {
        panic!("no packet");
    };
    data
}

/// Drives a stranger (key 77) at `a` every second for `secs` seconds: it connects and
/// sends a SWIM packet (the cheaper path: no reconnect needed); each credential ask it
/// gets is answered by `answer(nth ask)` (`None`: no answer at all). Returns the seconds
/// at which it was asked.
fn drive_stranger(
    a: &mut Node,
    secs: u64,
    mut answer: impl FnMut(usize) -> Option<Response>,
) -> Vec<u64> {
    let mut asked_at = vec![];
    for t in 0..secs {
        let now = NOW + t * 1_000;
        let e = stranger_speaks(a, now, t);
        let Some(token) = credential_ask(&e) else {
            continue;
        };
        let input = match answer(asked_at.len()) {
            Some(response) => Input::Answer { token, response },
            None => Input::NoAnswer { token },
        };
        asked_at.push(t);
        a.handle(now, input);
    }
    asked_at
}

/// The stranger (key 77) connects to `a` and sends it a SWIM packet.
fn stranger_speaks(a: &mut Node, now: u64, reply: u64) -> Vec<Effect> {
    let stranger = key(77).public();
    let mut e = a.handle(now, Input::Connected { peer: stranger });
    e.extend(a.handle(
        now,
        Input::Request {
            reply,
            from: Some(stranger),
            request: Request::Swim(swim_packet(77, 9)),
        },
    ));
    e
}

fn gaps(at: &[u64]) -> Vec<u64> {
    at.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn a_stranger_that_never_answers_is_asked_again_ever_more_slowly() {
    let mut a = machine(9);
    // It connects and sends a packet every second for over twenty minutes; no ask gets
    // an answer (a Sybil, or a connection that keeps dropping). Not held off for ten
    // minutes at the first failure (a newcomer's dropped connection must not keep it
    // out), but each wait doubles, up to the refusal's: a handful of asks, not one a
    // packet.
    let asked_at = drive_stranger(&mut a, 1_300, |_| None);
    assert_eq!(
        gaps(&asked_at),
        [5, 10, 20, 40, 80, 160, 320, 600],
        "asked at {asked_at:?}"
    );
}

#[test]
fn a_busy_answer_is_asked_again_soon_and_a_refusal_does_not_restart_the_doubling() {
    // An error answer ("busy") is treated as no answer, not as a refusal.
    let mut a = machine(9);
    let busy = || Some(Response::Error("busy".into()));
    let asked_at = drive_stranger(&mut a, 40, |_| busy());
    assert_eq!(gaps(&asked_at), [5, 10, 20], "asked at {asked_at:?}");
    // A Sybil that alternates silence and refusals: three silences (5, 10, 20 s), a
    // refusal (10 minutes), then silence again waits 40 s, not 5 s.
    let mut a = machine(9);
    let not_a_credential = || {
        Some(Response::Credential {
            credential: b"not a credential".to_vec(),
            addrs: vec![],
        })
    };
    let asked_at = drive_stranger(
        &mut a,
        700,
        |n| if n == 3 { not_a_credential() } else { None },
    );
    assert_eq!(
        gaps(&asked_at),
        [5, 10, 20, 600, 40],
        "asked at {asked_at:?}"
    );
}

#[test]
fn a_node_listed_by_its_advert_while_its_credential_was_asked_is_not_refused_for_the_race() {
    let mut a = machine(9);
    let b = key(4).public();
    // b's SWIM packet comes first: `a` asks its credential.
    let hello = crate::swim::Swim::new(&key(4), NOW, 1).hello(key(9).public());
    let Some(crate::swim::SwimEvent::Send { data, .. }) = hello.into_iter().next() else {
        panic!("no packet");
    };
    let e = a.handle(
        NOW,
        Input::Request {
            reply: 1,
            from: Some(b),
            request: Request::Swim(data),
        },
    );
    let token = credential_ask(&e).expect("credential asked");
    // Its full advert lists it before the answer comes.
    join(&mut a, &[4], NOW + 1);
    a.handle(
        NOW + 2,
        Input::Answer {
            token,
            response: Response::Credential {
                credential: node_credential(4),
                addrs: vec![],
            },
        },
    );
    assert!(a.core.members().contains_key(&b));
    // The late answer is no refusal: were b expelled, it could come back at once.
    assert!(!a.credential_held_off(&b, NOW + 3));
    // Nor is a late "no answer" or error answer to the same race.
    for late in [None, Some(Response::Error("busy".into()))] {
        let mut a = machine(9);
        let e = a.handle(
            NOW,
            Input::Request {
                reply: 1,
                from: Some(b),
                request: Request::Swim(swim_packet(4, 9)),
            },
        );
        let token = credential_ask(&e).expect("credential asked");
        join(&mut a, &[4], NOW + 1);
        let input = match late {
            Some(response) => Input::Answer { token, response },
            None => Input::NoAnswer { token },
        };
        a.handle(NOW + 2, input);
        assert!(!a.credential_held_off(&b, NOW + 3));
    }
}

#[test]
fn a_stranger_whose_credential_is_refused_is_not_asked_again_for_ten_minutes() {
    let mut a = machine(9);
    let stranger = key(77).public();
    let hellos = |e: &[Effect]| {
        e.iter()
            .filter(|x| matches!(x, Effect::Send { to, request: Request::Swim(_), .. } if *to == stranger))
            .count()
    };
    let e = a.handle(NOW, Input::Connected { peer: stranger });
    assert_eq!(hellos(&e), 1);
    let ack = crate::swim::Swim::new(&key(77), NOW, 1).hello(key(9).public());
    let Some(crate::swim::SwimEvent::Send { data, .. }) = ack.into_iter().next() else {
        panic!("no packet");
    };
    let e = a.handle(
        NOW + 1,
        Input::Request {
            reply: 1,
            from: Some(stranger),
            request: Request::Swim(data),
        },
    );
    let token = credential_ask(&e).expect("credential asked");
    // It answers with bytes that are no credential.
    a.handle(
        NOW + 2,
        Input::Answer {
            token,
            response: Response::Credential {
                credential: b"not a credential".to_vec(),
                addrs: vec![],
            },
        },
    );
    // Reconnecting again and again costs nothing more for ten minutes.
    for t in (0..CREDENTIAL_RETRY_MS).step_by(10_000) {
        let e = a.handle(NOW + 3 + t, Input::Connected { peer: stranger });
        assert_eq!(hellos(&e), 0, "connection at {t} ms");
    }
    let later = NOW + CREDENTIAL_RETRY_MS + 10;
    assert_eq!(
        hellos(&a.handle(later, Input::Connected { peer: stranger })),
        1
    );
}

/// The reconciliations (`RevocationPrints`) in `effects`, by whom they ask.
fn reconciliations(effects: &[Effect]) -> Vec<PublicKey> {
    effects
        .iter()
        .filter_map(|x| match x {
            Effect::Send {
                to,
                request: Request::RevocationPrints { .. },
                ..
            } => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_out_of_touch_reconciles_as_soon_as_a_member_reconnects_and_no_faster() {
    let mut m = machine(9);
    let mut now = NOW;
    m.handle(
        now,
        Input::Restart {
            saved: vec![],
            logged: BTreeMap::new(),
        },
    );
    run_ticks(
        &mut m,
        &mut now,
        RESTORE_LISTEN_TICKS as usize + 2,
        &[4, 5, 6],
    );
    assert!(!m.restoring());
    // In touch: a member's new connection is nothing to act on.
    let e = m.handle(
        now + 1,
        Input::Connected {
            peer: key(5).public(),
        },
    );
    assert!(reconciliations(&e).is_empty(), "{e:?}");

    // A partition: for three periods no reconciliation is answered.
    let period = crate::core::RECONCILE_EVERY_MS / TICK;
    for _ in 0..(3 * period) {
        now += TICK;
        let e = m.handle(now, Input::Tick { log_size: 0 });
        for x in &e {
            if let Effect::Send {
                token: Some(token),
                request: Request::RevocationPrints { .. },
                ..
            } = x
            {
                m.handle(now, Input::NoAnswer { token: *token });
            }
        }
    }
    // The link heals: the first member to reconnect is asked at once, and the missed
    // revocation arrives from it.
    now += 10;
    let e = m.handle(
        now,
        Input::Connected {
            peer: key(4).public(),
        },
    );
    assert_eq!(reconciliations(&e), vec![key(4).public()]);
    let revocation = alices_revocation();
    let before = m.core().revocation_prints();
    let mut held = before.clone();
    let range = usize::from(crate::core::revocation_id(&revocation).unwrap().0[0]);
    held[range] ^= 0x55;
    serve(&mut m, now, &e, &mut holder_of(held, revocation.clone()));
    assert_ne!(
        m.core().revocation_prints(),
        before,
        "the revocation missed during the partition is held"
    );
    // Members reconnecting all at once (or one flapping its connection) add at most one
    // ask a second, and none once it is in touch again.
    for t in 1..50 {
        let e = m.handle(
            now + t,
            Input::Connected {
                peer: key(5).public(),
            },
        );
        assert!(reconciliations(&e).is_empty(), "connection {t}: {e:?}");
    }
}

/// The member list a tick asks of the node's first member, if any: (token, to, after).
fn list_ask(e: &[Effect]) -> Option<(Token, PublicKey, Option<PublicKey>)> {
    e.iter().find_map(|x| match x {
        Effect::Send {
            token: Some(t),
            to,
            request: Request::MemberList { after },
        } => Some((*t, *to, *after)),
        _ => None,
    })
}

/// The credential batches asked: (token, to, nodes).
fn credential_batches(e: &[Effect]) -> Vec<(Token, PublicKey, Vec<PublicKey>)> {
    e.iter()
        .filter_map(|x| match x {
            Effect::Send {
                token: Some(t),
                to,
                request: Request::MemberCredentials { nodes },
            } => Some((*t, *to, nodes.clone())),
            _ => None,
        })
        .collect()
}

fn sorted(mut keys: Vec<PublicKey>) -> Vec<PublicKey> {
    keys.sort();
    keys
}

fn listed(n: u8, start: u64) -> crate::wire::ListedMember {
    crate::wire::ListedMember {
        node: key(n).public(),
        start,
    }
}

/// Node `n`, started at `start`, answers `m`'s greeting (any SWIM packet of its own).
fn answers_greeting(m: &mut Node, n: u8, start: u64, now: u64) -> Vec<Effect> {
    let mut swim = crate::swim::Swim::new(&key(n), start, u64::from(n));
    let [crate::swim::SwimEvent::Send { data, .. }] = &swim.hello(m.swim.me().key)[..] else {
        panic!("a hello is one packet");
    };
    m.handle(
        now,
        Input::Request {
            reply: 1,
            from: Some(key(n).public()),
            request: Request::Swim(data.clone()),
        },
    )
}

/// Whether `e` greets node `n` (a SWIM packet to it).
fn greets(e: &[Effect], n: u8) -> bool {
    e.iter().any(|x| {
        matches!(x, Effect::Send { to, request: Request::Swim(_), .. } if *to == key(n).public())
    })
}

fn given(n: u8, credential: Vec<u8>) -> crate::wire::MemberCredential {
    crate::wire::MemberCredential {
        node: key(n).public(),
        credential,
        addrs: vec!["/ip4/192.0.2.7/udp/4001/quic-v1".into()],
    }
}

#[test]
fn a_node_that_starts_learns_the_federation_from_its_first_members_list() {
    let mut m = machine(2);
    // The first member's list is pulled as soon as it is listed.
    let t = NOW + TICK;
    let e = join(&mut m, &[3], t);
    let (token, to, after) = list_ask(&e).expect("the first member's list is pulled");
    assert_eq!((to, after), (key(3).public(), None));
    // The list names this node and the lister too: neither is learnt.
    let page = Response::MemberList {
        members: vec![listed(2, 5), listed(3, 1), listed(4, 70), listed(5, 80)],
        more: false,
    };
    let e = m.handle(
        t,
        Input::Answer {
            token,
            response: page,
        },
    );
    let batches = credential_batches(&e);
    assert_eq!(batches.len(), 1, "{e:?}");
    let (token, to, nodes) = batches[0].clone();
    assert_eq!(to, key(3).public(), "asked of the member that named them");
    assert_eq!(
        sorted(nodes),
        sorted(vec![key(4).public(), key(5).public()])
    );
    assert!(!m.core().members().contains_key(&key(4).public()));
    let e = m.handle(
        t,
        Input::Answer {
            token,
            response: Response::MemberCredentials(vec![
                given(4, node_credential(4)),
                given(5, node_credential(5)),
            ]),
        },
    );
    assert!(
        e.iter()
            .any(|x| matches!(x, Effect::Addresses { node, .. } if *node == key(4).public()))
    );
    // Each is greeted, and listed only when it answers, under the start it names itself
    // (node 4 restarted since the lister saw it; node 5 is down and never answers).
    assert!(greets(&e, 4) && greets(&e, 5));
    assert!(
        !m.core().members().contains_key(&key(4).public()),
        "not before it answers"
    );
    let e = answers_greeting(&mut m, 4, 75, t + 100);
    assert!(e.contains(&Effect::Joined(key(4).public())));
    let id = crate::swim::SwimId {
        key: key(4).public(),
        bump: 75,
    };
    assert!(m.swim.knows(&id), "probed under the start it named");
    assert!(
        !e.iter().any(|x| matches!(
            x,
            Effect::Send {
                request: Request::Credential,
                ..
            }
        )),
        "its credential is not asked again"
    );
    assert_eq!(m.members_learnt(), 1);
    let e = m.handle(t + members::GREETING_WAIT_MS, Input::Tick { log_size: 0 });
    assert!(
        !m.core().members().contains_key(&key(5).public()),
        "silent: not listed"
    );
    assert!(credential_batches(&e).is_empty(), "and not fetched again");
    // The second pull comes three minutes later, and no other before it.
    let e = m.handle(t + TICK, Input::Tick { log_size: 0 });
    assert!(list_ask(&e).is_none());
    let later = t + members::LIST_PULLS_AFTER_MS[1];
    join(&mut m, &[14], later);
    let e = m.handle(later, Input::Tick { log_size: 0 });
    assert!(list_ask(&e).is_some(), "the second pull");
}

/// A made-up node key that sorts by `i`.
fn made_up(i: u32) -> PublicKey {
    let mut k = [0u8; 32];
    k[28..].copy_from_slice(&i.to_be_bytes());
    PublicKey(k)
}

/// A member list page naming made-up nodes `from..to`.
fn made_up_page(from: u32, to: u32, more: bool) -> Response {
    Response::MemberList {
        members: (from..to)
            .map(|i| crate::wire::ListedMember {
                node: made_up(i),
                start: 1,
            })
            .collect(),
        more,
    }
}

#[test]
fn a_long_list_is_pulled_as_room_allows_and_nothing_in_it_is_dropped() {
    let mut m = machine(2);
    let mut e = join(&mut m, &[3], NOW);
    let page = crate::wire::MEMBER_LIST_PAGE as u32;
    // Three pages: more than one member's word may hold at once.
    let total = 3 * page;
    assert!(total as usize > members::NEWCOMERS_PER_MEMBER);
    let mut now = NOW + TICK;
    let mut next = 0u32;
    let mut fetched = std::collections::BTreeSet::new();
    let mut deferred = false;
    for _ in 0..500 {
        e.extend(m.handle(now, Input::Tick { log_size: 0 }));
        let effects = std::mem::take(&mut e);
        if let Some((token, to, after)) = list_ask(&effects) {
            assert_eq!(to, key(3).public());
            // Each page goes on from the last node taken: none skipped, none twice.
            assert_eq!(after, next.checked_sub(1).map(made_up));
            let end = (next + page).min(total);
            let answer = made_up_page(next, end, end < total);
            next = end;
            e.extend(m.handle(
                now,
                Input::Answer {
                    token,
                    response: answer,
                },
            ));
        } else if next > 0 && next < total {
            deferred = true;
        }
        assert!(m.learning_held() <= members::NEWCOMERS_PER_MEMBER);
        // The lister holds no credential of made-up nodes: each batch comes back empty.
        for (token, _, nodes) in credential_batches(&effects) {
            for n in nodes {
                assert!(fetched.insert(n), "{n} asked twice");
            }
            let response = Response::MemberCredentials(vec![]);
            e.extend(m.handle(now, Input::Answer { token, response }));
        }
        if fetched.len() == total as usize {
            break;
        }
        now += TICK;
    }
    assert!(deferred, "a page waited for room");
    assert_eq!(
        fetched.len(),
        total as usize,
        "every node listed was asked for"
    );
    assert_eq!(fetched, (0..total).map(made_up).collect());
}

#[test]
fn pulls_go_on_only_while_they_bring_news() {
    let mut m = machine(2);
    // The first pull goes as the first member is listed.
    let first = NOW + TICK;
    let e = join(&mut m, &[3], first);
    let (token, ..) = list_ask(&e).expect("the first pull");
    let response = made_up_page(0, 10, false);
    m.handle(first, Input::Answer { token, response });
    // Each later pull at a member that just joined (one silent for long is declared dead).
    let ask = |m: &mut Node, at: u64, member: u8| {
        join(m, &[member], at);
        let e = m.handle(at, Input::Tick { log_size: 0 });
        list_ask(&e).map(|(token, ..)| token)
    };
    let pull = |m: &mut Node, at: u64, member: u8, answer: Response| {
        let Some(token) = ask(m, at, member) else {
            return false;
        };
        m.handle(
            at,
            Input::Answer {
                token,
                response: answer,
            },
        );
        true
    };
    let after = members::LIST_PULLS_AFTER_MS;
    // The second pull is made whatever the first brought; it brings enough to go on.
    let worth = members::PULL_WORTH_GOING_ON as u32;
    assert!(pull(
        &mut m,
        first + after[1],
        4,
        made_up_page(100, 100 + worth, false)
    ));
    // The third is not answered: that says nothing, so a fourth is made.
    let token = ask(&mut m, first + after[2], 5).expect("the third pull");
    m.handle(first + after[2], Input::NoAnswer { token });
    // The fourth and the fifth bring nothing new (all of it is held already): there is
    // no sixth.
    for (i, member) in [(3, 6), (4, 7)] {
        let page = made_up_page(100, 100 + worth, false);
        assert!(pull(&mut m, first + after[i], member, page));
    }
    assert!(!pull(
        &mut m,
        first + after[5],
        8,
        made_up_page(0, 1, false)
    ));
}

#[test]
fn a_lister_that_keeps_its_share_full_cannot_hold_a_pull_open() {
    let mut m = machine(2);
    let t = NOW + TICK;
    // The lister names nodes by SWIM news too, and never answers the credential batches.
    let news = |m: &mut Node, from: u32, to: u32| {
        for i in from..to {
            let id = crate::swim::SwimId {
                key: made_up(i),
                bump: 1,
            };
            m.newcomer(t, id, key(3).public(), &mut vec![]);
        }
    };
    let page = crate::wire::MEMBER_LIST_PAGE as u32;
    // Its list is pulled as it is listed. Before its first page comes, it names one node
    // more by news: with the page, its share has no room for the next page.
    let e = join(&mut m, &[3], t);
    let (token, to, _) = list_ask(&e).expect("the first pull");
    assert_eq!(to, key(3).public());
    news(&mut m, 10_000, 10_001);
    let response = made_up_page(0, page, true);
    let e = m.handle(t, Input::Answer { token, response });
    assert!(list_ask(&e).is_none(), "no room for the next page");
    let e = m.handle(t + TICK, Input::Tick { log_size: 0 });
    assert!(list_ask(&e).is_none(), "still no room: the pull waits");
    // After the stall the pull ends; the next one (a minute in) is made, from a member
    // whose share has room (this lister's has none).
    m.handle(t + members::PULL_STALL_MS, Input::Tick { log_size: 0 });
    let later = t + members::LIST_PULLS_AFTER_MS[1];
    join(&mut m, &[4], later);
    let e = m.handle(later, Input::Tick { log_size: 0 });
    let (token, to, _) = list_ask(&e).expect("the second pull is not held up");
    // This lister fills its own share between the ask and the answer: a page of which
    // nothing fits ends the pull (no page is asked again and again for nothing).
    let id = |i: u32| crate::swim::SwimId {
        key: made_up(i),
        bump: 1,
    };
    for i in 0..(members::NEWCOMERS_PER_MEMBER as u32) {
        m.newcomer(later, id(20_000 + i), to, &mut vec![]);
    }
    let e = m.handle(
        later,
        Input::Answer {
            token,
            response: made_up_page(0, page, true),
        },
    );
    assert!(list_ask(&e).is_none());
    let e = m.handle(later + TICK, Input::Tick { log_size: 0 });
    assert!(list_ask(&e).is_none(), "the pull ended");
}

#[test]
fn a_lister_can_neither_list_a_node_nor_bar_it_by_naming_it() {
    let mut m = machine(2);
    // The first member's list is pulled as soon as it is listed.
    let t = NOW + TICK;
    let e = join(&mut m, &[3], t);
    let (token, ..) = list_ask(&e).unwrap();
    // A start in the future is made up; the rest are asked for.
    let page = Response::MemberList {
        members: vec![listed(4, 70), listed(5, 80), listed(6, t + 3_600_000)],
        more: false,
    };
    let e = m.handle(
        t,
        Input::Answer {
            token,
            response: page,
        },
    );
    let (token, _, nodes) = credential_batches(&e).remove(0);
    assert_eq!(
        sorted(nodes),
        sorted(vec![key(4).public(), key(5).public()])
    );
    // Node 4's "credential" is node 7's; node 5's is given twice, then one nobody asked for.
    let e = m.handle(
        t,
        Input::Answer {
            token,
            response: Response::MemberCredentials(vec![
                given(4, node_credential(7)),
                given(8, node_credential(8)),
                given(5, node_credential(5)),
                given(5, node_credential(9)),
            ]),
        },
    );
    assert!(
        greets(&e, 5),
        "the first credential given for node 5 judges"
    );
    assert!(
        !greets(&e, 4),
        "not greeted on a credential that is not its own"
    );
    assert!(!greets(&e, 8), "not asked for");
    answers_greeting(&mut m, 5, 80, t);
    assert!(m.core().members().contains_key(&key(5).public()));
    // Node 4 is not barred by the bad credential: its own packet makes this node ask it
    // for its credential, as for any node not listed.
    let e = answers_greeting(&mut m, 4, 70, t);
    assert!(!m.core().members().contains_key(&key(4).public()));
    assert!(
        e.iter().any(|x| matches!(x, Effect::Send { to, request: Request::Credential, .. } if *to == key(4).public())),
        "{e:?}"
    );
}

#[test]
fn a_member_whose_answers_fail_is_not_heard_for_a_while() {
    let mut m = machine(2);
    join(&mut m, &[3, 4], NOW);
    let now = NOW + TICK;
    let news = |m: &mut Node, n: u8, via: u8| {
        let id = crate::swim::SwimId {
            key: key(n).public(),
            bump: 1,
        };
        m.newcomer(now, id, key(via).public(), &mut vec![]);
    };
    for round in 0..members::MAX_STRIKES {
        news(&mut m, 10 + round, 3);
        let e = m.handle(now, Input::Tick { log_size: 0 });
        let (token, to, _) = credential_batches(&e).remove(0);
        assert_eq!(to, key(3).public());
        m.handle(now, Input::NoAnswer { token });
    }
    let held = m.learning_held();
    news(&mut m, 20, 3);
    assert_eq!(m.learning_held(), held, "struck out: its news is not taken");
    news(&mut m, 21, 4);
    assert_eq!(m.learning_held(), held + 1, "another member's still is");
    let later = now + members::STRIKE_MS;
    let id = crate::swim::SwimId {
        key: key(22).public(),
        bump: 1,
    };
    m.newcomer(later, id, key(3).public(), &mut vec![]);
    assert_eq!(m.learning_held(), held + 2, "heard again after a while");
}

#[test]
fn one_member_naming_thousands_of_made_up_nodes_does_not_crowd_out_the_others_news() {
    let mut m = machine(2);
    join(&mut m, &[3, 4], NOW);
    let now = NOW + TICK;
    // Node 3 names made-up nodes by SWIM news, far past its share; their keys sort first.
    for i in 0..(members::NEWCOMERS_PER_MEMBER as u32 + 500) {
        let mut k = [0u8; 32];
        k[28..].copy_from_slice(&i.to_be_bytes());
        let id = crate::swim::SwimId {
            key: PublicKey(k),
            bump: 1,
        };
        m.newcomer(now, id, key(3).public(), &mut vec![]);
    }
    assert_eq!(m.learning_held(), members::NEWCOMERS_PER_MEMBER);
    // Node 4's news still gets in, and is asked of node 4 at once, beside node 3's batch.
    let id = crate::swim::SwimId {
        key: key(5).public(),
        bump: 9,
    };
    m.newcomer(now, id, key(4).public(), &mut vec![]);
    assert_eq!(m.learning_held(), members::NEWCOMERS_PER_MEMBER + 1);
    let e = m.handle(now, Input::Tick { log_size: 0 });
    let batches = credential_batches(&e);
    assert!(batches.len() <= members::BATCHES_IN_FLIGHT);
    assert!(
        batches
            .iter()
            .all(|(_, _, n)| n.len() <= crate::wire::CREDENTIAL_BATCH)
    );
    assert!(
        batches
            .iter()
            .any(|(_, to, n)| *to == key(4).public() && n == &vec![key(5).public()]),
        "one batch per member, in turn: {batches:?}"
    );
    // Node 3's next batch waits for its first (one in flight per member).
    let e = m.handle(now + TICK, Input::Tick { log_size: 0 });
    assert!(
        credential_batches(&e)
            .iter()
            .all(|(_, to, _)| *to != key(3).public())
    );
}

#[test]
fn a_restarted_node_greets_on_the_credentials_it_kept_instead_of_fetching_them() {
    let mut m = machine(2);
    m.remember_credentials([
        (key(4).public(), Arc::from(node_credential(4))),
        // Kept for node 5, but node 6's: fetched as if not kept.
        (key(5).public(), Arc::from(node_credential(6))),
        // Node 7 moved while this node was down: its greeting goes unanswered.
        (key(7).public(), Arc::from(node_credential(7))),
    ]);
    // The first member's list is pulled as soon as it is listed.
    let t = NOW + TICK;
    let e = join(&mut m, &[3], t);
    let (token, ..) = list_ask(&e).unwrap();
    let page = Response::MemberList {
        members: vec![listed(4, 70), listed(5, 80), listed(7, 90)],
        more: false,
    };
    let e = m.handle(
        t,
        Input::Answer {
            token,
            response: page,
        },
    );
    assert!(
        greets(&e, 4),
        "greeted at once, on the credential from the disk"
    );
    assert!(!greets(&e, 5));
    assert!(greets(&e, 7));
    let batches = credential_batches(&e);
    let asked: Vec<PublicKey> = batches.iter().flat_map(|(_, _, n)| n.clone()).collect();
    assert_eq!(
        asked,
        vec![key(5).public()],
        "the wrong credential is fetched"
    );
    let (token, ..) = batches[0];
    let response = Response::MemberCredentials(vec![]);
    m.handle(t, Input::Answer { token, response });
    answers_greeting(&mut m, 4, 70, t);
    assert!(m.core().members().contains_key(&key(4).public()));
    // Node 7 is silent: fetched from the member that named it (with its addresses now)
    // and greeted again at once, not held off as a down node would be.
    let later = t + members::GREETING_WAIT_MS;
    let e = m.handle(later, Input::Tick { log_size: 0 });
    let (token, to, nodes) = credential_batches(&e).remove(0);
    assert_eq!((to, nodes), (key(3).public(), vec![key(7).public()]));
    let e = m.handle(
        later,
        Input::Answer {
            token,
            response: Response::MemberCredentials(vec![given(7, node_credential(7))]),
        },
    );
    assert!(greets(&e, 7), "greeted again on the fetched credential");
}

#[test]
fn pulls_from_members_that_list_fewer_do_not_stop_the_pulls() {
    let mut m = machine(2);
    let many: Vec<u8> = (3..=100).collect();
    let first = NOW + TICK;
    let after = members::LIST_PULLS_AFTER_MS;
    // Born together: every member asked lists fewer nodes than this one and nothing new;
    // that says nothing about the federation, so the pulls go on.
    for (i, at) in after.iter().take(6).enumerate() {
        let at = first + at;
        let mut e = join(&mut m, &many, at);
        e.extend(m.handle(at, Input::Tick { log_size: 0 }));
        let (token, ..) = list_ask(&e).unwrap_or_else(|| panic!("pull {i}"));
        let page = Response::MemberList {
            members: vec![listed(3, 1)],
            more: false,
        };
        m.handle(
            at,
            Input::Answer {
                token,
                response: page,
            },
        );
    }
    assert_eq!(m.learning_stats().pulls, 6);
}

/// Times at which `m` advertised while it ticked alone for `ticks` ticks from `now`.
fn advert_times(m: &mut Node, mut now: u64, ticks: u64) -> Vec<u64> {
    let mut at = vec![];
    for _ in 0..ticks {
        now += TICK;
        let e = m.handle(now, Input::Tick { log_size: 0 });
        if e.iter().any(|e| matches!(e, Effect::Advertise(_))) {
            at.push(now);
        }
        durable(m, now, e);
    }
    at
}

#[test]
fn nodes_that_advertised_together_refresh_apart() {
    // Eight nodes start in the same tick and nothing changes: each refreshes between
    // 3.5 and 4 advert intervals after its last advert, at a gap its key sets, so that
    // their refreshes drift apart instead of coming as one wave for ever.
    let interval = 60_000;
    let mut gaps = BTreeSet::new();
    let mut last = vec![];
    for n in 1..=8 {
        let mut m = machine(n);
        m.core_mut().set_advert_timing(interval, 30);
        assert_eq!(m.core().advert_interval_ms(), interval);
        let at = advert_times(&mut m, NOW, 3_600);
        let refreshes: Vec<u64> = at
            .windows(2)
            .skip(FULL_ADVERTS as usize)
            .map(|w| w[1] - w[0])
            .collect();
        assert!(refreshes.len() >= 10, "node {n} refreshed {at:?}");
        for &gap in &refreshes {
            let shortest = interval * crate::core::REFRESH_INTERVALS - interval / 2;
            let longest = interval * crate::core::REFRESH_INTERVALS + TICK;
            assert!(
                (shortest..=longest).contains(&gap),
                "node {n}: gap {gap} ms"
            );
        }
        // Each node keeps its own period.
        assert!(
            refreshes.windows(2).all(|w| w[0] == w[1]),
            "node {n}: {refreshes:?}"
        );
        gaps.extend(refreshes.first().copied());
        last.push(at.last().copied().unwrap());
    }
    assert!(gaps.len() >= 6, "periods {gaps:?}");
    // After an hour the eight last refreshes are spread over more than an interval.
    let spread = last.iter().max().unwrap() - last.iter().min().unwrap();
    assert!(spread > interval, "last refreshes {last:?}");
}

#[test]
fn each_hold_off_is_reported_with_its_reason_and_length() {
    // The router learns why a stranger is not asked again, and for how long (the daemon
    // logs it, so that a newcomer kept out explains itself).
    let stranger = key(77).public();
    let mut a = machine(9);
    let mut reported = vec![];
    let answers = [
        None,
        Some(Response::Error("busy".into())),
        Some(Response::Done),
    ];
    let mut now = NOW;
    for answer in answers {
        let token = loop {
            now += 1_000;
            let e = stranger_speaks(&mut a, now, now);
            if let Some(token) = credential_ask(&e) {
                break token;
            }
            assert!(now < NOW + 3_600_000, "never asked again");
        };
        let input = match answer {
            Some(response) => Input::Answer { token, response },
            None => Input::NoAnswer { token },
        };
        for e in a.handle(now, input) {
            if let Effect::HeldOff {
                node,
                reason,
                for_ms,
            } = e
            {
                assert_eq!(node, stranger);
                reported.push((reason, for_ms));
            }
        }
    }
    assert_eq!(
        reported,
        [
            (HoldOffReason::Unanswered, 5_000),
            (HoldOffReason::Busy, 10_000),
            (HoldOffReason::Refused, CREDENTIAL_RETRY_MS),
        ]
    );
}

#[test]
fn a_member_is_probed_under_the_start_its_adverts_name_again_after_it_left() {
    let mut m = machine(9);
    let four = key(4).public();
    let start = |bump| crate::swim::SwimId { key: four, bump };
    let hear = |m: &mut Node, at: u64, full: bool, bump: u64| {
        let e = m.handle(
            at,
            Input::Gossip {
                id: at,
                source: Some(four),
                topic: Topic::Advert,
                data: advert_of_start(4, at, full, bump),
            },
        );
        assert!(
            e.contains(&Effect::Verdict {
                id: at,
                verdict: Verdict::Accept
            }),
            "{e:?}"
        );
    };
    let gap = crate::core::ADVERT_GAP_MAX_MS;
    hear(&mut m, NOW, true, 7);
    assert!(m.swim.knows(&start(7)));
    // The same start again (SWIM is not asked), then a restart: probed under the new one.
    hear(&mut m, NOW + gap, false, 7);
    assert!(m.swim.knows(&start(7)));
    hear(&mut m, NOW + 2 * gap, false, 8);
    assert!(m.swim.knows(&start(8)) && !m.swim.knows(&start(7)));
    // It falls silent and leaves: SWIM forgets it. Its next advert, of the start it named
    // before, has it probed again: the shortcut holds only while it stays listed.
    let mut now = NOW + 2 * gap;
    let mut left = false;
    while !left {
        now += m.core().member_timeout_ms() / 4;
        left = m
            .handle(now, Input::Tick { log_size: 0 })
            .contains(&Effect::Left(four));
    }
    assert!(!m.swim.knows(&start(8)));
    hear(&mut m, now + 1, true, 8);
    assert!(
        m.swim.knows(&start(8)),
        "probed again under the start it names"
    );
}

#[test]
fn a_member_whose_certificate_is_revoked_leaves_at_once_and_is_probed_no_more() {
    let mut m = machine(9);
    join(&mut m, &[4, 5], NOW);
    let four = key(4).public();
    let start = crate::swim::SwimId { key: four, bump: 1 };
    assert!(m.swim.knows(&start));
    let revocation = slicefed_trust::fixtures::revocation_file(
        &key(1),
        &Credential::from_bytes(&node_credential(4)).unwrap(),
        "decommissioned",
        T0,
    )
    .unwrap();
    let e = m.handle(
        NOW + 1,
        Input::Gossip {
            id: 1,
            source: Some(key(5).public()),
            topic: Topic::Revocation,
            data: revocation,
        },
    );
    assert!(e.contains(&Effect::Left(four)), "{e:?}");
    assert!(!m.core().members().contains_key(&four));
    assert!(!m.swim.knows(&start), "SWIM no longer probes or hears it");
    // Its packets are a stranger's now, and its adverts are refused.
    let e = m.handle(
        NOW + 2,
        Input::Gossip {
            id: 2,
            source: Some(four),
            topic: Topic::Advert,
            data: advert(4, NOW + 2),
        },
    );
    assert!(
        !e.iter()
            .any(|x| matches!(x, Effect::Joined(k) if *k == four)),
        "{e:?}"
    );
    assert!(!m.core().members().contains_key(&four));
    // Ignored, not passed on, and nobody penalised: a relay may not have heard yet.
    assert!(
        e.contains(&Effect::Verdict {
            id: 2,
            verdict: Verdict::Ignore
        }),
        "{e:?}"
    );
}

#[test]
fn a_member_that_serves_a_lapsed_certificate_is_not_struck_and_holds_nobody_off() {
    let mut m = machine(2);
    let t = NOW + TICK;
    let e = join(&mut m, &[3], t);
    let (token, _, _) = list_ask(&e).expect("the first member's list is pulled");
    let page = Response::MemberList {
        members: vec![listed(4, 70), listed(5, 80), listed(6, 90)],
        more: false,
    };
    let e = m.handle(
        t,
        Input::Answer {
            token,
            response: page,
        },
    );
    let (token, _, _) = credential_batches(&e)[0].clone();
    // Node 4's own certificate, long expired (a member that has not timed it out yet
    // serves it, or a hostile one that wants 4 kept out); node 6's own, good; node 5's,
    // not given.
    let expired = objects::sign(
        &key(1),
        &NodeCert {
            subject: key(4).public(),
            name: name("princeton.node4"),
            validity: Validity::starting(T0 - 30 * DAY, DAY),
        },
    )
    .unwrap()
    .bytes;
    let expired = Credential::new(expired, []).to_bytes().unwrap();
    let strikes = m.learning_stats().strikes;
    let e = m.handle(
        t,
        Input::Answer {
            token,
            response: Response::MemberCredentials(vec![
                given(4, expired),
                given(6, node_credential(6)),
            ]),
        },
    );
    // The lapsed one does not hold node 4 off (it can be learnt as soon as it has a good
    // certificate) and does not count against the member (it may not have heard).
    assert!(
        !e.iter()
            .any(|x| matches!(x, Effect::HeldOff { node, .. } if *node == key(4).public())),
        "{e:?}"
    );
    assert!(!m.credential_held_off(&key(4).public(), t));
    assert_eq!(m.learning_stats().strikes, strikes);
    // The good one is greeted; neither of the others is.
    assert!(greets(&e, 6) && !greets(&e, 4) && !greets(&e, 5));
}
