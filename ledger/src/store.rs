//! The durable log: append-only segment files are the source of truth.
//!
//! Invariants:
//! - An append is acknowledged only after the `fdatasync` of the batch that holds it; one
//!   sync per batch (group commit), however many appenders wait.
//! - A checkpoint covering the batch is written in the same sync when one is due, so signed
//!   checkpoints trail acknowledged entries by at most `checkpoint_interval`.
//! - On open, every segment is replayed ([`crate::replay`]); a torn tail (a bad frame after
//!   which no valid frame exists, in the last segment) is truncated; anything else that is
//!   wrong refuses to open, so nothing acknowledged is ever silently dropped.
//! - Every queue is bounded: appenders block when `queue_depth` requests wait.
//! - After a failed write or sync the ledger refuses further appends until
//!   [`Ledger::recover`] cuts the active segment back to its durable end and the disk takes
//!   a synced write again; nothing acknowledged is touched, nothing unacknowledged survives.
//! - Segments are created whole (header written and synced under a temporary name, then
//!   renamed), so a crash while one is created never leaves a log that refuses to open.

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::entry::{Entry, EntryBody, EntryError};
use crate::merkle::{self, Hash, ProofError, Tree};
use crate::records::{self, FILE_HEADER_BYTES, KIND_CHECKPOINT, KIND_ENTRY, SEGMENT_MAGIC};
use crate::replay;
use slicefed_trust::{PublicKey, SecretKey};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The filesystem failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The log on disk is not valid and was not touched.
    #[error("{path}: the log is corrupt: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What replay found.
        why: String,
    },
    /// The log belongs to another key.
    #[error("{path}: this log was written by {found}, not by this node's key {expected}")]
    WrongOrigin {
        /// The file.
        path: PathBuf,
        /// Its origin.
        found: String,
        /// This key.
        expected: String,
    },
    /// An entry could not be encoded.
    #[error("entry rejected: {0}")]
    Entry(#[from] EntryError),
    /// A previous write failed; reopen to recover.
    #[error("the ledger stopped accepting appends after a failed write: {0}")]
    Failed(String),
    /// Out of range.
    #[error("{0}")]
    Range(String),
    /// A proof could not be produced.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// Another process has the log open.
    #[error("{0}: the ledger is in use by another process")]
    Locked(PathBuf),
    /// Signing a checkpoint failed.
    #[error("cannot sign a checkpoint: {0}")]
    Checkpoint(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Tuning.
#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// Start a new segment file past this many bytes.
    pub segment_bytes: u64,
    /// Most appends in one batch.
    pub max_batch: usize,
    /// Most requests waiting for the writer.
    pub queue_depth: usize,
    /// Sign a checkpoint at the end of a batch if the last is older than this.
    pub checkpoint_interval: Duration,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            segment_bytes: 64 << 20,
            max_batch: 4096,
            queue_depth: 16_384,
            checkpoint_interval: Duration::from_millis(200),
        }
    }
}

/// An acknowledged append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The entry's index.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf: Hash,
}

#[derive(Clone, Copy, Debug)]
struct Location {
    segment: u32,
    /// Offset of the leaf bytes in the segment file.
    offset: u64,
    len: u32,
}

struct State {
    origin: PublicKey,
    /// Leaves beyond `durable` may exist while a batch is being synced; never expose them.
    tree: Tree,
    durable: u64,
    locations: Vec<Location>,
    segments: Vec<(PathBuf, Arc<File>)>,
    checkpoints: Vec<SignedCheckpoint>,
}

struct Shared {
    state: RwLock<State>,
    failure: Mutex<Option<String>>,
    syncs: AtomicU64,
    bytes: AtomicU64,
}

/// Counters of the writer, for benchmarks and monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Durable entries.
    pub entries: u64,
    /// fdatasync calls made for batches.
    pub syncs: u64,
    /// Bytes written to segments by batches.
    pub bytes: u64,
}

type Reply<T> = SyncSender<Result<T, String>>;

enum Request {
    Append {
        entries: Vec<(u64, EntryBody)>,
        reply: Reply<Vec<Result<Appended, String>>>,
    },
    Checkpoint {
        reply: Reply<SignedCheckpoint>,
    },
    Recover {
        reply: Reply<()>,
    },
}

/// What the encoder hands the syncer, in order.
enum ToSyncer {
    Batch(Box<Prepared>),
    /// Cut what a failed write may have left past the durable end, check that the disk
    /// takes writes, and answer.
    Recover(SyncSender<Result<(), String>>),
}

/// A waiting append (see [`Ledger::submit`]).
pub struct Pending {
    rx: Receiver<Result<Vec<Result<Appended, String>>, String>>,
}

impl Pending {
    /// Waits until the entry is durable.
    pub fn wait(self) -> Result<Appended, LedgerError> {
        match self.rx.recv() {
            Ok(Ok(mut v)) => v
                .pop()
                .ok_or_else(|| LedgerError::Failed("empty reply".into()))?
                .map_err(LedgerError::Failed),
            Ok(Err(e)) => Err(LedgerError::Failed(e)),
            Err(_) => Err(LedgerError::Failed("the writer stopped".into())),
        }
    }
}

/// A node's durable, verifiable log.
pub struct Ledger {
    dir: PathBuf,
    /// Held for the ledger's lifetime; released on drop.
    _lock: File,
    shared: Arc<Shared>,
    tx: Option<SyncSender<Request>>,
    writer: Option<JoinHandle<()>>,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Creates segment `path` holding only its header, atomically: the header is written and
/// synced under a temporary name, then renamed, then the directory is synced. A crash at
/// any point leaves either no segment or a whole header, never a torn one that would make
/// the next open refuse the log. A leftover temporary file is overwritten.
fn create_segment(dir: &Path, path: &Path, origin: &PublicKey) -> Result<File, LedgerError> {
    let tmp = path.with_extension("seg-new");
    {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&records::file_header(SEGMENT_MAGIC, origin))
            .map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir)?;
    OpenOptions::new().append(true).open(path).map_err(io(path))
}

/// Bytes written and synced to a scratch file to tell whether the disk takes writes again
/// (see [`Ledger::recover`]).
const PROBE_BYTES: usize = 256 * 1024;

/// The segment files of a ledger directory, in order.
pub fn list_segments(dir: &Path) -> Result<Vec<PathBuf>, LedgerError> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    Ok(segs)
}

impl Ledger {
    /// Opens (or creates) the ledger in `dir`, written by `key`.
    pub fn open(dir: &Path, key: SecretKey, options: LedgerOptions) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // One writer per log: a second process appending would fork the history.
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.try_lock()
            .map_err(|_| LedgerError::Locked(dir.to_path_buf()))?;
        let origin = key.public();
        let mut paths = list_segments(dir)?;
        // A segment whose creation a crash interrupted, by a version that wrote segments in
        // place: the last file, no longer than a header, with no valid header. It holds no
        // entry, so removing it loses nothing (and keeps the node able to start).
        if let Some(last) = paths.last().cloned() {
            let len = std::fs::metadata(&last).map_err(io(&last))?.len();
            if len <= FILE_HEADER_BYTES as u64 {
                let bytes = std::fs::read(&last).map_err(io(&last))?;
                if records::read_file_header(&bytes, SEGMENT_MAGIC).is_err() {
                    std::fs::remove_file(&last).map_err(io(&last))?;
                    sync_dir(dir)?;
                    tracing_note(&format!(
                        "{}: removed a segment whose creation was interrupted ({len} bytes, no entries)",
                        last.display()
                    ));
                    paths.pop();
                }
            }
        }
        if paths.is_empty() {
            let p = dir.join(segment_name(0));
            create_segment(dir, &p, &origin)?;
            paths.push(p);
        }

        // Read every segment; repair only a torn tail of the last one.
        let mut contents: Vec<Vec<u8>> = Vec::with_capacity(paths.len());
        let last = paths.len() - 1;
        for (i, p) in paths.iter().enumerate() {
            let bytes = std::fs::read(p).map_err(io(p))?;
            let found = records::read_file_header(&bytes, SEGMENT_MAGIC).map_err(|why| {
                LedgerError::Corrupt {
                    path: p.clone(),
                    why,
                }
            })?;
            if found != origin {
                return Err(LedgerError::WrongOrigin {
                    path: p.clone(),
                    found: found.peer_id(),
                    expected: origin.peer_id(),
                });
            }
            let (_, err) = records::parse_all(&bytes, FILE_HEADER_BYTES);
            let mut bytes = bytes;
            if let Some(e) = err {
                if i != last || records::valid_frame_after(&bytes, e.offset) {
                    return Err(LedgerError::Corrupt {
                        path: p.clone(),
                        why: format!(
                            "bad record at byte {}: {} (valid records follow, so this is not a torn write)",
                            e.offset, e.why
                        ),
                    });
                }
                let f = OpenOptions::new().write(true).open(p).map_err(io(p))?;
                f.set_len(e.offset as u64).map_err(io(p))?;
                f.sync_all().map_err(io(p))?;
                bytes.truncate(e.offset);
                tracing_note(&format!(
                    "{}: truncated a torn tail at byte {} ({})",
                    p.display(),
                    e.offset,
                    e.why
                ));
            }
            contents.push(bytes);
        }

        let mut all = Vec::new();
        let mut seg_of = Vec::new();
        for (i, bytes) in contents.iter().enumerate() {
            let (recs, _) = records::parse_all(bytes, FILE_HEADER_BYTES);
            seg_of.extend(std::iter::repeat_n(i as u32, recs.len()));
            all.extend(recs);
        }
        let replayed = replay::replay(origin, &all, replay::Depth::Full);
        if !replayed.report.valid {
            return Err(LedgerError::Corrupt {
                path: dir.to_path_buf(),
                why: replayed.report.error.unwrap_or_default(),
            });
        }
        let locations: Vec<Location> = all
            .iter()
            .zip(&seg_of)
            .filter(|(r, _)| r.kind == KIND_ENTRY)
            .map(|(r, s)| Location {
                segment: *s,
                offset: (r.offset + records::FRAME_BYTES + 1) as u64,
                len: r.payload.len() as u32,
            })
            .collect();
        let mut segments = Vec::with_capacity(paths.len());
        for p in &paths {
            segments.push((p.clone(), Arc::new(File::open(p).map_err(io(p))?)));
        }
        let active_len = contents.last().map_or(0, |c| c.len() as u64);
        let durable = replayed.tree.len();
        let last_leaf = replayed
            .tree
            .leaf(durable.wrapping_sub(1))
            .unwrap_or([0; 32]);
        let checkpointed = replayed.report.checkpointed;
        drop(all);
        let state = State {
            origin,
            tree: replayed.tree,
            durable,
            locations,
            segments,
            checkpoints: replayed.checkpoints,
        };
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            failure: Mutex::new(None),
            syncs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });

        let active_path = paths
            .last()
            .cloned()
            .unwrap_or_else(|| dir.join(segment_name(0)));
        let active = OpenOptions::new()
            .append(true)
            .open(&active_path)
            .map_err(io(&active_path))?;
        let (tx, rx) = sync_channel(options.queue_depth.max(1));
        // One prepared batch may wait while another is being synced: CPU work on the next
        // batch overlaps the fsync of this one.
        let (prepared_tx, prepared_rx) = sync_channel::<ToSyncer>(1);
        let mut syncer = Syncer {
            dir: dir.to_path_buf(),
            origin,
            segment_bytes: options.segment_bytes,
            shared: shared.clone(),
            active,
            active_path,
            active_len,
        };
        let syncer = std::thread::Builder::new()
            .name("ledger-sync".into())
            .spawn(move || syncer.run(prepared_rx))
            .map_err(io(dir))?;
        let mut encoder = Encoder {
            key,
            options,
            shared: shared.clone(),
            next_seq: durable,
            last_leaf,
            last_checkpoint: Instant::now(),
            // Entries left unsigned by a crash get a checkpoint with the first batch.
            checkpoint_due: checkpointed < durable,
            syncer: Some(prepared_tx),
            scratch: Vec::with_capacity(512),
        };
        let handle = std::thread::Builder::new()
            .name("ledger-encode".into())
            .spawn(move || {
                encoder.run(rx);
                drop(encoder.syncer.take());
                let _ = syncer.join();
            })
            .map_err(io(dir))?;
        Ok(Ledger {
            _lock: lock,
            dir: dir.to_path_buf(),
            shared,
            tx: Some(tx),
            writer: Some(handle),
        })
    }

    fn check_failed(&self) -> Result<(), LedgerError> {
        match self.shared.failure.lock().map(|f| f.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(LedgerError::Failed(e)),
            Err(_) => Err(LedgerError::Failed("writer panicked".into())),
        }
    }

    fn send(&self, r: Request) -> Result<(), LedgerError> {
        self.check_failed()?;
        self.tx
            .as_ref()
            .ok_or_else(|| LedgerError::Failed("closed".into()))?
            .send(r)
            .map_err(|_| LedgerError::Failed("the writer stopped".into()))
    }

    /// Queues one entry; [`Pending::wait`] returns once it is durable.
    pub fn submit(&self, time_ms: u64, body: EntryBody) -> Result<Pending, LedgerError> {
        let (reply, rx) = sync_channel(1);
        self.send(Request::Append {
            entries: vec![(time_ms, body)],
            reply,
        })?;
        Ok(Pending { rx })
    }

    /// Why the ledger refuses appends, if it does (a write or sync failed; see
    /// [`Ledger::recover`]).
    pub fn failure(&self) -> Option<String> {
        failure(&self.shared)
    }

    /// After a failed write: cuts whatever the failed batch left past the last durable
    /// entry, checks that the disk takes a write and a sync again, and accepts appends
    /// again. Entries that were never acknowledged are gone (their appenders were told);
    /// acknowledged ones are untouched. `Ok` when the ledger works (again).
    pub fn recover(&self) -> Result<(), LedgerError> {
        if self.failure().is_none() {
            return Ok(());
        }
        let (reply, rx) = sync_channel(1);
        self.tx
            .as_ref()
            .ok_or_else(|| LedgerError::Failed("closed".into()))?
            .send(Request::Recover { reply })
            .map_err(|_| LedgerError::Failed("the writer stopped".into()))?;
        match rx.recv() {
            Ok(r) => r.map_err(LedgerError::Failed),
            Err(_) => Err(LedgerError::Failed("the writer stopped".into())),
        }
    }

    /// Appends one entry and waits until it is durable.
    pub fn append(&self, time_ms: u64, body: EntryBody) -> Result<Appended, LedgerError> {
        self.submit(time_ms, body)?.wait()
    }

    /// Appends entries (in order, in one batch) and waits until all are durable.
    pub fn append_all(&self, entries: Vec<(u64, EntryBody)>) -> Result<Vec<Appended>, LedgerError> {
        let (reply, rx) = sync_channel(1);
        self.send(Request::Append { entries, reply })?;
        match rx.recv() {
            Ok(Ok(v)) => v
                .into_iter()
                .map(|r| r.map_err(LedgerError::Failed))
                .collect(),
            Ok(Err(e)) => Err(LedgerError::Failed(e)),
            Err(_) => Err(LedgerError::Failed("the writer stopped".into())),
        }
    }

    /// Signs a checkpoint of everything appended so far (after it is durable).
    pub fn checkpoint(&self) -> Result<SignedCheckpoint, LedgerError> {
        let (reply, rx) = sync_channel(1);
        self.send(Request::Checkpoint { reply })?;
        match rx.recv() {
            Ok(r) => r.map_err(LedgerError::Failed),
            Err(_) => Err(LedgerError::Failed("the writer stopped".into())),
        }
    }

    fn read_state(&self) -> Result<std::sync::RwLockReadGuard<'_, State>, LedgerError> {
        self.shared
            .state
            .read()
            .map_err(|_| LedgerError::Failed("state lock poisoned".into()))
    }

    /// The writer's key.
    pub fn origin(&self) -> Result<PublicKey, LedgerError> {
        Ok(self.read_state()?.origin)
    }

    /// Durable entries.
    pub fn size(&self) -> Result<u64, LedgerError> {
        Ok(self.read_state()?.durable)
    }

    /// Root at `size` (≤ durable size).
    pub fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        let s = self.read_state()?;
        if size > s.durable {
            return Err(LedgerError::Range(format!(
                "size {size} > durable size {}",
                s.durable
            )));
        }
        Ok(s.tree.root_at(size)?)
    }

    /// The leaf bytes of entry `seq`.
    pub fn read(&self, seq: u64) -> Result<Vec<u8>, LedgerError> {
        let (loc, path, file) = {
            let s = self.read_state()?;
            if seq >= s.durable {
                return Err(LedgerError::Range(format!(
                    "entry {seq} does not exist (size {})",
                    s.durable
                )));
            }
            let loc = *s
                .locations
                .get(seq as usize)
                .ok_or_else(|| LedgerError::Range(format!("entry {seq} not located")))?;
            let (p, f) = s
                .segments
                .get(loc.segment as usize)
                .ok_or_else(|| LedgerError::Range(format!("segment {} missing", loc.segment)))?;
            (loc, p.clone(), f.clone())
        };
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset)
            .map_err(io(&path))?;
        Ok(buf)
    }

    /// Entry `seq`, decoded, and checked against the in-memory tree (a file changed under a
    /// running node is caught here, not trusted).
    pub fn entry(&self, seq: u64) -> Result<Entry, LedgerError> {
        let bytes = self.read(seq)?;
        let expected = self.read_state()?.tree.leaf(seq);
        if expected != Some(merkle::leaf_hash(&bytes)) {
            return Err(LedgerError::Corrupt {
                path: self.dir.clone(),
                why: format!("entry {seq} on disk no longer matches the log's tree"),
            });
        }
        Ok(Entry::decode(&bytes)?)
    }

    /// Inclusion proof of `seq` in the tree of `size` entries.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        let s = self.read_state()?;
        if size > s.durable {
            return Err(LedgerError::Range(format!(
                "size {size} > durable size {}",
                s.durable
            )));
        }
        Ok(s.tree.inclusion_proof(seq, size)?)
    }

    /// Consistency proof between two sizes.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LedgerError> {
        let s = self.read_state()?;
        if new > s.durable {
            return Err(LedgerError::Range(format!(
                "size {new} > durable size {}",
                s.durable
            )));
        }
        Ok(s.tree.consistency_proof(old, new)?)
    }

    /// The newest signed checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, LedgerError> {
        Ok(self.read_state()?.checkpoints.last().cloned())
    }

    /// Every signed checkpoint.
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, LedgerError> {
        Ok(self.read_state()?.checkpoints.clone())
    }

    /// Writer counters since open.
    pub fn stats(&self) -> Result<Stats, LedgerError> {
        Ok(Stats {
            entries: self.size()?,
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a self-contained export file: a header naming the origin, then every segment's
    /// records as they are on disk (entries and checkpoints).
    pub fn export(&self, out: &Path) -> Result<u64, LedgerError> {
        self.checkpoint()?;
        // One definition of the export format: the auditor's reader. It copies whole, valid
        // frames only, so a batch being written right now is not included.
        let source =
            crate::source::LogSource::load(&self.dir).map_err(|e| LedgerError::Corrupt {
                path: self.dir.clone(),
                why: e.to_string(),
            })?;
        let (buf, entries, _) = source.export();
        let tmp = out.with_extension("partial");
        std::fs::write(&tmp, &buf).map_err(io(&tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, out).map_err(io(out))?;
        Ok(entries)
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish queued work, sign a final checkpoint
        // and exit.
        self.tx.take();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

fn tracing_note(msg: &str) {
    // The ledger has no logger of its own; repairs are rare and worth a line on stderr.
    eprintln!("ledger: {msg}");
}

/// A batch ready to be written: framed bytes, where its entries sit in them, who waits.
struct Prepared {
    buf: Vec<u8>,
    /// (offset within `buf` of the leaf bytes, length).
    locations: Vec<(u64, u32)>,
    waiters: Vec<Waiter>,
    checkpoint: Option<SignedCheckpoint>,
    size: u64,
}

/// Stage one: turns requests into framed bytes, extends the tree, signs checkpoints.
struct Encoder {
    key: SecretKey,
    options: LedgerOptions,
    shared: Arc<Shared>,
    next_seq: u64,
    last_leaf: Hash,
    last_checkpoint: Instant,
    checkpoint_due: bool,
    syncer: Option<SyncSender<ToSyncer>>,
    /// Reused for every entry's encoding.
    scratch: Vec<u8>,
}

/// Stage two: writes a prepared batch, syncs it, publishes it, then answers its waiters.
struct Syncer {
    dir: PathBuf,
    origin: PublicKey,
    segment_bytes: u64,
    shared: Arc<Shared>,
    active: File,
    active_path: PathBuf,
    active_len: u64,
}

enum Waiter {
    Append {
        reply: Reply<Vec<Result<Appended, String>>>,
        results: Vec<Result<Appended, String>>,
    },
    Checkpoint(Reply<SignedCheckpoint>),
}

fn fail(shared: &Shared, why: &str) {
    if let Ok(mut f) = shared.failure.lock() {
        f.get_or_insert_with(|| why.to_string());
    }
}

fn failure(shared: &Shared) -> Option<String> {
    match shared.failure.lock() {
        Ok(f) => f.clone(),
        Err(_) => Some("writer panicked".into()),
    }
}

fn reply_all(waiters: Vec<Waiter>, cp: Option<SignedCheckpoint>, outcome: Result<(), String>) {
    for w in waiters {
        match (w, &outcome) {
            (Waiter::Append { reply, results }, Ok(())) => {
                let _ = reply.send(Ok(results));
            }
            (Waiter::Append { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(e.clone()));
            }
            (Waiter::Checkpoint(reply), Ok(())) => {
                let _ = reply.send(
                    cp.clone()
                        .ok_or_else(|| "the log is empty: nothing to checkpoint".to_string()),
                );
            }
            (Waiter::Checkpoint(reply), Err(e)) => {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

impl Encoder {
    fn run(&mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            let mut queued: usize = batch.iter().map(Self::weight).sum();
            while queued < self.options.max_batch {
                match rx.try_recv() {
                    Ok(r) => {
                        queued += Self::weight(&r);
                        batch.push(r);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.process(batch, false);
        }
        // Shutting down: sign what is unsigned, so a clean stop leaves no unsigned tail.
        if self.checkpoint_due {
            self.process(vec![], true);
        }
    }

    fn weight(r: &Request) -> usize {
        match r {
            Request::Append { entries, .. } => entries.len().max(1),
            Request::Checkpoint { .. } | Request::Recover { .. } => 1,
        }
    }

    /// Brings a failed ledger back: the syncer cuts the active segment back to its durable
    /// end and probes the disk; then the tree forgets the leaves that never became durable
    /// and appends continue from the durable end.
    fn recover(&mut self) -> Result<(), String> {
        if failure(&self.shared).is_none() {
            return Ok(());
        }
        let (tx, rx) = sync_channel(1);
        let syncer = self.syncer.as_ref().ok_or("the sync thread stopped")?;
        syncer
            .send(ToSyncer::Recover(tx))
            .map_err(|_| "the sync thread stopped".to_string())?;
        rx.recv()
            .map_err(|_| "the sync thread stopped".to_string())??;
        let mut s = self
            .shared
            .state
            .write()
            .map_err(|_| "state lock poisoned".to_string())?;
        let durable = s.durable;
        s.tree.truncate(durable);
        self.next_seq = durable;
        self.last_leaf = s.tree.leaf(durable.wrapping_sub(1)).unwrap_or([0; 32]);
        self.checkpoint_due = s
            .checkpoints
            .last()
            .is_none_or(|c| c.checkpoint.size < durable);
        drop(s);
        if let Ok(mut f) = self.shared.failure.lock() {
            *f = None;
        }
        Ok(())
    }

    fn process(&mut self, batch: Vec<Request>, closing: bool) {
        // A recovery is handled on its own, before the rest of its batch.
        let mut batch = batch;
        let mut rest = Vec::with_capacity(batch.len());
        for r in batch.drain(..) {
            match r {
                Request::Recover { reply } => {
                    let _ = reply.send(self.recover());
                }
                other => rest.push(other),
            }
        }
        let batch = rest;
        if batch.is_empty() && !closing {
            return;
        }
        let mut buf = Vec::new();
        let mut new_leaves = Vec::new();
        let mut locations = Vec::new();
        let mut waiters = Vec::with_capacity(batch.len());
        let mut force_checkpoint = closing;
        if let Some(e) = failure(&self.shared) {
            for r in batch {
                match r {
                    Request::Append { reply, .. } => {
                        let _ = reply.send(Err(e.clone()));
                    }
                    Request::Checkpoint { reply } => {
                        let _ = reply.send(Err(e.clone()));
                    }
                    Request::Recover { reply } => {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            return;
        }
        for r in batch {
            match r {
                Request::Append { entries, reply } => {
                    let mut results = Vec::with_capacity(entries.len());
                    for (time_ms, body) in entries {
                        let e = Entry {
                            seq: self.next_seq,
                            prev: self.last_leaf,
                            time_ms,
                            body,
                        };
                        match e.encode_reusing(std::mem::take(&mut self.scratch)) {
                            Ok(bytes) => {
                                let leaf = merkle::leaf_hash(&bytes);
                                // Relative to the batch: the segment and base are known only
                                // when the syncer writes it.
                                locations.push((
                                    buf.len() as u64 + records::FRAME_BYTES as u64 + 1,
                                    bytes.len() as u32,
                                ));
                                records::frame(KIND_ENTRY, &bytes, &mut buf);
                                new_leaves.push(leaf);
                                results.push(Ok(Appended {
                                    seq: self.next_seq,
                                    leaf,
                                }));
                                self.next_seq += 1;
                                self.last_leaf = leaf;
                                self.scratch = bytes;
                            }
                            Err(err) => results.push(Err(err.to_string())),
                        }
                    }
                    waiters.push(Waiter::Append { reply, results });
                }
                Request::Checkpoint { reply } => {
                    force_checkpoint = true;
                    waiters.push(Waiter::Checkpoint(reply));
                }
                Request::Recover { reply } => {
                    let _ = reply.send(self.recover());
                }
            }
        }
        if !new_leaves.is_empty() {
            self.checkpoint_due = true;
        }

        // Extend the tree; leaves past `durable` stay invisible until the syncer publishes.
        let size = self.next_seq;
        let root = match self.shared.state.write() {
            Ok(mut s) => {
                for l in &new_leaves {
                    s.tree.push(*l);
                }
                s.tree.root_at(size).unwrap_or(merkle::EMPTY_ROOT)
            }
            Err(_) => {
                fail(&self.shared, "state lock poisoned");
                return reply_all(waiters, None, Err("state lock poisoned".into()));
            }
        };
        // A forced checkpoint with nothing new reuses the latest rather than writing a twin.
        let sign_now = self.checkpoint_due
            && (force_checkpoint
                || self.last_checkpoint.elapsed() >= self.options.checkpoint_interval);
        let checkpoint = if sign_now {
            let c = Checkpoint {
                origin: self.key.public(),
                size,
                root,
                time_ms: now_ms(),
            };
            match c
                .sign(&self.key)
                .map_err(|e| e.to_string())
                .and_then(|cp| cp.to_bytes().map(|b| (cp, b)).map_err(|e| e.to_string()))
            {
                Ok((cp, bytes)) => {
                    records::frame(KIND_CHECKPOINT, &bytes, &mut buf);
                    self.checkpoint_due = false;
                    self.last_checkpoint = Instant::now();
                    Some(cp)
                }
                Err(e) => {
                    fail(&self.shared, &e);
                    return reply_all(waiters, None, Err(e));
                }
            }
        } else {
            None
        };
        let prepared = Prepared {
            buf,
            locations,
            waiters,
            checkpoint,
            size,
        };
        if let Some(tx) = &self.syncer
            && let Err(std::sync::mpsc::SendError(ToSyncer::Batch(p))) =
                tx.send(ToSyncer::Batch(Box::new(prepared)))
        {
            fail(&self.shared, "the sync thread stopped");
            reply_all(p.waiters, None, Err("the sync thread stopped".into()));
        }
    }
}

impl Syncer {
    fn run(&mut self, rx: Receiver<ToSyncer>) {
        while let Ok(m) = rx.recv() {
            match m {
                ToSyncer::Batch(p) => self.commit(*p),
                ToSyncer::Recover(reply) => {
                    let _ = reply.send(self.recover().map_err(|e| e.to_string()));
                }
            }
        }
    }

    /// Cuts the active segment back to its durable end (a failed write may have left part
    /// of a batch), then writes, syncs and removes a scratch file: the disk takes writes.
    fn recover(&mut self) -> Result<(), LedgerError> {
        self.active
            .set_len(self.active_len)
            .map_err(io(&self.active_path))?;
        self.active.sync_all().map_err(io(&self.active_path))?;
        let probe = self.dir.join("PROBE");
        let written = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&probe)
            .and_then(|mut f| {
                f.write_all(&[0u8; PROBE_BYTES])?;
                f.sync_all()
            });
        let _ = std::fs::remove_file(&probe);
        written.map_err(io(&probe))
    }

    fn commit(&mut self, p: Prepared) {
        if let Some(e) = failure(&self.shared) {
            return reply_all(p.waiters, None, Err(e));
        }
        let base = match self.write_durably(&p.buf) {
            Ok(base) => base,
            Err(e) => {
                let msg = e.to_string();
                fail(&self.shared, &msg);
                return reply_all(p.waiters, None, Err(msg));
            }
        };
        let latest = match self.shared.state.write() {
            Ok(mut s) => {
                let seg = s.segments.len().saturating_sub(1) as u32;
                for (offset, len) in p.locations {
                    s.locations.push(Location {
                        segment: seg,
                        offset: base + offset,
                        len,
                    });
                }
                s.durable = p.size;
                if let Some(cp) = p.checkpoint {
                    s.checkpoints.push(cp);
                }
                s.checkpoints.last().cloned()
            }
            Err(_) => {
                fail(&self.shared, "state lock poisoned");
                return reply_all(p.waiters, None, Err("state lock poisoned".into()));
            }
        };
        reply_all(p.waiters, latest, Ok(()));
    }

    /// Writes the batch and syncs it; rolls to a new segment first if this one is full.
    /// Returns the offset in the active segment where the batch starts.
    fn write_durably(&mut self, buf: &[u8]) -> Result<u64, LedgerError> {
        if buf.is_empty() {
            return Ok(self.active_len);
        }
        if self.active_len > FILE_HEADER_BYTES as u64
            && self.active_len + buf.len() as u64 > self.segment_bytes
        {
            self.roll()?;
        }
        let base = self.active_len;
        self.active.write_all(buf).map_err(io(&self.active_path))?;
        self.active.sync_data().map_err(io(&self.active_path))?;
        self.active_len += buf.len() as u64;
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        self.shared
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(base)
    }

    fn roll(&mut self) -> Result<(), LedgerError> {
        self.active.sync_all().map_err(io(&self.active_path))?;
        // The new segment is named by its first entry: the durable size before this batch.
        let first = self
            .shared
            .state
            .read()
            .map_err(|_| LedgerError::Failed("state lock poisoned".into()))?
            .durable;
        let path = self.dir.join(segment_name(first));
        let f = create_segment(&self.dir, &path, &self.origin)?;
        let reader = Arc::new(File::open(&path).map_err(io(&path))?);
        self.shared
            .state
            .write()
            .map_err(|_| LedgerError::Failed("state lock poisoned".into()))?
            .segments
            .push((path.clone(), reader));
        self.active = f;
        self.active_path = path;
        self.active_len = FILE_HEADER_BYTES as u64;
        Ok(())
    }
}
