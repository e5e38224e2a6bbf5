//! A sled index over a node's log: flows by remote address, entries by slice and by user.
//!
//! The index is derived data. Invariants: it records the log size and root it was built
//! up to, and is cleared and rebuilt whenever it cannot be opened or disagrees with the log;
//! every hit is re-read from the log (checked against the Merkle tree) and re-matched
//! against the query before it is returned, so a wrong index entry can only be dropped,
//! never believed.

use crate::entry::{EntryBody, FlowRecord};
use crate::store::{Ledger, LedgerError};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Why the index failed (after one rebuild attempt).
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled failed.
    #[error("{path}: index store: {source}")]
    Store {
        /// The index directory.
        path: PathBuf,
        /// The error.
        source: sled::Error,
    },
    /// The log failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The index.
pub struct Index {
    dir: PathBuf,
    db: sled::Db,
    by_remote: sled::Tree,
    by_slice: sled::Tree,
    by_user: sled::Tree,
    meta: sled::Tree,
    /// True if this open had to rebuild from scratch.
    pub rebuilt: bool,
}

fn ip16(ip: &IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

fn remote_prefix(ip: &IpAddr, port: Option<u16>) -> Vec<u8> {
    let mut k = ip16(ip).to_vec();
    if let Some(p) = port {
        k.extend_from_slice(&p.to_be_bytes());
    }
    k
}

fn name_key(name: &str, seq: u64) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn seq_of(key: &[u8]) -> Option<u64> {
    key.len()
        .checked_sub(8)
        .and_then(|at| key.get(at..))
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
}

impl Index {
    /// Opens the index in `dir`, rebuilding it if it is missing, unreadable or stale, and
    /// brings it up to date with `ledger`.
    pub fn open(dir: &Path, ledger: &Ledger) -> Result<Index, IndexError> {
        let idx = match Self::open_store(dir) {
            Ok(i) => i,
            Err(_) => {
                // Unreadable: it is only derived data, so start again.
                let _ = std::fs::remove_dir_all(dir);
                let mut i = Self::open_store(dir)?;
                i.rebuilt = true;
                i
            }
        };
        let mut idx = idx;
        if !idx.agrees_with(ledger)? {
            idx.clear()?;
            idx.rebuilt = true;
        }
        // sled opens some damaged stores as empty ones: indexing a whole log from zero is a
        // rebuild all the same.
        if idx.upto()? == 0 && ledger.size()? > 0 {
            idx.rebuilt = true;
        }
        idx.catch_up(ledger)?;
        Ok(idx)
    }

    fn open_store(dir: &Path) -> Result<Index, IndexError> {
        let err = |source| IndexError::Store {
            path: dir.into(),
            source,
        };
        let db = sled::Config::new().path(dir).open().map_err(err)?;
        Ok(Index {
            dir: dir.into(),
            by_remote: db.open_tree("by_remote").map_err(err)?,
            by_slice: db.open_tree("by_slice").map_err(err)?,
            by_user: db.open_tree("by_user").map_err(err)?,
            meta: db.open_tree("meta").map_err(err)?,
            db,
            rebuilt: false,
        })
    }

    fn store_err(&self) -> impl Fn(sled::Error) -> IndexError + '_ {
        move |source| IndexError::Store {
            path: self.dir.clone(),
            source,
        }
    }

    fn upto(&self) -> Result<u64, IndexError> {
        Ok(self
            .meta
            .get(b"upto")
            .map_err(self.store_err())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    fn agrees_with(&self, ledger: &Ledger) -> Result<bool, IndexError> {
        let origin = self.meta.get(b"origin").map_err(self.store_err())?;
        let upto = self.upto()?;
        if upto == 0 {
            return Ok(origin.is_none()
                || origin.as_deref() == Some(ledger.origin()?.as_bytes().as_slice()));
        }
        if origin.as_deref() != Some(ledger.origin()?.as_bytes().as_slice())
            || upto > ledger.size()?
        {
            return Ok(false);
        }
        let root = self.meta.get(b"root").map_err(self.store_err())?;
        Ok(root.as_deref() == Some(ledger.root_at(upto)?.as_slice()))
    }

    fn clear(&self) -> Result<(), IndexError> {
        for t in [&self.by_remote, &self.by_slice, &self.by_user, &self.meta] {
            t.clear().map_err(self.store_err())?;
        }
        Ok(())
    }

    /// Indexes entries the log has and the index lacks; returns how many.
    pub fn catch_up(&self, ledger: &Ledger) -> Result<u64, IndexError> {
        let from = self.upto()?;
        let to = ledger.size()?;
        for seq in from..to {
            let e = ledger.entry(seq)?;
            if let Some(who) = e.body.attribution() {
                self.by_slice
                    .insert(name_key(who.slice.as_str(), seq), &[])
                    .map_err(self.store_err())?;
                if let Some(u) = &who.user {
                    self.by_user
                        .insert(name_key(u.as_str(), seq), &[])
                        .map_err(self.store_err())?;
                }
            }
            if let EntryBody::Flow(f) = &e.body {
                let mut k = remote_prefix(&f.remote.ip(), Some(f.remote.port()));
                k.extend_from_slice(&seq.to_be_bytes());
                self.by_remote.insert(k, &[]).map_err(self.store_err())?;
            }
        }
        self.meta
            .insert(b"origin", ledger.origin()?.as_bytes().as_slice())
            .map_err(self.store_err())?;
        self.meta
            .insert(b"upto", &to.to_be_bytes())
            .map_err(self.store_err())?;
        self.meta
            .insert(b"root", ledger.root_at(to)?.as_slice())
            .map_err(self.store_err())?;
        self.db.flush().map_err(self.store_err())?;
        Ok(to - from)
    }

    /// Flows to `remote` (and `port`, if given), verified against the log.
    pub fn flows_to(
        &self,
        ledger: &Ledger,
        remote: IpAddr,
        port: Option<u16>,
    ) -> Result<Vec<(u64, FlowRecord)>, IndexError> {
        self.catch_up(ledger)?;
        let mut out = Vec::new();
        for kv in self.by_remote.scan_prefix(remote_prefix(&remote, port)) {
            let (k, _) = kv.map_err(self.store_err())?;
            let Some(seq) = seq_of(&k) else { continue };
            // Never trust the index: re-read the entry (checked against the tree) and re-match.
            if let Ok(e) = ledger.entry(seq)
                && let EntryBody::Flow(f) = e.body
                && f.remote.ip() == remote
                && port.is_none_or(|p| p == f.remote.port())
            {
                out.push((seq, f));
            }
        }
        Ok(out)
    }

    /// Entries of `slice`, verified against the log.
    pub fn entries_of_slice(&self, ledger: &Ledger, slice: &str) -> Result<Vec<u64>, IndexError> {
        self.names(ledger, &self.by_slice, slice, |e| {
            e.body
                .attribution()
                .is_some_and(|w| w.slice.as_str() == slice)
        })
    }

    /// Entries of `user`, verified against the log.
    pub fn entries_of_user(&self, ledger: &Ledger, user: &str) -> Result<Vec<u64>, IndexError> {
        self.names(ledger, &self.by_user, user, |e| {
            e.body
                .attribution()
                .and_then(|w| w.user.as_ref())
                .is_some_and(|u| u.as_str() == user)
        })
    }

    fn names(
        &self,
        ledger: &Ledger,
        tree: &sled::Tree,
        name: &str,
        matches: impl Fn(&crate::entry::Entry) -> bool,
    ) -> Result<Vec<u64>, IndexError> {
        self.catch_up(ledger)?;
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for kv in tree.scan_prefix(prefix) {
            let (k, _) = kv.map_err(self.store_err())?;
            if let Some(seq) = seq_of(&k)
                && ledger.entry(seq).is_ok_and(|e| matches(&e))
            {
                out.push(seq);
            }
        }
        Ok(out)
    }

    /// Test hook: inserts a raw key into the remote index (to show lies are dropped).
    #[doc(hidden)]
    pub fn insert_raw_remote(&self, remote: IpAddr, port: u16, seq: u64) -> Result<(), IndexError> {
        let mut k = remote_prefix(&remote, Some(port));
        k.extend_from_slice(&seq.to_be_bytes());
        self.by_remote.insert(k, &[]).map_err(self.store_err())?;
        Ok(())
    }
}
