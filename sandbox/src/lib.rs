//! # slicefed-sandbox
//!
//! The sliver is the unit of isolation: many slivers of different slices on one node, each
//! a WASI preview 2 component in its own wasmtime `Store`, unable to hurt the others or the
//! node beyond its share, each using plain WASI, every network use decided by its slice's
//! rules and recorded.
//!
//! ## Invariants
//! - One engine per node ([`Sandbox`]); slivers run on their own runtime, apart from the
//!   control plane; an epoch ticker drives preemption.
//! - Precompiled components are cached in a node-private directory keyed by module hash and
//!   the engine's compatibility hash; nothing a sliver or a peer could write is deserialized.
//! - Memory is capped over the sum of all memories and tables; CPU is shared by weight;
//!   handles, randomness and logs are bounded per sliver ([`sliver`]).
//! - Every connect, accept and datagram destination is decided by policy and becomes a flow
//!   record ([`net`]).

pub mod engine;
pub mod logs;
pub mod meter;
pub mod net;
pub mod sliver;
pub mod sockets;

pub use engine::{Compiled, Compiler, Sandbox, SandboxConfig, SandboxError};
pub use logs::LogBuffer;
pub use net::{CollectFlows, FlowSink, HostRules, LedgerFlows, NoFlows, SharedHostRules};
pub use sliver::{KillReason, Outcome, SliverHandle, SliverSpec, Stdio, Usage};

/// The guest slivers built with this crate (examples and hostile programs for tests).
pub mod guests {
    use std::path::PathBuf;

    /// Names of the guests built.
    pub const ALL: [&str; 14] = [
        "hello",
        "cpu_hog",
        "memory_bomb",
        "stack_overflow",
        "tcp_client",
        "tcp_echo",
        "forbidden_connect",
        "log_spammer",
        "sleeper",
        "prober",
        "idle_toucher",
        "net_hog",
        "web_server",
        "sensors_reader",
    ];

    /// Path of a built guest component.
    pub fn path(name: &str) -> PathBuf {
        PathBuf::from(env!("SLICEFED_GUESTS_DIR")).join(format!("{name}.wasm"))
    }

    /// The example sliver `slicefed devnet` deploys, built into the binary so the command
    /// works wherever the binary is.
    pub const PROBER: &[u8] = include_bytes!(concat!(env!("SLICEFED_GUESTS_DIR"), "/prober.wasm"));

    /// The example that prints its arguments and environment, built into the binary.
    pub const HELLO: &[u8] = include_bytes!(concat!(env!("SLICEFED_GUESTS_DIR"), "/hello.wasm"));

    /// Bytes of a built guest component.
    pub fn bytes(name: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(path(name))
    }
}
