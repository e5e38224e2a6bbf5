//! Inputs in, effects out: every event the daemon sees becomes a machine input
//! ([`Daemon::feed`]), and every effect the machine returns is carried out here
//! ([`Daemon::apply`]) on the swarm, the writer thread, the disk or the sandbox.

use super::*;

impl Daemon {
    /// Hands one input to the machine and carries out what it says.
    pub(super) fn feed(&mut self, swarm: &mut Swarm, input: Input) {
        let effects = self.node.handle(now_ms(), input);
        self.apply(swarm, effects);
    }

    /// Carries out the machine's effects, in order. Appends that follow one another go to
    /// the writer thread as one batch.
    pub(super) fn apply(&mut self, swarm: &mut Swarm, effects: Vec<Effect>) {
        let mut batch: Vec<(WriteId, EntryBody)> = vec![];
        for e in effects {
            if let Effect::Append { write, body } = e {
                batch.push((write, body));
                continue;
            }
            if !batch.is_empty() {
                self.write(swarm, std::mem::take(&mut batch));
            }
            self.carry_out(swarm, e);
        }
        if !batch.is_empty() {
            self.write(swarm, batch);
        }
    }

    /// Queues appends for the writer thread; a full queue fails them (the machine then
    /// refuses what waited and stops taking what needs the ledger until it writes again).
    pub(super) fn write(&mut self, swarm: &mut Swarm, batch: Vec<(WriteId, EntryBody)>) {
        let ids: Vec<WriteId> = batch.iter().map(|(id, _)| *id).collect();
        let Err(why) = self.queue_disk(DiskJob::Append(batch)) else {
            return;
        };
        for write in ids {
            let effects = self.node.handle(
                now_ms(),
                Input::WriteFailed {
                    write,
                    why: why.clone(),
                },
            );
            self.apply(swarm, effects);
        }
    }

    /// Queues work for the disk thread, or says why it cannot take it.
    pub(super) fn queue_disk(&mut self, job: DiskJob) -> Result<(), String> {
        // Ledger appends keep room of their own: other writes (replicas a member can make
        // this node fetch, cosignatures) may hold at most MAX_QUEUED_WORK of the queue.
        let job = match job {
            DiskJob::Work(work) => {
                let pending = self.disk_work.clone();
                if pending.load(std::sync::atomic::Ordering::Relaxed) >= MAX_QUEUED_WORK {
                    return Err(format!(
                        "{MAX_QUEUED_WORK} writes other than ledger appends are waiting for the disk"
                    ));
                }
                pending.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                DiskJob::Work(Box::new(move || {
                    let done = work();
                    pending.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    done
                }))
            }
            append => append,
        };
        match self.writes.try_send(job) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::TrySendError::Full(_)) => Err(format!(
                "{MAX_QUEUED_WRITES} writes are waiting for the disk"
            )),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                Err("the ledger's writer thread is gone".to_string())
            }
        }
    }

    pub(super) fn carry_out(&mut self, swarm: &mut Swarm, effect: Effect) {
        match effect {
            // Batched by `apply`.
            Effect::Append { write, body } => self.write(swarm, vec![(write, body)]),
            Effect::Send { to, token, request } => {
                let witnessing = matches!(request, Request::Witness(_));
                match self.request(swarm, &to, request) {
                    Some((id, len)) => {
                        if witnessing {
                            self.traffic.gossip_out =
                                self.traffic.gossip_out.saturating_add(len as u64);
                        }
                        if let Some(t) = token {
                            self.sent.insert(id, t);
                        }
                    }
                    None => {
                        if let Some(token) = token {
                            self.feed(swarm, Input::NoAnswer { token });
                        }
                    }
                }
            }
            Effect::Reply { to, response } => self.reply(swarm, to, response),
            Effect::Read { to, read } => self.read(swarm, to, read),
            Effect::Publish { topic, data } => {
                publish(swarm, &mut self.traffic, topic_name(topic), data)
            }
            // Verdicts are taken by `on_gossip`.
            Effect::Verdict { .. } => {}
            Effect::Advertise(load) => self.advertise(swarm, load),
            Effect::WakeAt(at_ms) => {
                let wait = Duration::from_millis(at_ms.saturating_sub(now_ms()));
                self.wake_at = Some(tokio::time::Instant::now() + wait);
            }
            Effect::SignCheckpoint => {
                // This node's checkpoint of everything durable (signed if the last one is
                // behind), on the disk thread after the appends queued before it. Not
                // taken when the disk is that far behind: the machine asks again.
                let ledger = self.ledger.clone();
                let _ = self.queue_disk(DiskJob::Work(Box::new(move || {
                    let size = ledger.size().ok()?;
                    let latest = match ledger.latest_checkpoint().ok()? {
                        Some(c) if c.checkpoint.size == size => Some(c),
                        _ => ledger.checkpoint().ok(),
                    };
                    latest.map(Done::Signed)
                })));
            }
            Effect::Persist {
                write,
                origin,
                leaves,
                checkpoint,
            } => {
                if let Err(why) = self.persist(write, origin, &leaves, &checkpoint) {
                    self.feed(swarm, Input::WriteFailed { write, why });
                }
            }
            Effect::Save {
                id,
                from,
                credential,
            } => {
                if let Some(s) = self.submissions.get(&from) {
                    self.to_save.insert(
                        id,
                        SavedSliver {
                            credential,
                            module: ModuleHash::of(&s.module),
                            args: s.args.clone(),
                            env: s.env.clone(),
                        },
                    );
                }
            }
            Effect::Start { plan, from } => self.start(swarm, plan, from),
            Effect::Stop { id, reason } => {
                if let Some(l) = self.live.get_mut(&id) {
                    l.stopping = Some(reason);
                    l.handle.stop(match reason {
                        StopReason::Expired | StopReason::Revoked => KillReason::Expired,
                        StopReason::Owner | StopReason::Deleted => KillReason::Stopped,
                    });
                }
            }
            Effect::Resave { id, credential } => self.resave_credential(id, credential),
            Effect::Forget { id } => {
                // After any resave queued before it, which would otherwise bring it back.
                let path = self.saved_path(id);
                let _ = self.queue_disk(DiskJob::Work(Box::new(move || {
                    let _ = std::fs::remove_file(path);
                    None
                })));
                if let Some(m) = self.modules.remove(&id) {
                    self.forget_module_if_unused(&m);
                }
            }
            Effect::KeepCosignature(c) => {
                if self.keep_cosignature(c.clone()) {
                    self.save_cosignature(&c);
                }
            }
            Effect::Addresses { node, addrs } => {
                if let Some(p) = peer_of(&node) {
                    let addrs = addrs.iter().filter_map(|x| x.parse().ok()).collect();
                    self.learn_addrs(swarm, p, addrs);
                }
            }
            Effect::Joined(k) => self.keep_member_credential(&k),
            Effect::HeldOff {
                node,
                reason,
                for_ms,
            } => {
                if let Some(left_out) = self.stranger_lines.take(Instant::now()) {
                    let also = if left_out > 0 {
                        format!(" ({left_out} more held off since the last such line)")
                    } else {
                        String::new()
                    };
                    say(&format!(
                        "not asking {} for its credential for {} s: {}{also}",
                        node.peer_id(),
                        for_ms.div_ceil(1000),
                        reason.as_str()
                    ));
                }
            }
            Effect::Left(k) => {
                self.forget_member_credential(&k);
                if let Some(p) = peer_of(&k)
                    && let Some(addrs) = self.addrs.remove(&p)
                {
                    self.remember_departed(p, addrs);
                }
            }
        }
    }

    /// Answers an open request.
    pub(super) fn reply(&mut self, swarm: &mut Swarm, to: ReplyId, response: Response) {
        // A submission whose ticket was judged: its bytes are not needed any more.
        self.submissions.remove(&to);
        match self.open.remove(&to) {
            Some(Open::Peer { request, channel }) => {
                self.respond(swarm, request, channel, response)
            }
            Some(Open::Owner(tx)) => {
                let _ = tx.send(response);
            }
            None => {}
        }
    }

    /// Answers an open request from what the daemon holds.
    pub(super) fn read(&mut self, swarm: &mut Swarm, to: ReplyId, read: Read) {
        let response = match read {
            Read::Members => Response::Members(self.member_rows()),
            Read::AddressHolders { ip } => Response::Members(self.address_holders(ip)),
            Read::Credential => Response::Credential {
                credential: self.credential.clone(),
                addrs: self.listen_addrs_said(),
            },
            Read::MemberCredentials(found) => Response::MemberCredentials(
                found
                    .into_iter()
                    .map(|(node, credential)| wire::MemberCredential {
                        node,
                        credential: credential.to_vec(),
                        addrs: self.member_addrs(&node),
                    })
                    .collect(),
            ),
            Read::Status { slice } => Response::Status(self.status(slice.as_deref())),
            Read::Logs { slice, reader } => Response::Logs(self.logs(&slice, &reader)),
            Read::Checkpoint => self.checkpoint_answer(),
            Read::Entries { from } => {
                let work = self.page_job(from);
                return self.answer_later(swarm, to, work);
            }
            Read::ReplicaEntries { origin, from } => {
                let work = self.replica_page_job(&origin, from);
                return self.answer_later(swarm, to, work);
            }
            Read::Replica { origin, offset } => {
                let path = self.replica_path(&origin);
                return self.answer_later(swarm, to, move || match read_chunk(&path, offset) {
                    Ok((total, chunk)) => Response::Replica { total, chunk },
                    Err(e) => {
                        Response::Error(format!("no replica of {} here: {e}", origin.peer_id()))
                    }
                });
            }
        };
        self.reply(swarm, to, response);
    }

    pub(super) fn open_reply(&mut self, open: Open) -> ReplyId {
        let id = self.next_reply;
        self.next_reply = self.next_reply.wrapping_add(1);
        self.open.insert(id, open);
        id
    }

    /// The addresses this node holds for a member, as a credential answer gives them.
    fn member_addrs(&self, node: &PublicKey) -> Vec<String> {
        peer_of(node)
            .and_then(|p| self.addrs.get(&p))
            .map(|addrs| {
                addrs
                    .iter()
                    .take(wire::MAX_TAGS)
                    .map(|a| a.to_string())
                    .filter(|a| a.len() <= 256)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// This node's listen addresses as it tells members (adverts, credential answers).
    pub(super) fn listen_addrs_said(&self) -> Vec<String> {
        self.my_addrs
            .iter()
            .take(wire::MAX_TAGS)
            .map(|a| a.to_string())
            .collect()
    }

    /// Signs and publishes this node's advert (the machine said when; the load is its).
    pub(super) fn advertise(&mut self, swarm: &mut Swarm, load: crate::core::Load) {
        let advert = AdvertBody {
            node: self.me,
            credential: if load.full {
                self.credential.clone()
            } else {
                vec![]
            },
            credential_hash: serde_bytes::ByteArray::new(crate::core::credential_hash(
                &self.credential,
            )),
            slivers: load.slivers,
            free_memory: load.free_memory,
            load_x100: load_average_x100(),
            uptime_secs: self.started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION").into(),
            tags: vec![],
            traffic: self.traffic_now(),
            addrs: self.listen_addrs_said(),
            time_ms: now_ms(),
            unhealthy: load.unhealthy.clone(),
            swim_bump: load.swim_bump,
        }
        .sign(&self.key)
        .and_then(|a| a.to_bytes());
        if let Ok(bytes) = advert {
            // No peer subscribed yet is normal at start.
            publish(swarm, &mut self.traffic, ADVERT_TOPIC, bytes);
        }
    }

    // ---- inputs -------------------------------------------------------------------------

    pub(super) fn on_tick(&mut self, swarm: &mut Swarm) {
        self.ticks += 1;
        // One status a tick for the sensors and the dashboard (it walks every sliver).
        if self.sensors.is_some() || self.board.is_some() {
            let status = self.status(None);
            self.update_sensors(&status);
            self.update_board(status);
        }
        if self.ticks % 12 == 1 {
            self.learn_machine_addresses();
        }
        let log_size = self.ledger.size().unwrap_or(0);
        self.feed(swarm, Input::Tick { log_size });
        self.keep_connected(swarm);
        self.flush_member_credentials();
        self.prune_member_credentials();
    }

    pub(super) fn on_admin(&mut self, swarm: &mut Swarm, call: AdminCall) {
        let reply = self.open_reply(Open::Owner(call.reply));
        self.feed(
            swarm,
            Input::Owner {
                reply,
                request: call.request,
            },
        );
    }

    pub(super) fn on_gossip(
        &mut self,
        swarm: &mut Swarm,
        m: &gossipsub::Message,
    ) -> MessageAcceptance {
        let topic = m.topic.as_str();
        let topic = [Topic::Advert, Topic::Revocation, Topic::Equivocation]
            .into_iter()
            .find(|t| IdentTopic::new(topic_name(*t)).hash().as_str() == topic);
        let Some(topic) = topic else {
            return MessageAcceptance::Ignore;
        };
        let input = Input::Gossip {
            id: 0,
            source: m.source.as_ref().and_then(key_of),
            topic,
            data: m.data.clone(),
        };
        let effects = self.node.handle(now_ms(), input);
        let verdict = effects.iter().find_map(|e| match e {
            Effect::Verdict { verdict, .. } => Some(verdict.clone()),
            _ => None,
        });
        self.apply(swarm, effects);
        match verdict {
            Some(Verdict::Accept) => MessageAcceptance::Accept,
            Some(Verdict::Reject(_)) => MessageAcceptance::Reject,
            Some(Verdict::Ignore) | None => MessageAcceptance::Ignore,
        }
    }

    pub(super) fn on_request(
        &mut self,
        swarm: &mut Swarm,
        (peer, connection): (PeerId, libp2p::swarm::ConnectionId),
        request: InboundRequestId,
        bytes: &[u8],
        channel: ResponseChannel<Vec<u8>>,
    ) {
        let now = now_ms();
        self.asker.insert(request, peer);
        if !self.allow_request(peer, connection, now) {
            let busy = Response::Error(format!(
                "busy: over this node's request rate ({} a second per peer, {} per address for non-members); try again shortly",
                crate::quota::PEER_RATE,
                crate::quota::ADDRESS_RATE
            ));
            return self.respond(swarm, request, channel, busy);
        }
        let req = match Request::from_bytes(bytes) {
            Ok(r) => r,
            Err(e) => {
                return self.respond(
                    swarm,
                    request,
                    channel,
                    Response::Error(format!("bad request: {e}")),
                );
            }
        };
        match req {
            Request::Submit {
                credential,
                module,
                args,
                env,
            } => {
                // Hashing up to 16 MiB is a worker's job, not the loop's.
                if self.jobs >= MAX_JOBS {
                    return self.respond(swarm, request, channel, busy(self.jobs));
                }
                let reply = self.open_reply(Open::Peer { request, channel });
                self.spawn_job(None, move || Done::Hashed {
                    reply,
                    hash: ModuleHash::of(&module),
                    submission: Box::new(Submission {
                        credential,
                        module,
                        args,
                        env,
                    }),
                });
            }
            request_body => {
                let reply = self.open_reply(Open::Peer { request, channel });
                self.feed(
                    swarm,
                    Input::Request {
                        reply,
                        from: key_of(&peer),
                        request: request_body,
                    },
                );
            }
        }
    }

    pub(super) fn on_response(&mut self, swarm: &mut Swarm, id: OutboundRequestId, bytes: &[u8]) {
        let Some(token) = self.sent.remove(&id) else {
            return;
        };
        let input = match Response::from_bytes(bytes) {
            Ok(response) => {
                if matches!(
                    response,
                    Response::Page { .. } | Response::ReplicaPage { .. }
                ) {
                    self.traffic.replication_in = self
                        .traffic
                        .replication_in
                        .saturating_add(bytes.len() as u64);
                }
                Input::Answer { token, response }
            }
            Err(_) => Input::NoAnswer { token },
        };
        self.feed(swarm, input);
    }

    pub(super) fn on_done(&mut self, swarm: &mut Swarm, done: Done) {
        match done {
            Done::Drained { sliver } => {
                if let Some(l) = self.live.get_mut(&sliver) {
                    l.drained = true;
                }
                return self.reap(swarm);
            }
            Done::Written { writes, result } => {
                for write in writes {
                    let input = match &result {
                        Ok(()) => Input::Written { write },
                        Err(why) => Input::WriteFailed {
                            write,
                            why: why.clone(),
                        },
                    };
                    self.feed(swarm, input);
                }
                if let Err(why) = result {
                    self.ledger_failing(&why);
                }
                return;
            }
            Done::Persisted {
                write,
                origin,
                record,
                base,
            } => {
                let input = match base {
                    Ok(base) => {
                        self.replica_index
                            .entry(origin)
                            .or_default()
                            .add(base, &record);
                        Input::Written { write }
                    }
                    Err(why) => Input::WriteFailed { write, why },
                };
                return self.feed(swarm, input);
            }
            Done::Signed(checkpoint) => {
                return self.feed(swarm, Input::Checkpoint { checkpoint });
            }
            _ => {}
        }
        self.jobs = self.jobs.saturating_sub(1);
        match done {
            Done::Answer { reply, response } => self.reply(swarm, reply, *response),
            Done::Compiled { id, compiled } => self.compiled(swarm, id, compiled),
            Done::Lost { sliver } => {
                if let Some(id) = sliver {
                    self.compiled(swarm, id, Err("the node failed compiling it".into()));
                }
            }
            Done::Hashed {
                reply,
                hash,
                submission,
            } => {
                let invocation = Invocation::new(submission.args.clone(), submission.env.clone());
                let credential = submission.credential.clone();
                self.submissions.insert(reply, *submission);
                self.feed(
                    swarm,
                    Input::Submit {
                        reply,
                        credential,
                        module: hash,
                        invocation,
                    },
                );
            }
            Done::Drained { .. }
            | Done::Written { .. }
            | Done::Persisted { .. }
            | Done::Signed(_) => {}
        }
    }

    // ---- the wire -----------------------------------------------------------------------

    /// Sends a request to a member at the addresses it advertised. `None` when its key is
    /// not a peer id or the request does not encode. Returns the request id and its size.
    pub(super) fn request(
        &self,
        swarm: &mut Swarm,
        to: &PublicKey,
        req: Request,
    ) -> Option<(OutboundRequestId, usize)> {
        let p = peer_of(to)?;
        let bytes = req.to_bytes().ok()?;
        let len = bytes.len();
        let addrs = self.addrs.get(&p).cloned().unwrap_or_default();
        let id = swarm
            .behaviour_mut()
            .rpc
            .send_request_with_addresses(&p, bytes, addrs);
        Some((id, len))
    }

    /// Whether `peer`, on `connection`, may make one more request now (see `quota`).
    pub(super) fn allow_request(
        &mut self,
        peer: PeerId,
        connection: libp2p::swarm::ConnectionId,
        now_ms: u64,
    ) -> bool {
        let member = key_of(&peer).is_some_and(|k| self.node.core().members().contains_key(&k));
        let from = self.conn_ips.get(&connection).copied();
        self.quotas.allow(peer, from, member, now_ms)
    }

    /// Sends an answer, within the response-memory budget: a large answer that would pass
    /// it is replaced by a "busy" refusal.
    pub(super) fn respond(
        &mut self,
        swarm: &mut Swarm,
        request: InboundRequestId,
        channel: ResponseChannel<Vec<u8>>,
        response: Response,
    ) {
        let to = self.asker.remove(&request);
        let replication = matches!(
            response,
            Response::Page { .. } | Response::Replica { .. } | Response::ReplicaPage { .. }
        );
        let mut bytes = response.to_bytes().unwrap_or_else(|e| {
            Response::Error(format!("cannot encode the answer: {e}"))
                .to_bytes()
                .unwrap_or_default()
        });
        let theirs = to
            .and_then(|p| self.responding_per_peer.get(&p))
            .copied()
            .unwrap_or(0);
        if bytes.len() > SMALL_RESPONSE
            && (self.responding_bytes.saturating_add(bytes.len()) > MAX_RESPONSE_MEMORY
                || theirs.saturating_add(bytes.len()) > MAX_RESPONSE_MEMORY_PER_PEER)
        {
            bytes = Response::Error(format!(
                "busy: this node is already sending {} MiB of answers ({} MiB to you); try again shortly",
                self.responding_bytes >> 20,
                theirs >> 20
            ))
            .to_bytes()
            .unwrap_or_default();
        } else if replication {
            self.traffic.replication_out = self
                .traffic
                .replication_out
                .saturating_add(bytes.len() as u64);
        }
        let len = bytes.len();
        if swarm
            .behaviour_mut()
            .rpc
            .send_response(channel, bytes)
            .is_ok()
        {
            let peer = to.unwrap_or(PeerId::random());
            self.responding.insert(request, (peer, len));
            self.responding_bytes = self.responding_bytes.saturating_add(len);
            *self.responding_per_peer.entry(peer).or_insert(0) += len;
        }
    }

    /// An answer was written (or its stream failed): its bytes leave the budget.
    pub(super) fn answered(&mut self, request: InboundRequestId) {
        self.asker.remove(&request);
        if let Some((peer, len)) = self.responding.remove(&request) {
            self.responding_bytes = self.responding_bytes.saturating_sub(len);
            if let Some(n) = self.responding_per_peer.get_mut(&peer) {
                *n = n.saturating_sub(len);
                if *n == 0 {
                    self.responding_per_peer.remove(&peer);
                }
            }
        }
    }

    // ---- workers ------------------------------------------------------------------------

    /// Runs blocking work on a worker (at most [`WORKERS`] at once) and hands its result
    /// back to the loop.
    pub(super) fn spawn_job(
        &mut self,
        sliver: Option<u64>,
        work: impl FnOnce() -> Done + Send + 'static,
    ) {
        self.jobs += 1;
        let (workers, done) = (self.workers.clone(), self.done_tx.clone());
        tokio::spawn(async move {
            let _permit = workers.acquire_owned().await;
            let result = tokio::task::spawn_blocking(work)
                .await
                .unwrap_or(Done::Lost { sliver });
            let _ = done.send(result).await;
        });
    }

    /// Answers a request with blocking work done on a worker, or "busy" when too much waits.
    pub(super) fn answer_later(
        &mut self,
        swarm: &mut Swarm,
        reply: ReplyId,
        work: impl FnOnce() -> Response + Send + 'static,
    ) {
        if self.jobs >= MAX_JOBS {
            let busy = busy(self.jobs);
            return self.reply(swarm, reply, busy);
        }
        self.spawn_job(None, move || Done::Answer {
            reply,
            response: Box::new(work()),
        });
    }
}

/// The gossipsub topic of a machine topic.
pub(super) fn topic_name(t: Topic) -> &'static str {
    match t {
        Topic::Advert => ADVERT_TOPIC,
        Topic::Revocation => REVOCATION_TOPIC,
        Topic::Equivocation => EQUIVOCATION_TOPIC,
    }
}

/// Lines about strangers a daemon prints in each minute's window, at most: strangers
/// choose how often they are held off, and must not fill the owner's log. (During a flood
/// an honest newcomer's line may be among those counted, not printed.)
pub(super) const STRANGER_LINES_PER_MIN: u32 = 6;

/// The budget of lines about strangers ([`STRANGER_LINES_PER_MIN`]); those left out are
/// counted, and the count goes with the next line printed.
#[derive(Debug)]
pub(super) struct LogBudget {
    window_start: Instant,
    lines: u32,
    left_out: u64,
}

impl LogBudget {
    pub(super) fn new(now: Instant) -> LogBudget {
        LogBudget {
            window_start: now,
            lines: 0,
            left_out: 0,
        }
    }

    /// Whether a line may be printed at `now`: with how many were left out before it.
    pub(super) fn take(&mut self, now: Instant) -> Option<u64> {
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(60) {
            self.window_start = now;
            self.lines = 0;
        }
        if self.lines < STRANGER_LINES_PER_MIN {
            self.lines += 1;
            Some(std::mem::take(&mut self.left_out))
        } else {
            self.left_out = self.left_out.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod log_budget_tests {
    use super::*;

    #[test]
    fn a_flood_of_strangers_prints_a_few_lines_a_minute_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(t0);
        let printed = (0..1_000).filter(|_| b.take(t0).is_some()).count();
        assert_eq!(printed, STRANGER_LINES_PER_MIN as usize);
        // A minute later the next line says how many were left out, and the count restarts.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            b.take(later),
            Some(1_000 - u64::from(STRANGER_LINES_PER_MIN))
        );
        assert_eq!(b.take(later), Some(0));
    }
}
