//! # slicefed-trust
//!
//! Who may do what in a slicefed federation, as signed statements any node can check on its
//! own: authorities certify users, nodes and sub-authorities; users issue slice tickets and
//! delegate to services; authorities revoke. This replaces PlanetLab Central's database.
//!
//! ## Invariants
//! - **No IO, no clock.** Callers pass bytes and `now`; files, sockets and time live in
//!   drivers (the CLI, the node).
//! - **One codec** ([`codec`]): bounded, canonical, no trailing bytes.
//! - **Signatures before bodies.** An envelope's signature is checked with `verify_strict`
//!   over the received body bytes, under a domain tag unique to its kind, before the body is
//!   decoded ([`objects`]).
//! - **Delegation only narrows.** Every link of a chain is checked against what its issuer
//!   holds: namespace, rights, caps, network, nodes and validity ([`caps`], [`verify`]).
//! - **Everything held is bounded**: the verified-object cache, revocations, replay nonces.
//!
//! ## API boundary
//! Build objects with the body types in [`objects`] and [`objects::sign`]; check them with
//! [`verify::Verifier`]. Files are [`objects::Credential`]s: a leaf and its chain.

#[doc(hidden)]
pub mod bytes;
pub mod caps;
pub mod codec;
#[doc(hidden)]
pub mod fixtures;
pub mod keys;
pub mod names;
pub mod objects;
pub mod policy;
pub mod verify;

pub use caps::{
    ConnectRule, Grant, ListenRule, NetworkRights, NodeSet, PortRange, Proto, ResourceCaps, Rights,
    RuleSet, Validity,
};
pub use keys::{PublicKey, SecretKey};
pub use names::{Name, Pattern};
pub use objects::{
    CertId, Credential, Invocation, InvocationHash, Kind, ModuleHash, Nonce, Signed,
};
pub use policy::{TrustPolicy, TrustedAuthority};
pub use verify::{Context, JudgedDelete, SharedOpened, Verified, Verifier, VerifyError};
