//! Reading a log for offline audit: a node directory (`DIR/ledger/*.seg`), a ledger
//! directory (`DIR/*.seg`) or an export file. Read-only: an auditor never repairs.

use crate::records::{self, EXPORT_MAGIC, FILE_HEADER_BYTES, Record, SEGMENT_MAGIC};
use crate::replay::{self, Report};
use crate::store::list_segments;
use slicefed_trust::PublicKey;
use std::path::{Path, PathBuf};

/// Largest export file read into memory.
pub const MAX_EXPORT_BYTES: u64 = 8 << 30;

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Filesystem.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not a log.
    #[error("{path}: {why}")]
    NotALog {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// A log read from disk.
pub struct LogSource {
    /// Where it came from.
    pub path: PathBuf,
    /// Its writer.
    pub origin: PublicKey,
    files: Vec<(PathBuf, Vec<u8>)>,
}

fn read(path: &Path, max: u64) -> Result<Vec<u8>, SourceError> {
    let meta = std::fs::metadata(path).map_err(|source| SourceError::Io {
        path: path.into(),
        source,
    })?;
    if meta.len() > max {
        return Err(SourceError::NotALog {
            path: path.into(),
            why: format!("{} bytes, over the {max}-byte limit", meta.len()),
        });
    }
    std::fs::read(path).map_err(|source| SourceError::Io {
        path: path.into(),
        source,
    })
}

impl LogSource {
    /// Loads a node directory, ledger directory or export file.
    pub fn load(path: &Path) -> Result<LogSource, SourceError> {
        let not_a_log = |why: String| SourceError::NotALog {
            path: path.into(),
            why,
        };
        if path.is_dir() {
            let dir = if path.join("ledger").is_dir() {
                path.join("ledger")
            } else {
                path.to_path_buf()
            };
            let segs = list_segments(&dir).map_err(|e| not_a_log(e.to_string()))?;
            if segs.is_empty() {
                return Err(not_a_log(
                    "no ledger here (no .seg files, no ledger/ directory)".into(),
                ));
            }
            let mut files = Vec::new();
            let mut origin = None;
            for p in segs {
                let bytes = read(&p, MAX_EXPORT_BYTES)?;
                let o = records::read_file_header(&bytes, SEGMENT_MAGIC).map_err(|why| {
                    SourceError::NotALog {
                        path: p.clone(),
                        why,
                    }
                })?;
                if *origin.get_or_insert(o) != o {
                    return Err(SourceError::NotALog {
                        path: p,
                        why: "segment written by another origin than the first segment".into(),
                    });
                }
                files.push((p, bytes));
            }
            Ok(LogSource {
                path: path.into(),
                origin: origin.ok_or_else(|| not_a_log("no segments".into()))?,
                files,
            })
        } else {
            let bytes = read(path, MAX_EXPORT_BYTES)?;
            let origin = records::read_file_header(&bytes, EXPORT_MAGIC).map_err(&not_a_log)?;
            Ok(LogSource {
                path: path.into(),
                origin,
                files: vec![(path.into(), bytes)],
            })
        }
    }

    /// Every record, and the first framing error if any (records after it are not read).
    pub fn records(&self) -> (Vec<Record<'_>>, Option<String>) {
        let mut all = Vec::new();
        for (p, bytes) in &self.files {
            let (recs, err) = records::parse_all(bytes, FILE_HEADER_BYTES);
            all.extend(recs);
            if let Some(e) = err {
                return (
                    all,
                    Some(format!(
                        "{}: bad record at byte {}: {}",
                        p.display(),
                        e.offset,
                        e.why
                    )),
                );
            }
        }
        (all, None)
    }

    /// Replays the whole log, decoding every entry.
    pub fn replay(&self) -> Report {
        self.replay_at(replay::Depth::Full)
    }

    /// Replays the whole log at a chosen depth.
    pub fn replay_at(&self, depth: replay::Depth) -> Report {
        let (recs, frame_err) = self.records();
        let mut report = replay::replay(self.origin, &recs, depth).report;
        if let Some(e) = frame_err
            && report.valid
        {
            report.valid = false;
            report.first_bad = Some(report.entries);
            report.error = Some(format!("entry {}: {e}", report.entries));
        }
        report
    }

    /// A self-contained export of this log: a header naming the origin, then every valid
    /// record. Returns the bytes, the number of entries, and the framing error that ended
    /// the copy early, if any (a crashed node's torn tail).
    pub fn export(&self) -> (Vec<u8>, u64, Option<String>) {
        let (recs, err) = self.records();
        let mut out = records::file_header(EXPORT_MAGIC, &self.origin);
        let mut entries = 0;
        for r in &recs {
            records::frame(r.kind, r.payload, &mut out);
            entries += u64::from(r.kind == records::KIND_ENTRY);
        }
        (out, entries, err)
    }

    /// The files read.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }
}
