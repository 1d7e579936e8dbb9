//! `--shell-job` and `--restore-sibling` with real processes. A shell job is a job started by
//! a tiny shell (tests/workloads/src/bin/sj_shell.rs) that leads a session on a pty this test
//! opened; the job (sj_job) has the pty on fds 0-2 and answers "ping" on it. It is dumped with
//! -j from outside the session, then restored with -j by criu started from the same shell, in
//! a process group of its own: the restored job must have the pty on fds 0-2, criu's session
//! and group, the dumped termios and window size, and still answer on the pty.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criu_proto::images::*;
use criu_proto::{ImageKind, ImageReader};
use criu_sys::tty::{get_termios, get_winsize, set_termios, set_winsize, Winsize};
use harness::{bin, require_root, wait_until};
use state_task::StateTask;

fn criu(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run criu")
}

fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn alive(pid: i32) -> bool {
    // A zombie has no fds left; count it as gone.
    Path::new(&format!("/proc/{pid}/fd/0")).exists()
}

/// (ppid, pgrp, session) from /proc/PID/stat.
fn stat_ids(pid: i32) -> (i32, i32, i32) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<i32> = text
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|w| w.parse().unwrap())
        .collect();
    (f[0], f[1], f[2])
}

fn read_words(path: &Path) -> Vec<i32> {
    assert!(
        wait_until(Duration::from_secs(10), || path.exists()),
        "{} never appeared",
        path.display()
    );
    std::fs::read_to_string(path)
        .unwrap()
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect()
}

/// Every entry of an image, decoded as `$t`.
macro_rules! read_all {
    ($dir:expr, $kind:expr, $id:expr, $t:ty) => {{
        let (kind, id): (&ImageKind, Option<u64>) = ($kind, $id);
        ImageReader::open($dir, kind, id)
            .unwrap_or_else(|e| panic!("open {}: {e}", kind.file_name(id)))
            .read_all::<$t>()
            .unwrap_or_else(|e| panic!("read {}: {e}", kind.file_name(id)))
    }};
}

/// CRIU's own crit reads every image, terminals included (Debian's `criu` package; .ci/run
/// installs it).
fn upstream_crit_decodes(images: &Path) {
    let crit = Path::new("/usr/bin/crit");
    assert!(
        crit.exists(),
        "/usr/bin/crit is not installed (apt-get install criu): images cannot be checked"
    );
    for e in std::fs::read_dir(images).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "img")
            || path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pages-"))
        {
            continue;
        }
        let out = Command::new(crit)
            .args(["decode", "-i"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "crit decode {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        if path.ends_with("tty-info.img") {
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("\"PTY\""),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// A pty whose master this test holds, with everything written to it collected.
struct Pty {
    master: OwnedFd,
    /// Kept open so that the master never reads EIO while no process has the slave.
    slave: OwnedFd,
    path: String,
    output: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Pty {
    fn open() -> Pty {
        // Close-on-exec from the start: no process this test (or a test beside it) starts
        // may inherit the pty.
        use nix::fcntl::OFlag;
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .expect("posix_openpt");
        nix::pty::grantpt(&master).expect("grantpt");
        nix::pty::unlockpt(&master).expect("unlockpt");
        let path = nix::pty::ptsname_r(&master).expect("ptsname");
        let slave: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&path)
            .expect("open the pty slave")
            .into();
        set_winsize(
            slave.as_fd(),
            &Winsize {
                ws_row: 24,
                ws_col: 80,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .unwrap();
        let master: OwnedFd = master.into();
        let output = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = master.try_clone().unwrap();
        let (out, halt) = (output.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !halt.load(Ordering::SeqCst) {
                match nix::unistd::read(&reader, &mut buf) {
                    Ok(n) if n > 0 => out.lock().unwrap().extend_from_slice(&buf[..n]),
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Pty {
            master,
            slave,
            path,
            output,
            stop,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Types a line on the terminal.
    fn type_line(&self, line: &str) {
        let mut f = std::fs::File::from(self.master.try_clone().unwrap());
        f.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Types "ping" and waits for `expected` on the terminal.
    fn ping(&self, expected: &str) {
        self.type_line("ping");
        assert!(
            wait_until(Duration::from_secs(10), || self.text().contains(expected)),
            "no {expected:?} on the terminal; it shows {:?}",
            self.text()
        );
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// sj_shell on a pty, driven through its control dir; killed with its job when dropped.
struct Shell {
    child: Child,
    ctl: PathBuf,
    next: usize,
    /// Processes to kill at the end (jobs, restored or not).
    others: Vec<i32>,
}

impl Shell {
    fn start(pty: &Pty, ctl: &Path) -> (Shell, i32) {
        std::fs::create_dir_all(ctl).unwrap();
        let child = Command::new(bin("sj_shell"))
            .arg(&pty.path)
            .arg(ctl)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sj_shell");
        let shell = Shell {
            child,
            ctl: ctl.to_path_buf(),
            next: 0,
            others: Vec::new(),
        };
        let ids = read_words(&ctl.join("shell"));
        assert_eq!(
            (ids[0], ids[1], ids[2]),
            (shell.child.id() as i32, ids[0], ids[0]),
            "sj_shell must lead its session and group"
        );
        (shell, ids[0])
    }

    /// Runs `argv` as asked ("bg" or "fg-group"); returns its pid.
    fn run(&mut self, how: &str, argv: &[&str]) -> (usize, i32) {
        let n = self.next;
        self.next += 1;
        let tmp = self.ctl.join(format!("cmd.{n}.tmp"));
        std::fs::write(&tmp, format!("{how}\n{}\n", argv.join("\n"))).unwrap();
        std::fs::rename(&tmp, self.ctl.join(format!("cmd.{n}"))).unwrap();
        let pid = read_words(&self.ctl.join(format!("pid.{n}")))[0];
        self.others.push(pid);
        (n, pid)
    }

    /// Exit code of waited command `n`.
    fn rc(&self, n: usize) -> i32 {
        read_words(&self.ctl.join(format!("rc.{n}")))[0]
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        for &p in &self.others {
            kill(p);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn shell_job_is_dumped_and_restored_onto_criu_terminal() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let pty = Pty::open();
    let (mut shell, sid) = Shell::start(&pty, &dir.path().join("ctl"));
    let ready = dir.path().join("ready");
    let (_, job) = shell.run(
        "bg",
        &[bin("sj_job").to_str().unwrap(), ready.to_str().unwrap()],
    );
    // A job of a non-interactive shell: in the shell's session and group, leading neither.
    assert_eq!(read_words(&ready), vec![job, sid, sid]);
    pty.ping(&format!("pong {job} {sid} {sid} {}", pty.path));

    // The terminal as the job leaves it: echo off, 33x101.
    let mut t = get_termios(pty.slave.as_fd()).unwrap();
    t.c_lflag &= !libc::ECHO;
    set_termios(pty.slave.as_fd(), &t).unwrap();
    let dumped_ws = Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    set_winsize(pty.slave.as_fd(), &dumped_ws).unwrap();

    // Without -j the dump refuses (the job does not lead its session, as CRIU says), and the
    // job runs on untouched.
    let out = criu(
        &[
            "dump",
            "-t",
            &job.to_string(),
            "-D",
            "images",
            "-o",
            "dump.log",
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("--shell-job") && stderr.contains("not a session leader"),
        "{stderr}"
    );
    assert!(!images.join("inventory.img").exists());
    assert_eq!(harness::tracer(job, job), 0);
    pty.ping(&format!("pong {job} {sid} {sid}"));

    let out = criu(
        &[
            "dump",
            "-j",
            "-t",
            &job.to_string(),
            "-D",
            "images",
            "-o",
            "dump.log",
            "-v4",
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "dump -j failed: {out:?}\n{}",
        std::fs::read_to_string(images.join("dump.log")).unwrap_or_default()
    );
    assert!(
        wait_until(Duration::from_secs(10), || !alive(job)),
        "the dump left the job alive"
    );

    // The images say what CRIU's would.
    let pstree = read_all!(&images, &ImageKind::PSTREE, None, PstreeEntry);
    assert_eq!(
        (pstree[0].pid, pstree[0].sid, pstree[0].pgid),
        (job as u32, sid as u32, sid as u32)
    );
    let files = read_all!(&images, &ImageKind::FILES, None, FileEntry);
    let ttys: Vec<&TtyFileEntry> = files.iter().filter_map(|f| f.tty.as_ref()).collect();
    assert_eq!(ttys.len(), 1, "fds 0-2 share one description: {files:?}");
    let tty = ttys[0];
    let reg = files
        .iter()
        .find(|f| Some(f.id) == tty.regf_id)
        .and_then(|f| f.reg.as_ref())
        .expect("the tty's regular-file entry");
    assert_eq!(reg.name, pty.path);
    let index: u32 = pty.path.rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(tty.tty_info_id, index << 1);
    let infos = read_all!(&images, &ImageKind::TTY_INFO, None, TtyInfoEntry);
    assert_eq!(infos.len(), 1);
    let info = &infos[0];
    assert_eq!(
        (info.id, info.r#type, info.pty.map(|p| p.index)),
        (index << 1, TtyType::Pty as i32, Some(index))
    );
    assert_eq!(
        (info.sid, info.pgrp),
        (sid as u32, sid as u32),
        "the job's terminal served the shell's session"
    );
    assert_eq!(
        info.winsize.as_ref().map(|w| (w.ws_row, w.ws_col)),
        Some((33, 101))
    );
    assert_eq!(info.termios.as_ref().unwrap().c_lflag & libc::ECHO, 0);
    let ids = read_all!(&images, &ImageKind::IDS, Some(job as u64), TaskKobjIdsEntry);
    let fdinfo = read_all!(
        &images,
        &ImageKind::FDINFO,
        Some(u64::from(ids[0].files_id)),
        FdinfoEntry
    );
    let std_fds: Vec<(u32, i32, u32)> = fdinfo
        .iter()
        .filter(|e| e.fd < 3)
        .map(|e| (e.fd, e.r#type, e.id))
        .collect();
    let tty_type = FdTypes::Tty as i32;
    assert_eq!(
        std_fds,
        vec![
            (0, tty_type, tty.id),
            (1, tty_type, tty.id),
            (2, tty_type, tty.id)
        ]
    );

    upstream_crit_decodes(&images);

    // Someone uses the terminal meanwhile.
    let mut t = get_termios(pty.slave.as_fd()).unwrap();
    t.c_lflag |= libc::ECHO;
    set_termios(pty.slave.as_fd(), &t).unwrap();
    set_winsize(
        pty.slave.as_fd(),
        &Winsize {
            ws_row: 10,
            ws_col: 20,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();

    // Without -j (and without a terminal) restore refuses before making any process.
    let out = criu(
        &["restore", "-D", "images", "-o", "restore-nj.log", "-d"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--shell-job"),
        "{out:?}"
    );
    assert!(!alive(job));

    // criu restore -j, run by the shell on the terminal, in a process group of its own.
    let pidfile = dir.path().join("restored.pid");
    let criu_bin = env!("CARGO_BIN_EXE_criu");
    let images_arg = images.to_str().unwrap();
    let argv = [
        criu_bin,
        "restore",
        "--no-default-config",
        "-j",
        "-d",
        "-D",
        images_arg,
        "-o",
        "restore.log",
        "-v4",
        "--pidfile",
        pidfile.to_str().unwrap(),
    ];
    let (n, criu_pid) = shell.run("fg-group", &argv);
    assert_eq!(
        shell.rc(n),
        0,
        "restore -j failed: {}\nterminal: {}",
        std::fs::read_to_string(images.join("restore.log")).unwrap_or_default(),
        pty.text()
    );
    shell.others.push(job);
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        job.to_string()
    );

    let (_, pgrp, session) = stat_ids(job);
    assert_eq!(
        (session, pgrp),
        (sid, criu_pid),
        "the restored job is in criu's session and group"
    );
    for fd in 0..3 {
        assert_eq!(
            harness::fd_target(job, fd).unwrap().display().to_string(),
            pty.path,
            "fd {fd}"
        );
    }
    assert_eq!(
        nix::unistd::tcgetpgrp(pty.master.as_fd()).unwrap().as_raw(),
        criu_pid,
        "the job's group is the terminal's foreground"
    );
    assert_eq!(get_winsize(pty.slave.as_fd()).unwrap(), dumped_ws);
    assert_eq!(
        get_termios(pty.slave.as_fd()).unwrap().c_lflag & libc::ECHO,
        0
    );
    pty.ping(&format!("pong {job} {sid} {criu_pid} {}", pty.path));
}

#[test]
fn restore_sibling_makes_the_root_a_child_of_criu_parent() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let mut task = StateTask::start(dir.path());
    let pid = task.pid;
    let out = criu(
        &[
            "dump",
            "-t",
            &pid.to_string(),
            "-D",
            "images",
            "-o",
            "dump.log",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    task.reap();

    // As in CRIU, -S needs -d.
    let out = criu(
        &["restore", "-S", "-D", "images", "-o", "restore.log"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--restore-detached"),
        "{out:?}"
    );
    assert!(!alive(pid));

    let out = criu(
        &[
            "restore",
            "-S",
            "-d",
            "-D",
            "images",
            "-o",
            "restore.log",
            "-v4",
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{out:?}\n{}",
        std::fs::read_to_string(dir.path().join("images/restore.log")).unwrap_or_default()
    );
    let me = std::process::id() as i32;
    assert_eq!(
        stat_ids(pid).0,
        me,
        "the restored root's parent is criu's parent"
    );
    assert_eq!(task.verdict(), "PASS\n");
    // It is this process's child: it can be waited for (it exits after its verdict).
    kill(pid);
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
        .expect("wait for the restored root");
    assert_eq!(status.pid().map(|p| p.as_raw()), Some(pid), "{status:?}");
}
