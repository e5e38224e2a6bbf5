//! Recurses without end.
fn deep(n: u64, pad: [u64; 16]) -> u64 {
    std::hint::black_box(pad);
    deep(n + 1, [n; 16]) + 1
}
fn main() {
    println!("{}", deep(0, [0; 16]));
}
