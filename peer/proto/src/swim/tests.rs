//! SWIM over a scripted network of in-memory nodes: detection, and hostile members.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use slicefed_trust::fixtures::key;

/// Nodes that deliver every packet after 20 ms, except to or from nodes that are down.
struct Net {
    nodes: Vec<Swim>,
    up: Vec<bool>,
    queue: BTreeMap<(u64, u64), (usize, usize, Vec<u8>)>,
    seq: u64,
    now: u64,
    dead: Vec<Vec<(u64, PublicKey)>>,
    refusals: Vec<SwimRefusal>,
    /// Every packet sent, accounted by part, and their bytes.
    sent_parts: PacketParts,
    sent_bytes: u64,
    /// Packets sent by this node, kept when set.
    recording: Option<usize>,
    recorded: Vec<Vec<u8>>,
}

/// Whether `shared` took (counted) the item: others' votes are counted without being
/// passed on, so `judge`'s answer says only what is relayed.
fn takes(shared: &mut Shared, item: &[u8]) -> bool {
    let before = shared.inbox.len();
    let _ = shared.judge(item);
    shared.inbox.len() > before
}

/// A packet's events, or why it was refused.
fn taken(x: (Vec<SwimEvent>, Result<(), SwimRefusal>)) -> Result<Vec<SwimEvent>, SwimRefusal> {
    let (events, r) = x;
    r.map(|()| events)
}

fn index(k: &PublicKey) -> usize {
    (0..64u8)
        .find(|i| key(40 + i).public() == *k)
        .map_or(usize::MAX, usize::from)
}

impl Net {
    fn new(n: usize) -> Net {
        Net::new_without(n, &[])
    }

    /// `n` nodes where each `(i, j)` in `unknown` has node `i` not know node `j` (yet).
    fn new_without(n: usize, unknown: &[(usize, usize)]) -> Net {
        let nodes: Vec<Swim> = (0..n)
            .map(|i| Swim::new(&key(40 + i as u8), 1_000, i as u64))
            .collect();
        let mut net = Net {
            up: vec![true; n],
            nodes,
            queue: BTreeMap::new(),
            seq: 0,
            now: 0,
            dead: vec![vec![]; n],
            refusals: vec![],
            sent_parts: PacketParts::default(),
            sent_bytes: 0,
            recording: None,
            recorded: vec![],
        };
        for i in 0..n {
            for j in 0..n {
                if i != j && !unknown.contains(&(i, j)) {
                    let id = net.nodes[j].me();
                    let e = net.nodes[i].admit(0, id);
                    net.carry(i, e);
                }
            }
        }
        net
    }

    fn carry(&mut self, from: usize, events: Vec<SwimEvent>) {
        for e in events {
            match e {
                SwimEvent::Send { to, data } => {
                    self.sent_parts.add(&PacketParts::of(&data));
                    self.sent_bytes += data.len() as u64;
                    if self.recording == Some(from) {
                        self.recorded.push(data.clone());
                    }
                    self.seq += 1;
                    self.queue
                        .insert((self.now + 20, self.seq), (from, index(&to), data));
                }
                SwimEvent::Dead(k) => {
                    self.dead[from].push((self.now, k));
                    // As the node machine does: a dead member is no member any more.
                    let e = self.nodes[from].expel(self.now, &k);
                    self.carry(from, e);
                }
                // The node machine would fetch its credential; this net admits nobody new.
                SwimEvent::Rejoined | SwimEvent::Stranger { .. } => {}
            }
        }
    }

    /// Runs until `until` ms in 100 ms steps.
    fn run(&mut self, until: u64) {
        while self.now < until {
            self.now += 100;
            while let Some(entry) = self.queue.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (from, to, data) = entry.remove();
                if !self.up[from] || !self.up.get(to).copied().unwrap_or(false) {
                    continue;
                }
                let fk = self.nodes[from].me().key;
                match taken(self.nodes[to].packet(self.now, fk, &data)) {
                    Ok(e) => self.carry(to, e),
                    Err(r) => self.refusals.push(r),
                }
            }
            for i in 0..self.nodes.len() {
                if self.up[i] {
                    let e = self.nodes[i].wake(self.now);
                    self.carry(i, e);
                }
            }
        }
    }

    /// Whether every up node other than `but` has declared `who` dead.
    fn all_declared(&self, who: usize, but: &[usize]) -> bool {
        let k = self.nodes[who].me().key;
        (0..self.nodes.len())
            .filter(|i| self.up[*i] && *i != who && !but.contains(i))
            .all(|i| self.dead[i].iter().any(|(_, d)| *d == k))
    }

    fn declared_by_anyone(&self, who: usize) -> bool {
        let k = self.nodes[who].me().key;
        self.dead.iter().any(|d| d.iter().any(|(_, x)| *x == k))
    }
}

#[test]
fn a_dead_member_is_declared_dead_by_every_live_member_within_two_minutes() {
    let mut net = Net::new(12);
    net.run(30_000);
    assert!(net.refusals.is_empty(), "{:?}", net.refusals);
    assert!(
        (0..12).all(|i| !net.declared_by_anyone(i)),
        "nobody dies while all are up"
    );
    net.up[3] = false;
    let died = net.now;
    net.run(died + 120_000);
    let stats: Vec<SwimStats> = net.nodes.iter().map(|n| n.stats()).collect();
    assert!(net.all_declared(3, &[]), "{:?} {stats:?}", net.dead);
    let worst = net
        .dead
        .iter()
        .flatten()
        .map(|(t, _)| t - died)
        .max()
        .unwrap();
    assert!(worst <= 120_000);
    eprintln!("declared dead everywhere after {worst} ms");
    // Nobody else was declared dead on the way.
    for i in (0..12).filter(|i| *i != 3) {
        assert!(!net.declared_by_anyone(i), "{i} declared dead while up");
    }
}

#[test]
fn every_byte_of_every_packet_a_death_costs_is_accounted_to_its_part() {
    let mut net = Net::new(12);
    net.run(30_000);
    net.up[3] = false;
    net.run(net.now + 120_000);
    assert!(net.all_declared(3, &[]));
    let p = net.sent_parts;
    assert_eq!(p.get(Part::Undecoded), 0, "{p:?}");
    assert_eq!(p.total(), net.sent_bytes, "{p:?}");
    for part in [
        Part::ProbeHeaders,
        Part::IndirectHeaders,
        Part::AliveUpdates,
        Part::SuspectUpdates,
        Part::DownUpdates,
        Part::Votes,
    ] {
        assert!(p.get(part) > 0, "no {}: {p:?}", part.name());
    }
    // A packet that is not SWIM counts whole as undecoded.
    assert_eq!(PacketParts::of(&[0xFF; 30]).get(Part::Undecoded), 30);
}

#[test]
fn one_member_that_accuses_another_gets_nothing_declared() {
    let mut net = Net::new(8);
    net.run(10_000);
    let liar = 0;
    let victim = 5;
    let victim_id = net.nodes[victim].me();
    let liar_key = key(40);
    // The liar signs a vote (it may: it is a member), piggybacks `Down` about the victim,
    // signs votes under made-up keys, and tells the victim to turn undead, for a minute.
    for round in 0..60u8 {
        for to in 1..8 {
            if to == victim {
                continue;
            }
            let dst = net.nodes[to].me();
            let mut packet = vec![];
            foca::Codec::encode_header(
                &mut SwimCodec,
                &foca::Header {
                    src: net.nodes[liar].me(),
                    src_incarnation: 0,
                    dst,
                    message: Message::Gossip,
                },
                &mut packet,
            )
            .unwrap();
            packet.put_u16(1);
            foca::Codec::encode_member(
                &mut SwimCodec,
                &Member::new(victim_id, 0, State::Down),
                &mut packet,
            )
            .unwrap();
            let vote = vote_bytes(&liar_key, &victim_id, net.now);
            packet.put_u16(vote.len() as u16);
            packet.put_slice(&vote);
            let forged = vote_bytes(&key(200 - round % 50), &victim_id, net.now);
            packet.put_u16(forged.len() as u16);
            packet.put_slice(&forged);
            // Taken (the liar is a member): its vote counts once, the rest is filtered.
            let packet = codec::to_wire(&packet, &liar_key.public(), &dst.key).unwrap();
            let e = taken(net.nodes[to].packet(net.now, liar_key.public(), &packet)).unwrap();
            net.carry(to, e);
        }
        let mut undead = vec![];
        foca::Codec::encode_header(
            &mut SwimCodec,
            &foca::Header {
                src: net.nodes[liar].me(),
                src_incarnation: 0,
                dst: victim_id,
                message: Message::TurnUndead,
            },
            &mut undead,
        )
        .unwrap();
        let undead = codec::to_wire(&undead, &liar_key.public(), &victim_id.key).unwrap();
        assert_eq!(
            taken(net.nodes[victim].packet(net.now, liar_key.public(), &undead)),
            Err(SwimRefusal::TurnUndead)
        );
        net.run(net.now + 1_000);
    }
    net.run(net.now + 60_000);
    assert!(!net.declared_by_anyone(victim), "{:?}", net.dead);
    assert!(
        (1..8)
            .filter(|i| *i != victim)
            .all(|i| net.nodes[i].stats().items_refused > 0)
    );
}

#[test]
fn packets_from_non_members_or_in_another_name_are_refused() {
    let mut net = Net::new(3);
    let a = net.nodes[0].me();
    let b = net.nodes[1].me();
    let stranger = SwimId {
        key: key(99).public(),
        bump: 1,
    };
    let ping = |src: SwimId, dst: SwimId| {
        let mut p = vec![];
        foca::Codec::encode_header(
            &mut SwimCodec,
            &foca::Header {
                src,
                src_incarnation: 0,
                dst,
                message: Message::Ping(1),
            },
            &mut p,
        )
        .unwrap();
        p.put_u16(0);
        codec::to_wire(&p, &src.key, &dst.key).unwrap()
    };
    assert_eq!(
        taken(net.nodes[0].packet(0, stranger.key, &ping(stranger, a))),
        Err(SwimRefusal::NotAMember(stranger.key))
    );
    // A packet names neither its sender nor its addressee on the wire: the stranger's
    // ping sent by member b is b's own, to this node. Nothing can be said in another's
    // name, and a header cut short is refused.
    let (as_read, _) = codec::from_wire(&ping(stranger, a), &b.key, &a.key, |_, _| None).unwrap();
    let header = foca::Codec::decode_header(&mut SwimCodec, &as_read[..]).unwrap();
    assert_eq!((header.src.key, header.dst.key), (b.key, a.key));
    assert!(codec::to_wire(&ping(b, a)[..], &stranger.key, &a.key).is_err());
    assert!(matches!(
        taken(net.nodes[0].packet(0, b.key, &ping(b, a)[..9])),
        Err(SwimRefusal::Decode(_))
    ));
    assert!(matches!(
        taken(net.nodes[0].packet(0, b.key, &vec![0; MAX_PACKET + 1])),
        Err(SwimRefusal::TooBig(_))
    ));
    // A member's honest ping is answered.
    let out = taken(net.nodes[0].packet(0, b.key, &ping(b, a))).unwrap();
    assert!(
        out.iter()
            .any(|e| matches!(e, SwimEvent::Send { to, .. } if *to == b.key))
    );
    net.run(1_000);
}

#[test]
fn nobody_but_the_member_raises_its_incarnation() {
    let mut net = Net::new(3);
    let mut s = Swim::new(&key(40), 1_000, 0);
    let b = net.nodes[1].me();
    let c = net.nodes[2].me();
    s.admit(0, b);
    s.admit(0, c);
    // b says c is alive at incarnation 9: c never said so; dropped. b says c is down:
    // read as a suspicion.
    assert_eq!(
        s.judge_update(&b.key, Member::new(c, 9, State::Alive)),
        None
    );
    assert_eq!(
        s.judge_update(&b.key, Member::new(c, 0, State::Down)),
        Some(Member::new(c, 0, State::Suspect))
    );
    // c's own signed refutation at 9 makes relays of it believable.
    let item = refute_bytes(&key(42), &c, 9);
    assert!(s.shared().judge(&item).is_some());
    s.count_items(0, &mut vec![]);
    assert_eq!(
        s.judge_update(&b.key, Member::new(c, 9, State::Alive)),
        Some(Member::new(c, 9, State::Alive))
    );
    // A refutation signed by someone else is refused.
    let forged = refute_bytes(&key(41), &c, 20);
    assert!(s.shared().judge(&forged).is_none());
    // About this node: a `Down` is a suspicion it refutes, never a jump.
    let me = s.me();
    assert_eq!(
        s.judge_update(&b.key, Member::new(me, 500, State::Down)),
        Some(Member::new(me, 0, State::Suspect))
    );
    net.run(1_000);
}

#[test]
fn old_votes_and_votes_about_identities_nobody_has_do_not_count() {
    let mut s = Swim::new(&key(40), 1_000, 0);
    let b = SwimId {
        key: key(41).public(),
        bump: 5,
    };
    let c = SwimId {
        key: key(42).public(),
        bump: 5,
    };
    s.admit(0, b);
    s.admit(0, c);
    let now = VOTE_WINDOW_MS * 3;
    s.shared().now_ms = now;
    // Replayed from long ago, or dated far ahead: refused before anything else.
    assert!(s.shared().judge(&vote_bytes(&key(42), &b, 0)).is_none());
    assert!(
        s.shared()
            .judge(&vote_bytes(&key(42), &b, now + 3_600_000))
            .is_none()
    );
    // Fresh: taken.
    assert!(takes(&mut s.shared(), &vote_bytes(&key(42), &b, now)));
    // About a start of b that this node never heard of: neither relayed nor tallied.
    let ghost = SwimId { bump: 99, ..b };
    assert!(
        s.shared()
            .judge(&vote_bytes(&key(42), &ghost, now))
            .is_none()
    );
    s.count_items(now, &mut vec![]);
    assert!(s.tallies.contains_key(&b));
    assert!(!s.tallies.contains_key(&ghost));
    // b's signed refutation clears the votes about it.
    assert!(s.shared().judge(&refute_bytes(&key(41), &b, 1)).is_some());
    s.count_items(now, &mut vec![]);
    assert!(!s.tallies.contains_key(&b));
}

#[test]
fn a_member_that_learns_of_a_dead_one_late_still_drops_it() {
    // Node 7 does not know node 3 while 3 dies and the others declare it dead.
    let mut net = Net::new_without(8, &[(7, 3)]);
    net.run(30_000);
    net.up[3] = false;
    net.run(180_000);
    assert!(net.all_declared(3, &[7]), "the others declared 3 dead");
    // Long after the votes that killed it (their window is over), 7 learns of 3 (an old
    // advert, say) and probes it. Its lone vote is answered by the others' own, signed
    // again: 7 drops 3 without waiting for 3's adverts to time out.
    net.run(180_000 + VOTE_WINDOW_MS);
    let id = net.nodes[3].me();
    let learnt_at = net.now;
    let e = net.nodes[7].admit(learnt_at, id);
    net.carry(7, e);
    net.run(learnt_at + 120_000);
    let k = net.nodes[3].me().key;
    let when = net.dead[7].iter().find(|(_, d)| *d == k).map(|(t, _)| *t);
    assert!(
        when.is_some_and(|t| t - learnt_at <= 120_000),
        "7 dropped 3 at {when:?}, learnt at {learnt_at}"
    );
    // Nobody else died for it.
    for i in (0..8).filter(|i| *i != 3) {
        assert!(!net.declared_by_anyone(i), "{i} was declared dead");
    }
}

#[test]
fn a_member_cannot_make_others_check_a_stream_of_resigned_votes() {
    let mut net = Net::new(6);
    net.run(10_000);
    let victim = net.nodes[2].me();
    let voter = key(40);
    let before = net.nodes[1].stats().items_refused;
    // The same member's vote about the same identity, re-signed every second: taken once
    // per REVOTE_GAP_MS at most (the rest is dropped as seen, unchecked).
    let mut taken = 0;
    for s in 0..60u64 {
        let at = net.now + s * 1_000;
        let item = vote_bytes(&voter, &victim, at);
        let mut shared = net.nodes[1].shared();
        shared.now_ms = at;
        if takes(&mut shared, &item) {
            taken += 1;
        }
    }
    assert_eq!(taken, 1, "one vote taken, the re-signed copies not");
    assert_eq!(net.nodes[1].stats().items_refused, before);
    assert!(!net.declared_by_anyone(2));
}

/// A packet from `src` to `dst` with `message` and the piggybacked `updates`.
fn crafted(
    src: SwimId,
    dst: SwimId,
    message: Message<SwimId>,
    updates: &[Member<SwimId>],
) -> Vec<u8> {
    let mut packet = vec![];
    foca::Codec::encode_header(
        &mut SwimCodec,
        &foca::Header {
            src,
            src_incarnation: 0,
            dst,
            message,
        },
        &mut packet,
    )
    .unwrap();
    packet.put_u16(updates.len() as u16);
    for m in updates {
        foca::Codec::encode_member(&mut SwimCodec, m, &mut packet).unwrap();
    }
    codec::to_wire(&packet, &src.key, &dst.key).unwrap()
}

#[test]
fn a_member_cannot_pump_another_members_incarnation() {
    let mut net = Net::new(4);
    net.run(10_000);
    let (pumper, target) = (1, 0);
    let target_id = net.nodes[target].me();
    let from = net.nodes[pumper].me();
    // Forty seconds of suspicions at the target's current incarnation, ten a second: each
    // one taken would make it refute by raising its incarnation.
    let start = net.now;
    for _ in 0..400 {
        let inc = net.nodes[target].incarnation;
        let packet = crafted(
            from,
            target_id,
            Message::Gossip,
            &[Member::new(target_id, inc, State::Suspect)],
        );
        let e = taken(net.nodes[target].packet(net.now, from.key, &packet)).unwrap();
        net.carry(target, e);
        net.run(net.now + 100);
    }
    let periods = (net.now - start) / PROBE_PERIOD_MS + 1;
    let inc = u64::from(net.nodes[target].incarnation);
    assert!(inc > 0, "a suspicion is refuted");
    assert!(
        inc <= periods * u64::from(SELF_SUSPICIONS_PER_PERIOD),
        "incarnation {inc} after {periods} probe periods"
    );
    // And it is refuted, not declared dead.
    net.run(net.now + 60_000);
    assert!(!net.declared_by_anyone(target));
}

#[test]
fn a_member_cannot_reflect_probes_at_others_or_at_made_up_starts() {
    let mut net = Net::new(4);
    net.run(10_000);
    let (asker, helper, target) = (1, 0, 2);
    let from = net.nodes[asker].me();
    let helper_id = net.nodes[helper].me();
    let target_id = net.nodes[target].me();
    // A request to probe a start of the target that it never had: refused.
    let made_up = SwimId {
        bump: target_id.bump + 7,
        ..target_id
    };
    let packet = crafted(
        from,
        helper_id,
        Message::PingReq {
            target: made_up,
            probe_number: 1,
        },
        &[],
    );
    assert_eq!(
        taken(net.nodes[helper].packet(net.now, from.key, &packet)),
        Err(SwimRefusal::ProbeOfNonMember(target_id.key))
    );
    // Requests to probe the real target: taken up to the limit a probe period, each one
    // a ping from the helper; the rest refused.
    let mut pings = 0;
    let mut refused = 0;
    for n in 0..20 {
        let packet = crafted(
            from,
            helper_id,
            Message::PingReq {
                target: target_id,
                probe_number: n,
            },
            &[],
        );
        match taken(net.nodes[helper].packet(net.now, from.key, &packet)) {
            Ok(e) => {
                pings += e
                    .iter()
                    .filter(|e| matches!(e, SwimEvent::Send { to, .. } if *to == target_id.key))
                    .count();
            }
            Err(SwimRefusal::TooManyProbeRequests(k)) => {
                assert_eq!(k, from.key);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(pings <= PING_REQS_PER_PERIOD as usize, "{pings} pings");
    assert_eq!(refused, 20 - PING_REQS_PER_PERIOD as usize);
    // The next period takes requests again.
    net.run(net.now + PROBE_PERIOD_MS);
    let packet = crafted(
        from,
        helper_id,
        Message::PingReq {
            target: target_id,
            probe_number: 99,
        },
        &[],
    );
    assert!(taken(net.nodes[helper].packet(net.now, from.key, &packet)).is_ok());
}

#[test]
fn probing_goes_on_when_a_member_churns_its_identity() {
    let mut net = Net::new(5);
    net.run(10_000);
    // Member 4 churns its identity: node 0 hears of start after start of it going down,
    // each with a removal timer, far more than the timer table holds.
    net.up[4] = false;
    let churner = net.nodes[4].me();
    for bump in 1..10_000u64 {
        let old = SwimId {
            bump: churner.bump + bump,
            ..churner
        };
        let node = &mut net.nodes[0];
        let _ = node.foca.apply_many(
            std::iter::once(Member::new(old, 0, State::Down)),
            false,
            &mut node.rt,
        );
        let mut out = vec![];
        node.drain(net.now, Cause::Local, &mut out);
    }
    // One removal timer for the churning key, whatever the number of its starts.
    assert!(
        net.nodes[0].removal_timers <= 4,
        "{}",
        net.nodes[0].removal_timers
    );
    assert!(
        net.nodes[0].timers.len() < 100,
        "{}",
        net.nodes[0].timers.len()
    );
    // Member 2 dies: node 0 still probes and suspects (removals cannot take their room),
    // and declares it dead with the others.
    net.up[2] = false;
    net.run(net.now + 120_000);
    assert!(net.all_declared(2, &[]), "{:?}", net.dead);
}

#[test]
fn an_echo_counts_only_at_the_member_it_answers() {
    let mut net = Net::new(5);
    net.run(10_000);
    let accused = net.nodes[2].me();
    // Node 0's echo to member 1 about node 2, which member 1 could gather and replay.
    let echo = echo_bytes(&key(40), &accused, &key(41).public(), net.now);
    let refused_at = |net: &mut Net, to: usize| {
        let before = net.nodes[to].stats().items_refused;
        let mut shared = net.nodes[to].shared();
        shared.now_ms = net.now;
        let taken = shared.judge(&echo).is_some() || !shared.inbox.is_empty();
        shared.inbox.clear();
        drop(shared);
        (taken, net.nodes[to].stats().items_refused > before)
    };
    // Replayed at the accused or at anyone else: refused, counted as refused.
    for to in [2, 3, 4] {
        assert_eq!(refused_at(&mut net, to), (false, true), "at {to}");
    }
    // At member 1 it is taken (to be counted), but never relayed.
    let mut shared = net.nodes[1].shared();
    shared.now_ms = net.now;
    assert!(shared.judge(&echo).is_none(), "not relayed");
    assert_eq!(shared.inbox.len(), 1);
}

#[test]
fn shared_checks_never_pass_an_item_that_was_not_checked_good() {
    let mut net = Net::new(4);
    let checks = SharedItemChecks::default();
    for n in &mut net.nodes {
        n.share_item_checks(checks.clone());
    }
    net.run(10_000);
    let accused = net.nodes[2].me();
    let vote = vote_bytes(&key(40), &accused, net.now);
    // Checked good at node 1: node 3 takes it through the shared table.
    for to in [1, 3] {
        let mut shared = net.nodes[to].shared();
        shared.now_ms = net.now;
        assert!(takes(&mut shared, &vote), "at {to}");
    }
    // Any byte changed is another item: checked, and refused.
    for i in [1, 40, vote.len() - 1] {
        let mut bad = vote.clone();
        bad[i] ^= 1;
        let mut shared = net.nodes[3].shared();
        shared.now_ms = net.now;
        assert!(!takes(&mut shared, &bad), "byte {i}");
    }
}

#[test]
fn a_member_cannot_use_up_the_allowance_that_honest_suspicions_need() {
    let mut net = Net::new(4);
    net.run(10_000);
    let (hostile, prober, target) = (1, 2, 0);
    let target_id = net.nodes[target].me();
    let inc = net.nodes[target].incarnation;
    let suspicion = Member::new(target_id, inc, State::Suspect);
    // The hostile member's packets: a suspicion followed by an update that does not
    // decode (refused whole as it is read off the wire, before the filter takes any
    // allowance), and a suspicion under an earlier start of its own.
    let mut broken = crafted(
        net.nodes[hostile].me(),
        target_id,
        Message::Gossip,
        std::slice::from_ref(&suspicion),
    );
    // The update count (big-endian, just before the one update) says two.
    let at = broken.len() - codec::COMPACT_MEMBER_BYTES - 1;
    broken[at] = 2;
    broken.extend(std::iter::repeat_n(0xFF, MEMBER_BYTES));
    let earlier = SwimId {
        bump: net.nodes[hostile].me().bump - 1,
        ..net.nodes[hostile].me()
    };
    let stale = crafted(
        earlier,
        target_id,
        Message::Gossip,
        std::slice::from_ref(&suspicion),
    );
    let hk = net.nodes[hostile].me().key;
    assert!(taken(net.nodes[target].packet(net.now, hk, &broken)).is_err());
    let _ = net.nodes[target].packet(net.now, hk, &stale);
    assert_eq!(net.nodes[target].incarnation, inc, "neither was taken");
    // An honest prober's suspicion in the same probe period is still refuted.
    let honest = crafted(
        net.nodes[prober].me(),
        target_id,
        Message::Gossip,
        &[suspicion],
    );
    let pk = net.nodes[prober].me().key;
    let e = taken(net.nodes[target].packet(net.now, pk, &honest)).unwrap();
    net.carry(target, e);
    assert_eq!(net.nodes[target].incarnation, inc + 1, "refuted");
}

#[test]
fn votes_from_voters_a_node_does_not_list_yet_count_once_it_lists_them() {
    // Node 40 has just started: it lists the accused (41) and none of the voters yet.
    let fresh = |k: u8| Swim::new(&key(k), 1_000, u64::from(k));
    let mut node = fresh(40);
    let accused = fresh(41).me();
    let _ = node.admit(0, accused);
    let voters: Vec<u8> = vec![42, 43, 44];
    let now = 10_000;
    let judge = |node: &mut Swim, item: &[u8], at: u64| {
        let mut shared = node.shared();
        shared.now_ms = at;
        shared.judge(item)
    };
    for &v in &voters {
        assert!(judge(&mut node, &vote_bytes(&key(v), &accused, now), now).is_none());
    }
    // A vote about a node it does not list is not kept at all (anyone can make one up).
    let stranger = fresh(50).me();
    let _ = judge(&mut node, &vote_bytes(&key(51), &stranger, now), now);
    assert_eq!(node.shared().pending.len(), 3);
    // Each voter is greeted once, so that it answers and gets listed.
    let mut out = vec![];
    node.greet_strangers(&mut out);
    let greeted: Vec<PublicKey> = out
        .iter()
        .filter_map(|e| match e {
            SwimEvent::Send { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(
        greeted,
        voters.iter().map(|v| key(*v).public()).collect::<Vec<_>>()
    );
    // Listed one by one: the third makes the quorum and the accused dead.
    let mut dead = vec![];
    for &v in &voters {
        dead.extend(node.admit(now + 1_000, fresh(v).me()));
    }
    assert!(dead.contains(&SwimEvent::Dead(accused.key)), "{dead:?}");
    assert!(node.shared().pending.is_empty());

    // Votes whose window is over by the time their voters are listed count for nothing.
    let mut late = fresh(40);
    let _ = late.admit(0, accused);
    for &v in &voters {
        let _ = judge(&mut late, &vote_bytes(&key(v), &accused, now), now);
    }
    let mut dead = vec![];
    for &v in &voters {
        dead.extend(late.admit(now + VOTE_WINDOW_MS, fresh(v).me()));
    }
    assert!(!dead.contains(&SwimEvent::Dead(accused.key)), "{dead:?}");
    // A vote that names a voter whose signature it does not carry is neither kept nor
    // answered with a hello (nobody can aim hellos at a third party).
    let mut forged = vote_bytes(&key(60), &accused, now);
    let at = 1 + ID_BYTES;
    forged[at..at + 32].copy_from_slice(&key(61).public().0);
    let mut third = fresh(40);
    let _ = third.admit(0, accused);
    let _ = judge(&mut third, &forged, now);
    assert!(third.shared().pending.is_empty());
    assert!(third.shared().strangers.is_empty());
    // One member relaying a flood of votes by throwaway keys fills its share only: the
    // votes other members relayed stay.
    let honest = vote_bytes(&key(45), &accused, now);
    third.shared().relayer = Some(key(46).public());
    let _ = judge(&mut third, &honest, now);
    third.shared().relayer = Some(key(47).public());
    for i in 0..(2 * PENDING_VOTES as u64) {
        let voter = SecretKey::from_seed(&[(i % 251) as u8 + 1; 32]);
        let _ = judge(&mut third, &vote_bytes(&voter, &accused, now + i), now + i);
    }
    let shared = third.shared();
    assert!(shared.pending.iter().any(|p| p.2 == honest));
    assert!(shared.pending.len() <= 1 + PENDING_PER_RELAYER);
    assert!(shared.strangers.len() <= PENDING_VOTES);
}

#[test]
fn news_of_a_node_nobody_lists_names_it_a_stranger_and_reaches_foca_only_once_admitted() {
    // Node 0 does not list node 3; node 1 tells it node 3 is alive, suspected, and down.
    let mut net = Net::new_without(4, &[(0, 3)]);
    net.run(10_000);
    let from = net.nodes[1].me();
    let to = net.nodes[0].me();
    let stranger = net.nodes[3].me();
    let strangers = |e: &[SwimEvent]| -> Vec<(SwimId, PublicKey)> {
        e.iter()
            .filter_map(|x| match x {
                SwimEvent::Stranger { id, via } => Some((*id, *via)),
                _ => None,
            })
            .collect()
    };
    let alive = crafted(
        from,
        to,
        Message::Gossip,
        &[Member::new(stranger, 0, State::Alive)],
    );
    let e = taken(net.nodes[0].packet(net.now, from.key, &alive)).unwrap();
    assert_eq!(strangers(&e), vec![(stranger, from.key)]);
    assert!(
        !net.nodes[0].knows(&stranger),
        "nobody is listed on news alone"
    );
    // A suspected or dead stranger is not news worth a credential.
    for state in [State::Suspect, State::Down] {
        let p = crafted(
            from,
            to,
            Message::Gossip,
            &[Member::new(stranger, 0, state)],
        );
        let e = taken(net.nodes[0].packet(net.now, from.key, &p)).unwrap();
        assert!(strangers(&e).is_empty(), "{state:?}");
    }
    // Once admitted, it is a member like any other (the news came from a member that
    // lists it; the node machine judged its credential).
    let e = net.nodes[0].admit(net.now, stranger);
    net.carry(0, e);
    assert!(net.nodes[0].knows(&stranger));
    let e = taken(net.nodes[0].packet(net.now, from.key, &alive)).unwrap();
    assert!(strangers(&e).is_empty());
}

#[test]
fn a_node_spreads_its_own_votes_and_counts_others_without_passing_them_on() {
    let mut net = Net::new(8);
    net.run(10_000);
    let victim = net.nodes[2].me();
    let at = net.now;
    let mut shared = net.nodes[1].shared();
    shared.now_ms = at;
    let inbox = shared.inbox.len();
    let honest = [43u8, 44, 45, 46, 47];
    let relayed = honest
        .iter()
        .filter(|v| shared.judge(&vote_bytes(&key(**v), &victim, at)).is_some())
        .count();
    assert_eq!(relayed, 0, "others' votes are pulled, not pushed on");
    assert_eq!(
        shared.inbox.len(),
        inbox + honest.len(),
        "every vote counts here"
    );
    assert!(
        shared.judge(&vote_bytes(&key(41), &victim, at)).is_some(),
        "a node's own vote always goes out"
    );
}

/// A packet from member `from` to `to` with foca's `Down` about `accused` (what a member
/// holding it down piggybacks).
fn down_news(net: &Net, from: usize, to: usize, accused: SwimId) -> Vec<u8> {
    crafted(
        net.nodes[from].me(),
        net.nodes[to].me(),
        Message::Gossip,
        &[Member::new(accused, u16::MAX, State::Down)],
    )
}

/// The packets in `events` addressed to member `to`.
fn sent_to(events: &[SwimEvent], to: PublicKey) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            SwimEvent::Send { to: t, data } if *t == to => Some(data.clone()),
            _ => None,
        })
        .collect()
}

/// Node `holder` counts a quorum of votes about `victim` (voters 1, 2, 3, sent by 1) and
/// declares it dead.
fn quorum_counted_at(net: &mut Net, holder: usize, victim: SwimId) {
    let now = net.now;
    let votes: Vec<Vec<u8>> = (41..44u8)
        .map(|v| vote_bytes(&key(v), &victim, now))
        .collect();
    let items: Vec<&[u8]> = votes.iter().map(Vec::as_slice).collect();
    let mut events = vec![];
    let holder_id = net.nodes[holder].me();
    net.nodes[1].send_items(holder_id, &items, &mut events);
    let packet = sent_to(&events, holder_id.key).pop().unwrap();
    let voter1 = net.nodes[1].me().key;
    let e = taken(net.nodes[holder].packet(now, voter1, &packet)).unwrap();
    assert!(e.contains(&SwimEvent::Dead(victim.key)));
    net.carry(holder, e);
}

#[test]
fn a_node_that_hears_a_member_is_down_asks_for_the_votes_and_counts_them() {
    let mut net = Net::new(7);
    net.run(10_000);
    let victim = net.nodes[6].me();
    let (holder, asker, empty) = (0usize, 4usize, 5usize);
    let holder_key = net.nodes[holder].me().key;
    let asker_key = net.nodes[asker].me().key;
    let now = net.now;
    quorum_counted_at(&mut net, holder, victim);

    // A member holding no votes says the victim is down: the asker asks it, gets nothing.
    let news = down_news(&net, empty, asker, victim);
    let empty_key = net.nodes[empty].me().key;
    let e = taken(net.nodes[asker].packet(now, empty_key, &news)).unwrap();
    let ask = sent_to(&e, empty_key).pop().expect("an ask");
    assert!(ask.len() < 140, "an ask is small: {} bytes", ask.len());
    let answer = taken(net.nodes[empty].packet(now, asker_key, &ask)).unwrap();
    assert!(
        sent_to(&answer, asker_key).is_empty(),
        "no votes, no answer"
    );
    // Within the gap, news from the holder is not asked about yet; after it, it is.
    let news = down_news(&net, holder, asker, victim);
    let e = taken(net.nodes[asker].packet(now + 10, holder_key, &news)).unwrap();
    assert!(
        sent_to(&e, holder_key).is_empty(),
        "one ask per accused a gap"
    );
    let later = now + ASK_GAP_MS;
    let e = taken(net.nodes[asker].packet(later, holder_key, &news)).unwrap();
    let ask = sent_to(&e, holder_key).pop().expect("an ask of the holder");
    let answer = taken(net.nodes[holder].packet(later, asker_key, &ask)).unwrap();
    let votes_back = sent_to(&answer, asker_key)
        .pop()
        .expect("the holder's votes");
    assert!(votes_back.len() <= 3 * (2 + VOTE_BYTES) + 100);
    let e = taken(net.nodes[asker].packet(later, holder_key, &votes_back)).unwrap();
    assert!(e.contains(&SwimEvent::Dead(victim.key)), "{e:?}");
    assert_eq!(net.nodes[asker].stats().asks_sent, 2);
    assert_eq!(net.nodes[holder].stats().asks_answered, 1);
    assert_eq!(
        net.nodes[holder].stats().votes_answered,
        3,
        "the quorum it holds"
    );
    // Counted, the votes are not passed on by the asker either.
    assert_eq!(net.nodes[asker].foca.custom_broadcast_backlog(), 0);
}

#[test]
fn a_member_cannot_make_a_node_send_more_than_a_few_answers_or_asks() {
    let mut net = Net::new(7);
    net.run(10_000);
    let victim = net.nodes[6].me();
    let (holder, greedy) = (0usize, 4usize);
    let holder_id = net.nodes[holder].me();
    let greedy_key = net.nodes[greedy].me().key;
    let now = net.now;
    quorum_counted_at(&mut net, holder, victim);

    // The same ask a hundred times in one probe period: a few answers, then none.
    let greedy_id = net.nodes[greedy].me();
    let ask = |accused: SwimId, named: &[PublicKey]| {
        let mut e = vec![];
        let mut n = Swim::new(&key(44), 1_000, 9);
        n.me = greedy_id;
        n.send_items(holder_id, &[&ask_bytes(&accused, named)], &mut e);
        sent_to(&e, holder_id.key).pop().unwrap()
    };
    let one = ask(victim, &[]);
    let answers: usize = (0..100)
        .map(|_| {
            let e = taken(net.nodes[holder].packet(now, greedy_key, &one)).unwrap();
            sent_to(&e, greedy_key).len()
        })
        .sum();
    assert_eq!(answers, ASKS_PER_PERIOD as usize);
    let later = now + PROBE_PERIOD_MS;
    // An ask naming the voters the asker has gets only the others; one about the holder
    // itself gets nothing (nobody helps count votes against itself).
    let e = taken(net.nodes[holder].packet(later, greedy_key, &one)).unwrap();
    let three = sent_to(&e, greedy_key).pop().unwrap();
    let two = [key(41).public(), key(42).public()];
    let e = taken(net.nodes[holder].packet(later, greedy_key, &ask(victim, &two))).unwrap();
    let rest = sent_to(&e, greedy_key).pop().unwrap();
    assert_eq!(
        three.len() - rest.len(),
        2 * (2 + VOTE_BYTES),
        "one vote of three"
    );
    let about_holder = ask(holder_id, &[]);
    let e = taken(net.nodes[holder].packet(later, greedy_key, &about_holder)).unwrap();
    assert!(sent_to(&e, greedy_key).is_empty());
    // An ask is read only from a member: a stranger's packet is refused before it.
    let stranger = key(99).public();
    assert!(matches!(
        taken(net.nodes[holder].packet(later, stranger, &one)),
        Err(SwimRefusal::NotAMember(k)) if k == stranger
    ));

    // A member holding every other member down makes a node ask it a few times a period,
    // and declares nobody dead.
    let asker = 5usize;
    let liar_key = greedy_key;
    let mut asks = 0;
    for target in [0usize, 1, 2, 3, 6] {
        for _ in 0..10 {
            let news = down_news(&net, greedy, asker, net.nodes[target].me());
            let e = taken(net.nodes[asker].packet(later, liar_key, &news)).unwrap();
            asks += sent_to(&e, liar_key).len();
            assert!(!e.iter().any(|x| matches!(x, SwimEvent::Dead(_))));
        }
    }
    assert_eq!(asks, 5, "one ask per accused start, whatever the repeats");
}

#[test]
fn in_sixty_members_a_dead_one_is_dropped_by_all_on_votes_passed_on_or_asked_for() {
    // Sixty: a voter's own vote, piggybacked a few times, reaches a few members, who pass
    // it on a few times more; the rest learn it is down from those holding it down and
    // ask them for the votes.
    let n = 60;
    let mut net = Net::new(n);
    net.run(30_000);
    net.up[3] = false;
    let died = net.now;
    net.run(died + 150_000);
    let k = net.nodes[3].me().key;
    let worst = net
        .dead
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, d)| d.iter().find(|(_, x)| *x == k).map(|(t, _)| t - died))
        .collect::<Option<Vec<u64>>>()
        .expect("every live member dropped it")
        .into_iter()
        .max()
        .unwrap();
    assert!(worst <= 120_000, "{worst} ms");
    let stats: Vec<SwimStats> = net.nodes.iter().map(Swim::stats).collect();
    let answered: u64 = stats.iter().map(|s| s.asks_answered).sum();
    let voters = stats.iter().filter(|s| s.votes_signed > 0).count();
    assert!(
        voters < n / 4,
        "{voters} voted: the rest counted others' votes"
    );
    assert!(answered as usize >= n / 2, "{answered} answers: most asked");
    for i in (0..n).filter(|i| *i != 3) {
        assert!(!net.declared_by_anyone(i), "{i} declared dead while up");
    }
}

#[test]
fn one_voter_holds_a_few_places_in_the_relay_queue_and_a_quorum_empties_it() {
    let mut net = Net::new(16);
    net.run(10_000);
    let now = net.now;
    // Node 0 votes about eleven members: node 1 passes on four of them.
    for accused in 2..13 {
        let id = net.nodes[accused].me();
        net.nodes[1].shared().now_ms = now;
        assert!(takes(
            &mut net.nodes[1].shared(),
            &vote_bytes(&key(40), &id, now)
        ));
    }
    net.nodes[1].count_items(now, &mut vec![]);
    let relayed = |n: &Swim, voter: PublicKey| n.relay.iter().filter(|r| r.voter == voter).count();
    assert_eq!(relayed(&net.nodes[1], key(40).public()), RELAYED_PER_VOTER);
    // An honest voter's vote about member 13 still goes out, and one more about it
    // too; the third makes a quorum, and nothing about 13 is passed on any more.
    let victim = net.nodes[13].me();
    for (i, voter) in [43u8, 44].into_iter().enumerate() {
        assert!(takes(
            &mut net.nodes[1].shared(),
            &vote_bytes(&key(voter), &victim, now)
        ));
        net.nodes[1].count_items(now, &mut vec![]);
        assert_eq!(
            net.nodes[1]
                .relay
                .iter()
                .filter(|r| r.accused == victim)
                .count(),
            i + 1
        );
    }
    assert!(takes(
        &mut net.nodes[1].shared(),
        &vote_bytes(&key(45), &victim, now)
    ));
    let mut out = vec![];
    net.nodes[1].count_items(now, &mut out);
    assert!(out.contains(&SwimEvent::Dead(victim.key)));
    assert!(!net.nodes[1].relay.iter().any(|r| r.accused == victim));
    // Fifteen more voters fill the queue four places each; a new voter still gets a place
    // (a voter holding four gives one up), and goes out first.
    let mut extra = 0u8;
    while net.nodes[1].relay.len() < MAX_RELAYED {
        let voter = key(100 + extra / 4);
        let accused = net.nodes[2 + usize::from(extra % 4)].me();
        net.nodes[1].queue_relay(Relay {
            accused,
            voter: voter.public(),
            vote: vote_bytes(&voter, &accused, now),
            left: RELAY_TRANSMISSIONS,
        });
        extra += 1;
    }
    let newcomer = key(150);
    let accused = net.nodes[14].me();
    net.nodes[1].queue_relay(Relay {
        accused,
        voter: newcomer.public(),
        vote: vote_bytes(&newcomer, &accused, now),
        left: RELAY_TRANSMISSIONS,
    });
    assert_eq!(net.nodes[1].relay.len(), MAX_RELAYED);
    assert_eq!(
        net.nodes[1].relay.front().map(|r| r.voter),
        Some(newcomer.public())
    );
    // Passed on in room foca leaves: a packet never grows past the bound.
    let mut packet = vec![0u8; MAX_PACKET - 200];
    net.nodes[1].add_relayed_votes(&mut packet);
    assert!(packet.len() <= MAX_PACKET);
    assert_eq!(packet.len(), MAX_PACKET - 200 + 2 + VOTE_BYTES);
}

#[test]
fn items_are_forgotten_once_they_cannot_count_and_a_replayed_refutation_clears_nothing() {
    let mut s = Swim::new(&key(40), 1_000, 0);
    let b = SwimId {
        key: key(41).public(),
        bump: 5,
    };
    s.admit(0, b);
    for voter in [42u8, 43] {
        s.admit(
            0,
            SwimId {
                key: key(voter).public(),
                bump: 5,
            },
        );
    }
    let start = VOTE_WINDOW_MS;
    s.shared().now_ms = start;
    // b refutes at incarnation 2: news, taken.
    let refutation = refute_bytes(&key(41), &b, 2);
    assert!(takes(&mut s.shared(), &refutation));
    s.count_items(start, &mut vec![]);
    // Votes about b, then the same refutation replayed once the table of items seen
    // forgot it: dropped before its signature is checked, not passed on, and the votes
    // still stand.
    let later = start + SEEN_FOR_MS;
    s.shared().now_ms = later;
    for voter in [42u8, 43] {
        assert!(takes(&mut s.shared(), &vote_bytes(&key(voter), &b, later)));
    }
    s.count_items(later, &mut vec![]);
    assert_eq!(s.tallies.get(&b).map(|t| t.voters.len()), Some(2));
    let refused = s.stats().items_refused;
    assert!(!takes(&mut s.shared(), &refutation), "a replay is dropped");
    assert!(s.shared().judge(&refutation).is_none(), "and not passed on");
    assert_eq!(s.stats().items_refused, refused, "unchecked");
    s.count_items(later, &mut vec![]);
    assert_eq!(
        s.tallies.get(&b).map(|t| t.voters.len()),
        Some(2),
        "an old refutation clears no votes"
    );
    // A death declared here is not undone by an old refutation taken with the vote that
    // made the quorum (say, by a node that never took it before: same effect as one it
    // forgot), only by news from b itself.
    {
        let mut shared = s.shared();
        shared.refuted.clear();
        shared.dead.insert(
            b.key,
            DeadMember {
                id: b,
                at_ms: later,
            },
        );
    }
    assert!(takes(&mut s.shared(), &refutation));
    s.count_items(later, &mut vec![]);
    assert_eq!(s.dead_start(&b.key), Some(b.bump), "still dead here");
    s.shared().dead.clear();
    // Only what was taken within the window is remembered: the table stays small
    // whatever the history.
    assert_eq!(s.shared().seen.len(), 3);
    let much_later = later + SEEN_FOR_MS;
    s.shared().now_ms = much_later;
    assert!(takes(&mut s.shared(), &refute_bytes(&key(41), &b, 3)));
    assert_eq!(s.shared().seen.len(), 1);
    assert_eq!(s.shared().seen_order.len(), 1);
    // A newer refutation is news: it clears the votes.
    s.count_items(much_later, &mut vec![]);
    assert!(!s.tallies.contains_key(&b));
}

#[test]
fn members_that_send_down_and_answer_nothing_hold_asks_off_for_one_suspicion_at_most() {
    let mut net = Net::new(8);
    net.run(10_000);
    let victim = net.nodes[7].me();
    let asker = 6usize;
    let asker_key = net.nodes[asker].me().key;
    let mut now = net.now;
    // Four silent members (0..4) say the victim is down, a second apart: each is asked.
    for silent in 0..4 {
        let news = down_news(&net, silent, asker, victim);
        let from = net.nodes[silent].me().key;
        let e = taken(net.nodes[asker].packet(now, from, &news)).unwrap();
        assert_eq!(sent_to(&e, from).len(), 1, "asked {silent}");
        now += ASK_GAP_MS;
    }
    // The allowance is spent: an honest holder heard now is not asked yet...
    let honest = 5usize;
    let honest_key = net.nodes[honest].me().key;
    let news = down_news(&net, honest, asker, victim);
    let e = taken(net.nodes[asker].packet(now, honest_key, &news)).unwrap();
    assert!(sent_to(&e, honest_key).is_empty());
    // ...and is, a suspicion's time after the first ask, when it says so again.
    let later = now - 4 * ASK_GAP_MS + SUSPECT_MS;
    let e = taken(net.nodes[asker].packet(later, honest_key, &news)).unwrap();
    assert_eq!(sent_to(&e, honest_key).len(), 1);
    // The silent ones are not asked again.
    let news = down_news(&net, 0, asker, victim);
    let from = net.nodes[0].me().key;
    let e = taken(net.nodes[asker].packet(later + ASK_GAP_MS, from, &news)).unwrap();
    assert!(sent_to(&e, from).is_empty());
    assert!(asker_key != from);
    // A vote window after the first ask, the node forgets whom it asked.
    assert!(!net.nodes[asker].asking.is_empty());
    let _ = net.nodes[asker].wake(later - SUSPECT_MS + VOTE_WINDOW_MS);
    assert!(net.nodes[asker].asking.is_empty());
}

#[test]
fn a_node_that_missed_every_down_asks_a_holder_that_hints_at_it_and_counts_the_votes() {
    let mut net = Net::new(7);
    net.run(10_000);
    let victim = net.nodes[6].me();
    let (holder, missed) = (0usize, 4usize);
    let holder_id = net.nodes[holder].me();
    let missed_id = net.nodes[missed].me();
    let now = net.now;
    quorum_counted_at(&mut net, holder, victim);

    // A node that heard no `Down` gets a hint, riding in the room foca leaves in one of
    // the holder's packets: it asks the holder, and the votes drop the dead one there too.
    let mut packet = crafted(holder_id, missed_id, Message::Gossip, &[]);
    let bare = packet.len();
    for _ in 0..HINT_EVERY_PACKETS {
        net.nodes[holder].add_hint(now, &mut packet);
    }
    assert_eq!(
        packet.len(),
        bare + 2 + HINT_BYTES,
        "one hint in four packets"
    );
    let e = taken(net.nodes[missed].packet(now, holder_id.key, &packet)).unwrap();
    let ask = sent_to(&e, holder_id.key)
        .pop()
        .expect("an ask of the holder");
    let answer = taken(net.nodes[holder].packet(now, missed_id.key, &ask)).unwrap();
    let votes = sent_to(&answer, missed_id.key).pop().expect("the votes");
    let e = taken(net.nodes[missed].packet(now, holder_id.key, &votes)).unwrap();
    assert!(e.contains(&SwimEvent::Dead(victim.key)), "{e:?}");

    // The holder hints in one packet in four while the hint is fresh...
    let hinted = |net: &mut Net, at: u64| {
        (0..HINT_EVERY_PACKETS * 2)
            .filter(|_| {
                let mut packet = vec![0u8; 100];
                net.nodes[holder].add_hint(at, &mut packet);
                packet.len() > 100
            })
            .count()
    };
    assert_eq!(hinted(&mut net, now), 2);
    // ... and never past it...
    assert_eq!(hinted(&mut net, now + HINT_FOR_MS), 0);
    // ... nor once the member is no longer held dead (it answered, or came back).
    let back = net.nodes[5].me();
    quorum_counted_at(&mut net, holder, back);
    assert_eq!(hinted(&mut net, now), 2);
    net.nodes[holder].forget_dead(&back);
    assert_eq!(hinted(&mut net, now), 0);
}

#[test]
fn hints_count_only_from_members_about_starts_listed_and_buy_only_rate_limited_asks() {
    let mut net = Net::new(7);
    net.run(10_000);
    let (liar, target) = (3usize, 4usize);
    let liar_id = net.nodes[liar].me();
    let target_key = net.nodes[target].me().key;
    let now = net.now;
    // A member hints that a live member is dead, and that another start of it is: the
    // first makes the target ask the liar (which has no votes to give), the second is no
    // news (the target lists another start).
    let live = net.nodes[5].me();
    let other_start = SwimId {
        key: live.key,
        bump: live.bump + 1,
    };
    let mut e = vec![];
    let target_id = net.nodes[target].me();
    let items = [hint_bytes(&live), hint_bytes(&other_start)];
    let items: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    assert!(net.nodes[liar].send_items(target_id, &items, &mut e));
    let packet = sent_to(&e, target_key).pop().unwrap();
    let e = taken(net.nodes[target].packet(now, liar_id.key, &packet)).unwrap();
    assert_eq!(
        sent_to(&e, liar_id.key).len(),
        1,
        "one ask, about the start listed"
    );
    assert!(!e.iter().any(|x| matches!(x, SwimEvent::Dead(_))));
    // Hints about every other member, again and again, a second apart: no death, and the
    // holder is asked once about each start.
    let mut asks = 0;
    for i in 0..50u64 {
        let all: Vec<Vec<u8>> = (0..7)
            .filter(|n| *n != liar && *n != target)
            .map(|n| hint_bytes(&net.nodes[n].me()))
            .collect();
        let items: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
        let mut e = vec![];
        assert!(net.nodes[liar].send_items(target_id, &items, &mut e));
        let packet = sent_to(&e, target_key).pop().unwrap();
        let e =
            taken(net.nodes[target].packet(now + i * ASK_GAP_MS, liar_id.key, &packet)).unwrap();
        asks += sent_to(&e, liar_id.key).len();
        assert!(!e.iter().any(|x| matches!(x, SwimEvent::Dead(_))));
    }
    // One ask of this holder about each start, whatever it repeats.
    assert_eq!(asks, 4, "{asks} asks");
    // From a stranger, a hint is never read: the packet is refused.
    let mut stranger = Swim::new(&key(60), 1_000, 9);
    stranger.me = SwimId {
        key: key(60).public(),
        bump: 1,
    };
    let mut e = vec![];
    assert!(stranger.send_items(target_id, &[&hint_bytes(&live)], &mut e));
    let packet = sent_to(&e, target_key).pop().unwrap();
    assert!(taken(net.nodes[target].packet(now, key(60).public(), &packet)).is_err());
}

proptest::proptest! {
    /// Any bytes as a member's SWIM packet on the wire (and a real packet with one byte
    /// changed): never a panic; every byte accounted to one part; a packet that reads back
    /// goes on the wire as the same bytes (one encoding).
    #[test]
    fn any_bytes_from_a_member_are_read_bounded_and_accounted(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        flip in proptest::prelude::any::<(usize, u8)>(),
    ) {
        let mut net = Net::new(3);
        net.run(5_000);
        let (me, member) = (net.nodes[0].me(), net.nodes[1].me());
        let real = crafted(
            member,
            me,
            Message::Gossip,
            &[Member::new(net.nodes[2].me(), 0, State::Suspect)],
        );
        let mut flipped = real.clone();
        if let Some(b) = flipped.get_mut(flip.0 % real.len()) {
            *b ^= flip.1;
        }
        proptest::prop_assert!(matches!(
            codec::from_wire(&real, &member.key, &me.key, |_, _| None),
            Ok((_, 1))
        ));
        for wire in [&data, &real, &flipped] {
            proptest::prop_assert_eq!(PacketParts::of(wire).total(), wire.len() as u64);
            // Every compact update read as some member with that prefix and start.
            let anyone = |prefix: &[u8; codec::KEY_PREFIX], low: u32| {
                let mut key = [0; 32];
                key[..codec::KEY_PREFIX].copy_from_slice(prefix);
                Some(SwimId { key: PublicKey(key), bump: u64::from(low) })
            };
            if let Ok((full, 0)) = codec::from_wire(wire, &member.key, &me.key, anyone) {
                let back = codec::to_wire(&full, &member.key, &me.key);
                proptest::prop_assert_eq!(back.as_ref(), Ok(wire));
            }
            let _ = net.nodes[0].packet(net.now, member.key, wire);
        }
    }
}

#[test]
fn the_member_table_finds_members_by_prefix_and_lists_one_key_per_prefix() {
    let mut t = MemberTable::default();
    let a = key(41).public();
    let mut twin = a;
    twin.0[31] ^= 1; // the same 16 first bytes: only by grinding keys, but refused anyway
    assert!(t.entry_or(a, 7).is_some());
    assert_eq!(t.get(&a), Some((7, 0)));
    assert_eq!(t.get(&twin), None, "another key is not its twin's member");
    assert!(!t.contains_key(&twin));
    assert_eq!(t.remove(&twin), None);
    assert!(t.get_mut(&twin).is_none());
    assert!(
        t.entry_or(twin, 9).is_none(),
        "a second key of one prefix is refused"
    );
    let prefix: [u8; codec::KEY_PREFIX] = a.0[..codec::KEY_PREFIX].try_into().unwrap();
    assert_eq!(t.by_prefix(&prefix), Some((a, 7)));
    assert_eq!(t.len(), 1);
    assert_eq!(t.remove(&a), Some((7, 0)));
    assert_eq!(t.by_prefix(&prefix), None);
    // Admitting the twin of a member changes nothing.
    let mut s = Swim::new(&key(40), 1_000, 0);
    s.admit(0, SwimId { key: a, bump: 7 });
    assert!(s.admit(0, SwimId { key: twin, bump: 9 }).is_empty());
    assert_eq!(s.start_of(&a), Some(7));
    assert_eq!(s.start_of(&twin), None);
    // Nor is a twin of the node itself.
    let mut own_twin = key(40).public();
    own_twin.0[31] ^= 1;
    s.admit(
        0,
        SwimId {
            key: own_twin,
            bump: 3,
        },
    );
    assert_eq!(s.start_of(&own_twin), None);
    // A packet that reads back over foca's bound is refused before the filter: 43
    // compact suspicions fit in 1,024 bytes on the wire, not in foca's form.
    let mut net = Net::new(3);
    net.run(5_000);
    let (me, member) = (net.nodes[0].me(), net.nodes[1].me());
    let many = vec![Member::new(net.nodes[2].me(), 0, State::Suspect); 43];
    let mut full = vec![];
    foca::Codec::encode_header(
        &mut SwimCodec,
        &foca::Header {
            src: member,
            src_incarnation: 0,
            dst: me,
            message: Message::Gossip,
        },
        &mut full,
    )
    .unwrap();
    full.put_u16(many.len() as u16);
    for m in &many {
        foca::Codec::encode_member(&mut SwimCodec, m, &mut full).unwrap();
    }
    let wire = codec::to_wire(&full, &member.key, &me.key).unwrap();
    assert!(wire.len() <= MAX_PACKET && full.len() > MAX_PACKET);
    assert!(matches!(
        taken(net.nodes[0].packet(net.now, member.key, &wire)),
        Err(SwimRefusal::TooBig(n)) if n == full.len()
    ));
}

/// Whether a wire packet carries an update saying `state` about `member`.
fn says(wire: &[u8], member: &SwimId, state: State) -> bool {
    let Ok((header, len)) = codec::wire_header(wire) else {
        return false;
    };
    let mut rest = &wire[len..];
    if !codec::carries_updates(&header.message, rest) {
        return false;
    }
    let count = rest.get_u16();
    (0..count).any(|_| {
        matches!(
            codec::get_wire_update(&mut rest),
            Ok(codec::WireUpdate::Compact { prefix, state: said, .. })
                if said == state && prefix[..] == member.key.0[..codec::KEY_PREFIX]
        )
    })
}

#[test]
fn a_suspicion_heard_from_another_member_is_passed_on_log10_n_times_only() {
    // Twelve nodes: eleven members each, so foca passes news on `4 × ⌈log10 11⌉` = 8
    // times, and another's suspicion 2 times. A member (honest or not) that tells node 1
    // a member is suspect gets that suspicion sent on twice by node 1, not eight times;
    // node 1's own failed probes of the same member add no new sends of it.
    let mut net = Net::new(12);
    net.run(10_000);
    let (accuser, relayer, suspect) = (0, 1, 5);
    let suspect_id = net.nodes[suspect].me();
    net.up[suspect] = false;
    net.recording = Some(relayer);
    let packet = crafted(
        net.nodes[accuser].me(),
        net.nodes[relayer].me(),
        Message::Gossip,
        &[Member::new(suspect_id, 0, State::Suspect)],
    );
    let e = taken(net.nodes[relayer].packet(net.now, key(40).public(), &packet)).unwrap();
    net.carry(relayer, e);
    net.run(net.now + 15_000);
    let sent = net.recorded.len();
    let relayed = net
        .recorded
        .iter()
        .filter(|p| says(p, &suspect_id, State::Suspect))
        .count();
    assert!(
        sent > 8,
        "node 1 sent {sent} packets: too few to tell 2 from 8"
    );
    assert!(
        (1..=2).contains(&relayed),
        "the suspicion went out in {relayed} of {sent} packets"
    );
    // The news still gets through: the suspect, down, is declared dead by the others.
    net.run(net.now + 120_000);
    assert!(net.all_declared(suspect, &[]), "{:?}", net.dead);
}

#[test]
fn another_members_vote_goes_out_relay_transmissions_times_and_is_counted() {
    // One vote queued to pass on: it rides in the next `RELAY_TRANSMISSIONS` packets (two),
    // then in none, and the node counts each copy it relayed.
    let mut net = Net::new(6);
    net.run(10_000);
    let now = net.now;
    let accused = net.nodes[5].me();
    let voter = key(42);
    let vote = vote_bytes(&voter, &accused, now);
    net.nodes[1].shared().now_ms = now;
    net.nodes[1].queue_relay(Relay {
        accused,
        voter: voter.public(),
        vote: vote.clone(),
        left: RELAY_TRANSMISSIONS,
    });
    let before = net.nodes[1].stats().votes_relayed;
    let carrying = (0..6)
        .filter(|_| {
            let mut packet = vec![0u8; 100];
            net.nodes[1].add_relayed_votes(&mut packet);
            packet.len() == 100 + 2 + vote.len()
        })
        .count();
    assert_eq!(carrying, usize::from(RELAY_TRANSMISSIONS));
    assert_eq!(
        net.nodes[1].stats().votes_relayed - before,
        u64::from(RELAY_TRANSMISSIONS)
    );
    assert!(net.nodes[1].relay.is_empty(), "sent its count, it is gone");
}

/// The `SendIndirectProbe` timers each node holds, by how long ago they were set.
fn indirect_stages(s: &Swim, now: u64) -> Vec<u64> {
    s.timers
        .iter()
        .filter(|(_, t)| matches!(t, Timer::SendIndirectProbe { .. }))
        .map(|((at, _), _)| now.saturating_sub(at.saturating_sub(PROBE_RTT_MS)))
        .collect()
}

#[test]
fn an_acked_probe_never_wakes_its_prober_for_the_indirect_stage_and_an_unanswered_one_does() {
    let mut net = Net::new(3);
    // Everyone up: each probe's ack is in within two 100-ms steps (packets take 20 ms),
    // and its indirect stage goes with it, long before the 1.5-s round trip it was set for.
    let mut stages = 0;
    for _ in 0..300 {
        let next = net.now + 100;
        net.run(next);
        for s in &net.nodes {
            let ages = indirect_stages(s, net.now);
            stages += ages.len();
            assert!(
                ages.iter().all(|age| *age <= 200),
                "{ages:?} at {}",
                net.now
            );
        }
    }
    assert!(stages > 0, "probes were seen between ping and ack");
    assert!(net.refusals.is_empty(), "{:?}", net.refusals);
    // A member that stops answering: its probers' indirect stages stay until due and fire
    // (the others are asked to ping it), and it is declared dead as before.
    net.up[2] = false;
    let died = net.now;
    let mut waited = 0;
    while net.now < died + 120_000 {
        let next = net.now + 100;
        net.run(next);
        for s in net.nodes.iter().take(2) {
            waited = waited.max(indirect_stages(s, net.now).into_iter().max().unwrap_or(0));
        }
    }
    assert!(
        waited >= PROBE_RTT_MS - 100,
        "an unanswered probe's stage waited {waited} ms"
    );
    assert!(net.all_declared(2, &[]), "{:?}", net.dead);
    assert!(!net.declared_by_anyone(0) && !net.declared_by_anyone(1));
}

#[test]
fn a_members_own_packets_are_noted_as_heard_and_a_silent_ones_are_not() {
    let mut net = Net::new(3);
    let (k1, k2) = (net.nodes[1].me().key, net.nodes[2].me().key);
    assert_eq!(net.nodes[0].last_heard_ms(&k1), None, "nothing heard yet");
    net.run(30_000);
    // Each node is pinged or acked by each other within a couple of probe periods.
    let recent = |net: &Net, k: &PublicKey| {
        net.nodes[0]
            .last_heard_ms(k)
            .is_some_and(|t| t + 3 * PROBE_PERIOD_MS >= net.now)
    };
    assert!(recent(&net, &k1) && recent(&net, &k2));
    net.up[2] = false;
    let died = net.now;
    net.run(died + 20_000);
    assert!(recent(&net, &k1), "a live member is still heard");
    let last = net.nodes[0].last_heard_ms(&k2);
    assert!(
        last.is_some_and(|t| t <= died),
        "{last:?}: nothing of 2's since {died}"
    );
    // A node that is not a member is never noted, whatever it sends.
    let stranger = key(77).public();
    let ping = net.nodes[1].me();
    let news = down_news(&net, 1, 0, ping);
    let now = net.now;
    let _ = net.nodes[0].packet(now, stranger, &news);
    assert_eq!(net.nodes[0].last_heard_ms(&stranger), None);
}
