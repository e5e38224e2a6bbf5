//! The node's sensors: libp2p's metrics (connections, bandwidth per protocol, gossipsub,
//! identify, ping) and slicefed's own (members, slivers, tickets admitted and refused by
//! reason, revocations and deletes held, the ledger, witnessing, each sliver's usage),
//! served as Prometheus (OpenMetrics) text at `GET /metrics` on the address the owner
//! chooses (`node run --metrics`, loopback by default).
//!
//! Invariants:
//! - A scrape never waits for the daemon's loop: the handler only encodes the registries,
//!   whose values are atomics the loop sets once a tick ([`Sensors::update`]) and on events.
//! - Every label set is bounded: sliver states are three words, refusal reasons are
//!   [`slicefed_proto::core::Refusal::label`]s, slices and slivers are the node's own (at
//!   most `--max-slivers`), and a sliver's series are removed once it is forgotten.
//! - The endpoint is the owner's: loopback by default, and slivers cannot reach it (its
//!   port joins the host rules like the node's own ports).

use super::*;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

/// Where the sensor endpoint listens when the owner says nothing: loopback only, on a port
/// the system picks (written to [`METRICS_ADDR_FILE`]), so that several nodes on one
/// machine never collide; an owner who scrapes it names a fixed one (`--metrics`).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:0";
/// The file in the node's directory that says where the sensor endpoint listens.
pub const METRICS_ADDR_FILE: &str = "metrics.addr";

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct SliceLabel {
    slice: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct SliverLabel {
    slice: String,
    sliver: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// What the daemon's loop writes and a scrape reads.
pub struct Sensors {
    /// libp2p's own families; the loop records swarm events into them.
    pub(super) libp2p: libp2p::metrics::Metrics,
    members: Family<StateLabel, Gauge>,
    slivers: Family<StateLabel, Gauge>,
    slice_slivers: Family<SliceLabel, Gauge>,
    tickets_admitted: Counter,
    tickets_refused: Family<ReasonLabel, Counter>,
    revocations_held: Gauge,
    deletes_held: Gauge,
    restore_waiting: Gauge,
    restore_caught_up: Gauge,
    ledger_entries: Gauge,
    /// Entries queued for the ledger and not yet reported durable.
    pub(super) ledger_pending: Gauge,
    /// Seconds one batch of appends took to write and sync (the writer thread observes).
    pub(super) append_seconds: Histogram,
    cosignatures: Gauge,
    witnessed_logs: Gauge,
    witnessed_entries: Gauge,
    sliver_cpu_seconds: Family<SliverLabel, FloatGauge>,
    sliver_memory_bytes: Family<SliverLabel, Gauge>,
    sliver_flows: Family<SliverLabel, Gauge>,
    sliver_sent_bytes: Family<SliverLabel, Gauge>,
    sliver_received_bytes: Family<SliverLabel, Gauge>,
    /// What the counters were last set from (the core keeps totals).
    admitted_seen: u64,
    refused_seen: BTreeMap<&'static str, u64>,
    /// Label sets shown last tick, removed when they go.
    shown_slivers: BTreeSet<SliverLabel>,
    shown_slices: BTreeSet<SliceLabel>,
}

impl Sensors {
    /// Registers every family in `registry` (slicefed's under `slicefed_`, libp2p's
    /// under `libp2p_`).
    pub fn new(registry: &mut Registry) -> Sensors {
        let libp2p = libp2p::metrics::Metrics::new(registry);
        let s = Sensors {
            libp2p,
            members: Family::default(),
            slivers: Family::default(),
            slice_slivers: Family::default(),
            tickets_admitted: Counter::default(),
            tickets_refused: Family::default(),
            revocations_held: Gauge::default(),
            deletes_held: Gauge::default(),
            restore_waiting: Gauge::default(),
            restore_caught_up: Gauge::default(),
            ledger_entries: Gauge::default(),
            ledger_pending: Gauge::default(),
            append_seconds: Histogram::new([
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0,
            ]),
            cosignatures: Gauge::default(),
            witnessed_logs: Gauge::default(),
            witnessed_entries: Gauge::default(),
            sliver_cpu_seconds: Family::default(),
            sliver_memory_bytes: Family::default(),
            sliver_flows: Family::default(),
            sliver_sent_bytes: Family::default(),
            sliver_received_bytes: Family::default(),
            admitted_seen: 0,
            refused_seen: BTreeMap::new(),
            shown_slivers: BTreeSet::new(),
            shown_slices: BTreeSet::new(),
        };
        let r = registry.sub_registry_with_prefix("slicefed");
        r.register(
            "members",
            "Members this node lists, by health (ok, unhealthy, equivocated)",
            s.members.clone(),
        );
        r.register(
            "slivers",
            "Slivers on this node, by state (running, stopping, ended: ended ones are kept a while for status)",
            s.slivers.clone(),
        );
        r.register(
            "slice_slivers",
            "Slivers running on this node, by slice",
            s.slice_slivers.clone(),
        );
        r.register(
            "tickets_admitted",
            "Tickets this node admitted since it started",
            s.tickets_admitted.clone(),
        );
        r.register(
            "tickets_refused",
            "Tickets this node refused since it started, by reason",
            s.tickets_refused.clone(),
        );
        r.register(
            "revocations_held",
            "Revocations this node holds and enforces",
            s.revocations_held.clone(),
        );
        r.register(
            "deletes_held",
            "Holder-signed slice deletes this node holds",
            s.deletes_held.clone(),
        );
        r.register(
            "ledger_entries",
            "Entries in this node's log",
            s.ledger_entries.clone(),
        );
        r.register(
            "ledger_pending_appends",
            "Entries queued for this node's log and not yet durable",
            s.ledger_pending.clone(),
        );
        r.register(
            "ledger_append_seconds",
            "Time to write and sync one batch of log entries",
            s.append_seconds.clone(),
        );
        r.register(
            "ledger_cosignatures",
            "Witness cosignatures on this node's latest checkpoint",
            s.cosignatures.clone(),
        );
        r.register(
            "witnessed_logs",
            "Other nodes' logs this node keeps a replica of, as their witness",
            s.witnessed_logs.clone(),
        );
        r.register(
            "witnessed_entries",
            "Entries in all the replicas this node keeps",
            s.witnessed_entries.clone(),
        );
        r.register(
            "sliver_cpu_seconds",
            "CPU time a running sliver used",
            s.sliver_cpu_seconds.clone(),
        );
        r.register(
            "sliver_memory_bytes",
            "Peak memory of a running sliver",
            s.sliver_memory_bytes.clone(),
        );
        r.register(
            "sliver_flows",
            "Flows a running sliver opened (allowed and denied)",
            s.sliver_flows.clone(),
        );
        r.register(
            "sliver_sent_bytes",
            "Bytes a running sliver sent",
            s.sliver_sent_bytes.clone(),
        );
        r.register(
            "restore_waiting_slivers",
            "Saved slivers waiting for this node to catch up with members before they come back (a node that knew members and hears none waits: it is out of touch, not alone)",
            s.restore_waiting.clone(),
        );
        r.register(
            "restore_caught_up_members",
            "Members this restarting node has caught up with so far (it needs three, or as many as it lists or knew before)",
            s.restore_caught_up.clone(),
        );
        r.register(
            "sliver_received_bytes",
            "Bytes a running sliver received",
            s.sliver_received_bytes.clone(),
        );
        s
    }
}

/// A sliver's state as a label: three words, whatever the reason it ended.
fn state_word(state: &str) -> &'static str {
    if state == "running" {
        "running"
    } else if state.starts_with("stopping") {
        "stopping"
    } else {
        "ended"
    }
}

fn gauge_of(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Daemon {
    /// Sets every sensor from the node's state (once a tick; `status` is this tick's).
    pub(super) fn update_sensors(&mut self, status: &NodeStatus) {
        let Some(s) = self.sensors.as_mut() else {
            return;
        };
        let core = self.node.core();
        let offenders = self.node.witnessing().witness().offenders();
        let mut by_health: BTreeMap<&str, i64> =
            [("ok", 0), ("unhealthy", 0), ("equivocated", 0)].into();
        for (k, m) in core.members() {
            let h = if offenders.contains_key(k) {
                "equivocated"
            } else if m.load.unhealthy.is_some() {
                "unhealthy"
            } else {
                "ok"
            };
            *by_health.entry(h).or_default() += 1;
        }
        for (h, n) in by_health {
            s.members
                .get_or_create(&StateLabel { state: h.into() })
                .set(n);
        }
        // Tickets: the core keeps totals; the counters only go up by what is new.
        let counts = core.ticket_counts();
        s.tickets_admitted
            .inc_by(counts.admitted.saturating_sub(s.admitted_seen));
        s.admitted_seen = counts.admitted;
        for (reason, n) in &counts.refused {
            let seen = s.refused_seen.entry(reason).or_default();
            s.tickets_refused
                .get_or_create(&ReasonLabel {
                    reason: (*reason).into(),
                })
                .inc_by(n.saturating_sub(*seen));
            *seen = *n;
        }
        let (revocations, deletes) = core.held_counts();
        s.revocations_held.set(gauge_of(revocations));
        s.deletes_held.set(gauge_of(deletes));
        let restore = self.node.restore_progress();
        s.restore_waiting
            .set(gauge_of(restore.map_or(0, |r| r.waiting)));
        s.restore_caught_up
            .set(gauge_of(restore.map_or(0, |r| r.caught_up)));
        let replicas: Vec<(&PublicKey, u64)> =
            self.node.witnessing().witness().replicas().collect();
        s.witnessed_logs.set(gauge_of(replicas.len()));
        s.witnessed_entries
            .set(gauge_of(replicas.iter().map(|(_, n)| *n).sum::<u64>()));

        s.ledger_entries.set(gauge_of(status.ledger_entries));
        s.cosignatures.set(i64::from(status.cosignatures));
        let mut by_state: BTreeMap<&str, i64> =
            [("running", 0), ("stopping", 0), ("ended", 0)].into();
        let mut by_slice: BTreeMap<SliceLabel, i64> = BTreeMap::new();
        let mut slivers: BTreeSet<SliverLabel> = BTreeSet::new();
        for v in &status.slivers {
            let word = state_word(&v.state);
            *by_state.entry(word).or_default() += 1;
            if word != "running" {
                continue;
            }
            *by_slice
                .entry(SliceLabel {
                    slice: v.slice.clone(),
                })
                .or_default() += 1;
            let l = SliverLabel {
                slice: v.slice.clone(),
                sliver: v.id.to_string(),
            };
            s.sliver_cpu_seconds
                .get_or_create(&l)
                .set(v.cpu_ms as f64 / 1000.0);
            s.sliver_memory_bytes
                .get_or_create(&l)
                .set(gauge_of(v.memory));
            s.sliver_flows.get_or_create(&l).set(gauge_of(v.flows));
            s.sliver_sent_bytes
                .get_or_create(&l)
                .set(gauge_of(v.bytes_out));
            s.sliver_received_bytes
                .get_or_create(&l)
                .set(gauge_of(v.bytes_in));
            slivers.insert(l);
        }
        for (state, n) in by_state {
            s.slivers
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n);
        }
        for gone in s.shown_slivers.difference(&slivers) {
            s.sliver_cpu_seconds.remove(gone);
            s.sliver_memory_bytes.remove(gone);
            s.sliver_flows.remove(gone);
            s.sliver_sent_bytes.remove(gone);
            s.sliver_received_bytes.remove(gone);
        }
        s.shown_slivers = slivers;
        let slices: BTreeSet<SliceLabel> = by_slice.keys().cloned().collect();
        for gone in s.shown_slices.difference(&slices) {
            s.slice_slivers.remove(gone);
        }
        for (l, n) in by_slice {
            s.slice_slivers.get_or_create(&l).set(n);
        }
        s.shown_slices = slices;
    }
}

/// The registries a scrape encodes: the node's, and the transport's byte counters (kept
/// apart so that the daemon reads its byte counts without encoding every sliver's series).
pub struct Exposition {
    /// slicefed's and libp2p's families.
    pub main: Registry,
    /// libp2p's bandwidth counters.
    pub bandwidth: Arc<Registry>,
}

impl Exposition {
    /// OpenMetrics text of both registries (one `# EOF`, at the end).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.main);
        if let Some(body) = text.strip_suffix("# EOF\n") {
            text.truncate(body.len());
        }
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.bandwidth);
        text
    }
}

/// The owner's token for the dashboard and sensors when they listen beyond loopback: read
/// from `DIR/dashboard.token`, or made (random, readable by the owner only) the first time.
pub fn owner_token(dir: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(DASHBOARD_TOKEN_FILE);
    // Only a plain file that nobody but the owner can read is a token; anything else (a
    // symlink, a file others may read) is replaced.
    if let Ok(meta) = std::fs::symlink_metadata(&path)
        && meta.file_type().is_file()
        && meta.permissions().mode() & 0o077 == 0
        && let Ok(t) = std::fs::read_to_string(&path)
        && t.trim().len() >= 32
    {
        return Ok(t.trim().to_string());
    }
    let _ = std::fs::remove_file(&path);
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes())?;
    }
    Ok(token)
}

/// The file that says where the dashboard listens.
pub const DASHBOARD_ADDR_FILE: &str = "dashboard.addr";

/// The token a listener at `at` wants: none on loopback, the owner's anywhere else.
pub fn token_for(at: SocketAddr, dir: &Path) -> Result<Option<String>, NodeError> {
    if at.ip().is_loopback() {
        return Ok(None);
    }
    owner_token(dir)
        .map(Some)
        .map_err(|e| NodeError::Setup(format!("the owner's token in {}: {e}", dir.display())))
}

/// The file that holds the owner's token (`Authorization: Bearer TOKEN`, or `?token=`).
pub const DASHBOARD_TOKEN_FILE: &str = "dashboard.token";

/// Whether a request carries the owner's token (always, when none is needed).
fn authorized(token: Option<&str>, headers: &axum::http::HeaderMap, query: Option<&str>) -> bool {
    let Some(want) = token else {
        return true;
    };
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let asked = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("token="));
    // Compared in constant time: the token guards the owner's page.
    [bearer, asked].into_iter().flatten().any(|t| {
        t.len() == want.len()
            && t.bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

/// Most connections one of the owner's listeners (sensors, dashboard) holds at once; the
/// next waits in the kernel's backlog until one closes.
pub const MAX_HTTP_CONNECTIONS: usize = 64;
/// A connection that sends nothing for this long is closed (a slow or idle client must not
/// hold a place).
pub const HTTP_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// A TCP listener that holds at most [`MAX_HTTP_CONNECTIONS`] connections and closes those
/// idle for [`HTTP_IDLE`].
struct Bounded {
    inner: tokio::net::TcpListener,
    places: Arc<tokio::sync::Semaphore>,
}

/// A connection holding its place until it closes.
struct Held {
    stream: tokio::net::TcpStream,
    _place: tokio::sync::OwnedSemaphorePermit,
    idle: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl axum::serve::Listener for Bounded {
    type Io = Held;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Held, SocketAddr) {
        loop {
            // The semaphore is never closed: a place always comes.
            let Ok(place) = self.places.clone().acquire_owned().await else {
                std::future::pending::<()>().await;
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let idle = Box::pin(tokio::time::sleep(HTTP_IDLE));
                    return (
                        Held {
                            stream,
                            _place: place,
                            idle,
                        },
                        addr,
                    );
                }
                // Out of descriptors, say: wait a moment rather than spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl tokio::io::AsyncRead for Held {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        let before = buf.filled().len();
        let read = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        match read {
            std::task::Poll::Ready(Ok(())) if buf.filled().len() > before => {
                let at = tokio::time::Instant::now() + HTTP_IDLE;
                self.idle.as_mut().reset(at);
                read
            }
            std::task::Poll::Pending => {
                if self.idle.as_mut().poll(cx).is_ready() {
                    std::task::Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "idle",
                    )))
                } else {
                    std::task::Poll::Pending
                }
            }
            other => other,
        }
    }
}

impl tokio::io::AsyncWrite for Held {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Binds one of the owner's listeners, bounded.
async fn bind_bounded(addr: SocketAddr) -> std::io::Result<(Bounded, SocketAddr)> {
    let inner = tokio::net::TcpListener::bind(addr).await?;
    let local = inner.local_addr()?;
    Ok((
        Bounded {
            inner,
            places: Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS)),
        },
        local,
    ))
}

/// Whether a request to a loopback listener names it by a loopback host (`Host`): a web
/// page the owner visits elsewhere cannot rebind its own name to 127.0.0.1 and read the
/// owner's page (DNS rebinding). Beyond loopback the token guards instead.
fn loopback_host(local: SocketAddr, headers: &axum::http::HeaderMap) -> bool {
    if !local.ip().is_loopback() {
        return true;
    }
    let Some(host) = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let port = local.port();
    [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ]
    .iter()
    .any(|h| h == host)
}

/// The refusal of a request that is not the owner's, if it is not.
fn refuse(
    local: SocketAddr,
    token: Option<&str>,
    headers: &axum::http::HeaderMap,
    query: Option<&str>,
) -> Option<axum::response::Response> {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    if !loopback_host(local, headers) {
        return Some(
            (
                StatusCode::MISDIRECTED_REQUEST,
                "ask for it by 127.0.0.1 or localhost\n",
            )
                .into_response(),
        );
    }
    if !authorized(token, headers, query) {
        return Some((StatusCode::UNAUTHORIZED, "the owner's token is needed\n").into_response());
    }
    None
}

/// Serves `GET /metrics` (the sensors) on `addr` until the runtime ends; returns where it
/// listens. With a `token`, it wants it. Only this listener is opened to slivers with the
/// sensors right: the dashboard has its own ([`serve_dashboard`]).
pub async fn serve(
    addr: SocketAddr,
    exposition: Arc<Exposition>,
    token: Option<String>,
) -> std::io::Result<SocketAddr> {
    use axum::extract::RawQuery;
    use axum::http::{HeaderMap, header};
    use axum::response::IntoResponse;
    let (listener, local) = bind_bounded(addr).await?;
    let token: Arc<Option<String>> = Arc::new(token);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap, RawQuery(q): RawQuery| {
            let e = exposition.clone();
            let t = token.clone();
            async move {
                if let Some(no) = refuse(local, t.as_deref(), &headers, q.as_deref()) {
                    return no;
                }
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    e.encode(),
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(local)
}

/// Serves the owner's dashboard (`GET /`) on `addr` until the runtime ends; returns where
/// it listens. With a `token`, it wants it. No sliver may reach it, whatever its rights.
pub async fn serve_dashboard(
    addr: SocketAddr,
    board: super::dashboard::SharedBoard,
    token: Option<String>,
) -> std::io::Result<SocketAddr> {
    use axum::extract::RawQuery;
    use axum::http::{HeaderMap, header};
    use axum::response::IntoResponse;
    let (listener, local) = bind_bounded(addr).await?;
    let token: Arc<Option<String>> = Arc::new(token);
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move |headers: HeaderMap, RawQuery(q): RawQuery| {
            let b = board.clone();
            let t = token.clone();
            async move {
                if let Some(no) = refuse(local, t.as_deref(), &headers, q.as_deref()) {
                    return no;
                }
                let sort = q
                    .as_deref()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("sort=")));
                // A copy, so the lock is not held while the page is written.
                let board = match b.read() {
                    Ok(board) => board.clone(),
                    Err(_) => super::dashboard::Board::default(),
                };
                let page = super::dashboard::render(&board, sort);
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    page,
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_connections_cannot_hold_the_sensors_for_ever() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let e = Arc::new(Exposition {
            main: Registry::default(),
            bandwidth: Arc::new(Registry::default()),
        });
        let at = serve("127.0.0.1:0".parse().unwrap(), e, None)
            .await
            .unwrap();
        // Every place taken by a client that says nothing.
        let mut idle = vec![];
        for _ in 0..MAX_HTTP_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(at).await.unwrap());
        }
        let get = || async move {
            let mut c = tokio::net::TcpStream::connect(at).await?;
            c.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .await?;
            let mut out = String::new();
            c.read_to_string(&mut out).await?;
            Ok::<String, std::io::Error>(out)
        };
        // No place for another now...
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(2), get())
                .await
                .is_err()
        );
        // ...but the idle ones are closed, and it is served.
        let out = tokio::time::timeout(HTTP_IDLE * 2, get())
            .await
            .unwrap()
            .unwrap();
        assert!(out.contains("# EOF") || out.contains(" 421 "), "{out}");
        drop(idle);
    }

    #[test]
    fn a_loopback_listener_answers_only_to_a_loopback_host_name() {
        let local: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let with = |host: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::HOST, host.parse().unwrap());
            loopback_host(local, &h)
        };
        assert!(with("127.0.0.1:9464") && with("localhost:9464") && with("[::1]:9464"));
        // A page elsewhere that rebound its own name to 127.0.0.1.
        assert!(!with("evil.example:9464"));
        assert!(!with("localhost:9465"));
        assert!(!loopback_host(local, &axum::http::HeaderMap::new()));
        // Beyond loopback the token guards instead.
        assert!(loopback_host(
            "10.0.0.1:9464".parse().unwrap(),
            &axum::http::HeaderMap::new()
        ));
    }

    #[test]
    fn beyond_loopback_only_the_owners_token_opens_the_page_and_the_sensors() {
        let none = axum::http::HeaderMap::new();
        // Loopback: no token wanted.
        assert!(authorized(None, &none, None));
        let token = "a".repeat(48);
        let want = Some(token.as_str());
        assert!(!authorized(want, &none, None));
        assert!(!authorized(want, &none, Some("token=")));
        assert!(!authorized(
            want,
            &none,
            Some(&format!("token={}", "b".repeat(48)))
        ));
        assert!(!authorized(
            want,
            &none,
            Some(&format!("token={}", "a".repeat(47)))
        ));
        assert!(authorized(
            want,
            &none,
            Some(&format!("sort=name&token={token}"))
        ));
        let mut bearer = axum::http::HeaderMap::new();
        bearer.insert(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        assert!(authorized(want, &bearer, None));
        let dir = tempfile::tempdir().unwrap();
        let made = owner_token(dir.path()).unwrap();
        assert_eq!(made.len(), 48);
        // The same token after a restart; the file is the owner's alone.
        assert_eq!(owner_token(dir.path()).unwrap(), made);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(DASHBOARD_TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
}
