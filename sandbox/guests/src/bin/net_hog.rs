//! A hostile sliver for the node's network quotas. Modes:
//! - `sockets N`: opens up to N UDP sockets and holds them; prints how many it got and why
//!   it stopped, then exits 0.
//! - `udp ADDR COUNT SIZE`: sends COUNT datagrams of SIZE bytes to ADDR; prints how many
//!   were sent and the first error.
//! - `connects ADDR COUNT`: tries COUNT TCP connects to ADDR (denied ones fail at once);
//!   prints how many failed.
//! - `scan IP COUNT`: tries a TCP connect to each of ports 1..=COUNT of IP (a port scan);
//!   prints how many failed.
use std::net::{TcpStream, UdpSocket};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let num = |i: usize| arg(i).parse::<usize>().unwrap_or(0);
    match arg(0).as_str() {
        "sockets" => {
            let mut held = vec![];
            let mut why = String::from("reached the count asked");
            for _ in 0..num(1) {
                match UdpSocket::bind("0.0.0.0:0") {
                    Ok(s) => held.push(s),
                    Err(e) => {
                        why = e.to_string();
                        break;
                    }
                }
            }
            println!("held {} sockets; stopped: {why}", held.len());
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        "udp" => {
            let target = arg(1);
            let payload = vec![0x55u8; num(3).max(1)];
            let mut sent = 0usize;
            let mut first_error = None;
            match UdpSocket::bind("0.0.0.0:0") {
                Ok(s) => {
                    for _ in 0..num(2) {
                        match s.send_to(&payload, &target) {
                            Ok(_) => sent += 1,
                            Err(e) => {
                                first_error.get_or_insert(e.to_string());
                            }
                        }
                    }
                }
                Err(e) => first_error = Some(e.to_string()),
            }
            println!(
                "sent {sent} datagrams; first error: {}",
                first_error.unwrap_or_else(|| "none".into())
            );
        }
        "connects" => {
            let target = arg(1);
            let failed = (0..num(2))
                .filter(|_| TcpStream::connect(&target).is_err())
                .count();
            println!("{failed} connects failed");
        }
        "scan" => {
            let ip = arg(1);
            let failed = (1..=num(2))
                .filter(|port| TcpStream::connect(format!("{ip}:{port}")).is_err())
                .count();
            println!("{failed} connects failed");
        }
        other => {
            eprintln!("unknown mode `{other}`");
            std::process::exit(2);
        }
    }
}
