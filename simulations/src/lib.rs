//! A deterministic simulator that runs slicefed's node logic at planetary scale.
//!
//! Every simulated node drives the same sans-IO state machines as the real daemon
//! (`slicefed_proto::core::NodeCore`, `slicefed_proto::witness::{Witness, WitnessSet}`),
//! with real keys, certificates, tickets, revocations and log entries, over a simulated
//! network (geographic latency, loss, partitions, churn) and a simulated clock. The
//! scenarios in [`scenario`] reproduce PlanetLab's scale (a thousand nodes at three hundred
//! sites, hundreds of research groups, a large share of nodes down at any moment) and the
//! attacks slicefed is built to survive; [`report`] writes what they measured.
//!
//! Invariants:
//! - Deterministic: a run is a pure function of its [`sim::Config`] (seed included). No
//!   wall clock, no thread, no iteration over randomly ordered maps; the trace hash
//!   [`sim::Sim::run`] returns is equal for equal configurations (a test checks it).
//! - The node logic is not reimplemented: decisions (membership, admission, expiry,
//!   revocation, witnessing, equivocation) are the peer crate's; this crate only carries
//!   their outputs through simulated time and space, as `peer::node` carries them through
//!   real ones. Where it takes a shortcut, `sim` says which and why it changes no decision.
//! - Bounded: everything grows with the configured world and time, nothing with chance.

pub mod geo;
pub mod metrics;
pub mod net;
pub mod network;
pub mod observe;
pub mod plot;
pub mod report;
pub mod researchers;
pub mod router;
pub mod scenario;
pub mod sim;
pub mod sybils;
pub mod world;
