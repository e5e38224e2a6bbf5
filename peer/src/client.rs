//! The client side of the node RPC, for the CLI and any other slice-creation service: one
//! throwaway identity, requests to many nodes at once, every answer bounded and decoded.
//!
//! Invariant: a client is never a member; it speaks only request-response, so nodes serve
//! it exactly what they serve anyone (no privileged caller).

use crate::net::{self, BehaviourEvent};
use crate::node::{MemberRow, NodeError};
use crate::wire::{Request, Response};
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use slicefed_trust::SecretKey;
use std::collections::BTreeMap;
use std::time::Duration;

/// The peer id at the end of a `/p2p/PEERID` multiaddr.
pub fn peer_in(addr: &Multiaddr) -> Result<PeerId, NodeError> {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => Ok(p),
        _ => Err(NodeError::Net(format!(
            "{addr} does not end in /p2p/PEERID"
        ))),
    }
}

/// Sends `calls[i].1` to the node at `calls[i].0`, all at once, and calls `on_answer(i, …)`
/// as each answer (or failure) arrives. Stops at `timeout`; calls still open then are
/// reported as timed out.
pub async fn call_all(
    calls: Vec<(Multiaddr, Request)>,
    timeout: Duration,
    mut on_answer: impl FnMut(usize, Result<Response, String>),
) -> Result<(), NodeError> {
    let open = call_until(calls, timeout, Duration::ZERO, |i, r| {
        on_answer(i, r);
        false
    })
    .await?;
    for i in open {
        on_answer(i, Err(format!("no answer in {}s", timeout.as_secs())));
    }
    Ok(())
}

/// Like [`call_all`], but once `on_answer` returns `true` (it has what it needed: one node
/// took a revocation) waits at most `grace` more for the other answers (so that requests
/// still on their way are delivered rather than cut off), and returns the calls still
/// open then, unanswered, in order.
pub async fn call_until(
    calls: Vec<(Multiaddr, Request)>,
    timeout: Duration,
    grace: Duration,
    mut on_answer: impl FnMut(usize, Result<Response, String>) -> bool,
) -> Result<Vec<usize>, NodeError> {
    let started = tokio::time::Instant::now();
    let mut done = false;
    let key = SecretKey::generate().map_err(|e| NodeError::Net(e.to_string()))?;
    let (mut swarm, _) = net::swarm(&key).map_err(|e| NodeError::Net(e.to_string()))?;
    let mut open: BTreeMap<OutboundRequestId, usize> = BTreeMap::new();
    for (i, (addr, req)) in calls.into_iter().enumerate() {
        let peer = match peer_in(&addr) {
            Ok(p) => p,
            Err(e) => {
                done |= on_answer(i, Err(e.to_string()));
                continue;
            }
        };
        let bytes = match req.to_bytes() {
            Ok(b) => b,
            Err(e) => {
                done |= on_answer(i, Err(e.to_string()));
                continue;
            }
        };
        let id = swarm
            .behaviour_mut()
            .rpc
            .send_request_with_addresses(&peer, bytes, vec![addr]);
        open.insert(id, i);
    }
    let end = started + timeout;
    let deadline = tokio::time::sleep_until(end);
    tokio::pin!(deadline);
    while !open.is_empty() {
        if done {
            let sooner = tokio::time::Instant::now() + grace;
            if sooner < deadline.deadline() {
                deadline.as_mut().reset(sooner);
            }
        }
        tokio::select! {
            _ = &mut deadline => break,
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, response },
                    ..
                })) => {
                    if let Some(i) = open.remove(&request_id) {
                        done |= on_answer(i, Response::from_bytes(&response).map_err(|e| format!("bad answer: {e}")));
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::OutboundFailure { request_id, error, .. })) => {
                    if let Some(i) = open.remove(&request_id) {
                        done |= on_answer(i, Err(error.to_string()));
                    }
                }
                _ => {}
            }
        }
    }
    let mut unanswered: Vec<usize> = open.into_values().collect();
    unanswered.sort_unstable();
    Ok(unanswered)
}

/// One request to one node.
pub async fn call(addr: Multiaddr, req: Request, timeout: Duration) -> Result<Response, NodeError> {
    let shown = addr.to_string();
    let mut answer = Err(format!("{shown}: no answer"));
    call_all(vec![(addr, req)], timeout, |_, r| answer = r).await?;
    match answer {
        Ok(Response::Error(e)) => Err(NodeError::Net(format!("{shown}: {e}"))),
        Ok(r) => Ok(r),
        Err(e) => Err(NodeError::Net(format!("{shown}: {e}"))),
    }
}

/// Asks the node at `addr` for its member list.
pub async fn members(addr: Multiaddr, timeout: Duration) -> Result<Vec<MemberRow>, NodeError> {
    match call(addr.clone(), Request::Members, timeout).await? {
        Response::Members(m) => Ok(m),
        _ => Err(NodeError::Net(format!("{addr}: answered something else"))),
    }
}
