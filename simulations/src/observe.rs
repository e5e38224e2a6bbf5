//! What a run measures, read from what the nodes' machines did (their effects) and from a
//! god's view of the federation sampled every few minutes: coverage, revocations, slivers
//! under revoked chains, zombies, equivocators caught, Sybils refused, traffic.

use crate::metrics;
use crate::sim::*;
use slicefed_ledger::checkpoint::EquivocationProof;
use slicefed_proto::core::CoreError;
use slicefed_proto::node::GossipRefused;
use slicefed_trust::{CertId, PublicKey};
use std::collections::BTreeMap;

/// Why an honest node refused gossip, as the simulator accounts it.
#[derive(Debug)]
pub(crate) struct Refused {
    /// The machine's reason, as it words it (model mismatches are counted by it).
    pub(crate) why: String,
    /// Refused because the sender is not (or no longer) a member.
    pub(crate) membership: bool,
    /// An advert naming a credential the receiver does not hold yet: asked for, neither
    /// taken nor refused.
    pub(crate) unknown: bool,
}

impl Refused {
    /// An advert the receiver's core refused.
    pub(crate) fn advert(e: &CoreError) -> Refused {
        Refused {
            membership: ends_membership(e),
            unknown: matches!(e, CoreError::CredentialUnknown),
            why: format!("advert: {e}"),
        }
    }

    /// Gossip the receiver's machine rejected.
    pub(crate) fn gossip(e: &GossipRefused) -> Refused {
        Refused {
            membership: match e {
                GossipRefused::NotMember(_) => true,
                GossipRefused::Core(e) => ends_membership(e),
                _ => false,
            },
            unknown: false,
            why: e.to_string(),
        }
    }
}

/// Whether the core refused something because its sender is not, or no longer, a member.
fn ends_membership(e: &CoreError) -> bool {
    matches!(e, CoreError::NotMember(_) | CoreError::CredentialLapsed(_))
}

impl Sim {
    // ---- revocations ----------------------------------------------------------------

    /// Node `node` (up since `up_since`) took revocation `id` in.
    pub(crate) fn rev_track(&mut self, node: usize, up_since: u64, id: &CertId, new: bool) {
        if !new {
            return;
        }
        let now = self.now;
        let Some(t) = self.revs.get_mut(id) else {
            return;
        };
        if !t.holders.insert(node as u32) {
            return;
        }
        let Some(m) = self.metrics.revocations.get_mut(t.index) else {
            return;
        };
        if up_since > t.published {
            m.caught_up_later += 1;
            m.worst_catch_up_ms = m.worst_catch_up_ms.max((now - up_since) as f64 / MS as f64);
        } else if t.up_at_publish.contains(&(node as u32)) || t.up_at_publish.is_empty() {
            m.reached += 1;
            m.all_held_ms = m.all_held_ms.max((now - t.published) as f64 / MS as f64);
        }
    }

    /// A sliver stopped for revocation `id` (the one its node just took in).
    pub(crate) fn revocation_stopped(&mut self, id: Option<CertId>) {
        let now = self.now;
        if let Some(id) = id
            && let Some(t) = self.revs.get(&id)
            && let Some(m) = self.metrics.revocations.get_mut(t.index)
        {
            m.slivers_stopped += 1;
            m.all_stopped_ms = m.all_stopped_ms.max((now - t.published) as f64 / MS as f64);
        }
    }

    /// An equivocation proof a node logged: its origin counts one more node that marked it.
    pub(crate) fn marked(&mut self, proof: &[u8]) {
        let Some(origin) = proof_origin(proof) else {
            return;
        };
        if let Some(r) = self.equivocators.get(&origin).copied()
            && let Some(m) = self.metrics.equivocations.get_mut(r)
        {
            m.marked_by += 1;
        }
    }

    /// A node caught an equivocation itself (it publishes the proof).
    pub(crate) fn detected(&mut self, proof: &[u8]) {
        let Some(origin) = proof_origin(proof) else {
            return;
        };
        if let Some(r) = self.equivocators.get(&origin).copied()
            && let Some(m) = self.metrics.equivocations.get_mut(r)
            && m.detected_ms < 0.0
        {
            m.detected_ms = (self.now as f64 - m.forked_s * SEC as f64) / MS as f64;
        }
    }

    /// A proof is gossiped: when the last node hears it, every up node has marked the
    /// equivocator.
    pub(crate) fn proof_spread(&mut self, proof: &[u8], last_arrival: u64) {
        let Some(origin) = proof_origin(proof) else {
            return;
        };
        if let Some(r) = self.equivocators.get(&origin).copied()
            && let Some(m) = self.metrics.equivocations.get_mut(r)
            && m.all_marked_ms < 0.0
        {
            let forked = m.forked_s * SEC as f64;
            m.all_marked_ms = ((self.now + last_arrival) as f64 - forked) / MS as f64;
        }
    }

    /// Node `i`'s test hook forked its history (its machine says so): when.
    pub(crate) fn check_forked(&mut self, i: usize, forked: bool) {
        if !forked {
            return;
        }
        let Some(pk) = self.world.nodes.get(i).map(|s| s.public) else {
            return;
        };
        if let Some(r) = self.equivocators.get(&pk).copied()
            && let Some(m) = self.metrics.equivocations.get_mut(r)
            && m.forked_s.is_nan()
        {
            m.forked_s = self.now as f64 / SEC as f64;
        }
    }

    /// Node `i` restored a sliver of `slice` after a restart: wrong if the slice's
    /// researcher was revoked long enough ago that the node could have known.
    pub(crate) fn restored(&mut self, i: usize, slice: u32) {
        let group = self.slices.get(slice as usize).map(|s| s.group);
        if let Some(g) = group
            && !self.revoked_nodes.contains_key(&(i as u32))
            && let Some((at, by)) = self.revoked_users.get(&g)
            && self.now > (*at).max(self.healed_at) + REVOCATION_GRACE
            && self.overlay.reachable(*by as usize, i)
        {
            self.metrics.revoked_restores += 1;
        }
    }
    /// Counts what honest node `receiver` made of gossip from `sender`.
    pub(crate) fn judged(&mut self, sender: usize, receiver: usize, verdict: Result<(), &Refused>) {
        // Refused for not being a member, between a revoked machine and the others (either
        // way: members dropped it, and it drops members whose packets it no longer gets).
        let revoked = |n: usize| self.revoked_nodes.contains_key(&(n as u32));
        let between_revoked =
            (revoked(sender) || revoked(receiver)) && verdict.is_err_and(|r| r.membership);
        if !self.honest(sender) {
            if verdict.is_ok() {
                self.metrics.sybil_accepted += 1;
            } else {
                self.metrics.sybil_rejected += 1;
            }
        } else if between_revoked {
            self.metrics.revoked_gossip_refused += 1;
        } else if let Err(refused) = verdict {
            self.metrics.model_mismatches += 1;
            self.metrics.note_mismatch(&refused.why);
        }
    }

    pub(crate) fn sample(&mut self) {
        let honest = self.world.honest;
        let k = self.cfg.witnesses;
        let mut up = 0usize;
        let mut members = 0usize;
        let mut slivers = 0usize;
        // Live replica sizes per origin.
        let mut held: BTreeMap<PublicKey, Vec<u64>> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate().take(honest) {
            let Some(l) = n.live.as_ref().filter(|_| n.up) else {
                continue;
            };
            up += 1;
            members += l.node.core().members().len();
            slivers += l.running.len();
            for (o, size) in l.node.witnessing().witness().replicas() {
                held.entry(*o).or_default().push(size);
            }
            let _ = i;
        }
        // Replicas on the disks of nodes that are down but not dead: not live coverage, but
        // not lost either (they come back with their node).
        let mut parked: BTreeMap<PublicKey, u64> = BTreeMap::new();
        for n in self.nodes.iter().take(honest).filter(|n| !n.up && !n.dead) {
            for (o, tree, _) in &n.disk.replicas {
                let e = parked.entry(*o).or_default();
                *e = (*e).max(tree.len());
            }
        }
        let (mut total, mut with_k, mut available, mut acked, mut acked_k, mut lost) =
            (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut lost_full = 0u64;
        for (i, n) in self.nodes.iter().enumerate().take(honest) {
            let Some(pk) = self.world.nodes.get(i).map(|s| s.public) else {
                continue;
            };
            let len = n.disk.log.len();
            let mut sizes = held.remove(&pk).unwrap_or_default();
            sizes.sort_unstable_by(|a, b| b.cmp(a));
            let kth = sizes
                .get(k.saturating_sub(1))
                .copied()
                .unwrap_or(0)
                .min(len);
            let best = sizes.first().copied().unwrap_or(0).min(len);
            total += len;
            with_k += kth;
            available += if n.up { len } else { best };
            let a = n.disk.log.acked.min(len);
            acked += a;
            acked_k += kth.min(a);
            // An equivocator's log is not counted: its witnesses stop replicating it once
            // they hold the proof (its later entries cannot be trusted), so what only it
            // held goes with it by design.
            if n.dead && !self.equivocators.contains_key(&pk) {
                let kept = best.max(parked.get(&pk).copied().unwrap_or(0).min(len));
                lost += a.saturating_sub(kept);
                lost_full += n.disk.log.acked_by_k.min(len).saturating_sub(kept);
            }
        }
        let revoked_listed = self.revoked_listings();
        self.metrics.revoked_listed_max = self.metrics.revoked_listed_max.max(revoked_listed);
        // Slivers under revoked chains, and zombies.
        let mut revoked_running = 0;
        let mut zombies = 0;
        for (i, n) in self.nodes.iter().enumerate().take(honest) {
            let Some(l) = n.live.as_ref().filter(|_| n.up) else {
                continue;
            };
            // A revoked machine is outside what members can enforce: no member hands it a
            // delete or gossips it a revocation any more (its owner ignores its
            // authority). What it runs is its owner's business, not a broken promise.
            if self.revoked_nodes.contains_key(&(i as u32)) {
                continue;
            }
            for slice in l.running.values() {
                let Some(info) = self.slices.get(*slice as usize) else {
                    continue;
                };
                // A node cut off from where the revocation was published cannot know; from
                // the heal (or its return) on it must, within the grace period.
                if let Some((at, by)) = self.revoked_users.get(&info.group)
                    && self.overlay.reachable(*by as usize, i)
                {
                    let since = (*at).max(n.up_since).max(self.healed_at);
                    if self.now > since + REVOCATION_GRACE + RESTORE_WAIT {
                        revoked_running += 1;
                    }
                }
                // A deleted slice's sliver still running: past the researcher's command
                // for a node that was up and reachable, past its catch-up for one that was
                // down or cut off (it must reconcile before it restores anything).
                if let Some(d) = info.deleted {
                    let since = d.max(n.up_since).max(self.healed_at);
                    if self.now > d + RPC_TIMEOUT && self.now > since + REVOCATION_GRACE {
                        zombies += 1;
                    }
                }
            }
        }
        if debug_members() {
            let mut sizes: Vec<(
                usize,
                u64,
                usize,
                u64,
                slicefed_proto::node::members::LearningStats,
            )> = self
                .nodes
                .iter()
                .take(honest)
                .filter_map(|n| n.live.as_ref().filter(|_| n.up).map(|l| (n, l)))
                .map(|(n, l)| {
                    (
                        l.node.core().members().len(),
                        l.node.members_learnt(),
                        l.node.learning_held(),
                        (self.now.saturating_sub(n.up_since)) / MIN,
                        l.node.learning_stats(),
                    )
                })
                .collect();
            sizes.sort();
            let q = |f: f64| sizes.get((sizes.len() as f64 * f) as usize).copied();
            eprintln!(
                "members at {:.2} h: min {:?} p10 {:?} p50 {:?} p90 {:?} (size, learnt, held, up min, stats)",
                self.now as f64 / HOUR as f64,
                q(0.0),
                q(0.1),
                q(0.5),
                q(0.9)
            );
        }
        // Sybils listed as members anywhere: each Sybil's key looked up in each member
        // table (there are few Sybils; walking every table and looking each member up in
        // the world's index was N² lookups a sample, 2% of a run without a Sybil).
        let sybils: Vec<PublicKey> = self
            .world
            .nodes
            .iter()
            .skip(honest)
            .map(|s| s.public)
            .collect();
        if !sybils.is_empty() {
            for n in self.nodes.iter().take(honest) {
                if let Some(l) = n.live.as_ref().filter(|_| n.up) {
                    let members = l.node.core().members();
                    self.metrics.sybil_members +=
                        sybils.iter().filter(|k| members.contains_key(k)).count() as u64;
                }
            }
        }
        let dt_min = (self.up_time_us - self.up_time_at_sample) as f64 / MIN as f64;
        let per = if dt_min > 0.0 { 1.0 / dt_min } else { 0.0 };
        let bytes = self.traffic.minus(&self.traffic_at_sample).scaled(per);
        let msgs = (self.msgs - self.msgs_at_sample) as f64 * per;
        if dt_min > 0.0 {
            self.swim_parts_last_period = (
                self.swim_parts.minus(&self.swim_parts_at_sample),
                self.traffic.swim - self.traffic_at_sample.swim,
                dt_min,
            );
        }
        if dt_min > 0.0 {
            let last = self
                .advert_parts
                .iter()
                .map(|(k, v)| {
                    let before = self.advert_parts_at_sample.get(k).copied().unwrap_or(0.0);
                    (*k, v - before)
                })
                .collect();
            self.advert_parts_last_period = (last, dt_min);
        }
        self.advert_parts_at_sample = self.advert_parts.clone();
        self.traffic_at_sample = self.traffic;
        self.swim_parts_at_sample = self.swim_parts;
        self.msgs_at_sample = self.msgs;
        self.up_time_at_sample = self.up_time_us;
        self.last_sample = self.now;
        let share = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        self.metrics.samples.push(metrics::Sample {
            at_h: self.now as f64 / HOUR as f64,
            up,
            mean_members: if up == 0 {
                0.0
            } else {
                members as f64 / up as f64
            },
            slivers,
            share_k_witnesses: share(with_k, total),
            share_available: share(available, total),
            share_acked_k: share(acked_k, acked),
            lost_acked: lost,
            lost_acked_by_k: lost_full,
            entries: total,
            bytes_per_node_min: bytes,
            msgs_per_node_min: msgs,
            revoked_running,
            zombies,
        });
    }

    pub(crate) fn finish(&mut self) {
        for r in &mut self.metrics.revocations {
            if r.reached == 0 {
                r.all_held_ms = f64::NAN;
            }
        }
        self.count_still_listed();
        self.metrics.revoked_still_listed_end = self.revoked_listings();
    }

    /// Live honest nodes' listings of members that crashed over [`STILL_LISTED_AFTER`]
    /// ago while the node was up: the drops still to come at the end of the run; and
    /// their listings of nodes revoked over [`STILL_LISTED_AFTER`] ago. A revoked node's
    /// own listings do not count: it is no member.
    fn count_still_listed(&mut self) {
        let (mut count, mut formed, mut oldest) = (0u64, 0u64, 0u64);
        for (i, n) in self.nodes.iter().enumerate().take(self.world.honest) {
            let Some(live) = &n.live else { continue };
            if self.revoked_nodes.contains_key(&(i as u32)) {
                continue;
            }
            for key in live.node.core().members().keys() {
                let Some(&j) = self.world.index.get(key) else {
                    continue;
                };
                if self.revoked_nodes.contains_key(&(j as u32)) {
                    // Counted by `revoked_listings`.
                    continue;
                }
                let Some(gone) = self.nodes.get(j) else {
                    continue;
                };
                let age = self.now.saturating_sub(gone.down_since);
                if !gone.up && n.up_since <= gone.down_since && age > STILL_LISTED_AFTER {
                    count += 1;
                    formed += u64::from(gone.down_since >= FORMED);
                    oldest = oldest.max(age);
                }
            }
        }
        self.metrics.still_listed_end = count;
        self.metrics.still_listed_formed_end = formed;
        self.metrics.still_listed_oldest_ms = oldest as f64 / MS as f64;
    }

    /// Live honest nodes' listings, in their member table or SWIM's, of nodes revoked over
    /// [`STILL_LISTED_AFTER`] before (or before the listing node's start, if it was down
    /// then). A revoked machine's own listings do not count: it is no member.
    fn revoked_listings(&self) -> u64 {
        if self.revoked_nodes.is_empty() {
            return 0;
        }
        let mut count = 0;
        for (i, n) in self.nodes.iter().enumerate().take(self.world.honest) {
            let Some(l) = n.live.as_ref().filter(|_| n.up) else {
                continue;
            };
            if self.revoked_nodes.contains_key(&(i as u32)) {
                continue;
            }
            for (&r, &at) in &self.revoked_nodes {
                let Some(key) = self.world.nodes.get(r as usize).map(|s| s.public) else {
                    continue;
                };
                let since = at.max(n.up_since);
                if self.now.saturating_sub(since) > STILL_LISTED_AFTER
                    && (l.node.core().members().contains_key(&key) || l.node.swim_lists(&key))
                {
                    count += 1;
                }
            }
        }
        count
    }

    /// The whole-run traffic, per up node per minute.
    pub fn traffic_per_node_minute(&self) -> metrics::Traffic {
        let minutes = self.up_time_us as f64 / MIN as f64;
        if minutes <= 0.0 {
            return metrics::Traffic::default();
        }
        self.traffic.scaled(1.0 / minutes)
    }

    /// SWIM's counters summed over the honest nodes, those that went down during the run
    /// included (a node's counters start again at each start).
    pub fn swim_stats(&self) -> slicefed_proto::swim::SwimStats {
        let mut sum = self.swim_stats_gone;
        for n in self.nodes.iter().take(self.world.honest) {
            if let Some(live) = &n.live {
                sum.add(&live.node.swim_stats());
            }
        }
        sum
    }

    /// SWIM's bytes per up node per minute (in + out) by part, over the whole run and
    /// over the last sample period: what the `swim` traffic figure is made of. The
    /// transport's framing of each packet and its answers are `framing and answers`.
    pub fn swim_parts_per_node_minute(&self) -> [Vec<(&'static str, f64)>; 2] {
        let minutes = self.up_time_us as f64 / MIN as f64;
        let (last, last_swim, last_minutes) = self.swim_parts_last_period;
        [
            swim_parts_per_minute(&self.swim_parts, self.traffic.swim, minutes),
            swim_parts_per_minute(&last, last_swim, last_minutes),
        ]
    }

    /// The `adverts` figure by what it was (gossiped adverts, each membership request
    /// with its answer), per up node per minute: over the whole run and over the last
    /// sample period.
    pub fn advert_parts_per_node_minute(&self) -> [Vec<(&'static str, f64)>; 2] {
        let minutes = self.up_time_us as f64 / MIN as f64;
        let per = |m: f64| if m > 0.0 { 1.0 / m } else { 0.0 };
        let (last, last_minutes) = &self.advert_parts_last_period;
        [
            self.advert_parts
                .iter()
                .map(|(k, v)| (*k, v * per(minutes)))
                .collect(),
            last.iter()
                .map(|(k, v)| (*k, v * per(*last_minutes)))
                .collect(),
        ]
    }

    /// Messages per up node per minute over the run.
    pub fn messages_per_node_minute(&self) -> f64 {
        let minutes = self.up_time_us as f64 / MIN as f64;
        if minutes <= 0.0 {
            0.0
        } else {
            self.msgs as f64 / minutes
        }
    }

    /// The configuration it ran.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
}

/// `parts` (each byte counted once) and `swim` (in + out) per node-minute, in + out.
fn swim_parts_per_minute(
    parts: &slicefed_proto::swim::PacketParts,
    swim: f64,
    minutes: f64,
) -> Vec<(&'static str, f64)> {
    let per = if minutes > 0.0 { 1.0 / minutes } else { 0.0 };
    let mut out: Vec<(&'static str, f64)> = parts
        .named()
        .iter()
        .map(|(name, bytes)| (*name, 2.0 * *bytes as f64 * per))
        .collect();
    let framing = swim - 2.0 * parts.total() as f64;
    out.push(("framing and answers", framing.max(0.0) * per));
    out
}

/// The origin an equivocation proof is against.
fn proof_origin(proof: &[u8]) -> Option<PublicKey> {
    EquivocationProof::from_bytes(proof)
        .ok()
        .map(|p| p.smaller.checkpoint.origin)
}
