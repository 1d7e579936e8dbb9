//! `criu page-server` and `dump`/`pre-dump --page-server`: a tree that rewrites its memory
//! all the time (tests/workloads/src/bin/mp_writer.rs journals which generation each page
//! holds and checks itself) is dumped with its pages sent over TCP to a page server on
//! 127.0.0.1, which writes them into its own dir; the other images are then copied there
//! and the tree is restored from that dir. They prove that
//! - the dump writes no page image of its own, the page server writes every task's pagemap
//!   and pages, and the restore from its dir gives every task exactly its memory;
//! - pre-dump rounds through a page server started once per round with
//!   `--prev-images-dir`, then a final dump, restore exactly too, and the final dump sends
//!   only what changed since the last round;
//! - a dump whose page server does not listen fails naming the address, before the tree is
//!   touched, and the tree runs on intact.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use harness::{bin, descendants, is_verdict, require_root, state, tracer, wait_until};

const MIB: u64 = 1 << 20;

fn criu(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn log_tail(path: &Path) -> String {
    let text = read(path);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(120);
    format!(
        "--- {} (last lines) ---\n{}",
        path.display(),
        lines[from..].join("\n")
    )
}

fn criu_ok(args: &[&str], dir: &Path, logs: &[&str]) {
    let out = criu(args, dir);
    let shown: Vec<String> = logs.iter().map(|l| log_tail(&dir.join(l))).collect();
    assert_eq!(
        out.status.code(),
        Some(0),
        "criu {}: {out:?}\n{}",
        args.join(" "),
        shown.join("\n")
    );
}

fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}

fn gone(pid: i32) -> bool {
    reap();
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .unwrap_or_else(|e| panic!("{sig} to {pid}: {e}"));
}

fn assert_runs(pid: i32, when: &str) {
    let st = state(pid, pid);
    assert!(
        matches!(st, Some(c) if !matches!(c, 'T' | 't' | 'Z' | 'X')),
        "{when}: pid {pid} is in state {st:?}"
    );
    assert_eq!(tracer(pid, pid), 0, "{when}: pid {pid} is still traced");
}

/// Files of `dir` whose name starts with `prefix` and ends with `.img`.
fn images(dir: &Path, prefix: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with(prefix) && name.ends_with(".img"))
                .then(|| (name, e.metadata().unwrap().len()))
        })
        .collect();
    v.sort();
    v
}

fn pages_bytes(dir: &Path) -> u64 {
    images(dir, "pages-").iter().map(|(_, n)| n).sum()
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Copies the dump's images (everything but logs and the stats) into the page server's dir,
/// as one would copy them to the machine the pages went to.
fn copy_images(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_file() && !name.ends_with(".log") && name != "stats-dump" {
            assert!(
                !to.join(&name).exists(),
                "{name} is in both the dump's dir and the page server's"
            );
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// `criu page-server -d` on 127.0.0.1:`port` into `dir` (relative to `d`): back once it
/// listens; returns its pid (from --pidfile).
fn start_page_server(d: &Path, dir: &str, port: u16, prev: Option<&str>) -> i32 {
    let pidfile = d.join(format!("{}.pid", dir.replace('/', "_")));
    let port = port.to_string();
    let pidpath = pidfile.display().to_string();
    let mut args = vec![
        "page-server",
        "-D",
        dir,
        "-o",
        "page-server.log",
        "-v4",
        "--address",
        "127.0.0.1",
        "--port",
        &port,
        "-d",
        "--pidfile",
        &pidpath,
    ];
    if let Some(p) = prev {
        args.extend(["--prev-images-dir", p]);
    }
    criu_ok(&args, d, &[&format!("{dir}/page-server.log")]);
    read(&pidfile)
        .trim()
        .parse()
        .expect("page server's pidfile")
}

/// Waits for the page server to end its session and exit, and checks its log.
fn page_server_done(d: &Path, dir: &str, pid: i32) {
    let log = d.join(dir).join("page-server.log");
    assert!(
        wait_until(Duration::from_secs(30), || gone(pid)),
        "page server {pid} did not exit\n{}",
        log_tail(&log)
    );
    let text = read(&log);
    assert!(
        text.contains("Session over") && !text.contains("Error"),
        "page server's session\n{}",
        log_tail(&log)
    );
}

struct Tree {
    original: Child,
    results: PathBuf,
    roles: Vec<(String, i32)>,
}

impl Tree {
    fn start(dir: &Path, mib: u64) -> Tree {
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let results = dir.join("results");
        std::fs::create_dir(&results).unwrap();
        let original = Command::new(bin("mp_writer"))
            .arg(&results)
            .arg(mib.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut tree = Tree {
            original,
            results,
            roles: Vec::new(),
        };
        tree.wait_ready("parent");
        tree
    }

    fn root(&self) -> i32 {
        self.roles[0].1
    }

    fn wait_ready(&mut self, role: &str) {
        let ready = wait_until(Duration::from_secs(60), || {
            read(&self.results.join(role)) == "READY\n"
        });
        assert!(ready, "mp_writer's {role} never got ready");
        let pid = read(&self.results.join(format!("{role}.pid")))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{role}.pid: {e}"));
        self.roles.push((role.to_string(), pid));
    }

    /// SIGUSR2 to the parent: a new mapping and a new child, `n`th of them.
    fn grow(&mut self, n: usize) {
        signal(self.root(), nix::sys::signal::Signal::SIGUSR2);
        let ack = self.results.join("parent.ack");
        let want = format!("MAPPED {n}\n");
        assert!(
            wait_until(Duration::from_secs(30), || read(&ack) == want),
            "mp_writer never acknowledged SIGUSR2 #{n}: {:?}",
            read(&ack)
        );
        self.wait_ready(&format!("child{n}"));
    }

    fn assert_all_run(&self, when: &str) {
        for (role, pid) in &self.roles {
            assert_runs(*pid, &format!("{when} ({role})"));
        }
    }

    fn verdicts(&self) -> Vec<(String, String)> {
        for (_, pid) in &self.roles {
            signal(*pid, nix::sys::signal::Signal::SIGUSR1);
        }
        let result = |role: &str| read(&self.results.join(format!("{role}.result")));
        wait_until(Duration::from_secs(60), || {
            self.roles.iter().all(|(role, _)| is_verdict(&result(role)))
        });
        self.roles
            .iter()
            .map(|(role, _)| (role.clone(), result(role)))
            .collect()
    }

    fn wait_gone(&mut self) {
        let _ = self.original.wait();
        assert!(
            wait_until(Duration::from_secs(10), || self
                .roles
                .iter()
                .all(|&(_, p)| gone(p))),
            "dumped tree still there: {:?}",
            self.roles
        );
    }

    fn pids(&self) -> Vec<i32> {
        let mut v = descendants(self.root());
        v.sort_unstable();
        v
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for (_, pid) in self.roles.iter().rev() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.original.kill();
        let _ = self.original.wait();
        wait_until(Duration::from_secs(5), || {
            self.roles.iter().all(|&(_, p)| gone(p))
        });
    }
}

fn restore_and_check(d: &Path, dir: &str, tree: &Tree, before: &[i32]) {
    let log = format!("{dir}/restore.log");
    criu_ok(
        &["restore", "-D", dir, "-d", "-o", "restore.log", "-v4"],
        d,
        &[&log],
    );
    assert_eq!(tree.pids(), before, "pids after restore");
    tree.assert_all_run("after restore");
    let verdicts = tree.verdicts();
    let bad: Vec<_> = verdicts.iter().filter(|(_, v)| v != "PASS\n").collect();
    assert!(
        bad.is_empty(),
        "memory after restore: {bad:?}\n{}",
        log_tail(&d.join(&log))
    );
}

#[test]
fn a_dump_sent_to_a_page_server_restores_from_its_dir() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["img", "ps"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let mut tree = Tree::start(d, 64);
    tree.grow(1);
    let before = tree.pids();
    assert_eq!(before.len(), 2, "parent and a child: {before:?}");
    let pid = tree.root().to_string();
    let port = free_port();
    let ps = start_page_server(d, "ps", port, None);
    let port_s = port.to_string();
    criu_ok(
        &[
            "dump",
            "-t",
            &pid,
            "-D",
            "img",
            "-o",
            "dump.log",
            "-v4",
            "--page-server",
            "--address",
            "127.0.0.1",
            "--port",
            &port_s,
        ],
        d,
        &["img/dump.log", "ps/page-server.log"],
    );
    tree.wait_gone();
    page_server_done(d, "ps", ps);

    // Every page went to the page server: one pagemap per task there, none here.
    assert_eq!(
        images(&d.join("img"), "pagemap-"),
        vec![],
        "pagemaps in the dump's dir"
    );
    assert_eq!(
        images(&d.join("img"), "pages-"),
        vec![],
        "pages in the dump's dir"
    );
    let pagemaps = images(&d.join("ps"), "pagemap-");
    assert_eq!(
        pagemaps.len(),
        2,
        "the page server's pagemaps: {pagemaps:?}"
    );
    let sent = pages_bytes(&d.join("ps"));
    eprintln!("pages sent to the page server: {} KiB", sent / 1024);
    assert!(
        sent >= 64 * MIB,
        "{sent} bytes of pages, less than the 64 MiB area"
    );

    copy_images(&d.join("img"), &d.join("ps"));
    restore_and_check(d, "ps", &tree, &before);
}

#[test]
fn pre_dumps_through_a_page_server_then_a_dump_restore_exactly() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["img/1", "img/2", "img/final", "ps/1", "ps/2", "ps/final"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let mut tree = Tree::start(d, 128);
    let pid = tree.root().to_string();
    let mut sent = Vec::new();
    let mut before = Vec::new();
    for round in ["1", "2", "final"] {
        if round == "2" {
            tree.grow(1);
        }
        if round == "final" {
            before = tree.pids();
            assert_eq!(before.len(), 2, "parent and a child: {before:?}");
        }
        let prev = match round {
            "1" => None,
            "2" => Some("../1"),
            _ => Some("../2"),
        };
        let port = free_port();
        let ps_dir = format!("ps/{round}");
        let ps = start_page_server(d, &ps_dir, port, prev);
        let images_dir = format!("img/{round}");
        let port_s = port.to_string();
        let action = if round == "final" { "dump" } else { "pre-dump" };
        let mut args = vec![
            action,
            "-t",
            &pid,
            "-D",
            &images_dir,
            "-o",
            "dump.log",
            "-v4",
            "--page-server",
            "--address",
            "127.0.0.1",
            "--port",
            &port_s,
        ];
        if let Some(p) = prev {
            args.extend(["--prev-images-dir", p, "--track-mem"]);
        }
        let dump_log = format!("{images_dir}/dump.log");
        let ps_log = format!("{ps_dir}/page-server.log");
        criu_ok(&args, d, &[&dump_log, &ps_log]);
        if round != "final" {
            tree.assert_all_run(&format!("after pre-dump {round}"));
        }
        page_server_done(d, &ps_dir, ps);
        assert_eq!(
            pages_bytes(&d.join(&images_dir)),
            0,
            "pages in {images_dir}"
        );
        if let Some(p) = prev {
            assert_eq!(
                std::fs::read_link(d.join(&ps_dir).join("parent")).ok(),
                Some(PathBuf::from(p)),
                "the page server's parent link in {ps_dir}"
            );
        }
        sent.push(pages_bytes(&d.join(&ps_dir)));
    }
    tree.wait_gone();
    eprintln!(
        "pages sent: round 1 {} KiB, round 2 {} KiB, final dump {} KiB",
        sent[0] / 1024,
        sent[1] / 1024,
        sent[2] / 1024
    );
    assert!(sent[0] >= 128 * MIB, "round 1 sent {} bytes", sent[0]);
    assert!(
        sent[2] < 64 * MIB,
        "the final dump sent {} bytes: it should send only what changed since round 2",
        sent[2]
    );
    copy_images(&d.join("img/final"), &d.join("ps/final"));
    restore_and_check(d, "ps/final", &tree, &before);
}

#[test]
fn a_dump_whose_page_server_does_not_listen_fails_and_the_tree_runs_on() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("img")).unwrap();
    let tree = Tree::start(d, 16);
    let pid = tree.root().to_string();
    let port = free_port().to_string();
    let out = criu(
        &[
            "dump",
            "-t",
            &pid,
            "-D",
            "img",
            "-o",
            "dump.log",
            "--page-server",
            "--address",
            "127.0.0.1",
            "--port",
            &port,
        ],
        d,
    );
    let log = read(&d.join("img/dump.log"));
    assert_eq!(out.status.code(), Some(1), "{out:?}\n{log}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let addr = format!("127.0.0.1:{port}");
    assert!(
        stderr.contains(&addr) && stderr.contains("cannot connect"),
        "the error does not name the page server: {stderr}"
    );
    assert!(log.contains(&addr), "log: {log}");
    tree.assert_all_run("after the failed dump");
    assert_eq!(
        tree.verdicts(),
        vec![("parent".to_string(), "PASS\n".to_string())],
        "memory after the failed dump"
    );
}
