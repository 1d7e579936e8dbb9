//! A self-checking process for the special-file restore tests: `rf_special MODE RESULT
//! WORKDIR`. It sets up the files of MODE in WORKDIR, writes "READY" to RESULT and waits for
//! SIGUSR1; then it checks them from inside and writes "PASS" or "FAIL: reason".
//!
//! Modes:
//! - `symlink`: two symlinks held themselves (O_PATH|O_NOFOLLOW), one of them unlinked.
//! - `deadproc`: cwd and an fd in /proc/PID of a child that is gone (zdtm unhashed_proc).
//! - `console`: a console (5:1) and a virtual terminal (4:5) opened through device nodes made
//!   in WORKDIR, as zdtm's console and vt tests do.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use criu_test_workloads::verdict::{catch_usr1, ensure, fail, ready_then_wait, Check};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).expect("MODE").clone();
    let result = args.get(2).expect("RESULT").clone();
    let work = args.get(3).expect("WORKDIR").clone();
    // A clean fd table (the test harness's fds are not ours) and a session of our own.
    // SAFETY: close_range takes only integers.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let _ = nix::unistd::setsid();
    catch_usr1();
    let verdict = match mode.as_str() {
        "symlink" => {
            let fds = setup_symlinks(&work);
            ready_then_wait(&result);
            check_symlinks(&fds)
        }
        "deadproc" => {
            let (dir, cwd) = setup_dead_proc();
            ready_then_wait(&result);
            check_dead_proc(&dir, &cwd)
        }
        "console" => {
            let fds = setup_device_nodes(&work);
            ready_then_wait(&result);
            check_device_nodes(&fds)
        }
        other => Err(format!("unknown mode {other}")),
    };
    match verdict {
        Ok(()) => std::fs::write(&result, "PASS\n").expect("write PASS"),
        Err(why) => fail(&result, why),
    }
}

/// A POSIX message queue of this process's own name, unlinked at once (the fd keeps it).
/// Enters /proc/PID of a child and holds it open, then lets the child die: (the fd, the cwd
/// link text).
fn setup_dead_proc() -> (File, String) {
    // SAFETY: this process has one thread; the child only waits to be killed.
    let child = unsafe { libc::fork() };
    if child == 0 {
        loop {
            // SAFETY: waiting for a signal.
            unsafe { libc::pause() };
        }
    }
    let dir = File::open(format!("/proc/{child}")).expect("open /proc/CHILD");
    std::env::set_current_dir(format!("/proc/{child}")).expect("chdir /proc/CHILD");
    // SAFETY: ending and reaping our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    let cwd = std::fs::read_link("/proc/self/cwd").unwrap_or_default();
    (dir, cwd.display().to_string())
}

fn check_dead_proc(dir: &File, cwd: &str) -> Check {
    ensure(std::env::current_dir().is_err(), || {
        "getcwd works in a dead /proc dir".into()
    })?;
    let now = std::fs::read_link("/proc/self/cwd").unwrap_or_default();
    ensure(now.display().to_string() == cwd, || {
        format!("cwd is {now:?}, not {cwd}")
    })?;
    let status = nix::fcntl::openat(
        dir,
        "status",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    );
    ensure(status.is_err(), || "a dead process's status opens".into())?;
    Ok(())
}

/// (fd, device number) of a console and a virtual terminal opened through nodes in `work`.
fn setup_device_nodes(work: &str) -> Vec<(File, u64)> {
    [
        ("console", libc::makedev(5, 1)),
        ("vt", libc::makedev(4, 5)),
    ]
    .into_iter()
    .map(|(name, dev)| {
        let path = format!("{work}/{name}");
        nix::sys::stat::mknod(
            path.as_str(),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            dev,
        )
        .expect("mknod (needs root)");
        (File::open(&path).expect("open the device node"), dev)
    })
    .collect()
}

fn check_device_nodes(fds: &[(File, u64)]) -> Check {
    for (f, dev) in fds {
        let st = f.metadata().map_err(|e| format!("fstat: {e}"))?;
        ensure(st.rdev() == *dev, || {
            format!(
                "fd {} is device {:#x}, not {dev:#x}",
                f.as_raw_fd(),
                st.rdev()
            )
        })?;
    }
    Ok(())
}

/// (fd, what the link points at) of each symlink held.
fn setup_symlinks(work: &str) -> Vec<(File, &'static str)> {
    let mut out = Vec::new();
    for (name, target, unlink) in [("kept", "target-a", false), ("gone", "../target-b", true)] {
        let path = format!("{work}/{name}");
        std::os::unix::fs::symlink(target, &path).unwrap();
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
            .open(&path)
            .unwrap();
        if unlink {
            std::fs::remove_file(&path).unwrap();
        }
        out.push((f, target));
    }
    out
}

fn check_symlinks(fds: &[(File, &'static str)]) -> Check {
    for (f, target) in fds {
        let st = f.metadata().map_err(|e| format!("fstat: {e}"))?;
        ensure(st.file_type().is_symlink(), || {
            format!("fd {} is no longer a symlink", f.as_raw_fd())
        })?;
        let got = nix::fcntl::readlinkat(f, "").map_err(|e| format!("readlinkat: {e}"))?;
        ensure(got == *target, || {
            format!("symlink points at {got:?}, not {target}")
        })?;
    }
    Ok(())
}
