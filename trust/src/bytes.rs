//! Fixed-size byte strings that are raw bytes in the binary codec and lowercase hex in
//! human-readable formats (JSON output, TOML policies), so `cert show --json` is readable
//! while signed bytes stay compact.

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserializer, Serializer};
use std::fmt;

pub fn serialize<S: Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&hex::encode(bytes))
    } else {
        let mut t = s.serialize_tuple(N)?;
        for b in bytes {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    if d.is_human_readable() {
        let s: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
        parse_hex::<N>(&s).map_err(D::Error::custom)
    } else {
        struct Raw<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for Raw<N> {
            type Value = [u8; N];
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = [0u8; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(N, Raw::<N>)
    }
}

/// Parses exactly `2 * N` hex digits.
pub fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    if s.len() != 2 * N {
        return Err(format!("expected {} hex digits, found {}", 2 * N, s.len()));
    }
    hex::decode_to_slice(s, &mut out).map_err(|e| format!("not hex: {e}"))?;
    Ok(out)
}

/// Declares a fixed-size byte newtype with hex Display/Debug and dual serde.
#[macro_export]
macro_rules! byte_newtype {
    ($(#[$m:meta])* $name:ident, $n:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }
            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// Parses exactly the right number of hex digits.
            pub fn from_hex(s: &str) -> Result<Self, String> {
                $crate::bytes::parse_hex::<$n>(s.trim()).map(Self)
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::bytes::serialize(&self.0, s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::bytes::deserialize::<D, $n>(d).map(Self)
            }
        }
    };
}
pub use byte_newtype;
