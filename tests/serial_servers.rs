//! Real server programs from Debian (redis-server, memcached, nginx) through `criu dump
//! --tcp-established` and `criu restore`, with a client (this test) connected over TCP the
//! whole time: after the restore the same connection gets the same answers, and new
//! connections are accepted. Runs in the nextest `serial` group; CI installs the servers.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{descendants, require_root, wait_until};
use state_task::criu;

/// A free loopback port (the kernel's pick, released again).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A server started in a session of its own (a dump root leads its session); killed, with
/// whatever it became after a restore, when dropped.
struct Server {
    child: Option<Child>,
    pid: i32,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(program: &str, args: &[String], port: u16, dir: tempfile::TempDir) -> Server {
        let path = ["/usr/bin", "/usr/sbin"]
            .iter()
            .map(|d| Path::new(d).join(program))
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("{program} is not installed (apt-get install it; .ci/run does)")
            });
        std::fs::create_dir(dir.path().join("images")).unwrap();
        let child = Command::new("setsid")
            .arg(path)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let server = Server {
            pid: child.id() as i32,
            child: Some(child),
            port,
            dir,
        };
        assert!(
            wait_until(Duration::from_secs(20), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "{program} never listened on {port}"
        );
        server
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("images").join(name)).unwrap_or_default()
    }

    /// Dumps (the server dies), then restores it detached.
    fn dump_and_restore(&mut self) {
        let pid = self.pid.to_string();
        let dir = self.dir.path();
        let tree = descendants(self.pid);
        let args = [
            "dump",
            "-t",
            &pid,
            "-D",
            "images",
            "-o",
            "dump.log",
            "-v4",
            "--tcp-established",
        ];
        let out = criu(&args, dir);
        assert_eq!(
            out.status.code(),
            Some(0),
            "dump: {out:?}\n{}",
            self.log("dump.log")
        );
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        // Dumped children (nginx's worker) are reaped by init: their pids must be free.
        assert!(wait_until(Duration::from_secs(10), || tree
            .iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())));
        let args = [
            "restore",
            "-D",
            "images",
            "-o",
            "restore.log",
            "-v4",
            "-d",
            "--tcp-established",
        ];
        let out = criu(&args, dir);
        assert_eq!(
            out.status.code(),
            Some(0),
            "restore: {out:?}\n{}",
            self.log("restore.log")
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.pid);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// Sends a redis command in its inline form and reads one reply line.
fn redis(s: &mut BufReader<TcpStream>, cmd: &str) -> String {
    s.get_mut()
        .write_all(format!("{cmd}\r\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    s.read_line(&mut line).unwrap();
    if line.starts_with('$') && line != "$-1\r\n" {
        let mut value = String::new();
        s.read_line(&mut value).unwrap();
        return value.trim_end().to_string();
    }
    line.trim_end().to_string()
}

#[test]
fn redis_keeps_its_data_and_its_client_connection() {
    require_root();
    let port = free_port();
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut server = Server::start("redis-server", &args, port, tempfile::tempdir().unwrap());
    let mut client = BufReader::new(server.connect());
    assert_eq!(redis(&mut client, "SET greeting hello"), "+OK");
    assert_eq!(redis(&mut client, "RPUSH list a b c"), ":3");
    server.dump_and_restore();
    assert_eq!(
        redis(&mut client, "GET greeting"),
        "hello",
        "{}",
        server.log("restore.log")
    );
    assert_eq!(redis(&mut client, "LLEN list"), ":3");
    assert_eq!(redis(&mut client, "SET greeting again"), "+OK");
    let mut second = BufReader::new(server.connect());
    assert_eq!(redis(&mut second, "GET greeting"), "again");
}

#[test]
fn memcached_keeps_its_items_and_its_client_connection() {
    require_root();
    let port = free_port();
    let args: Vec<String> = [
        "-u",
        "root",
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "0",
        "-t",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut server = Server::start("memcached", &args, port, tempfile::tempdir().unwrap());
    let mut client = BufReader::new(server.connect());
    let mut line = String::new();
    client
        .get_mut()
        .write_all(b"set k 0 0 5\r\nvalue\r\n")
        .unwrap();
    client.read_line(&mut line).unwrap();
    assert_eq!(line, "STORED\r\n");
    server.dump_and_restore();
    client.get_mut().write_all(b"get k\r\n").unwrap();
    let mut reply = String::new();
    for _ in 0..3 {
        client.read_line(&mut reply).unwrap();
    }
    assert_eq!(
        reply,
        "VALUE k 0 5\r\nvalue\r\nEND\r\n",
        "{}",
        server.log("restore.log")
    );
    let mut second = BufReader::new(server.connect());
    second.get_mut().write_all(b"get k\r\n").unwrap();
    let mut first_line = String::new();
    second.read_line(&mut first_line).unwrap();
    assert_eq!(first_line, "VALUE k 0 5\r\n");
}

/// How many IPv4 TCP sockets listen on `port`.
fn listeners(port: u16) -> usize {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    tcp.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A")
        .count()
}

/// One HTTP/1.1 request on a kept-alive connection; the body of the answer.
fn http_get(s: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // Headers, then Content-Length bytes.
    while !buf.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("Content-Length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    String::from_utf8_lossy(&body).to_string()
}

#[test]
fn nginx_master_and_worker_keep_serving_a_kept_alive_connection() {
    require_root();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = format!(
        "daemon off; master_process on; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{ access_log off; keepalive_timeout 300s; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"hello from nginx\"; }} }} }}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let args = vec![
        "-p".to_string(),
        format!("{d}"),
        "-c".to_string(),
        format!("{d}/nginx.conf"),
    ];
    let mut server = Server::start("nginx", &args, port, dir);
    let mut client = server.connect();
    assert_eq!(http_get(&mut client, "/"), "hello from nginx");
    server.dump_and_restore();
    // One listening socket, shared by the master and the worker as before (with one of its
    // own each, a new connection could wait forever in the master's).
    assert_eq!(listeners(port), 1);
    assert_eq!(
        http_get(&mut client, "/again"),
        "hello from nginx",
        "{}",
        server.log("restore.log")
    );
    let mut second = server.connect();
    assert_eq!(http_get(&mut second, "/"), "hello from nginx");
}
