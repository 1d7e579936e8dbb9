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
//!   touched, and the tree runs on intact;
//! - with `--tls` both ends show certificates of one CA (made here with `openssl`): the pages
//!   go over TLS and restore exactly; a server whose certificate names another host is
//!   refused unless `--tls-no-cn-verify`, and a dump whose certificate another CA signed is
//!   refused by the page server, the tree running on each time.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/mp_tree.rs"]
mod mp_tree;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{require_root, wait_until};
use mp_tree::{
    criu, criu_ok, gone, images, log_tail, pages_bytes, read, restore_and_check, Tree, MIB,
};

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
fn start_page_server(d: &Path, dir: &str, port: u16, extra: &[&str]) -> i32 {
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
    args.extend(extra);
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

/// `ACTION -t PID -D DIR -o dump.log` sending its pages to the page server on
/// 127.0.0.1:`port`.
fn page_server_dump<'a>(
    action: &'a str,
    pid: &'a str,
    dir: &'a str,
    port: &'a str,
) -> Vec<&'a str> {
    vec![
        action,
        "-t",
        pid,
        "-D",
        dir,
        "-o",
        "dump.log",
        "--page-server",
        "--address",
        "127.0.0.1",
        "--port",
        port,
    ]
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
    let ps = start_page_server(d, "ps", port, &[]);
    let port_s = port.to_string();
    let mut args = page_server_dump("dump", &pid, "img", &port_s);
    args.push("-v4");
    criu_ok(&args, d, &["img/dump.log", "ps/page-server.log"]);
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
        let prev_args: Vec<&str> = prev
            .map(|p| vec!["--prev-images-dir", p])
            .unwrap_or_default();
        let ps = start_page_server(d, &ps_dir, port, &prev_args);
        let images_dir = format!("img/{round}");
        let port_s = port.to_string();
        let action = if round == "final" { "dump" } else { "pre-dump" };
        let mut args = page_server_dump(action, &pid, &images_dir, &port_s);
        args.push("-v4");
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
    let out = criu(&page_server_dump("dump", &pid, "img", &port), d);
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

/// A CA, and certificates it signs (made with `openssl` in `d`); file names are `NAME.pem`
/// and `NAME.key`.
struct Pki<'a>(&'a Path);

impl Pki<'_> {
    fn openssl(&self, script: &str) {
        let out = std::process::Command::new("sh")
            .args(["-c", script])
            .current_dir(self.0)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str) {
        self.openssl(&format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout {name}.key -out {name}.pem -days 2 -subj /CN={name} \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        ));
    }

    /// A certificate for `name` (subjectAltName `san`) signed by `ca`.
    fn issue(&self, ca: &str, name: &str, san: &str) {
        self.openssl(&format!(
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout {name}.key -out {name}.csr -subj /CN={name} && \
             printf 'subjectAltName={san}\\nextendedKeyUsage=serverAuth,clientAuth\\n' \
             > {name}.ext && openssl x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key \
             -CAcreateserial -out {name}.pem -days 2 -extfile {name}.ext"
        ));
    }

    /// `--tls` with `ca`'s certificate and `name`'s.
    fn args(&self, ca: &str, name: &str) -> Vec<String> {
        let f = |n: &str, ext: &str| self.0.join(format!("{n}.{ext}")).display().to_string();
        vec![
            "--tls".into(),
            "--tls-cacert".into(),
            f(ca, "pem"),
            "--tls-cert".into(),
            f(name, "pem"),
            "--tls-key".into(),
            f(name, "key"),
        ]
    }
}

#[test]
fn pages_go_over_tls_between_certificates_of_one_ca() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki(d);
    pki.ca("ca");
    pki.issue("ca", "server", "IP:127.0.0.1");
    pki.issue("ca", "elsewhere", "DNS:elsewhere.example");
    pki.issue("ca", "dumper", "DNS:dumper.example");
    pki.ca("rogue");
    pki.issue("rogue", "intruder", "DNS:intruder.example");
    let mut tree = Tree::start(d, 16);
    tree.grow(1);
    let before = tree.pids();
    let pid = tree.root().to_string();
    let strs = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    // One refused session: the page server gets `server_cert`'s, the dump `dump_cert`'s.
    let refused = |n: usize, server_cert: &str, dump_cert: &str, extra: &[&str], why: &str| {
        let ps_dir = format!("refused{n}");
        std::fs::create_dir_all(d.join(&ps_dir)).unwrap();
        let port = free_port();
        let server = pki.args("ca", server_cert);
        let server: Vec<&str> = server.iter().map(String::as_str).collect();
        let ps = start_page_server(d, &ps_dir, port, &server);
        let port = port.to_string();
        let mut args = page_server_dump("dump", &pid, "img", &port);
        let dumper = pki.args("ca", dump_cert);
        args.extend(dumper.iter().map(String::as_str));
        args.extend(extra);
        let out = criu(&args, d);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", strs(&dumper));
        assert!(stderr.contains(why), "{stderr}");
        assert!(wait_until(Duration::from_secs(10), || gone(ps)));
        tree.assert_all_run("after a refused TLS session");
    };
    std::fs::create_dir_all(d.join("img")).unwrap();
    refused(
        1,
        "elsewhere",
        "dumper",
        &[],
        "certificate not valid for name",
    );
    refused(
        2,
        "server",
        "intruder",
        &[],
        "refused this criu's certificate",
    );
    // The right certificates (the name unchecked, as --tls-no-cn-verify asks): the dump goes.
    std::fs::create_dir_all(d.join("ps")).unwrap();
    let port = free_port();
    let server = pki.args("ca", "elsewhere");
    let server: Vec<&str> = server.iter().map(String::as_str).collect();
    let ps = start_page_server(d, "ps", port, &server);
    let port = port.to_string();
    let mut args = page_server_dump("dump", &pid, "img", &port);
    let dumper = pki.args("ca", "dumper");
    args.extend(dumper.iter().map(String::as_str));
    args.push("--tls-no-cn-verify");
    criu_ok(&args, d, &["img/dump.log", "ps/page-server.log"]);
    tree.wait_gone();
    page_server_done(d, "ps", ps);
    copy_images(&d.join("img"), &d.join("ps"));
    restore_and_check(d, "ps", &tree, &before);
}
