//! What a run measured, and the summaries written to `docs/`.

use serde::Serialize;

/// One `slice create` as its researcher saw it.
#[derive(Clone, Debug, Serialize)]
pub struct Creation {
    /// When the command started (simulated seconds since the start).
    pub at_s: f64,
    /// Nodes named in the ticket.
    pub targeted: usize,
    /// Admitted (a signed receipt saying so).
    pub admitted: usize,
    /// Refused (a signed receipt with a reason).
    pub refused: usize,
    /// No answer before the timeout (down, or across a partition).
    pub unreachable: usize,
    /// From the command's start to the last admitted receipt (every reachable sliver
    /// running), ms; includes waiting for bootstrap nodes that were down.
    pub all_running_ms: f64,
    /// From sending the tickets to the last admitted receipt, ms.
    pub fanout_ms: f64,
    /// Bootstrap nodes that did not answer before one did.
    pub bootstrap_retries: usize,
}

/// One revocation from its publication.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RevocationRun {
    /// When it was handed to a node, simulated seconds.
    pub at_s: f64,
    /// Up nodes when it was published.
    pub up_nodes: usize,
    /// Of those, how many held it in the end.
    pub reached: usize,
    /// When the last of those first held it, ms after publication.
    pub all_held_ms: f64,
    /// Slivers it stopped, on all nodes.
    pub slivers_stopped: usize,
    /// When the last of them stopped, ms after publication.
    pub all_stopped_ms: f64,
    /// Nodes that were down and learnt it on their return (catch-up by digest).
    pub caught_up_later: usize,
    /// Longest catch-up: from a node's return to holding it, ms.
    pub worst_catch_up_ms: f64,
}

/// One equivocating node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EquivocationRun {
    /// When it signed the second history, simulated seconds.
    pub forked_s: f64,
    /// Until the first node held a proof, ms (negative: never).
    pub detected_ms: f64,
    /// Until every up node had marked it, ms (negative: never).
    pub all_marked_ms: f64,
    /// Nodes that verified the proof.
    pub marked_by: usize,
}

/// The state of the federation at one instant.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Simulated hours since the start.
    pub at_h: f64,
    /// Honest nodes up.
    pub up: usize,
    /// Mean member count seen by up nodes.
    pub mean_members: f64,
    /// Slivers running.
    pub slivers: usize,
    /// Share of log entries held by at least `k` live witnesses.
    pub share_k_witnesses: f64,
    /// Share of log entries held by at least one live node (origin or witness).
    pub share_available: f64,
    /// Share of acknowledged entries (cosigned by a witness) held by at least `k` live
    /// witnesses.
    pub share_acked_k: f64,
    /// Acknowledged entries of permanently dead nodes that no node holds (up, or down
    /// with the replica on its disk).
    pub lost_acked: u64,
    /// Of those, entries that `k` distinct witnesses had cosigned.
    pub lost_acked_by_k: u64,
    /// Log entries in the federation.
    pub entries: u64,
    /// Bytes per up node per minute since the previous sample, by category.
    pub bytes_per_node_min: Traffic,
    /// Messages per up node per minute since the previous sample.
    pub msgs_per_node_min: f64,
    /// Slivers running under a chain revoked more than the grace period ago.
    pub revoked_running: usize,
    /// Slivers running whose slice was deleted by its holder (they return with a node that
    /// was down during the delete, and end with their ticket).
    pub zombies: usize,
}

/// Bytes by what they were for (in + out, at every node).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Traffic {
    /// Adverts (gossip).
    pub adverts: f64,
    /// SWIM packets (probes, acks, piggybacked updates, votes) and their answers.
    pub swim: f64,
    /// Checkpoints sent to witnesses and cosignatures sent back and across.
    pub checkpoints: f64,
    /// Ledger pages and replica hand-overs.
    pub replication: f64,
    /// Revocations, proofs and revocation catch-ups.
    pub revocations: f64,
    /// Tickets, modules, deletes and answers to researchers.
    pub researchers: f64,
    /// Everything rejected at the first hop (Sybils).
    pub rejected: f64,
}

impl Traffic {
    /// Sum of every category.
    pub fn total(&self) -> f64 {
        self.adverts
            + self.swim
            + self.checkpoints
            + self.replication
            + self.revocations
            + self.researchers
            + self.rejected
    }

    /// Adds `bytes` to category `c`.
    pub fn add(&mut self, c: Category, bytes: f64) {
        match c {
            Category::Adverts => self.adverts += bytes,
            Category::Swim => self.swim += bytes,
            Category::Checkpoints => self.checkpoints += bytes,
            Category::Replication => self.replication += bytes,
            Category::Revocations => self.revocations += bytes,
            Category::Researchers => self.researchers += bytes,
            Category::Rejected => self.rejected += bytes,
        }
    }

    /// Each field scaled by `f`.
    pub fn scaled(&self, f: f64) -> Traffic {
        Traffic {
            adverts: self.adverts * f,
            swim: self.swim * f,
            checkpoints: self.checkpoints * f,
            replication: self.replication * f,
            revocations: self.revocations * f,
            researchers: self.researchers * f,
            rejected: self.rejected * f,
        }
    }

    /// Field-wise difference.
    pub fn minus(&self, o: &Traffic) -> Traffic {
        Traffic {
            adverts: self.adverts - o.adverts,
            swim: self.swim - o.swim,
            checkpoints: self.checkpoints - o.checkpoints,
            replication: self.replication - o.replication,
            revocations: self.revocations - o.revocations,
            researchers: self.researchers - o.researchers,
            rejected: self.rejected - o.rejected,
        }
    }
}

/// Traffic categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// See [`Traffic::adverts`].
    Adverts,
    /// See [`Traffic::swim`].
    Swim,
    /// See [`Traffic::checkpoints`].
    Checkpoints,
    /// See [`Traffic::replication`].
    Replication,
    /// See [`Traffic::revocations`].
    Revocations,
    /// See [`Traffic::researchers`].
    Researchers,
    /// See [`Traffic::rejected`].
    Rejected,
}

/// Everything a run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Metrics {
    /// Every slice creation.
    pub creations: Vec<Creation>,
    /// Every revocation.
    pub revocations: Vec<RevocationRun>,
    /// Every equivocating node.
    pub equivocations: Vec<EquivocationRun>,
    /// Periodic samples.
    pub samples: Vec<Sample>,
    /// Refusal reasons researchers saw, with counts.
    pub refusals: std::collections::BTreeMap<String, usize>,
    /// Messages from Sybils an honest node accepted (must be 0).
    pub sybil_accepted: u64,
    /// Messages from Sybils honest nodes rejected.
    pub sybil_rejected: u64,
    /// Sybils that some honest node listed as a member at any sample (must be 0).
    pub sybil_members: u64,
    /// Honest gossip an honest node refused although the overlay model let it pass: a check
    /// that the delivery model and the node logic agree. The one expected kind is a
    /// revocation relayed by a node the receiver does not list (yet): a node back from an
    /// outage passes on the revocations it caught up on before its first advert re-admits
    /// it, and receivers ignore it (they hold those revocations already or fetch them).
    pub model_mismatches: u64,
    /// Why those were rejected (the reason up to its first detail, at most
    /// [`MAX_MISMATCH_REASONS`] kinds; the rest counted under "other").
    pub mismatch_reasons: std::collections::BTreeMap<String, u64>,
    /// Restored slivers whose chain was already revoked (must be 0).
    pub revoked_restores: u64,
    /// Events processed.
    pub events: u64,
    /// Events processed, by kind ([`EVENT_KINDS`]): where a run's wall time goes.
    pub events_by_kind: [u64; EVENT_KINDS.len()],
    /// Wall time spent handling each kind, ns (only with `SLICEFED_SIM_TIME_KINDS`).
    pub event_nanos_by_kind: [u64; EVENT_KINDS.len()],
    /// Entry pages witnesses refused.
    pub bad_pages: u64,
    /// Revocations and deletes fetched by reconciliation and refused.
    pub fetched_refused: u64,
    /// For each live member that dropped a crashed node: ms from the crash to the drop.
    pub detections: Vec<f64>,
    /// The same, for crashes once the federation had formed ([`crate::sim::FORMED`] into
    /// the run, and [`crate::sim::FORMED`] before its end) and members that were up at the
    /// crash: SWIM's steady state, without a start-up's strangers.
    pub detections_formed: Vec<f64>,
    /// At the end of the run, pairs of a live node and a member it still lists that
    /// crashed more than [`crate::sim::STILL_LISTED_AFTER`] ago, while the node was up:
    /// drops that had not happened by the end, which `detections` cannot show.
    pub still_listed_end: u64,
    /// The longest such listing, ms since the crash (0 with none).
    pub still_listed_oldest_ms: f64,
    /// Of `still_listed_end`, those of crashes once the federation had formed
    /// ([`crate::sim::FORMED`] into the run or later; unlike `detections_formed`, crashes
    /// in the run's last [`crate::sim::FORMED`] count too).
    pub still_listed_formed_end: u64,
    /// Members dropped by a live node while they were up (false departures); a revoked
    /// node's drops, and what a revoked node's own machine drops, are not among them.
    pub false_departures: u64,
    /// Revocations an authority gave up handing over: it reached no member, or none of
    /// eight batches was taken (`authority publish` fails; the revocation is not
    /// published).
    pub revocations_abandoned: u64,
    /// Nodes whose certificates were revoked (their machines run on).
    pub nodes_revoked: u64,
    /// For each live member that dropped a revoked node: ms from the revocation's
    /// publication (or the member's start, if it was down then) to the drop.
    pub revoked_node_drops: Vec<f64>,
    /// At the end of the run, pairs of a live node (not itself revoked) and a revoked node
    /// it still lists (in its member table or SWIM's), revoked more than
    /// [`crate::sim::STILL_LISTED_AFTER`] before (or before the node's start).
    pub revoked_still_listed_end: u64,
    /// The most such pairs at any sample (every `sample_every`, and the end): a member
    /// that lists a revoked node and then crashes is seen here, not at the end.
    pub revoked_listed_max: u64,
    /// Revoked nodes admitted as members by a live node (not revoked itself) over
    /// [`crate::sim::STILL_LISTED_AFTER`] after the revocation (or after its own start):
    /// seen when it happens, unlike the listings counted at samples.
    pub revoked_joined_late: u64,
    /// Gossip refused for not being from a member, sent by a revoked node to a member or
    /// by a member to a revoked node (not model mismatches: the credential ended).
    pub revoked_gossip_refused: u64,
    /// Members dropped by live nodes (not revoked themselves), revoked members not counted.
    pub departures: u64,
    /// For each restart of a node that had run before: ms from its start until it had
    /// reconciled revocations and deletes with a quorum of members (`Node::catching_up`
    /// false), when its saved slivers may come back.
    pub reconciled_after_restart: Vec<f64>,
}

/// The `q` quantile of `xs` (nearest rank), or 0 for none.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).saturating_sub(1);
    v.get(i.min(v.len() - 1)).copied().unwrap_or(0.0)
}

/// The kinds of event `Metrics::events_by_kind` counts, in its order (a request by what
/// it asks; "other requests" are clients' and rare ones).
pub const EVENT_KINDS: [&str; 19] = [
    "boot",
    "crash",
    "tick",
    "wake",
    "sybil advert",
    "activity",
    "gossip wave",
    "reply",
    "advert effects",
    "scenario",
    "swim packet",
    "revocation prints",
    "revocations page",
    "witness note",
    "entries page",
    "credential",
    "member list",
    "submit",
    "other request",
];

/// Distinct mismatch reasons kept (the rest are counted under "other").
pub const MAX_MISMATCH_REASONS: usize = 32;

impl Metrics {
    /// Counts one rejection of honest gossip under its reason's kind (the text before any
    /// key, name or number, so reasons do not multiply with nodes).
    pub fn note_mismatch(&mut self, why: &str) {
        let kind: String = why
            .split(|c: char| c.is_ascii_digit() || c == '`' || c == '(')
            .next()
            .unwrap_or(why)
            .chars()
            .take(80)
            .collect();
        let kind = kind.trim().to_string();
        let key = if self.mismatch_reasons.contains_key(&kind)
            || self.mismatch_reasons.len() < MAX_MISMATCH_REASONS
        {
            kind
        } else {
            "other".to_string()
        };
        *self.mismatch_reasons.entry(key).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.5), 50.0);
        assert_eq!(quantile(&xs, 0.99), 99.0);
        assert_eq!(quantile(&xs, 1.0), 100.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
