//! # slicefed-peer
//!
//! The node of a slicefed federation. Built so far: [`core`], the sans-IO state machine
//! that holds the node manager's decisions — which peers are members, whether a ticket is
//! admitted (and the precise reason when it is not), which slivers expire or are revoked —
//! and returns them as [`core::Output`]s for drivers to carry out (sandbox commands, ledger
//! appends, signed receipts, gossip). It takes time as an input and does no IO, so the same
//! code runs in the node daemon and in the simulator.
//!
//! [`net`] builds the libp2p swarm every node speaks (bounded codecs, validated gossip);
//! [`wire`] holds the signed messages carried over it (so far: node adverts).
//!
//! Not built yet (issue #5): the wire messages, the daemon wiring core + net + sandbox +
//! ledger (`node`), witnessing and ledger replication.

pub mod core;
pub mod net;
pub mod node;
pub mod wire;
pub mod witness;
