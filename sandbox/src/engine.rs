//! One wasmtime engine per node: Cranelift, epoch interruption, async, the pooling
//! allocator sized from the node's capacity, a ticker thread, a runtime for slivers apart
//! from the control plane's, and a content-addressed cache of precompiled components.

use crate::sliver::{self, SliverHandle, SliverSpec, SliverState};
use sha2::{Digest, Sha256};
use slicefed_trust::ModuleHash;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Why the sandbox failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// wasmtime refused something (configuration, compilation).
    #[error("{what}: {source}")]
    Wasmtime {
        /// What was being done.
        what: String,
        /// wasmtime's error.
        source: wasmtime::Error,
    },
    /// Filesystem.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The bytes are not a component.
    #[error("the module is not a WASI component ({0})")]
    NotAComponent(String),
    /// The node is full.
    #[error("the node runs {0} slivers, its limit")]
    Full(u32),
}

/// Node capacity and tuning.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Node-private directory for precompiled components.
    pub cache_dir: PathBuf,
    /// Most slivers at once.
    pub max_slivers: u32,
    /// Largest linear memory one sliver may have.
    pub max_memory_per_sliver: u64,
    /// Threads running slivers (the control plane runs elsewhere).
    pub worker_threads: usize,
    /// Epoch length: the CPU scheduler's quantum unit.
    pub tick: Duration,
    /// OS sockets all slivers together may hold (each sliver at most
    /// [`crate::sockets::MAX_SOCKETS_PER_SLIVER`]); keep it well under the process's
    /// descriptor limit.
    pub max_sockets: usize,
}

impl SandboxConfig {
    /// Defaults for a node: 1,000 slivers, 256 MiB each, one worker per core, 1 ms ticks.
    pub fn new(cache_dir: &Path) -> SandboxConfig {
        SandboxConfig {
            cache_dir: cache_dir.to_path_buf(),
            max_slivers: 1000,
            max_memory_per_sliver: 256 << 20,
            worker_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            tick: Duration::from_millis(1),
            max_sockets: 16_384,
        }
    }
}

/// A compiled component and the hash of the bytes it came from.
pub struct Compiled {
    /// SHA-256 of the module bytes.
    pub hash: ModuleHash,
    pub(crate) component: Component,
}

/// Compiles modules for a sandbox's engine, through its cache. Cheap to clone; usable from
/// any thread.
#[derive(Clone)]
pub struct Compiler {
    engine: Engine,
    cache_dir: PathBuf,
}

impl Compiler {
    /// Compiles module bytes, through the node-private cache keyed by the module's hash and
    /// the engine's compatibility hash. A component that needs more than one sliver's share
    /// of the instance pool is refused here.
    pub fn compile(&self, module: &[u8]) -> Result<Arc<Compiled>, SandboxError> {
        let hash = ModuleHash::of(module);
        let mut compat = Sha256::new();
        std::hash::Hash::hash(
            &self.engine.precompile_compatibility_hash(),
            &mut HashWriter(&mut compat),
        );
        let compat = hex::encode(compat.finalize());
        let path = self.cache_dir.join(format!(
            "{}-{}.cwasm",
            hash.to_hex(),
            compat.get(..16).unwrap_or_default()
        ));
        let trusted = owned_and_private(&self.cache_dir);
        if trusted
            && path.is_file()
            && let Some(c) = self.load_cached(&path)
        {
            return Ok(Arc::new(Compiled { hash, component: c }));
        }
        let component = Component::new(&self.engine, module)
            .map_err(|e| SandboxError::NotAComponent(format!("{e:#}")))?;
        if trusted && let Ok(bytes) = component.serialize() {
            // Written via a temporary file and a rename, so a crash never leaves half a file
            // that a later load would trust.
            // The temporary name is per process: nodes on one machine may share a cache.
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, &bytes).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
            prune_cache(&self.cache_dir);
        }
        Ok(Arc::new(Compiled { hash, component }))
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, path: &Path) -> Option<Component> {
        // Never a file another user could have written (the directory was checked too).
        if !owned_and_private(path) {
            return None;
        }
        // Least recently used goes first when the cache is pruned.
        if let Ok(f) = std::fs::File::options().append(true).open(path) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        // SAFETY: the cache directory and this file are owned by this process's user and
        // writable by nobody else (checked above and by the caller), and only `compile`
        // writes there, from `Component::serialize` of a module whose hash names the file;
        // no sliver, peer or other user can write there. wasmtime still checks the engine
        // compatibility header and refuses artifacts from another engine configuration.
        unsafe { Component::deserialize_file(&self.engine, path) }.ok()
    }
}

/// Precompiled modules kept in a cache directory, at most.
pub const MAX_CACHE_FILES: usize = 256;
/// Bytes of precompiled modules kept in a cache directory, at most.
pub const MAX_CACHE_BYTES: u64 = 2 << 30;

/// Removes the least recently used precompiled modules past [`MAX_CACHE_FILES`] or
/// [`MAX_CACHE_BYTES`] (a miss only costs a compile).
fn prune_cache(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    let mut bytes: u64 = files.iter().map(|f| f.1).sum();
    if files.len() <= MAX_CACHE_FILES && bytes <= MAX_CACHE_BYTES {
        return;
    }
    files.sort();
    let mut count = files.len();
    for (_, len, path) in files {
        if count <= MAX_CACHE_FILES && bytes <= MAX_CACHE_BYTES {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            count -= 1;
            bytes = bytes.saturating_sub(len);
        }
    }
}

/// This process's user id, read from `/proc/self` (no unsafe call needed).
fn my_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Owned by this user, not a symlink, and not writable by group or others: precompiled code
/// is loaded only from such a directory and such files (otherwise modules are compiled every
/// time: slower, never unsafe).
fn owned_and_private(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::symlink_metadata(path), my_uid()) {
        (Ok(m), Some(uid)) => {
            m.uid() == uid && m.mode() & 0o022 == 0 && !m.file_type().is_symlink()
        }
        _ => false,
    }
}

/// The node's sandbox.
pub struct Sandbox {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<SliverState>>,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) config: SandboxConfig,
    pub(crate) running: Arc<std::sync::atomic::AtomicU32>,
    pub(crate) fair: Arc<sliver::FairShare>,
    /// OS sockets held by all slivers.
    pub(crate) sockets: Arc<std::sync::atomic::AtomicUsize>,
    next_id: std::sync::atomic::AtomicU64,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

/// One sliver's share of the pooling allocator (see `Sandbox::new`): core instances.
pub const CORE_INSTANCES_PER_SLIVER: u32 = 4;
/// Linear memories per sliver.
pub const MEMORIES_PER_SLIVER: u32 = 2;
/// Tables per sliver.
pub const TABLES_PER_SLIVER: u32 = 4;

/// How often an idle ticker looks again without being woken (a safety net: `spawn` wakes
/// it at once).
const IDLE_TICKER_WAKE: Duration = Duration::from_millis(250);
/// With a single sliver, the ticker runs this many times slower.
const SOLO_TICK_FACTOR: u32 = 10;

fn wt(what: impl Into<String>) -> impl FnOnce(wasmtime::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Wasmtime { what, source }
}

impl Sandbox {
    /// Builds the engine, linker, sliver runtime and epoch ticker.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let n = config.max_slivers.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // Each sliver's share of the pool is an exact reservation: a component needing more
        // instances, memories or tables than one share is refused when it is compiled,
        // before it runs, so `running < max_slivers` guarantees room and no sliver can
        // starve the others' instantiation (a typical guest needs 3 core instances, 1
        // memory and 2 tables).
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_SLIVER))
            .max_core_instances_per_component(CORE_INSTANCES_PER_SLIVER)
            .total_memories(n.saturating_mul(MEMORIES_PER_SLIVER))
            .max_memories_per_component(MEMORIES_PER_SLIVER)
            .total_tables(n.saturating_mul(TABLES_PER_SLIVER))
            .max_tables_per_component(TABLES_PER_SLIVER)
            .total_stacks(n)
            .max_memory_size(config.max_memory_per_sliver as usize);
        let mut c = Config::new();
        c.epoch_interruption(true)
            .wasm_component_model(true)
            .max_wasm_stack(512 << 10)
            .async_stack_size(1 << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&c).map_err(wt("configuring the engine"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wt("linking WASI"))?;
        crate::meter::add_to_linker(&mut linker).map_err(wt("linking the flow meter"))?;
        crate::sockets::add_to_linker(&mut linker).map_err(wt("linking the socket budget"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("sliver")
            .enable_all()
            .build()
            .map_err(|source| SandboxError::Io {
                path: PathBuf::from("(sliver runtime)"),
                source,
            })?;
        std::fs::create_dir_all(&config.cache_dir).map_err(|source| SandboxError::Io {
            path: config.cache_dir.clone(),
            source,
        })?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            let tick = config.tick;
            let running = running.clone();
            std::thread::Builder::new()
                .name("epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        // An idle node must cost nothing: with no sliver to preempt the
                        // ticker sleeps until `spawn` wakes it (fifty idle nodes on one
                        // machine ticking at 1 kHz each kept two cores busy switching).
                        if running.load(Ordering::SeqCst) == 0 {
                            std::thread::park_timeout(IDLE_TICKER_WAKE);
                            continue;
                        }
                        // One sliver has nobody to yield to: ticks then only meter its CPU
                        // cap, for which a tenth of the rate does (fifty single-sliver nodes
                        // on one machine spent a core waking up 50,000 times a second).
                        let alone = running.load(Ordering::SeqCst) < 2;
                        std::thread::sleep(if alone { tick * SOLO_TICK_FACTOR } else { tick });
                        engine.increment_epoch();
                    }
                })
                .map_err(|source| SandboxError::Io {
                    path: PathBuf::from("(epoch ticker)"),
                    source,
                })?
        };
        Ok(Sandbox {
            engine,
            linker: Arc::new(linker),
            runtime,
            config,
            running,
            fair: Arc::new(sliver::FairShare::default()),
            sockets: Arc::default(),
            next_id: std::sync::atomic::AtomicU64::new(1),
            ticker_stop,
            ticker: Some(ticker),
        })
    }

    /// Compiles module bytes, through the node-private cache keyed by the module's hash and
    /// the engine's compatibility hash.
    pub fn compile(&self, module: &[u8]) -> Result<Arc<Compiled>, SandboxError> {
        self.compiler().compile(module)
    }

    /// A handle that compiles on any thread (a node compiles on a worker, never on its
    /// network loop).
    pub fn compiler(&self) -> Compiler {
        Compiler {
            engine: self.engine.clone(),
            cache_dir: self.config.cache_dir.clone(),
        }
    }

    /// Starts a sliver.
    pub fn spawn(
        &self,
        compiled: Arc<Compiled>,
        spec: SliverSpec,
    ) -> Result<SliverHandle, SandboxError> {
        let running = self.running.fetch_add(1, Ordering::SeqCst);
        if running >= self.config.max_slivers {
            self.running.fetch_sub(1, Ordering::SeqCst);
            return Err(SandboxError::Full(self.config.max_slivers));
        }
        if let Some(t) = &self.ticker {
            t.thread().unpark();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(sliver::spawn(self, id, compiled, spec))
    }

    /// Benchmark hook: instantiates a component in a fresh store with the sandbox's
    /// configuration (pooling allocator, limits, WASI) and returns how long instantiation
    /// alone took. Nothing runs.
    #[doc(hidden)]
    pub fn time_instantiation(
        &self,
        compiled: &Compiled,
        spec: &SliverSpec,
    ) -> Result<Duration, SandboxError> {
        self.runtime.block_on(sliver::time_instantiation(
            &self.engine,
            &self.linker,
            compiled,
            spec,
        ))
    }

    /// OS sockets all slivers hold now.
    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::Relaxed)
    }

    /// Slivers running now.
    pub fn running(&self) -> u32 {
        self.running.load(Ordering::SeqCst)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

struct HashWriter<'a>(&'a mut Sha256);
impl std::hash::Hasher for HashWriter<'_> {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
