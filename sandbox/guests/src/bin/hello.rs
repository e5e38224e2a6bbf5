//! Prints a greeting with its arguments and one environment variable, then exits 0.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let who = std::env::var("SLICE").unwrap_or_else(|_| "nobody".into());
    println!("hello from a sliver of {who}; args: {args:?}");
}
