//! A container's stdio socket, for `--inherit-fd fd[N]:socket:[INO]`: `fo_stdio RESULT_FILE`.
//! Its stdin and stdout are one unix stream socket whose other end the test holds (as a
//! runtime would); fds 3 and 4 are a unix stream pair of its own. It writes "READY" to
//! RESULT_FILE and waits for SIGUSR1; then it reads a line from stdin and writes "echo: LINE"
//! to stdout, reads a line from fd 3 (restored from a socket the test gives criu) and checks
//! that fd 4, whose other end was fd 3, sees its peer closed. It writes "PASS" or "FAIL: why".

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::FromRawFd;

fn checks() -> Result<(), String> {
    // SAFETY: fds 0, 1, 3 and 4 are ours and used by nothing else from here on.
    let (stdin, mut stdout, c, mut d) = unsafe {
        (
            std::fs::File::from_raw_fd(0),
            std::fs::File::from_raw_fd(1),
            std::fs::File::from_raw_fd(3),
            std::fs::File::from_raw_fd(4),
        )
    };
    let mut line = String::new();
    BufReader::new(stdin)
        .read_line(&mut line)
        .map_err(|e| format!("read stdin: {e}"))?;
    stdout
        .write_all(format!("echo: {}\n", line.trim_end()).as_bytes())
        .map_err(|e| format!("write stdout: {e}"))?;
    let mut got = String::new();
    BufReader::new(c)
        .read_line(&mut got)
        .map_err(|e| format!("read fd 3: {e}"))?;
    if got != "to fd 3\n" {
        return Err(format!("fd 3 got {got:?}"));
    }
    let mut buf = [0u8; 8];
    match d.read(&mut buf) {
        Ok(0) => Ok(()),
        other => Err(format!("fd 4: its peer should be closed: {other:?}")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let mut fds = [0; 2];
    // SAFETY: plain syscalls on our own process; `fds` outlives the call.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    if fds != [3, 4] {
        std::fs::write(&result, format!("FAIL: setup: pair is {fds:?}\n")).unwrap();
        return;
    }
    std::fs::write(&result, "READY\n").unwrap();
    // SAFETY: sigwait on a zeroed, filled set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        let mut sig = 0;
        while libc::sigwait(&set, &mut sig) != 0 || sig != libc::SIGUSR1 {}
    }
    let text = match checks() {
        Ok(()) => "PASS\n".to_string(),
        Err(why) => format!("FAIL: {why}\n"),
    };
    std::fs::write(&result, text).unwrap();
}
