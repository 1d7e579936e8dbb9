//! A tiny shell for shell-job tests: `sj_shell PTS CTL_DIR`.
//!
//! It starts a session whose controlling terminal and stdio are the pty slave PTS, writes
//! "PID SID PGID" to CTL_DIR/shell, then runs the commands the test drops into CTL_DIR as
//! `cmd.0`, `cmd.1`, ... one at a time. A command file holds one word a line: first how to
//! run it, then its argv. "bg": in the background, in the shell's own process group (as a
//! non-interactive shell runs `job &`); "fg-group": in a new process group of the session,
//! waited for. The started pid goes to CTL_DIR/pid.N, the exit code of a waited command to
//! CTL_DIR/rc.N. Background children are reaped as they exit. Runs until killed.

use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write control file");
    std::fs::rename(&tmp, path).expect("rename control file");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pts = args.get(1).expect("PTS");
    let ctl = Path::new(args.get(2).expect("CTL_DIR")).to_path_buf();

    nix::unistd::setsid().expect("setsid");
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pts)
        .expect("open the pty slave");
    // SAFETY: TIOCSCTTY takes an int argument; `tty` is an open terminal fd.
    let r = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 0) };
    assert_eq!(r, 0, "TIOCSCTTY: {}", std::io::Error::last_os_error());
    nix::unistd::dup2_stdin(&tty).expect("dup2 0");
    nix::unistd::dup2_stdout(&tty).expect("dup2 1");
    nix::unistd::dup2_stderr(&tty).expect("dup2 2");
    drop(tty);

    let me = nix::unistd::getpid();
    let sid = nix::unistd::getsid(None).expect("getsid");
    write_atomically(
        &ctl.join("shell"),
        &format!("{me} {sid} {}", nix::unistd::getpgrp()),
    );

    let mut background: Vec<Child> = Vec::new();
    for n in 0.. {
        let cmd_file = ctl.join(format!("cmd.{n}"));
        while !cmd_file.exists() {
            background.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
            std::thread::sleep(Duration::from_millis(5));
        }
        let text = std::fs::read_to_string(&cmd_file).expect("read command");
        let mut words = text.lines();
        let how = words.next().unwrap_or_default().to_string();
        let argv: Vec<&str> = words.collect();
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]);
        match how.as_str() {
            "bg" => {
                let child = cmd.spawn().expect("start background command");
                write_atomically(&ctl.join(format!("pid.{n}")), &child.id().to_string());
                background.push(child);
            }
            "fg-group" => {
                let mut child = cmd.process_group(0).spawn().expect("start command");
                write_atomically(&ctl.join(format!("pid.{n}")), &child.id().to_string());
                let status = child.wait().expect("wait for command");
                let code = status.code().unwrap_or(128 + status.signal().unwrap_or(0));
                write_atomically(&ctl.join(format!("rc.{n}")), &code.to_string());
            }
            other => panic!("unknown way to run a command: {other:?}"),
        }
    }
}
