//! Log entries: what a node did, for whom.
//!
//! A leaf's bytes are `version (1) || seq (u64 LE) || prev (32) || time_ms (u64 LE) || body`,
//! where `body` is the canonical encoding of an [`EntryBody`]. `seq` is the entry's index and
//! `prev` the leaf hash of the entry before it (zeros for the first), so a removed, inserted,
//! reordered or altered entry is located exactly by replay, even between checkpoints.
//!
//! Invariant: decoding is bounded ([`MAX_ENTRY_BYTES`]), canonical, and every string and
//! list in a body is bounded; every entry that concerns a sliver names its slice and, where
//! one exists, the responsible person and their authority.

use crate::merkle::Hash;
use serde::{Deserialize, Serialize};
use slicefed_trust::caps::Proto;
use slicefed_trust::codec::{self, CodecError};
use slicefed_trust::{CertId, ModuleHash, Name, PublicKey};
use std::net::SocketAddr;

/// Leaf format version.
pub const ENTRY_VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_BYTES: usize = 1 + 8 + 32 + 8;
/// Largest leaf: a `SliverCreated` carries a ticket credential (≤ 64 KiB).
pub const MAX_ENTRY_BYTES: usize = 96 * 1024;
/// Longest free-text field.
pub const MAX_TEXT_BYTES: usize = 1024;
/// Longest policy text kept in a `PolicyChanged`.
pub const MAX_POLICY_TEXT_BYTES: usize = 64 * 1024;

/// Why an entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Bad bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Too short for the header, or an unknown version.
    #[error("bad entry header: {0}")]
    Header(String),
    /// A field is out of bounds.
    #[error("entry field out of bounds: {0}")]
    Bounds(String),
}

/// Which sliver, of which slice, and who answers for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// The slice.
    pub slice: Name,
    /// The sliver's id on this node.
    pub sliver: u64,
    /// The responsible person (from the ticket chain).
    pub user: Option<Name>,
    /// Their authority.
    pub authority: Option<Name>,
}

/// Resources a sliver used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// Peak memory, bytes.
    pub peak_memory: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Flows opened.
    pub flows: u64,
}

/// Who opened a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// The sliver connected out (or sent a datagram).
    Outbound,
    /// Someone connected to the sliver's listener.
    Inbound,
}

/// The policy's verdict on a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Allowed by a rule.
    Allowed,
    /// Denied, with the reason.
    Denied(String),
}

/// One network flow of a sliver: the record an auditor maps a packet back through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Whose flow.
    pub who: Attribution,
    /// Protocol.
    pub proto: Proto,
    /// Who opened it.
    pub direction: Direction,
    /// The node-side address and port.
    pub local: SocketAddr,
    /// The other side.
    pub remote: SocketAddr,
    /// Allowed or denied.
    pub decision: Decision,
    /// Bytes the sliver sent.
    pub bytes_out: u64,
    /// Bytes the sliver received.
    pub bytes_in: u64,
    /// Writes / datagrams sent.
    pub packets_out: u64,
    /// Reads / datagrams received.
    pub packets_in: u64,
    /// First seen, unix ms.
    pub first_ms: u64,
    /// Last seen, unix ms.
    pub last_ms: u64,
}

/// What a log entry records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryBody {
    /// The node (re)started.
    NodeStarted {
        /// Its key.
        node: PublicKey,
        /// Its certified name, if known.
        name: Option<Name>,
        /// Software version.
        software: String,
        /// SHA-256 of the trust policy in force.
        policy: Hash,
    },
    /// A sliver was admitted and started.
    SliverCreated {
        /// Whose sliver.
        who: Attribution,
        /// The module it runs.
        module: ModuleHash,
        /// The ticket's id.
        ticket: CertId,
        /// The ticket credential (ticket and chain), so the log alone proves who asked.
        #[serde(with = "serde_bytes")]
        credential: Vec<u8>,
        /// The arguments and environment it runs with (the ticket signs their hash).
        invocation: slicefed_trust::Invocation,
    },
    /// A sliver stopped.
    SliverStopped {
        /// Whose sliver.
        who: Attribution,
        /// Why: `exited(0)`, `killed(memory)`, `revoked`, …
        reason: String,
        /// What it used in all.
        usage: Usage,
    },
    /// A network flow.
    Flow(FlowRecord),
    /// Periodic usage of a running sliver.
    ResourceUsage {
        /// Whose sliver.
        who: Attribution,
        /// Usage so far.
        usage: Usage,
    },
    /// A revocation reached this node.
    RevocationSeen {
        /// The revocation's envelope bytes.
        #[serde(with = "serde_bytes")]
        revocation: Vec<u8>,
        /// Slivers stopped because of it.
        stopped: Vec<u64>,
    },
    /// The node owner changed the trust policy.
    PolicyChanged {
        /// SHA-256 of the new policy text.
        policy: Hash,
        /// The policy text.
        text: String,
    },
    /// A checkpoint of another node's log that this node witnessed.
    PeerCheckpoint {
        /// The signed checkpoint's bytes.
        #[serde(with = "serde_bytes")]
        checkpoint: Vec<u8>,
    },
    /// The node owner acted directly (stopped a sliver, drained the node).
    OwnerAction {
        /// What was done.
        action: String,
        /// The sliver concerned, if any.
        who: Option<Attribution>,
    },
    /// A running sliver's ticket was replaced by a later one from the same holder for the
    /// same slice (its lifetime extended).
    SliverRenewed {
        /// Whose sliver.
        who: Attribution,
        /// The new ticket's id.
        ticket: CertId,
        /// The new ticket credential.
        #[serde(with = "serde_bytes")]
        credential: Vec<u8>,
    },
    /// Another node was shown to sign two inconsistent histories.
    EquivocationSeen {
        /// The proof's bytes (it verifies on its own).
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// A slice's holder ended it everywhere; this node holds the delete (and reads it back
    /// at start, so a sliver it ended is never restored).
    SliceDeleted {
        /// The delete file (the signed delete and its signer's chain).
        #[serde(with = "serde_bytes")]
        delete: Vec<u8>,
        /// Slivers stopped because of it.
        stopped: Vec<u64>,
    },
}

/// A decoded entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its index in the log.
    pub seq: u64,
    /// Leaf hash of the previous entry (zeros for the first).
    pub prev: Hash,
    /// When, unix milliseconds (the node's clock).
    pub time_ms: u64,
    /// What.
    pub body: EntryBody,
}

fn bounded(what: &str, s: &str, max: usize) -> Result<(), EntryError> {
    if s.len() > max {
        Err(EntryError::Bounds(format!(
            "{what} is {} bytes, at most {max}",
            s.len()
        )))
    } else {
        Ok(())
    }
}

impl EntryBody {
    fn validate(&self) -> Result<(), EntryError> {
        match self {
            EntryBody::NodeStarted { software, .. } => {
                bounded("software", software, MAX_TEXT_BYTES)
            }
            EntryBody::SliverStopped { reason, .. } => bounded("reason", reason, MAX_TEXT_BYTES),
            EntryBody::Flow(f) => match &f.decision {
                Decision::Denied(r) => bounded("denial reason", r, MAX_TEXT_BYTES),
                Decision::Allowed => Ok(()),
            },
            EntryBody::RevocationSeen { stopped, .. } | EntryBody::SliceDeleted { stopped, .. }
                if stopped.len() > 65_536 =>
            {
                Err(EntryError::Bounds("too many stopped slivers".into()))
            }
            EntryBody::PolicyChanged { text, .. } => {
                bounded("policy text", text, MAX_POLICY_TEXT_BYTES)
            }
            EntryBody::OwnerAction { action, .. } => bounded("action", action, MAX_TEXT_BYTES),
            EntryBody::SliverCreated { invocation, .. } => {
                invocation.validate().map_err(EntryError::Bounds)
            }
            _ => Ok(()),
        }
    }

    /// The sliver this entry concerns, if any.
    pub fn attribution(&self) -> Option<&Attribution> {
        match self {
            EntryBody::SliverCreated { who, .. }
            | EntryBody::SliverRenewed { who, .. }
            | EntryBody::SliverStopped { who, .. }
            | EntryBody::ResourceUsage { who, .. } => Some(who),
            EntryBody::Flow(f) => Some(&f.who),
            EntryBody::OwnerAction { who, .. } => who.as_ref(),
            _ => None,
        }
    }

    /// A short name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            EntryBody::NodeStarted { .. } => "node-started",
            EntryBody::SliverCreated { .. } => "sliver-created",
            EntryBody::SliverStopped { .. } => "sliver-stopped",
            EntryBody::Flow(_) => "flow",
            EntryBody::ResourceUsage { .. } => "resource-usage",
            EntryBody::RevocationSeen { .. } => "revocation-seen",
            EntryBody::PolicyChanged { .. } => "policy-changed",
            EntryBody::PeerCheckpoint { .. } => "peer-checkpoint",
            EntryBody::OwnerAction { .. } => "owner-action",
            EntryBody::SliverRenewed { .. } => "sliver-renewed",
            EntryBody::EquivocationSeen { .. } => "equivocation-seen",
            EntryBody::SliceDeleted { .. } => "slice-deleted",
        }
    }
}

/// The fixed header of a leaf, readable without decoding the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Index.
    pub seq: u64,
    /// Previous leaf hash.
    pub prev: Hash,
    /// Time, unix ms.
    pub time_ms: u64,
}

/// Reads the fixed header of leaf bytes.
pub fn header(bytes: &[u8]) -> Result<Header, EntryError> {
    let h = bytes.get(..HEADER_BYTES).ok_or_else(|| {
        EntryError::Header(format!("{} bytes, shorter than the header", bytes.len()))
    })?;
    let (version, rest) = h
        .split_first()
        .ok_or_else(|| EntryError::Header("empty".into()))?;
    if *version != ENTRY_VERSION {
        return Err(EntryError::Header(format!(
            "version {version}, expected {ENTRY_VERSION}"
        )));
    }
    let (seq, rest) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| EntryError::Header("short".into()))?;
    let (prev, rest) = rest
        .split_first_chunk::<32>()
        .ok_or_else(|| EntryError::Header("short".into()))?;
    let (time, _) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| EntryError::Header("short".into()))?;
    Ok(Header {
        seq: u64::from_le_bytes(*seq),
        prev: *prev,
        time_ms: u64::from_le_bytes(*time),
    })
}

impl Entry {
    /// The leaf bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        self.encode_reusing(Vec::new())
    }

    /// [`Entry::encode`] into a buffer the caller reuses (the ledger's writer encodes every
    /// entry through one scratch buffer instead of allocating twice per entry).
    pub fn encode_reusing(&self, mut out: Vec<u8>) -> Result<Vec<u8>, EntryError> {
        self.body.validate()?;
        out.clear();
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.prev);
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        let out = postcard::to_extend(&self.body, out).map_err(|e| CodecError::Encode {
            what: "ledger entry",
            detail: e.to_string(),
        })?;
        if out.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::Bounds(format!(
                "entry is {} bytes, at most {MAX_ENTRY_BYTES}",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Decodes leaf bytes: bounded, canonical, validated.
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(CodecError::TooLarge {
                what: "ledger entry",
                len: bytes.len(),
                max: MAX_ENTRY_BYTES,
            }
            .into());
        }
        let h = header(bytes)?;
        let body: EntryBody = codec::decode(
            "ledger entry",
            bytes.get(HEADER_BYTES..).unwrap_or_default(),
            MAX_ENTRY_BYTES,
        )?;
        body.validate()?;
        Ok(Entry {
            seq: h.seq,
            prev: h.prev,
            time_ms: h.time_ms,
            body,
        })
    }
}
