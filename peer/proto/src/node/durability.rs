//! What waits for which ledger write: effects held until every write they depend on is
//! durable, and what a failed write turns them into.

use super::*;

impl Node {
    /// Appends `appends` and holds `then` until all are durable (at once when there are
    /// none).
    pub(super) fn hold(
        &mut self,
        appends: Vec<EntryBody>,
        then: Vec<Effect>,
        on_failure: OnFailure,
        out: &mut Vec<Effect>,
    ) {
        if appends.is_empty() {
            return self.release(then, out);
        }
        let mut writes = Vec::with_capacity(appends.len());
        for body in appends {
            let write = self.next_write;
            self.next_write = self.next_write.wrapping_add(1);
            writes.push(write);
            out.push(Effect::Append { write, body });
        }
        self.hold_writes(writes, then, on_failure);
    }

    pub(super) fn hold_writes(
        &mut self,
        writes: Vec<WriteId>,
        then: Vec<Effect>,
        on_failure: OnFailure,
    ) {
        if then.is_empty() && matches!(on_failure, OnFailure::Drop | OnFailure::Release) {
            // Nothing waits: a failure only puts the node in its fail-closed state.
            return;
        }
        let id = self.next_hold;
        self.next_hold = self.next_hold.wrapping_add(1);
        for w in &writes {
            self.writes.insert(*w, id);
        }
        self.held.insert(
            id,
            Held {
                waiting: writes.len(),
                then,
                on_failure,
            },
        );
    }

    pub(super) fn written(&mut self, now_ms: u64, write: WriteId, out: &mut Vec<Effect>) {
        let Some(id) = self.writes.remove(&write) else {
            return;
        };
        let done = match self.held.get_mut(&id) {
            Some(h) => {
                h.waiting = h.waiting.saturating_sub(1);
                h.waiting == 0
            }
            None => false,
        };
        if done && let Some(h) = self.held.remove(&id) {
            self.release(h.then, out);
            if let OnFailure::Replica { origin, size } = h.on_failure {
                let effects = self
                    .witnessing
                    .persisted(now_ms, &origin, size, self.core.members());
                self.witness_effects(effects, out);
            }
        }
    }

    /// Effects that waited go out; a sliver's start among them marks it released.
    pub(super) fn release(&mut self, then: Vec<Effect>, out: &mut Vec<Effect>) {
        for e in &then {
            if let Effect::Start { plan, .. } = e
                && let Some(s) = self.starting.get_mut(&plan.id)
            {
                s.released = true;
            }
        }
        out.extend(then);
    }

    pub(super) fn write_failed(
        &mut self,
        now_ms: u64,
        write: WriteId,
        why: &str,
        out: &mut Vec<Effect>,
    ) {
        let hold = self.writes.remove(&write);
        let replica = hold
            .and_then(|id| self.held.get(&id))
            .is_some_and(|h| matches!(h.on_failure, OnFailure::Replica { .. }));
        if !replica {
            // Nothing more is taken that would need the ledger.
            self.core.ledger_failed(why);
        }
        let Some(id) = hold else {
            return;
        };
        let Some(h) = self.held.remove(&id) else {
            return;
        };
        // The hold's other writes are forgotten: what waited is decided now.
        self.writes.retain(|_, h| *h != id);
        match h.on_failure {
            OnFailure::Refuse { reply, what } => out.push(Effect::Reply {
                to: reply,
                response: Response::Error(format!(
                    "this node could not record {what} in its ledger ({why})"
                )),
            }),
            OnFailure::Created { id, saved } => {
                let starting = self.starting.remove(&id);
                let refusal = self
                    .core
                    .not_recorded(now_ms, id, why)
                    .into_iter()
                    .find_map(|o| match o {
                        Output::Receipt(r) => Some(r),
                        _ => None,
                    });
                if let Some(reply) = starting.and_then(|s| s.reply) {
                    out.push(Effect::Reply {
                        to: reply,
                        response: match refusal {
                            Some(r) => Response::Receipt(r),
                            None => Response::Error(format!(
                                "this node could not record the sliver in its ledger ({why})"
                            )),
                        },
                    });
                }
                // A restored sliver stays on disk and is tried again once the ledger works.
                if let Some(s) = saved {
                    let r = self.restoring.get_or_insert_with(|| Restoring {
                        saved: vec![],
                        logged: BTreeMap::new(),
                        since_ms: now_ms,
                        knew: self.core.members().keys().copied().collect(),
                        caught_up: BTreeSet::new(),
                        asked: BTreeSet::new(),
                        searched: None,
                        declined: BTreeMap::new(),
                    });
                    if let Ok(t) =
                        Credential::from_bytes(&s.credential).map(|c| CertId::of(c.leaf()))
                    {
                        r.logged.insert(s.id, (t, s.invocation.hash()));
                    }
                    if r.saved.len() < MAX_SAVED {
                        r.saved.push(s);
                    }
                }
            }
            OnFailure::Release => self.release(h.then, out),
            OnFailure::Replica { origin, .. } => self.witnessing.persist_failed(&origin),
            OnFailure::Drop => {}
        }
    }
}
