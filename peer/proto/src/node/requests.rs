//! Requests from peers and the owner: who may ask what, and what each answer waits for.

use super::*;

impl Node {
    pub(super) fn busy(&self, reply: ReplyId, out: &mut Vec<Effect>) {
        out.push(Effect::Reply {
            to: reply,
            response: Response::Error(format!(
                "busy: {} answers wait for this node's ledger; try again shortly",
                self.held.len()
            )),
        });
    }

    pub(super) fn request(
        &mut self,
        now_ms: u64,
        reply: ReplyId,
        from: Option<PublicKey>,
        request: Request,
        out: &mut Vec<Effect>,
    ) {
        let read = |read: Read| Effect::Read { to: reply, read };
        let answer = |response: Response| Effect::Reply {
            to: reply,
            response,
        };
        match request {
            Request::Members => out.push(read(Read::Members)),
            Request::Credential => out.push(read(Read::Credential)),
            // Who is a member, and their credentials, are for anyone (`nodes list` shows
            // the same); the daemon's per-peer quotas bound the work.
            Request::MemberList { after } => out.push(answer(self.member_list(after))),
            Request::MemberCredentials { nodes } => out.push(read(Read::MemberCredentials(
                self.member_credentials(&nodes),
            ))),
            Request::Status { slice } => out.push(read(Read::Status { slice })),
            Request::Entries { from } => out.push(read(Read::Entries { from })),
            Request::Checkpoint => out.push(read(Read::Checkpoint)),
            Request::AddressHolders { ip } => out.push(read(Read::AddressHolders { ip })),
            // Evidence is for anyone to check: no entitlement beyond the daemon's quotas.
            Request::Vouch { origin } => {
                out.push(answer(match self.witnessing.vouch(&origin, now_ms) {
                    Some((checkpoint, cosignature)) => Response::Checkpoint {
                        checkpoint: Some(checkpoint),
                        cosignatures: vec![cosignature],
                    },
                    None => Response::Error(format!(
                        "no replica of {} on this node's disk",
                        origin.peer_id()
                    )),
                }))
            }
            Request::Replica { origin, offset } => out.push(read(Read::Replica { origin, offset })),
            Request::ReplicaEntries { origin, from } => {
                out.push(read(Read::ReplicaEntries { origin, from }))
            }
            Request::Logs(asked) => {
                let ended: Vec<PublicKey> = self
                    .ended_holders
                    .iter()
                    .filter(|(slice, _)| *slice == asked.body.slice)
                    .flat_map(|(_, h)| h.iter().copied())
                    .collect();
                out.push(match self.core.may_read_logs(now_ms, &asked, &ended) {
                    Ok(()) => read(Read::Logs {
                        slice: asked.body.slice,
                        reader: asked.body.signer,
                    }),
                    Err(e) => answer(Response::Error(e.to_string())),
                });
            }
            Request::RevocationPrints { unless } => out.push(answer(
                if unless.is_some_and(|d| d == self.core.revocation_digest()) {
                    Response::HeldSame
                } else {
                    Response::RevocationPrints(self.core.revocation_prints())
                },
            )),
            Request::Swim(data) => {
                let Some(from) = from else {
                    return out.push(answer(Response::Error("not a node key".into())));
                };
                let (events, taken) = self.swim.packet(now_ms, from, &data);
                self.swim_events(now_ms, events, out);
                match taken {
                    // SWIM noted it as heard (`Swim::last_heard_ms`).
                    Ok(()) => out.push(answer(Response::Done)),
                    Err(why) => {
                        // A node this one does not list (it started while this one was
                        // away, or this one restarted): its credential is asked for, so
                        // that its next packets are heard.
                        if let crate::swim::SwimRefusal::NotAMember(k) = why
                            && let Some(bump) = crate::swim::SwimId::bump_of_packet(&data)
                            && !self.greeted_answered(now_ms, k, bump, out)
                            && self.swim_unknown.len() < MAX_ASKED
                            && self.ask_credential(k, None, out)
                        {
                            self.swim_unknown.insert(k, bump);
                        }
                        out.push(answer(Response::Error(why.to_string())))
                    }
                }
            }
            Request::Revocations {
                after,
                buckets,
                have,
            } => out.push(answer(
                match self
                    .core
                    .revocations_after(after, &buckets, &have, MAX_REVOCATIONS_PER_PAGE)
                {
                    Ok(page) => Response::Revocations(
                        page.into_iter().map(serde_bytes::ByteBuf::from).collect(),
                    ),
                    Err(why) => Response::Error(why.to_string()),
                },
            )),
            Request::Witness(note) => {
                let Some(from) = from else {
                    return out.push(answer(Response::Error("not a node key".into())));
                };
                match self
                    .witnessing
                    .note(now_ms, from, note, self.core.members())
                {
                    Ok(effects) => {
                        out.push(answer(Response::Done));
                        self.witness_effects(effects, out);
                    }
                    Err(e) => out.push(answer(Response::Error(e.to_string()))),
                }
            }
            Request::Delete(d) => {
                let outs = self.core.delete(now_ms, &d);
                self.stopping(now_ms, reply, outs, out);
            }
            Request::Revoke { revocation } => {
                let outs = self.core.revocation(now_ms, &revocation);
                self.stopping(now_ms, reply, outs, out);
            }
            Request::Renew { credential } => self.renew(now_ms, reply, credential, out),
            // The router hashes a submission's module off its loop and hands it in as
            // `Input::Submit`.
            Request::Submit { .. } => out.push(answer(Response::Error(
                "a submission must be hashed before it is judged".into(),
            ))),
        }
    }

    pub(super) fn owner(
        &mut self,
        now_ms: u64,
        reply: ReplyId,
        request: AdminRequest,
        out: &mut Vec<Effect>,
    ) {
        match request {
            AdminRequest::Stop { slice } => {
                let outs = self
                    .core
                    .owner_stop_slice(&slice, "stopped by the node owner");
                self.stopping(now_ms, reply, Ok(outs), out);
            }
            AdminRequest::Status { slice } => out.push(Effect::Read {
                to: reply,
                read: Read::Status { slice },
            }),
            AdminRequest::Members => out.push(Effect::Read {
                to: reply,
                read: Read::Members,
            }),
        }
    }

    /// A delete, a revocation or an owner's stop: the stops go out at once; the answer
    /// (the slivers stopped) waits until what it logged is durable.
    pub(super) fn stopping(
        &mut self,
        now_ms: u64,
        reply: ReplyId,
        outs: Result<Vec<Output>, CoreError>,
        out: &mut Vec<Effect>,
    ) {
        let outs = match outs {
            Ok(o) => o,
            Err(e) => {
                return out.push(Effect::Reply {
                    to: reply,
                    response: Response::Error(e.to_string()),
                });
            }
        };
        if self.held.len() >= MAX_HELD {
            // The stops still happen (stopping is always safe); only the answer is "busy".
            let appends = self.carry(now_ms, outs, false, out);
            self.hold(appends, vec![], OnFailure::Drop, out);
            return self.busy(reply, out);
        }
        let stopped: Vec<u64> = outs
            .iter()
            .filter_map(|o| match o {
                Output::Stop { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        let appends = self.carry(now_ms, outs, false, out);
        let answer = Effect::Reply {
            to: reply,
            response: Response::Stopped(stopped),
        };
        self.hold(
            appends,
            vec![answer],
            OnFailure::Refuse {
                reply,
                what: "what it stopped",
            },
            out,
        );
    }

    pub(super) fn renew(
        &mut self,
        now_ms: u64,
        reply: ReplyId,
        credential: Vec<u8>,
        out: &mut Vec<Effect>,
    ) {
        if self.held.len() >= MAX_HELD {
            return self.busy(reply, out);
        }
        let outs = self.core.renew(now_ms, &credential);
        let mut receipt = None;
        let mut other = vec![];
        for o in outs {
            match o {
                Output::Receipt(r) => receipt = Some(r),
                o => other.push(o),
            }
        }
        let appends = self.carry(now_ms, other, false, out);
        // Saved slivers take the new ticket, so a restart keeps the renewal.
        let mut then: Vec<Effect> = if appends.is_empty() {
            vec![]
        } else {
            self.core
                .sliver_infos()
                .filter(|i| i.credential == credential)
                .map(|i| Effect::Resave {
                    id: i.plan.id,
                    credential: credential.clone(),
                })
                .collect()
        };
        then.push(Effect::Reply {
            to: reply,
            response: match receipt {
                Some(r) => Response::Receipt(r),
                None => Response::Error("the node could not sign a receipt".into()),
            },
        });
        self.hold(
            appends,
            then,
            OnFailure::Refuse {
                reply,
                what: "the renewal",
            },
            out,
        );
    }

    pub(super) fn submit(
        &mut self,
        now_ms: u64,
        reply: ReplyId,
        credential: Vec<u8>,
        module: ModuleHash,
        invocation: &Invocation,
        out: &mut Vec<Effect>,
    ) {
        // Before the core admits anything (admission consumes the ticket's nonce).
        if self.held.len() >= MAX_HELD {
            return self.busy(reply, out);
        }
        let mut receipt = None;
        let mut plan = None;
        let mut appends = vec![];
        for o in self.core.submit(now_ms, &credential, module, invocation) {
            match o {
                Output::Start(p) => plan = Some(p),
                Output::Append(b) => appends.push(b),
                Output::Receipt(r) => receipt = Some(r),
                _ => {}
            }
        }
        let Some(plan) = plan else {
            return out.push(Effect::Reply {
                to: reply,
                response: match receipt {
                    Some(r) => Response::Receipt(r),
                    None => Response::Error("the node could not sign a receipt".into()),
                },
            });
        };
        let id = plan.id;
        self.starting.insert(
            id,
            Starting {
                reply: Some(reply),
                receipt,
                stop: None,
                released: false,
            },
        );
        // The creation is durable before anything runs or is acknowledged; the files are
        // saved before it runs, so a crash right after brings it back.
        let then = vec![
            Effect::Save {
                id,
                from: reply,
                credential,
            },
            Effect::Start {
                plan,
                from: StartFrom::Submission(reply),
            },
        ];
        self.hold(appends, then, OnFailure::Created { id, saved: None }, out);
    }
}
