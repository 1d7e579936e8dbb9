//! An AIO ring a restore must bring back, checked from inside, in the manner of CRIU's zdtm
//! aio00/aio01: `ai_ring RESULT_FILE WORK_DIR`.
//!
//! It sets up a context, writes to a file through it and reaps that event, then completes a
//! second request whose event it leaves in the ring. It writes "READY" to RESULT_FILE and
//! waits for SIGUSR1; then the left event must still be there (with its cookie), and the same
//! context must take and complete a new request.

use std::os::fd::AsRawFd;

use criu_test_workloads::verdict::{self, catch_usr1, ready_then_wait};

const IOCB_CMD_PWRITE: u16 = 1;

/// struct iocb: a write of `buf` at `offset` of `fd`, tagged `cookie`.
fn iocb(fd: i32, buf: &[u8], offset: u64, cookie: u64) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..8].copy_from_slice(&cookie.to_le_bytes());
    b[16..18].copy_from_slice(&IOCB_CMD_PWRITE.to_le_bytes());
    b[20..24].copy_from_slice(&(fd as u32).to_le_bytes());
    b[24..32].copy_from_slice(&(buf.as_ptr() as u64).to_le_bytes());
    b[32..40].copy_from_slice(&(buf.len() as u64).to_le_bytes());
    b[40..48].copy_from_slice(&offset.to_le_bytes());
    b
}

fn submit(ctx: u64, cb: &[u8; 64]) -> i64 {
    let list = [cb.as_ptr() as u64];
    // SAFETY: io_submit reads one pointer to a live iocb, which names a live buffer.
    unsafe { libc::syscall(libc::SYS_io_submit, ctx, 1i64, list.as_ptr()) }
}

/// One completed event: (cookie, result), or None if none is ready.
fn get_event(ctx: u64) -> Option<(u64, i64)> {
    let mut ev = [0u64; 4];
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: io_getevents writes at most one struct io_event (32 bytes) into `ev`.
    let n = unsafe {
        libc::syscall(
            libc::SYS_io_getevents,
            ctx,
            1i64,
            1i64,
            ev.as_mut_ptr(),
            &zero,
        )
    };
    (n == 1).then_some((ev[0], ev[2] as i64))
}

/// Waits for one event (a write to a regular file may complete a little later).
fn wait_event(ctx: u64) -> Option<(u64, i64)> {
    for _ in 0..1000 {
        if let Some(e) = get_event(ctx) {
            return Some(e);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let work = args.get(2).expect("WORK_DIR").clone();
    let check = |ok: bool, what: String| verdict::check(&result, ok, what);
    let _ = nix::unistd::setsid();
    catch_usr1();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(format!("{work}/aio"))
        .expect("open aio file");
    let mut ctx: u64 = 0;
    // SAFETY: io_setup writes the context id into `ctx`.
    let r = unsafe { libc::syscall(libc::SYS_io_setup, 8i64, &mut ctx as *mut u64) };
    check(
        r == 0,
        format!("io_setup: {}", std::io::Error::last_os_error()),
    );
    let first = b"first";
    let second = b"second";
    check(
        submit(ctx, &iocb(file.as_raw_fd(), first, 0, 11)) == 1,
        "submit 1".into(),
    );
    check(wait_event(ctx) == Some((11, 5)), "first event".into());
    check(
        submit(ctx, &iocb(file.as_raw_fd(), second, 5, 22)) == 1,
        "submit 2".into(),
    );
    // Let it complete, and leave its event in the ring.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let before = ctx;

    ready_then_wait(&result);

    check(ctx == before, "the context id changed".into());
    let left = get_event(ctx);
    check(left == Some((22, 6)), format!("the left event is {left:?}"));
    let third = b"third";
    check(
        submit(ctx, &iocb(file.as_raw_fd(), third, 11, 33)) == 1,
        "submit 3".into(),
    );
    let e = wait_event(ctx);
    check(e == Some((33, 5)), format!("the new event is {e:?}"));
    let text = std::fs::read_to_string(format!("{work}/aio")).unwrap_or_default();
    check(
        text == "firstsecondthird",
        format!("the file holds {text:?}"),
    );
    std::fs::write(&result, "PASS\n").expect("write PASS");
}
