//! Record framing shared by segment files and export files:
//! `len (u32 LE) || crc32c (u32 LE) || kind (u8) || payload`, where `len` counts
//! `kind || payload` and the CRC covers the same bytes.
//!
//! Invariant: a record is accepted only if its length is within bounds, its bytes are all
//! present and its CRC matches; zero-length records are invalid, so a zero-filled region
//! (a common torn-write result) never parses as records.

use crate::entry::MAX_ENTRY_BYTES;
use slicefed_trust::PublicKey;

/// An entry's leaf bytes.
pub const KIND_ENTRY: u8 = 1;
/// A signed checkpoint of the log so far.
pub const KIND_CHECKPOINT: u8 = 2;
/// Bytes of framing before the kind byte.
pub const FRAME_BYTES: usize = 8;
/// Largest `kind || payload`.
pub const MAX_RECORD_BYTES: usize = MAX_ENTRY_BYTES + 1;
/// Size of a file header: 8 bytes of magic and the origin key.
pub const FILE_HEADER_BYTES: usize = 40;
/// Magic of a segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"sfseg1\0\0";
/// Magic of an export file.
pub const EXPORT_MAGIC: [u8; 8] = *b"sfexp1\0\0";

/// One framed record.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Offset of the frame in its file.
    pub offset: usize,
    /// [`KIND_ENTRY`] or [`KIND_CHECKPOINT`].
    pub kind: u8,
    /// The payload.
    pub payload: &'a [u8],
}

/// Where and why framing stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    /// Offset of the first bad frame.
    pub offset: usize,
    /// What is wrong.
    pub why: String,
}

/// Frames a record.
pub fn frame(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() + 1) as u32;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

/// Parses one frame at `offset`.
pub fn parse_one(bytes: &[u8], offset: usize) -> Result<(Record<'_>, usize), FrameError> {
    let bad = |why: String| FrameError { offset, why };
    let rest = bytes.get(offset..).unwrap_or_default();
    let Some((len, rest)) = rest.split_first_chunk::<4>() else {
        return Err(bad(format!(
            "{} bytes left, too few for a frame header (torn write?)",
            rest.len()
        )));
    };
    let Some((crc, rest)) = rest.split_first_chunk::<4>() else {
        return Err(bad("frame header cut short (torn write?)".into()));
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len == 0 || len > MAX_RECORD_BYTES {
        return Err(bad(format!(
            "record length {len} is outside 1..={MAX_RECORD_BYTES}"
        )));
    }
    let Some(body) = rest.get(..len) else {
        return Err(bad(format!(
            "record of {len} bytes cut short at {} (torn write?)",
            rest.len()
        )));
    };
    if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
        return Err(bad("checksum mismatch".into()));
    }
    let Some((kind, payload)) = body.split_first() else {
        return Err(bad("empty record".into()));
    };
    if *kind != KIND_ENTRY && *kind != KIND_CHECKPOINT {
        return Err(bad(format!("unknown record kind {kind}")));
    }
    Ok((
        Record {
            offset,
            kind: *kind,
            payload,
        },
        offset + FRAME_BYTES + len,
    ))
}

/// Parses frames from `start` until the end or the first bad frame.
pub fn parse_all(bytes: &[u8], start: usize) -> (Vec<Record<'_>>, Option<FrameError>) {
    // Sized for typical records (~150 bytes) so a million-entry log is not copied while the
    // vector grows.
    let mut out = Vec::with_capacity(bytes.len() / 128);
    let mut at = start;
    while at < bytes.len() {
        match parse_one(bytes, at) {
            Ok((r, next)) => {
                out.push(r);
                at = next;
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// True if a valid frame starts anywhere after `from`: then a bad frame at `from` is
/// corruption in the middle of the log, not a torn tail.
pub fn valid_frame_after(bytes: &[u8], from: usize) -> bool {
    (from + 1..bytes.len().saturating_sub(FRAME_BYTES)).any(|at| parse_one(bytes, at).is_ok())
}

/// Writes a file header.
pub fn file_header(magic: [u8; 8], origin: &PublicKey) -> Vec<u8> {
    let mut h = magic.to_vec();
    h.extend_from_slice(origin.as_bytes());
    h
}

/// Reads a file header.
pub fn read_file_header(bytes: &[u8], magic: [u8; 8]) -> Result<PublicKey, String> {
    let (m, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| format!("{} bytes: too short for a header", bytes.len()))?;
    if *m != magic {
        return Err(format!(
            "does not start with the magic `{}`",
            String::from_utf8_lossy(&magic).trim_end_matches('\0')
        ));
    }
    let (origin, _) = rest.split_first_chunk::<32>().ok_or("header cut short")?;
    Ok(PublicKey(*origin))
}
