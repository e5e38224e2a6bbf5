//! Slivers' lives in the machine: restore after a restart, start, failure to start, end.

use super::*;

impl Node {
    pub(super) fn restart(
        &mut self,
        now_ms: u64,
        saved: Vec<Saved>,
        logged: BTreeMap<u64, (CertId, InvocationHash)>,
    ) {
        self.up_since_ms = now_ms;
        let mut saved = saved;
        saved.truncate(MAX_SAVED);
        saved.sort_by_key(|s| s.id);
        // Even with nothing to restore, a restarted node catches up with members at once
        // (what it missed while down decides what it admits next).
        self.restoring = Some(Restoring {
            saved,
            logged,
            since_ms: now_ms,
            knew: self.learning_kept(),
            caught_up: BTreeSet::new(),
            asked: BTreeSet::new(),
            searched: None,
            declined: BTreeMap::new(),
        });
    }

    /// Whether a restarted node has caught up enough to bring its slivers back.
    pub(super) fn restore_ready(&self, now_ms: u64) -> bool {
        let Some(r) = &self.restoring else {
            return false;
        };
        if self.core.unhealthy().is_some() {
            return false;
        }
        if !self.settings.restore {
            // Nothing comes back: they are logged as not restored at once.
            return true;
        }
        // A quorum of members reconciled, every member asked (up to `RESTORE_ASKED`, asked
        // as they are learnt) answered, and one of them a member it knew before it went
        // down: then at once, so a returning node restores within a few round trips of
        // learning its first members, and neither the first three answers alone (stale,
        // or hostile) nor members that raced to be listed first decide it.
        let caught_up = r.caught_up.len();
        let all_answered = r.asked.iter().all(|k| r.caught_up.contains(k));
        let heard_knew = r.knew.is_empty() || r.caught_up.iter().any(|k| r.knew.contains(k));
        let tick = self.settings.tick_ms;
        let listen = RESTORE_LISTEN_TICKS.saturating_mul(tick);
        let first = self.first_member_ms().map(|t| t.max(r.since_ms));
        let listened = first.map(|t| now_ms.saturating_sub(t));
        if caught_up >= RESTORE_QUORUM
            && all_answered
            && (heard_knew || listened.is_some_and(|l| l >= listen))
        {
            return true;
        }
        let members = self.core.members().len();
        // Listening counts from its first member (its network was up), not from its start
        // (a slow start under load is not time spent listening).
        let Some(listened) = listened else {
            // No member heard yet: alone only if it knew none before either.
            let waited = now_ms.saturating_sub(r.since_ms);
            return r.knew.is_empty() && waited >= RESTORE_ALONE_TICKS.saturating_mul(tick);
        };
        // Otherwise it listens first (a slow member is not waited for past that). In a
        // federation of fewer than three it does not count one member as all: it hears
        // from as many as it lists and knew before, and only after a longer wait settles
        // for the members it lists now (one it knew may have died), never for none (its
        // only member may have died, or been a Sybil that went quiet once listed).
        let expected = members.max(r.knew.len()).clamp(1, RESTORE_QUORUM);
        let settle = members.clamp(1, RESTORE_QUORUM);
        (listened >= listen && caught_up >= expected)
            || (listened >= RESTORE_ALONE_TICKS.saturating_mul(tick) && caught_up >= settle)
    }

    pub(super) fn maybe_restore(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        if !self.restore_ready(now_ms) {
            return;
        }
        let Some(mut r) = self.restoring.take() else {
            return;
        };
        let room = MAX_HELD.saturating_sub(self.held.len());
        let later = r.saved.split_off(r.saved.len().min(room));
        for s in std::mem::take(&mut r.saved) {
            self.restore_one(now_ms, s, &r.logged, out);
        }
        if !later.is_empty() {
            // Tried at the next tick, when held answers have drained.
            r.saved = later;
            self.restoring = Some(r);
        }
    }

    pub(super) fn restore_one(
        &mut self,
        now_ms: u64,
        s: Saved,
        logged: &BTreeMap<u64, (CertId, InvocationHash)>,
        out: &mut Vec<Effect>,
    ) {
        let id = s.id;
        if !self.settings.restore {
            let body = EntryBody::OwnerAction {
                action: format!(
                    "did not restore sliver {id}: the owner started the node with --no-restore"
                ),
                who: None,
            };
            return self.hold(
                vec![body],
                vec![Effect::Forget { id }],
                OnFailure::Drop,
                out,
            );
        }
        let ticket = Credential::from_bytes(&s.credential).map(|c| CertId::of(c.leaf()));
        let recorded = ticket.is_ok_and(|t| logged.get(&id) == Some(&(t, s.invocation.hash())));
        let outs = if recorded {
            self.core
                .restore(now_ms, id, &s.credential, &s.invocation)
                .map_err(|e| e.to_string())
        } else {
            Err("this node's log does not record it as created with that ticket and those arguments, and not stopped".into())
        };
        match outs {
            Ok(outs) => {
                let mut appends = vec![];
                let mut plan = None;
                for o in outs {
                    match o {
                        Output::Start(p) => plan = Some(p),
                        Output::Append(b) => appends.push(b),
                        _ => {}
                    }
                }
                let Some(plan) = plan else { return };
                self.starting.insert(
                    id,
                    Starting {
                        reply: None,
                        receipt: None,
                        stop: None,
                        released: false,
                    },
                );
                let start = Effect::Start {
                    plan,
                    from: StartFrom::Saved,
                };
                self.hold(
                    appends,
                    vec![start],
                    OnFailure::Created { id, saved: Some(s) },
                    out,
                );
            }
            Err(why) => {
                let body = EntryBody::OwnerAction {
                    action: format!("did not restore sliver {id} after a restart: {why}")
                        .chars()
                        .take(900)
                        .collect(),
                    who: None,
                };
                self.hold(
                    vec![body],
                    vec![Effect::Forget { id }],
                    OnFailure::Drop,
                    out,
                );
            }
        }
    }

    pub(super) fn started(&mut self, id: u64, out: &mut Vec<Effect>) {
        if !self.starting.get(&id).is_some_and(|s| s.released) {
            return;
        }
        let Some(s) = self.starting.remove(&id) else {
            return;
        };
        if let Some(reason) = s.stop {
            out.push(Effect::Stop { id, reason });
        }
        if let Some(reply) = s.reply {
            out.push(Effect::Reply {
                to: reply,
                response: match s.receipt {
                    Some(r) => Response::Receipt(r),
                    None => Response::Error("the node could not sign a receipt".into()),
                },
            });
        }
    }

    pub(super) fn start_failed(&mut self, now_ms: u64, id: u64, why: &str, out: &mut Vec<Effect>) {
        if !self.starting.get(&id).is_some_and(|s| s.released) {
            return;
        }
        let Some(s) = self.starting.remove(&id) else {
            return;
        };
        let mut appends = vec![];
        let mut refusal = None;
        for o in self.core.start_failed(now_ms, id, why) {
            match o {
                Output::Append(b) => appends.push(b),
                Output::Receipt(r) => refusal = Some(r),
                _ => {}
            }
        }
        let mut then = vec![Effect::Forget { id }];
        if let Some(reply) = s.reply {
            then.push(Effect::Reply {
                to: reply,
                response: match refusal {
                    Some(r) => Response::Receipt(r),
                    None => Response::Error(format!("the sliver could not start: {why}")),
                },
            });
        }
        // The refusal claims nothing was recorded: it goes out either way.
        self.hold(appends, then, OnFailure::Release, out);
    }

    pub(super) fn ended(&mut self, id: u64, outcome: &str, usage: Usage, out: &mut Vec<Effect>) {
        let holders = self.core.holders(id);
        let slice = self
            .core
            .slivers()
            .find(|p| p.id == id)
            .map(|p| p.who.slice.as_str().to_string());
        if let Some(slice) = slice {
            self.ended_holders.push_back((slice, holders));
            while self.ended_holders.len() > MAX_ENDED {
                self.ended_holders.pop_front();
            }
        }
        let appends: Vec<EntryBody> = self
            .core
            .ended(id, outcome, usage)
            .into_iter()
            .filter_map(|o| match o {
                Output::Append(b) => Some(b),
                _ => None,
            })
            .collect();
        // Its files go only once its end is durable: until then its log says it runs, and
        // a restart brings it back.
        self.hold(appends, vec![Effect::Forget { id }], OnFailure::Drop, out);
    }
}
