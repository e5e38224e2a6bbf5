//! Signed checkpoints (origin, size, root, time), witness cosignatures, and portable
//! equivocation proofs.
//!
//! Invariants: a checkpoint is signed under its own domain tag by its origin and checked with
//! `verify_strict`; a cosignature signs the checkpoint's exact bytes under another tag; an
//! [`EquivocationProof`] verifies with nothing but the bytes it carries.

use crate::merkle::{self, Hash};
use serde::{Deserialize, Serialize};
use slicefed_trust::codec::{self, CodecError};
use slicefed_trust::{PublicKey, SecretKey};

/// Domain tag of checkpoint signatures.
pub const CHECKPOINT_DOMAIN: &str = "slicefed/ledger-checkpoint";
/// Domain tag of witness cosignatures.
pub const COSIGNATURE_DOMAIN: &str = "slicefed/ledger-cosignature";
/// Largest encoded signed checkpoint.
pub const MAX_CHECKPOINT_BYTES: usize = 256;
/// Largest encoded equivocation proof (two checkpoints and a 64-hash proof).
pub const MAX_EQUIVOCATION_BYTES: usize = 4096;

/// Why a checkpoint, cosignature or proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Bad bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The signature does not verify.
    #[error("{0}")]
    Signature(String),
    /// The proof does not show what it claims.
    #[error("not an equivocation: {0}")]
    NotEquivocation(String),
}

/// A log's state as its origin commits to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The log's writer (the node's key).
    pub origin: PublicKey,
    /// Entries covered.
    pub size: u64,
    /// RFC 6962 root of those entries.
    pub root: Hash,
    /// When it was signed, unix ms.
    pub time_ms: u64,
}

/// A checkpoint and its origin's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The origin's signature over its encoding.
    pub signature: serde_bytes::ByteArray<64>,
}

impl Checkpoint {
    fn bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("checkpoint", self)
    }
    /// Signs with the origin's key.
    pub fn sign(self, key: &SecretKey) -> Result<SignedCheckpoint, CheckpointError> {
        if key.public() != self.origin {
            return Err(CheckpointError::Signature(
                "only the origin signs its checkpoints".into(),
            ));
        }
        Ok(SignedCheckpoint {
            signature: serde_bytes::ByteArray::new(
                key.sign_domain(CHECKPOINT_DOMAIN, &self.bytes()?),
            ),
            checkpoint: self,
        })
    }
}

impl SignedCheckpoint {
    /// Checks the origin's signature.
    pub fn verify(&self) -> Result<(), CheckpointError> {
        let c = &self.checkpoint;
        c.origin
            .verify_domain(CHECKPOINT_DOMAIN, &c.bytes()?, &self.signature)
            .map_err(|_| {
                CheckpointError::Signature(format!(
                    "checkpoint of {} at size {} is not signed by its origin",
                    c.origin.peer_id(),
                    c.size
                ))
            })
    }
    /// Encodes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("signed checkpoint", self)
    }
    /// Decodes (bounded, canonical) and verifies the signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedCheckpoint, CheckpointError> {
        let c: SignedCheckpoint = codec::decode("signed checkpoint", bytes, MAX_CHECKPOINT_BYTES)?;
        c.verify()?;
        Ok(c)
    }
}

/// A witness's signature over a checkpoint it verified as consistent with what it saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cosignature {
    /// The witness.
    pub witness: PublicKey,
    /// When, unix ms.
    pub time_ms: u64,
    /// Signature over `time_ms || signed checkpoint bytes`.
    pub signature: serde_bytes::ByteArray<64>,
}

impl Cosignature {
    fn message(time_ms: u64, cp: &SignedCheckpoint) -> Result<Vec<u8>, CodecError> {
        let mut m = time_ms.to_le_bytes().to_vec();
        m.extend_from_slice(&cp.to_bytes()?);
        Ok(m)
    }
    /// A witness cosigns a checkpoint.
    pub fn sign(
        witness: &SecretKey,
        cp: &SignedCheckpoint,
        time_ms: u64,
    ) -> Result<Cosignature, CheckpointError> {
        Ok(Cosignature {
            witness: witness.public(),
            time_ms,
            signature: serde_bytes::ByteArray::new(
                witness.sign_domain(COSIGNATURE_DOMAIN, &Self::message(time_ms, cp)?),
            ),
        })
    }
    /// Checks it against the checkpoint it claims to cosign.
    pub fn verify(&self, cp: &SignedCheckpoint) -> Result<(), CheckpointError> {
        self.witness
            .verify_domain(
                COSIGNATURE_DOMAIN,
                &Self::message(self.time_ms, cp)?,
                &self.signature,
            )
            .map_err(|_| {
                CheckpointError::Signature(format!(
                    "cosignature by {} does not verify",
                    self.witness.peer_id()
                ))
            })
    }
}

/// Two checkpoints signed by one origin that cannot both be true.
///
/// Same size, different roots: nothing more is needed. Different sizes: `prefix_root` is the
/// root at the smaller size of the history the larger checkpoint commits to, and
/// `consistency` proves it is that history's prefix; since it differs from the smaller
/// checkpoint's root, the origin signed two histories.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquivocationProof {
    /// The checkpoint of smaller (or equal) size.
    pub smaller: SignedCheckpoint,
    /// The other checkpoint.
    pub larger: SignedCheckpoint,
    /// Root of the larger history at the smaller size (unused when sizes are equal).
    pub prefix_root: Hash,
    /// Consistency proof from `prefix_root` to the larger checkpoint's root.
    pub consistency: Vec<Hash>,
}

impl EquivocationProof {
    /// Builds a proof from two checkpoints and the full history behind `b` (a witness holds
    /// it). Fails if the checkpoints are consistent.
    pub fn build(
        a: SignedCheckpoint,
        b: SignedCheckpoint,
        history_of_b: &merkle::Tree,
    ) -> Result<EquivocationProof, CheckpointError> {
        let (smaller, larger) = if a.checkpoint.size <= b.checkpoint.size {
            (a, b)
        } else {
            (b, a)
        };
        let m = smaller.checkpoint.size;
        let n = larger.checkpoint.size;
        let (prefix_root, consistency) = if m == n {
            (larger.checkpoint.root, vec![])
        } else {
            let err = |e: merkle::ProofError| CheckpointError::NotEquivocation(e.to_string());
            if history_of_b.root_at(n).map_err(err)? != larger.checkpoint.root {
                return Err(CheckpointError::NotEquivocation(
                    "the history given is not the one the larger checkpoint commits to".into(),
                ));
            }
            (
                history_of_b.root_at(m).map_err(err)?,
                history_of_b.consistency_proof(m, n).map_err(err)?,
            )
        };
        let p = EquivocationProof {
            smaller,
            larger,
            prefix_root,
            consistency,
        };
        p.verify()?;
        Ok(p)
    }

    /// Checks the proof with nothing but its own bytes.
    pub fn verify(&self) -> Result<(), CheckpointError> {
        self.smaller.verify()?;
        self.larger.verify()?;
        let (s, l) = (&self.smaller.checkpoint, &self.larger.checkpoint);
        if s.origin != l.origin {
            return Err(CheckpointError::NotEquivocation(
                "the checkpoints have different origins".into(),
            ));
        }
        if s.size > l.size {
            return Err(CheckpointError::NotEquivocation(
                "smaller and larger are swapped".into(),
            ));
        }
        if s.size == l.size {
            return if s.root != l.root {
                Ok(())
            } else {
                Err(CheckpointError::NotEquivocation(
                    "same size and same root".into(),
                ))
            };
        }
        merkle::verify_consistency(
            s.size,
            l.size,
            &self.prefix_root,
            &l.root,
            &self.consistency,
        )
        .map_err(|e| {
            CheckpointError::NotEquivocation(format!("the consistency proof fails: {e}"))
        })?;
        if self.prefix_root == s.root {
            return Err(CheckpointError::NotEquivocation(
                "the smaller checkpoint is a prefix of the larger".into(),
            ));
        }
        Ok(())
    }

    /// Encodes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("equivocation proof", self)
    }

    /// Decodes (bounded, canonical) and verifies.
    pub fn from_bytes(bytes: &[u8]) -> Result<EquivocationProof, CheckpointError> {
        let p: EquivocationProof =
            codec::decode("equivocation proof", bytes, MAX_EQUIVOCATION_BYTES)?;
        p.verify()?;
        Ok(p)
    }
}
