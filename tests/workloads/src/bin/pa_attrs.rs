//! Process attributes a restore must bring back, checked from inside the restored process, in
//! the manner of CRIU's zdtm futex-rl, membarrier, thp_disable and loginuid tests:
//! `pa_attrs RESULT_FILE WORK_DIR`.
//!
//! It sets its own robust futex list, disables transparent huge pages, registers for private
//! expedited membarriers, sets its audit login uid and writes into a MAP_DROPPABLE area and a
//! MADV_WIPEONFORK one (zdtm maps11), holds its net and uts namespace files open (zdtm
//! proc-self), makes the middle page of three a guard (MADV_GUARD_INSTALL, zdtm maps12),
//! writes "READY" to RESULT_FILE and waits for SIGUSR1;
//! then it checks each (the droppable area comes back empty, as CRIU brings it) and writes
//! "PASS" or "FAIL: reason".

use criu_test_workloads::verdict::{self, catch_usr1, ready_then_wait};

const PR_SET_THP_DISABLE: i32 = 41;
const PR_GET_THP_DISABLE: i32 = 42;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: i64 = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: i64 = 1 << 4;
const LOGINUID: &str = "3";
/// struct robust_list_head: list, futex_offset, list_op_pending.
const HEAD_LEN: usize = 24;

fn membarrier(cmd: i64) -> i64 {
    // SAFETY: membarrier takes only integers.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0i64, 0i64) }
}

/// madvise's MADV_GUARD_INSTALL (Linux 6.13).
const MADV_GUARD_INSTALL: i32 = 102;

/// Whether pagemap shows the page at `addr` as a guard (bit 58).
fn is_guard(addr: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut w = [0u8; 8];
    std::fs::File::open("/proc/self/pagemap")
        .and_then(|f| f.read_exact_at(&mut w, addr / 4096 * 8))
        .is_ok()
        && u64::from_le_bytes(w) & (1 << 58) != 0
}

/// mmap's MAP_DROPPABLE (Linux 6.11).
const MAP_DROPPABLE: i32 = 0x08;

/// One fresh anonymous read-write page with `kind` (MAP_PRIVATE or MAP_DROPPABLE).
fn area(kind: i32) -> *mut u8 {
    // SAFETY: a new anonymous mapping; nothing else refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            kind | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(
        p != libc::MAP_FAILED,
        "mmap {kind:#x}: {}",
        std::io::Error::last_os_error()
    );
    p.cast()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let check = |ok: bool, what: String| verdict::check(&result, ok, what);
    // An empty robust list points at itself.
    let head: &'static mut [u64; 3] = Box::leak(Box::new([0u64; 3]));
    let head_at = head.as_ptr() as u64;
    head[0] = head_at;
    let _ = nix::unistd::setsid();
    catch_usr1();
    // SAFETY: plain syscalls on our own process; the list head lives for the whole run.
    unsafe {
        let r = libc::syscall(libc::SYS_set_robust_list, head_at, HEAD_LEN);
        check(r == 0, format!("set_robust_list: {r}"));
        let r = libc::prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
        check(r == 0, format!("PR_SET_THP_DISABLE: {r}"));
    }
    let r = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
    check(r == 0, format!("membarrier register: {r}"));
    std::fs::write("/proc/self/loginuid", LOGINUID).expect("write /proc/self/loginuid");

    let (droppable, wiped) = (area(MAP_DROPPABLE), area(libc::MAP_PRIVATE));
    // SAFETY: advice on our own fresh mapping.
    let r = unsafe { libc::madvise(wiped.cast(), 4096, libc::MADV_WIPEONFORK) };
    check(r == 0, format!("MADV_WIPEONFORK: {r}"));
    for a in [droppable, wiped] {
        // SAFETY: both areas are one writable page of ours.
        unsafe { std::ptr::copy_nonoverlapping(b"kept".as_ptr(), a, 4) };
    }

    // Three pages, the middle one a guard: its neighbours keep their bytes.
    // SAFETY: a new anonymous mapping of our own.
    let three = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            3 * 4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    } as *mut u8;
    check(
        three as *mut libc::c_void != libc::MAP_FAILED,
        "mmap of three pages".into(),
    );
    // SAFETY: writes into our own pages, then advice on the middle one.
    let r = unsafe {
        *three = 1;
        *three.add(2 * 4096) = 3;
        libc::madvise(three.add(4096).cast(), 4096, MADV_GUARD_INSTALL)
    };
    check(
        r == 0,
        format!("MADV_GUARD_INSTALL: {}", std::io::Error::last_os_error()),
    );
    let ns_files: Vec<(std::fs::File, &str)> = ["net", "uts"]
        .into_iter()
        .map(|k| {
            (
                std::fs::File::open(format!("/proc/self/ns/{k}")).expect("open ns"),
                k,
            )
        })
        .collect();

    ready_then_wait(&result);

    // SAFETY: reading our own pages around the guard.
    let around = unsafe { (*three, *three.add(2 * 4096)) };
    check(
        around == (1, 3),
        format!("the guard's neighbours hold {around:?}"),
    );
    check(
        is_guard(three as u64 + 4096),
        "the guard page is a guard no more".into(),
    );
    use std::os::unix::fs::MetadataExt;
    for (f, k) in &ns_files {
        let held = f.metadata().map(|m| m.ino()).unwrap_or(0);
        let own = std::fs::metadata(format!("/proc/self/ns/{k}"))
            .map(|m| m.ino())
            .unwrap_or(1);
        check(
            held == own,
            format!("the {k} namespace file names {held}, not {own}"),
        );
    }

    // SAFETY: reading our own pages.
    let (d, w) = unsafe {
        (
            std::slice::from_raw_parts(droppable, 4),
            std::slice::from_raw_parts(wiped, 4),
        )
    };
    check(d == [0; 4], format!("the droppable area holds {d:?}"));
    check(w == b"kept", format!("the wipe-on-fork area holds {w:?}"));

    let mut got_head: u64 = 0;
    let mut got_len: usize = 0;
    // SAFETY: get_robust_list writes one pointer and one length into our locals.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut got_head as *mut u64,
            &mut got_len as *mut usize,
        )
    };
    check(
        r == 0 && got_head == head_at && got_len == HEAD_LEN,
        format!("robust list is {got_head:#x}+{got_len} (want {head_at:#x}+{HEAD_LEN})"),
    );
    // SAFETY: a query prctl.
    let thp = unsafe { libc::prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    check(thp == 1, format!("PR_GET_THP_DISABLE is {thp}"));
    let r = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    check(
        r == 0,
        format!("private expedited membarrier fails: {r} (not registered)"),
    );
    let uid = std::fs::read_to_string("/proc/self/loginuid").unwrap_or_default();
    check(uid == LOGINUID, format!("loginuid is {uid}"));
    std::fs::write(&result, "PASS\n").expect("write PASS");
}
