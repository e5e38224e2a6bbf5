//! Messages nodes exchange, as signed canonical objects.
//!
//! Invariants: each message kind has its own signature domain (never shared with trust's
//! object kinds or the ledger's); decoding is bounded and canonical (the trust codec); the
//! signature is checked before the body is trusted, and the signer must be the libp2p peer
//! the message came from or that published it.

use crate::core::Load;
use serde::{Deserialize, Serialize};
use slicefed_trust::codec::{self, CodecError};
use slicefed_trust::{PublicKey, SecretKey};

/// Signature domain of adverts.
pub const ADVERT_DOMAIN: &str = "slicefed/node-advert";
/// Largest encoded advert (a node credential is at most a few KiB).
pub const MAX_ADVERT_BYTES: usize = 16 * 1024;
/// Most tags in an advert.
pub const MAX_TAGS: usize = 16;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Bad bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The signature does not verify.
    #[error("the {0} is not signed by the node it names")]
    Signature(&'static str),
    /// A field is out of bounds.
    #[error("the {what} is invalid: {why}")]
    Invalid {
        /// The message kind.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// What a node says about itself every few seconds (PlanetLab's sensors and CoMon).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertBody {
    /// The node.
    pub node: PublicKey,
    /// Its node credential (node certificate and chain), as a credential file.
    #[serde(with = "serde_bytes")]
    pub credential: Vec<u8>,
    /// Slivers running.
    pub slivers: u32,
    /// Memory free for slivers.
    pub free_memory: u64,
    /// One-minute load average × 100.
    pub load_x100: u32,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Software version.
    pub version: String,
    /// Free-form tags the owner sets (`gpu`, `eu-west`).
    pub tags: Vec<String>,
    /// When it was made, unix ms (a node ignores adverts older than the newest it has).
    pub time_ms: u64,
}

/// A signed advert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    /// The body.
    pub body: AdvertBody,
    /// The node's signature over the body's encoding.
    pub signature: serde_bytes::ByteArray<64>,
}

impl AdvertBody {
    fn validate(&self) -> Result<(), WireError> {
        let bad = |why: String| {
            Err(WireError::Invalid {
                what: "advert",
                why,
            })
        };
        if self.version.len() > 64 {
            return bad("version longer than 64 bytes".into());
        }
        if self.tags.len() > MAX_TAGS || self.tags.iter().any(|t| t.len() > 64) {
            return bad(format!("more than {MAX_TAGS} tags or a tag over 64 bytes"));
        }
        Ok(())
    }

    /// The load part, for the core.
    pub fn load(&self) -> Load {
        Load {
            slivers: self.slivers,
            free_memory: self.free_memory,
        }
    }

    /// Signs with the node's key.
    pub fn sign(self, key: &SecretKey) -> Result<Advert, WireError> {
        self.validate()?;
        if key.public() != self.node {
            return Err(WireError::Signature("advert"));
        }
        let bytes = codec::encode("advert", &self)?;
        Ok(Advert {
            signature: serde_bytes::ByteArray::new(key.sign_domain(ADVERT_DOMAIN, &bytes)),
            body: self,
        })
    }
}

impl Advert {
    /// Encodes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        Ok(codec::encode("advert", self)?)
    }

    /// Decodes (bounded, canonical), checks the node's signature and the bounds.
    pub fn from_bytes(bytes: &[u8]) -> Result<Advert, WireError> {
        let a: Advert = codec::decode("advert", bytes, MAX_ADVERT_BYTES)?;
        let body = codec::encode("advert", &a.body)?;
        a.body
            .node
            .verify_domain(ADVERT_DOMAIN, &body, &a.signature)
            .map_err(|_| WireError::Signature("advert"))?;
        a.body.validate()?;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicefed_trust::fixtures::key;

    fn advert() -> AdvertBody {
        AdvertBody {
            node: key(5).public(),
            credential: vec![1, 2, 3],
            slivers: 2,
            free_memory: 1 << 30,
            load_x100: 50,
            uptime_secs: 60,
            version: "0.1.0".into(),
            tags: vec!["eu-west".into()],
            time_ms: 1,
        }
    }

    #[test]
    fn adverts_round_trip_and_every_byte_flip_is_refused() {
        let bytes = advert().sign(&key(5)).unwrap().to_bytes().unwrap();
        assert_eq!(Advert::from_bytes(&bytes).unwrap().body, advert());
        for i in 0..bytes.len() {
            let mut m = bytes.clone();
            m[i] ^= 0x01;
            assert!(
                Advert::from_bytes(&m).is_err(),
                "byte {i} flipped and accepted"
            );
        }
    }

    #[test]
    fn only_the_node_itself_signs_its_advert() {
        assert_eq!(
            advert().sign(&key(6)).unwrap_err(),
            WireError::Signature("advert")
        );
        // A signature under another domain does not pass as an advert.
        let body = advert();
        let enc = codec::encode("advert", &body).unwrap();
        let forged = Advert {
            signature: serde_bytes::ByteArray::new(
                key(5).sign_domain("slicefed/ledger-checkpoint", &enc),
            ),
            body,
        };
        assert!(Advert::from_bytes(&forged.to_bytes().unwrap()).is_err());
        let mut long = advert();
        long.tags = vec!["t".into(); MAX_TAGS + 1];
        assert!(long.sign(&key(5)).is_err());
    }
}
