//! Benchmark of the tracee engine (build with --release, run as root):
//! * round trip of one injected syscall (getpid) into a task blocked in read(), median, from
//!   the landing (live tasks) and from `syscall; int3` (tasks being restored), interleaved;
//! * seize and release of a PROCS-process, THREADS-thread tree (tw_tree), median;
//! * the machine's floor for comparison: a pipe ping-pong between two threads (one wake-up
//!   each way, like an injection's CONT and trap) and a local getpid.
//!
//! Usage: tracee_bench [PROCS THREADS [INJECTIONS]]

use criu_tracee::{Injector, SeizeOptions, SeizedTree};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn spawn(name: &str, args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let exe = std::env::current_exe()
        .expect("own path")
        .with_file_name(name);
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("READY line");
    assert!(line.starts_with("READY"), "{name}: {line}");
    (child, out)
}

fn wait_in_syscall(pid: u32, nr: i64) {
    for _ in 0..1000 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if text
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<i64>().ok())
            == Some(nr)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("pid {pid} never blocked in syscall {nr}");
}

fn pipe_ping_pong(rounds: usize) -> f64 {
    let (mut a_r, mut a_w) = std::io::pipe().expect("pipe");
    let (mut b_r, mut b_w) = std::io::pipe().expect("pipe");
    let echo = std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        while a_r.read_exact(&mut byte).is_ok() {
            if b_w.write_all(&byte).is_err() {
                break;
            }
        }
    });
    let mut times = Vec::with_capacity(rounds);
    let mut byte = [0u8; 1];
    for _ in 0..rounds {
        let t = Instant::now();
        a_w.write_all(&[1]).expect("ping");
        b_r.read_exact(&mut byte).expect("pong");
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(a_w);
    let _ = echo.join();
    median(times)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let procs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let threads: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let injections: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2000);

    // Floors.
    let mut local = Vec::new();
    for _ in 0..injections {
        let t = Instant::now();
        std::hint::black_box(criu_test_workloads::raw_syscall(libc::SYS_getpid, [0; 6]));
        local.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let ping = pipe_ping_pong(injections);

    // Injected syscall round trip.
    let (mut blocker, _out) = spawn("tw_blocker", &["read"]);
    wait_in_syscall(blocker.id(), 0);
    let pid = blocker.id() as i32;
    // Both ways of injecting, in alternating blocks of 100 calls: from the landing (what a
    // live task gets) and from `syscall; int3` in the scratch area (what a task being
    // restored gets).
    let mut landing_times = Vec::with_capacity(injections);
    let mut int3_times = Vec::with_capacity(injections);
    let mut setups = (Vec::new(), Vec::new());
    let mut finishes = (Vec::new(), Vec::new());
    let mut tree = SeizedTree::seize(pid, &SeizeOptions::default()).expect("seize blocker");
    for block in 0..(2 * injections).div_ceil(200) {
        let landing = block % 2 == 0;
        let leader = tree
            .process_mut(pid)
            .and_then(|p| p.thread_mut(pid))
            .expect("leader");
        let t0 = Instant::now();
        let mut inj = if landing {
            Injector::new(leader, 64)
        } else {
            Injector::for_restore(leader, 64)
        }
        .expect("injector");
        let setup = t0.elapsed().as_secs_f64() * 1e6;
        let times = if landing {
            &mut landing_times
        } else {
            &mut int3_times
        };
        for _ in 0..100 {
            let t = Instant::now();
            let r = inj.syscall(libc::SYS_getpid, &[]).expect("injected getpid");
            times.push(t.elapsed().as_secs_f64() * 1e6);
            assert_eq!(r, pid as i64);
        }
        let t1 = Instant::now();
        inj.finish().expect("finish");
        let finish = t1.elapsed().as_secs_f64() * 1e6;
        let (s, f) = if landing {
            (&mut setups.0, &mut finishes.0)
        } else {
            (&mut setups.1, &mut finishes.1)
        };
        s.push(setup);
        f.push(finish);
    }
    tree.release().expect("release");
    blocker
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"bye\n")
        .expect("wake blocker");
    let _ = blocker.wait();

    // Seize and release a big tree.
    let (mut tree_proc, _tout) = spawn("tw_tree", &[&procs.to_string(), &threads.to_string()]);
    let root = tree_proc.id() as i32;
    let mut seize_ms = Vec::new();
    let mut release_ms = Vec::new();
    let mut count = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let tree = SeizedTree::seize(root, &SeizeOptions::default()).expect("seize tree");
        seize_ms.push(t.elapsed().as_secs_f64() * 1e3);
        count = tree.thread_count();
        let procs_seen = tree.processes.len();
        assert_eq!(procs_seen, procs, "processes seized");
        let t = Instant::now();
        tree.release().expect("release tree");
        release_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(tree_proc.stdin.take());
    let _ = tree_proc.kill();
    let _ = tree_proc.wait();

    println!(
        "local getpid (floor):              median {:.2} us",
        median(local)
    );
    println!("pipe ping-pong between threads:    median {ping:.1} us");
    let (landing, int3) = (median(landing_times), median(int3_times));
    println!(
        "injected getpid round trip:        landing median {landing:.1} us, int3 median {int3:.1} us ({:.2}x) over {injections} each",
        landing / int3
    );
    println!(
        "injector setup (mmap of scratch):  landing median {:.0} us, int3 median {:.0} us",
        median(setups.0),
        median(setups.1)
    );
    println!(
        "injector finish (munmap, regs):    landing median {:.0} us, int3 median {:.0} us",
        median(finishes.0),
        median(finishes.1)
    );
    println!(
        "tree {procs} procs x {threads} threads ({count} seized): seize median {:.1} ms, release median {:.1} ms",
        median(seize_ms),
        median(release_ms)
    );
}
