//! The simulated overlay: who is connected to whom, and when a gossiped message reaches
//! each node.
//!
//! Each node keeps connections to the [`CONNECTIONS`] reachable nodes that rank first by
//! the hash of its key and theirs, as the daemon's `keep_connected` does; links are
//! undirected, so a node also has the connections others opened to it. A gossiped message
//! reaches each node along the fastest path through up, reachable relays (gossipsub's eager
//! push over its mesh). A message honest nodes reject (a Sybil's advert, a forged
//! revocation) is validated before it is forwarded, so it reaches only the sender's own
//! neighbours. Bytes are counted as gossipsub spends them: every node that takes a
//! message in sends it on to up to [`MESH_DEGREE`] mesh peers and hears it from as many.

use crate::geo::{self, Place};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Connections each node opens (the daemon's `TARGET_MEMBER_CONNECTIONS`).
pub const CONNECTIONS: usize = 8;
/// gossipsub's mesh degree: how many peers each node pushes a message to.
pub const MESH_DEGREE: usize = 6;
/// Validating a gossiped message before forwarding it, per hop, microseconds.
pub const VALIDATE_US: u64 = 300;

/// The overlay over all simulated nodes.
pub struct Overlay {
    places: Vec<Place>,
    /// Each node's preference order over the others (best first).
    ranking: Vec<Vec<u32>>,
    /// Neighbours with their one-way latency, for up nodes.
    adjacency: Vec<Vec<(u32, u64)>>,
    /// Which side of a partition each node is on (all zero when whole).
    side: Vec<u8>,
    dirty: bool,
}

impl Overlay {
    /// An overlay over nodes at `places`; `keys` rank each node's preferences.
    pub fn new(places: Vec<Place>, keys: &[[u8; 32]]) -> Overlay {
        let n = places.len();
        let ranking = (0..n)
            .map(|i| {
                let me = keys.get(i).copied().unwrap_or([0; 32]);
                let mut others: Vec<([u8; 32], u32)> = (0..n)
                    .filter(|j| *j != i)
                    .map(|j| {
                        let mut h = Sha256::new();
                        h.update(me);
                        h.update(keys.get(j).copied().unwrap_or([0; 32]));
                        (h.finalize().into(), j as u32)
                    })
                    .collect();
                others.sort_unstable();
                // A fresh vector: collecting in place would keep the 36-byte pairs'
                // capacity, nine times the ranking itself (N² of it).
                let mut ranked: Vec<u32> = others.into_iter().map(|(_, j)| j).collect();
                ranked.shrink_to_fit();
                ranked
            })
            .collect();
        Overlay {
            adjacency: vec![vec![]; n],
            side: vec![0; n],
            places,
            ranking,
            dirty: true,
        }
    }

    /// Where node `i` is.
    pub fn place(&self, i: usize) -> Option<&Place> {
        self.places.get(i)
    }

    /// Whether `a` can reach `b` (same side of any partition).
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.side.get(a) == self.side.get(b)
    }

    /// Cuts the nodes for which `cut(i)` holds off from the others.
    pub fn partition(&mut self, cut: impl Fn(usize) -> bool) {
        for (i, s) in self.side.iter_mut().enumerate() {
            *s = u8::from(cut(i));
        }
        self.dirty = true;
    }

    /// Heals any partition.
    pub fn heal(&mut self) {
        self.side.iter_mut().for_each(|s| *s = 0);
        self.dirty = true;
    }

    /// Someone came up or went down: connections change.
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// Rebuilds connections among up nodes if anything changed. `wants(i, j)` says whether
    /// node `i` would dial `j` (honest nodes dial only members; nobody dials a Sybil).
    pub fn rebuild(&mut self, up: &[bool], dials: impl Fn(usize, usize) -> bool) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let n = self.places.len();
        let mut adj: Vec<Vec<(u32, u64)>> = vec![vec![]; n];
        for i in 0..n {
            if !up.get(i).copied().unwrap_or(false) {
                continue;
            }
            let Some(rank) = self.ranking.get(i) else {
                continue;
            };
            let mut opened = 0;
            for &j in rank {
                let j = j as usize;
                if opened >= CONNECTIONS {
                    break;
                }
                if up.get(j).copied().unwrap_or(false) && self.reachable(i, j) && dials(i, j) {
                    opened += 1;
                    let lat = match (self.places.get(i), self.places.get(j)) {
                        (Some(a), Some(b)) => geo::latency_us(a, b),
                        _ => geo::BASE_US,
                    };
                    if let Some(a) = adj.get_mut(i)
                        && !a.iter().any(|(x, _)| *x as usize == j)
                    {
                        a.push((j as u32, lat));
                    }
                    if let Some(b) = adj.get_mut(j)
                        && !b.iter().any(|(x, _)| *x as usize == i)
                    {
                        b.push((i as u32, lat));
                    }
                }
            }
        }
        self.adjacency = adj;
    }

    /// Node `i`'s neighbours.
    pub fn neighbours(&self, i: usize) -> &[(u32, u64)] {
        self.adjacency.get(i).map_or(&[], |a| a.as_slice())
    }

    /// Connections node `i` has.
    pub fn degree(&self, i: usize) -> usize {
        self.neighbours(i).len()
    }

    /// When a message from `src` reaches every other node (offset from sending,
    /// microseconds), fastest path first. `relays(i)` says whether node `i` forwards it
    /// (an honest node forwards only what it accepted; a Sybil forwards nothing honest).
    pub fn broadcast(&self, src: usize, relays: impl Fn(usize) -> bool) -> Vec<(u64, u32)> {
        let n = self.adjacency.len();
        let mut dist = vec![u64::MAX; n];
        let mut heap = BinaryHeap::new();
        let mut out = Vec::with_capacity(n);
        if let Some(d) = dist.get_mut(src) {
            *d = 0;
            heap.push(Reverse((0u64, src as u32)));
        }
        while let Some(Reverse((d, u))) = heap.pop() {
            let u = u as usize;
            if dist.get(u).is_some_and(|x| d > *x) {
                continue;
            }
            if u != src {
                out.push((d, u as u32));
                if !relays(u) {
                    continue;
                }
            }
            for &(v, lat) in self.neighbours(u) {
                let nd = d + lat + VALIDATE_US;
                if let Some(x) = dist.get_mut(v as usize)
                    && nd < *x
                {
                    *x = nd;
                    heap.push(Reverse((nd, v)));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_overlay_connects_everyone_and_partitions_split_it() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
        let n = 300;
        let places: Vec<Place> = (0..n).map(|_| geo::place(&mut rng)).collect();
        let keys: Vec<[u8; 32]> = (0..n)
            .map(|i| Sha256::digest((i as u64).to_le_bytes()).into())
            .collect();
        let mut o = Overlay::new(places, &keys);
        let up = vec![true; n];
        o.rebuild(&up, |_, _| true);
        assert!((0..n).all(|i| o.degree(i) >= CONNECTIONS));
        let reach = o.broadcast(0, |_| true);
        assert_eq!(reach.len(), n - 1);
        // Sorted by arrival, and nobody is further than a few hundred ms.
        assert!(reach.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(reach.last().is_some_and(|(t, _)| *t < 1_000_000));
        // A message nobody relays reaches only the sender's neighbours.
        assert_eq!(o.broadcast(0, |_| false).len(), o.degree(0));
        // Cut a third off: each side hears only itself.
        o.partition(|i| i % 3 == 0);
        o.rebuild(&up, |_, _| true);
        let from_cut = o.broadcast(0, |_| true);
        assert!(from_cut.iter().all(|(_, j)| *j % 3 == 0));
        assert_eq!(from_cut.len(), n / 3 - 1);
    }
}
