//! RFC 6962 Merkle trees (SHA-256, leaf prefix `0x00`, node prefix `0x01`) with RFC 9162
//! inclusion and consistency proofs.
//!
//! Invariant: `Tree::levels[h][i]` is the hash of the complete subtree of `2^h` leaves
//! starting at leaf `i * 2^h`; only complete subtrees are stored, so appending is O(1)
//! amortised and any historical root or proof is O(log n) lookups plus O(log n) hashes along
//! the incomplete right edge.

use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why a proof was not produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Asked about sizes or indices the tree does not have.
    #[error("no such range: {0}")]
    Range(String),
    /// The proof does not lead to the expected root.
    #[error("proof does not verify: {0}")]
    Mismatch(&'static str),
}

/// Leaves per chunk when building in parallel (a power of two; 128 KiB of leaf hashes).
pub const CHUNK_LEAVES: usize = 1 << CHUNK_LEVELS;
/// log2 of [`CHUNK_LEAVES`].
pub const CHUNK_LEVELS: usize = 12;

/// The complete subtrees over one chunk of at most [`CHUNK_LEAVES`] leaves, level by level
/// (level 0 is the leaves themselves).
pub fn chunk_levels(leaves: Vec<Hash>) -> Vec<Vec<Hash>> {
    let mut levels = vec![leaves];
    while let Some(prev) = levels.last() {
        if prev.len() < 2 {
            break;
        }
        let next: Vec<Hash> = prev
            .chunks_exact(2)
            .map(|pair| match pair {
                [l, r] => node_hash(l, r),
                _ => unreachable!("chunks_exact(2) yields pairs"),
            })
            .collect();
        levels.push(next);
    }
    levels
}

/// The largest power of two strictly less than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// An append-only Merkle tree of leaf hashes.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Builds a tree from leaf hashes, in parallel.
    pub fn from_leaves(leaves: Vec<Hash>) -> Tree {
        Tree::from_chunks(
            leaves
                .par_chunks(CHUNK_LEAVES)
                .map(|c| chunk_levels(c.to_vec()))
                .collect(),
        )
    }

    /// Builds a tree from per-chunk subtrees made by [`chunk_levels`]: every chunk but the
    /// last holds exactly [`CHUNK_LEAVES`] leaves. Callers that hash leaves chunk by chunk
    /// build each subtree while its leaves are still in cache.
    pub fn from_chunks(chunks: Vec<Vec<Vec<Hash>>>) -> Tree {
        let mut levels: Vec<Vec<Hash>> = Vec::new();
        for h in 0..=CHUNK_LEVELS {
            let total: usize = chunks.iter().map(|c| c.get(h).map_or(0, Vec::len)).sum();
            if total == 0 {
                break;
            }
            let mut level = Vec::with_capacity(total);
            for c in &chunks {
                if let Some(l) = c.get(h) {
                    level.extend_from_slice(l);
                }
            }
            levels.push(level);
        }
        // Above the chunks: few nodes, built level by level.
        loop {
            let next: Vec<Hash> = match levels.last() {
                Some(prev) if prev.len() >= 2 && levels.len() > CHUNK_LEVELS => prev
                    .par_chunks_exact(2)
                    .map(|pair| match pair {
                        [l, r] => node_hash(l, r),
                        _ => unreachable!("chunks_exact(2) yields pairs"),
                    })
                    .collect(),
                _ => break,
            };
            levels.push(next);
        }
        Tree { levels }
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// True if there are no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = 0;
        let mut node = leaf;
        loop {
            if self.levels.len() <= h {
                self.levels.push(Vec::new());
            }
            let Some(level) = self.levels.get_mut(h) else {
                return;
            };
            level.push(node);
            let n = level.len();
            if n % 2 == 1 {
                return;
            }
            match (level.get(n - 2), level.get(n - 1)) {
                (Some(l), Some(r)) => node = node_hash(l, r),
                _ => return,
            }
            h += 1;
        }
    }

    /// Drops every leaf from `size` on, as if they had never been pushed. A witness appends
    /// a fetched page, checks the root against the origin's signed checkpoint, and rolls the
    /// page back if it does not match.
    pub fn truncate(&mut self, size: u64) {
        for (h, level) in self.levels.iter_mut().enumerate() {
            let keep = usize::try_from(size >> h).unwrap_or(usize::MAX);
            level.truncate(keep);
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// MTH of leaves `[start, end)`.
    fn mth(&self, start: u64, end: u64) -> Option<Hash> {
        let n = end.checked_sub(start)?;
        if n == 0 {
            return Some(EMPTY_ROOT);
        }
        if end > self.len() {
            return None;
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let h = n.trailing_zeros() as usize;
            return self
                .levels
                .get(h)?
                .get(usize::try_from(start >> h).ok()?)
                .copied();
        }
        let k = split(n);
        Some(node_hash(
            &self.mth(start, start + k)?,
            &self.mth(start + k, end)?,
        ))
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.mth(0, self.len()).unwrap_or(EMPTY_ROOT)
    }

    /// The root the tree had at `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.mth(0, size)
            .ok_or_else(|| ProofError::Range(format!("size {size} > tree size {}", self.len())))
    }

    /// RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if index >= size || size > self.len() {
            return Err(ProofError::Range(format!(
                "leaf {index} in size {size} (tree has {})",
                self.len()
            )));
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof)?;
        Ok(proof)
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), ProofError> {
        let n = end - start;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        let missing = || ProofError::Range("subtree outside the tree".into());
        if m < k {
            self.path(m, start, start + k, out)?;
            out.push(self.mth(start + k, end).ok_or_else(missing)?);
        } else {
            self.path(m - k, start + k, end, out)?;
            out.push(self.mth(start, start + k).ok_or_else(missing)?);
        }
        Ok(())
    }

    /// RFC 9162 consistency proof between sizes `old` ≤ `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        if old > new || new > self.len() {
            return Err(ProofError::Range(format!(
                "sizes {old} → {new} (tree has {})",
                self.len()
            )));
        }
        let mut proof = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut proof)?;
        }
        Ok(proof)
    }

    fn subproof(
        &self,
        m: u64,
        start: u64,
        end: u64,
        whole: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), ProofError> {
        let n = end - start;
        let missing = || ProofError::Range("subtree outside the tree".into());
        if m == n {
            if !whole {
                out.push(self.mth(start, end).ok_or_else(missing)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, out)?;
            out.push(self.mth(start + k, end).ok_or_else(missing)?);
        } else {
            self.subproof(m - k, start + k, end, false, out)?;
            out.push(self.mth(start, start + k).ok_or_else(missing)?);
        }
        Ok(())
    }
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2).
pub fn root_from_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::Mismatch("leaf index beyond tree size"));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::Mismatch("inclusion proof is too long"));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::Mismatch("inclusion proof is too short"));
    }
    Ok(r)
}

/// Verifies an inclusion proof against a root.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion(leaf, index, size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::Mismatch(
            "inclusion proof leads to another root",
        ))
    }
}

/// Verifies a consistency proof between two roots (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::Mismatch("old size is larger than new size"));
    }
    if old == new {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch(
                "equal sizes need equal roots and an empty proof",
            ))
        };
    }
    if old == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::Mismatch("a proof from the empty tree is empty"))
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut it = path.iter();
    let first = it
        .next()
        .ok_or(ProofError::Mismatch("consistency proof is empty"))?;
    let (mut fr, mut sr) = (*first, *first);
    for c in it {
        if s == 0 {
            return Err(ProofError::Mismatch("consistency proof is too long"));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::Mismatch("consistency proof is too short"));
    }
    if fr != *old_root {
        return Err(ProofError::Mismatch(
            "consistency proof does not lead to the old root",
        ));
    }
    if sr != *new_root {
        return Err(ProofError::Mismatch(
            "consistency proof does not lead to the new root",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hd(s: &str) -> Hash {
        let mut h = [0u8; 32];
        hex::decode_to_slice(s, &mut h).unwrap();
        h
    }

    /// The certificate-transparency reference leaves and roots (RFC 6962 test vectors).
    fn ct_tree() -> Tree {
        let leaves: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let mut t = Tree::new();
        for l in leaves {
            t.push(leaf_hash(l));
        }
        t
    }

    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn truncating_gives_back_every_earlier_tree() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        for cut in 0..70u64 {
            let mut t = Tree::from_leaves(leaves.clone());
            t.truncate(cut);
            assert_eq!(t.len(), cut);
            assert_eq!(
                t.root(),
                Tree::from_leaves(leaves[..cut as usize].to_vec()).root()
            );
            // And it grows again as if never cut.
            for l in &leaves[cut as usize..] {
                t.push(*l);
            }
            assert_eq!(t.root(), Tree::from_leaves(leaves.clone()).root());
        }
    }

    #[test]
    fn rfc6962_roots() {
        let t = ct_tree();
        for (size, want) in ROOTS.iter().enumerate() {
            assert_eq!(t.root_at(size as u64).unwrap(), hd(want), "size {size}");
        }
        assert_eq!(Tree::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn rfc6962_inclusion_vectors() {
        let t = ct_tree();
        let cases: [(u64, u64, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let proof = t.inclusion_proof(index, size).unwrap();
            let want: Vec<Hash> = want.iter().map(|s| hd(s)).collect();
            assert_eq!(proof, want, "leaf {index} size {size}");
            let root = t.root_at(size).unwrap();
            verify_inclusion(&t.leaf(index).unwrap(), index, size, &proof, &root).unwrap();
        }
    }

    #[test]
    fn rfc6962_consistency_vectors() {
        let t = ct_tree();
        let cases: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let proof = t.consistency_proof(old, new).unwrap();
            let want: Vec<Hash> = want.iter().map(|s| hd(s)).collect();
            assert_eq!(proof, want, "{old} -> {new}");
            verify_consistency(
                old,
                new,
                &t.root_at(old).unwrap(),
                &t.root_at(new).unwrap(),
                &proof,
            )
            .unwrap();
        }
    }

    #[test]
    fn every_proof_of_a_small_tree_verifies_and_a_wrong_one_does_not() {
        let mut t = Tree::new();
        for i in 0..70u32 {
            t.push(leaf_hash(&i.to_le_bytes()));
        }
        for size in 1..=70u64 {
            let root = t.root_at(size).unwrap();
            for index in 0..size {
                let p = t.inclusion_proof(index, size).unwrap();
                verify_inclusion(&t.leaf(index).unwrap(), index, size, &p, &root).unwrap();
                assert!(verify_inclusion(&leaf_hash(b"x"), index, size, &p, &root).is_err());
            }
            for old in 0..=size {
                let p = t.consistency_proof(old, size).unwrap();
                verify_consistency(old, size, &t.root_at(old).unwrap(), &root, &p).unwrap();
                if old > 0 && old < size {
                    assert!(verify_consistency(old, size, &leaf_hash(b"x"), &root, &p).is_err());
                }
            }
        }
        let parallel = Tree::from_leaves((0..70u32).map(|i| leaf_hash(&i.to_le_bytes())).collect());
        assert_eq!(parallel.root(), t.root());
        assert_eq!(
            parallel.inclusion_proof(33, 70).unwrap(),
            t.inclusion_proof(33, 70).unwrap()
        );
    }
}
