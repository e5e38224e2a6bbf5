//! Proof bundles: everything an auditor needs to show, offline and to anyone holding the
//! authorities' public keys, that a node's log records a flow by a sliver, and who answers
//! for that sliver.
//!
//! A bundle holds the flow entry and the sliver's `SliverCreated` entry (which carries the
//! ticket and its whole certificate chain), an inclusion proof of each in one signed
//! checkpoint, and witnesses' cosignatures of that checkpoint.
//!
//! Invariants: decoding is bounded and canonical; [`ProofBundle::verify`] trusts nothing in
//! the bundle but signatures that chain to the policy's roots (the ticket chain) and to the
//! node key the checkpoint names; any changed byte fails verification.

use crate::checkpoint::{Cosignature, SignedCheckpoint};
use crate::entry::{Entry, EntryBody, FlowRecord};
use crate::merkle::{self, Hash};
use serde::{Deserialize, Serialize};
use slicefed_trust::codec::{self, CodecError};
use slicefed_trust::verify::Object;
use slicefed_trust::{CertId, Context, Credential, Name, PublicKey, TrustPolicy, Verifier};

/// Bundle format version.
pub const BUNDLE_VERSION: u8 = 1;
/// Largest encoded bundle.
pub const MAX_BUNDLE_BYTES: usize = 512 * 1024;
/// Most cosignatures in a bundle.
pub const MAX_BUNDLE_COSIGNATURES: usize = 64;

/// Why a bundle does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Bad bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The proof fails, and where.
    #[error("{0}")]
    Invalid(String),
}

/// The evidence for one flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofBundle {
    /// Format version.
    pub version: u8,
    /// The flow entry's leaf bytes.
    #[serde(with = "serde_bytes")]
    pub flow_leaf: Vec<u8>,
    /// Its inclusion proof in the checkpoint.
    pub flow_proof: Vec<Hash>,
    /// The sliver's `SliverCreated` leaf bytes.
    #[serde(with = "serde_bytes")]
    pub created_leaf: Vec<u8>,
    /// Its inclusion proof in the checkpoint.
    pub created_proof: Vec<Hash>,
    /// The node's signed checkpoint covering both.
    pub checkpoint: SignedCheckpoint,
    /// Witnesses' cosignatures of that checkpoint.
    pub cosignatures: Vec<Cosignature>,
}

/// What a verified bundle shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleFacts {
    /// The node (its key's PeerId).
    pub node: String,
    /// The slice.
    pub slice: Name,
    /// The sliver's id on the node.
    pub sliver: u64,
    /// The responsible person.
    pub user: Option<Name>,
    /// Their authority.
    pub authority: Name,
    /// The trusted root the chain ends at.
    pub root: Name,
    /// The ticket's id.
    pub ticket: CertId,
    /// What the person asked to run: the arguments and environment their ticket signs.
    pub invocation: slicefed_trust::Invocation,
    /// The flow.
    pub flow: FlowRecord,
    /// Witnesses whose cosignatures verified (PeerIds).
    pub witnesses: Vec<String>,
    /// Entries the checkpoint covers.
    pub checkpoint_size: u64,
}

fn bad<T>(why: impl Into<String>) -> Result<T, BundleError> {
    Err(BundleError::Invalid(why.into()))
}

impl ProofBundle {
    /// Encodes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("proof bundle", self)
    }

    /// Decodes (bounded, canonical).
    pub fn from_bytes(bytes: &[u8]) -> Result<ProofBundle, BundleError> {
        let b: ProofBundle = codec::decode("proof bundle", bytes, MAX_BUNDLE_BYTES)?;
        if b.version != BUNDLE_VERSION {
            return bad(format!(
                "bundle version {}, expected {BUNDLE_VERSION}",
                b.version
            ));
        }
        if b.cosignatures.len() > MAX_BUNDLE_COSIGNATURES {
            return bad(format!(
                "{} cosignatures, at most {MAX_BUNDLE_COSIGNATURES}",
                b.cosignatures.len()
            ));
        }
        Ok(b)
    }

    /// Checks everything: the checkpoint's signature, both inclusion proofs, that the flow
    /// is the created sliver's, the ticket chain under `policy` as of the sliver's creation,
    /// and each cosignature (bad ones fail the bundle: nobody adds a false witness).
    pub fn verify(&self, policy: &TrustPolicy) -> Result<BundleFacts, BundleError> {
        let cp = &self.checkpoint;
        cp.verify()
            .map_err(|e| BundleError::Invalid(format!("checkpoint: {e}")))?;
        let size = cp.checkpoint.size;
        let included = |what: &str, leaf: &[u8], proof: &[Hash]| -> Result<Entry, BundleError> {
            let e = Entry::decode(leaf)
                .map_err(|e| BundleError::Invalid(format!("{what} entry: {e}")))?;
            merkle::verify_inclusion(
                &merkle::leaf_hash(leaf),
                e.seq,
                size,
                proof,
                &cp.checkpoint.root,
            )
            .map_err(|e| {
                BundleError::Invalid(format!("{what} entry is not in the node's signed log: {e}"))
            })?;
            Ok(e)
        };
        let flow_entry = included("flow", &self.flow_leaf, &self.flow_proof)?;
        let created_entry = included("sliver-created", &self.created_leaf, &self.created_proof)?;
        let EntryBody::Flow(flow) = flow_entry.body else {
            return bad("the flow entry is not a flow record");
        };
        let EntryBody::SliverCreated {
            who,
            ticket,
            credential,
            invocation,
            ..
        } = created_entry.body
        else {
            return bad("the sliver-created entry is not a SliverCreated record");
        };
        if created_entry.seq >= flow_entry.seq {
            return bad("the sliver was logged as created after the flow");
        }
        if who.slice != flow.who.slice || who.sliver != flow.who.sliver {
            return bad(format!(
                "the flow is sliver {} of {}, the created entry is sliver {} of {}",
                flow.who.sliver, flow.who.slice, who.sliver, who.slice
            ));
        }
        let cred = Credential::from_bytes(&credential)
            .map_err(|e| BundleError::Invalid(format!("ticket credential: {e}")))?;
        if CertId::of(cred.leaf()) != ticket {
            return bad("the ticket in the entry is not the one it names");
        }
        let pool: Vec<&[u8]> = cred.chain().collect();
        let ctx = Context {
            now: created_entry.time_ms / 1000,
            node: Some(cp.checkpoint.origin),
        };
        let v = Verifier::new(policy.clone())
            .verify(cred.leaf(), &pool, &ctx)
            .map_err(|e| BundleError::Invalid(format!("ticket chain: {e}")))?;
        let Object::SliceTicket(t) = &v.leaf.object else {
            return bad("the credential is not a slice ticket");
        };
        if t.slice != who.slice {
            return bad("the ticket is for another slice than the sliver's");
        }
        if invocation.hash() != t.invocation {
            return bad("the sliver's arguments and environment are not the ones its ticket signs");
        }
        if v.responsible.user != who.user {
            return bad("the log attributes the sliver to another person than its ticket");
        }
        let mut witnesses = vec![];
        for c in &self.cosignatures {
            c.verify(cp).map_err(|e| {
                BundleError::Invalid(format!("cosignature of {}: {e}", c.witness.peer_id()))
            })?;
            if c.witness == cp.checkpoint.origin {
                return bad("a node cannot witness its own log");
            }
            let id = c.witness.peer_id();
            if !witnesses.contains(&id) {
                witnesses.push(id);
            }
        }
        Ok(BundleFacts {
            node: cp.checkpoint.origin.peer_id(),
            slice: who.slice,
            sliver: who.sliver,
            user: v.responsible.user.clone(),
            authority: v.responsible.authority.clone(),
            root: v.responsible.root.clone(),
            ticket,
            invocation,
            flow,
            witnesses,
            checkpoint_size: size,
        })
    }

    /// The node whose log this is.
    pub fn origin(&self) -> PublicKey {
        self.checkpoint.checkpoint.origin
    }
}
