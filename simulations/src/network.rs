//! The modelled network: gossip waves along the overlay's fastest paths, requests and
//! answers with geographic latency, loss, bandwidth and partitions, sizes from real
//! encodings.

use crate::geo;
use crate::metrics::Category;
use crate::net::MESH_DEGREE;
use crate::observe::Refused;
use crate::sim::*;
use slicefed_proto::core::credential_hash;
use slicefed_proto::node::{Effect, Input, Topic, Verdict};
use slicefed_proto::wire::{Advert, AdvertBody, Request, Response};
use slicefed_trust::{CertId, Invocation, ModuleHash};
use std::rc::Rc;

/// Receivers of one advert from which its judging is split over two threads (below, a
/// thread costs more than it saves).
const PARALLEL_ADVERT_RECEIVERS: usize = 256;

impl Sim {
    pub(crate) fn broadcast(&mut self, src: usize, g: Gossip) {
        let honest = self.world.honest;
        // Honest nodes dial members (up honest nodes, as far as the overlay goes); Sybils
        // dial honest nodes; nobody dials a Sybil.
        self.overlay.rebuild(&self.up, |_, b| b < honest);
        let from_sybil = !self.honest(src);
        let arrivals = self.overlay.broadcast(src, |u| u < honest && !from_sybil);
        let (size, cat) = match &g {
            Gossip::Advert { bytes, .. } => (*bytes, Category::Adverts),
            Gossip::Revocation { bytes, .. } | Gossip::Proof { bytes, .. } => {
                (bytes.len(), Category::Revocations)
            }
        };
        let cat = if from_sybil { Category::Rejected } else { cat };
        // The sender pushes to its mesh.
        let fan = self.overlay.degree(src).min(MESH_DEGREE) as f64;
        self.traffic.add(cat, size as f64 * fan);
        let gossiped_before = self.traffic.adverts;
        for &(_, v) in &arrivals {
            let d = self.overlay.degree(v as usize).min(MESH_DEGREE) as f64;
            // Each receiver hears it from its mesh (duplicates included) and pushes it on.
            let relayed = if from_sybil { 1.0 } else { 2.0 * d };
            self.traffic.add(cat, size as f64 * relayed);
        }
        if cat == Category::Adverts {
            let gossiped = self.traffic.adverts - gossiped_before + size as f64 * fan;
            *self.advert_parts.entry("gossiped adverts").or_default() += gossiped;
        }
        self.msgs += arrivals.len() as u64;
        if let Gossip::Revocation { bytes, .. } = &g
            && let Some(t) = self.revs.get_mut(&CertId::of(bytes))
            && t.up_at_publish.is_empty()
        {
            t.up_at_publish = arrivals
                .iter()
                .map(|a| a.1)
                .filter(|v| (*v as usize) < honest)
                .collect();
        }
        if let Gossip::Proof { bytes, .. } = &g {
            let last = arrivals.last().map_or(0, |a| a.0);
            self.proof_spread(bytes, last);
        }
        if arrivals.is_empty() {
            return;
        }
        if let Gossip::Advert { from, advert, .. } = &g {
            self.apply_advert(*from as usize, advert, &arrivals);
            return;
        }
        let first = arrivals.first().map_or(0, |a| a.0);
        let now = self.now;
        self.push(
            now + first,
            Ev::Wave {
                gossip: Rc::new(g),
                arrivals: Rc::new(arrivals),
                next: 0,
                sent: now,
            },
        );
    }

    /// Every recipient's machine judges an advert, on two threads when there are many
    /// (each machine is its own; the halves' answers are kept in arrival order, so a run is
    /// the same as on one thread: same traces). Each judgement runs with the advert's
    /// arrival time at that node but happens when the advert is sent; what the machine asks
    /// for in return (a new member's witness sets, a revocation catch-up) is carried out at
    /// the arrival time. The only difference from judging at arrival is that a node may
    /// count a member as heard up to one network delay early.
    pub(crate) fn apply_advert(&mut self, sender: usize, advert: &Advert, arrivals: &[(u64, u32)]) {
        let honest = self.world.honest;
        let start_ms = self.now_ms();
        // (node, incarnation, arrival offset, its machine's answer or refusal)
        type Judged = (usize, u32, u64, Result<(), Refused>, Vec<Effect>);
        // The sender's credential as the world holds it, when the advert carries exactly it:
        // receivers then share one copy (a thousand nodes each copying a thousand
        // credentials was a gigabyte of memory to read through on every advert).
        let shared = self
            .world
            .nodes
            .get(sender)
            .map(|s| s.credential.clone())
            .filter(|c| !advert.body.credential.is_empty() && **c == *advert.body.credential);
        // Its load, made once for every receiver (each keeps it as the member's last word).
        let load = std::sync::Arc::new(advert.body.load());
        let judge_one = |l: &mut Live, off: u64| {
            let at = start_ms + off / MS;
            let (effects, judged) = l.node.advert(at, advert, shared.as_ref(), Some(&load));
            (judged.map_err(|e| Refused::advert(&e)), effects)
        };
        let results: Vec<Judged> = if arrivals.len() < PARALLEL_ADVERT_RECEIVERS {
            let mut results = Vec::with_capacity(arrivals.len());
            for &(off, v) in arrivals {
                let i = v as usize;
                if i >= honest {
                    continue;
                }
                let Some(n) = self.nodes.get_mut(i).filter(|n| n.up) else {
                    continue;
                };
                let inc = n.incarnation;
                let Some(l) = n.live.as_deref_mut() else {
                    continue;
                };
                let (r, effects) = judge_one(l, off);
                results.push((i, inc, off, r, effects));
            }
            results
        } else {
            // Every receiver's machine is its own: the two halves are judged on two
            // threads and their answers kept in arrival order, so the run is the same as
            // on one (same traces). Each receiver's place in the arrivals first, to take
            // its machine out of `self.nodes` as a borrow apart from the others'.
            let mut place: Vec<Option<(usize, u64)>> = vec![None; honest.min(self.nodes.len())];
            for (k, &(off, v)) in arrivals.iter().enumerate() {
                if let Some(p) = place.get_mut(v as usize) {
                    debug_assert!(p.is_none(), "a node arrives once");
                    *p = Some((k, off));
                }
            }
            // (place, node, incarnation, arrival offset, its machine)
            let mut receivers: Vec<(usize, usize, u32, u64, &mut Live)> = self
                .nodes
                .iter_mut()
                .enumerate()
                .take(honest)
                .filter(|(_, n)| n.up)
                .filter_map(|(i, n)| {
                    let (k, off) = place.get(i).copied().flatten()?;
                    let inc = n.incarnation;
                    Some((k, i, inc, off, n.live.as_deref_mut()?))
                })
                .collect();
            receivers.sort_unstable_by_key(|r| r.0);
            let judge = |chunk: &mut [(usize, usize, u32, u64, &mut Live)]| -> Vec<Judged> {
                chunk
                    .iter_mut()
                    .map(|(_, i, inc, off, l)| {
                        let (r, effects) = judge_one(l, *off);
                        (*i, *inc, *off, r, effects)
                    })
                    .collect()
            };
            let mid = receivers.len() / 2;
            let (first, second) = receivers.split_at_mut(mid);
            std::thread::scope(|s| {
                let later = s.spawn(|| judge(second));
                let mut results = judge(first);
                match later.join() {
                    Ok(rest) => results.extend(rest),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
                results
            })
        };
        let now = self.now;
        for (i, inc, off, r, effects) in results {
            // A credential not held yet is asked for: neither taken nor refused.
            let unknown = r.as_ref().is_err_and(|e| e.unknown);
            if !unknown {
                self.judged(sender, i, r.as_ref().map(|_| ()));
            }
            if !effects.is_empty() {
                self.push(
                    now + off,
                    Ev::AdvertEffects {
                        node: i as u32,
                        inc,
                        effects,
                    },
                );
            }
        }
    }

    /// Signs and broadcasts node `i`'s advert with the load its machine gave.
    pub(crate) fn advertise(&mut self, i: usize, load: slicefed_proto::core::Load) {
        let Some(n) = self.nodes.get(i) else {
            return;
        };
        let Some(spec) = self.world.nodes.get(i) else {
            return;
        };
        let body = AdvertBody {
            node: spec.public,
            credential: if load.full {
                spec.credential.to_vec()
            } else {
                vec![]
            },
            credential_hash: serde_bytes::ByteArray::new(spec.credential_hash),
            slivers: load.slivers,
            free_memory: load.free_memory,
            load_x100: 0,
            uptime_secs: self.now.saturating_sub(n.up_since) / SEC,
            version: "sim".into(),
            tags: vec![],
            traffic: Default::default(),
            addrs: vec![],
            time_ms: self.now_ms(),
            unhealthy: load.unhealthy.clone(),
            swim_bump: load.swim_bump,
        };
        let Ok(advert) = body.sign(&spec.key) else {
            return;
        };
        let Ok(bytes) = advert.to_bytes() else {
            return;
        };
        // Verified once here for every receiver (they would each check the same bytes).
        let Ok(advert) = Advert::from_bytes(&bytes) else {
            return;
        };
        let g = Gossip::Advert {
            from: i as u32,
            advert: Rc::new(advert),
            bytes: bytes.len(),
        };
        self.broadcast(i, g);
    }

    pub(crate) fn latency(&mut self, a: &geo::Place, b: &geo::Place) -> u64 {
        geo::delivery_us(a, b, self.cfg.loss, &mut self.rng)
    }

    pub(crate) fn place_of(&self, e: Endpoint) -> geo::Place {
        match e {
            Endpoint::Node(n) => self.world.nodes.get(n as usize).map(|s| s.place),
            Endpoint::Client(g) => self.world.groups.get(g as usize).map(|s| s.place),
            Endpoint::Authority(a) => self.world.authorities.get(a as usize).map(|s| s.place),
        }
        .unwrap_or(geo::Place {
            lat: 0.0,
            lon: 0.0,
            region: 0,
        })
    }

    /// Which node's side of a partition an endpoint is on.
    pub(crate) fn side_node(&self, e: Endpoint) -> usize {
        match e {
            Endpoint::Node(n) => n as usize,
            // A researcher sits at its authority's site, with its first node.
            Endpoint::Client(g) => self.world.groups.get(g as usize).map_or(0, |x| x.authority),
            // Node `a` is at authority `a`'s site (`World::build`).
            Endpoint::Authority(a) => a as usize,
        }
    }

    /// Sends a request (its size the length of its encoding) and returns its id; one that
    /// cannot cross a partition times out (if anyone waits for it).
    pub(crate) fn send_request(
        &mut self,
        from: Endpoint,
        to: u32,
        req: Request,
        wanted: bool,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = request_bytes(&req);
        let cat = match from {
            Endpoint::Node(n) if !self.honest(n as usize) => Category::Rejected,
            _ => category(&req),
        };
        let a = self.place_of(from);
        let b = self.place_of(Endpoint::Node(to));
        let lat = self.latency(&a, &b) + (bytes as u64 * 8 / 100); // 100 Mbit/s
        self.traffic.add(cat, 2.0 * bytes as f64);
        if let (Some(kind), Category::Adverts) = (crate::sim::membership_kind(&req), cat) {
            *self.advert_parts.entry(kind).or_default() += 2.0 * bytes as f64;
        }
        if let (Request::Swim(packet), Category::Swim) = (&req, cat) {
            self.swim_parts
                .add(&slicefed_proto::swim::PacketParts::of(packet));
        }
        self.msgs += 1;
        let now = self.now;
        let reachable = self.overlay.reachable(self.side_node(from), to as usize);
        if reachable {
            self.push(
                now + lat,
                Ev::Request {
                    to,
                    from,
                    id,
                    req: Box::new(req),
                    sent: now,
                    wanted,
                },
            );
        } else if wanted {
            self.push(
                now + RPC_TIMEOUT,
                Ev::Reply {
                    to: from,
                    id,
                    rep: None,
                },
            );
        }
        id
    }

    pub(crate) fn on_request(
        &mut self,
        to: usize,
        from: Endpoint,
        id: u64,
        req: Request,
        sent: u64,
        wanted: bool,
    ) {
        let Some(mut n) = self.take(to) else {
            // Down: the requester times out.
            if wanted {
                self.push(
                    sent + RPC_TIMEOUT,
                    Ev::Reply {
                        to: from,
                        id,
                        rep: None,
                    },
                );
            }
            return;
        };
        let cat = match from {
            Endpoint::Node(s) if !self.honest(s as usize) => Category::Rejected,
            _ => category(&req),
        };
        let work = match &req {
            Request::Entries { .. } | Request::ReplicaEntries { .. } => MS,
            Request::Delete(_) => ADMIT_US,
            _ => 0,
        };
        if let Some(l) = n.live.as_mut() {
            l.open.insert(
                id,
                Open {
                    from,
                    sent,
                    cat,
                    kind: crate::sim::membership_kind(&req),
                    work,
                    wanted,
                },
            );
        }
        self.put(to, n);
        let asker = match from {
            Endpoint::Node(s) => self.world.nodes.get(s as usize).map(|x| x.public),
            Endpoint::Client(_) | Endpoint::Authority(_) => None,
        };
        let input = match req {
            // The router hashes the module it was sent, as the daemon does on a worker.
            Request::Submit {
                credential,
                module,
                args,
                env,
            } => Input::Submit {
                reply: id,
                credential,
                module: ModuleHash::of(&module),
                invocation: Invocation::new(args, env),
            },
            request => Input::Request {
                reply: id,
                from: asker,
                request,
            },
        };
        self.feed(to, input);
    }

    /// Node `i` answers request `id`: the bytes are counted; the answer travels back if
    /// its asker waits for it (within its timeout).
    pub(crate) fn reply(&mut self, i: usize, id: u64, open: Open, response: Response) {
        if let Endpoint::Node(s) = open.from
            && !self.honest(s as usize)
        {
            if matches!(response, Response::Error(_)) {
                self.metrics.sybil_rejected += 1;
            } else {
                self.metrics.sybil_accepted += 1;
            }
        }
        let bytes = response.encoded_len().unwrap_or(32);
        self.traffic.add(open.cat, 2.0 * bytes as f64);
        if let (Some(kind), Category::Adverts) = (open.kind, open.cat) {
            *self.advert_parts.entry(kind).or_default() += 2.0 * bytes as f64;
        }
        self.msgs += 1;
        if !open.wanted {
            return;
        }
        let a = self.place_of(Endpoint::Node(i as u32));
        let b = self.place_of(open.from);
        let lat = self.latency(&a, &b) + (bytes as u64 * 8 / 100);
        let at = self.now + open.work + lat;
        // Past the requester's timeout the answer no longer counts.
        let (at, rep) = if at > open.sent + RPC_TIMEOUT {
            (open.sent + RPC_TIMEOUT, None)
        } else {
            (at, Some(Box::new(response)))
        };
        self.push(
            at,
            Ev::Reply {
                to: open.from,
                id,
                rep,
            },
        );
    }

    /// The answer to a request node `i` sent (or its timeout).
    pub(crate) fn on_reply(&mut self, i: usize, id: u64, rep: Option<Response>) {
        let token = self
            .nodes
            .get_mut(i)
            .filter(|n| n.up)
            .and_then(|n| n.live.as_mut())
            .and_then(|l| l.asked.remove(&id));
        let Some(token) = token else { return };
        let input = match rep {
            // A credential is the world's own copy, shared by every node that holds it.
            Some(Response::Credential { credential, addrs }) => {
                match self.world.credential_by_hash(&credential_hash(&credential)) {
                    Some(shared) => Input::CredentialAnswer {
                        token,
                        credential: shared,
                    },
                    None => Input::Answer {
                        token,
                        response: Response::Credential { credential, addrs },
                    },
                }
            }
            Some(response) => Input::Answer { token, response },
            None => Input::NoAnswer { token },
        };
        self.feed(i, input);
    }

    pub(crate) fn deliver_gossip(&mut self, to: usize, g: &Gossip) {
        if !self.honest(to) {
            return;
        }
        let (sender, topic, data) = match g {
            // Adverts never travel in waves: `broadcast` has every recipient judge them when
            // they are sent (`apply_advert`).
            Gossip::Advert { .. } => return,
            Gossip::Revocation { from, bytes } => (*from, Topic::Revocation, bytes),
            Gossip::Proof { from, bytes } => (*from, Topic::Equivocation, bytes),
        };
        let now_ms = self.now_ms();
        let source = self.world.nodes.get(sender as usize).map(|s| s.public);
        let effects = self
            .nodes
            .get_mut(to)
            .filter(|n| n.up)
            .and_then(|n| n.live.as_mut())
            .map(|l| {
                l.node.handle(
                    now_ms,
                    Input::Gossip {
                        id: 0,
                        source,
                        topic,
                        data: data.to_vec(),
                    },
                )
            });
        let Some(effects) = effects else { return };
        let verdict = effects.iter().find_map(|e| match e {
            Effect::Verdict { verdict, .. } => Some(verdict.clone()),
            _ => None,
        });
        match verdict {
            Some(Verdict::Reject(why)) => {
                self.judged(sender as usize, to, Err(&Refused::gossip(&why)))
            }
            _ => self.judged(sender as usize, to, Ok(())),
        }
        self.apply(to, effects);
    }
}
