//! Researchers: each research group bootstraps from a node of its own site, creates a
//! slice on tens of nodes with a signed ticket, deletes it hours later, and starts again;
//! authorities revoke researchers now and then. They speak to nodes with the same requests
//! the CLI sends (`slice create`, `slice delete`, `authority publish`).

use crate::metrics::Creation;
use crate::metrics::RevocationRun;
use crate::sim::*;
use rand::RngExt;
use slicefed_proto::wire::{Request, Response};
use slicefed_trust::caps::{NetworkRights, NodeSet, ResourceCaps, Validity};
use slicefed_trust::objects::{self, NodeReceipt, Nonce, Revocation, SliceDelete, SliceTicket};
use slicefed_trust::{CertId, Credential, ModuleHash, Name, PublicKey};
use std::collections::BTreeSet;

/// Nodes an authority hands a revocation to at once (`authority publish`'s).
const PUBLISH_AT_ONCE: usize = 3;

impl Sim {
    /// Authorities revoke `count` researchers: each revocation is handed to a few up nodes
    /// at once (`authority publish`); the first to take it honours and gossips it.
    pub(crate) fn revoke_users(&mut self, count: usize) {
        let candidates: Vec<u32> = (0..self.groups.len() as u32)
            .filter(|g| !self.revoked_users.contains_key(g))
            .collect();
        let up = self.up_nodes();
        let mut chosen = vec![];
        let mut pool = candidates;
        for _ in 0..count {
            if pool.is_empty() {
                break;
            }
            let i = self.rng.random_range(0..pool.len());
            chosen.push(pool.swap_remove(i));
        }
        let now_s = self.now_ms() / 1000;
        for g in chosen {
            let Some(group) = self.world.groups.get(g as usize) else {
                continue;
            };
            let Some(auth) = self.world.authorities.get(group.authority) else {
                continue;
            };
            let Ok(rev) = objects::sign(
                &auth.key,
                &Revocation {
                    target: group.user_cert_id,
                    reason: "account compromised".into(),
                    revoked_at: now_s,
                },
            ) else {
                continue;
            };
            // A revocation file carries what it revokes, so nodes judge the revoker.
            let target = Credential::new(group.user_cert.clone(), []);
            let Ok(file) = Credential::revocation_file(rev.bytes, &target).to_bytes() else {
                continue;
            };
            // The authority hands it to nodes it can reach, a few at once (`authority
            // publish`); across a partition it cannot.
            let targets = self.reachable_nodes(Revoked::User(g));
            let Some(&to) = targets.first() else {
                // The authority reaches no member: the revocation is never published.
                self.metrics.revocations_abandoned += 1;
                continue;
            };
            let id = CertId::of(&file);
            let index = self.metrics.revocations.len();
            self.metrics.revocations.push(RevocationRun {
                at_s: self.now as f64 / SEC as f64,
                up_nodes: up.len(),
                ..RevocationRun::default()
            });
            self.revs.insert(
                id,
                RevTrack {
                    index,
                    published: self.now,
                    holders: BTreeSet::new(),
                    up_at_publish: BTreeSet::new(),
                },
            );
            self.revoked_users.insert(g, (self.now, to));
            if let Some(gs) = self.groups.get_mut(g as usize) {
                gs.revoked = true;
            }
            self.hand_revocation(Revoked::User(g), &file, &targets, 1);
        }
    }

    /// Authorities revoke `count` up honest nodes (not revoked yet), each handed to a few
    /// other up nodes at once (`authority publish`). The revoked machines run on.
    pub(crate) fn revoke_nodes(&mut self, count: usize) {
        let up_nodes = self.up_nodes();
        let up = up_nodes.len();
        let mut pool: Vec<u32> = up_nodes
            .into_iter()
            .filter(|n| !self.revoked_nodes.contains_key(n))
            .collect();
        let now_s = self.now_ms() / 1000;
        for _ in 0..count {
            if pool.is_empty() {
                break;
            }
            let i = self.rng.random_range(0..pool.len());
            let n = pool.swap_remove(i);
            let Some(spec) = self.world.nodes.get(n as usize) else {
                continue;
            };
            let Some(auth) = spec.authority.and_then(|a| self.world.authorities.get(a)) else {
                continue;
            };
            let Ok(target) = Credential::from_bytes(&spec.credential) else {
                continue;
            };
            let Ok(file) = slicefed_trust::fixtures::revocation_file(
                &auth.key,
                &target,
                "decommissioned",
                now_s,
            ) else {
                continue;
            };
            let targets = self.reachable_nodes(Revoked::Node(n));
            if targets.is_empty() {
                self.metrics.revocations_abandoned += 1;
                continue;
            }
            let index = self.metrics.revocations.len();
            self.metrics.revocations.push(RevocationRun {
                at_s: self.now as f64 / SEC as f64,
                up_nodes: up,
                ..RevocationRun::default()
            });
            self.revs.insert(
                CertId::of(&file),
                RevTrack {
                    index,
                    published: self.now,
                    holders: BTreeSet::new(),
                    up_at_publish: BTreeSet::new(),
                },
            );
            self.revoked_nodes.insert(n, self.now);
            self.metrics.nodes_revoked += 1;
            self.hand_revocation(Revoked::Node(n), &file, &targets, 1);
        }
    }

    /// Sends revocation `file` (of `subject`) to each of `targets`, from the researcher's
    /// authority's side (a node's revocation: from its authority).
    fn hand_revocation(&mut self, subject: Revoked, file: &[u8], targets: &[u32], tries: u32) {
        let from = self.revoker(subject);
        for &to in targets {
            let id = self.send_request(
                from,
                to,
                Request::Revoke {
                    revocation: file.to_vec(),
                },
                true,
            );
            self.pending_revokes
                .insert(id, (subject, file.to_vec(), tries, to));
        }
    }

    /// Who hands a revocation of `subject` over: the researcher's group (at its
    /// authority's site), or the node's authority.
    fn revoker(&self, subject: Revoked) -> Endpoint {
        match subject {
            Revoked::User(g) => Endpoint::Client(g),
            Revoked::Node(n) => Endpoint::Authority(
                self.world
                    .nodes
                    .get(n as usize)
                    .and_then(|s| s.authority)
                    .unwrap_or(0) as u32,
            ),
        }
    }

    /// Up to [`PUBLISH_AT_ONCE`] up nodes the revoker of `subject` can reach (none across
    /// a partition), at random; never a revoked node (the one this revocation ends, or one
    /// revoked before: authorities publish to members).
    fn reachable_nodes(&mut self, subject: Revoked) -> Vec<u32> {
        let side = self.side_node(self.revoker(subject));
        let ends = match subject {
            Revoked::Node(n) => Some(n),
            Revoked::User(_) => None,
        };
        let mut reachable: Vec<u32> = self
            .up_nodes()
            .into_iter()
            .filter(|i| {
                Some(*i) != ends
                    && !self.revoked_nodes.contains_key(i)
                    && self.overlay.reachable(side, *i as usize)
            })
            .collect();
        let mut chosen = vec![];
        while chosen.len() < PUBLISH_AT_ONCE && !reachable.is_empty() {
            let i = self.rng.random_range(0..reachable.len());
            chosen.push(reachable.swap_remove(i));
        }
        chosen
    }

    pub(crate) fn on_revoke_reply(&mut self, id: u64, rep: Option<Response>) {
        let Some((subject, file, tries, to)) = self.pending_revokes.remove(&id) else {
            return;
        };
        if !self.revocation_taken.insert(subject) {
            return;
        }
        if matches!(rep, Some(Response::Stopped(_) | Response::Done)) {
            if let Revoked::User(g) = subject
                && let Some(r) = self.revoked_users.get_mut(&g)
            {
                r.1 = to;
            }
            return;
        }
        self.revocation_taken.remove(&subject);
        if self.pending_revokes.values().any(|p| p.0 == subject) {
            return;
        }
        // `authority publish` gives up: no member took it, or none can be reached.
        if tries >= 8 {
            self.metrics.revocations_abandoned += 1;
            return;
        }
        let targets = self.reachable_nodes(subject);
        if targets.is_empty() {
            self.metrics.revocations_abandoned += 1;
            return;
        }
        if let Revoked::User(g) = subject
            && let Some(&to) = targets.first()
            && let Some(r) = self.revoked_users.get_mut(&g)
        {
            r.1 = to;
        }
        self.hand_revocation(subject, &file, &targets, tries + 1);
    }

    // ---- researchers ----------------------------------------------------------------

    pub(crate) fn group_step(&mut self, g: usize) {
        let Some(gs) = self.groups.get(g) else { return };
        if gs.op.is_some() {
            return;
        }
        if gs.current.is_some() {
            self.start_delete(g);
        } else if !gs.revoked {
            self.start_bootstrap(g, vec![]);
        }
    }

    pub(crate) fn start_bootstrap(&mut self, g: usize, tried: Vec<u32>) {
        // The researcher's SLICEFED_BOOTSTRAP: a node of its own authority first, then
        // any it knows; never one its authority decommissioned.
        let Some(group) = self.world.groups.get(g) else {
            return;
        };
        let a = group.authority;
        let authorities = self.world.authorities.len().max(1);
        let honest = self.world.honest;
        let own: Vec<u32> = (a..honest)
            .step_by(authorities)
            .map(|i| i as u32)
            .filter(|i| !tried.contains(i) && !self.revoked_nodes.contains_key(i))
            .collect();
        let target = match own.first() {
            Some(t) => Some(*t),
            None => {
                let any: Vec<u32> = (0..honest as u32)
                    .filter(|i| !tried.contains(i) && !self.revoked_nodes.contains_key(i))
                    .collect();
                self.pick(&any)
            }
        };
        let Some(target) = target else { return };
        let started = self
            .groups
            .get(g)
            .and_then(|s| s.op.as_ref())
            .map_or(self.now, |o| o.started);
        let retries = tried.len();
        let mut tried = tried;
        tried.push(target);
        let id = self.send_request(Endpoint::Client(g as u32), target, Request::Members, true);
        self.client_ops.insert(id, (g as u32, target));
        if let Some(gs) = self.groups.get_mut(g) {
            gs.op = Some(Op {
                kind: OpKind::Bootstrap { tried },
                started,
                waiting: 1,
                admitted: vec![],
                refused: 0,
                unreachable: 0,
                last_ok: 0,
                retries,
                targets: vec![],
                ticket: None,
                fanout: 0,
            });
        }
    }

    pub(crate) fn start_create(&mut self, g: usize, members: Vec<u32>) {
        let Some(group) = self.world.groups.get(g) else {
            return;
        };
        let (lo, hi) = self.cfg.slice_nodes;
        let want = if hi > lo {
            self.rng.random_range(lo..=hi)
        } else {
            lo
        };
        let mut pool = members;
        let mut chosen = vec![];
        while chosen.len() < want && !pool.is_empty() {
            let i = self.rng.random_range(0..pool.len());
            chosen.push(pool.swap_remove(i));
        }
        chosen.sort_unstable();
        let keys: Vec<PublicKey> = chosen
            .iter()
            .filter_map(|i| self.world.nodes.get(*i as usize).map(|s| s.public))
            .collect();
        let slice_index = self.slices.len() as u32;
        let Ok(name) = Name::parse(&format!("{}{}", group.slice_prefix, slice_index)) else {
            return;
        };
        let now_s = self.now_ms() / 1000;
        // The group's module: its bytes stand in for the 200 KiB a researcher sends (the
        // node hashes them, as the daemon does).
        let module_bytes = format!("module of group {g}").into_bytes();
        let module = ModuleHash::of(&module_bytes);
        let mut nonce = [0u8; 16];
        self.rng.fill(&mut nonce);
        let body = SliceTicket {
            slice: name.clone(),
            module,
            invocation: slicefed_trust::Invocation::default().hash(),
            caps: ResourceCaps {
                memory: Some(64 << 20),
                cpu_share: Some(1),
                max_slivers: None,
                egress_per_day: None,
            },
            network: NetworkRights::none(),
            nodes: NodeSet::only(keys),
            validity: Validity::starting(now_s.saturating_sub(60), self.cfg.ticket_valid / SEC),
            issued_at: now_s,
            nonce: Nonce(nonce),
        };
        let Ok(ticket) = objects::sign(&group.key, &body) else {
            return;
        };
        let ticket_id = CertId::of(&ticket.bytes);
        let Ok(cred) = Credential::new(ticket.bytes, [group.user_cert.clone()]).to_bytes() else {
            return;
        };
        self.slices.push(SliceInfo {
            group: g as u32,
            deleted: None,
        });
        for &t in &chosen {
            let submit = Request::Submit {
                credential: cred.clone(),
                module: module_bytes.clone(),
                args: vec![],
                env: vec![],
            };
            let id = self.send_request(Endpoint::Client(g as u32), t, submit, true);
            self.client_ops.insert(id, (g as u32, t));
        }
        if let Some(gs) = self.groups.get_mut(g) {
            gs.current = Some(SliceRun {
                slice: slice_index,
                name,
                nodes: vec![],
            });
            if let Some(op) = gs.op.as_mut() {
                op.kind = OpKind::Create;
                op.fanout = self.now;
                op.waiting = chosen.len();
                op.targets = chosen;
                op.ticket = Some(ticket_id);
            }
        }
        if self.op_answered(g) {
            self.finish_op(g);
        }
    }

    pub(crate) fn start_delete(&mut self, g: usize) {
        let Some(group) = self.world.groups.get(g) else {
            return;
        };
        let Some(run) = self.groups.get(g).and_then(|s| s.current.as_ref()) else {
            return;
        };
        let now_s = self.now_ms() / 1000;
        let targets = run.nodes.clone();
        let slice = run.slice;
        // What `slice delete` does: one signed delete of the slice (every ticket of it
        // issued until now), handed to every node it ran on; nodes that are down take it
        // from their peers before they restore anything.
        let body = SliceDelete {
            slice: run.name.clone(),
            tickets: vec![],
            issued_at: now_s,
            validity: Validity::starting(now_s, self.cfg.ticket_valid / SEC),
        };
        let Ok(file) = objects::sign(&group.key, &body).and_then(|d| {
            Credential::new(d.bytes, [group.user_cert.clone()])
                .to_bytes()
                .map_err(Into::into)
        }) else {
            return;
        };
        let reqs: Vec<(u32, Request)> = targets
            .iter()
            .map(|&t| {
                (
                    t,
                    Request::Revoke {
                        revocation: file.clone(),
                    },
                )
            })
            .collect();
        if let Some(s) = self.slices.get_mut(slice as usize) {
            s.deleted = Some(self.now);
        }
        let started = self.now;
        for (t, request) in reqs {
            let id = self.send_request(Endpoint::Client(g as u32), t, request, true);
            self.client_ops.insert(id, (g as u32, t));
        }
        if let Some(gs) = self.groups.get_mut(g) {
            gs.op = Some(Op {
                kind: OpKind::Delete,
                started,
                waiting: targets.len(),
                admitted: vec![],
                refused: 0,
                unreachable: 0,
                last_ok: 0,
                retries: 0,
                targets,
                ticket: None,
                fanout: started,
            });
        }
        if self.op_answered(g) {
            self.finish_op(g);
        }
    }

    pub(crate) fn on_client_reply(&mut self, g: usize, id: u64, rep: Option<Response>) {
        let Some((_, node)) = self.client_ops.remove(&id) else {
            return;
        };
        let now = self.now;
        let Some(op) = self.groups.get(g).and_then(|s| s.op.as_ref()) else {
            return;
        };
        match &op.kind {
            OpKind::Bootstrap { tried } => {
                let tried = tried.clone();
                match rep {
                    Some(Response::Members(rows)) => {
                        let m = rows
                            .iter()
                            .filter_map(|r| self.peer_index.get(&r.peer_id).copied())
                            .collect();
                        self.start_create(g, m)
                    }
                    _ => {
                        if tried.len() < 8 {
                            self.start_bootstrap(g, tried);
                        } else if let Some(gs) = self.groups.get_mut(g) {
                            gs.op = None;
                            let at = now + 10 * MIN;
                            self.push(at, Ev::Group(g as u32));
                        }
                    }
                }
            }
            OpKind::Create => {
                let ticket = op.ticket;
                let verdict = match rep {
                    Some(Response::Receipt(bytes)) => match objects::open::<NodeReceipt>(&bytes) {
                        Ok(r) if Some(r.body.ticket) == ticket => Some(r.body),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(op) = self.groups.get_mut(g).and_then(|s| s.op.as_mut()) {
                    op.waiting = op.waiting.saturating_sub(1);
                    match verdict {
                        Some(r) if r.admitted => {
                            op.admitted.push(node);
                            op.last_ok = now;
                        }
                        Some(r) => {
                            op.refused += 1;
                            let reason: String = r.reason.chars().take(40).collect();
                            *self.metrics.refusals.entry(reason).or_default() += 1;
                        }
                        None => op.unreachable += 1,
                    }
                }
                if self.op_answered(g) {
                    self.finish_op(g);
                }
            }
            OpKind::Delete => {
                if let Some(op) = self.groups.get_mut(g).and_then(|s| s.op.as_mut()) {
                    op.waiting = op.waiting.saturating_sub(1);
                }
                if self.op_answered(g) {
                    self.finish_op(g);
                }
            }
        }
    }

    pub(crate) fn finish_op(&mut self, g: usize) {
        let now = self.now;
        let Some(gs) = self.groups.get_mut(g) else {
            return;
        };
        let Some(op) = gs.op.take() else { return };
        match op.kind {
            OpKind::Create => {
                self.metrics.creations.push(Creation {
                    at_s: op.started as f64 / SEC as f64,
                    targeted: op.targets.len(),
                    admitted: op.admitted.len(),
                    refused: op.refused,
                    unreachable: op.unreachable,
                    all_running_ms: if op.admitted.is_empty() {
                        f64::NAN
                    } else {
                        (op.last_ok - op.started) as f64 / MS as f64
                    },
                    fanout_ms: if op.admitted.is_empty() {
                        f64::NAN
                    } else {
                        (op.last_ok - op.fanout) as f64 / MS as f64
                    },
                    bootstrap_retries: op.retries,
                });
                if let Some(run) = gs.current.as_mut() {
                    run.nodes = op.admitted;
                }
                let (lo, hi) = self.cfg.slice_life;
                let life = if hi > lo {
                    self.rng.random_range(lo..hi)
                } else {
                    lo
                };
                self.push(now + life, Ev::Group(g as u32));
            }
            OpKind::Delete => {
                gs.current = None;
                let (lo, hi) = self.cfg.slice_pause;
                let pause = if hi > lo {
                    self.rng.random_range(lo..hi)
                } else {
                    lo
                };
                self.push(now + pause, Ev::Group(g as u32));
            }
            OpKind::Bootstrap { .. } => {}
        }
    }
}
