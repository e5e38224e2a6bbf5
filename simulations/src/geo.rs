//! Where nodes are and how long a message takes between them.
//!
//! Sites are placed in regions weighted roughly like PlanetLab's (half in North America,
//! a third in Europe, the rest in Asia, Oceania, South America and Africa). One-way
//! latency is a fixed cost plus the great-circle distance at two thirds of the speed of
//! light in fibre, stretched by routing; a link drops packets at a configured rate, and
//! a dropped packet costs one TCP retransmission timeout, since every slicefed message
//! travels on a TCP connection.

use rand::RngExt;

/// A place on the planet, degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Place {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Index into [`REGIONS`].
    pub region: usize,
}

/// A region: name, centre (lat, lon), spread in degrees, share of sites.
pub const REGIONS: &[(&str, f64, f64, f64, f64)] = &[
    ("na-east", 40.0, -76.0, 5.0, 0.24),
    ("na-west", 38.0, -121.0, 4.0, 0.14),
    ("na-central", 41.0, -92.0, 5.0, 0.08),
    ("eu-west", 49.0, 4.0, 5.0, 0.20),
    ("eu-east", 50.0, 19.0, 5.0, 0.10),
    ("asia-east", 35.0, 126.0, 7.0, 0.12),
    ("asia-south", 19.0, 78.0, 5.0, 0.03),
    ("oceania", -33.0, 149.0, 4.0, 0.03),
    ("south-america", -23.0, -47.0, 5.0, 0.04),
    ("africa", -26.0, 28.0, 4.0, 0.02),
];

/// Fixed cost of a message one way (stack, first hop), microseconds.
pub const BASE_US: u64 = 1_000;
/// Within one site, one way, microseconds.
pub const SAME_SITE_US: u64 = 300;
/// Light in fibre covers about 200 km per millisecond.
pub const KM_PER_MS: f64 = 200.0;
/// Routes are longer than great circles.
pub const ROUTE_STRETCH: f64 = 1.5;
/// What a lost packet costs a TCP connection (one retransmission timeout), microseconds.
pub const RETRANSMIT_US: u64 = 200_000;

/// A random place in a region chosen by weight.
pub fn place(rng: &mut impl rand::Rng) -> Place {
    let total: f64 = REGIONS.iter().map(|r| r.4).sum();
    let mut pick = rng.random::<f64>() * total;
    let mut region = REGIONS.len() - 1;
    for (i, r) in REGIONS.iter().enumerate() {
        if pick < r.4 {
            region = i;
            break;
        }
        pick -= r.4;
    }
    let (_, lat, lon, spread, _) = REGIONS
        .get(region)
        .copied()
        .unwrap_or(("na-east", 40.0, -76.0, 5.0, 0.24));
    Place {
        lat: (lat + (rng.random::<f64>() * 2.0 - 1.0) * spread).clamp(-89.0, 89.0),
        lon: lon + (rng.random::<f64>() * 2.0 - 1.0) * spread,
        region,
    }
}

/// Great-circle distance, km.
pub fn distance_km(a: &Place, b: &Place) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

/// One-way latency between two places without loss, microseconds.
pub fn latency_us(a: &Place, b: &Place) -> u64 {
    if a == b {
        return SAME_SITE_US;
    }
    BASE_US + (distance_km(a, b) * ROUTE_STRETCH / KM_PER_MS * 1000.0) as u64
}

/// Latency of one message with loss: each lost transmission costs a retransmission
/// timeout (at most three are counted; a connection that loses more is as good as down).
pub fn delivery_us(a: &Place, b: &Place, loss: f64, rng: &mut impl rand::Rng) -> u64 {
    let mut t = latency_us(a, b);
    let mut tries = 0;
    while loss > 0.0 && tries < 3 && rng.random_bool(loss.clamp(0.0, 1.0)) {
        t += RETRANSMIT_US << tries;
        tries += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_look_like_the_internet() {
        let princeton = Place {
            lat: 40.35,
            lon: -74.66,
            region: 0,
        };
        let berkeley = Place {
            lat: 37.87,
            lon: -122.26,
            region: 1,
        };
        let cambridge_uk = Place {
            lat: 52.2,
            lon: 0.12,
            region: 3,
        };
        // Coast to coast ~4,100 km: ~30 ms one way; transatlantic ~5,600 km: ~43 ms.
        let us = latency_us(&princeton, &berkeley);
        assert!((25_000..40_000).contains(&us), "{us}");
        let tx = latency_us(&princeton, &cambridge_uk);
        assert!((35_000..50_000).contains(&tx), "{tx}");
        assert_eq!(latency_us(&princeton, &princeton), SAME_SITE_US);
    }
}
