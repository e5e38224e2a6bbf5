//! The simulated federation's people and machines: authorities, their nodes and research
//! groups, with real keys and real signed certificates (only the seeds are simulated).

use crate::geo::{self, Place};
use rand::SeedableRng;
use sha2::{Digest, Sha256};
use slicefed_trust::caps::{ResourceCaps, Validity};
use slicefed_trust::fixtures::{DAY, T0};
use slicefed_trust::objects::{self, NodeCert};
use slicefed_trust::{
    CertId, Credential, Name, PublicKey, SecretKey, TrustPolicy, TrustedAuthority,
};
use std::collections::BTreeMap;

/// The simulation's wall clock starts here (unix ms): every certificate is valid around it.
pub const START_MS: u64 = T0 * 1000;

/// Why a world could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// Signing or encoding failed (it never should with generated names).
    #[error("building the world: {0}")]
    Build(String),
}

/// Who certifies people and machines.
pub struct Authority {
    /// Its name (PlanetLab's site).
    pub name: Name,
    /// Its root key.
    pub key: SecretKey,
    /// Where it is.
    pub place: Place,
}

/// A machine: honest members are certified by a trusted authority; Sybils by one nobody
/// trusts.
pub struct NodeSpec {
    /// Its key (also its libp2p identity).
    pub key: SecretKey,
    /// Its public key.
    pub public: PublicKey,
    /// Its certifying authority (an index into `World::authorities`; Sybils: none).
    pub authority: Option<usize>,
    /// Its node credential file bytes (shared: every node that admits it keeps a reference).
    pub credential: std::sync::Arc<[u8]>,
    /// Their hash, as adverts name them.
    pub credential_hash: [u8; 32],
    /// Where it is.
    pub place: Place,
}

/// A research group: one person who creates its slices.
pub struct Group {
    /// Its authority.
    pub authority: usize,
    /// The researcher's key.
    pub key: SecretKey,
    /// The researcher's certificate (envelope bytes).
    pub user_cert: Vec<u8>,
    /// Its id, as revocations name it.
    pub user_cert_id: CertId,
    /// Where the researcher sits.
    pub place: Place,
    /// Prefix of its slices' names.
    pub slice_prefix: String,
}

/// Everyone.
pub struct World {
    /// Authorities, all trusted by every honest node.
    pub authorities: Vec<Authority>,
    /// Honest nodes first (`0..honest`), then Sybils.
    pub nodes: Vec<NodeSpec>,
    /// Honest nodes.
    pub honest: usize,
    /// Research groups.
    pub groups: Vec<Group>,
    /// The policy every honest node runs.
    pub policy: TrustPolicy,
    /// Node index by key.
    pub index: BTreeMap<PublicKey, usize>,
    /// Node index by credential hash.
    pub by_credential: BTreeMap<[u8; 32], usize>,
}

impl World {
    /// The world's copy of the credential with this hash, if a node has it.
    pub fn credential_by_hash(&self, hash: &[u8; 32]) -> Option<std::sync::Arc<[u8]>> {
        let i = *self.by_credential.get(hash)?;
        self.nodes.get(i).map(|n| n.credential.clone())
    }
}

/// A key derived from the run's seed and a label: the same seed, the same people.
pub fn derived_key(seed: u64, label: &str, i: usize) -> SecretKey {
    let mut h = Sha256::new();
    h.update(b"slicefed-simulations\0");
    h.update(seed.to_le_bytes());
    h.update(label.as_bytes());
    h.update((i as u64).to_le_bytes());
    SecretKey::from_seed(&h.finalize().into())
}

fn name(text: &str) -> Result<Name, WorldError> {
    Name::parse(text).map_err(|e| WorldError::Build(e.to_string()))
}

fn node_credential(
    authority: &SecretKey,
    node: &SecretKey,
    node_name: &str,
) -> Result<Vec<u8>, WorldError> {
    let cert = objects::sign(
        authority,
        &NodeCert {
            subject: node.public(),
            name: name(node_name)?,
            validity: Validity::starting(T0 - DAY, 365 * DAY),
        },
    )
    .map_err(|e| WorldError::Build(e.to_string()))?;
    Credential::new(cert.bytes, [])
        .to_bytes()
        .map_err(|e| WorldError::Build(e.to_string()))
}

impl World {
    /// `nodes` honest nodes spread over `authorities`, `groups` research groups, and
    /// `sybils` machines certified by an authority nobody trusts.
    pub fn build(
        seed: u64,
        nodes: usize,
        authorities: usize,
        groups: usize,
        sybils: usize,
    ) -> Result<World, WorldError> {
        let authorities = authorities.max(1);
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed ^ 0x5eed_0f0a_u64);
        let auths: Vec<Authority> = (0..authorities)
            .map(|i| {
                Ok(Authority {
                    name: name(&format!("site{i:03}"))?,
                    key: derived_key(seed, "authority", i),
                    place: geo::place(&mut rng),
                })
            })
            .collect::<Result<_, WorldError>>()?;
        let policy = TrustPolicy::new(
            auths
                .iter()
                .map(|a| TrustedAuthority {
                    name: a.name.clone(),
                    key: a.key.public(),
                    namespaces: vec![a.name.clone()],
                    caps: ResourceCaps::default(),
                    network: slicefed_trust::NetworkRights::INHERIT,
                })
                .collect(),
        )
        .map_err(|e| WorldError::Build(e.to_string()))?;
        let mut specs = Vec::with_capacity(nodes + sybils);
        for i in 0..nodes {
            let a = i % authorities;
            let auth = auths
                .get(a)
                .ok_or_else(|| WorldError::Build("no authority".into()))?;
            let key = derived_key(seed, "node", i);
            let credential = node_credential(
                &auth.key,
                &key,
                &format!("{}.node{}", auth.name, i / authorities),
            )?;
            specs.push(NodeSpec {
                public: key.public(),
                key,
                authority: Some(a),
                credential_hash: slicefed_proto::core::credential_hash(&credential),
                credential: credential.into(),
                place: auth.place,
            });
        }
        // Sybils: real keys, real certificates, from a root no policy names.
        let rogue = derived_key(seed, "rogue-authority", 0);
        for i in 0..sybils {
            let key = derived_key(seed, "sybil", i);
            let credential = node_credential(&rogue, &key, &format!("rogue.node{i}"))?;
            specs.push(NodeSpec {
                public: key.public(),
                key,
                authority: None,
                credential_hash: slicefed_proto::core::credential_hash(&credential),
                credential: credential.into(),
                place: geo::place(&mut rng),
            });
        }
        let groups = (0..groups)
            .map(|g| {
                let a = g % authorities;
                let auth = auths
                    .get(a)
                    .ok_or_else(|| WorldError::Build("no authority".into()))?;
                let key = derived_key(seed, "researcher", g);
                let user = format!("{}.g{}", auth.name, g / authorities);
                let user_cert = slicefed_trust::fixtures::user_cert(
                    &auth.key,
                    &key,
                    &user,
                    &format!("{}.*", auth.name),
                )
                .map_err(|e| WorldError::Build(e.to_string()))?;
                Ok(Group {
                    authority: a,
                    user_cert_id: CertId::of(&user_cert),
                    user_cert,
                    key,
                    place: auth.place,
                    slice_prefix: format!("{}.g{}s", auth.name, g / authorities),
                })
            })
            .collect::<Result<_, WorldError>>()?;
        let index = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.public, i))
            .collect();
        let by_credential = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.credential_hash, i))
            .collect();
        Ok(World {
            by_credential,
            authorities: auths,
            nodes: specs,
            honest: nodes,
            groups,
            policy,
            index,
        })
    }
}
