//! Real libp2p swarms on loopback: gossip is delivered only after validation, requests and
//! responses round-trip, and an oversized request is refused by the codec.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use slicefed_peer::net::{self, Behaviour, BehaviourEvent, MAX_REQUEST_BYTES};
use slicefed_trust::fixtures::key;
use std::time::Duration;

async fn listening(n: u8) -> (Swarm<Behaviour>, Multiaddr) {
    let (s, _, addr) = listening_counted(n).await;
    (s, addr)
}

async fn listening_counted(n: u8) -> (Swarm<Behaviour>, net::WireBytes, Multiaddr) {
    let (mut s, bytes) = net::swarm(&key(n)).unwrap();
    s.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = s.select_next_some().await {
            return (s, bytes, address);
        }
    }
}

/// Drives a swarm in the background: accepts every gossip message (recording it) and
/// echoes every request.
fn serve(mut s: Swarm<Behaviour>) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            match s.select_next_some().await {
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                })) => {
                    let _ = s
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Accept,
                        );
                    let _ = tx.send(message.data).await;
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message {
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                })) => {
                    let mut reply = b"echo:".to_vec();
                    reply.extend(request);
                    let _ = s.behaviour_mut().rpc.send_response(channel, reply);
                }
                _ => {}
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_and_requests_between_real_swarms() {
    let topic = IdentTopic::new("slicefed/test");
    let (mut a, a_bytes, a_addr) = listening_counted(1).await;
    assert_eq!(
        a_bytes.read(),
        (0, 0),
        "nothing moved before anyone connected"
    );
    let (mut b, _) = listening(2).await;
    let (mut c, _) = listening(3).await;
    for s in [&mut a, &mut b, &mut c] {
        s.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    }
    b.dial(a_addr.clone()).unwrap();
    c.dial(a_addr.clone()).unwrap();
    let a_id: PeerId = *a.local_peer_id();
    assert_eq!(
        a_id.to_string(),
        key(1).public().peer_id(),
        "the node key is the libp2p identity"
    );
    let mut got_b = serve(b);
    let mut got_c = serve(c);

    // a publishes once the mesh has formed (publishing to nobody is an error in gossipsub).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut published = false;
    let mut pending: Option<OutboundRequestId> = None;
    let mut echoed = None;
    while tokio::time::Instant::now() < deadline && !(published && echoed.is_some()) {
        tokio::select! {
            ev = a.select_next_some() => {
                if let SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, response }, ..
                })) = ev {
                    assert_eq!(Some(request_id), pending);
                    echoed = Some(response);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                // Once both are in a's mesh (before, a publish may reach fanout peers only).
                let meshed = a.behaviour().gossipsub.mesh_peers(&topic.hash()).count() >= 2;
                if !published && meshed && a.behaviour_mut().gossipsub.publish(topic.clone(), b"revocation bytes".to_vec()).is_ok() {
                    published = true;
                }
                if pending.is_none() {
                    let peers: Vec<PeerId> = a.connected_peers().copied().collect();
                    if let Some(p) = peers.first() {
                        pending = Some(a.behaviour_mut().rpc.send_request(p, b"status?".to_vec()));
                    }
                }
            }
        }
    }
    assert!(published, "gossip mesh never formed");
    assert_eq!(echoed.as_deref(), Some(&b"echo:status?"[..]));
    let (bytes_in, bytes_out) = a_bytes.read();
    assert!(
        bytes_in >= b"echo:status?".len() as u64 && bytes_out >= b"status?".len() as u64,
        "the transport counted the exchange: in {bytes_in}, out {bytes_out}"
    );
    // a keeps driving its swarm while b and c receive.
    let drive = tokio::spawn(async move {
        loop {
            let _ = a.select_next_some().await;
        }
    });
    for rx in [&mut got_b, &mut got_c] {
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .ok()
            .flatten();
        assert_eq!(got.as_deref(), Some(&b"revocation bytes"[..]));
    }
    drive.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_refused() {
    let (a, a_addr) = listening(4).await;
    let a_id = *a.local_peer_id();
    let _ = serve(a);
    let (mut b, _) = listening(5).await;
    b.dial(a_addr).unwrap();
    let too_big = vec![0u8; MAX_REQUEST_BYTES + 1];
    let mut sent = false;
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match b.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == a_id && !sent => {
                    b.behaviour_mut().rpc.send_request(&a_id, too_big.clone());
                    sent = true;
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(
                    request_response::Event::OutboundFailure { error, .. },
                )) => {
                    return Err(error.to_string());
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message {
                    message: request_response::Message::Response { .. },
                    ..
                })) => return Ok(()),
                _ => {}
            }
        }
    })
    .await
    .expect("no outcome in 20 s");
    assert!(
        outcome.is_err(),
        "an oversized request must not be answered"
    );
}
