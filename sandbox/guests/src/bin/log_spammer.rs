//! Writes log lines as fast as it can, forever.
fn main() {
    let mut i = 0u64;
    loop {
        println!("spam line {i} ........................................................");
        i += 1;
    }
}
