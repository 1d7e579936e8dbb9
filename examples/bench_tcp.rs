//! Established-connection workload for the TCP benchmark (`scripts/bench-tcp.sh`):
//! `bench_tcp N BYTES READY_FILE` makes N loopback TCP connections (both ends in this
//! process) and has each end send BYTES the other does not read, so every connection holds
//! BYTES queued in each direction. It writes "ready SECONDS" to READY_FILE, SECONDS being what
//! that setup took (the benchmark's floor), then waits for SIGUSR1 and checks that every end
//! still reads exactly its BYTES of the pattern; the verdict ("PASS" or "FAIL: why") goes to
//! READY_FILE.verdict.

#[path = "common/detach.rs"]
mod detach;
#[path = "common/ready.rs"]
mod ready;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{SigSet, Signal};

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed * 7) % 253) as u8)
        .collect()
}

fn main() {
    detach::detach();
    let args: Vec<String> = std::env::args().collect();
    let (n, bytes): (usize, usize) = match (
        args.get(1).map(|a| a.parse()),
        args.get(2).map(|a| a.parse()),
    ) {
        (Some(Ok(n)), Some(Ok(b))) if args.len() == 4 => (n, b),
        _ => {
            eprintln!("usage: bench_tcp N BYTES READY_FILE");
            std::process::exit(2);
        }
    };
    let ready_file = &args[3];
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let mut usr1 = SigSet::empty();
    usr1.add(Signal::SIGUSR1);
    usr1.thread_block().expect("block SIGUSR1");
    let started = Instant::now();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("address");
    let mut pairs = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = TcpStream::connect(addr).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client
            .write_all(&pattern(2 * i, bytes))
            .expect("client write");
        server
            .write_all(&pattern(2 * i + 1, bytes))
            .expect("server write");
        pairs.push((client, server));
    }
    let setup = started.elapsed().as_secs_f64();
    std::fs::write(format!("{ready_file}.setup"), format!("{setup}\n")).expect("setup time");
    ready::signal(ready_file);
    while usr1.wait().is_err() {}
    let mut verdict = "PASS".to_string();
    for (i, (client, server)) in pairs.iter_mut().enumerate() {
        let mut got = vec![0u8; bytes];
        let ok = server.read_exact(&mut got).is_ok() && got == pattern(2 * i, bytes);
        let ok = ok && client.read_exact(&mut got).is_ok() && got == pattern(2 * i + 1, bytes);
        if !ok {
            verdict = format!("FAIL: connection {i} lost bytes");
            break;
        }
    }
    std::fs::write(format!("{ready_file}.verdict"), verdict).expect("verdict");
    ready::wait_forever();
}
