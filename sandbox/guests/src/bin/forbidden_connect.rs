//! Tries to connect to ADDR; prints "denied" and exits 0 if policy refuses, exits 1 if the
//! connection was (wrongly) allowed.
use std::net::TcpStream;
fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "192.0.2.1:25".into());
    match TcpStream::connect(&addr) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => println!("denied"),
        Err(e) => {
            println!("failed otherwise: {e}");
            std::process::exit(2);
        }
        Ok(_) => {
            println!("connected");
            std::process::exit(1);
        }
    }
}
