//! Spins forever (or for N iterations given as the first argument).
fn main() {
    let limit: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let mut x = 0x9e3779b97f4a7c15u64;
    let mut i = 0u64;
    while i < limit {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        i = std::hint::black_box(i + 1);
    }
    println!("{x}");
}
