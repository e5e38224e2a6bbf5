//! The scenarios: PlanetLab's scale in normal operation, and the events slicefed is built
//! to survive.

use crate::sim::{Action, Config, HOUR, MIN};

/// A named scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// 1,000 nodes at 300 authorities, 375 research groups with slices of 10-100 nodes,
    /// 10-30% of nodes down at any moment, a researcher revoked every two hours; 24 h.
    Planetary,
    /// Ten times the planetary federation: 10,000 nodes at 3,000 authorities, 3,750
    /// groups, 10-30% down; 6 h (membership and reconciliation at scale).
    Planetary10k,
    /// The planetary federation; 50 researchers revoked at once.
    RevocationStorm,
    /// The planetary federation; five nodes sign a second history each.
    Equivocation,
    /// The planetary federation; Europe and Africa are cut off for an hour, while
    /// revocations are published on both sides.
    Partition,
    /// The planetary federation; 200 Sybil machines (certified by an authority nobody
    /// trusts) join the overlay and attack; halfway, five running nodes are revoked and
    /// run on.
    Sybil,
    /// The planetary federation; 10% of the nodes die for good at once.
    WitnessLoss10,
    /// The planetary federation; 30% of the nodes die for good at once.
    WitnessLoss30,
    /// The CI scenario: 100 nodes, 3 h, everything at once (churn, Sybils, two
    /// equivocators, revocations of researchers and of two running nodes, 30% of the
    /// nodes dying one by one).
    Short,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 9] = [
        Scenario::Planetary,
        Scenario::Planetary10k,
        Scenario::RevocationStorm,
        Scenario::Equivocation,
        Scenario::Partition,
        Scenario::Sybil,
        Scenario::WitnessLoss10,
        Scenario::WitnessLoss30,
        Scenario::Short,
    ];

    /// The scenario of that name (as [`Scenario::name`] spells it).
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Its name on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Planetary => "planetary",
            Scenario::Planetary10k => "planetary-10k",
            Scenario::RevocationStorm => "revocation-storm",
            Scenario::Equivocation => "equivocation",
            Scenario::Partition => "partition",
            Scenario::Sybil => "sybil",
            Scenario::WitnessLoss10 => "witness-loss-10",
            Scenario::WitnessLoss30 => "witness-loss-30",
            Scenario::Short => "short",
        }
    }

    /// Its configuration. `nodes` and `hours` override the scenario's size (authorities
    /// and groups scale with the nodes).
    pub fn config(self, seed: u64, nodes: Option<usize>, hours: Option<f64>) -> Config {
        let (default_nodes, default_hours) = match self {
            Scenario::Planetary => (1000, 24.0),
            Scenario::Planetary10k => (10_000, 6.0),
            Scenario::Short => (100, 3.0),
            _ => (1000, 6.0),
        };
        let n = nodes.unwrap_or(default_nodes).max(4);
        let h = hours.unwrap_or(default_hours).max(0.1);
        let authorities = (n * 3 / 10).max(1);
        let groups = (n * 3 / 8).max(1);
        let mut c = Config::sized(seed, n, authorities, groups, h);
        let at = |frac: f64| (h * frac * HOUR as f64) as u64;
        match self {
            Scenario::Planetary | Scenario::Planetary10k => {}
            Scenario::RevocationStorm => {
                c.revocation_every = 0;
                c.actions = vec![(at(0.5), Action::RevokeUsers(50))];
            }
            Scenario::Equivocation => {
                c.actions = vec![(at(1.0 / 3.0), Action::Equivocate(5))];
            }
            Scenario::Partition => {
                c.revocation_every = 0;
                c.actions = vec![
                    (at(1.0 / 3.0), Action::Partition(vec![3, 4, 9])),
                    (at(1.0 / 3.0) + 10 * MIN, Action::RevokeUsers(6)),
                    (at(1.0 / 3.0) + HOUR, Action::Heal),
                ];
            }
            Scenario::Sybil => {
                c.sybils = 200.min(n / 5).max(1);
                c.actions = vec![
                    (at(1.0 / 6.0), Action::SybilsArrive),
                    (at(0.5), Action::RevokeNodes(5)),
                ];
            }
            Scenario::WitnessLoss10 => {
                c.actions = vec![(at(0.5), Action::Kill(0.10))];
            }
            Scenario::WitnessLoss30 => {
                c.actions = vec![(at(0.5), Action::Kill(0.30))];
            }
            Scenario::Short => {
                c.sybils = 20;
                c.revocation_every = 30 * MIN;
                c.checkpoint_every = MIN;
                c.actions = vec![
                    (20 * MIN, Action::SybilsArrive),
                    (40 * MIN, Action::Equivocate(2)),
                    (at(0.4), Action::RevokeUsers(3)),
                    (at(0.3), Action::RevokeNodes(2)),
                    (
                        at(0.4),
                        Action::KillGradually(0.30, (h * 0.4 * HOUR as f64) as u64),
                    ),
                ];
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_is_found_by_its_name() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::from_name(s.name()), Some(s), "{}", s.name());
        }
        assert_eq!(
            Scenario::from_name("witness-loss-30"),
            Some(Scenario::WitnessLoss30)
        );
        assert_eq!(Scenario::from_name("nope"), None);
    }
}
