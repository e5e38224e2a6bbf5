//! What the scenarios do to the federation (partitions, kills, equivocators, revocation
//! storms) and the Sybils: machines certified by an authority nobody trusts, which advertise,
//! show made-up checkpoints and gossip revocations they signed themselves.

use crate::metrics::EquivocationRun;
use crate::sim::*;
use rand::RngExt;
use slicefed_ledger::checkpoint::Checkpoint;
use slicefed_proto::core::Capacity;
use slicefed_proto::wire::{Request, WitnessNote};
use slicefed_trust::objects::{self, Revocation};
use slicefed_trust::{Credential, ModuleHash};
use std::rc::Rc;

impl Sim {
    pub(crate) fn act(&mut self, i: usize) {
        let Some((_, action)) = self.cfg.actions.get(i).cloned() else {
            return;
        };
        let honest = self.world.honest;
        match action {
            Action::RevokeUsers(n) => self.revoke_users(n),
            Action::RevokeNodes(n) => self.revoke_nodes(n),
            Action::Partition(regions) => {
                let places: Vec<usize> = self.world.nodes.iter().map(|s| s.place.region).collect();
                self.overlay
                    .partition(|i| places.get(i).is_some_and(|r| regions.contains(r)));
            }
            Action::Heal => {
                self.overlay.heal();
                self.healed_at = self.now;
            }
            Action::Kill(share) => {
                let up = self.up_nodes();
                let count = (share * honest as f64).round() as usize;
                let mut pool = up;
                for _ in 0..count.min(pool.len()) {
                    let j = self.rng.random_range(0..pool.len());
                    let v = pool.swap_remove(j);
                    self.crash(v as usize, true);
                }
            }
            Action::KillGradually(share, over) => {
                let count = (share * honest as f64).round() as usize;
                let mut pool: Vec<u32> = (0..honest as u32).collect();
                let step = over / count.max(1) as u64;
                for c in 0..count.min(pool.len()) {
                    let j = self.rng.random_range(0..pool.len());
                    let v = pool.swap_remove(j);
                    let at = self.now + step * c as u64;
                    self.push(
                        at,
                        Ev::Crash {
                            node: v,
                            forever: true,
                        },
                    );
                }
            }
            Action::Equivocate(count) => {
                let up = self.up_nodes();
                let mut pool = up;
                for _ in 0..count.min(pool.len()) {
                    let j = self.rng.random_range(0..pool.len());
                    let v = pool.swap_remove(j) as usize;
                    let Some(pk) = self.world.nodes.get(v).map(|s| s.public) else {
                        continue;
                    };
                    if let Some(l) = self.nodes.get_mut(v).and_then(|n| n.live.as_mut()) {
                        l.node.witnessing_mut().test_equivocate();
                        self.equivocators
                            .insert(pk, self.metrics.equivocations.len());
                        self.metrics.equivocations.push(EquivocationRun {
                            forked_s: f64::NAN,
                            detected_ms: -1.0,
                            all_marked_ms: -1.0,
                            marked_by: 0,
                        });
                    }
                }
            }
            Action::SybilsArrive => {
                self.sybils_online = true;
                for s in honest..self.world.nodes.len() {
                    self.sybil_boot(s);
                }
            }
        }
    }

    pub(crate) fn sybil_boot(&mut self, s: usize) {
        let Some(n) = self.nodes.get_mut(s) else {
            return;
        };
        n.up = true;
        n.incarnation += 1;
        if let Some(u) = self.up.get_mut(s) {
            *u = true;
            self.up_count += 1;
        }
        let inc = n.incarnation;
        // A Sybil runs a machine with no capacity (it only sends: adverts on its own timer,
        // made-up checkpoints and revocations each tick; see `sybil_attack`).
        let capacity = Capacity {
            max_slivers: 0,
            memory: 0,
            default_sliver_memory: 0,
        };
        let node = self.machine(s, capacity);
        if let (Some(node), Some(n)) = (node, self.nodes.get_mut(s)) {
            n.live = Some(Box::new(Live::new(node)));
        }
        self.overlay.touch();
        let now = self.now;
        let a = self.rng.random_range(0..SEC);
        self.push(now + a, Ev::Advert(s as u32, inc));
        let t = self.rng.random_range(0..self.cfg.tick.max(1));
        self.push(now + t, Ev::Tick(s as u32, inc));
    }

    /// What a Sybil does each tick: shows its neighbours a checkpoint of a log it made up,
    /// and now and then gossips a revocation it signed itself of a researcher's
    /// certificate (hoping someone stores and spreads it).
    pub(crate) fn sybil_attack(&mut self, i: usize) {
        let now_ms = self.now_ms();
        let neighbours: Vec<u32> = self.overlay.neighbours(i).iter().map(|(v, _)| *v).collect();
        let groups = self.world.groups.len();
        let target = if groups > 0 {
            self.rng.random_range(0..groups)
        } else {
            0
        };
        let gossip_now = self.rng.random_bool(0.2);
        let Some(spec) = self.world.nodes.get(i) else {
            return;
        };
        let fake = Checkpoint {
            origin: spec.public,
            size: now_ms / 1000,
            root: ModuleHash::of(&now_ms.to_le_bytes()).0,
            time_ms: now_ms,
        }
        .sign(&spec.key);
        let rev = self.world.groups.get(target).and_then(|g| {
            let r = objects::sign(
                &spec.key,
                &Revocation {
                    target: g.user_cert_id,
                    reason: "sybil".into(),
                    revoked_at: now_ms / 1000,
                },
            )
            .ok()?;
            let target = Credential::new(g.user_cert.clone(), []);
            Credential::revocation_file(r.bytes, &target)
                .to_bytes()
                .ok()
        });
        if let Ok(cp) = fake {
            for v in neighbours {
                let note = Request::Witness(WitnessNote::Checkpoint(cp.clone()));
                self.send_request(Endpoint::Node(i as u32), v, note, false);
            }
        }
        if gossip_now && let Some(r) = rev {
            self.broadcast(
                i,
                Gossip::Revocation {
                    from: i as u32,
                    bytes: Rc::new(r),
                },
            );
        }
    }

    /// A Sybil's advert (its certificate chains to an authority nobody trusts); returns
    /// when its next one is due.
    pub(crate) fn sybil_advert(&mut self, i: usize) -> u64 {
        let Some(l) = self.nodes.get(i).and_then(|n| n.live.as_ref()) else {
            return MIN;
        };
        let load = l.node.core().load();
        let every = l.node.core().advert_interval_ms() * MS;
        self.advertise(i, load);
        every
    }
}
