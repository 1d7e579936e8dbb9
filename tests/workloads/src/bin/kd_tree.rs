//! A tree that checks itself while criu dumps it and is killed half-way: `kd_tree RESULT_FILE`.
//!
//! The root (a session leader) maps 64 MiB filled with a pattern and forks a child; the two talk without pause
//! (the root writes a counter into a pipe, the child answers counter + 1 on a socket pair and
//! again on a loopback TCP connection, so a dump needs `--tcp-established`).
//! Each process has two threads that keep known values in r12-r15 and all four lanes of
//! ymm0 across short sleeps and check them after each. The root writes "READY" to
//! RESULT_FILE; on SIGUSR1 it checks its memory, that the exchange still runs and that no
//! thread saw a register change, and writes "PASS" or "FAIL: reason". A child that finds
//! something wrong exits, which the root sees as the end of the exchange.

use criu_test_workloads::verdict;
use std::arch::asm;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// 64 MiB, in words.
const WORDS: usize = 8 << 20;
/// First register value a thread saw changed (0: none).
static BROKEN: AtomicU64 = AtomicU64::new(0);
/// Register threads of this process that have entered their loop.
static HOLDING: AtomicU64 = AtomicU64::new(0);
/// Rounds of the pipe/socket exchange so far.
static ROUNDS: AtomicU64 = AtomicU64::new(0);

fn pattern(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Holds `seed`..`seed + 3` in r12-r15 and `seed` in every lane of ymm0 across a 1 ms
/// nanosleep, forever; records the first value found changed.
fn hold_registers(seed: u64) -> ! {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    HOLDING.fetch_add(1, Ordering::SeqCst);
    loop {
        let bad: u64;
        // SAFETY: a nanosleep on a live timespec; every register the block writes is declared.
        unsafe {
            asm!(
                "mov r12, {s}",
                "lea r13, [{s} + 1]",
                "lea r14, [{s} + 2]",
                "lea r15, [{s} + 3]",
                "vmovq xmm0, {s}",
                "vpbroadcastq ymm0, xmm0",
                "mov eax, 35",
                "syscall",
                "xor {bad}, {bad}",
                "cmp r12, {s}",
                "jne 2f",
                "lea rax, [{s} + 1]",
                "cmp r13, rax",
                "jne 2f",
                "lea rax, [{s} + 2]",
                "cmp r14, rax",
                "jne 2f",
                "lea rax, [{s} + 3]",
                "cmp r15, rax",
                "jne 2f",
                "vmovq rax, xmm0",
                "cmp rax, {s}",
                "jne 2f",
                "vextracti128 xmm1, ymm0, 1",
                "vpextrq rax, xmm1, 1",
                "cmp rax, {s}",
                "jne 2f",
                "jmp 3f",
                "2:",
                "mov {bad}, 1",
                "3:",
                s = in(reg) seed,
                bad = out(reg) bad,
                in("rdi") &ts,
                in("rsi") 0u64,
                out("rax") _, out("rcx") _, out("r11") _,
                out("r12") _, out("r13") _, out("r14") _, out("r15") _,
                out("xmm0") _, out("xmm1") _,
            );
        }
        if bad != 0 {
            let _ = BROKEN.compare_exchange(0, seed, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

/// Starts the two register threads and waits until both run (the memory map no longer
/// changes after that).
fn start_register_threads(first_seed: u64) {
    for i in 0..2 {
        std::thread::spawn(move || hold_registers(first_seed + 16 * i));
    }
    while HOLDING.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The child: answers each counter from the pipe with counter + 1 on both sockets; exits if
/// a register changed or the exchange breaks.
fn child(mut from_root: std::io::PipeReader, mut to_root: UnixStream, mut tcp: TcpStream) -> ! {
    start_register_threads(0x5eed_0000_0000_0100);
    // Tell the root we are set up.
    if to_root.write_all(&[1]).is_err() {
        std::process::exit(3);
    }
    let mut buf = [0u8; 8];
    loop {
        if BROKEN.load(Ordering::SeqCst) != 0 || from_root.read_exact(&mut buf).is_err() {
            std::process::exit(3);
        }
        let n = (u64::from_le_bytes(buf) + 1).to_le_bytes();
        if to_root.write_all(&n).is_err() || tcp.write_all(&n).is_err() {
            std::process::exit(3);
        }
    }
}

/// The root's side of the exchange, on a thread of its own.
fn exchange(mut to_child: std::io::PipeWriter, mut from_child: UnixStream, mut tcp: TcpStream) {
    let (mut unix_buf, mut tcp_buf) = ([0u8; 8], [0u8; 8]);
    for n in 0u64.. {
        if to_child.write_all(&n.to_le_bytes()).is_err()
            || from_child.read_exact(&mut unix_buf).is_err()
            || tcp.read_exact(&mut tcp_buf).is_err()
        {
            return;
        }
        let want = (n + 1).to_le_bytes();
        if unix_buf != want || tcp_buf != want {
            return;
        }
        ROUNDS.store(n + 1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn main() {
    let result = std::env::args().nth(1).expect("usage: kd_tree RESULT_FILE");
    // Not bound to its parent's life (the test kills it when done): restored with `-d`, its
    // parent is criu, which exits.
    // SAFETY: setsid takes no arguments. A session leader, as criu wants a tree's root.
    unsafe { libc::setsid() };
    let memory: Vec<u64> = (0..WORDS).map(pattern).collect();
    let (pipe_r, pipe_w) = std::io::pipe().expect("pipe");
    let (sock_root, sock_child) = UnixStream::pair().expect("socketpair");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("listener address");
    // SAFETY: the process has one thread here; the child only uses what it owns after fork.
    match unsafe { libc::fork() } {
        0 => {
            drop(pipe_w);
            drop(sock_root);
            drop(listener);
            criu_test_workloads::die_with_parent();
            let tcp = TcpStream::connect(addr).unwrap_or_else(|_| std::process::exit(3));
            let _ = tcp.set_nodelay(true);
            child(pipe_r, sock_child, tcp)
        }
        pid if pid < 0 => verdict::fail(&result, "fork failed".into()),
        _ => {}
    }
    drop(pipe_r);
    drop(sock_child);
    let Ok((tcp, _)) = listener.accept() else {
        verdict::fail(&result, "the child did not connect".into())
    };
    let _ = tcp.set_nodelay(true);
    let mut sock_root = sock_root;
    let mut set_up = [0u8; 1];
    if sock_root.read_exact(&mut set_up).is_err() {
        verdict::fail(&result, "the child did not start".into());
    }
    verdict::catch_usr1();
    // SIGUSR1 must wake the main thread: the other threads start with it blocked.
    let usr1 = nix::sys::signal::SigSet::from(nix::sys::signal::Signal::SIGUSR1);
    usr1.thread_block().expect("block SIGUSR1");
    start_register_threads(0x5eed_0000_0000_0000);
    std::thread::spawn(move || exchange(pipe_w, sock_root, tcp));
    usr1.thread_unblock().expect("unblock SIGUSR1");
    // Every thread has started (and mapped what it maps) before READY.
    while ROUNDS.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    verdict::ready_then_wait(&result);

    let broken = BROKEN.load(Ordering::SeqCst);
    verdict::check(
        &result,
        broken == 0,
        format!("thread {broken:#x} found a register changed"),
    );
    let bad = (0..WORDS).find(|&i| memory[i] != pattern(i));
    verdict::check(
        &result,
        bad.is_none(),
        format!("memory differs at word {bad:?}"),
    );
    // The exchange goes on (a child that found something wrong has ended it).
    let before = ROUNDS.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while ROUNDS.load(Ordering::SeqCst) < before + 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = ROUNDS.load(Ordering::SeqCst);
    verdict::check(
        &result,
        after >= before + 10,
        format!("the exchange with the child stopped at round {after}"),
    );
    std::fs::write(&result, "PASS\n").expect("write PASS");
}
