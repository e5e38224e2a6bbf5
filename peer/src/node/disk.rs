//! The daemon's files under `DIR`: replicas of the logs it witnesses, its witnesses'
//! cosignatures, saved slivers and their modules (what a restart brings back).

use super::*;

impl Daemon {
    pub(super) fn replica_path(&self, origin: &PublicKey) -> PathBuf {
        self.dir
            .join("replicas")
            .join(format!("{}.sfexp", origin.to_hex()))
    }

    /// Reads back every replica file, keeps its verified prefix (a torn tail from a crash is
    /// cut off) and hands the trees to the witness.
    pub(super) fn restore_replicas(&mut self) {
        let Ok(dir) = std::fs::read_dir(self.dir.join("replicas")) else {
            return;
        };
        for e in dir.filter_map(Result::ok) {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "sfexp") {
                continue;
            }
            let Ok(src) = LogSource::load(&path) else {
                continue;
            };
            let (recs, _) = src.records();
            let r = slicefed_ledger::replay::replay(
                src.origin,
                &recs,
                slicefed_ledger::replay::Depth::Hashes,
            );
            // Keep records up to the last checkpoint that verified.
            let good_end = r.checkpoints.last().map(|c| c.checkpoint.size).unwrap_or(0);
            let mut tree = r.tree;
            if !r.report.valid || tree.len() != good_end {
                tree.truncate(good_end.min(r.report.entries));
            }
            let latest = r
                .checkpoints
                .iter()
                .rev()
                .find(|c| c.checkpoint.size == tree.len())
                .cloned();
            let (bytes, _, _) = {
                // Rewrite the file to hold exactly what is kept.
                let mut out = records::file_header(EXPORT_MAGIC, &src.origin);
                let mut n = 0u64;
                for rec in &recs {
                    if rec.kind == KIND_ENTRY {
                        if n >= tree.len() {
                            continue;
                        }
                        n += 1;
                    } else if rec.kind == KIND_CHECKPOINT
                        && codec::decode::<SignedCheckpoint>("checkpoint", rec.payload, 256)
                            .is_ok_and(|c| c.checkpoint.size > tree.len())
                    {
                        continue;
                    }
                    records::frame(rec.kind, rec.payload, &mut out);
                }
                (out, n, ())
            };
            let _ = write_atomic(&path, &bytes);
            let mut index = ReplicaIndex::default();
            index.add(
                records::FILE_HEADER_BYTES as u64,
                bytes.get(records::FILE_HEADER_BYTES..).unwrap_or_default(),
            );
            self.replica_index.insert(src.origin, index);
            let held = bytes.len().saturating_sub(records::FILE_HEADER_BYTES) as u64;
            self.node
                .witnessing_mut()
                .witness_mut()
                .restore(src.origin, tree, latest, held);
        }
    }

    /// Queues verified leaves of `origin`'s log and the checkpoint covering them for the
    /// disk thread, which appends them to its replica file (synced); they are indexed, and
    /// the machine told, when it reports back ([`Done::Persisted`]).
    pub(super) fn persist(
        &mut self,
        write: WriteId,
        origin: PublicKey,
        leaves: &[Vec<u8>],
        checkpoint: &SignedCheckpoint,
    ) -> Result<(), String> {
        let mut rec = vec![];
        for l in leaves {
            records::frame(KIND_ENTRY, l, &mut rec);
        }
        let b = checkpoint.to_bytes().map_err(|e| e.to_string())?;
        records::frame(KIND_CHECKPOINT, &b, &mut rec);
        let header = records::file_header(EXPORT_MAGIC, &origin);
        let path = self.replica_path(&origin);
        self.queue_disk(DiskJob::Work(Box::new(move || {
            let base = append_synced(&path, &rec, Some(&header))
                .map_err(|e| format!("{}: {e}", path.display()));
            Some(Done::Persisted {
                write,
                origin,
                record: rec,
                base,
            })
        })))
    }

    pub(super) fn cosig_path(&self) -> PathBuf {
        self.dir.join("cosignatures")
    }

    pub(super) fn restore_cosignatures(&mut self) {
        // Bounded: the file is rewritten past COSIGNATURE_FILE_RECORDS records.
        let Ok(bytes) = read_limited(&self.cosig_path(), 64 << 20) else {
            return;
        };
        let mut off = 0;
        while let Ok((rec, next)) = records::parse_one(&bytes, off) {
            off = next;
            self.cosig_records += 1;
            if let Ok(c) = Cosigned::from_bytes(rec.payload) {
                self.keep_cosignature(c);
            }
        }
    }

    /// Appends a cosignature of this node's log to its file; past
    /// [`COSIGNATURE_FILE_RECORDS`] the file is rewritten with only what is kept in memory
    /// (the latest checkpoints' cosignatures), so it does not grow for ever.
    pub(super) fn save_cosignature(&mut self, c: &Cosigned) {
        let mut rec = vec![];
        if let Ok(bytes) = c.to_bytes() {
            records::frame(KIND_CHECKPOINT, &bytes, &mut rec);
            let path = self.cosig_path();
            // Kept in memory whatever happens; the file is how it survives a restart.
            let _ = self.queue_disk(DiskJob::Work(Box::new(move || {
                let _ = append_synced(&path, &rec, None);
                None
            })));
            self.cosig_records += 1;
        }
        if self.cosig_records < COSIGNATURE_FILE_RECORDS {
            return;
        }
        let mut all = vec![];
        for (cp, sigs) in self.cosigs.values() {
            for sig in sigs {
                let kept = Cosigned {
                    checkpoint: cp.clone(),
                    cosignature: sig.clone(),
                };
                if let Ok(bytes) = kept.to_bytes() {
                    records::frame(KIND_CHECKPOINT, &bytes, &mut all);
                }
            }
        }
        // Rewritten after the appends queued before it (the disk thread keeps the order).
        let path = self.cosig_path();
        if self
            .queue_disk(DiskJob::Work(Box::new(move || {
                let _ = write_atomic(&path, &all);
                None
            })))
            .is_ok()
        {
            self.cosig_records = 0;
        }
    }

    pub(super) fn keep_cosignature(&mut self, c: Cosigned) -> bool {
        let size = c.checkpoint.checkpoint.size;
        let entry = self
            .cosigs
            .entry(size)
            .or_insert_with(|| (c.checkpoint.clone(), vec![]));
        if entry.0 != c.checkpoint
            || entry.1.len() >= MAX_COSIGNATURES
            || entry.1.iter().any(|x| x.witness == c.cosignature.witness)
        {
            return false;
        }
        entry.1.push(c.cosignature);
        while self.cosigs.len() > MAX_COSIGNED_CHECKPOINTS {
            self.cosigs.pop_first();
        }
        // One older than every checkpoint kept was dropped at once: nothing to save.
        self.cosigs.contains_key(&size)
    }

    pub(super) fn saved_path(&self, id: u64) -> PathBuf {
        self.dir.join("slivers").join(format!("{id}.sliver"))
    }

    pub(super) fn module_path(&self, hash: &ModuleHash) -> PathBuf {
        self.dir
            .join("modules")
            .join(format!("{}.wasm", hash.to_hex()))
    }

    /// Removes a submitted module once no sliver here runs it (modules are kept only so
    /// slivers come back after a restart).
    pub(super) fn forget_module_if_unused(&self, module: &ModuleHash) {
        let used = self.live.values().any(|l| l.plan.module == *module)
            || self.starting.values().any(|p| p.module == *module);
        if !used {
            let _ = std::fs::remove_file(self.module_path(module));
        }
    }

    /// Removes modules no saved sliver names (left by slivers that were not restored).
    pub(super) fn prune_modules(&self) {
        let mut wanted = std::collections::BTreeSet::new();
        if let Ok(dir) = std::fs::read_dir(self.dir.join("slivers")) {
            for e in dir.filter_map(Result::ok) {
                if let Ok(b) = read_limited(&e.path(), MAX_SAVED_SLIVER_BYTES)
                    && let Ok(s) =
                        codec::decode::<SavedSliver>("saved sliver", &b, MAX_SAVED_SLIVER_BYTES)
                {
                    wanted.insert(self.module_path(&s.module));
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir(self.dir.join("modules")) {
            for e in dir.filter_map(Result::ok) {
                if !wanted.contains(&e.path()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Saves a renewed sliver's new credential with it, on the disk thread.
    pub(super) fn resave_credential(&mut self, id: u64, credential: Vec<u8>) {
        let path = self.saved_path(id);
        let _ = self.queue_disk(DiskJob::Work(Box::new(move || {
            let b = read_limited(&path, MAX_SAVED_SLIVER_BYTES).ok()?;
            let mut s =
                codec::decode::<SavedSliver>("saved sliver", &b, MAX_SAVED_SLIVER_BYTES).ok()?;
            s.credential = credential;
            let b = codec::encode("saved sliver", &s).ok()?;
            let _ = write_atomic(&path, &b);
            None
        })));
    }
}

/// A member credential larger than this is not kept on disk (an honest node credential
/// is ~1 KiB; the cache stays under `MAX_MEMBERS` × this, 64 MiB).
pub(super) const MAX_KEPT_CREDENTIAL_BYTES: usize = 4 * 1024;

impl Daemon {
    /// Keeps a new member's credential on disk (at the next tick), so that after a restart
    /// the node greets the members it learns of on it instead of fetching it
    /// (`Node::remember_credentials`).
    pub(super) fn keep_member_credential(&mut self, node: &PublicKey) {
        let credential = self
            .node
            .core()
            .members()
            .get(node)
            .map(|m| Arc::clone(m.credential()))
            .filter(|c| c.len() <= MAX_KEPT_CREDENTIAL_BYTES);
        if let Some(c) = credential {
            self.note_member_credential(*node, Some(c));
        }
    }

    /// A member left: its credential is not kept (the cache holds members only).
    pub(super) fn forget_member_credential(&mut self, node: &PublicKey) {
        self.note_member_credential(*node, None);
    }

    fn note_member_credential(&mut self, node: PublicKey, change: Option<Arc<[u8]>>) {
        let room = self.member_credentials.len() < slicefed_proto::core::MAX_MEMBERS;
        if room || self.member_credentials.contains_key(&node) {
            self.member_credentials.insert(node, change);
        }
    }

    /// Writes the tick's changes to the members' credentials in one disk job. A cache:
    /// written without a sync (a torn file does not judge and is fetched again), and if
    /// the disk queue is full the changes wait for the next tick.
    pub(super) fn flush_member_credentials(&mut self) {
        if self.member_credentials.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut self.member_credentials);
        let dir = member_credentials_dir(&self.dir);
        let job = {
            let changes = changes.clone();
            move || {
                let _ = std::fs::create_dir_all(&dir);
                for (node, change) in changes {
                    let path = kept_credential_path(&dir, &node);
                    match change {
                        Some(credential) => {
                            let tmp = path.with_extension("tmp");
                            if std::fs::write(&tmp, &credential[..]).is_ok() {
                                let _ = std::fs::rename(&tmp, &path);
                            }
                        }
                        None => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                None
            }
        };
        if self.queue_disk(DiskJob::Work(Box::new(job))).is_err() {
            self.member_credentials = changes;
        }
    }

    /// Once the restart has caught up, the kept credentials of nodes that are not members
    /// now are removed (members write theirs again as they join), so that leftovers and
    /// members of long ago do not pile up. Queued after the tick's writes, once a run.
    pub(super) fn prune_member_credentials(&mut self) {
        if self.kept_pruned || self.node.catching_up() {
            return;
        }
        let members: std::collections::BTreeSet<PublicKey> =
            self.node.core().members().keys().copied().collect();
        let dir = self.dir.clone();
        let job = move || {
            let kept = member_credentials_dir(&dir);
            for (node, _) in read_member_credentials(&dir) {
                if !members.contains(&node) {
                    let _ = std::fs::remove_file(kept_credential_path(&kept, &node));
                }
            }
            None
        };
        if self.queue_disk(DiskJob::Work(Box::new(job))).is_ok() {
            self.kept_pruned = true;
        }
    }
}

pub(super) fn member_credentials_dir(dir: &Path) -> PathBuf {
    dir.join("members")
}

/// Where, in the kept credentials' directory `kept`, a node's credential is kept.
fn kept_credential_path(kept: &Path, node: &PublicKey) -> PathBuf {
    kept.join(format!("{}.credential", node.to_hex()))
}

/// The member credentials kept on disk (see `keep_member_credential`): at most
/// `MAX_MEMBERS`, each at most [`MAX_KEPT_CREDENTIAL_BYTES`]. Files that cannot be one (a
/// name that is not a key, too big, past the bound, a leftover temporary file) are
/// removed; the rest stay until the node's restart has caught up
/// ([`Daemon::prune_member_credentials`]): a node that crashes or is restarted while still
/// catching up knows, at its next start, the members it knew before (the restore waits
/// for them; a node that finds none concludes it is alone). Each credential is judged
/// before it is used.
pub(super) fn read_member_credentials(dir: &Path) -> Vec<(PublicKey, std::sync::Arc<[u8]>)> {
    let Ok(entries) = std::fs::read_dir(member_credentials_dir(dir)) else {
        return vec![];
    };
    let mut kept = vec![];
    for entry in entries.filter_map(Result::ok) {
        let p = entry.path();
        let read = || {
            if p.extension()? != "credential" {
                return None;
            }
            let node = PublicKey::from_hex(p.file_stem()?.to_str()?).ok()?;
            let bytes = read_limited(&p, MAX_KEPT_CREDENTIAL_BYTES).ok()?;
            Some((node, std::sync::Arc::from(bytes)))
        };
        match read().filter(|_| kept.len() < slicefed_proto::core::MAX_MEMBERS) {
            Some(k) => kept.push(k),
            None => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    kept
}

pub(super) fn read_limited(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > max as u64 {
        return Err(format!("{}: over {max} bytes", path.display()));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a whole file or nothing: a synced temporary file renamed into place, and the
/// directory synced so the rename survives a crash.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Appends and syncs (creating the file with `header` first if it is new, and syncing its
/// directory so the new name survives a crash). Returns the offset `bytes` start at.
pub(super) fn append_synced(
    path: &Path,
    bytes: &[u8],
    header: Option<&[u8]>,
) -> std::io::Result<u64> {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if new && let Some(h) = header {
        f.write_all(h)?;
    }
    let base = f.metadata()?.len();
    f.write_all(bytes)?;
    f.sync_data()?;
    if new {
        sync_parent(path)?;
    }
    Ok(base)
}

/// Syncs the directory holding `path`, so a file just created or renamed there is durable.
pub(super) fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir).and_then(|d| d.sync_all()),
        None => Ok(()),
    }
}

pub(super) fn read_chunk(path: &Path, offset: u64) -> std::io::Result<(u64, Vec<u8>)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let total = f.metadata()?.len();
    f.seek(SeekFrom::Start(offset.min(total)))?;
    let mut chunk = vec![];
    f.take(wire::MAX_REPLICA_CHUNK as u64)
        .read_to_end(&mut chunk)?;
    Ok((total, chunk))
}

/// Where a replica file's records are, so a page is read without reading the file: each
/// entry's frame offset, and each checkpoint's size with the offset just past its frame.
/// Eight bytes per entry, for the entries this node holds within its replica quotas.
#[derive(Default, Debug)]
pub(super) struct ReplicaIndex {
    entries: Vec<u64>,
    checkpoints: Vec<(u64, u64)>,
}

impl ReplicaIndex {
    /// Indexes records framed in `bytes`, which start at byte `base` of the file.
    pub(super) fn add(&mut self, base: u64, bytes: &[u8]) {
        let (recs, _) = records::parse_all(bytes, 0);
        for rec in recs {
            let at = base + rec.offset as u64;
            if rec.kind == KIND_ENTRY {
                self.entries.push(at);
            } else if rec.kind == KIND_CHECKPOINT
                && codec::decode::<SignedCheckpoint>("checkpoint", rec.payload, 256)
                    .is_ok_and(|c| c.checkpoint.size == self.entries.len() as u64)
            {
                let end = at + (records::FRAME_BYTES + 1 + rec.payload.len()) as u64;
                self.checkpoints.push((self.entries.len() as u64, end));
            }
        }
    }

    /// The file range `[start, end)` of the entries from `from` up to a checkpoint past
    /// it: the furthest whose page fits [`wire::MAX_PAGE_BYTES`], else the nearest.
    pub(super) fn page(&self, from: u64) -> Option<(u64, u64, u64)> {
        let start = *self.entries.get(usize::try_from(from).ok()?)?;
        let mut best = None;
        for &(size, end) in &self.checkpoints {
            if size <= from {
                continue;
            }
            if best.is_none() || end.saturating_sub(start) <= wire::MAX_PAGE_BYTES as u64 {
                best = Some(end);
            } else {
                break;
            }
        }
        best.map(|end| (start, end, from))
    }
}

/// Reads `[start, end)` of a replica file: the leaves from entry `from` and the checkpoint
/// that ends them.
pub(super) fn read_replica_page(
    path: &Path,
    start: u64,
    end: u64,
    first: u64,
    from: u64,
) -> Result<Response, String> {
    use std::io::{Read, Seek, SeekFrom};
    let len = end.saturating_sub(start);
    if len > (wire::MAX_PAGE_BYTES + (64 << 10)) as u64 {
        return Err(format!("its next page is {len} bytes, over the page limit"));
    }
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    f.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    f.take(len)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    let (recs, err) = records::parse_all(&buf, 0);
    if let Some(e) = err {
        return Err(format!(
            "damaged at byte {}: {}",
            start + e.offset as u64,
            e.why
        ));
    }
    let mut leaves = vec![];
    let mut end_checkpoint = None;
    for rec in recs {
        if rec.kind == KIND_ENTRY {
            leaves.push(serde_bytes::ByteBuf::from(rec.payload.to_vec()));
        } else if rec.kind == KIND_CHECKPOINT {
            end_checkpoint = codec::decode::<SignedCheckpoint>("checkpoint", rec.payload, 256).ok();
        }
    }
    match end_checkpoint {
        Some(end) if end.checkpoint.size == first + leaves.len() as u64 && first == from => {
            Ok(Response::ReplicaPage { end, leaves })
        }
        _ => Err("its index does not match the file".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use slicefed_trust::fixtures::key;

    #[test]
    fn kept_member_credentials_are_taken_back_bounded_and_only_under_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let members = member_credentials_dir(dir.path());
        std::fs::create_dir_all(&members).unwrap();
        let good = key(3).public();
        std::fs::write(
            members.join(format!("{}.credential", good.to_hex())),
            b"cred",
        )
        .unwrap();
        // Too big, not a key, another extension, a leftover temporary file.
        let big = key(4).public();
        std::fs::write(
            members.join(format!("{}.credential", big.to_hex())),
            vec![0; MAX_KEPT_CREDENTIAL_BYTES + 1],
        )
        .unwrap();
        std::fs::write(members.join("not-a-key.credential"), b"x").unwrap();
        std::fs::write(
            members.join(format!("{}.txt", key(5).public().to_hex())),
            b"x",
        )
        .unwrap();
        std::fs::write(
            members.join(format!("{}.tmp42", key(6).public().to_hex())),
            b"x",
        )
        .unwrap();
        let read = read_member_credentials(dir.path());
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].0, good);
        assert_eq!(&read[0].1[..], b"cred");
        // What cannot be a credential is removed; the good one stays until the restart
        // has caught up (a crash before that finds it again).
        assert_eq!(std::fs::read_dir(&members).unwrap().count(), 1);
        assert_eq!(read_member_credentials(dir.path()).len(), 1);
        // No directory: nothing, no error.
        assert!(read_member_credentials(&dir.path().join("absent")).is_empty());
    }
}
