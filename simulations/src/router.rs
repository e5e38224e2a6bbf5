//! The router: a node's machine gets one input (`Sim::feed`) and its effects are played
//! (`Sim::apply`), as the daemon's `route.rs` plays them on real disks, sandboxes and
//! sockets: writes durable at once, slivers started and stopped at once, messages over the
//! modelled network.

use crate::sim::*;
use slicefed_ledger::entry::{EntryBody, Usage};
use slicefed_proto::core::StopReason;
use slicefed_proto::node::{Effect, Input, Read, StartFrom, Topic};
use slicefed_proto::wire::{MemberCredential, MemberRow, Response};
use slicefed_trust::{CertId, PublicKey};
use std::rc::Rc;

impl Sim {
    /// Hands node `i` one input and plays what its machine says.
    pub(crate) fn feed(&mut self, i: usize, input: Input) {
        let now_ms = self.now_ms();
        let Some(effects) = self
            .nodes
            .get_mut(i)
            .filter(|n| n.up)
            .and_then(|n| n.live.as_mut())
            .map(|l| l.node.handle(now_ms, input))
        else {
            return;
        };
        self.apply(i, effects);
        let now = self.now;
        if debug_members()
            && let Some(l) = self.nodes.get_mut(i).and_then(|n| n.live.as_mut())
            && let Some(since) = l.catching_up_since
            && let Some(r) = l.node.restore_progress()
        {
            let (asked, caught_up, declined, members) =
                (r.asked, r.caught_up, r.declined, r.members);
            let secs = now.saturating_sub(since) / SEC;
            if secs > 8 && secs > l.catching_up_traced {
                l.catching_up_traced = secs;
                eprintln!(
                    "slow restart: node {i} restoring for {secs} s: {asked} asked, {caught_up} caught up, {declined} declined, {members} members"
                );
            }
        }
        if let Some(l) = self.nodes.get_mut(i).and_then(|n| n.live.as_mut())
            && let Some(since) = l.catching_up_since
            && !l.node.catching_up()
        {
            l.catching_up_since = None;
            let ms = now.saturating_sub(since) as f64 / MS as f64;
            self.metrics.reconciled_after_restart.push(ms);
        }
    }

    /// Plays node `i`'s effects, in order, as its daemon would: writes are durable at once
    /// (and reported so), slivers start and stop at once (and are reported so), messages go
    /// out over the modelled network.
    pub(crate) fn apply(&mut self, i: usize, effects: Vec<Effect>) {
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        // The revocation the node just took in, to attribute the stops it causes.
        let mut taking: Option<CertId> = None;
        let mut saving: Option<(u64, Vec<u8>)> = None;
        while let Some(e) = queue.pop_front() {
            let now_ms = self.now_ms();
            let Some(mut n) = self.take(i) else { return };
            let mut then: Option<Input> = None;
            match e {
                Effect::Append { write, body } => {
                    match &body {
                        EntryBody::RevocationSeen { revocation, .. } => {
                            let id = CertId::of(revocation);
                            self.rev_track(i, n.up_since, &id, true);
                            taking = Some(id);
                        }
                        EntryBody::EquivocationSeen { proof } => self.marked(proof),
                        _ => {}
                    }
                    n.disk.log.append(now_ms, body);
                    then = Some(Input::Written { write });
                }
                Effect::Persist { write, .. } => then = Some(Input::Written { write }),
                Effect::SignCheckpoint => {
                    let size = n.disk.log.len();
                    let key = self.world.nodes.get(i).map(|s| &s.key);
                    if let Some(cp) = key.and_then(|k| n.disk.log.signed_at(k, size, now_ms)) {
                        n.disk.log.checkpointed = n.disk.log.checkpointed.max(size);
                        then = Some(Input::Checkpoint { checkpoint: cp });
                    }
                }
                Effect::Send { to, token, request } => {
                    if let Some(t) = self.key_index(&to) {
                        let id = self.send_request(
                            Endpoint::Node(i as u32),
                            t,
                            request,
                            token.is_some(),
                        );
                        if let (Some(token), Some(l)) = (token, n.live.as_mut()) {
                            l.asked.insert(id, token);
                        }
                    } else if let Some(token) = token {
                        then = Some(Input::NoAnswer { token });
                    }
                }
                Effect::Reply { to, response } => {
                    if let Some(o) = n.live.as_mut().and_then(|l| l.open.remove(&to)) {
                        self.reply(i, to, o, response);
                    }
                }
                Effect::Read { to, read } => {
                    let response = self.read(i, &mut n, read);
                    if let Some(o) = n.live.as_mut().and_then(|l| l.open.remove(&to)) {
                        self.reply(i, to, o, response);
                    }
                }
                Effect::Publish { topic, data } => {
                    let from = i as u32;
                    let g = match topic {
                        Topic::Revocation => Some(Gossip::Revocation {
                            from,
                            bytes: Rc::new(data),
                        }),
                        Topic::Equivocation => {
                            self.detected(&data);
                            Some(Gossip::Proof {
                                from,
                                bytes: Rc::new(data),
                            })
                        }
                        Topic::Advert => None,
                    };
                    if let Some(g) = g {
                        self.put(i, n);
                        self.broadcast(i, g);
                        continue;
                    }
                }
                Effect::Verdict { .. } => {}
                Effect::Advertise(load) => {
                    self.put(i, n);
                    self.advertise(i, load);
                    continue;
                }
                Effect::Save { id, credential, .. } => saving = Some((id, credential)),
                Effect::Start { plan, from } => {
                    let slice = slice_of(plan.who.slice.as_str());
                    if from == StartFrom::Saved {
                        self.restored(i, slice);
                    }
                    if let StartFrom::Submission(reply) = from {
                        let first = n.disk.compiled.insert(plan.module);
                        if let Some(o) = n.live.as_mut().and_then(|l| l.open.get_mut(&reply)) {
                            o.work += ADMIT_US + if first { COMPILE_US } else { 0 };
                        }
                        if let Some((id, cred)) = saving.take().filter(|(id, _)| *id == plan.id) {
                            n.disk.saved.insert(id, (slice, Rc::new(cred)));
                        }
                    }
                    if let Some(l) = n.live.as_mut() {
                        l.running.insert(plan.id, slice);
                    }
                    then = Some(Input::Started { id: plan.id });
                }
                Effect::Stop { id, reason } => {
                    // The sandbox stops it at once and reports its end.
                    if let Some(l) = n.live.as_mut() {
                        l.running.remove(&id);
                    }
                    if reason == StopReason::Revoked {
                        // The revocation's record follows its stops in the same batch.
                        let rev = taking.or_else(|| {
                            queue.iter().find_map(|e| match e {
                                Effect::Append {
                                    body: EntryBody::RevocationSeen { revocation, .. },
                                    ..
                                } => Some(CertId::of(revocation)),
                                _ => None,
                            })
                        });
                        self.revocation_stopped(rev);
                    }
                    then = Some(Input::Ended {
                        id,
                        outcome: format!("stopped: {}", reason.as_str()),
                        usage: Usage::default(),
                    });
                }
                Effect::Resave { id, credential } => {
                    if let Some(s) = n.disk.saved.get_mut(&id) {
                        s.1 = Rc::new(credential);
                    }
                }
                Effect::Forget { id } => {
                    n.disk.saved.remove(&id);
                }
                Effect::KeepCosignature(c) => {
                    let cp = &c.checkpoint.checkpoint;
                    if let Some(by) = self.key_index(&c.cosignature.witness) {
                        n.disk
                            .log
                            .cosigned(cp.size, &cp.root, by, self.cfg.witnesses);
                    }
                }
                Effect::WakeAt(at_ms) => {
                    if let Some(l) = n.live.as_mut() {
                        l.wake_at = Some(at_ms);
                    }
                    let inc = n.incarnation;
                    self.put(i, n);
                    let at = at_ms
                        .saturating_sub(crate::world::START_MS)
                        .saturating_mul(MS);
                    self.push(at, Ev::Wake(i as u32, inc, at_ms));
                    continue;
                }
                Effect::Left(k) => {
                    let gone_index = self.key_index(&k);
                    let revoked_at = gone_index.and_then(|x| self.revoked_nodes.get(&x)).copied();
                    let gone = match (self.revoked_nodes.contains_key(&(i as u32)), revoked_at) {
                        // A revoked machine's own view: it is no member, and members
                        // refuse its packets, so it drops them all in turn.
                        (true, _) => None,
                        (false, Some(at)) => {
                            // From when this member could have known: the publication,
                            // or its own start if it was down then.
                            let since = at.max(n.up_since);
                            self.metrics
                                .revoked_node_drops
                                .push(self.now.saturating_sub(since) as f64 / MS as f64);
                            None
                        }
                        (false, None) => {
                            self.metrics.departures += 1;
                            gone_index.and_then(|x| self.nodes.get(x as usize))
                        }
                    };
                    match gone {
                        // Up for two minutes at least: no crash explains it. (A node back
                        // sooner may be dropped for the crash it just came back from.)
                        Some(g) if g.up && self.now.saturating_sub(g.up_since) > 2 * MIN => {
                            self.metrics.false_departures += 1
                        }
                        Some(g) if g.up => {}
                        Some(g) => {
                            let ms = self.now.saturating_sub(g.down_since) as f64 / MS as f64;
                            self.metrics.detections.push(ms);
                            if g.down_since >= FORMED
                                && g.down_since + FORMED <= self.cfg.duration
                                && n.up_since <= g.down_since
                            {
                                self.metrics.detections_formed.push(ms);
                                if ms > 120_000.0 && debug_members() {
                                    eprintln!(
                                        "slow drop: node {i} {} (up since {} s, {} members) dropped {} a crash of {} s ago (down at {} s) after {ms:.0} ms",
                                        self.world
                                            .nodes
                                            .get(i)
                                            .map(|x| x.public.to_string())
                                            .unwrap_or_default(),
                                        n.up_since / (1000 * MS),
                                        n.live.as_ref().map_or(0, |l| l
                                            .node
                                            .core()
                                            .members()
                                            .len()),
                                        k,
                                        ms / 1000.0,
                                        g.down_since / (1000 * MS),
                                    );
                                }
                            }
                        }
                        None => {}
                    }
                }
                Effect::Joined(k) => {
                    // A revoked node admitted past the grace by a member that could know.
                    if let Some(&at) = self.key_index(&k).and_then(|x| self.revoked_nodes.get(&x))
                        && !self.revoked_nodes.contains_key(&(i as u32))
                        && self.now > at.max(n.up_since) + STILL_LISTED_AFTER
                    {
                        self.metrics.revoked_joined_late += 1;
                    }
                }
                Effect::Addresses { .. } | Effect::HeldOff { .. } => {}
            }
            let refused = n.live.as_ref().map_or(0, |l| l.node.pages_refused());
            let fetched_refused = n.live.as_ref().map_or(0, |l| l.node.fetched_refused());
            let more = match (then, n.live.as_mut()) {
                (Some(input), Some(l)) => l.node.handle(now_ms, input),
                _ => vec![],
            };
            let refused_now = n.live.as_ref().map_or(0, |l| l.node.pages_refused());
            self.metrics.bad_pages += refused_now.saturating_sub(refused);
            let fetched_refused_now = n.live.as_ref().map_or(0, |l| l.node.fetched_refused());
            self.metrics.fetched_refused += fetched_refused_now.saturating_sub(fetched_refused);
            if !self.equivocators.is_empty() {
                let forked = n
                    .live
                    .as_ref()
                    .is_some_and(|l| l.node.witnessing().equivocated());
                self.check_forked(i, forked);
            }
            // What an input's effects caused comes before the rest of the batch.
            for e in more.into_iter().rev() {
                queue.push_front(e);
            }
            self.put(i, n);
        }
    }

    /// Answers a read from what node `i` holds.
    pub(crate) fn read(&mut self, i: usize, n: &mut SimNode, read: Read) -> Response {
        let now_ms = self.now_ms();
        match read {
            Read::Credential => match self.world.nodes.get(i) {
                Some(spec) => Response::Credential {
                    credential: spec.credential.to_vec(),
                    addrs: vec![],
                },
                None => Response::Error("no such node".into()),
            },
            // The world's copies, by the hash of the shared bytes the node holds.
            Read::MemberCredentials(found) => Response::MemberCredentials(
                found
                    .into_iter()
                    .map(|(node, credential)| MemberCredential {
                        node,
                        credential: credential.to_vec(),
                        addrs: vec![],
                    })
                    .collect(),
            ),
            Read::Members => {
                let Some(l) = n.live.as_ref() else {
                    return Response::Error("down".into());
                };
                let me = self.world.nodes.get(i).map(|s| s.public);
                let index = &self.world.index;
                let peer_ids = &self.peer_ids;
                let row = |k: &PublicKey| MemberRow {
                    peer_id: index
                        .get(k)
                        .and_then(|j| peer_ids.get(*j))
                        .map_or_else(|| k.peer_id(), String::clone),
                    name: String::new(),
                    authority: String::new(),
                    addrs: vec![],
                    slivers: 0,
                    free_memory: 0,
                    last_seen_ms_ago: 0,
                    health: "ok".into(),
                    uptime_secs: 0,
                    traffic: Default::default(),
                };
                let mut rows: Vec<MemberRow> = me.iter().map(row).collect();
                rows.extend(l.node.core().members().keys().map(row));
                Response::Members(rows)
            }
            // Simulated nodes have no IP addresses: nobody holds one.
            Read::AddressHolders { .. } => Response::Members(vec![]),
            Read::Entries { from } => {
                let size = n.disk.log.checkpointed;
                if from > size {
                    return Response::Error(format!("the log has {size} checkpointed entries"));
                }
                let end = size.min(from + PAGE_ENTRIES);
                let leaves = n
                    .disk
                    .log
                    .leaves
                    .get(from as usize..end as usize)
                    .map(<[Vec<u8>]>::to_vec)
                    .unwrap_or_default();
                let key = self.world.nodes.get(i).map(|s| &s.key);
                let signed = key.and_then(|k| {
                    Some((
                        n.disk.log.signed_at(k, from, now_ms)?,
                        n.disk.log.signed_at(k, end, now_ms)?,
                    ))
                });
                match signed {
                    Some((base, end)) => Response::Page {
                        base,
                        end,
                        leaves: leaves.into_iter().map(serde_bytes::ByteBuf::from).collect(),
                    },
                    None => Response::Error("cannot sign".into()),
                }
            }
            Read::ReplicaEntries { origin, from } => {
                let Some(l) = n.live.as_ref() else {
                    return Response::Error("down".into());
                };
                let w = l.node.witnessing().witness();
                let held = w.replica_size(&origin);
                let cp = w.verified(&origin).cloned();
                let src = self.key_index(&origin).map(|o| o as usize);
                match (held, cp, src) {
                    (Some(h), Some(cp), Some(o)) if from < h && cp.checkpoint.size == h => {
                        // The leaves this node verified and stored (read from the origin's
                        // disk, which holds the same bytes).
                        let leaves = self
                            .nodes
                            .get(o)
                            .and_then(|x| x.disk.log.leaves.get(from as usize..h as usize))
                            .map(|ls| ls.iter().cloned().map(serde_bytes::ByteBuf::from).collect())
                            .unwrap_or_default();
                        Response::ReplicaPage { end: cp, leaves }
                    }
                    _ => Response::Error("no such replica here".into()),
                }
            }
            // Nobody in the model asks these.
            Read::Status { .. } | Read::Logs { .. } | Read::Checkpoint | Read::Replica { .. } => {
                Response::Error("not modelled".into())
            }
        }
    }
}
