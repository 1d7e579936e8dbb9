//! A self-checking process for the unix socket restore tests: `uk_state RESULT WORK_DIR MODE`.
//!
//! It sets up the sockets of MODE, writes "READY" to RESULT and waits for SIGUSR1 (in
//! sigwait); then it checks that every socket still holds what it held and writes "PASS" or
//! "FAIL: reason". Modes:
//! - `pairs`: stream, datagram and seqpacket socketpairs with data queued both ways, and a
//!   stream pair shut down in one direction;
//! - `names`: a listener bound to a path (file mode 0640) with a connection not accepted yet,
//!   and a datagram socket with an abstract name holding messages from a connected sender;
//! - `tree`: a socketpair shared with a child, data queued both ways;
//! - `echo`: no SIGUSR1; a child client sends numbers to the parent's echo server (a path
//!   listener) and checks the answers; "READY" is written mid-way and the verdict at the end;
//! - `rights`: fds in flight (SCM_RIGHTS): a pipe read end with bytes in the pipe, a file at an
//!   offset and one end of a socketpair with a message queued, all closed by the sender;
//! - `external`: a datagram socket connected to WORK_DIR/ext.sock, a socket of the test itself
//!   (outside the dumped tree); after restore it sends "hello" there.

use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::EventFd;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{self, socketpair, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

type Check = Result<(), String>;

fn main() {
    // A dump root leads its own session: criu, like CRIU, refuses one that does not without
    // --shell-job.
    let _ = nix::unistd::setsid();
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: uk_state RESULT WORK_DIR MODE");
        std::process::exit(2);
    }
    let (result, work, mode) = (&args[1], Path::new(&args[2]), args[3].as_str());
    let mut usr1 = SigSet::empty();
    usr1.add(Signal::SIGUSR1);
    usr1.thread_block().expect("block SIGUSR1");
    let verdict = match mode {
        "pairs" => pairs(result, &usr1),
        "names" => names(result, work, &usr1),
        "tree" => tree(result, &usr1),
        "echo" => echo(result, work),
        "external" => external(result, work, &usr1),
        "rights" => rights(result, work, &usr1),
        _ => Err(format!("unknown mode {mode}")),
    };
    let text = match verdict {
        Ok(()) => "PASS\n".to_string(),
        Err(why) => format!("FAIL: {why}\n"),
    };
    std::fs::write(result, text).expect("write the verdict");
}

fn ready(result: &str) {
    std::fs::write(result, "READY\n").expect("write READY");
}

fn wait_usr1(set: &SigSet) {
    while set.wait().is_err() {}
}

fn pair(kind: SockType) -> (OwnedFd, OwnedFd) {
    socketpair(AddressFamily::Unix, kind, None, SockFlag::empty()).expect("socketpair")
}

fn send(fd: &OwnedFd, data: &[u8]) {
    let n = socket::send(fd.as_raw_fd(), data, MsgFlags::empty()).expect("send");
    assert_eq!(n, data.len());
}

/// One message (or what a stream gives), without waiting.
fn recv_now(fd: &OwnedFd, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; 65536];
    let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)
        .map_err(|e| format!("{what}: recv: {e}"))?;
    buf.truncate(n);
    Ok(buf)
}

fn expect_msg(fd: &OwnedFd, want: &[u8], what: &str) -> Check {
    let got = recv_now(fd, what)?;
    if got != want {
        return Err(format!(
            "{what}: got {:?}, want {:?}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want)
        ));
    }
    Ok(())
}

fn expect_empty(fd: &OwnedFd, what: &str) -> Check {
    let mut buf = [0u8; 16];
    match socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
        Err(nix::errno::Errno::EAGAIN) => Ok(()),
        other => Err(format!("{what}: expected an empty queue, got {other:?}")),
    }
}

/// Reads exactly `len` bytes from a stream without waiting.
fn stream_bytes(fd: &OwnedFd, len: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while out.len() < len {
        let part = recv_now(fd, what)?;
        if part.is_empty() {
            return Err(format!("{what}: EOF after {} bytes", out.len()));
        }
        out.extend(part);
    }
    Ok(out)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn pairs(result: &str, usr1: &SigSet) -> Check {
    let (sa, sb) = pair(SockType::Stream);
    send(&sa, b"a to b, ");
    send(&sa, &pattern(100_000, 1));
    send(&sb, b"b to a");
    let (da, db) = pair(SockType::Datagram);
    for m in [&b"first"[..], b"", b"the third one", &pattern(3000, 2)] {
        if !m.is_empty() {
            send(&da, m);
        }
    }
    send(&db, b"reply");
    let (qa, qb) = pair(SockType::SeqPacket);
    send(&qa, b"seq-1");
    send(&qa, b"seq-two");
    let (ha, hb) = pair(SockType::Stream);
    send(&ha, b"bye");
    socket::shutdown(ha.as_raw_fd(), socket::Shutdown::Write).expect("shutdown");
    ready(result);
    wait_usr1(usr1);

    let want: Vec<u8> = [&b"a to b, "[..], &pattern(100_000, 1)].concat();
    if stream_bytes(&sb, want.len(), "stream b")? != want {
        return Err("stream b: bytes differ".into());
    }
    expect_empty(&sb, "stream b")?;
    expect_msg(&sa, b"b to a", "stream a")?;
    expect_msg(&db, b"first", "dgram 1")?;
    expect_msg(&db, b"the third one", "dgram 2")?;
    expect_msg(&db, &pattern(3000, 2), "dgram 3")?;
    expect_empty(&db, "dgram b")?;
    expect_msg(&da, b"reply", "dgram a")?;
    send(&da, b"after");
    expect_msg(&db, b"after", "dgram after restore")?;
    expect_msg(&qb, b"seq-1", "seqpacket 1")?;
    expect_msg(&qb, b"seq-two", "seqpacket 2")?;
    expect_empty(&qb, "seqpacket")?;
    expect_msg(&hb, b"bye", "half-closed")?;
    if !recv_now(&hb, "half-closed EOF")?.is_empty() {
        return Err("half-closed: no EOF after the data".into());
    }
    if socket::send(ha.as_raw_fd(), b"x", MsgFlags::MSG_NOSIGNAL) != Err(nix::errno::Errno::EPIPE) {
        return Err("half-closed: the shut-down end can still send".into());
    }
    send(&hb, b"back");
    expect_msg(&ha, b"back", "half-closed, other way")?;
    Ok(())
}

fn names(result: &str, work: &Path, usr1: &SigSet) -> Check {
    let path = work.join("listener.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind the listener");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let mut client = UnixStream::connect(&path).expect("connect");
    let abstract_name = format!("uk-state-{}", std::process::id());
    let addr = UnixAddr::new_abstract(abstract_name.as_bytes()).expect("abstract address");
    let sink = socket::socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    socket::bind(sink.as_raw_fd(), &addr).expect("bind abstract");
    let sender = socket::socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    socket::connect(sender.as_raw_fd(), &addr).expect("connect abstract");
    send(&sender, b"m1");
    send(&sender, b"message two");
    ready(result);
    wait_usr1(usr1);

    let mode = std::fs::symlink_metadata(&path)
        .map_err(|e| format!("socket file: {e}"))?
        .permissions()
        .mode();
    if mode & 0o7777 != 0o640 {
        return Err(format!("socket file mode {:o}", mode & 0o7777));
    }
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let (mut server, _) = listener
        .accept()
        .map_err(|e| format!("accept of the pending connection: {e}"))?;
    client
        .write_all(b"ping")
        .map_err(|e| format!("client write: {e}"))?;
    let mut got = [0u8; 4];
    server
        .read_exact(&mut got)
        .map_err(|e| format!("server read: {e}"))?;
    if &got != b"ping" {
        return Err(format!("server got {got:?}"));
    }
    let local: UnixAddr = socket::getsockname(listener.as_raw_fd()).map_err(|e| e.to_string())?;
    if local.path() != Some(path.as_path()) {
        return Err(format!("listener name {local:?}"));
    }
    expect_msg(&sink, b"m1", "abstract 1")?;
    expect_msg(&sink, b"message two", "abstract 2")?;
    send(&sender, b"three");
    expect_msg(&sink, b"three", "abstract after restore")?;
    let local: UnixAddr = socket::getsockname(sink.as_raw_fd()).map_err(|e| e.to_string())?;
    if local.as_abstract() != Some(abstract_name.as_bytes()) {
        return Err(format!("abstract name {local:?}"));
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

fn tree(result: &str, usr1: &SigSet) -> Check {
    let (p, c) = pair(SockType::SeqPacket);
    send(&p, b"to child");
    // SAFETY: the process is single-threaded here; the child only uses async-signal-safe
    // calls through plain syscalls before it exits.
    let child = match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            drop(p);
            send(&c, b"to parent");
            wait_usr1(usr1);
            let ok = expect_msg(&c, b"to child", "child").is_ok();
            let _ = socket::send(
                c.as_raw_fd(),
                if ok { b"ok" } else { b"ko" },
                MsgFlags::empty(),
            );
            std::process::exit(i32::from(!ok));
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(c);
    // Wait for the child's message to be queued before saying ready.
    let mut waited = 0;
    while socket::recv(
        p.as_raw_fd(),
        &mut [0u8; 16],
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
    .is_err()
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
        assert!(waited < 500, "child never wrote");
    }
    ready(result);
    wait_usr1(usr1);
    expect_msg(&p, b"to parent", "parent")?;
    nix::sys::signal::kill(child, Signal::SIGUSR1).map_err(|e| e.to_string())?;
    let status = nix::sys::wait::waitpid(child, None).map_err(|e| e.to_string())?;
    expect_msg(&p, b"ok", "child verdict")?;
    if status != nix::sys::wait::WaitStatus::Exited(child, 0) {
        return Err(format!("child: {status:?}"));
    }
    Ok(())
}

const ROUNDS: u64 = 3000;

fn echo(result: &str, work: &Path) -> Check {
    let path = work.join("echo.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    // SAFETY: single-threaded at this point; the child runs plain Rust code and exits.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            drop(listener);
            let code = match client(&path) {
                Ok(()) => 0,
                Err(why) => {
                    eprintln!("client: {why}");
                    1
                }
            };
            std::process::exit(code);
        }
        nix::unistd::ForkResult::Parent { child } => {
            let (mut conn, _) = listener.accept().map_err(|e| e.to_string())?;
            let mut served = 0u64;
            let mut buf = [0u8; 8];
            while conn.read_exact(&mut buf).is_ok() {
                let n = u64::from_le_bytes(buf);
                conn.write_all(&(n * 2).to_le_bytes())
                    .map_err(|e| e.to_string())?;
                served += 1;
                if served == ROUNDS / 4 {
                    ready(result);
                }
            }
            let status = nix::sys::wait::waitpid(child, None).map_err(|e| e.to_string())?;
            let _ = std::fs::remove_file(&path);
            if status != nix::sys::wait::WaitStatus::Exited(child, 0) {
                return Err(format!("client: {status:?}"));
            }
            if served != ROUNDS {
                return Err(format!("served {served} rounds"));
            }
            Ok(())
        }
    }
}

fn client(path: &Path) -> Check {
    let mut s = UnixStream::connect(path).map_err(|e| e.to_string())?;
    let mut sum = 0u64;
    for i in 0..ROUNDS {
        s.write_vectored(&[IoSlice::new(&i.to_le_bytes())])
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 8];
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        let got = u64::from_le_bytes(buf);
        if got != i * 2 {
            return Err(format!("round {i}: echo {got}"));
        }
        sum += got;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    if sum != ROUNDS * (ROUNDS - 1) {
        return Err(format!("sum {sum}"));
    }
    Ok(())
}

fn external(result: &str, work: &Path, usr1: &SigSet) -> Check {
    let addr = UnixAddr::new(&work.join("ext.sock")).expect("address");
    let s = socket::socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    socket::connect(s.as_raw_fd(), &addr).expect("connect to the outside socket");
    ready(result);
    wait_usr1(usr1);
    socket::send(s.as_raw_fd(), b"hello", MsgFlags::empty()).map_err(|e| format!("send: {e}"))?;
    Ok(())
}

fn rights(result: &str, work: &Path, usr1: &SigSet) -> Check {
    let (a, b) = pair(SockType::Datagram);
    let (pr, pw) = nix::unistd::pipe().expect("pipe");
    std::fs::File::from(pw)
        .write_all(b"in the pipe")
        .expect("fill the pipe");
    let path = work.join("rights.txt");
    std::fs::write(&path, b"0123456789").expect("write the file");
    let mut file = std::fs::File::open(&path).expect("open the file");
    file.read_exact(&mut [0u8; 4]).expect("move the offset");
    let (sa, sb) = pair(SockType::SeqPacket);
    send(&sb, b"for sa");
    // An epoll whose target (an eventfd) stays in this task, sent away with the others.
    let ev = EventFd::new().expect("eventfd");
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
    ep.add(&ev, EpollEvent::new(EpollFlags::EPOLLIN, 0x77))
        .expect("epoll add");
    let fds = [
        pr.as_raw_fd(),
        file.as_raw_fd(),
        sa.as_raw_fd(),
        ep.0.as_raw_fd(),
    ];
    let cmsg = [socket::ControlMessage::ScmRights(&fds)];
    socket::sendmsg::<UnixAddr>(
        a.as_raw_fd(),
        &[IoSlice::new(b"with fds")],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .expect("send the fds");
    send(&a, b"after fds");
    drop((pr, file, sa, ep));
    ready(result);
    wait_usr1(usr1);

    let mut buf = [0u8; 64];
    let mut cspace = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = socket::recvmsg::<UnixAddr>(
        b.as_raw_fd(),
        &mut iov,
        Some(&mut cspace),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(|e| format!("recvmsg: {e}"))?;
    let n = msg.bytes;
    let mut got = Vec::new();
    for c in msg.cmsgs().map_err(|e| e.to_string())? {
        if let socket::ControlMessageOwned::ScmRights(f) = c {
            got.extend(f);
        }
    }
    if &buf[..n] != b"with fds" || got.len() != 4 {
        return Err(format!("got {n} bytes and {} fds", got.len()));
    }
    let mut text = String::new();
    // SAFETY: the four fds were just received and are owned by nothing else.
    let (mut pipe, mut file, sa, ep) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(got[0]),
            std::fs::File::from_raw_fd(got[1]),
            OwnedFd::from_raw_fd(got[2]),
            Epoll(OwnedFd::from_raw_fd(got[3])),
        )
    };
    ev.write(1).map_err(|e| format!("eventfd write: {e}"))?;
    let mut events = [EpollEvent::empty(); 2];
    let ready_n = ep
        .wait(&mut events, nix::poll::PollTimeout::ZERO)
        .map_err(|e| format!("epoll_wait on the epoll in flight: {e}"))?;
    if ready_n != 1 || events[0].data() != 0x77 {
        return Err(format!(
            "epoll in flight: {ready_n} events, data {:#x}",
            events[0].data()
        ));
    }
    let mut chunk = [0u8; 11];
    pipe.read_exact(&mut chunk)
        .map_err(|e| format!("pipe read: {e}"))?;
    if &chunk != b"in the pipe" {
        return Err(format!("pipe held {chunk:?}"));
    }
    file.read_to_string(&mut text).map_err(|e| e.to_string())?;
    if text != "456789" {
        return Err(format!("file read {text:?} from its offset"));
    }
    expect_msg(&sa, b"for sa", "socket in flight")?;
    expect_msg(&b, b"after fds", "message after the fds")?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}
