//! A self-checking process for files of a tree in its own mount namespace and root:
//! `mn_files DIR` (DIR as the process sees it). In DIR it holds a regular file at an offset,
//! an unlinked file (a ghost), a fifo with bytes in it and a unix listener bound to DIR/sock;
//! its cwd is DIR. It writes "READY" to /result, waits until /go exists, checks everything
//! and writes "PASS" or "FAIL: reason" to /result.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

const GHOST_TEXT: &[u8] = b"ghost contents";
const FIFO_TEXT: &[u8] = b"fifo bytes";

fn main() {
    let dir = std::env::args().nth(1).expect("usage: mn_files DIR");
    let dir = Path::new(&dir);
    // fds inherited from the test's side name files outside this root: not ours to keep.
    let inherited: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in inherited {
        let _ = nix::unistd::close(fd);
    }
    std::fs::write(dir.join("reg"), b"hello world").unwrap();
    let mut reg = File::open(dir.join("reg")).unwrap();
    reg.seek(SeekFrom::Start(6)).unwrap();
    let mut ghost = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("ghost"))
        .unwrap();
    ghost.write_all(GHOST_TEXT).unwrap();
    std::fs::remove_file(dir.join("ghost")).unwrap();
    let fifo_path = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo_path);
    nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut fifo = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo_path)
        .unwrap();
    fifo.write_all(FIFO_TEXT).unwrap();
    let sock_path = dir.join("sock");
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path).unwrap();
    std::env::set_current_dir(dir).unwrap();
    std::fs::write("/result", "READY").unwrap();
    while !Path::new("/go").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let verdict = match check(dir, &mut reg, &mut ghost, &mut fifo, &listener) {
        Ok(()) => "PASS".to_string(),
        Err(e) => format!("FAIL: {e}"),
    };
    std::fs::write("/result", verdict).unwrap();
}

fn check(
    dir: &Path,
    reg: &mut File,
    ghost: &mut File,
    fifo: &mut File,
    listener: &UnixListener,
) -> Result<(), String> {
    let mut rest = String::new();
    reg.read_to_string(&mut rest)
        .map_err(|e| format!("reg: {e}"))?;
    if rest != "world" {
        return Err(format!("reg: read {rest:?} from offset 6"));
    }
    let meta = ghost.metadata().map_err(|e| format!("ghost: {e}"))?;
    if meta.nlink() != 0 {
        return Err(format!("ghost: {} links, expected none", meta.nlink()));
    }
    let mut got = Vec::new();
    ghost.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    ghost
        .read_to_end(&mut got)
        .map_err(|e| format!("ghost: {e}"))?;
    if got != GHOST_TEXT {
        return Err(format!("ghost: contents {got:?}"));
    }
    let mut buf = [0u8; 64];
    let n = fifo.read(&mut buf).map_err(|e| format!("fifo: {e}"))?;
    if &buf[..n] != FIFO_TEXT {
        return Err(format!("fifo: read {:?}", &buf[..n]));
    }
    let name = listener.local_addr().map_err(|e| format!("sock: {e}"))?;
    let want = dir.join("sock");
    if name.as_pathname() != Some(want.as_path()) {
        return Err(format!(
            "sock: bound to {name:?}, expected {}",
            want.display()
        ));
    }
    UnixStream::connect(&want).map_err(|e| format!("sock: connect {}: {e}", want.display()))?;
    let cwd = std::env::current_dir().map_err(|e| format!("cwd: {e}"))?;
    if cwd != dir {
        return Err(format!("cwd is {}", cwd.display()));
    }
    let left: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ghost"))
        .collect();
    if !left.is_empty() {
        return Err(format!("remapped names left behind: {left:?}"));
    }
    Ok(())
}
