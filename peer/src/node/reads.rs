//! Answers read from what the daemon holds (its log, replica files, sandbox handles), once
//! the machine has decided the asker may have them.

use super::*;

/// Most rows in an answer to who holds an address (a machine runs few nodes).
const MAX_HOLDERS_ANSWERED: usize = 64;

impl Daemon {
    /// Entries of `origin`'s log from `from` on, read from this node's replica file on a
    /// worker: only the byte range the page needs, located by the replica's index (each
    /// persisted page ended with a checkpoint), about [`wire::MAX_PAGE_BYTES`] at most.
    pub(super) fn replica_page_job(
        &self,
        origin: &PublicKey,
        from: u64,
    ) -> impl FnOnce() -> Response + Send + 'static {
        let path = self.replica_path(origin);
        let origin = *origin;
        let range = self.replica_index.get(&origin).and_then(|i| i.page(from));
        move || {
            let Some((start, end, first_seq)) = range else {
                return Response::Error(format!(
                    "the replica of {} has no checkpoint past entry {from}",
                    origin.peer_id()
                ));
            };
            read_replica_page(&path, start, end, first_seq, from).unwrap_or_else(|why| {
                Response::Error(format!("replica of {}: {why}", origin.peer_id()))
            })
        }
    }

    /// A page of this node's log from `from`, with checkpoints signed at both ends (read
    /// on a worker).
    pub(super) fn page_job(&self, from: u64) -> impl FnOnce() -> Response + Send + 'static {
        let ledger = self.ledger.clone();
        let key = SecretKey::from_seed(&self.key.seed());
        let me = self.me;
        move || {
            let size = match ledger.latest_checkpoint() {
                Ok(Some(c)) => c.checkpoint.size,
                _ => 0,
            };
            if from > size {
                return Response::Error(format!("the log has {size} checkpointed entries"));
            }
            let mut leaves = vec![];
            let mut bytes = 0usize;
            let mut seq = from;
            while seq < size && seq - from < MAX_PAGE_ENTRIES {
                let Ok(l) = ledger.read(seq) else { break };
                if bytes + l.len() > wire::MAX_PAGE_BYTES && !leaves.is_empty() {
                    break;
                }
                bytes += l.len();
                leaves.push(serde_bytes::ByteBuf::from(l));
                seq += 1;
            }
            let sign = |size: u64| -> Option<SignedCheckpoint> {
                Checkpoint {
                    origin: me,
                    size,
                    root: ledger.root_at(size).ok()?,
                    time_ms: now_ms(),
                }
                .sign(&key)
                .ok()
            };
            match (sign(from), sign(seq)) {
                (Some(base), Some(end)) => Response::Page { base, end, leaves },
                _ => Response::Error("cannot sign the page's checkpoints".into()),
            }
        }
    }

    /// This node's latest checkpoint with the cosignatures it holds of it.
    pub(super) fn checkpoint_answer(&self) -> Response {
        let latest = self.ledger.latest_checkpoint().ok().flatten();
        let cosignatures = latest
            .as_ref()
            .and_then(|c| self.cosigs.get(&c.checkpoint.size))
            .filter(|(c, _)| Some(c) == latest.as_ref())
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Response::Checkpoint {
            checkpoint: latest,
            cosignatures,
        }
    }

    /// Members, and members that left lately, that listen(ed) on `ip`, at most
    /// [`MAX_HOLDERS_ANSWERED`] (health `departed` for those that left): how an auditor
    /// finds the node behind a source address.
    pub(super) fn address_holders(&self, ip: std::net::IpAddr) -> Vec<MemberRow> {
        // Compared as addresses, member by member, before any row is built: anyone may ask,
        // and the answer must cost little more than the matches.
        let on_ip =
            |addrs: &[Multiaddr]| addrs.iter().any(|m| super::addrs::remote_ip(m) == Some(ip));
        let now = now_ms();
        let mut rows: Vec<MemberRow> = vec![];
        let me = peer_of(&self.me);
        // Members only (and this node): any peer that dials a node tells it addresses, and
        // throwaway keys claiming an address must not crowd the real holder out.
        let members = self.node.core().members();
        let holders: std::collections::BTreeSet<PublicKey> = std::iter::once((me, &self.my_addrs))
            .chain(
                self.addrs
                    .iter()
                    .filter(|(p, _)| key_of(p).is_some_and(|k| members.contains_key(&k)))
                    .map(|(p, a)| (Some(*p), a)),
            )
            .filter(|(_, a)| on_ip(a))
            .filter_map(|(p, _)| p.as_ref().and_then(key_of))
            .take(MAX_HOLDERS_ANSWERED)
            .collect();
        if !holders.is_empty() {
            // Only the matches' rows are built (anyone may ask).
            rows.extend(self.member_rows_of(|k| holders.contains(k)));
        }
        for (p, addrs, left_ms) in self.departed.iter().rev() {
            if now.saturating_sub(*left_ms) > wire::DEPARTED_KEPT_MS
                || rows.len() >= MAX_HOLDERS_ANSWERED
            {
                break;
            }
            if on_ip(addrs) && !rows.iter().any(|r| r.peer_id == p.to_string()) {
                rows.push(MemberRow {
                    peer_id: p.to_string(),
                    name: String::new(),
                    authority: String::new(),
                    addrs: addrs
                        .iter()
                        .map(|a| {
                            a.clone()
                                .with(libp2p::multiaddr::Protocol::P2p(*p))
                                .to_string()
                        })
                        .collect(),
                    slivers: 0,
                    free_memory: 0,
                    last_seen_ms_ago: now.saturating_sub(*left_ms),
                    health: "departed".into(),
                    uptime_secs: 0,
                    traffic: Traffic::default(),
                });
            }
        }
        rows
    }

    /// Keeps a departed member's addresses for auditors (bounded, oldest dropped first).
    pub(super) fn remember_departed(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        self.departed.retain(|(p, _, _)| *p != peer);
        if self.departed.len() >= wire::MAX_DEPARTED {
            self.departed.pop_front();
        }
        self.departed.push_back((peer, addrs, now_ms()));
    }

    pub(super) fn member_rows(&self) -> Vec<MemberRow> {
        self.member_rows_of(|_| true)
    }

    /// The rows of this node and the members `wanted` picks (only those are built).
    fn member_rows_of(&self, wanted: impl Fn(&PublicKey) -> bool) -> Vec<MemberRow> {
        let now = now_ms();
        let load = self.node.core().load();
        let show = |a: &Vec<Multiaddr>, p: Option<PeerId>| -> Vec<String> {
            a.iter()
                .map(|x| match p {
                    Some(p) => x
                        .clone()
                        .with(libp2p::multiaddr::Protocol::P2p(p))
                        .to_string(),
                    None => x.to_string(),
                })
                .collect()
        };
        let mut rows = vec![];
        if wanted(&self.me) {
            rows.push(MemberRow {
                peer_id: self.me.peer_id(),
                name: self.my_name.clone(),
                authority: self.my_authority.clone(),
                addrs: show(&self.my_addrs, peer_of(&self.me)),
                slivers: load.slivers,
                free_memory: load.free_memory,
                last_seen_ms_ago: 0,
                health: match self.node.core().unhealthy() {
                    Some(why) => format!("unhealthy: {why}"),
                    None => "ok".into(),
                },
                uptime_secs: self.started.elapsed().as_secs(),
                traffic: self.traffic_now(),
            });
        }
        rows.extend(
            self.node
                .core()
                .members()
                .iter()
                .filter(|(k, _)| wanted(k))
                .map(|(k, m)| {
                    let p = peer_of(k);
                    MemberRow {
                        peer_id: k.peer_id(),
                        name: m.name().to_string(),
                        authority: m.authority().to_string(),
                        addrs: p
                            .and_then(|p| self.addrs.get(&p))
                            .map(|a| show(a, p))
                            .unwrap_or_default(),
                        slivers: m.load.slivers,
                        free_memory: m.load.free_memory,
                        last_seen_ms_ago: now.saturating_sub(
                            self.node.member_last_seen_ms(k).unwrap_or(m.last_seen_ms),
                        ),
                        health: if self.node.witnessing().witness().offenders().contains_key(k) {
                            "equivocated".into()
                        } else if let Some(why) = &m.load.unhealthy {
                            format!("unhealthy: {why}")
                        } else {
                            "ok".into()
                        },
                        uptime_secs: m.load.uptime_secs,
                        traffic: m.load.traffic,
                    }
                }),
        );
        // The member map is unordered; a listing reads best by name.
        if let Some((_, others)) = rows.split_first_mut() {
            others.sort_by(|a, b| a.name.cmp(&b.name).then(a.peer_id.cmp(&b.peer_id)));
        }
        rows
    }

    pub(super) fn status(&self, slice: Option<&str>) -> NodeStatus {
        let keep = |s: &str| slice.is_none_or(|x| x == s);
        let infos: BTreeMap<u64, String> = self
            .node
            .core()
            .sliver_infos()
            .map(|i| (i.plan.id, i.ticket.to_hex()))
            .collect();
        let mut slivers: Vec<SliverStatus> = self
            .live
            .values()
            .filter(|l| keep(l.plan.who.slice.as_str()))
            .map(|l| {
                let mut s = sliver_status(
                    &l.plan,
                    &l.handle,
                    infos.get(&l.plan.id).map_or("", String::as_str),
                );
                // The core's plan carries renewals.
                if let Some(p) = self.node.core().slivers().find(|p| p.id == l.plan.id) {
                    s.expires = p.not_after;
                }
                // Asked to stop: say why at once, as the ended record will (the sandbox
                // ends it within a tick, and the reaper files it within another).
                if let Some(r) = l.stopping {
                    s.state = match l.handle.outcome() {
                        Some(o) => format!("{o}: {}", r.as_str()),
                        None => format!("stopping: {}", r.as_str()),
                    };
                }
                s
            })
            .collect();
        slivers.extend(
            self.ended
                .iter()
                .filter(|e| keep(&e.status.slice))
                .map(|e| e.status.clone()),
        );
        let latest = self.ledger.latest_checkpoint().ok().flatten();
        NodeStatus {
            node: self.me.peer_id(),
            name: self.my_name.clone(),
            ledger_entries: self.ledger.size().unwrap_or(0),
            cosignatures: latest
                .and_then(|c| {
                    self.cosigs
                        .get(&c.checkpoint.size)
                        .map(|(_, v)| v.len() as u32)
                })
                .unwrap_or(0),
            slivers,
        }
    }

    /// The output of `slice`'s slivers here that `reader` may see: those it holds, or all
    /// of them for the node's owner (two people may hold slivers of one slice name; each
    /// sees their own).
    pub(super) fn logs(&self, slice: &str, reader: &PublicKey) -> Vec<SliverLogs> {
        let owner = *reader == self.me;
        let mut out: Vec<SliverLogs> = self
            .live
            .values()
            .filter(|l| l.plan.who.slice.as_str() == slice)
            .filter(|l| owner || self.node.core().holders(l.plan.id).contains(reader))
            .map(|l| sliver_logs(l.plan.id, &l.handle))
            .collect();
        out.extend(
            self.ended
                .iter()
                .filter(|e| e.status.slice == slice && (owner || e.holders.contains(reader)))
                .map(|e| e.logs.clone()),
        );
        // Stay under the response limit: the newest bytes of each, shared out.
        let share = (wire::MAX_RESPONSE_BYTES / 2) / out.len().max(1) / 2;
        for l in &mut out {
            for b in [&mut l.stdout, &mut l.stderr] {
                if b.len() > share {
                    b.drain(..b.len() - share);
                }
            }
        }
        out
    }
}

pub(super) fn sliver_status(plan: &SliverPlan, h: &SliverHandle, ticket: &str) -> SliverStatus {
    let u = h.usage();
    SliverStatus {
        id: plan.id,
        slice: plan.who.slice.to_string(),
        user: plan.who.user.as_ref().map(|n| n.to_string()),
        authority: plan.who.authority.as_ref().map(|n| n.to_string()),
        ticket: ticket.into(),
        expires: plan.not_after,
        state: h.outcome().map_or("running".into(), |o| o.to_string()),
        cpu_ms: u.cpu.as_millis() as u64,
        memory: u.peak_memory,
        flows: u.flows_allowed + u.flows_denied,
        bytes_out: u.bytes_out,
        bytes_in: u.bytes_in,
    }
}

pub(super) fn sliver_logs(id: u64, h: &SliverHandle) -> SliverLogs {
    SliverLogs {
        id,
        stdout: h.stdout.as_ref().map(|b| b.contents()).unwrap_or_default(),
        stderr: h.stderr.as_ref().map(|b| b.contents()).unwrap_or_default(),
    }
}

/// The answer to a request that needs a worker when too many jobs wait.
pub(super) fn busy(jobs: usize) -> Response {
    Response::Error(format!(
        "busy: {jobs} jobs are waiting for this node's workers; try again shortly"
    ))
}
