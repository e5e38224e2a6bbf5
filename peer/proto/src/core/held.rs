//! The set of revocations and slice deletes a node holds and serves to members that were
//! away: their bytes by id, within a count and a byte bound, with a digest (for adverts) and
//! per-range fingerprints (for reconciliation) kept up to date as it changes, so neither
//! costs a pass over the set.
//!
//! The digest and fingerprints are XORs of ids (ids are SHA-256 of signed objects). They
//! are not a security boundary: a member can claim any digest in its advert; they only say
//! where two honest nodes' sets differ. The digest covers only *settled* objects: a slice
//! delete counts [`DELETE_SETTLE_MS`] after its signed issue time (deletes come one per
//! slice, and gossip delivers each to every node within seconds: counting one at once would
//! make most members' digests differ for that moment and every node reconcile what gossip
//! is already delivering); a revocation counts at once (they are rare, and a node that
//! missed one must catch up in seconds). Range fingerprints cover everything held.

/// How long after it was issued a slice delete counts in the digest.
pub const DELETE_SETTLE_MS: u64 = 30_000;

use super::*;

/// Held revocation and delete files.
#[derive(Default)]
pub(super) struct HeldSet {
    /// Each file with when it settles (ms).
    files: BTreeMap<CertId, (Vec<u8>, u64)>,
    bytes: usize,
    /// Held but not settled yet, by when they settle.
    settling: std::collections::BTreeSet<(u64, CertId)>,
    settled: usize,
    /// XOR of the settled ids (the digest).
    xor: [u8; 32],
    /// Per range, XOR of every held id's first 8 bytes, settled or not: a reconciliation
    /// also brings what gossip is still delivering.
    prints: Vec<u64>,
}

impl HeldSet {
    /// Files held (revocations and deletes).
    pub(super) fn len(&self) -> usize {
        self.files.len()
    }

    pub(super) fn contains(&self, id: &CertId) -> bool {
        self.files.contains_key(id)
    }

    /// Whether `more` bytes still fit (count and bytes).
    pub(super) fn has_room(&self, more: usize) -> bool {
        self.files.len() < MAX_SEEN_REVOCATIONS
            && self.bytes.saturating_add(more) <= MAX_REVOCATION_BYTES
    }

    /// Holds `file` under `id` (nothing if held already or over the bounds). It counts in
    /// the digest from `settles_ms` on ([`HeldSet::settle`]).
    pub(super) fn insert(&mut self, id: CertId, file: &[u8], settles_ms: u64) -> bool {
        if self.files.contains_key(&id) || !self.has_room(file.len()) {
            return false;
        }
        let at = settles_ms;
        self.bytes += file.len();
        self.files.insert(id, (file.to_vec(), at));
        self.settling.insert((at, id));
        self.toggle_print(&id);
        true
    }

    pub(super) fn remove(&mut self, id: &CertId) -> bool {
        match self.files.remove(id) {
            Some((b, at)) => {
                self.bytes = self.bytes.saturating_sub(b.len());
                if !self.settling.remove(&(at, *id)) {
                    self.settled = self.settled.saturating_sub(1);
                    self.toggle_digest(id);
                }
                self.toggle_print(id);
                true
            }
            None => false,
        }
    }

    /// Time passes: objects issued [`SETTLE_MS`] ago or more join the digest.
    pub(super) fn settle(&mut self, now_ms: u64) {
        while let Some(&(at, id)) = self.settling.first() {
            if at > now_ms {
                break;
            }
            self.settling.remove(&(at, id));
            self.settled += 1;
            self.toggle_digest(&id);
        }
    }

    /// XORs `id` into (or out of) the digest.
    fn toggle_digest(&mut self, id: &CertId) {
        for (x, b) in self.xor.iter_mut().zip(id.0) {
            *x ^= b;
        }
    }

    /// XORs `id` into (or out of) its range's fingerprint.
    fn toggle_print(&mut self, id: &CertId) {
        if self.prints.len() != REVOCATION_BUCKETS {
            self.prints = vec![0; REVOCATION_BUCKETS];
        }
        let mut head = [0u8; 8];
        head.copy_from_slice(id.0.get(..8).unwrap_or(&[0; 8]));
        if let Some(p) = self.prints.get_mut(usize::from(id.0[0])) {
            *p ^= u64::from_le_bytes(head);
        }
    }

    /// The settled objects' count and XOR.
    pub(super) fn digest(&self) -> RevocationDigest {
        if self.settled == 0 {
            return RevocationDigest::default();
        }
        RevocationDigest {
            count: self.settled as u32,
            hash: self.xor,
        }
    }

    /// One fingerprint per id range (0 for an empty range).
    pub(super) fn prints(&self) -> Vec<u64> {
        let mut p = self.prints.clone();
        p.resize(REVOCATION_BUCKETS, 0);
        p
    }

    /// Files in id order after `after`, in `buckets` (empty: all).
    pub(super) fn after<'a>(
        &'a self,
        after: Option<CertId>,
        buckets: &'a [u8],
    ) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        // The asker's list may be long and repeat itself: one lookup per id, whatever it is.
        let mut wanted = [buckets.is_empty(); REVOCATION_BUCKETS];
        for b in buckets {
            if let Some(w) = wanted.get_mut(usize::from(*b)) {
                *w = true;
            }
        }
        let range = match after {
            Some(a) => self
                .files
                .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => self.files.range(..),
        };
        range
            .filter(move |(id, _)| wanted.get(usize::from(id.0[0])) == Some(&true))
            .map(|(_, (b, _))| b)
    }
}
