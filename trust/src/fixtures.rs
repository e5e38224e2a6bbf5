//! Deterministic keys and chains for tests, benchmarks, golden vectors and the simulator.
//! Nothing here is used by production code paths; seeds are public, so never use these keys.

use crate::caps::{Grant, NetworkRights, NodeSet, ResourceCaps, Rights, Validity};
use crate::keys::SecretKey;
use crate::names::{Name, Pattern};
use crate::objects::{self, AuthorityCert, ModuleHash, Nonce, ObjectError, SliceTicket, UserCert};
use crate::policy::{TrustPolicy, TrustedAuthority};

/// A fixed time all fixtures are valid around: 2026-01-01T00:00:00Z.
pub const T0: u64 = 1_767_225_600;
/// One day.
pub const DAY: u64 = 86_400;

/// A deterministic key from a small number.
pub fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

/// A name from text known to be valid.
pub fn name(s: &str) -> Name {
    Name::parse(s).unwrap_or_else(|_| Name::parse("invalid").unwrap_or_else(|_| unreachable!()))
}

/// A policy trusting `key` as authority `name` for its own namespace.
pub fn policy_for(authorities: &[(&str, &SecretKey)]) -> TrustPolicy {
    TrustPolicy::new(
        authorities
            .iter()
            .map(|(n, k)| TrustedAuthority {
                name: name(n),
                key: k.public(),
                namespaces: vec![name(n)],
                caps: ResourceCaps::default(),
                network: NetworkRights::INHERIT,
            })
            .collect(),
    )
    .unwrap_or_default()
}

/// A grant of `rights` for a year from [`T0`] with no other restriction.
pub fn open_grant(rights: Rights) -> Grant {
    Grant {
        rights,
        caps: ResourceCaps::default(),
        network: NetworkRights::INHERIT,
        nodes: NodeSet::AnyTrusting,
        validity: Validity::starting(T0 - DAY, 365 * DAY),
    }
}

/// A user certificate from `authority` for `user` named `name`.
pub fn user_cert(
    authority: &SecretKey,
    user: &SecretKey,
    user_name: &str,
    slices: &str,
) -> Result<Vec<u8>, ObjectError> {
    let body = UserCert {
        subject: user.public(),
        name: name(user_name),
        slices: Pattern::parse(slices).unwrap_or(Pattern::Exact(name("invalid"))),
        grant: open_grant(Rights::CREATE.union(Rights::DELEGATE)),
    };
    Ok(objects::sign(authority, &body)?.bytes)
}

/// A sub-authority certificate.
pub fn authority_cert(
    parent: &SecretKey,
    child: &SecretKey,
    namespace: &str,
) -> Result<Vec<u8>, ObjectError> {
    let body = AuthorityCert {
        subject: child.public(),
        namespace: name(namespace),
        grant: open_grant(Rights::ALL),
    };
    Ok(objects::sign(parent, &body)?.bytes)
}

/// A ticket for `slice` on any trusting node, issued at [`T0`], nonce from `n`.
pub fn ticket_body(slice: &str, n: u8) -> SliceTicket {
    SliceTicket {
        slice: name(slice),
        module: ModuleHash::of(b"module"),
        invocation: objects::Invocation::default().hash(),
        caps: ResourceCaps {
            memory: Some(64 << 20),
            cpu_share: Some(1),
            max_slivers: None,
            egress_per_day: None,
        },
        network: NetworkRights::none(),
        nodes: NodeSet::AnyTrusting,
        validity: Validity::starting(T0, DAY),
        issued_at: T0,
        nonce: Nonce([n; 16]),
    }
}

/// A policy, a leaf's envelope bytes, and the chain that supports it.
pub type Chain = (TrustPolicy, Vec<u8>, Vec<Vec<u8>>);

/// The standard 3-link chain: root `princeton` → sub-authority `princeton.cs` → user
/// `princeton.cs.alice` → ticket for `princeton.cs.codeen`. Returns (policy, ticket, pool).
pub fn three_link_chain() -> Result<Chain, ObjectError> {
    let (root, sub, alice) = (key(1), key(2), key(3));
    let policy = policy_for(&[("princeton", &root)]);
    let sub_cert = authority_cert(&root, &sub, "princeton.cs")?;
    let user = user_cert(&sub, &alice, "princeton.cs.alice", "princeton.cs.*")?;
    let ticket = objects::sign(&alice, &ticket_body("princeton.cs.codeen", 1))?.bytes;
    Ok((policy, ticket, vec![user, sub_cert]))
}

/// A revocation file by `revoker` of the leaf of `target` (a credential: the revoked
/// object, then its chain).
pub fn revocation_file(
    revoker: &SecretKey,
    target: &objects::Credential,
    reason: &str,
    at: u64,
) -> Result<Vec<u8>, ObjectError> {
    let r = objects::sign(
        revoker,
        &objects::Revocation {
            target: objects::CertId::of(target.leaf()),
            reason: reason.into(),
            revoked_at: at,
        },
    )?;
    Ok(objects::Credential::revocation_file(r.bytes, target).to_bytes()?)
}
