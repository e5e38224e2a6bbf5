//! Ed25519 identities. A node's signing key is also its libp2p identity, so its [`PeerId`]
//! is derived here exactly as libp2p derives it (identity multihash of the protobuf-encoded
//! public key, base58btc), without depending on libp2p.
//!
//! Secret keys never appear in `Debug` output and are zeroized on drop.

use crate::bytes::byte_newtype;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

byte_newtype!(
    /// An ed25519 public key (32 bytes), shown as hex.
    PublicKey,
    32
);

/// The first line of a secret key file; the version lets the format evolve.
pub const SECRET_KEY_FILE_TAG: &str = "slicefed-ed25519-secret-key-v1";
/// Secret key files are tiny; anything longer is not one.
pub const MAX_SECRET_KEY_FILE_BYTES: usize = 256;

/// Why a key could not be created or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The operating system's random source failed.
    #[error("the system random source failed: {0}")]
    Random(String),
    /// A secret key file's contents are not a key.
    #[error("not a slicefed secret key file: {0}")]
    BadSecretKeyFile(String),
    /// A domain signature that does not verify.
    #[error("{0} signature does not verify")]
    BadSignature(String),
    /// 32 bytes that are not a valid ed25519 point.
    #[error("{0} is not a valid ed25519 public key")]
    BadPublicKey(String),
}

impl PublicKey {
    /// The dalek verifying key; fails for bytes that are not a curve point.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::BadPublicKey(self.to_hex()))
    }

    /// The libp2p PeerId of this key, as libp2p prints it (`12D3KooW…`).
    pub fn peer_id(&self) -> String {
        // protobuf PublicKey { Type = Ed25519 (1), Data = key } inside an identity multihash.
        let mut mh = Vec::with_capacity(38);
        mh.extend_from_slice(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
        mh.extend_from_slice(&self.0);
        bs58::encode(mh).into_string()
    }

    /// Parses a PeerId printed by [`PublicKey::peer_id`] back into the key.
    pub fn from_peer_id(s: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::BadPublicKey(s.chars().take(64).collect());
        if s.len() > 64 {
            return Err(bad());
        }
        let raw = bs58::decode(s).into_vec().map_err(|_| bad())?;
        match raw.split_first_chunk::<6>() {
            Some((prefix, key)) if prefix == &[0x00, 0x24, 0x08, 0x01, 0x12, 0x20] => {
                let key: [u8; 32] = key.try_into().map_err(|_| bad())?;
                let pk = PublicKey(key);
                pk.verifying_key()?;
                Ok(pk)
            }
            _ => Err(bad()),
        }
    }

    /// Verifies, with `verify_strict`, a signature made by [`SecretKey::sign_domain`].
    pub fn verify_domain(
        &self,
        domain: &str,
        message: &[u8],
        signature: &[u8; 64],
    ) -> Result<(), KeyError> {
        let key = self.verifying_key()?;
        key.verify_strict(
            &domain_message(domain, self, message),
            &Signature::from_bytes(signature),
        )
        .map_err(|_| KeyError::BadSignature(domain.to_string()))
    }

    /// Parses hex or a PeerId.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        if s.len() == 64 {
            let pk =
                PublicKey::from_hex(s).map_err(|e| KeyError::BadPublicKey(format!("{s} ({e})")))?;
            pk.verifying_key()?;
            Ok(pk)
        } else {
            Self::from_peer_id(s)
        }
    }
}

/// The signed message for a domain: the same layout as signed objects
/// (`context || tag || 0 || signer || message`), so no domain signature can be confused with
/// a signed object of another tag, or with one by another signer.
pub fn domain_message(domain: &str, signer: &PublicKey, message: &[u8]) -> Vec<u8> {
    let ctx = crate::objects::SIGNATURE_CONTEXT;
    let mut m = Vec::with_capacity(ctx.len() + domain.len() + 33 + message.len());
    m.extend_from_slice(ctx);
    m.extend_from_slice(domain.as_bytes());
    m.push(0);
    m.extend_from_slice(signer.as_bytes());
    m.extend_from_slice(message);
    m
}

/// An ed25519 signing key.
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {}, secret redacted)", self.public())
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// A key from a 32-byte seed (deterministic: tests and golden vectors use this).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The libp2p-compatible secret bytes (the 32-byte seed), for building the swarm identity.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.0.sign(message)
    }

    /// Signs `message` under a domain tag of another crate's (a ledger checkpoint, a
    /// cosignature). The tag must not be one of [`crate::Kind`]'s tags; see
    /// [`domain_message`].
    pub fn sign_domain(&self, domain: &str, message: &[u8]) -> [u8; 64] {
        self.0
            .sign(&domain_message(domain, &self.public(), message))
            .to_bytes()
    }

    /// The text of a secret key file: a tag line and the hex seed.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let seed = self.seed();
        Zeroizing::new(format!(
            "{SECRET_KEY_FILE_TAG}\n{}\n",
            hex::encode(seed.as_ref())
        ))
    }

    /// Parses the text of a secret key file, strictly.
    pub fn from_file_text(bytes: &[u8]) -> Result<Self, KeyError> {
        let bad = |why: &str| KeyError::BadSecretKeyFile(why.to_string());
        if bytes.len() > MAX_SECRET_KEY_FILE_BYTES {
            return Err(bad("file is too large to be a key"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not text"))?;
        let mut lines = text.lines();
        if lines.next() != Some(SECRET_KEY_FILE_TAG) {
            return Err(bad(&format!("first line is not `{SECRET_KEY_FILE_TAG}`")));
        }
        let seed_hex = lines.next().ok_or_else(|| bad("the key line is missing"))?;
        if lines.next().is_some() {
            return Err(bad("unexpected lines after the key"));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        if seed_hex.len() != 64 || hex::decode_to_slice(seed_hex, seed.as_mut()).is_err() {
            return Err(bad("the key line is not 64 hex digits"));
        }
        Ok(Self::from_seed(&seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_matches_libp2p() {
        for seed in [[1u8; 32], [7u8; 32], [200u8; 32]] {
            let sk = SecretKey::from_seed(&seed);
            let mut s = seed;
            let lk = libp2p_identity::Keypair::ed25519_from_bytes(&mut s).unwrap();
            assert_eq!(sk.public().peer_id(), lk.public().to_peer_id().to_string());
            assert_eq!(
                PublicKey::from_peer_id(&sk.public().peer_id()).unwrap(),
                sk.public()
            );
        }
    }

    #[test]
    fn key_file_round_trip_and_strictness() {
        let sk = SecretKey::generate().unwrap();
        let text = sk.to_file_text();
        let back = SecretKey::from_file_text(text.as_bytes()).unwrap();
        assert_eq!(back.public(), sk.public());
        assert!(SecretKey::from_file_text(b"garbage").is_err());
        assert!(SecretKey::from_file_text(&text.as_bytes()[..40]).is_err());
        let mut extra = text.to_string();
        extra.push_str("more\n");
        assert!(SecretKey::from_file_text(extra.as_bytes()).is_err());
        assert!(!format!("{sk:?}").contains(&text[SECRET_KEY_FILE_TAG.len() + 1..][..64]));
    }

    #[test]
    fn parse_accepts_hex_and_peer_id_only() {
        let pk = SecretKey::from_seed(&[3; 32]).public();
        assert_eq!(PublicKey::parse(&pk.to_hex()).unwrap(), pk);
        assert_eq!(PublicKey::parse(&pk.peer_id()).unwrap(), pk);
        assert!(PublicKey::parse("zz").is_err());
        assert!(PublicKey::parse(&"0".repeat(63)).is_err());
    }
}
