//! Allocates and touches N bytes (default 1 MiB), prints "ready", then idles forever.
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1 << 20);
    let mut v = vec![0u8; n];
    for b in v.iter_mut().step_by(4096) {
        *b = 1;
    }
    std::hint::black_box(&v);
    println!("ready");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
