//! A node's whole part in witnessing, as one sans-IO machine both the daemon and the
//! simulator drive: sending its own checkpoints to its witnesses (and again now and then,
//! for new witnesses), taking notes from members (checkpoints, cosignatures, hand-over
//! offers) about origins it knows, fetching and checking pages, cosigning and telling the
//! origin and the origin's other witnesses, proving equivocation, and handing over the logs
//! of origins that left. Which members a cosignature goes to, when a checkpoint is sent
//! again and when logs are handed over are decided here, once.
//!
//! Invariants: no IO, no clock (every call takes `now_ms`); everything held is bounded (the
//! [`Witness`] bounds, departed members by `MAX_DEPARTED`, one witness set per replicated
//! origin); only notes from members, about origins this node knows, are taken.

use crate::core::{MAX_MEMBERS, Members};
use crate::wire::{Cosigned, Request, Response, WitnessNote};
use crate::witness::{Witness, WitnessOutput, WitnessSet};
use slicefed_ledger::checkpoint::{Cosignature, EquivocationProof, SignedCheckpoint};
use slicefed_trust::{ModuleHash, PublicKey, SecretKey};
use std::collections::{BTreeMap, VecDeque};

/// A node sends its latest checkpoint to its witnesses again every this many ticks
/// (witnesses that are new learn it; one that missed it asks for the pages it lacks).
pub const CHECKPOINT_RESEND_TICKS: u64 = 10;
/// Logs of origins that left are offered to their new witnesses every this many ticks.
pub const HANDOVER_EVERY_TICKS: u64 = 60;
/// After a member that held a departed origin's log with this node leaves, extra hand-over
/// passes run this long after its departure (one when most members have dropped it, one
/// when the slowest have): the periodic pass alone left a gap of up to
/// [`HANDOVER_EVERY_TICKS`] ticks in which the remaining witnesses could die too.
pub const REPAIR_AFTER_MS: [u64; 2] = [60_000, 240_000];
/// Least time between two hand-over passes a repair starts.
pub const REPAIR_MIN_GAP_MS: u64 = 60_000;
/// Departures waiting to be looked at by the next tick, at most.
const DEPARTURES_PENDING: usize = 64;
/// A member that left is remembered this long (its log may still be handed over).
pub const DEPARTED_KEPT_MS: u64 = 24 * 3600 * 1000;
/// Members that left remembered, at most.
pub const MAX_DEPARTED: usize = MAX_MEMBERS;

/// What the router must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send this note to member `to` (a `Request::Witness`, answered with `Done`).
    Note {
        /// The member.
        to: PublicKey,
        /// The note.
        note: WitnessNote,
    },
    /// Ask `to` for entries of `origin`'s log and hand the answer to
    /// [`Witnessing::fetched`] with `origin` and `holder` (or [`Witnessing::fetch_failed`]).
    Fetch {
        /// Whom to ask (the origin, or the holder of a gone origin's log).
        to: PublicKey,
        /// Whose log.
        origin: PublicKey,
        /// The holder, when `to` is not the origin.
        holder: Option<PublicKey>,
        /// The request.
        request: Request,
    },
    /// Append verified leaves, and the origin's checkpoint that covers them, to the replica
    /// of `origin` (an export file any auditor can replay).
    Persist {
        /// Whose log.
        origin: PublicKey,
        /// Leaf bytes, in order.
        leaves: Vec<Vec<u8>>,
        /// The origin's checkpoint at the end.
        checkpoint: SignedCheckpoint,
    },
    /// A witness cosigned one of this node's own checkpoints: keep it (auditors' bundles
    /// carry it).
    Cosigned(Cosigned),
    /// Two histories signed by one origin: log the proof (`EquivocationSeen`) and publish
    /// it on the equivocation topic.
    Equivocation(EquivocationProof),
    /// This node's checkpoint is due: sign one of everything durable and hand it to
    /// [`Witnessing::signed`].
    SignCheckpoint,
}

/// Why a fetched answer was not taken (the fetch is counted as failed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchFailed {
    /// Not a page of that log.
    #[error("the answer is not a page of that log")]
    NotAPage,
    /// A page that does not check.
    #[error(transparent)]
    Refused(#[from] crate::witness::WitnessError),
}

/// Why a note was not taken (the router answers the sender with it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteRefused {
    /// Only members witness.
    #[error("only members witness")]
    NotMember,
    /// A checkpoint sent by another than its origin, or a cosignature by another than
    /// its witness.
    #[error("a note about another node's log")]
    NotTheirs,
    /// About a log this node does not know (a key anyone can make up).
    #[error("a note about a log this node does not know")]
    UnknownOrigin,
}

/// The machine.
pub struct Witnessing {
    key: SecretKey,
    me: PublicKey,
    k: usize,
    witness: Witness,
    /// This node's witnesses.
    mine: WitnessSet,
    /// The witnesses of every origin this node cosigned for.
    co: BTreeMap<PublicKey, WitnessSet>,
    departed: VecDeque<(PublicKey, u64)>,
    /// The node's tick: periods are counted in it.
    tick_ms: u64,
    /// A grown log's checkpoint goes out at most every this many ticks.
    checkpoint_every_ticks: u64,
    sent_size: u64,
    sent_at_ms: u64,
    /// When the router was last asked to sign and has not answered yet: it is not asked
    /// again until the resend period has passed (signing is off the router's loop, and a
    /// slow disk must not collect a queue of requests).
    asked_at_ms: Option<u64>,
    handed_over_at_ms: u64,
    /// Origins that lost a co-witness since the last tick, with when (at most
    /// [`DEPARTURES_PENDING`]).
    departures: Vec<(PublicKey, u64)>,
    /// Extra hand-over passes due (see [`REPAIR_AFTER_MS`]), soonest first.
    repairs_due: Vec<u64>,
    /// Test-only hook: once, show one witness a second history head at the same size.
    equivocate: bool,
    equivocated: bool,
}

impl Witnessing {
    /// The machine of the node with `key`, with `k` witnesses per log, ticking every
    /// `tick_ms`: a grown log's checkpoint goes out at most every `checkpoint_every_ticks`
    /// ticks, the latest again every [`CHECKPOINT_RESEND_TICKS`] (or every
    /// `checkpoint_every_ticks`, if longer), hand-overs every [`HANDOVER_EVERY_TICKS`].
    pub fn new(key: SecretKey, k: usize, tick_ms: u64, checkpoint_every_ticks: u64) -> Witnessing {
        let me = key.public();
        Witnessing {
            witness: Witness::new(me, k),
            mine: WitnessSet::new(me, k, &[]),
            co: BTreeMap::new(),
            departed: VecDeque::new(),
            key,
            me,
            k: k.max(1),
            tick_ms: tick_ms.max(1),
            checkpoint_every_ticks: checkpoint_every_ticks.max(1),
            sent_size: 0,
            sent_at_ms: 0,
            asked_at_ms: None,
            handed_over_at_ms: 0,
            departures: vec![],
            repairs_due: vec![],
            equivocate: false,
            equivocated: false,
        }
    }

    /// Test only: sign and show one witness a second history (to show it is caught).
    pub fn test_equivocate(&mut self) {
        self.equivocate = true;
    }

    /// Whether the test hook has forked this node's history.
    pub fn equivocated(&self) -> bool {
        self.equivocated
    }

    /// The replicas and proofs.
    pub fn witness(&self) -> &Witness {
        &self.witness
    }

    /// The replicas and proofs, taken out (a node that stops hands its replicas to disk).
    pub fn into_witness(self) -> Witness {
        self.witness
    }

    /// The replicas and proofs, to restore them or set quotas.
    pub fn witness_mut(&mut self) -> &mut Witness {
        &mut self.witness
    }

    /// This node's cosignature, signed now, of the latest checkpoint of `origin`'s log it
    /// holds on disk ([`Witness::vouchable`]): an auditor's evidence when the origin is
    /// dead or does not answer.
    pub fn vouch(
        &self,
        origin: &PublicKey,
        now_ms: u64,
    ) -> Option<(SignedCheckpoint, Cosignature)> {
        let cp = self.witness.vouchable(origin)?;
        let sig = Cosignature::sign(&self.key, cp, now_ms).ok()?;
        Some((cp.clone(), sig))
    }

    /// This node's current witnesses.
    pub fn my_witnesses(&self) -> impl Iterator<Item = &PublicKey> {
        self.mine.current()
    }

    /// A member joined. The witness sets follow with one hash each; when they ran out of
    /// candidates, [`Witnessing::rebuild`] (see [`Witnessing::needs_rebuild`]).
    pub fn joined(&mut self, member: &PublicKey) {
        self.mine.joined(member);
        for set in self.co.values_mut() {
            set.joined(member);
        }
    }

    /// A member left at `now_ms` (see [`Witnessing::joined`] on rebuilding).
    pub fn left(&mut self, member: &PublicKey, now_ms: u64) {
        self.mine.left(member);
        // An origin whose log this node holds left: if its witnesses are short of one, the
        // replacement must get the log from them, since the origin cannot serve it.
        if self.witness.replicas().any(|(o, _)| o == member)
            && self.departures.len() < DEPARTURES_PENDING
        {
            self.departures.push((*member, now_ms));
        }
        for (origin, set) in self.co.iter_mut() {
            // A co-witness of a log this node holds: if the origin left too, its log must
            // reach the replacement soon (see `schedule_repairs`).
            if set.contains(member) && self.departures.len() < DEPARTURES_PENDING {
                self.departures.push((*origin, now_ms));
            }
            set.left(member);
        }
        self.departed.push_back((*member, now_ms));
        while self.departed.len() > MAX_DEPARTED {
            self.departed.pop_front();
        }
    }

    /// Whether a witness set lost too many candidates to be exact.
    pub fn needs_rebuild(&self) -> bool {
        self.mine.needs_rebuild() || self.co.values().any(WitnessSet::needs_rebuild)
    }

    /// Rebuilds the witness sets that need it from all `members`.
    pub fn rebuild(&mut self, members: &Members) {
        let all: Vec<PublicKey> = members.keys().copied().collect();
        if self.mine.needs_rebuild() {
            self.mine = WitnessSet::new(self.me, self.k, &all);
        }
        if self.co.values().any(WitnessSet::needs_rebuild) {
            let mut all = all;
            all.push(self.me);
            for set in self.co.values_mut() {
                if set.needs_rebuild() {
                    *set = WitnessSet::new(*set.origin(), self.k, &all);
                }
            }
        }
    }

    /// Members' keys, when the witness needs them (it holds no replica of `origin` yet).
    fn members_for(&self, origin: &PublicKey, members: &Members) -> Vec<PublicKey> {
        if self.witness.replica_size(origin).is_some() {
            vec![]
        } else {
            members.keys().copied().collect()
        }
    }

    /// Whether this node takes anything about `origin`'s log: itself, a member, an origin
    /// it replicates, or a member that left within [`DEPARTED_KEPT_MS`]. Everything about
    /// other keys (which anyone can make up) would fill tables and logs for nothing.
    pub fn known_origin(&self, origin: &PublicKey, is_member: bool, now_ms: u64) -> bool {
        let since = now_ms.saturating_sub(DEPARTED_KEPT_MS);
        *origin == self.me
            || is_member
            || self.witness.replica_size(origin).is_some()
            || self
                .departed
                .iter()
                .any(|(k, at)| k == origin && *at >= since)
    }

    /// Time passes (called every tick); `log_size` is how many entries of this node's log
    /// are durable. When the log grew (at most every `checkpoint_every_ticks` ticks), or
    /// every [`CHECKPOINT_RESEND_TICKS`] anyway, this node's checkpoint is due: the router
    /// is asked for it ([`Effect::SignCheckpoint`]) and hands it to [`Witnessing::signed`].
    /// Every [`HANDOVER_EVERY_TICKS`] the logs of origins that left are offered to their
    /// new witnesses.
    pub fn tick(&mut self, now_ms: u64, log_size: u64, members: &Members) -> Vec<Effect> {
        let mut out = vec![];
        let since = now_ms.saturating_sub(self.sent_at_ms);
        let period = self.checkpoint_every_ticks.saturating_mul(self.tick_ms);
        // Within a tick's jitter of the period (ticks are not exactly periodic).
        let grown = log_size > self.sent_size && since + self.tick_ms / 2 >= period;
        let again = since
            >= CHECKPOINT_RESEND_TICKS
                .max(self.checkpoint_every_ticks)
                .saturating_mul(self.tick_ms);
        let resend = CHECKPOINT_RESEND_TICKS.saturating_mul(self.tick_ms);
        let waiting = self
            .asked_at_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < resend);
        if (grown || (again && log_size > 0)) && !waiting {
            self.asked_at_ms = Some(now_ms);
            out.push(Effect::SignCheckpoint);
        }
        self.follow_replicas(members);
        self.schedule_repairs(members);
        // A repair pass at most once a minute: a member that leaves and rejoins again and
        // again cannot make this node offer logs at every tick.
        let repair = self.repairs_due.first().is_some_and(|at| *at <= now_ms)
            && now_ms.saturating_sub(self.handed_over_at_ms) >= REPAIR_MIN_GAP_MS;
        if repair {
            self.repairs_due.retain(|at| *at > now_ms);
        }
        if repair
            || now_ms.saturating_sub(self.handed_over_at_ms) >= HANDOVER_EVERY_TICKS * self.tick_ms
        {
            self.handed_over_at_ms = now_ms;
            let all: Vec<PublicKey> = members.keys().copied().collect();
            for (to, cp) in self.witness.handovers(&all) {
                out.push(Effect::Note {
                    to,
                    note: WitnessNote::Offer(cp),
                });
            }
        }
        out
    }

    /// Every log this node holds has a witness set that follows departures (a cosigned
    /// log has one already; a handed-over or restored one gets one here, once), so that
    /// `left` sees which of its witnesses go.
    fn follow_replicas(&mut self, members: &Members) {
        let missing: Vec<PublicKey> = self
            .witness
            .replicas()
            .map(|(o, _)| *o)
            .filter(|o| !self.co.contains_key(o))
            .collect();
        if self.co.len() > self.witness.replicas().count() {
            // Logs no longer held need no set.
            let held: std::collections::BTreeSet<PublicKey> =
                self.witness.replicas().map(|(o, _)| *o).collect();
            self.co.retain(|o, _| held.contains(o));
        }
        for origin in missing {
            self.co_set(origin, members);
        }
    }

    /// The witness set of `origin`'s log as this node follows it, ranked among `members`
    /// and this node the first time.
    fn co_set(&mut self, origin: PublicKey, members: &Members) -> &WitnessSet {
        let (me, k) = (self.me, self.k);
        self.co.entry(origin).or_insert_with(|| {
            let mut all: Vec<PublicKey> = members.keys().copied().collect();
            all.push(me);
            WitnessSet::new(origin, k, &all)
        })
    }

    /// Looks at the co-witnesses that left since the last tick: one of an origin that has
    /// left too (whose log only its witnesses hold) schedules extra hand-over passes, so
    /// that its replacement gets the log while the others live. (Which co-witnesses a log
    /// has is kept by its witness set, which follows every departure: nothing is ranked
    /// again here.)
    fn schedule_repairs(&mut self, members: &Members) {
        if self.departures.is_empty() {
            return;
        }
        let departures = std::mem::take(&mut self.departures);
        for (origin, at) in departures {
            let orphan = !members.contains_key(&origin)
                && self.witness.replicas().any(|(o, _)| *o == origin);
            if !orphan {
                continue;
            }
            for after in REPAIR_AFTER_MS {
                let due = at.saturating_add(after);
                if self.repairs_due.len() < 2 * REPAIR_AFTER_MS.len()
                    && !self.repairs_due.contains(&due)
                {
                    self.repairs_due.push(due);
                }
            }
            self.repairs_due.sort_unstable();
        }
    }

    /// This node's checkpoint of everything durable, as the router signed it when asked:
    /// it goes to this node's witnesses.
    pub fn signed(&mut self, now_ms: u64, cp: &SignedCheckpoint) -> Vec<Effect> {
        if cp.checkpoint.origin != self.me {
            return vec![];
        }
        self.sent_size = cp.checkpoint.size;
        self.sent_at_ms = now_ms;
        self.asked_at_ms = None;
        self.send_checkpoint(cp)
    }

    fn send_checkpoint(&mut self, cp: &SignedCheckpoint) -> Vec<Effect> {
        let witnesses: Vec<PublicKey> = self.mine.current().copied().collect();
        // The hook forks once two witnesses can compare what they were shown.
        let fork = self.equivocate && !self.equivocated && witnesses.len() >= 2;
        let last = witnesses.len().saturating_sub(1);
        witnesses
            .into_iter()
            .enumerate()
            .map(|(i, to)| {
                let mut c = cp.clone();
                if fork && i == last {
                    // The test hook: a second history head at the same size, signed all
                    // the same, shown to one witness only (a split view the others catch).
                    let mut forged = cp.checkpoint;
                    forged.root = ModuleHash::of(&[forged.root.as_slice(), b"forged"].concat()).0;
                    if let Ok(f) = forged.sign(&self.key) {
                        c = f;
                        self.equivocated = true;
                    }
                }
                Effect::Note {
                    to,
                    note: WitnessNote::Checkpoint(c),
                }
            })
            .collect()
    }

    /// A note from `from`. Answered with `Done` when taken, or with the refusal.
    pub fn note(
        &mut self,
        now_ms: u64,
        from: PublicKey,
        note: WitnessNote,
        members: &Members,
    ) -> Result<Vec<Effect>, NoteRefused> {
        if !members.contains_key(&from) {
            return Err(NoteRefused::NotMember);
        }
        let outs = match note {
            WitnessNote::Checkpoint(cp) if cp.checkpoint.origin == from && from != self.me => {
                let all = self.members_for(&from, members);
                self.witness.checkpoint(now_ms, cp, &all)
            }
            WitnessNote::Cosigned(c) if c.cosignature.witness == from => {
                let origin = c.checkpoint.checkpoint.origin;
                if origin == self.me {
                    // A witness cosigned one of ours (the router checks and keeps it).
                    return Ok(vec![Effect::Cosigned(c)]);
                }
                if !self.known_origin(&origin, members.contains_key(&origin), now_ms) {
                    return Err(NoteRefused::UnknownOrigin);
                }
                // Another witness of that origin cosigned this: a cross-check.
                let all = self.members_for(&origin, members);
                self.witness.checkpoint(now_ms, c.checkpoint, &all)
            }
            WitnessNote::Offer(cp) => {
                let origin = cp.checkpoint.origin;
                if !self.known_origin(&origin, members.contains_key(&origin), now_ms) {
                    return Err(NoteRefused::UnknownOrigin);
                }
                let all = self.members_for(&origin, members);
                self.witness.offered(now_ms, from, cp, &all)
            }
            _ => return Err(NoteRefused::NotTheirs),
        };
        Ok(self.carry(outs, now_ms, members))
    }

    /// The answer to a [`Effect::Fetch`]: a page of the origin's log (or of a holder's
    /// replica), checked and kept; or, when it is not a page that checks, the fetch counted
    /// as failed and why returned.
    pub fn fetched(
        &mut self,
        now_ms: u64,
        origin: PublicKey,
        holder: Option<PublicKey>,
        answer: Response,
        members: &Members,
    ) -> Result<Vec<Effect>, FetchFailed> {
        let outs = match answer {
            Response::Page { base, end, leaves } if holder.is_none() => {
                let leaves = leaves.into_iter().map(|b| b.into_vec()).collect();
                self.witness.page(now_ms, origin, base, end, leaves)
            }
            Response::ReplicaPage { end, leaves } if end.checkpoint.origin == origin => {
                let leaves = leaves.into_iter().map(|b| b.into_vec()).collect();
                self.witness
                    .adopt(now_ms, holder.unwrap_or(origin), end, leaves)
            }
            _ => {
                self.witness.fetch_failed(&origin);
                return Err(FetchFailed::NotAPage);
            }
        };
        match outs {
            Ok(outs) => Ok(self.carry(outs, now_ms, members)),
            Err(e) => {
                self.witness.fetch_failed(&origin);
                Err(FetchFailed::Refused(e))
            }
        }
    }

    /// A fetch got no answer.
    pub fn fetch_failed(&mut self, origin: &PublicKey) {
        self.witness.fetch_failed(origin);
    }

    /// The router wrote `origin`'s replica up to `size` entries: checkpoints that waited
    /// for those entries to be on disk are cosigned.
    pub fn persisted(
        &mut self,
        now_ms: u64,
        origin: &PublicKey,
        size: u64,
        members: &Members,
    ) -> Vec<Effect> {
        let outs = self.witness.persisted(origin, size);
        self.carry(outs, now_ms, members)
    }

    /// The router could not write `origin`'s replica: nothing past its disk is cosigned.
    pub fn persist_failed(&mut self, origin: &PublicKey) {
        self.witness.persist_failed(origin);
    }

    /// An equivocation proof gossiped by a member: taken only about a known origin;
    /// `Some(new)` when it verified (`new`: first proof against that origin, to log), `None`
    /// when it is refused or ignored.
    pub fn equivocation(
        &mut self,
        now_ms: u64,
        proof: EquivocationProof,
        members: &Members,
    ) -> Option<bool> {
        let origin = proof.smaller.checkpoint.origin;
        if !self.known_origin(&origin, members.contains_key(&origin), now_ms) {
            return None;
        }
        Some(self.witness.equivocation(proof))
    }

    /// The witness's outputs as effects: fetches addressed, cosignatures signed and sent to
    /// the origin and the origin's other witnesses (the cross-check that catches a split
    /// view).
    fn carry(&mut self, outs: Vec<WitnessOutput>, now_ms: u64, members: &Members) -> Vec<Effect> {
        let mut effects = Vec::with_capacity(outs.len());
        for o in outs {
            match o {
                WitnessOutput::Fetch { origin, from } => effects.push(Effect::Fetch {
                    to: origin,
                    origin,
                    holder: None,
                    request: Request::Entries { from },
                }),
                WitnessOutput::FetchReplica {
                    origin,
                    from,
                    holder,
                } => effects.push(Effect::Fetch {
                    to: holder,
                    origin,
                    holder: Some(holder),
                    request: Request::ReplicaEntries { origin, from },
                }),
                WitnessOutput::Persist {
                    origin,
                    leaves,
                    checkpoint,
                } => effects.push(Effect::Persist {
                    origin,
                    leaves,
                    checkpoint,
                }),
                WitnessOutput::Cosign(cp) => {
                    let Ok(cosignature) = Cosignature::sign(&self.key, &cp, now_ms) else {
                        continue;
                    };
                    let origin = cp.checkpoint.origin;
                    let me = self.me;
                    let set = self.co_set(origin, members);
                    let to: Vec<PublicKey> = std::iter::once(origin)
                        .chain(set.current().copied().filter(|w| *w != me))
                        .collect();
                    let msg = Cosigned {
                        checkpoint: cp,
                        cosignature,
                    };
                    for w in to {
                        effects.push(Effect::Note {
                            to: w,
                            note: WitnessNote::Cosigned(msg.clone()),
                        });
                    }
                }
                WitnessOutput::Equivocation(p) => effects.push(Effect::Equivocation(p)),
            }
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::core::{Load, Member};
    use slicefed_ledger::checkpoint::Checkpoint;
    use slicefed_trust::fixtures::key;
    use slicefed_trust::names::Name;

    fn members(n: std::ops::Range<u8>) -> Members {
        let mut m = Members::default();
        for i in n {
            m.insert(
                key(i).public(),
                Member::for_tests(
                    Name::parse(&format!("princeton.n{i}")).unwrap(),
                    Name::parse("princeton").unwrap(),
                    Load::default(),
                ),
            );
        }
        m
    }

    /// Whom the notes of one kind among `effects` go to, in order.
    fn notes_to(effects: &[Effect], kind: impl Fn(&WitnessNote) -> bool) -> Vec<PublicKey> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Note { to, note } if kind(note) => Some(*to),
                _ => None,
            })
            .collect()
    }

    fn cp(origin: u8, size: u64) -> SignedCheckpoint {
        Checkpoint {
            origin: key(origin).public(),
            size,
            root: [size as u8; 32],
            time_ms: 1,
        }
        .sign(&key(origin))
        .unwrap()
    }

    #[test]
    fn a_checkpoint_goes_to_the_witnesses_when_the_log_grows_and_again_later() {
        let mut w = Witnessing::new(key(1), 3, 1_000, 1);
        let others = members(2..8);
        for m in others.keys() {
            w.joined(m);
        }
        if w.needs_rebuild() {
            w.rebuild(&others);
        }
        let mine: Vec<PublicKey> = w.my_witnesses().copied().collect();
        assert_eq!(mine.len(), 3);
        let sent = |e: &[Effect]| notes_to(e, |n| matches!(n, WitnessNote::Checkpoint(_)));
        // Due when the log grew: the router signs, and it goes to the witnesses.
        let due = |e: &[Effect]| e.contains(&Effect::SignCheckpoint);
        assert!(due(&w.tick(1_000, 5, &others)));
        assert_eq!(sent(&w.signed(1_000, &cp(1, 5))), mine);
        // Nothing new: not due, until the resend period has passed.
        assert!(!due(&w.tick(2_000, 5, &others)));
        assert!(due(&w.tick(
            1_000 + CHECKPOINT_RESEND_TICKS * 1_000,
            5,
            &others
        )));
        // Another node's checkpoint is not sent as this node's.
        assert!(w.signed(3_000, &cp(2, 9)).is_empty());
        // Unanswered, the router is not asked again (a slow disk collects no queue of
        // requests), until the resend period has passed.
        let asked = 1_000 + CHECKPOINT_RESEND_TICKS * 1_000;
        assert!(!due(&w.tick(asked + 1_000, 9, &others)));
        assert!(due(&w.tick(
            asked + CHECKPOINT_RESEND_TICKS * 1_000,
            9,
            &others
        )));
    }

    #[test]
    fn when_a_co_witness_of_a_departed_origins_log_leaves_its_replacement_gets_it_within_minutes() {
        use slicefed_ledger::merkle::Tree;
        let tick = 30_000;
        let all: Vec<PublicKey> = (1..=12u8).map(|i| key(i).public()).collect();
        let origin = key(1).public();
        let first = crate::witness::witnesses_of(&origin, &all, 3);
        let me = (2..=12u8).find(|i| key(*i).public() == first[0]).unwrap();
        let gone = first[1];
        let mut w = Witnessing::new(key(me), 3, tick, 1);
        let mut tree = Tree::new();
        for i in 0..5u8 {
            tree.push([i; 32]);
        }
        let cp = Checkpoint {
            origin,
            size: 5,
            root: tree.root_at(5).unwrap(),
            time_ms: 1,
        }
        .sign(&key(1))
        .unwrap();
        w.witness_mut().restore(origin, tree, Some(cp.clone()), 0);
        // The origin left long ago; this node sees the others. It holds the log from its
        // disk (a restart) and has cosigned nothing since: its first tick sets the log's
        // witnesses to follow.
        let mut others = members(2..13);
        others.remove(&first[0]);
        for m in others.keys() {
            w.joined(m);
        }
        let offered = |e: &[Effect]| notes_to(e, |n| matches!(n, WitnessNote::Offer(_)));
        let t0 = tick;
        // The periodic pass is half an hour away.
        assert!(offered(&w.tick(t0, 0, &others)).is_empty());
        // A co-witness of the log leaves: its replacement gets the log a minute later, and
        // again four minutes later (for members slow to drop it), not half an hour later.
        let left_at = t0 + 10_000;
        w.left(&gone, left_at);
        others.remove(&gone);
        let mut now_all: Vec<PublicKey> = others.keys().copied().collect();
        now_all.push(first[0]);
        let replacement = crate::witness::witnesses_of(&origin, &now_all, 3)
            .into_iter()
            .find(|k| !first.contains(k))
            .unwrap();
        assert!(offered(&w.tick(left_at + 30_000, 0, &others)).is_empty());
        assert!(offered(&w.tick(left_at + 60_000, 0, &others)).contains(&replacement));
        assert!(offered(&w.tick(left_at + 120_000, 0, &others)).is_empty());
        assert!(offered(&w.tick(left_at + 240_000, 0, &others)).contains(&replacement));
        // A member that held none of this node's departed logs schedules nothing.
        let bystander = others
            .keys()
            .copied()
            .find(|k| !now_all.iter().take(0).any(|x| x == k) && *k != replacement)
            .filter(|k| !crate::witness::witnesses_of(&origin, &now_all, 3).contains(k))
            .unwrap();
        w.left(&bystander, left_at + 300_000);
        others.remove(&bystander);
        for t in [360_000, 390_000, 550_000] {
            assert!(
                offered(&w.tick(left_at + t, 0, &others)).is_empty(),
                "at {t}"
            );
        }
        // A co-witness that leaves and comes back at every tick (a hostile member, or a
        // flapping one) gets this node to offer the log once a minute at most, and still
        // repaired.
        let start = left_at + 600_000;
        let mut passes = vec![];
        for i in 0..20u64 {
            let t = start + i * tick;
            w.left(&replacement, t);
            let back = others.remove(&replacement).unwrap();
            if !offered(&w.tick(t + 1, 0, &others)).is_empty() {
                passes.push(t);
            }
            w.joined(&replacement);
            others.insert(replacement, back);
        }
        assert!(!passes.is_empty(), "repaired");
        assert!(
            passes.windows(2).all(|p| p[1] - p[0] >= REPAIR_MIN_GAP_MS),
            "{passes:?}"
        );
    }

    #[test]
    fn notes_are_taken_only_from_members_and_about_known_logs() {
        let mut w = Witnessing::new(key(1), 3, 1_000, 1);
        let m = members(2..5);
        let made_up = cp(99, 1_000);
        assert_eq!(
            w.note(0, key(9).public(), WitnessNote::Offer(made_up.clone()), &m),
            Err(NoteRefused::NotMember)
        );
        assert_eq!(
            w.note(0, key(2).public(), WitnessNote::Offer(made_up), &m),
            Err(NoteRefused::UnknownOrigin)
        );
        // A checkpoint is taken from its origin only.
        assert_eq!(
            w.note(0, key(2).public(), WitnessNote::Checkpoint(cp(3, 4)), &m),
            Err(NoteRefused::NotTheirs)
        );
        // A member that left stays known for a day (its log may be handed over).
        w.left(&key(4).public(), 10);
        assert!(w.known_origin(&key(4).public(), false, 10 + DEPARTED_KEPT_MS));
        assert!(!w.known_origin(&key(4).public(), false, 11 + DEPARTED_KEPT_MS));
    }

    #[test]
    fn a_cosignature_goes_to_the_origin_and_its_other_witnesses() {
        let all: Vec<PublicKey> = (1..9u8).map(|i| key(i).public()).collect();
        let origin = key(1).public();
        let ws = crate::witness::witnesses_of(&origin, &all, 3);
        let me_pk = ws[0];
        let me = (1..9u8).find(|i| key(*i).public() == me_pk).unwrap();
        let mut others = members(1..9);
        others.remove(&me_pk);
        let mut w = Witnessing::new(key(me), 3, 1_000, 1);
        for m in others.keys() {
            w.joined(m);
        }
        let outs = w.carry(vec![WitnessOutput::Cosign(cp(1, 3))], 5, &others);
        let to: Vec<PublicKey> = outs
            .iter()
            .filter_map(|e| match e {
                Effect::Note {
                    to,
                    note: WitnessNote::Cosigned(c),
                } => {
                    assert!(c.cosignature.verify(&c.checkpoint).is_ok());
                    Some(*to)
                }
                _ => None,
            })
            .collect();
        let mut want = vec![origin];
        want.extend(ws.iter().copied().filter(|w| *w != me_pk));
        assert_eq!(to, want);
    }
}
