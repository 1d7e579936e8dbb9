//! A big quiet tree: PROCS processes (the root and PROCS-1 children), each with THREADS threads
//! (the main one included) sleeping. Prints "READY" once every member is up.
//!
//! Usage: tw_tree PROCS THREADS

use std::io::BufRead;
use std::process::{Command, Stdio};

fn start_threads(n: usize) {
    for _ in 1..n {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| loop {
                std::thread::park();
            })
            .expect("spawn thread");
    }
}

fn main() {
    criu_test_workloads::die_with_parent();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("member") {
        let threads = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
        start_threads(threads);
        criu_test_workloads::say("READY");
        while criu_test_workloads::read_stdin_line().is_some() {}
        return;
    }
    let procs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let threads: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut members = Vec::new();
    for _ in 1..procs {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["member", &threads.to_string()])
            .stdout(Stdio::piped())
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn member");
        let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        members.push(child);
    }
    start_threads(threads);
    criu_test_workloads::say("READY");
    while criu_test_workloads::read_stdin_line().is_some() {}
    for mut m in members {
        let _ = m.kill();
        let _ = m.wait();
    }
}
