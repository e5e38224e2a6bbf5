//! # slicefed-peer
//!
//! The node of a slicefed federation.
//!
//! - [`core`]: the sans-IO node manager — which peers are members, whether a ticket is
//!   admitted (and the precise reason when it is not), which slivers expire, are revoked,
//!   deleted by their holder or stopped by the owner, renewals and restart recovery. It
//!   returns [`core::Output`]s for drivers to carry out.
//! - [`witness`]: the sans-IO witnessing logic — rendezvous assignment of k witnesses per
//!   log, verified page-by-page replication, cosigning, equivocation proofs.
//! - [`net`]: the libp2p swarm every node and client speaks (bounded codecs, validated
//!   gossip); [`wire`]: the signed and bounded messages carried over it.
//! - [`node`]: the daemon, a thin driver wiring core and witness to the swarm, the sandbox
//!   and the node's ledger; [`client`]: requests to nodes, for the CLI.
//!
//! Both state machines take time as an input and do no IO, so the same code runs in the
//! daemon and in the simulator.

pub mod admin;
pub mod client;
pub mod core;
pub mod ip_limits;
pub mod net;
pub mod node;
pub mod quota;
pub mod wire;
pub mod witness;
