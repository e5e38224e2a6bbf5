//! Witnessing as a sans-IO state machine: which logs this node replicates, fetching their
//! entries page by page, checking every page against its origin's signed checkpoints,
//! cosigning what verified, and turning two inconsistent checkpoints into a portable
//! [`EquivocationProof`].
//!
//! Invariants:
//! - No IO, no clock: every call takes `now_ms`; what to fetch, persist, gossip or cosign is
//!   returned as [`WitnessOutput`]s.
//! - A replica only ever holds entries that verified: each page is chained (index and
//!   previous-leaf hash), decoded canonically, and its root must equal the origin's signed
//!   checkpoint at the page's end; a page that fails is rolled back whole.
//! - Assignment is rendezvous hashing of (origin, witness) over the current members, so
//!   every node computes the same `k` witnesses per origin without talking, coverage is
//!   even, and a membership change moves only the assignments it must.
//! - Two signed checkpoints of one origin at the same size with different roots are an
//!   equivocation; every page answer carries signed checkpoints at both of its ends, so an
//!   origin that forks its history contradicts itself at a size the witness already holds.
//! - Bounded: checkpoints remembered per origin, origins tracked, page sizes.

use sha2::{Digest, Sha256};
use slicefed_ledger::checkpoint::{EquivocationProof, SignedCheckpoint};
use slicefed_ledger::entry::Entry;
use slicefed_ledger::merkle::{self, Hash, Tree};
use slicefed_trust::PublicKey;
use std::collections::BTreeMap;

/// Witnesses per origin.
pub const DEFAULT_WITNESSES: usize = 3;
/// Signed checkpoints remembered per origin (for spotting conflicts).
pub const MAX_SEEN_PER_ORIGIN: usize = 64;
/// Origins whose checkpoints are remembered.
pub const MAX_ORIGINS: usize = 4096;
/// A fetch not answered in this long is retried.
pub const FETCH_TIMEOUT_MS: u64 = 10_000;
/// Default bytes of one origin's log a witness keeps (the owner may set another).
pub const DEFAULT_REPLICA_QUOTA: u64 = 1 << 30;
/// Default bytes of all replicas a witness keeps.
pub const DEFAULT_REPLICAS_QUOTA: u64 = 16 << 30;

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WitnessOutput {
    /// Ask `origin` for its entries from `from` on (it answers with a page and signed
    /// checkpoints at both ends).
    Fetch {
        /// Whose log.
        origin: PublicKey,
        /// First entry wanted.
        from: u64,
    },
    /// Append these verified leaves and the checkpoint that covers them to the replica of
    /// `origin` (the replica file is an export file, so auditors can replay it).
    Persist {
        /// Whose log.
        origin: PublicKey,
        /// Leaf bytes, in order.
        leaves: Vec<Vec<u8>>,
        /// The origin's checkpoint at the end of the page.
        checkpoint: SignedCheckpoint,
    },
    /// This node verified `checkpoint` against its replica: cosign it and tell others.
    Cosign(SignedCheckpoint),
    /// `origin` signed two inconsistent histories: gossip the proof, mark the origin.
    Equivocation(EquivocationProof),
    /// Ask `holder` (another witness, the origin being gone) for its replica of `origin`
    /// from entry `from` on; hand the answer to [`Witness::adopt`].
    FetchReplica {
        /// Whose log.
        origin: PublicKey,
        /// First entry wanted.
        from: u64,
        /// Who offered it.
        holder: PublicKey,
    },
}

/// Why a page was refused (the origin is asked again later; nothing is kept).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// This node does not witness that origin.
    #[error("not a witness of {0}")]
    NotWitness(String),
    /// The page does not start where the replica ends.
    #[error("page starts at {got}, the replica holds {want} entries")]
    WrongStart {
        /// Replica size.
        want: u64,
        /// Page start.
        got: u64,
    },
    /// Keeping the page would pass this node's replica quota (per origin or in all): it
    /// stops replicating that origin (other witnesses hold it).
    #[error(
        "replica quota: {origin} holds {held} bytes here, a page of {page} more passes the {quota}-byte quota"
    )]
    Quota {
        /// Whose log.
        origin: String,
        /// Bytes held (of that origin, or of all, whichever quota is passed).
        held: u64,
        /// The page's bytes.
        page: u64,
        /// The quota passed.
        quota: u64,
    },
    /// The page is not what its checkpoints commit to.
    #[error("bad page from {origin} at entry {seq}: {why}")]
    BadPage {
        /// Whose log.
        origin: String,
        /// The first bad entry.
        seq: u64,
        /// What is wrong.
        why: String,
    },
}

#[derive(Clone, Debug, Default)]
struct Replica {
    tree: Tree,
    /// Leaf hash of the last entry held (zeros when empty).
    last_leaf: Hash,
    /// The origin's checkpoint at exactly the replica's size, once it has one.
    verified: Option<SignedCheckpoint>,
    /// The largest checkpoint seen that the replica has not reached yet.
    target: Option<SignedCheckpoint>,
    /// When the outstanding fetch was sent.
    fetching_since: Option<u64>,
    /// Largest size cosigned.
    cosigned: u64,
    /// Entries the driver reported on disk ([`Witness::persisted`]): nothing past this is
    /// cosigned, so a witness never vouches for entries it could lose in a crash.
    durable: u64,
    /// A checkpoint that matches the replica but lies past `durable`: cosigned once the
    /// entries under it are on disk.
    to_cosign: Option<SignedCheckpoint>,
    /// Bytes of leaves held.
    bytes: u64,
    /// Over quota: no more pages are fetched or taken.
    full: bool,
}

/// A node's witnessing state.
pub struct Witness {
    me: PublicKey,
    k: usize,
    replicas: BTreeMap<PublicKey, Replica>,
    seen: BTreeMap<PublicKey, BTreeMap<u64, SignedCheckpoint>>,
    offenders: BTreeMap<PublicKey, EquivocationProof>,
    /// Bytes one origin's replica may hold, and all replicas together.
    quota: u64,
    total_quota: u64,
    /// Bytes of all replicas.
    total_bytes: u64,
}

fn score(origin: &PublicKey, witness: &PublicKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"slicefed/witness-assignment\0");
    h.update(origin.0);
    h.update(witness.0);
    h.finalize().into()
}

/// The `k` witnesses of `origin` among `members` (the origin never witnesses itself).
pub fn witnesses_of(origin: &PublicKey, members: &[PublicKey], k: usize) -> Vec<PublicKey> {
    let mut ranked: Vec<([u8; 32], PublicKey)> = members
        .iter()
        .filter(|m| *m != origin)
        .map(|m| (score(origin, m), *m))
        .collect();
    ranked.sort_unstable();
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().take(k).map(|(_, m)| m).collect()
}

/// Candidates kept beyond `k` in a [`WitnessSet`], so that a few departures need no
/// rescoring of every member.
pub const WITNESS_SET_SLACK: usize = 8;

/// The witnesses of one origin ([`witnesses_of`]) kept up to date as members come and go,
/// without scoring every member again: it keeps the best `k + WITNESS_SET_SLACK`
/// candidates; a join costs one hash, a departure a removal, and only when more than the
/// slack of the best candidates have left does the driver rebuild it from all members. An
/// origin uses one to know where to send its checkpoints; a witness uses one per origin it
/// replicates, to tell the other witnesses what it cosigned.
#[derive(Clone, Debug)]
pub struct WitnessSet {
    origin: PublicKey,
    k: usize,
    /// Best first, without the origin.
    candidates: Vec<([u8; 32], PublicKey)>,
    /// The best score among members left out of `candidates`: every candidate is better,
    /// so the best `k` candidates are the best `k` members. `None` while nobody is left out.
    floor: Option<([u8; 32], PublicKey)>,
    /// Fewer than `k` candidates remain while members were left out: only a rebuild knows.
    stale: bool,
}

impl WitnessSet {
    /// The set of `origin`'s `k` witnesses among `members` (the origin is never one).
    pub fn new(origin: PublicKey, k: usize, members: &[PublicKey]) -> WitnessSet {
        let mut ranked: Vec<([u8; 32], PublicKey)> = members
            .iter()
            .filter(|m| **m != origin)
            .map(|m| (score(&origin, m), *m))
            .collect();
        ranked.sort_unstable();
        ranked.dedup_by(|a, b| a.1 == b.1);
        let k = k.max(1);
        let floor = ranked.get(k + WITNESS_SET_SLACK).copied();
        ranked.truncate(k + WITNESS_SET_SLACK);
        // Truncating keeps the capacity of all members: without this every set a node
        // keeps (one per origin it witnesses) would hold room for the whole federation.
        ranked.shrink_to_fit();
        WitnessSet {
            origin,
            k,
            candidates: ranked,
            floor,
            stale: false,
        }
    }

    /// Whose witnesses these are.
    pub fn origin(&self) -> &PublicKey {
        &self.origin
    }

    /// The current witnesses, best first.
    pub fn current(&self) -> impl Iterator<Item = &PublicKey> {
        self.candidates.iter().take(self.k).map(|(_, m)| m)
    }

    /// Whether `m` is a current witness.
    pub fn contains(&self, m: &PublicKey) -> bool {
        self.current().any(|x| x == m)
    }

    /// A member joined. Returns whether the current witnesses changed.
    pub fn joined(&mut self, m: &PublicKey) -> bool {
        if *m == self.origin || self.candidates.iter().any(|(_, x)| x == m) {
            return false;
        }
        let s = (score(&self.origin, m), *m);
        if self.floor.is_some_and(|f| s > f) {
            // Worse than someone already left out: it stays out too.
            return false;
        }
        let pos = self.candidates.partition_point(|c| *c < s);
        self.candidates.insert(pos, s);
        if self.candidates.len() > self.k + WITNESS_SET_SLACK
            && let Some(out) = self.candidates.pop()
        {
            self.floor = Some(self.floor.map_or(out, |f| f.min(out)));
        }
        pos < self.k
    }

    /// A member left. Returns whether the current witnesses changed.
    pub fn left(&mut self, m: &PublicKey) -> bool {
        // If `m` was the best of those left out, the floor stays at its score: everyone
        // still left out scores at least that, so the candidates remain the best.
        let Some(pos) = self.candidates.iter().position(|(_, x)| x == m) else {
            return false;
        };
        self.candidates.remove(pos);
        if self.candidates.len() < self.k && self.floor.is_some() {
            self.stale = true;
        }
        pos < self.k
    }

    /// Whether it must be rebuilt from all members ([`WitnessSet::new`]) to be exact.
    pub fn needs_rebuild(&self) -> bool {
        self.stale
    }
}

impl Witness {
    /// A witness for node `me`, replicating each origin assigned to it among `k`.
    pub fn new(me: PublicKey, k: usize) -> Witness {
        Witness {
            me,
            k: k.max(1),
            replicas: BTreeMap::new(),
            seen: BTreeMap::new(),
            offenders: BTreeMap::new(),
            quota: DEFAULT_REPLICA_QUOTA,
            total_quota: DEFAULT_REPLICAS_QUOTA,
            total_bytes: 0,
        }
    }

    /// Sets the replica quotas: bytes of one origin's log, and of all replicas.
    pub fn set_quotas(&mut self, per_origin: u64, total: u64) {
        self.quota = per_origin;
        self.total_quota = total;
    }

    /// Refuses a page of `page` bytes for `origin` that would pass a quota, and stops
    /// replicating that origin.
    fn within_quota(&mut self, origin: &PublicKey, page: u64) -> Result<(), WitnessError> {
        let (quota, total_quota, total) = (self.quota, self.total_quota, self.total_bytes);
        let Some(r) = self.replicas.get_mut(origin) else {
            return Ok(());
        };
        let over = if r.bytes.saturating_add(page) > quota {
            Some((r.bytes, quota))
        } else if total.saturating_add(page) > total_quota {
            Some((total, total_quota))
        } else {
            None
        };
        match over {
            None => Ok(()),
            Some((held, quota)) => {
                r.full = true;
                r.target = None;
                r.fetching_since = None;
                Err(WitnessError::Quota {
                    origin: origin.peer_id(),
                    held,
                    page,
                    quota,
                })
            }
        }
    }

    /// Restores a replica read back from disk (already replayed and verified by the
    /// driver): its tree, last leaf and latest checkpoint.
    pub fn restore(
        &mut self,
        origin: PublicKey,
        tree: Tree,
        latest: Option<SignedCheckpoint>,
        bytes: u64,
    ) {
        let last_leaf = match tree.len().checked_sub(1) {
            Some(i) => tree.leaf(i).unwrap_or([0; 32]),
            None => [0; 32],
        };
        let tree_len = tree.len();
        let verified = latest.filter(|c| c.checkpoint.size == tree_len);
        let cosigned = verified.as_ref().map_or(0, |c| c.checkpoint.size);
        self.replicas.insert(
            origin,
            Replica {
                tree,
                last_leaf,
                verified,
                target: None,
                fetching_since: None,
                cosigned,
                durable: tree_len,
                to_cosign: None,
                bytes,
                full: false,
            },
        );
        self.total_bytes = self.total_bytes.saturating_add(bytes);
    }

    /// The driver wrote `origin`'s replica up to `size` entries to disk: a checkpoint that
    /// waited for them is cosigned now.
    pub fn persisted(&mut self, origin: &PublicKey, size: u64) -> Vec<WitnessOutput> {
        let Some(r) = self.replicas.get_mut(origin) else {
            return vec![];
        };
        r.durable = r.durable.max(size.min(r.tree.len()));
        match r.to_cosign.take() {
            Some(cp) if cp.checkpoint.size <= r.durable => {
                if cp.checkpoint.size > r.cosigned {
                    r.cosigned = cp.checkpoint.size;
                    vec![WitnessOutput::Cosign(cp)]
                } else {
                    vec![]
                }
            }
            waiting => {
                r.to_cosign = waiting;
                vec![]
            }
        }
    }

    /// The driver could not write `origin`'s replica: what is in memory past the disk is
    /// never cosigned, and no more of it is taken (the file is the truth; a restart reads
    /// it back).
    pub fn persist_failed(&mut self, origin: &PublicKey) {
        if let Some(r) = self.replicas.get_mut(origin) {
            r.full = true;
            r.to_cosign = None;
        }
    }

    /// Hands back every replica (its tree and the origin's checkpoint at its size), as a
    /// node that stops leaves them on disk; [`Witness::restore`] takes them back.
    pub fn into_replicas(self) -> Vec<(PublicKey, Tree, Option<SignedCheckpoint>)> {
        self.replicas
            .into_iter()
            .map(|(k, r)| (k, r.tree, r.verified))
            .collect()
    }

    /// The origin's signed checkpoint at exactly the size of this node's replica.
    pub fn verified(&self, origin: &PublicKey) -> Option<&SignedCheckpoint> {
        self.replicas.get(origin)?.verified.as_ref()
    }

    /// The origin's checkpoint this node can vouch for to an auditor: its replica's own,
    /// once every entry under it is on disk (a witness never vouches for entries it could
    /// lose in a crash).
    pub fn vouchable(&self, origin: &PublicKey) -> Option<&SignedCheckpoint> {
        let r = self.replicas.get(origin)?;
        r.verified
            .as_ref()
            .filter(|c| c.checkpoint.size <= r.durable)
    }

    /// Repair after an origin is gone: for each replica whose origin is no longer among
    /// `members`, the nodes that now witness it (rendezvous over the members and this node,
    /// so everyone agrees) other than this one, each with the checkpoint this node can vouch
    /// for. The driver offers the replica to each ([`Witness::offered`]); one that holds
    /// less fetches the rest from this node. Without this, a log whose origin died is lost
    /// once its last witnesses die too, however slowly they go.
    pub fn handovers(&self, members: &[PublicKey]) -> Vec<(PublicKey, SignedCheckpoint)> {
        let mut all = members.to_vec();
        all.push(self.me);
        let live: std::collections::BTreeSet<&PublicKey> = members.iter().collect();
        let mut out = vec![];
        for (origin, r) in &self.replicas {
            if live.contains(origin) || self.offenders.contains_key(origin) {
                continue;
            }
            let Some(cp) = &r.verified else { continue };
            for w in witnesses_of(origin, &all, self.k) {
                if w != self.me {
                    out.push((w, cp.clone()));
                }
            }
        }
        out
    }

    /// `holder` offers its replica of an origin up to `cp` (signed by the origin). If this
    /// node witnesses that origin among `members` and holds less, it asks `holder` for the
    /// rest.
    pub fn offered(
        &mut self,
        now_ms: u64,
        holder: PublicKey,
        cp: SignedCheckpoint,
        members: &[PublicKey],
    ) -> Vec<WitnessOutput> {
        if let Some(p) = self.observe(&cp) {
            return vec![WitnessOutput::Equivocation(p)];
        }
        let origin = cp.checkpoint.origin;
        if origin == self.me || holder == self.me || self.offenders.contains_key(&origin) {
            return vec![];
        }
        if !self.replicas.contains_key(&origin) {
            if !self.assigned(&origin, members) || self.replicas.len() >= MAX_ORIGINS {
                return vec![];
            }
            self.replicas.insert(origin, Replica::default());
        }
        let Some(r) = self.replicas.get_mut(&origin) else {
            return vec![];
        };
        let held = r.tree.len();
        if cp.checkpoint.size <= held || r.full {
            return vec![];
        }
        let stale = r
            .fetching_since
            .is_none_or(|t| now_ms.saturating_sub(t) > FETCH_TIMEOUT_MS);
        if r.target
            .as_ref()
            .is_none_or(|t| t.checkpoint.size < cp.checkpoint.size)
        {
            r.target = Some(cp);
        }
        if !stale {
            return vec![];
        }
        r.fetching_since = Some(now_ms);
        vec![WitnessOutput::FetchReplica {
            origin,
            from: held,
            holder,
        }]
    }

    /// Entries of `origin` from `holder` (another witness, not the origin): checked like a
    /// page (chained, canonical) against the origin's own signature on `end`; the replica's
    /// verified tree stands in for the page's base checkpoint.
    pub fn adopt(
        &mut self,
        now_ms: u64,
        holder: PublicKey,
        end: SignedCheckpoint,
        leaves: Vec<Vec<u8>>,
    ) -> Result<Vec<WitnessOutput>, WitnessError> {
        let origin = end.checkpoint.origin;
        if let Some(p) = self.observe(&end) {
            return Ok(vec![WitnessOutput::Equivocation(p)]);
        }
        let r = self
            .replicas
            .get_mut(&origin)
            .ok_or_else(|| WitnessError::NotWitness(origin.peer_id()))?;
        r.fetching_since = None;
        let held = r.tree.len();
        let page: u64 = leaves.iter().map(|l| l.len() as u64).sum();
        self.within_quota(&origin, page)?;
        let r = self
            .replicas
            .get_mut(&origin)
            .ok_or_else(|| WitnessError::NotWitness(origin.peer_id()))?;
        extend(r, &origin, held, &leaves, &end)?;
        r.bytes = r.bytes.saturating_add(page);
        self.total_bytes = self.total_bytes.saturating_add(page);
        let Some(r) = self.replicas.get_mut(&origin) else {
            return Ok(vec![]);
        };
        let mut out = vec![WitnessOutput::Persist {
            origin,
            leaves,
            checkpoint: end.clone(),
        }];
        if let Some(t) = r.target.clone() {
            if t.checkpoint.size > end.checkpoint.size {
                r.fetching_since = Some(now_ms);
                out.push(WitnessOutput::FetchReplica {
                    origin,
                    from: end.checkpoint.size,
                    holder,
                });
            } else {
                r.target = None;
            }
        }
        Ok(out)
    }

    /// Origins shown to have equivocated, with their proofs.
    pub fn offenders(&self) -> &BTreeMap<PublicKey, EquivocationProof> {
        &self.offenders
    }

    /// Entries held for `origin`.
    pub fn replica_size(&self, origin: &PublicKey) -> Option<u64> {
        self.replicas.get(origin).map(|r| r.tree.len())
    }

    /// Origins this node holds a replica of.
    pub fn replicas(&self) -> impl Iterator<Item = (&PublicKey, u64)> {
        self.replicas.iter().map(|(k, r)| (k, r.tree.len()))
    }

    /// Whether this node is among `origin`'s witnesses, given the members it knows (not
    /// counting itself).
    ///
    /// The same answer as `witnesses_of(origin, members + me, k).contains(me)` for
    /// distinct `members` (keys of a member table), without ranking them all: this node is
    /// assigned unless `k` members rank before it, and scanning stops at the `k`-th. A
    /// node ranked `r`-th among `N` finds `k` better ones after about `k·N/r` hashes, so
    /// a checkpoint from an origin it does not witness costs a few dozen hashes at 10,000
    /// members rather than 10,000 hashes, two copies and a sort (what it was: a Sybil
    /// member, or views that differ while a federation forms, sent it such notes often).
    pub fn assigned(&self, origin: &PublicKey, members: &[PublicKey]) -> bool {
        if *origin == self.me || self.k == 0 {
            return false;
        }
        let mine = (score(origin, &self.me), self.me);
        let mut better = 0;
        for m in members {
            if m == origin || *m == self.me {
                continue;
            }
            if (score(origin, m), *m) < mine {
                better += 1;
                if better >= self.k {
                    return false;
                }
            }
        }
        true
    }

    /// Remembers a checkpoint; if it contradicts one already seen, returns the proof.
    fn observe(&mut self, cp: &SignedCheckpoint) -> Option<EquivocationProof> {
        let origin = cp.checkpoint.origin;
        if !self.seen.contains_key(&origin) && self.seen.len() >= MAX_ORIGINS {
            // Full: forget an origin this node holds no replica of (a newcomer must not go
            // unwatched because others filled the table first).
            let victim = self
                .seen
                .keys()
                .find(|o| !self.replicas.contains_key(*o))
                .copied();
            match victim {
                Some(v) => {
                    self.seen.remove(&v);
                }
                None => return None,
            }
        }
        let seen = self.seen.entry(origin).or_default();
        match seen.get(&cp.checkpoint.size) {
            Some(old) if old.checkpoint.root != cp.checkpoint.root => {
                let proof = EquivocationProof::build(old.clone(), cp.clone(), &Tree::new()).ok()?;
                self.offenders.insert(origin, proof.clone());
                Some(proof)
            }
            Some(_) => None,
            None => {
                seen.insert(cp.checkpoint.size, cp.clone());
                while seen.len() > MAX_SEEN_PER_ORIGIN {
                    seen.pop_first();
                }
                None
            }
        }
    }

    /// A proof received from someone else: verified, then the origin is marked.
    pub fn equivocation(&mut self, proof: EquivocationProof) -> bool {
        if proof.verify().is_err() {
            return false;
        }
        let origin = proof.smaller.checkpoint.origin;
        let new = !self.offenders.contains_key(&origin);
        if new && self.offenders.len() >= MAX_ORIGINS {
            return false;
        }
        self.offenders.entry(origin).or_insert(proof);
        new
    }

    /// A checkpoint of its origin (signature already checked by decoding), from the origin
    /// or from another witness. `members` (without this node) is consulted only for an
    /// origin this node holds no replica of yet, to decide whether it is assigned; a driver
    /// may pass an empty slice when [`Witness::replica_size`] says it holds one.
    pub fn checkpoint(
        &mut self,
        now_ms: u64,
        cp: SignedCheckpoint,
        members: &[PublicKey],
    ) -> Vec<WitnessOutput> {
        let mut out = vec![];
        if let Some(p) = self.observe(&cp) {
            out.push(WitnessOutput::Equivocation(p));
            return out;
        }
        let origin = cp.checkpoint.origin;
        if origin == self.me || self.offenders.contains_key(&origin) {
            return out;
        }
        if !self.replicas.contains_key(&origin) {
            if !self.assigned(&origin, members) || self.replicas.len() >= MAX_ORIGINS {
                return out;
            }
            self.replicas.insert(origin, Replica::default());
        }
        let Some(r) = self.replicas.get_mut(&origin) else {
            return out;
        };
        let size = cp.checkpoint.size;
        let held = r.tree.len();
        if size > held {
            if r.full {
                // Over quota: this node keeps what it holds and takes no more.
                return out;
            }
            if r.target.as_ref().is_none_or(|t| t.checkpoint.size < size) {
                r.target = Some(cp);
            }
            let stale = r
                .fetching_since
                .is_none_or(|t| now_ms.saturating_sub(t) > FETCH_TIMEOUT_MS);
            if stale {
                r.fetching_since = Some(now_ms);
                out.push(WitnessOutput::Fetch { origin, from: held });
            }
        } else if r.tree.root_at(size).ok() == Some(cp.checkpoint.root) {
            if size > r.cosigned && size <= r.durable {
                r.cosigned = size;
                out.push(WitnessOutput::Cosign(cp));
            } else if size > r.cosigned
                && r.to_cosign
                    .as_ref()
                    .is_none_or(|w| w.checkpoint.size < size)
            {
                // Held in memory, not yet on disk: vouched for once it is.
                r.to_cosign = Some(cp);
            }
        } else if let Some(v) = r.verified.clone() {
            // A checkpoint inside the history we hold that does not match it: the tree we
            // hold (verified against `v`) proves the contradiction.
            if let Ok(p) = EquivocationProof::build(cp, v, &r.tree) {
                self.offenders.insert(origin, p.clone());
                out.push(WitnessOutput::Equivocation(p));
            }
        }
        out
    }

    /// A fetch failed or timed out: allow the next checkpoint to ask again.
    pub fn fetch_failed(&mut self, origin: &PublicKey) {
        if let Some(r) = self.replicas.get_mut(origin) {
            r.fetching_since = None;
        }
    }

    /// A page of `origin`'s entries, with the origin's signed checkpoints at its start
    /// (`base`) and end (`end`), both already signature-checked by decoding.
    pub fn page(
        &mut self,
        now_ms: u64,
        origin: PublicKey,
        base: SignedCheckpoint,
        end: SignedCheckpoint,
        leaves: Vec<Vec<u8>>,
    ) -> Result<Vec<WitnessOutput>, WitnessError> {
        let mut out = vec![];
        let bad = |seq: u64, why: String| WitnessError::BadPage {
            origin: origin.peer_id(),
            seq,
            why,
        };
        if base.checkpoint.origin != origin || end.checkpoint.origin != origin {
            return Err(bad(0, "a checkpoint of another log".into()));
        }
        for cp in [&base, &end] {
            if let Some(p) = self.observe(cp) {
                out.push(WitnessOutput::Equivocation(p));
            }
        }
        if !out.is_empty() {
            if let Some(r) = self.replicas.get_mut(&origin) {
                r.fetching_since = None;
            }
            return Ok(out);
        }
        let r = self
            .replicas
            .get_mut(&origin)
            .ok_or_else(|| WitnessError::NotWitness(origin.peer_id()))?;
        r.fetching_since = None;
        let held = r.tree.len();
        if base.checkpoint.size != held {
            return Err(WitnessError::WrongStart {
                want: held,
                got: base.checkpoint.size,
            });
        }
        if base.checkpoint.root != r.tree.root() {
            // The origin's own signature says its history at `held` is not the one it
            // showed us before: equivocation, provable with the tree we hold.
            if let Some(v) = r.verified.clone()
                && let Ok(p) = EquivocationProof::build(base, v, &r.tree)
            {
                self.offenders.insert(origin, p.clone());
                return Ok(vec![WitnessOutput::Equivocation(p)]);
            }
            return Err(bad(
                held,
                "the page's base root differs from the replica".into(),
            ));
        }
        let page: u64 = leaves.iter().map(|l| l.len() as u64).sum();
        self.within_quota(&origin, page)?;
        let r = self
            .replicas
            .get_mut(&origin)
            .ok_or_else(|| WitnessError::NotWitness(origin.peer_id()))?;
        extend(r, &origin, held, &leaves, &end)?;
        r.bytes = r.bytes.saturating_add(page);
        self.total_bytes = self.total_bytes.saturating_add(page);
        let Some(r) = self.replicas.get_mut(&origin) else {
            return Ok(out);
        };
        let size = end.checkpoint.size;
        out.push(WitnessOutput::Persist {
            origin,
            leaves,
            checkpoint: end.clone(),
        });
        match r.target.clone() {
            Some(t) if t.checkpoint.size > size => {
                r.fetching_since = Some(now_ms);
                out.push(WitnessOutput::Fetch { origin, from: size });
            }
            Some(t) => {
                r.target = None;
                if r.tree.root_at(t.checkpoint.size).ok() == Some(t.checkpoint.root)
                    && t.checkpoint.size > r.cosigned
                {
                    r.cosigned = t.checkpoint.size;
                    out.push(WitnessOutput::Cosign(t));
                }
            }
            None => {}
        }
        if size > r.cosigned {
            r.cosigned = size;
            out.push(WitnessOutput::Cosign(end));
        }
        Ok(out)
    }
}

/// Appends `leaves` (starting at entry `held`) to a replica if they are chained, canonical
/// and hash to `end`'s root; otherwise rolls the replica back whole and says why.
fn extend(
    r: &mut Replica,
    origin: &PublicKey,
    held: u64,
    leaves: &[Vec<u8>],
    end: &SignedCheckpoint,
) -> Result<(), WitnessError> {
    let bad = |seq: u64, why: String| WitnessError::BadPage {
        origin: origin.peer_id(),
        seq,
        why,
    };
    if end.checkpoint.origin != *origin {
        return Err(bad(held, "a checkpoint of another log".into()));
    }
    if end.checkpoint.size != held.saturating_add(leaves.len() as u64) {
        return Err(bad(
            held,
            format!(
                "{} entries from {held} do not end at the checkpoint's size {}",
                leaves.len(),
                end.checkpoint.size
            ),
        ));
    }
    let mut prev = r.last_leaf;
    for (i, leaf) in leaves.iter().enumerate() {
        let seq = held + i as u64;
        let check = Entry::decode(leaf)
            .map_err(|e| e.to_string())
            .and_then(|e| {
                if e.seq != seq {
                    Err(format!("entry says index {}", e.seq))
                } else if e.prev != prev {
                    Err("its previous-leaf hash does not link".into())
                } else {
                    Ok(())
                }
            });
        if let Err(why) = check {
            r.tree.truncate(held);
            return Err(bad(seq, why));
        }
        let h = merkle::leaf_hash(leaf);
        r.tree.push(h);
        prev = h;
    }
    if r.tree.root() != end.checkpoint.root {
        r.tree.truncate(held);
        return Err(bad(
            held,
            "the entries do not hash to the origin's checkpoint".into(),
        ));
    }
    r.last_leaf = prev;
    r.verified = Some(end.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicefed_ledger::checkpoint::Checkpoint;
    use slicefed_ledger::entry::EntryBody;
    use slicefed_trust::SecretKey;
    use slicefed_trust::fixtures::key;

    /// An origin's history in memory: leaves and signed checkpoints at any size.
    struct History {
        key: SecretKey,
        leaves: Vec<Vec<u8>>,
        tree: Tree,
    }

    impl History {
        fn new(key: SecretKey) -> History {
            History {
                key,
                leaves: vec![],
                tree: Tree::new(),
            }
        }
        fn push(&mut self, text: &str) {
            let e = Entry {
                seq: self.leaves.len() as u64,
                prev: self.leaves.last().map_or([0; 32], |l| merkle::leaf_hash(l)),
                time_ms: 1,
                body: EntryBody::OwnerAction {
                    action: text.into(),
                    who: None,
                },
            };
            let leaf = e.encode().unwrap();
            self.tree.push(merkle::leaf_hash(&leaf));
            self.leaves.push(leaf);
        }
        fn cp(&self, size: u64) -> SignedCheckpoint {
            Checkpoint {
                origin: self.key.public(),
                size,
                root: self.tree.root_at(size).unwrap(),
                time_ms: 1,
            }
            .sign(&self.key)
            .unwrap()
        }
        fn page(&self, from: u64, to: u64) -> (SignedCheckpoint, SignedCheckpoint, Vec<Vec<u8>>) {
            (
                self.cp(from),
                self.cp(to),
                self.leaves[from as usize..to as usize].to_vec(),
            )
        }
    }

    fn members() -> Vec<PublicKey> {
        (1..=4).map(|i| key(i).public()).collect()
    }

    /// A witness of key(1)'s log.
    fn witness_of_1() -> Witness {
        let origin = key(1).public();
        let all = members();
        let w = witnesses_of(&origin, &all, 3);
        Witness::new(*w.first().unwrap(), 3)
    }

    proptest::proptest! {
        /// `assigned`'s early exit answers as ranking every member would.
        #[test]
        fn assigned_is_being_among_the_ranked_witnesses(
            members in proptest::collection::btree_set(0u8..=255, 0..40),
            origin in 0u8..=255,
            me in 0u8..=255,
            k in 1usize..5,
        ) {
            let members: Vec<PublicKey> = members.into_iter().map(|i| key(i).public()).collect();
            let (origin, me) = (key(origin).public(), key(me).public());
            let mut all = members.clone();
            all.push(me);
            let ranked = witnesses_of(&origin, &all, k).contains(&me);
            proptest::prop_assert_eq!(Witness::new(me, k).assigned(&origin, &members), ranked);
        }
    }

    #[test]
    fn assignment_is_even_and_excludes_the_origin() {
        let all: Vec<PublicKey> = (0..60).map(|i| key(i).public()).collect();
        let mut load = BTreeMap::<PublicKey, usize>::new();
        for o in &all {
            let w = witnesses_of(o, &all, 3);
            assert_eq!(w.len(), 3);
            assert!(!w.contains(o));
            for x in w {
                *load.entry(x).or_default() += 1;
            }
        }
        // 180 assignments over 60 nodes: nobody is left out or carries a crowd.
        assert!(load.values().all(|&n| n <= 9), "{load:?}");
        assert_eq!(load.values().sum::<usize>(), 180);
    }

    #[test]
    fn a_witness_fetches_verifies_persists_and_cosigns() {
        let mut h = History::new(key(1));
        for i in 0..10 {
            h.push(&format!("entry {i}"));
        }
        let mut w = witness_of_1();
        let origin = key(1).public();
        let out = w.checkpoint(0, h.cp(10), &members());
        assert_eq!(out, vec![WitnessOutput::Fetch { origin, from: 0 }]);
        // A page to 6, then the rest.
        let (b, e, l) = h.page(0, 6);
        let out = w.page(1, origin, b, e, l).unwrap();
        assert!(matches!(out[0], WitnessOutput::Persist { .. }));
        assert!(out.contains(&WitnessOutput::Fetch { origin, from: 6 }));
        let (b, e, l) = h.page(6, 10);
        let out = w.page(2, origin, b, e, l).unwrap();
        assert!(out.contains(&WitnessOutput::Cosign(h.cp(10))));
        assert_eq!(w.replica_size(&origin), Some(10));
        // The same checkpoint again is not cosigned twice.
        assert!(w.checkpoint(3, h.cp(10), &members()).is_empty());
    }

    #[test]
    fn a_log_past_the_quota_is_no_longer_taken_or_fetched() {
        let mut h = History::new(key(1));
        for i in 0..20 {
            h.push(&format!("entry {i} {}", "x".repeat(100)));
        }
        let mut w = witness_of_1();
        let leaf = h.leaves[0].len() as u64;
        // Room for about five entries of this origin.
        w.set_quotas(leaf * 5 + 1, DEFAULT_REPLICAS_QUOTA);
        let origin = key(1).public();
        w.checkpoint(0, h.cp(20), &members());
        let (b, e, l) = h.page(0, 4);
        w.page(1, origin, b, e, l).unwrap();
        let (b, e, l) = h.page(4, 20);
        let err = w.page(2, origin, b, e, l).unwrap_err();
        assert!(matches!(err, WitnessError::Quota { .. }), "{err}");
        // What it held stays; nothing more is asked for.
        assert_eq!(w.replica_size(&origin), Some(4));
        assert!(w.checkpoint(3, h.cp(20), &members()).is_empty());
        // The quota over all replicas counts too.
        let mut w = witness_of_1();
        w.set_quotas(DEFAULT_REPLICA_QUOTA, leaf * 2);
        w.checkpoint(0, h.cp(20), &members());
        let (b, e, l) = h.page(0, 4);
        assert!(matches!(
            w.page(1, origin, b, e, l),
            Err(WitnessError::Quota { .. })
        ));
    }

    #[test]
    fn a_bad_page_is_rolled_back_whole() {
        let mut h = History::new(key(1));
        for i in 0..8 {
            h.push(&format!("entry {i}"));
        }
        let mut w = witness_of_1();
        let origin = key(1).public();
        w.checkpoint(0, h.cp(8), &members());
        // One changed byte in one entry.
        let (b, e, mut l) = h.page(0, 8);
        let last = l[5].len() - 1;
        l[5][last] ^= 1;
        let err = w.page(1, origin, b.clone(), e.clone(), l).unwrap_err();
        assert!(matches!(err, WitnessError::BadPage { .. }), "{err}");
        assert_eq!(w.replica_size(&origin), Some(0));
        // Entries swapped.
        let (_, _, mut l) = h.page(0, 8);
        l.swap(2, 3);
        assert!(w.page(1, origin, b.clone(), e.clone(), l).is_err());
        assert_eq!(w.replica_size(&origin), Some(0));
        // The honest page still goes through afterwards.
        let (_, _, l) = h.page(0, 8);
        assert!(w.page(2, origin, b, e, l).is_ok());
        assert_eq!(w.replica_size(&origin), Some(8));
    }

    #[test]
    fn two_histories_signed_by_one_origin_are_caught_with_a_portable_proof() {
        let mut a = History::new(key(1));
        let mut b = History::new(key(1));
        for i in 0..6 {
            a.push(&format!("entry {i}"));
            b.push(&format!("entry {i}"));
        }
        a.push("the truth");
        b.push("the lie");
        let origin = key(1).public();

        // Same size, two roots, straight from gossip.
        let mut w = witness_of_1();
        w.checkpoint(0, a.cp(7), &members());
        let out = w.checkpoint(0, b.cp(7), &members());
        let WitnessOutput::Equivocation(p) = &out[0] else {
            panic!("{out:?}")
        };
        p.verify().unwrap();
        assert!(w.offenders().contains_key(&origin));

        // A witness holding history A is served a page from history B: the page's base
        // checkpoint contradicts what it holds, and the proof is built from its replica.
        let mut w = witness_of_1();
        w.checkpoint(0, a.cp(7), &members());
        let (bs, e, l) = a.page(0, 7);
        w.page(1, origin, bs, e, l).unwrap();
        b.push("more lies");
        let out = w.checkpoint(2, b.cp(8), &members());
        assert_eq!(out, vec![WitnessOutput::Fetch { origin, from: 7 }]);
        let (bs, e, l) = b.page(7, 8);
        let out = w.page(3, origin, bs, e, l).unwrap();
        let WitnessOutput::Equivocation(p) = &out[0] else {
            panic!("{out:?}")
        };
        // The proof stands on its own bytes, anywhere.
        let bytes = p.to_bytes().unwrap();
        EquivocationProof::from_bytes(&bytes)
            .unwrap()
            .verify()
            .unwrap();
        // And a third node accepts it once.
        let mut other = Witness::new(key(4).public(), 3);
        assert!(other.equivocation(p.clone()));
        assert!(!other.equivocation(p.clone()));
    }

    #[test]
    fn a_dead_origins_log_is_handed_over_to_its_new_witnesses_and_checked_on_the_way() {
        let mut h = History::new(key(1));
        for i in 0..9 {
            h.push(&format!("entry {i}"));
        }
        let origin = key(1).public();
        // Ten members; the origin's three witnesses hold its log.
        let all: Vec<PublicKey> = (1..=10).map(|i| key(i).public()).collect();
        let first = witnesses_of(&origin, &all, 3);
        let mut holders: Vec<Witness> = first.iter().map(|w| Witness::new(*w, 3)).collect();
        for w in &mut holders {
            w.restore(origin, h.tree.clone(), Some(h.cp(9)), 0);
        }
        // The origin and two of its witnesses die; the survivor offers the log to the
        // origin's new witnesses among those left.
        let survivor = holders.remove(0);
        let dead: Vec<PublicKey> = vec![origin, first[1], first[2]];
        let left: Vec<PublicKey> = all.iter().filter(|k| !dead.contains(k)).copied().collect();
        let others: Vec<PublicKey> = left.iter().filter(|k| **k != first[0]).copied().collect();
        let offers = survivor.handovers(&others);
        let now = witnesses_of(&origin, &left, 3);
        let expect: Vec<PublicKey> = now.iter().filter(|w| **w != first[0]).copied().collect();
        assert_eq!(
            offers.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
            expect,
            "offers go to exactly the new witnesses"
        );
        // While the origin is a member, nothing is handed over.
        let with_origin: Vec<PublicKey> = all.iter().filter(|k| **k != first[0]).copied().collect();
        assert!(survivor.handovers(&with_origin).is_empty());
        for (n, (to, cp)) in offers.into_iter().enumerate() {
            let mut w = Witness::new(to, 3);
            let members: Vec<PublicKey> = left.iter().filter(|k| **k != to).copied().collect();
            let out = w.offered(0, first[0], cp.clone(), &members);
            assert_eq!(
                out,
                vec![WitnessOutput::FetchReplica {
                    origin,
                    from: 0,
                    holder: first[0]
                }]
            );
            // A tampered hand-over is refused whole; the honest one is kept.
            let mut bad = h.leaves.clone();
            bad[4][10] ^= 1;
            assert!(w.adopt(1, first[0], cp.clone(), bad).is_err());
            assert_eq!(w.replica_size(&origin), Some(0));
            let out = w.adopt(2, first[0], cp.clone(), h.leaves.clone()).unwrap();
            assert!(matches!(out[0], WitnessOutput::Persist { .. }));
            assert_eq!(w.replica_size(&origin), Some(9));
            assert_eq!(w.verified(&origin), Some(&cp));
            // Adopted entries are not vouched for until they are on disk: the origin's
            // checkpoint waits for the driver to report the write, and if the write failed
            // it is never cosigned.
            let cosign =
                |o: &[WitnessOutput]| o.iter().any(|x| matches!(x, WitnessOutput::Cosign(_)));
            assert!(!cosign(&w.checkpoint(3, cp.clone(), &members)));
            // Nor vouched for to an auditor (`Request::Vouch`).
            assert_eq!(w.vouchable(&origin), None);
            if n == 0 {
                w.persist_failed(&origin);
                assert!(!cosign(&w.checkpoint(3, cp.clone(), &members)));
                assert!(!cosign(&w.checkpoint(3, h.cp(5), &members)));
                assert_eq!(w.vouchable(&origin), None);
                continue;
            }
            assert!(cosign(&w.persisted(&origin, 9)));
            assert_eq!(w.vouchable(&origin), Some(&cp));
            // Nobody vouches for a log it holds nothing of.
            assert_eq!(w.vouchable(&key(77).public()), None);
            assert!(!cosign(&w.persisted(&origin, 9)), "cosigned once");
            // Offered again: nothing more to fetch.
            assert!(w.offered(3, first[0], cp, &members).is_empty());
        }
        // A node that is not a new witness ignores the offer.
        let bystander = left.iter().find(|k| !now.contains(k)).copied().unwrap();
        let mut b = Witness::new(bystander, 3);
        let members: Vec<PublicKey> = left.iter().filter(|k| **k != bystander).copied().collect();
        assert!(b.offered(0, first[0], h.cp(9), &members).is_empty());
    }

    #[test]
    fn a_witness_set_follows_joins_and_departures_like_a_full_recount() {
        let all: Vec<PublicKey> = (0..80).map(|i| key(i).public()).collect();
        let origin = all[0];
        let mut members: Vec<PublicKey> = all[..40].to_vec();
        let mut set = WitnessSet::new(origin, 3, &members);
        let same = |set: &WitnessSet, members: &[PublicKey]| {
            set.current().copied().collect::<Vec<_>>() == witnesses_of(&origin, members, 3)
        };
        assert!(same(&set, &members));
        // Joins one by one.
        for m in &all[40..] {
            members.push(*m);
            set.joined(m);
            assert!(same(&set, &members));
        }
        // Departures of the best, one by one, rebuilding only when it says so.
        let mut rebuilds = 0;
        for _ in 0..30 {
            let best = *set.current().next().unwrap();
            members.retain(|m| *m != best);
            assert!(set.left(&best));
            if set.needs_rebuild() {
                set = WitnessSet::new(origin, 3, &members);
                rebuilds += 1;
            }
            assert!(same(&set, &members));
        }
        assert!(rebuilds <= 30 / WITNESS_SET_SLACK + 1, "{rebuilds}");
        // A stranger leaving changes nothing; the origin never witnesses itself.
        assert!(!set.left(&key(200).public()));
        assert!(!set.joined(&origin));

        // Joins and departures in a scrambled order, as churn brings them.
        let pool: Vec<PublicKey> = (0..=255u8).map(|i| key(i).public()).collect();
        let mut members: Vec<PublicKey> = pool[1..60].to_vec();
        let origin = pool[0];
        let mut set = WitnessSet::new(origin, 3, &members);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let m = pool[(x % 256) as usize];
            if members.contains(&m) {
                members.retain(|y| *y != m);
                set.left(&m);
            } else {
                members.push(m);
                set.joined(&m);
            }
            if set.needs_rebuild() {
                set = WitnessSet::new(origin, 3, &members);
            }
            assert_eq!(
                set.current().copied().collect::<Vec<_>>(),
                witnesses_of(&origin, &members, 3)
            );
        }
    }

    #[test]
    fn replicas_survive_a_restart_through_into_replicas() {
        let mut h = History::new(key(1));
        for i in 0..3 {
            h.push(&format!("entry {i}"));
        }
        let origin = key(1).public();
        let mut w = witness_of_1();
        let me = w.me;
        w.checkpoint(0, h.cp(3), &members());
        let (b, e, l) = h.page(0, 3);
        w.page(1, origin, b, e, l).unwrap();
        let mut again = Witness::new(me, 3);
        for (o, tree, cp) in w.into_replicas() {
            again.restore(o, tree, cp, 0);
        }
        assert_eq!(again.replica_size(&origin), Some(3));
        assert_eq!(again.verified(&origin), Some(&h.cp(3)));
    }

    #[test]
    fn a_restored_replica_continues_where_it_stopped() {
        let mut h = History::new(key(1));
        for i in 0..5 {
            h.push(&format!("entry {i}"));
        }
        let origin = key(1).public();
        let mut w = witness_of_1();
        w.restore(origin, h.tree.clone(), Some(h.cp(5)), 0);
        h.push("after restart");
        let out = w.checkpoint(0, h.cp(6), &members());
        assert_eq!(out, vec![WitnessOutput::Fetch { origin, from: 5 }]);
        let (b, e, l) = h.page(5, 6);
        assert!(
            w.page(1, origin, b, e, l)
                .unwrap()
                .contains(&WitnessOutput::Cosign(h.cp(6)))
        );
    }
}
