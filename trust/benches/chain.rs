//! Chain verification throughput against the physical limit, raw ed25519 `verify_strict`.
//!
//! `cargo bench -p slicefed-trust --bench chain`
//!
//! Goals (issue #2): cold 3-link verification ≥ 0.9 × (raw verifies/s ÷ 3); cached ≥ 20 × cold.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use ed25519_dalek::{Signature, Signer, SigningKey};
use slicefed_trust::fixtures::{T0, three_link_chain};
use slicefed_trust::{Context, Verifier};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Runs `f` repeatedly for about `budget`, five rounds, and returns the median rate per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..200 {
        f();
    }
    let mut rates = vec![];
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget / 5 {
            for _ in 0..64 {
                f();
            }
            n += 64;
        }
        rates.push(n as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[2]
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3000),
    );
    let (policy, ticket, chain) = three_link_chain().unwrap();
    let pool: Vec<&[u8]> = chain.iter().map(|b| b.as_slice()).collect();
    let ctx = Context {
        now: T0,
        node: None,
    };

    // The limit: one verify_strict over a message of a typical certificate's size.
    let key = SigningKey::from_bytes(&[9; 32]);
    let msg = vec![0x42u8; ticket.len()];
    let sig: Signature = key.sign(&msg);
    let vk = key.verifying_key();
    let raw = rate(budget, || {
        black_box(vk.verify_strict(black_box(&msg), &sig)).unwrap();
    });

    let mut v = Verifier::new(policy);
    let cold = rate(budget, || {
        v.clear_cache();
        black_box(v.verify(black_box(&ticket), &pool, &ctx)).unwrap();
    });
    v.verify(&ticket, &pool, &ctx).unwrap();
    let cached = rate(budget, || {
        black_box(v.verify(black_box(&ticket), &pool, &ctx)).unwrap();
    });

    let limit = raw / 3.0;
    println!("raw ed25519 verify_strict      {raw:>12.0} /s");
    println!(
        "3-link chain, cold             {cold:>12.0} /s   {:.2} x (raw / 3)   goal >= 0.90",
        cold / limit
    );
    println!(
        "3-link chain, cached           {cached:>12.0} /s   {:.1} x cold        goal >= 20",
        cached / cold
    );
}
