//! A budget of OS sockets per sliver and per node.
//!
//! wasmtime-wasi creates a real OS socket (a file descriptor) on `create-tcp-socket`,
//! `create-udp-socket` and `accept`, before any address is checked; only the resource
//! table's size (4,096 handles) bounded how many one sliver could hold, so a few slivers
//! could exhaust the node's descriptors. Those three functions are shadowed in the linker:
//! each takes a permit first (the guest gets `new-socket-limit` when none is left, and no
//! descriptor is created), and the socket resources' destructors are shadowed to give it
//! back. A socket's streams and pollables are its children, so when its destructor runs
//! nothing else holds the descriptor.
//!
//! Invariant: permits are owned by the store; a store dropped without running destructors
//! (a killed sliver) returns every permit it held.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::tcp::HostTcpSocket;
use wasmtime_wasi::p2::bindings::sockets::udp::HostUdpSocket;
use wasmtime_wasi::p2::bindings::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::WasiSocketsView;

/// OS sockets one sliver may hold at once.
pub const MAX_SOCKETS_PER_SLIVER: usize = 64;

/// One socket's share of the node's count; given back when dropped.
pub struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Sockets of one sliver, and the node's count they are part of.
pub struct SocketBudget {
    limit: usize,
    node_limit: usize,
    node: Arc<AtomicUsize>,
    live: HashMap<u32, Permit>,
}

impl SocketBudget {
    /// A sliver's budget of `limit` sockets within the node's `node_limit`, counted in `node`.
    pub fn new(limit: usize, node_limit: usize, node: Arc<AtomicUsize>) -> SocketBudget {
        SocketBudget {
            limit,
            node_limit,
            node,
            live: HashMap::new(),
        }
    }

    /// Sockets this sliver holds.
    pub fn held(&self) -> usize {
        self.live.len()
    }

    fn acquire(&mut self) -> Option<Permit> {
        if self.live.len() >= self.limit {
            return None;
        }
        self.node
            .fetch_update(Relaxed, Relaxed, |n| (n < self.node_limit).then_some(n + 1))
            .ok()?;
        Some(Permit(self.node.clone()))
    }

    fn bind(&mut self, rep: u32, p: Permit) {
        self.live.insert(rep, p);
    }

    fn release(&mut self, rep: u32) {
        self.live.remove(&rep);
    }
}

/// Access to a store's socket budget.
pub trait Budgeted: WasiSocketsView {
    /// The sliver's budget.
    fn budget(&mut self) -> &mut SocketBudget;
}

/// The interfaces shadowed (the versions wasmtime-wasi 48 defines; guests importing any
/// 0.2.x version are linked to them).
const TCP_CREATE: &str = "wasi:sockets/tcp-create-socket@0.2.12";
const UDP_CREATE: &str = "wasi:sockets/udp-create-socket@0.2.12";
const TCP: &str = "wasi:sockets/tcp@0.2.12";
const UDP: &str = "wasi:sockets/udp@0.2.12";

/// Takes a permit for an `accept` (called from the flow meter's shadow of it, which owns
/// that function); `None` means the guest gets `new-socket-limit`.
pub fn permit_for_accept<T: Budgeted>(state: &mut T) -> Option<Permit> {
    state.budget().acquire()
}

/// Records the socket an `accept` created under its permit.
pub fn accepted<T: Budgeted>(state: &mut T, rep: u32, permit: Permit) {
    state.budget().bind(rep, permit);
}

/// Shadows socket creation and the socket destructors.
pub fn add_to_linker<T: Budgeted + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.instance(TCP_CREATE)?.func_wrap(
        "create-tcp-socket",
        |mut store: StoreContextMut<'_, T>,
         (family,): (IpAddressFamily,)|
         -> wasmtime::Result<(Result<Resource<TcpSocket>, ErrorCode>,)> {
            let state = store.data_mut();
            let Some(permit) = state.budget().acquire() else {
                return Ok((Err(ErrorCode::NewSocketLimit),));
            };
            let created = tcp_create_socket::Host::create_tcp_socket(&mut state.sockets(), family);
            match created {
                Ok(socket) => {
                    state.budget().bind(socket.rep(), permit);
                    Ok((Ok(socket),))
                }
                Err(e) => e.downcast().map(|code| (Err(code),)),
            }
        },
    )?;
    linker.instance(UDP_CREATE)?.func_wrap_async(
        "create-udp-socket",
        |mut store: StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| {
            Box::new(async move {
                let state = store.data_mut();
                let Some(permit) = state.budget().acquire() else {
                    return Ok((Err(ErrorCode::NewSocketLimit),));
                };
                let created =
                    udp_create_socket::Host::create_udp_socket(&mut state.sockets(), family).await;
                match created {
                    Ok(socket) => {
                        state.budget().bind(socket.rep(), permit);
                        Ok((Ok(socket),))
                    }
                    Err(e) => e.downcast().map(|code| (Err(code),)),
                }
            })
        },
    )?;
    linker.instance(TCP)?.resource(
        "tcp-socket",
        ResourceType::host::<TcpSocket>(),
        |mut store: StoreContextMut<'_, T>, rep| {
            let state = store.data_mut();
            let dropped = HostTcpSocket::drop(&mut state.sockets(), Resource::new_own(rep));
            state.budget().release(rep);
            dropped
        },
    )?;
    linker.instance(UDP)?.resource(
        "udp-socket",
        ResourceType::host::<UdpSocket>(),
        |mut store: StoreContextMut<'_, T>, rep| {
            let state = store.data_mut();
            let dropped = HostUdpSocket::drop(&mut state.sockets(), Resource::new_own(rep));
            state.budget().release(rep);
            dropped
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
