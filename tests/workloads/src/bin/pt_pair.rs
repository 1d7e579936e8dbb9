//! A session leader holding a pty pair of its own, for the pty tests: `pt_pair RESULT_FILE`.
//!
//! fd 3 is the master (packet mode on), fd 4 the slave, which is also its controlling
//! terminal with its own group in the foreground, fd 5 /dev/tty; ECHO is off and the window
//! is 42x111. It
//! leaves "early\n" queued for the slave and "late" for the master, writes "READY N" (N the pty
//! index) to RESULT_FILE and waits for SIGUSR1; then it expects the queued bytes back, and
//! "outside", written to the slave by another process, to come out of the master after
//! "late"; it passes data both ways itself, checks the settings and writes "PASS" or
//! "FAIL: reason".

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

const MASTER: i32 = 3;
const SLAVE: i32 = 4;
const DEV_TTY: i32 = 5;
const ROWS: u16 = 42;
const COLS: u16 = 111;

fn fail(result: &str, why: String) -> ! {
    let _ = std::fs::write(result, format!("FAIL: {why}\n"));
    std::process::exit(1);
}

fn fd(n: i32) -> BorrowedFd<'static> {
    // SAFETY: fds 3 and 4 stay open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(n) }
}

fn ioctl_int(fd: i32, req: libc::Ioctl) -> Result<i32, String> {
    let mut v: libc::c_int = 0;
    // SAFETY: an ioctl whose argument is a pointer to an int.
    if unsafe { libc::ioctl(fd, req, &mut v) } < 0 {
        return Err(format!(
            "ioctl {req:#x} on fd {fd}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(v)
}

/// Reads what is there within 2 s.
fn read_some(fd: i32) -> Result<Vec<u8>, String> {
    let mut p = [nix::poll::PollFd::new(
        self::fd(fd),
        nix::poll::PollFlags::POLLIN,
    )];
    let n = nix::poll::poll(&mut p, 2000u16).map_err(|e| format!("poll fd {fd}: {e}"))?;
    if n == 0 {
        return Err(format!("nothing to read on fd {fd}"));
    }
    let mut buf = [0u8; 256];
    let n = nix::unistd::read(self::fd(fd), &mut buf).map_err(|e| format!("read fd {fd}: {e}"))?;
    Ok(buf[..n].to_vec())
}

/// Reads the master until `len` data bytes came (each packet-mode read starts with a 0).
fn read_master_data(len: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while out.len() < len {
        let got = read_some(MASTER).map_err(|e| format!("{e} after {out:?}"))?;
        match got.split_first() {
            Some((0, data)) => out.extend_from_slice(data),
            _ => return Err(format!("master read {got:?}: not a data packet")),
        }
    }
    Ok(out)
}

fn check(restored: bool) -> Result<(), String> {
    let index = ioctl_int(MASTER, libc::TIOCGPTN)?;
    let slave_path =
        std::fs::read_link(format!("/proc/self/fd/{SLAVE}")).map_err(|e| e.to_string())?;
    if slave_path.as_os_str() != format!("/dev/pts/{index}").as_str() {
        return Err(format!(
            "slave is {} but the master's index is {index}",
            slave_path.display()
        ));
    }
    if ioctl_int(MASTER, libc::TIOCGPKT)? != 1 {
        return Err("packet mode is off".into());
    }
    let t = nix::sys::termios::tcgetattr(fd(SLAVE)).map_err(|e| e.to_string())?;
    let lflag = t.local_flags;
    if lflag.contains(nix::sys::termios::LocalFlags::ECHO)
        || !lflag.contains(nix::sys::termios::LocalFlags::ICANON)
    {
        return Err(format!("termios lost: lflag {lflag:?}"));
    }
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a struct winsize.
    if unsafe { libc::ioctl(SLAVE, libc::TIOCGWINSZ, &mut ws) } < 0
        || (ws.ws_row, ws.ws_col) != (ROWS, COLS)
    {
        return Err(format!("window is {}x{}", ws.ws_row, ws.ws_col));
    }
    // Still our controlling terminal, our group in the foreground.
    let me = nix::unistd::getpid();
    let sid = nix::unistd::Pid::from_raw(ioctl_int(SLAVE, libc::TIOCGSID)?);
    let fg = nix::unistd::tcgetpgrp(fd(SLAVE)).map_err(|e| format!("tcgetpgrp: {e}"))?;
    if sid != me || fg != nix::unistd::getpgrp() {
        return Err(format!(
            "controlling terminal lost: sid {sid}, foreground {fg}"
        ));
    }
    let dev_tty =
        std::fs::read_link(format!("/proc/self/fd/{DEV_TTY}")).map_err(|e| e.to_string())?;
    if dev_tty != std::path::Path::new("/dev/tty") {
        return Err(format!(
            "fd {DEV_TTY} is {}, not /dev/tty",
            dev_tty.display()
        ));
    }
    if restored {
        // Through /dev/tty, which must still reach the same terminal.
        let got = read_some(DEV_TTY)?;
        if got != b"early\n" {
            return Err(format!("slave read {got:?}, not the line queued at dump"));
        }
        let got = read_master_data(b"lateoutside".len())?;
        if got != b"lateoutside" {
            return Err(format!(
                "master read {got:?}, not the bytes queued at dump and then written by another process"
            ));
        }
    }
    // master -> slave, a line in canonical mode, no echo.
    nix::unistd::write(fd(MASTER), b"hello\n").map_err(|e| e.to_string())?;
    let got = read_some(SLAVE)?;
    if got != b"hello\n" {
        return Err(format!("slave read {got:?}"));
    }
    // slave -> master, with packet mode's leading data byte.
    nix::unistd::write(fd(SLAVE), b"world").map_err(|e| e.to_string())?;
    let got = read_some(MASTER)?;
    if got != b"\0world" {
        return Err(format!("master read {got:?}"));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    // SAFETY: plain syscalls on our own process; the handler only sets an atomic.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
    }
    let master = nix::pty::posix_openpt(nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY)
        .unwrap_or_else(|e| fail(&result, format!("posix_openpt: {e}")));
    assert_eq!(master.as_raw_fd(), MASTER);
    nix::pty::grantpt(&master).unwrap();
    nix::pty::unlockpt(&master).unwrap();
    let name = nix::pty::ptsname_r(&master).unwrap();
    let slave: OwnedFd = nix::fcntl::open(
        name.as_str(),
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap_or_else(|e| fail(&result, format!("open {name}: {e}")));
    assert_eq!(slave.as_raw_fd(), SLAVE);
    std::mem::forget(slave);
    // Opening it without O_NOCTTY made it our controlling terminal already; be sure.
    // SAFETY: TIOCSCTTY with an int argument on our own fd.
    unsafe { libc::ioctl(SLAVE, libc::TIOCSCTTY, 0) };
    let tty: OwnedFd = nix::fcntl::open(
        "/dev/tty",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap_or_else(|e| fail(&result, format!("open /dev/tty: {e}")));
    assert_eq!(tty.as_raw_fd(), DEV_TTY);
    std::mem::forget(tty);
    let mut t = nix::sys::termios::tcgetattr(fd(SLAVE)).unwrap();
    t.local_flags.remove(nix::sys::termios::LocalFlags::ECHO);
    nix::sys::termios::tcsetattr(fd(SLAVE), nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
    let ws = libc::winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a struct winsize; TIOCPKT an int.
    unsafe {
        libc::ioctl(MASTER, libc::TIOCSWINSZ, &ws);
        let on: libc::c_int = 1;
        libc::ioctl(MASTER, libc::TIOCPKT, &on);
    }
    std::mem::forget(master);
    if let Err(why) = check(false) {
        fail(&result, format!("before dump: {why}"));
    }
    // Bytes left in the pair for after the restore.
    nix::unistd::write(fd(MASTER), b"early\n").unwrap();
    nix::unistd::write(fd(SLAVE), b"late").unwrap();
    let index = ioctl_int(MASTER, libc::TIOCGPTN).unwrap();
    std::fs::write(&result, format!("READY {index}\n")).expect("write result");
    while !GOT_USR1.load(Ordering::SeqCst) {
        // SAFETY: waits for a signal.
        unsafe { libc::pause() };
    }
    match check(true) {
        Ok(()) => std::fs::write(&result, "PASS\n").expect("write result"),
        Err(why) => fail(&result, why),
    }
    loop {
        // SAFETY: waits to be killed.
        unsafe { libc::pause() };
    }
}
