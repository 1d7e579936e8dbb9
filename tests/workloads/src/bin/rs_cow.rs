//! A parent and a forked child that share most of a private anonymous area copy-on-write:
//! `rs_cow RESULT_DIR`. After the fork the child rewrites the first quarter and the parent
//! the third quarter; the rest stays shared. Each writes "READY" to RESULT_DIR/<role> and
//! waits; on SIGUSR1 it checks its own view of the area and writes "PASS" or "FAIL: why".

use std::sync::atomic::{AtomicBool, Ordering};

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

const PAGE: usize = 4096;
const PAGES: usize = 8192;
const CHILD_BYTE: u8 = 0xc1;
const PARENT_BYTE: u8 = 0xa1;

fn pattern(page: usize) -> u8 {
    (page * 13 % 251) as u8 + 1
}

/// What page `page` must hold for `role` after the fork.
fn expected(role: &str, page: usize) -> u8 {
    match (role, page / (PAGES / 4)) {
        ("child", 0) => CHILD_BYTE,
        ("parent", 2) => PARENT_BYTE,
        _ => pattern(page),
    }
}

fn fill(area: &mut [u8], pages: std::ops::Range<usize>, byte: impl Fn(usize) -> u8) {
    for p in pages {
        area[p * PAGE..(p + 1) * PAGE].fill(byte(p));
    }
}

fn check(area: &[u8], role: &str) -> Result<(), String> {
    for p in 0..PAGES {
        let want = expected(role, p);
        if let Some(i) = area[p * PAGE..(p + 1) * PAGE]
            .iter()
            .position(|&b| b != want)
        {
            return Err(format!(
                "page {p} byte {i}: {:#x}, expected {want:#x}",
                area[p * PAGE + i]
            ));
        }
    }
    Ok(())
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: rs_cow RESULT_DIR"));
    nix::unistd::setsid().expect("setsid");
    let handler = nix::sys::signal::SigHandler::Handler(on_usr1);
    // SAFETY: the handler only stores to an atomic.
    unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGUSR1, handler) }
        .expect("signal");
    // SAFETY: a fresh private mapping at a kernel-chosen address, checked for failure.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGES * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(at, libc::MAP_FAILED, "mmap");
    // SAFETY: the mapping is PAGES * PAGE bytes, readable and writable, and only used here.
    let area = unsafe { std::slice::from_raw_parts_mut(at.cast::<u8>(), PAGES * PAGE) };
    fill(area, 0..PAGES, pattern);
    // SAFETY: single-threaded; the child only uses async-signal-safe calls and its own memory.
    let role = match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            fill(area, 0..PAGES / 4, |_| CHILD_BYTE);
            "child"
        }
        nix::unistd::ForkResult::Parent { .. } => {
            fill(area, PAGES / 2..3 * PAGES / 4, |_| PARENT_BYTE);
            "parent"
        }
    };
    let result = dir.join(role);
    std::fs::write(&result, "READY\n").expect("write READY");
    while !GOT_USR1.load(Ordering::SeqCst) {
        nix::unistd::pause();
    }
    let verdict = match check(area, role) {
        Ok(()) => "PASS\n".to_string(),
        Err(why) => format!("FAIL: {why}\n"),
    };
    std::fs::write(&result, verdict).expect("write verdict");
}
