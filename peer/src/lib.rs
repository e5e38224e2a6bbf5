//! # slicefed-peer
//!
//! The node of a slicefed federation: the IO around the protocol machines of
//! `slicefed-proto` (re-exported here as [`core`], [`witness`] and [`wire`]).
//!
//! - [`net`]: the libp2p swarm every node and client speaks (bounded codecs, validated
//!   gossip, per-address limits in [`ip_limits`]).
//! - [`node`]: the daemon, wiring the machines to the swarm, the sandbox, the node's ledger
//!   and files; [`admin`]: the owner's local channel; [`quota`]: request allowances;
//!   [`client`]: requests to nodes, for the CLI.
//!
//! The machines take time as an input and do no IO (their crate cannot: no IO crate is in
//! its dependency tree), so the same code runs in the daemon and in the simulator.

pub use slicefed_proto::{core, swim, wire, witness};

pub mod admin;
pub mod client;
pub mod ip_limits;
pub mod net;
pub mod node;
pub mod quota;
