//! # slicefed-ledger
//!
//! The chain of responsibility: each node's signed, append-only Merkle log of what it did
//! and for whom, verifiable by anyone holding the node's public key.
//!
//! ## Layers
//! - **Core, no IO:** [`entry`] (what is logged), [`merkle`] (RFC 6962 tree, RFC 9162
//!   proofs), [`checkpoint`] (signed checkpoints, cosignatures, equivocation proofs),
//!   [`records`] (framing), [`replay`] (the one definition of a valid log).
//! - **Store:** [`store`] (segment files: the source of truth; group commit; recovery),
//!   [`index`] (sled: derived, rebuilt whenever missing or disagreeing, never trusted),
//!   [`source`] (reading node directories and export files for offline audit).
//!
//! ## Invariants
//! - An append is acknowledged only after the fdatasync of its batch.
//! - Every entry names its index and its predecessor's leaf hash, so tampering is located.
//! - Replay checks every entry, link and checkpoint signature, and locates the first fault.
//! - Everything decoded is bounded; everything queued is bounded.

pub mod bundle;
pub mod checkpoint;
pub mod entry;
#[doc(hidden)]
pub mod fixtures;
#[cfg(feature = "store")]
pub mod index;
pub mod merkle;
pub mod records;
pub mod replay;
#[cfg(feature = "store")]
pub mod source;
#[cfg(feature = "store")]
pub mod store;

pub use checkpoint::{Checkpoint, Cosignature, EquivocationProof, SignedCheckpoint};
pub use entry::{Attribution, Decision, Direction, Entry, EntryBody, FlowRecord, Usage};
pub use merkle::{Hash, Tree};
pub use replay::Report;
#[cfg(feature = "store")]
pub use store::{Appended, Ledger, LedgerError, LedgerOptions, Stats};
