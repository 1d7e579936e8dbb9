//! File locks (`-l/--file-locks`) with real processes: a workload (lk_hold) holds an flock,
//! a POSIX lock, an OFD lock and a lease; it is dumped with -l and restored with -l. The
//! restored process must find its locks from inside, and this test, another process, must
//! be refused by each of them. Without -l the dump fails and the process runs on.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use criu_proto::images::FileLockEntry;
use criu_proto::{ImageKind, ImageReader};
use harness::require_root;
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

fn probe(ty: i32, start: i64, len: i64) -> libc::flock {
    libc::flock {
        l_type: ty as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: start,
        l_len: len,
        l_pid: 0,
    }
}

/// What this process (not the holder) runs into: (flock refused, POSIX owner, OFD lock
/// seen, lease holder in /proc/locks).
fn seen_from_outside(h: &StateTask) -> (bool, i32, bool, bool) {
    let f = std::fs::File::open(h.work.join("flock")).unwrap();
    let flock_refused = matches!(
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock),
        Err((_, nix::errno::Errno::EWOULDBLOCK))
    );

    let p = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(h.work.join("posix"))
        .unwrap();
    let mut fl = probe(libc::F_WRLCK, 15, 1);
    nix::fcntl::fcntl(&p, nix::fcntl::FcntlArg::F_GETLK(&mut fl)).unwrap();
    let posix_owner = if i32::from(fl.l_type) == libc::F_WRLCK && fl.l_start == 10 && fl.l_len == 20
    {
        fl.l_pid
    } else {
        -1
    };
    // Outside the range there is no conflict.
    let mut free = probe(libc::F_WRLCK, 40, 1);
    nix::fcntl::fcntl(&p, nix::fcntl::FcntlArg::F_GETLK(&mut free)).unwrap();
    assert_eq!(i32::from(free.l_type), libc::F_UNLCK);

    let o = std::fs::File::open(h.work.join("ofd")).unwrap();
    let mut fl = probe(libc::F_RDLCK, 0, 0);
    nix::fcntl::fcntl(&o, nix::fcntl::FcntlArg::F_OFD_GETLK(&mut fl)).unwrap();
    let ofd_seen = i32::from(fl.l_type) == libc::F_WRLCK && fl.l_len == 5;

    let lease_ino = std::fs::metadata(h.work.join("lease")).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    let lease_held = locks.lines().any(|l| {
        l.contains("LEASE")
            && l.contains("READ")
            && l.contains(&format!(" {} ", h.pid))
            && lease_ino
                .as_ref()
                .is_ok_and(|ino| l.contains(&format!(":{ino} ")))
    });
    (flock_refused, posix_owner, ofd_seen, lease_held)
}

#[test]
fn locks_are_held_again_after_restore() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let mut h = StateTask::start_workload("lk_hold", &[], dir.path());
    let before = seen_from_outside(&h);
    assert_eq!(before, (true, h.pid, true, true));

    let pid = h.pid.to_string();
    let out = criu(
        &[
            "dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4", "-l",
        ],
        dir.path(),
    );
    let log = std::fs::read_to_string(dir.path().join("images/dump.log")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "dump failed: {out:?}\n{log}");
    h.reap();

    let entries = ImageReader::open(&dir.path().join("images"), &ImageKind::FILE_LOCKS, None)
        .unwrap()
        .read_all::<FileLockEntry>()
        .unwrap();
    let mut got: Vec<(u32, u32, i32, i32, i64, i64)> = entries
        .iter()
        .map(|e| (e.flag, e.r#type, e.pid, e.fd, e.start, e.len))
        .collect();
    got.sort();
    let (rd, wr) = (libc::F_RDLCK as u32, libc::F_WRLCK as u32);
    assert_eq!(
        got,
        [
            (1, wr, h.pid, 4, 10, 20),
            (2, wr, h.pid, 3, 0, 0),
            (4, wr, h.pid, 5, 0, 5),
            (8, rd, h.pid, 6, 0, 0),
        ]
    );
    // The original is gone with its locks.
    assert_eq!(seen_from_outside(&h), (false, -1, false, false));

    let out = criu(
        &[
            "restore",
            "-D",
            "images",
            "-o",
            "restore.log",
            "-v4",
            "-d",
            "-l",
        ],
        dir.path(),
    );
    let log = std::fs::read_to_string(dir.path().join("images/restore.log")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "restore failed: {out:?}\n{log}");
    assert_eq!(seen_from_outside(&h), (true, h.pid, true, true));
    assert_eq!(h.verdict(), "PASS\n");
}

#[test]
fn a_dump_without_file_locks_fails_and_the_holder_runs_on() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let h = StateTask::start_workload("lk_hold", &[], dir.path());
    let pid = h.pid.to_string();
    let out = criu(
        &["dump", "-t", &pid, "-D", "images", "-o", "dump.log"],
        dir.path(),
    );
    let log = std::fs::read_to_string(dir.path().join("images/dump.log")).unwrap_or_default();
    assert_ne!(out.status.code(), Some(0), "dump succeeded: {log}");
    let said = format!("{}{log}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("--file-locks"), "{said}");
    assert!(!dir.path().join("images/filelocks.img").exists());
    assert_eq!(seen_from_outside(&h), (true, h.pid, true, true));
    assert_eq!(h.verdict(), "PASS\n");
}
