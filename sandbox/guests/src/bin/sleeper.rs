//! Sleeps for N milliseconds (default forever, in 100 ms steps): an idle sliver.
fn main() {
    let ms: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let mut left = ms;
    while left > 0 {
        let step = left.min(100);
        std::thread::sleep(std::time::Duration::from_millis(step));
        left -= step;
    }
    println!("slept {ms} ms");
}
