//! pty pairs held by the dumped tree itself (no --shell-job): a session leader (pt_pair)
//! holds a /dev/ptmx master and its slave, the slave being its controlling terminal, with
//! packet mode, ECHO off and a 42x111 window, and /dev/tty. After dump and restore it must
//! hold a pair of the same index with the same settings, still be its controlling terminal
//! and reach it through /dev/tty; this test,
//! another process, writes through the slave and the workload reads it from the master after
//! the bytes left queued at dump, then passes data both ways itself.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use criu_proto::images::{TtyDataEntry, TtyInfoEntry};
use criu_proto::{ImageKind, ImageReader};
use harness::{bin, require_root, wait_until};

fn criu(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run criu")
}

/// pt_pair, killed when dropped.
struct PairHolder {
    child: Option<Child>,
    pid: i32,
    result: PathBuf,
    index: u32,
}

impl PairHolder {
    fn start(dir: &Path) -> PairHolder {
        let result = dir.join("result");
        let child = Command::new(bin("pt_pair"))
            .arg(&result)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pt_pair");
        let pid = child.id() as i32;
        let mut h = PairHolder {
            child: Some(child),
            pid,
            result,
            index: 0,
        };
        assert!(
            wait_until(Duration::from_secs(10), || !h.result_text().is_empty()),
            "pt_pair never got ready"
        );
        let text = h.result_text();
        h.index = text
            .strip_prefix("READY ")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("pt_pair: {text}"));
        h
    }

    fn result_text(&self) -> String {
        std::fs::read_to_string(&self.result).unwrap_or_default()
    }

    fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    fn verdict(&self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        wait_until(Duration::from_secs(10), || {
            !self.result_text().starts_with("READY")
        });
        self.result_text()
    }

    /// fd 3 and 4 targets and the controlling terminal (tty_nr of /proc/PID/stat).
    fn terminal_view(&self) -> (PathBuf, PathBuf, u64) {
        let link = |fd| std::fs::read_link(format!("/proc/{}/fd/{fd}", self.pid)).unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        let tty_nr = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(4)
            .unwrap();
        (link(3), link(4), tty_nr.parse().unwrap())
    }
}

impl Drop for PairHolder {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        self.reap();
    }
}

#[test]
fn a_pty_pair_comes_back_with_its_index_settings_and_session() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let mut h = PairHolder::start(dir.path());
    let before = h.terminal_view();
    let slave_path = PathBuf::from(format!("/dev/pts/{}", h.index));
    assert_eq!(before.1, slave_path);
    assert_ne!(before.2, 0, "pt_pair has no controlling terminal");

    let pid = h.pid.to_string();
    let out = criu(
        &["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"],
        dir.path(),
    );
    let log = std::fs::read_to_string(images.join("dump.log")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "dump failed: {out:?}\n{log}");
    h.reap();

    let infos = ImageReader::open(&images, &ImageKind::TTY_INFO, None)
        .unwrap()
        .read_all::<TtyInfoEntry>()
        .unwrap();
    let ids: Vec<u32> = infos.iter().map(|i| i.id).collect();
    // The slave, the master, and /dev/tty (CRIU's id for it is 1006 << 1).
    assert_eq!(ids, [h.index << 1, (h.index << 1) | 1, 2012]);
    let master = &infos[1];
    assert!(master.packet_mode);
    assert_eq!((master.sid, master.pgrp), (h.pid as u32, h.pid as u32));
    assert_eq!(
        master.winsize.as_ref().map(|w| (w.ws_row, w.ws_col)),
        Some((42, 111))
    );
    // The bytes queued in the pair, by the end they were read from.
    let data = ImageReader::open(&images, &ImageKind::TTY_DATA, None)
        .unwrap()
        .read_all::<TtyDataEntry>()
        .unwrap();
    let mut data: Vec<&[u8]> = data.iter().map(|d| d.data.as_slice()).collect();
    data.sort();
    assert_eq!(data, [&b"early\n"[..], &b"late"[..]]);

    let out = criu(
        &["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"],
        dir.path(),
    );
    let log = std::fs::read_to_string(images.join("restore.log")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "restore failed: {out:?}\n{log}");
    assert_eq!(h.terminal_view(), before);

    // Another process sees the pair's settings and talks through the slave.
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&slave_path)
        .unwrap();
    let w = criu_sys::tty::get_winsize(slave.as_fd()).unwrap();
    assert_eq!((w.ws_row, w.ws_col), (42, 111));
    let t = criu_sys::tty::get_termios(slave.as_fd()).unwrap();
    assert_eq!(t.c_lflag & libc::ECHO, 0);
    assert_ne!(t.c_lflag & libc::ICANON, 0);
    std::io::Write::write_all(&mut &slave, b"outside").unwrap();
    drop(slave);
    assert_eq!(h.verdict(), "PASS\n");
}
