//! Byte metering and attribution of TCP flows.
//!
//! `wasi:sockets/tcp` `finish-connect` and `accept` are shadowed in the linker: the original
//! host implementation runs, then the flow's real local and remote addresses are read and
//! both streams are replaced by wrappers that count bytes and operations each way and
//! enforce the sliver's daily egress cap. When the last of the two streams is dropped (the
//! guest closed it, or the sliver ended and its store was dropped), the flow's record is
//! written with exact counts and its end time.

use crate::net::SharedSink;
use slicefed_ledger::entry::{Attribution, Decision, Direction, FlowRecord};
use slicefed_trust::caps::Proto;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::async_trait;
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpSocketAddress};
use wasmtime_wasi::p2::bindings::sockets::tcp::HostTcpSocket;
use wasmtime_wasi::p2::bindings::sockets::udp::{
    HostOutgoingDatagramStream, HostUdpSocket, OutgoingDatagram, OutgoingDatagramStream,
};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError,
    StreamResult, TcpSocket, UdpSocket,
};
use wasmtime_wasi::sockets::WasiSocketsView;

/// The interface the shadowed functions belong to (the version wasmtime-wasi 48 defines;
/// guests importing any 0.2.x version are linked to it).
pub const TCP_INTERFACE: &str = "wasi:sockets/tcp@0.2.12";
/// The UDP interface (datagram bytes are metered there).
pub const UDP_INTERFACE: &str = "wasi:sockets/udp@0.2.12";
/// Bytes of IPv4 and UDP headers charged to the egress cap with every datagram.
pub const UDP_OVERHEAD: u64 = 28;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Daily egress accounting of one sliver.
#[derive(Debug, Default)]
pub struct Egress {
    cap: Option<u64>,
    day: AtomicU64,
    used: AtomicU64,
}

impl Egress {
    /// A cap of `cap` bytes per UTC day (`None`: unlimited).
    pub fn new(cap: Option<u64>) -> Egress {
        Egress {
            cap,
            day: AtomicU64::new(now_ms() / 86_400_000),
            used: AtomicU64::new(0),
        }
    }

    /// Whether `n` more bytes would stay within today's cap.
    pub fn would_fit(&self, n: u64) -> bool {
        let today = now_ms() / 86_400_000;
        let used = if self.day.load(Ordering::Relaxed) == today {
            self.used.load(Ordering::Relaxed)
        } else {
            0
        };
        self.cap.is_none_or(|cap| used.saturating_add(n) <= cap)
    }

    /// Charges `n` bytes; false if that would pass today's cap.
    fn charge(&self, n: u64) -> bool {
        let today = now_ms() / 86_400_000;
        if self.day.swap(today, Ordering::Relaxed) != today {
            self.used.store(0, Ordering::Relaxed);
        }
        let Some(cap) = self.cap else {
            self.used.fetch_add(n, Ordering::Relaxed);
            return true;
        };
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(n);
            if next > cap {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Bytes sent today.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// What the metering needs from a sliver, kept in its store.
#[derive(Clone)]
pub struct MeterConfig {
    /// Whose flows.
    pub who: Attribution,
    /// Where records go.
    pub sink: SharedSink,
    /// Daily egress.
    pub egress: Arc<Egress>,
    /// Called once when the egress cap is reached.
    pub on_egress_cap: Arc<dyn Fn() + Send + Sync>,
    /// Bytes in and out, summed over all flows of the sliver.
    pub totals: Arc<(AtomicU64, AtomicU64)>,
    /// Datagram and refused-attempt records, aggregated.
    pub aggregates: Arc<crate::net::FlowAggregator>,
    /// The sliver's budget of flow records.
    pub records: Arc<crate::net::RecordBudget>,
    /// The slice's network rights (datagrams are judged before they are counted).
    pub rights: slicefed_trust::caps::NetworkRights,
    /// The owner's rules for the machine.
    pub host: crate::net::SharedHostRules,
}

/// Access to the metering config from the store's data.
pub trait Metered: WasiSocketsView + crate::sockets::Budgeted {
    /// The sliver's metering config.
    fn meter(&self) -> &MeterConfig;
    /// The resource table.
    fn table_mut(&mut self) -> &mut ResourceTable;
}

/// One flow's record, written when the meter is dropped.
struct FlowMeter {
    record: Mutex<FlowRecord>,
    config: MeterConfig,
}

impl FlowMeter {
    fn add_in(&self, n: usize) {
        if let Ok(mut r) = self.record.lock() {
            r.bytes_in += n as u64;
            r.packets_in += 1;
            r.last_ms = now_ms();
        }
        self.config.totals.0.fetch_add(n as u64, Ordering::Relaxed);
    }
    fn add_out(&self, n: usize) {
        if let Ok(mut r) = self.record.lock() {
            r.bytes_out += n as u64;
            r.packets_out += 1;
            r.last_ms = now_ms();
        }
        self.config.totals.1.fetch_add(n as u64, Ordering::Relaxed);
    }
    fn charge(&self, n: usize) -> StreamResult<()> {
        if self.config.egress.charge(n as u64) {
            Ok(())
        } else {
            (self.config.on_egress_cap)();
            Err(StreamError::LastOperationFailed(wasmtime::Error::msg(
                "the slice's daily egress cap is reached",
            )))
        }
    }
}

impl Drop for FlowMeter {
    fn drop(&mut self) {
        if let Ok(mut r) = self.record.lock() {
            r.last_ms = r.last_ms.max(now_ms());
            self.config.records.note(1, r.last_ms);
            self.config.sink.record(r.clone());
        }
    }
}

struct MeteredIn {
    inner: DynInputStream,
    meter: Arc<FlowMeter>,
}

struct MeteredOut {
    inner: DynOutputStream,
    meter: Arc<FlowMeter>,
}

#[async_trait]
impl Pollable for MeteredIn {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[async_trait]
impl InputStream for MeteredIn {
    fn read(&mut self, size: usize) -> StreamResult<bytes::Bytes> {
        let b = self.inner.read(size)?;
        if !b.is_empty() {
            self.meter.add_in(b.len());
        }
        Ok(b)
    }
    async fn blocking_read(&mut self, size: usize) -> StreamResult<bytes::Bytes> {
        let b = self.inner.blocking_read(size).await?;
        if !b.is_empty() {
            self.meter.add_in(b.len());
        }
        Ok(b)
    }
    fn skip(&mut self, nelem: usize) -> StreamResult<usize> {
        let n = self.inner.skip(nelem)?;
        if n > 0 {
            self.meter.add_in(n);
        }
        Ok(n)
    }
    async fn blocking_skip(&mut self, nelem: usize) -> StreamResult<usize> {
        let n = self.inner.blocking_skip(nelem).await?;
        if n > 0 {
            self.meter.add_in(n);
        }
        Ok(n)
    }
    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[async_trait]
impl Pollable for MeteredOut {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[async_trait]
impl OutputStream for MeteredOut {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let n = bytes.len();
        self.meter.charge(n)?;
        self.inner.write(bytes)?;
        self.meter.add_out(n);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }
    async fn blocking_write_and_flush(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let n = bytes.len();
        self.meter.charge(n)?;
        self.inner.blocking_write_and_flush(bytes).await?;
        self.meter.add_out(n);
        Ok(())
    }
    fn write_zeroes(&mut self, nelem: usize) -> StreamResult<()> {
        self.meter.charge(nelem)?;
        self.inner.write_zeroes(nelem)?;
        self.meter.add_out(nelem);
        Ok(())
    }
    async fn write_ready(&mut self) -> StreamResult<usize> {
        self.inner.write_ready().await
    }
    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

/// Stands in for a stream while it is being wrapped.
struct Gone;
#[async_trait]
impl Pollable for Gone {
    async fn ready(&mut self) {}
}
impl InputStream for Gone {
    fn read(&mut self, _: usize) -> StreamResult<bytes::Bytes> {
        Err(StreamError::Closed)
    }
}
impl OutputStream for Gone {
    fn write(&mut self, _: bytes::Bytes) -> StreamResult<()> {
        Err(StreamError::Closed)
    }
    fn flush(&mut self) -> StreamResult<()> {
        Err(StreamError::Closed)
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Err(StreamError::Closed)
    }
}

fn wrap(
    table: &mut ResourceTable,
    input: &Resource<DynInputStream>,
    output: &Resource<DynOutputStream>,
    meter: Arc<FlowMeter>,
) -> wasmtime::Result<()> {
    let i = table.get_mut(input)?;
    let inner = std::mem::replace(i, Box::new(Gone));
    *i = Box::new(MeteredIn {
        inner,
        meter: meter.clone(),
    });
    let o = table.get_mut(output)?;
    let inner = std::mem::replace(o, Box::new(Gone));
    *o = Box::new(MeteredOut { inner, meter });
    Ok(())
}

fn start_flow<T: Metered>(state: &mut T, socket: u32, direction: Direction) -> Arc<FlowMeter> {
    let mut view = state.sockets();
    let local = HostTcpSocket::local_address(&mut view, Resource::new_borrow(socket))
        .map(SocketAddr::from)
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let remote = HostTcpSocket::remote_address(&mut view, Resource::new_borrow(socket))
        .map(SocketAddr::from)
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let now = now_ms();
    let config = state.meter().clone();
    Arc::new(FlowMeter {
        record: Mutex::new(FlowRecord {
            who: config.who.clone(),
            proto: Proto::Tcp,
            direction,
            local,
            remote,
            decision: Decision::Allowed,
            bytes_out: 0,
            bytes_in: 0,
            packets_out: 0,
            packets_in: 0,
            first_ms: now,
            last_ms: now,
        }),
        config,
    })
}

type Streams = (Resource<DynInputStream>, Resource<DynOutputStream>);
type Accepted = (
    Resource<TcpSocket>,
    Resource<DynInputStream>,
    Resource<DynOutputStream>,
);

/// Shadows `finish-connect` and `accept` so every TCP flow is metered and attributed.
pub fn add_to_linker<T: Metered + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut tcp = linker.instance(TCP_INTERFACE)?;
    tcp.func_wrap(
        "[method]tcp-socket.finish-connect",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (this,): (Resource<TcpSocket>,)|
         -> wasmtime::Result<(Result<Streams, ErrorCode>,)> {
            let rep = this.rep();
            let state = store.data_mut();
            let result = HostTcpSocket::finish_connect(&mut state.sockets(), this);
            match result {
                Err(e) => e.downcast().map(|code| (Err(code),)),
                Ok((input, output)) => {
                    let meter = start_flow(state, rep, Direction::Outbound);
                    wrap(state.table_mut(), &input, &output, meter)?;
                    Ok((Ok((input, output)),))
                }
            }
        },
    )?;
    tcp.func_wrap(
        "[method]tcp-socket.accept",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (this,): (Resource<TcpSocket>,)|
         -> wasmtime::Result<(Result<Accepted, ErrorCode>,)> {
            let state = store.data_mut();
            // An accepted connection is a new OS socket: it needs a permit first.
            let Some(permit) = crate::sockets::permit_for_accept(state) else {
                return Ok((Err(ErrorCode::NewSocketLimit),));
            };
            let result = HostTcpSocket::accept(&mut state.sockets(), this);
            match result {
                Err(e) => e.downcast().map(|code| (Err(code),)),
                Ok((socket, input, output)) => {
                    crate::sockets::accepted(state, socket.rep(), permit);
                    let meter = start_flow(state, socket.rep(), Direction::Inbound);
                    wrap(state.table_mut(), &input, &output, meter)?;
                    Ok((Ok((socket, input, output)),))
                }
            }
        },
    )?;
    let mut udp = linker.instance(UDP_INTERFACE)?;
    udp.func_wrap_async(
        "[method]udp-socket.stream",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (this, remote): (Resource<UdpSocket>, Option<IpSocketAddress>)| {
            Box::new(async move {
                let state = store.data_mut();
                // Each connected stream's destination must stay known (its datagrams are
                // recorded by it): forget only streams that are gone, else refuse.
                if remote.is_some() {
                    let aggregates = state.meter().aggregates.clone();
                    let table = state.table_mut();
                    let live = |rep: u32| {
                        table
                            .get(&Resource::<OutgoingDatagramStream>::new_borrow(rep))
                            .is_ok()
                    };
                    if !aggregates.room_for_stream(live) {
                        return Ok((Err(ErrorCode::NewSocketLimit),));
                    }
                }
                let result = HostUdpSocket::stream(&mut state.sockets(), this, remote).await;
                match result {
                    Err(e) => e.downcast().map(|code| (Err(code),)),
                    Ok((incoming, outgoing)) => {
                        if let Some(r) = remote {
                            state
                                .meter()
                                .aggregates
                                .connected(outgoing.rep(), SocketAddr::from(r));
                        }
                        Ok((Ok((incoming, outgoing)),))
                    }
                }
            })
        },
    )?;
    udp.func_wrap(
        "[method]outgoing-datagram-stream.send",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (this, mut datagrams): (Resource<OutgoingDatagramStream>, Vec<OutgoingDatagram>)|
         -> wasmtime::Result<(Result<u64, ErrorCode>,)> {
            let rep = this.rep();
            let state = store.data_mut();
            let config = state.meter().clone();
            // Only what the egress cap still allows is sent; the cap reached ends the sliver.
            // Each datagram costs its headers too, so empty ones are not free.
            let fits = datagrams
                .iter()
                .scan(0u64, |sum, d| {
                    *sum = sum.saturating_add(d.data.len() as u64 + UDP_OVERHEAD);
                    Some(*sum)
                })
                .take_while(|sum| config.egress.would_fit(*sum))
                .count();
            if fits == 0 && !datagrams.is_empty() {
                (config.on_egress_cap)();
                return Ok((Err(ErrorCode::AccessDenied),));
            }
            datagrams.truncate(fits);
            let targets: Vec<(Option<SocketAddr>, u64)> = datagrams
                .iter()
                .map(|d| {
                    let to = d
                        .remote_address
                        .map(SocketAddr::from)
                        .or_else(|| config.aggregates.stream_remote(rep));
                    (to, d.data.len() as u64)
                })
                .collect();
            let result = HostOutgoingDatagramStream::send(&mut state.sockets(), this, datagrams);
            match result {
                Err(e) => e.downcast().map(|code| (Err(code),)),
                Ok(sent) => {
                    let now = now_ms();
                    for (to, bytes) in targets.into_iter().take(sent as usize) {
                        config.egress.charge(bytes + UDP_OVERHEAD);
                        config.totals.1.fetch_add(bytes, Ordering::Relaxed);
                        // Refused datagrams are recorded by the policy check, which drops
                        // them; allowed ones are counted here, with their bytes.
                        let Some(to) = to else { continue };
                        let allowed = crate::sliver::judge(
                            &config.rights,
                            &config.host,
                            &*config.sink,
                            to,
                            wasmtime_wasi::sockets::SocketAddrUse::UdpSend,
                        )
                        .allowed;
                        if allowed {
                            config.aggregates.count(
                                Proto::Udp,
                                Direction::Outbound,
                                to,
                                &Decision::Allowed,
                                bytes,
                                now,
                            );
                        }
                    }
                    Ok((Ok(sent),))
                }
            }
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
