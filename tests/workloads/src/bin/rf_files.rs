//! A self-checking process for the regular-file restore tests: `rf_files MODE RESULT WORKDIR`.
//! It sets up the files of MODE in WORKDIR, writes "READY" to RESULT and waits; on SIGUSR1 it
//! checks them from inside and writes "PASS" or "FAIL: reason".
//!
//! Modes:
//! - `ghost`: an unlinked open file (contents, offset), an unlinked sparse file (holes kept),
//!   an unlinked file still mapped, and a removed cwd.
//! - `big`: an unlinked file of 2 MiB of data (over the default ghost limit).
//! - `link`: a file unlinked from one name while another link remains (--link-remap).
//! - `flags`: fds with O_APPEND, O_NONBLOCK, O_PATH, O_DIRECT and close-on-exec, and a
//!   description shared with a child: a write through the parent moves the child's offset.
//! - `size`: an open file whose size the test changes between dump and restore.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, Ordering};

use criu_test_workloads::verdict::{ensure, Check};

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

const PAGE: usize = 4096;
const GHOST_TEXT: &[u8] = b"hello ghost data";
const SPARSE_SIZE: u64 = 4 << 20;

fn wait_usr1() {
    while !GOT_USR1.load(Ordering::SeqCst) {
        // SAFETY: pause takes no arguments; a signal ends it.
        unsafe { libc::pause() };
    }
}

fn install_handler() {
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
}

fn fd_link(fd: RawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn getfl(fd: RawFd) -> i32 {
    // SAFETY: F_GETFL reads the status flags of an fd we hold.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

fn getfd(fd: RawFd) -> i32 {
    // SAFETY: F_GETFD reads the fd flags of an fd we hold.
    unsafe { libc::fcntl(fd, libc::F_GETFD) }
}

fn open_raw(path: &str, flags: i32) -> RawFd {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: a valid NUL-terminated path; the result is checked by the caller's use.
    let fd = unsafe { libc::open(c.as_ptr(), flags, 0o644) };
    assert!(fd >= 0, "open {path}: {}", std::io::Error::last_os_error());
    fd
}

// ---- ghost ----

struct Ghost {
    plain: File,
    sparse: File,
    map: *const u8,
    map_len: usize,
    /// A deleted tmpfs file mapped shared (its name is in /dev/shm).
    shm: *mut u8,
    shm_name: String,
    work: String,
}

fn map_pattern(i: usize) -> u8 {
    (i * 13 % 241) as u8
}

fn setup_ghost(work: &str) -> Ghost {
    let p = format!("{work}/ghost");
    let mut plain = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    plain.write_all(GHOST_TEXT).unwrap();
    plain.seek(SeekFrom::Start(6)).unwrap();
    std::fs::remove_file(&p).unwrap();

    let s = format!("{work}/sparse");
    let sparse = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&s)
        .unwrap();
    sparse.write_all_at(b"head", 0).unwrap();
    sparse.write_all_at(b"middle", 2 << 20).unwrap();
    sparse.set_len(SPARSE_SIZE).unwrap();
    std::fs::remove_file(&s).unwrap();

    let m = format!("{work}/mapped");
    let map_len = 2 * PAGE;
    let data: Vec<u8> = (0..map_len).map(map_pattern).collect();
    std::fs::write(&m, &data).unwrap();
    let f = File::open(&m).unwrap();
    // SAFETY: a fresh read-only shared mapping of a file we hold open; checked for failure.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    drop(f);
    std::fs::remove_file(&m).unwrap();

    let shm_name = format!("/dev/shm/rf_files.{}", std::process::id());
    std::fs::write(&shm_name, vec![0u8; PAGE]).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&shm_name)
        .unwrap();
    // SAFETY: a fresh read-write shared mapping of a file we hold open; checked for failure.
    let shm = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(shm, libc::MAP_FAILED);
    drop(f);
    std::fs::remove_file(&shm_name).unwrap();
    let shm: *mut u8 = shm.cast();
    // SAFETY: within the page just mapped.
    unsafe { std::ptr::copy_nonoverlapping(b"tmpfs!".as_ptr(), shm, 6) };

    let cwd = format!("{work}/cwd");
    std::fs::create_dir(&cwd).unwrap();
    std::env::set_current_dir(&cwd).unwrap();
    std::fs::remove_dir(&cwd).unwrap();

    Ghost {
        plain,
        sparse,
        map: map.cast(),
        map_len,
        shm,
        shm_name,
        work: work.to_string(),
    }
}

fn check_ghost(g: &mut Ghost) -> Check {
    let fd = g.plain.as_raw_fd();
    let link = fd_link(fd);
    ensure(link == format!("{}/ghost (deleted)", g.work), || {
        format!("ghost fd shows {link}")
    })?;
    let meta = g.plain.metadata().map_err(|e| e.to_string())?;
    ensure(meta.nlink() == 0, || {
        format!("ghost has {} links", meta.nlink())
    })?;
    let pos = g.plain.stream_position().map_err(|e| e.to_string())?;
    ensure(pos == 6, || format!("ghost offset {pos}"))?;
    let mut rest = Vec::new();
    g.plain.read_to_end(&mut rest).map_err(|e| e.to_string())?;
    ensure(rest == GHOST_TEXT[6..], || {
        format!("ghost reads {:?}", String::from_utf8_lossy(&rest))
    })?;

    let smeta = g.sparse.metadata().map_err(|e| e.to_string())?;
    ensure(smeta.len() == SPARSE_SIZE, || {
        format!("sparse size {}", smeta.len())
    })?;
    let mut buf = [0u8; 6];
    g.sparse
        .read_exact_at(&mut buf[..4], 0)
        .map_err(|e| e.to_string())?;
    ensure(&buf[..4] == b"head", || "sparse head".into())?;
    g.sparse
        .read_exact_at(&mut buf, 2 << 20)
        .map_err(|e| e.to_string())?;
    ensure(&buf == b"middle", || "sparse middle".into())?;
    let sfd = g.sparse.as_raw_fd();
    // SAFETY: lseek on an fd we hold.
    let hole = unsafe { libc::lseek(sfd, 0, libc::SEEK_HOLE) };
    ensure(hole > 0 && (hole as u64) < (2 << 20), || {
        format!("sparse: first hole at {hole}: holes were filled")
    })?;
    ensure(smeta.blocks() * 512 < 1 << 20, || {
        format!("sparse uses {} blocks", smeta.blocks())
    })?;

    // SAFETY: the mapping made in setup, still mapped, map_len bytes long.
    let mapped = unsafe { std::slice::from_raw_parts(g.map, g.map_len) };
    let bad = (0..g.map_len).find(|&i| mapped[i] != map_pattern(i));
    ensure(bad.is_none(), || format!("mapped file differs at {bad:?}"))?;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    ensure(
        maps.contains(&format!("{}/mapped (deleted)", g.work)),
        || "the mapping does not show the deleted file".into(),
    )?;

    // SAFETY: the shared page mapped in setup, still mapped.
    let shm = unsafe { std::slice::from_raw_parts(g.shm, 6) };
    ensure(shm == b"tmpfs!", || format!("tmpfs mapping holds {shm:?}"))?;
    ensure(maps.contains(&format!("{} (deleted)", g.shm_name)), || {
        "the tmpfs mapping does not show the deleted file".into()
    })?;
    ensure(!std::path::Path::new(&g.shm_name).exists(), || {
        format!("{} was left behind", g.shm_name)
    })?;

    let cwd = std::fs::read_link("/proc/self/cwd").map_err(|e| e.to_string())?;
    ensure(
        cwd.display().to_string() == format!("{}/cwd (deleted)", g.work),
        || format!("cwd is {}", cwd.display()),
    )?;
    // Nothing the restore made is left behind.
    let left: Vec<_> = std::fs::read_dir(&g.work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ensure(left.is_empty(), || {
        format!("left in the work dir: {left:?}")
    })
}

// ---- big ----

fn setup_big(work: &str) -> File {
    let p = format!("{work}/big");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    let data: Vec<u8> = (0..2 << 20).map(|i: usize| (i % 199) as u8 + 1).collect();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    std::fs::remove_file(&p).unwrap();
    f
}

fn check_big(f: &File) -> Check {
    let mut buf = vec![0u8; 2 << 20];
    f.read_exact_at(&mut buf, 0).map_err(|e| e.to_string())?;
    let bad = (0..buf.len()).find(|&i| buf[i] != (i % 199) as u8 + 1);
    ensure(bad.is_none(), || format!("big file differs at {bad:?}"))
}

// ---- link ----

fn setup_link(work: &str) -> File {
    let p = format!("{work}/linked");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.write_all(b"linked data").unwrap();
    f.seek(SeekFrom::Start(7)).unwrap();
    std::fs::hard_link(&p, format!("{work}/other")).unwrap();
    std::fs::remove_file(&p).unwrap();
    f
}

fn check_link(f: &mut File, work: &str) -> Check {
    let other = std::fs::metadata(format!("{work}/other")).map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    ensure(meta.ino() == other.ino(), || {
        format!(
            "fd inode {} is not the other link's {}",
            meta.ino(),
            other.ino()
        )
    })?;
    ensure(meta.nlink() == 1, || format!("{} links", meta.nlink()))?;
    let link = fd_link(f.as_raw_fd());
    ensure(link == format!("{work}/linked (deleted)"), || {
        format!("fd shows {link}")
    })?;
    let mut rest = String::new();
    f.read_to_string(&mut rest).map_err(|e| e.to_string())?;
    ensure(rest == "data", || format!("reads {rest:?}"))?;
    let left: Vec<_> = std::fs::read_dir(work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ensure(left == ["other"], || format!("work dir holds {left:?}"))
}

// ---- flags ----

/// The fds of the flags mode, at fixed numbers.
const FD_APPEND: RawFd = 10;
const FD_NONBLOCK: RawFd = 11;
const FD_PATH: RawFd = 12;
const FD_DIRECT: RawFd = 13;
const FD_SHARED: RawFd = 14;
const FD_CLOEXEC: RawFd = 15;

const WANTED: [(RawFd, i32, bool); 6] = [
    (FD_APPEND, libc::O_WRONLY | libc::O_APPEND, false),
    (FD_NONBLOCK, libc::O_RDONLY | libc::O_NONBLOCK, false),
    (FD_PATH, libc::O_PATH, false),
    (FD_DIRECT, libc::O_RDONLY | libc::O_DIRECT, false),
    (FD_SHARED, libc::O_RDWR, false),
    (FD_CLOEXEC, libc::O_RDONLY, true),
];

/// Enough more fds for the restore to take them in batches: every other number from
/// `SPREAD_AT`, every third close-on-exec; the numbers between stay free.
const SPREAD_AT: RawFd = 16;
const SPREAD: RawFd = 24;

fn spread_fd(k: RawFd) -> (RawFd, bool) {
    (SPREAD_AT + 2 * k, k % 3 == 0)
}

/// Moves `fd` to number `at` (dup3 sets close-on-exec as asked; dup2 would clear it).
fn place(fd: RawFd, at: RawFd, cloexec: bool) {
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 of an fd we hold onto a number we own; then the old one is closed.
    unsafe {
        assert_eq!(libc::dup3(fd, at, flags), at);
        libc::close(fd);
    }
}

fn setup_flags(work: &str) {
    let f = format!("{work}/flags");
    std::fs::write(&f, vec![b'x'; 2 * PAGE]).unwrap();
    for &(at, flags, cloexec) in &WANTED {
        place(open_raw(&f, flags), at, cloexec);
    }
    for k in 0..SPREAD {
        let (at, cloexec) = spread_fd(k);
        place(open_raw(&f, libc::O_RDONLY), at, cloexec);
    }
    // SAFETY: lseek on fds just placed.
    unsafe {
        libc::lseek(FD_SHARED, 10, libc::SEEK_SET);
        libc::lseek(FD_NONBLOCK, 100, libc::SEEK_SET);
    }
}

/// Checks flags and offsets; `shared_at` is where the shared description should stand.
fn check_flags(shared_at: i64) -> Check {
    // Access mode, O_APPEND, O_NONBLOCK, O_DIRECT, O_PATH; O_LARGEFILE and the like aside.
    let mask = libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_PATH;
    for &(fd, flags, cloexec) in &WANTED {
        let got = getfl(fd);
        ensure(got >= 0 && got & mask == flags, || {
            format!("fd {fd}: flags {got:o}, wanted {flags:o}")
        })?;
        let fdfl = getfd(fd);
        ensure((fdfl & libc::FD_CLOEXEC != 0) == cloexec, || {
            format!("fd {fd}: close-on-exec {fdfl}")
        })?;
    }
    for k in 0..SPREAD {
        let (at, cloexec) = spread_fd(k);
        let fdfl = getfd(at);
        ensure(
            fdfl >= 0 && (fdfl & libc::FD_CLOEXEC != 0) == cloexec,
            || format!("fd {at}: flags {fdfl}, close-on-exec wanted {cloexec}"),
        )?;
        ensure(getfd(at + 1) < 0, || {
            format!("fd {} is open, it was not", at + 1)
        })?;
    }
    // SAFETY: lseek on fds of this process.
    let (shared, nonblock) = unsafe {
        (
            libc::lseek(FD_SHARED, 0, libc::SEEK_CUR),
            libc::lseek(FD_NONBLOCK, 0, libc::SEEK_CUR),
        )
    };
    ensure(shared == shared_at, || {
        format!("shared offset {shared}, wanted {shared_at}")
    })?;
    ensure(nonblock == 100, || format!("nonblock offset {nonblock}"))
}

fn run_flags_child(result_child: String) -> libc::pid_t {
    // SAFETY: fork in a single-threaded process; the child only runs plain Rust code below.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        wait_usr1();
        // The parent wrote 3 bytes through the shared description before waking us.
        let verdict = match check_flags(13) {
            Ok(()) => "PASS\n".to_string(),
            Err(e) => format!("FAIL: child: {e}\n"),
        };
        let _ = std::fs::write(&result_child, &verdict);
        std::process::exit(if verdict == "PASS\n" { 0 } else { 1 });
    }
    pid
}

fn check_flags_parent(child: libc::pid_t, result_child: &str) -> Check {
    check_flags(10)?;
    // SAFETY: a write of a live buffer through an fd we hold.
    let n = unsafe { libc::write(FD_SHARED, b"abc".as_ptr().cast(), 3) };
    ensure(n == 3, || format!("write through the shared fd: {n}"))?;
    // An O_APPEND write lands at the end whatever the offset.
    // SAFETY: as above.
    unsafe { libc::write(FD_APPEND, b"Z".as_ptr().cast(), 1) };
    let end = std::fs::metadata("/proc/self/fd/14")
        .map(|m| m.len())
        .unwrap_or(0);
    ensure(end == 2 * PAGE as u64 + 1, || {
        format!("append landed badly: size {end}")
    })?;
    // SAFETY: kill and waitpid on our own child.
    let status = unsafe {
        libc::kill(child, libc::SIGUSR1);
        let mut st = 0;
        libc::waitpid(child, &mut st, 0);
        st
    };
    let said = std::fs::read_to_string(result_child).unwrap_or_default();
    ensure(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        || format!("child: {said}"),
    )
}

// ---- size ----

fn setup_size(work: &str) -> File {
    let p = format!("{work}/sized");
    std::fs::write(&p, vec![b's'; 100]).unwrap();
    let mut f = File::open(&p).unwrap();
    f.seek(SeekFrom::Start(40)).unwrap();
    f
}

fn check_size(f: &mut File) -> Check {
    let pos = f.stream_position().map_err(|e| e.to_string())?;
    ensure(pos == 40, || format!("offset {pos}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).expect("MODE").clone();
    let result = args.get(2).expect("RESULT").clone();
    let work = args.get(3).expect("WORKDIR").clone();
    // SAFETY: plain syscalls on our own process: a clean fd table and a session of our own.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
    }
    install_handler();
    let verdict: Check = match mode.as_str() {
        "ghost" => {
            let mut g = setup_ghost(&work);
            ready(&result);
            check_ghost(&mut g)
        }
        "big" => {
            let f = setup_big(&work);
            ready(&result);
            check_big(&f)
        }
        "link" => {
            let mut f = setup_link(&work);
            ready(&result);
            check_link(&mut f, &work)
        }
        "flags" => {
            setup_flags(&work);
            let child = run_flags_child(format!("{result}.child"));
            ready(&result);
            check_flags_parent(child, &format!("{result}.child"))
        }
        "size" => {
            let mut f = setup_size(&work);
            ready(&result);
            check_size(&mut f)
        }
        other => Err(format!("unknown mode {other}")),
    };
    let text = match verdict {
        Ok(()) => "PASS\n".to_string(),
        Err(e) => format!("FAIL: {e}\n"),
    };
    let _ = std::fs::write(&result, text);
}

/// Writes READY and waits for SIGUSR1.
fn ready(result: &str) {
    std::fs::write(result, "READY\n").unwrap();
    wait_usr1();
}
