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

    /// The file held under `id`.
    pub(super) fn get(&self, id: &CertId) -> Option<&[u8]> {
        self.files.get(id).map(|(b, _)| b.as_slice())
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
        if let Some(p) = self.prints.get_mut(usize::from(id.0[0])) {
            *p ^= prefix(id);
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

    /// The first 8 bytes (little-endian) of the ids held in `buckets` after `after`, in id
    /// order (what an asker already has there: see [`HeldSet::missing_after`]).
    pub(super) fn prefixes_after<'a>(
        &'a self,
        after: Option<CertId>,
        buckets: &'a [u8],
    ) -> impl Iterator<Item = u64> + 'a {
        self.entries_after(after, buckets).map(|(id, _)| prefix(id))
    }

    /// Files in id order after `after`, in `buckets` (empty: all), but for those whose id's
    /// prefix is in `have` (sorted).
    pub(super) fn missing_after<'a>(
        &'a self,
        after: Option<CertId>,
        buckets: &'a [u8],
        have: &'a [u64],
    ) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        self.entries_after(after, buckets)
            .filter(move |(id, _)| have.binary_search(&prefix(id)).is_err())
            .map(|(_, b)| b)
    }

    /// Ids and files in id order after `after`, in `buckets` (empty: all). A bucket is the ids'
    /// first byte, so each wanted bucket is one range of the map: a page costs its own
    /// files, not a walk past every file held (the sets hold every delete until its last
    /// ticket expires, and pages are asked for on every reconciliation that differs).
    fn entries_after<'a>(
        &'a self,
        after: Option<CertId>,
        buckets: &'a [u8],
    ) -> impl Iterator<Item = (&'a CertId, &'a Vec<u8>)> + 'a {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        // The asker's list may be long and repeat itself: one lookup per id, whatever it is.
        let mut wanted = [buckets.is_empty(); REVOCATION_BUCKETS];
        for b in buckets {
            if let Some(w) = wanted.get_mut(usize::from(*b)) {
                *w = true;
            }
        }
        let first = after.map_or(0, |a| usize::from(a.0[0]));
        (first..REVOCATION_BUCKETS)
            .filter(move |b| wanted.get(*b) == Some(&true))
            .flat_map(move |b| {
                let byte = b as u8;
                let mut low = [0u8; 32];
                low[0] = byte;
                let start = match after {
                    Some(a) if a.0[0] == byte => Excluded(a),
                    _ => Included(CertId(low)),
                };
                let end = match byte.checked_add(1) {
                    Some(next) => {
                        let mut high = [0u8; 32];
                        high[0] = next;
                        Excluded(CertId(high))
                    }
                    None => Unbounded,
                };
                self.files.range((start, end)).map(|(id, (b, _))| (id, b))
            })
    }
}

/// An id's first 8 bytes, little-endian: what fingerprints XOR and askers list.
pub(super) fn prefix(id: &CertId) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(id.0.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(head)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A page walks only the wanted buckets' ranges, and finds exactly what a filter
        /// over every file held finds, in the same order, less what the asker has.
        #[test]
        fn pages_by_bucket_are_what_a_filter_over_all_files_finds_less_what_the_asker_has(
            // First bytes crowd the edges (0, 1, 254, 255) half the time, so buckets hold
            // several ids and the last bucket comes up.
            ids in proptest::collection::vec(
                (prop_oneof![any::<u8>(), prop::sample::select(vec![0u8, 1, 254, 255])],
                 prop_oneof![any::<[u8; 4]>(), Just([0u8; 4]), Just([0xff_u8; 4])]),
                0..200,
            ),
            buckets in proptest::collection::vec(
                prop_oneof![any::<u8>(), prop::sample::select(vec![0u8, 1, 254, 255])],
                0..8,
            ),
            after in proptest::option::of((any::<u8>(), any::<[u8; 4]>())),
            // Half the time the cursor is a held id (a page's last id, as pagination asks).
            cursor in proptest::option::of(any::<prop::sample::Index>()),
            // Which held ids the asker says it has (and a few it made up).
            had in proptest::collection::vec(any::<bool>(), 0..200),
            made_up in proptest::collection::vec(any::<u64>(), 0..4),
        ) {
            let id = |(b, rest): (u8, [u8; 4])| {
                let mut x = [0u8; 32];
                x[0] = b;
                x[1..5].copy_from_slice(&rest);
                CertId(x)
            };
            let mut set = HeldSet::default();
            for i in &ids {
                let c = id(*i);
                set.insert(c, &c.0, 0);
            }
            let after = match cursor {
                Some(i) if !ids.is_empty() => Some(id(ids[i.index(ids.len())])),
                _ => after.map(id),
            };
            let mut have: Vec<u64> = ids
                .iter()
                .zip(had.iter().chain(std::iter::repeat(&false)))
                .filter(|(_, h)| **h)
                .map(|(i, _)| prefix(&id(*i)))
                .chain(made_up)
                .collect();
            have.sort_unstable();
            let got: Vec<&Vec<u8>> = set.missing_after(after, &buckets, &have).collect();
            let want: Vec<&Vec<u8>> = set
                .files
                .iter()
                .filter(|(k, _)| after.is_none_or(|a| **k > a))
                .filter(|(k, _)| buckets.is_empty() || buckets.contains(&k.0[0]))
                .filter(|(k, _)| !have.contains(&prefix(k)))
                .map(|(_, (b, _))| b)
                .collect();
            prop_assert_eq!(got, want);
            // What an asker lists as held in those buckets is every held id there.
            let listed: Vec<u64> = set.prefixes_after(None, &buckets).collect();
            let all = set
                .files
                .keys()
                .filter(|k| buckets.is_empty() || buckets.contains(&k.0[0]))
                .count();
            prop_assert_eq!(listed.len(), all);
        }
    }
}
