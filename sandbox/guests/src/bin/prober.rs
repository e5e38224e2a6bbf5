//! A measurement service, the example sliver of `slicefed devnet`: every INTERVAL_MS it
//! connects to ADDR, sends a line naming itself, reads the answer and prints what it saw,
//! COUNT times (0: forever). Connection failures are printed and retried, never fatal.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let interval: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let count: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let me = std::env::var("SLIVER_NAME").unwrap_or_else(|_| "a sliver".into());
    let mut n = 0u64;
    loop {
        n += 1;
        match TcpStream::connect(&addr) {
            Ok(mut s) => {
                let local = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
                let sent = writeln!(s, "probe {n} from {me}");
                let mut answer = String::new();
                let got = BufReader::new(&s).read_line(&mut answer);
                match (sent, got) {
                    (Ok(()), Ok(_)) => println!("probe {n}: {addr} from {local}: {}", answer.trim_end()),
                    (Err(e), _) | (_, Err(e)) => println!("probe {n}: {addr}: {e}"),
                }
            }
            Err(e) => println!("probe {n}: connect {addr}: {e}"),
        }
        if count != 0 && n >= count {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(interval));
    }
}
