//! Allocates and touches memory in 64 KiB steps: up to N bytes given as the first argument
//! (then prints "allocated N" and exits 0), or forever.
fn main() {
    let limit: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    while total < limit {
        let step = (limit - total).min(64 * 1024);
        let mut v = vec![0u8; step];
        for b in v.iter_mut().step_by(4096) {
            *b = 1;
        }
        total += step;
        held.push(v);
    }
    println!("allocated {total}");
}
