//! # slicefed-proto
//!
//! The node's protocol logic as sans-IO state machines, in a crate the compiler keeps free of
//! IO: no tokio, libp2p, wasmtime or storage engine is in its dependency tree
//! (`peer/tests/boundary.rs` checks it). The daemon (`slicefed-peer`) and the planetary
//! simulator (`slicefed-simulations`) both drive these same machines.
//!
//! - [`core`]: the node manager (membership, admission, expiry, revocation, restore).
//! - [`witness`]: which logs a node replicates, page verification, cosigning, equivocation
//!   proofs, hand-over.
//! - [`wire`]: every message a node sends or receives, bounded and canonical.
//! - [`witnessing`]: a node's whole part in witnessing (its own checkpoints, notes from
//!   members, fetches, cosignatures and who gets them, hand-over), on top of [`witness`].
//! - [`swim`]: liveness by SWIM (the `foca` crate) over certified members, behind a filter
//!   that lets no single member get another removed.
//! - [`node`]: the node as one machine over all of these (requests, answers, gossip,
//!   catch-ups, restore after a restart, and what waits for which ledger write); the
//!   daemon and the simulator are routers over it.
//!
//! Invariants: every call takes the time as an argument and returns what to do; nothing
//! here reads a clock, a file or a socket; every table is bounded.

pub mod core;
pub mod node;
pub mod swim;
pub mod wire;
pub mod witness;
pub mod witnessing;

/// Largest request a node reads (a ticket credential with its module).
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Largest response a node sends.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;
