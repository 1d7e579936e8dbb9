//! A self-checking process for the inet socket tests: `in_state RESULT MODE [PORT|ADDR:PORT]`.
//!
//! It sets up the sockets of MODE, writes "READY" to RESULT and waits for SIGUSR1 (in
//! sigwait); then it checks its sockets and writes "PASS" or "FAIL: reason". Modes:
//! - `inside`: every peer in this process: a TCP listener, a connection with bytes queued
//!   both ways and a send queue the peer's small window keeps full (bytes sent and not
//!   acknowledged, and bytes never sent), a half-closed connection, an IPv6-only listener,
//!   a connected UDP pair and an unbound datagram socket; after SIGUSR1 every byte must arrive
//!   once, in order, the listeners accept new connections and the datagram sockets talk.
//! - `outside`: connects to 127.0.0.1:PORT (or ADDR:PORT: the test's listener) and sends "to-peer";
//!   after SIGUSR1 it must read "from-peer" (sent by the test while this process was dumped)
//!   and answer "answer".
//! - `transparent`: a listener with IP_TRANSPARENT (CRIU's images have no field for it);
//!   after SIGUSR1 it must still be transparent and accept a connection.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{self, setsockopt, sockopt};

type Check = Result<(), String>;

fn main() {
    let _ = nix::unistd::setsid();
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: in_state RESULT MODE [PORT]");
        std::process::exit(2);
    }
    let (result, mode) = (&args[1], args[2].as_str());
    let mut usr1 = SigSet::empty();
    usr1.add(Signal::SIGUSR1);
    usr1.thread_block().expect("block SIGUSR1");
    let verdict = match mode {
        "inside" => inside(result, &usr1),
        "outside" => match args.get(3).and_then(|p| peer_of(p)) {
            Some(peer) => outside(result, &usr1, peer),
            None => Err("outside needs a port or an address".into()),
        },
        "transparent" => transparent(result, &usr1),
        _ => Err(format!("unknown mode {mode}")),
    };
    let text = match verdict {
        Ok(()) => "PASS\n".to_string(),
        Err(why) => format!("FAIL: {why}\n"),
    };
    std::fs::write(result, text).expect("write the verdict");
}

fn wait_usr1(result: &str, set: &SigSet) {
    std::fs::write(result, "READY\n").expect("write READY");
    while set.wait().is_err() {}
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// A pattern byte stream: byte i is (i * 7 + 3) mod 251.
fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len)
        .map(|i| ((i * 7 + 3) % 251) as u8)
        .collect()
}

fn read_exact(s: &mut TcpStream, n: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).map_err(io(what))?;
    Ok(buf)
}

fn inside(result: &str, usr1: &SigSet) -> Check {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("listen"))?;
    let port = l.local_addr().map_err(io("local_addr"))?.port();
    // A connection with bytes queued both ways.
    let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(io("connect"))?;
    let (mut a, _) = l.accept().map_err(io("accept"))?;
    c.set_nodelay(true).map_err(io("nodelay"))?;
    c.write_all(b"client-to-server").map_err(io("write"))?;
    a.write_all(b"server-to-client").map_err(io("write"))?;
    // A send queue kept full by a receiver that does not read: bytes sent and not yet
    // acknowledged, and bytes never sent. The receiver's buffer is set before it connects,
    // so that its window is made for it.
    let mut big_rx = connect_with_rcvbuf(port, 64 << 10)?;
    let (mut big_tx, _) = l.accept().map_err(io("accept"))?;
    big_tx.set_nonblocking(true).map_err(io("nonblocking"))?;
    let mut sent = 0usize;
    while sent < 1 << 20 {
        match big_tx.write(&pattern(sent, 8192)) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(format!("fill: {e}")),
        }
    }
    big_tx.set_nonblocking(false).map_err(io("blocking"))?;
    // Half-closed: the client has said all it will say.
    let mut hc = TcpStream::connect(("127.0.0.1", port)).map_err(io("connect"))?;
    let (mut hs, _) = l.accept().map_err(io("accept"))?;
    hc.write_all(b"last words").map_err(io("write"))?;
    hc.shutdown(Shutdown::Write).map_err(io("shutdown"))?;
    std::thread::sleep(Duration::from_millis(100));
    // IPv6 only, and datagrams.
    let l6 = socket_v6only()?;
    let u1 = UdpSocket::bind("127.0.0.1:0").map_err(io("udp bind"))?;
    let u2 = UdpSocket::bind("127.0.0.1:0").map_err(io("udp bind"))?;
    u1.connect(u2.local_addr().map_err(io("addr"))?)
        .map_err(io("udp connect"))?;
    let _unbound = UdpSocket::bind("0.0.0.0:0").map_err(io("udp"))?;
    wait_usr1(result, usr1);

    let got = read_exact(&mut a, 16, "server read")?;
    ensure(got == b"client-to-server", || {
        format!("server read {got:?}")
    })?;
    let got = read_exact(&mut c, 16, "client read")?;
    ensure(got == b"server-to-client", || {
        format!("client read {got:?}")
    })?;
    c.write_all(b"ping").map_err(io("write after"))?;
    ensure(read_exact(&mut a, 4, "read after")? == b"ping", || {
        "ping lost".into()
    })?;
    let all = read_exact(&mut big_rx, sent, "drain")?;
    ensure(all == pattern(0, sent), || {
        format!("{sent} queued bytes differ")
    })?;
    let mut rest = Vec::new();
    hs.read_to_end(&mut rest).map_err(io("half-closed read"))?;
    ensure(rest == b"last words", || {
        format!("half-closed read {rest:?}")
    })?;
    hs.write_all(b"reply").map_err(io("write to half-closed"))?;
    ensure(
        read_exact(&mut hc, 5, "half-closed reply")? == b"reply",
        || "reply lost".into(),
    )?;
    let mut n = TcpStream::connect(("127.0.0.1", port)).map_err(io("new connect"))?;
    let (mut na, _) = l.accept().map_err(io("new accept"))?;
    n.write_all(b"new").map_err(io("write"))?;
    ensure(read_exact(&mut na, 3, "new read")? == b"new", || {
        "new connection".into()
    })?;
    let p6 = l6.local_addr().map_err(io("v6 addr"))?.port();
    TcpStream::connect((Ipv6Addr::LOCALHOST, p6)).map_err(io("v6 connect"))?;
    let v6only: bool =
        socket::getsockopt(&l6, sockopt::Ipv6V6Only).map_err(|e| format!("v6only: {e}"))?;
    ensure(v6only, || "IPV6_V6ONLY lost".into())?;
    u1.send(b"dgram").map_err(io("udp send"))?;
    let mut buf = [0u8; 16];
    u2.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io("timeout"))?;
    let (len, from) = u2.recv_from(&mut buf).map_err(io("udp recv"))?;
    ensure(&buf[..len] == b"dgram", || "datagram".into())?;
    ensure(Some(from) == u1.local_addr().ok(), || {
        format!("datagram from {from}")
    })?;
    Ok(())
}

fn connect_with_rcvbuf(port: u16, rcvbuf: usize) -> Result<TcpStream, String> {
    let s = socket::socket(
        socket::AddressFamily::Inet,
        socket::SockType::Stream,
        socket::SockFlag::empty(),
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    setsockopt(&s, sockopt::RcvBuf, &rcvbuf).map_err(|e| format!("SO_RCVBUF: {e}"))?;
    let to = socket::SockaddrIn::from(std::net::SocketAddrV4::new([127, 0, 0, 1].into(), port));
    socket::connect(s.as_raw_fd(), &to).map_err(|e| format!("connect: {e}"))?;
    Ok(TcpStream::from(s))
}

fn socket_v6only() -> Result<TcpListener, String> {
    let s = socket::socket(
        socket::AddressFamily::Inet6,
        socket::SockType::Stream,
        socket::SockFlag::empty(),
        None,
    )
    .map_err(|e| format!("v6 socket: {e}"))?;
    setsockopt(&s, sockopt::Ipv6V6Only, &true).map_err(|e| format!("v6only: {e}"))?;
    let addr = socket::SockaddrIn6::from(std::net::SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0));
    socket::bind(s.as_raw_fd(), &addr).map_err(|e| format!("v6 bind: {e}"))?;
    socket::listen(&s, socket::Backlog::new(4).expect("backlog"))
        .map_err(|e| format!("v6 listen: {e}"))?;
    Ok(TcpListener::from(s))
}

/// A listener with IP_TRANSPARENT, which CRIU's images cannot hold: the dump must refuse it
/// and leave this process as it was (still transparent, still accepting).
fn transparent(result: &str, usr1: &SigSet) -> Check {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("listen"))?;
    setsockopt(&l, sockopt::IpTransparent, &true).map_err(|e| format!("IP_TRANSPARENT: {e}"))?;
    wait_usr1(result, usr1);
    let on: bool =
        socket::getsockopt(&l, sockopt::IpTransparent).map_err(|e| format!("get: {e}"))?;
    ensure(on, || "IP_TRANSPARENT went off".into())?;
    let addr = l.local_addr().map_err(io("addr"))?;
    TcpStream::connect(addr).map_err(io("connect"))?;
    l.accept().map_err(io("accept"))?;
    Ok(())
}

/// PORT (on 127.0.0.1) or ADDR:PORT.
fn peer_of(arg: &str) -> Option<SocketAddr> {
    match arg.parse::<u16>() {
        Ok(port) => Some(SocketAddr::from(([127, 0, 0, 1], port))),
        Err(_) => arg.parse().ok(),
    }
}

fn outside(result: &str, usr1: &SigSet, peer: SocketAddr) -> Check {
    let mut s = TcpStream::connect(peer).map_err(io("connect"))?;
    s.write_all(b"to-peer").map_err(io("write"))?;
    wait_usr1(result, usr1);
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(io("timeout"))?;
    let got = read_exact(&mut s, 9, "read from the peer")?;
    ensure(got == b"from-peer", || format!("read {got:?}"))?;
    s.write_all(b"answer").map_err(io("answer"))?;
    Ok(())
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Check {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}
