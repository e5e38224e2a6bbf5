//! The one canonical codec for everything slicefed signs or stores.
//!
//! Invariant: a value decodes only from the exact bytes `encode` produces for it. Decoding is
//! bounded by a byte limit checked before any work, rejects trailing bytes, and re-encodes the
//! value to reject any non-canonical form (over-long varints and the like), so one value has
//! one byte string and signatures and hashes over bytes mean the same thing everywhere.

use serde::{Serialize, de::DeserializeOwned};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input is larger than the limit for its kind.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not a valid encoding.
    #[error("{what} is malformed or truncated ({detail})")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's description.
        detail: String,
    },
    /// A valid value was followed by more bytes.
    #[error("{what} has {extra} trailing bytes after a complete value")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// The value decoded, but from bytes that are not its canonical encoding.
    #[error("{what} is not canonically encoded")]
    NonCanonical {
        /// What was being decoded.
        what: &'static str,
    },
    /// A value failed a semantic bound after decoding (a count, a length).
    #[error("{what} is invalid: {detail}")]
    Invalid {
        /// What was being decoded.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Encoding failed; only possible for types the codec does not support, i.e. a bug.
    #[error("cannot encode {what}: {detail}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's description.
        detail: String,
    },
}

/// Encodes a value canonically.
pub fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_allocvec(value).map_err(|e| CodecError::Encode {
        what,
        detail: e.to_string(),
    })
}

/// The length of [`encode`]'s output, computed without making it (a router that only
/// counts bytes, such as the simulator, need not allocate and copy every message).
pub fn encoded_len<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<usize, CodecError> {
    postcard::experimental::serialized_size(value).map_err(|e| CodecError::Encode {
        what,
        detail: e.to_string(),
    })
}

/// Decodes exactly one canonical value of at most `max` bytes.
pub fn decode<T: Serialize + DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, CodecError> {
    if bytes.len() > max {
        return Err(CodecError::TooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| CodecError::Malformed {
            what,
            detail: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes {
            what,
            extra: rest.len(),
        });
    }
    if encode(what, &value)? != bytes {
        return Err(CodecError::NonCanonical { what });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v: (u32, String) = (300, "x".into());
        let b = encode("t", &v).unwrap();
        assert_eq!(decode::<(u32, String)>("t", &b, 64).unwrap(), v);
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut b = encode("t", &7u32).unwrap();
        b.push(0);
        assert_eq!(
            decode::<u32>("t", &b, 64),
            Err(CodecError::TrailingBytes {
                what: "t",
                extra: 1
            })
        );
    }

    #[test]
    fn rejects_overlong_varint() {
        // 1 encoded as a two-byte varint: the decoder accepts it, canonicality does not.
        assert_eq!(
            decode::<u32>("t", &[0x81, 0x00], 64),
            Err(CodecError::NonCanonical { what: "t" })
        );
    }

    #[test]
    fn rejects_oversized_before_decoding() {
        let b = vec![0u8; 65];
        assert!(matches!(
            decode::<Vec<u8>>("t", &b, 64),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_truncated() {
        let b = encode("t", &"hello".to_string()).unwrap();
        assert!(matches!(
            decode::<String>("t", &b[..3], 64),
            Err(CodecError::Malformed { .. })
        ));
    }
}
