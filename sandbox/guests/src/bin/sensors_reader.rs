//! A monitoring guest, the example of the sensors right: every INTERVAL_MS (once with 0) it
//! reads its node's sensors at ADDR (the node's `/metrics` address, which the node's owner
//! publishes) and prints the slivers and members the node reports. Without the sensors
//! right in its ticket the node refuses the connection, and it prints why.
use std::io::{Read, Write};
use std::net::TcpStream;

fn read(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    // At most 4 MiB: a node's sensors are far smaller.
    s.take(4 << 20).read_to_string(&mut body)?;
    Ok(body)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9464".into());
    let interval: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    loop {
        match read(&addr) {
            Ok(body) => {
                println!("read {} bytes of sensors from {addr}", body.len());
                for line in body.lines().filter(|l| {
                    l.starts_with("slicefed_slivers{") || l.starts_with("slicefed_members{")
                }) {
                    println!("  {line}");
                }
            }
            Err(e) => println!("sensors {addr}: {e}"),
        }
        if interval == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(interval));
    }
}
