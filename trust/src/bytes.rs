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

/// Lexicographic comparison of two byte strings of one length, a word at a time.
#[inline]
pub fn compare<const N: usize>(a: &[u8; N], b: &[u8; N]) -> std::cmp::Ordering {
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (wa.remainder(), wb.remainder());
    for (x, y) in wa.zip(wb) {
        let (mut xa, mut ya) = ([0u8; 8], [0u8; 8]);
        xa.copy_from_slice(x);
        ya.copy_from_slice(y);
        match u64::from_be_bytes(xa).cmp(&u64::from_be_bytes(ya)) {
            std::cmp::Ordering::Equal => {}
            other => return other,
        }
    }
    ra.cmp(rb)
}

/// Declares a fixed-size byte newtype with hex Display/Debug and dual serde.
#[macro_export]
macro_rules! byte_newtype {
    ($(#[$m:meta])* $name:ident, $n:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub [u8; $n]);

        // Byte-wise lexicographic order, compared eight bytes at a time (big-endian words
        // order exactly as their bytes do): these are the keys of every member and
        // revocation map, and a derived order calls `memcmp` for each comparison.
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                $crate::bytes::compare(&self.0, &other.0)
            }
        }
        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

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

#[cfg(test)]
mod tests {
    use super::compare;

    #[test]
    fn word_order_is_byte_order() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut a = [0u8; 33];
            let mut b = [0u8; 33];
            for i in 0..33 {
                a[i] = (next() % 4) as u8;
                b[i] = (next() % 4) as u8;
            }
            assert_eq!(compare(&a, &b), a.as_slice().cmp(b.as_slice()));
            let mut c = [0u8; 32];
            let mut d = [0u8; 32];
            c.copy_from_slice(&a[..32]);
            d.copy_from_slice(&b[..32]);
            assert_eq!(compare(&c, &d), c.as_slice().cmp(d.as_slice()));
        }
    }
}
