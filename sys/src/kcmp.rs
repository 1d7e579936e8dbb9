//! kcmp(2): whether two fds, possibly in two processes, are one open file description.

use nix::errno::Errno;

/// KCMP_FILE from linux/kcmp.h.
const KCMP_FILE: libc::c_int = 0;

/// Whether fd `fd1` of `pid1` and fd `fd2` of `pid2` refer to the same open file
/// description. Needs ptrace read access to both processes.
pub fn same_file(pid1: i32, fd1: i32, pid2: i32, fd2: i32) -> Result<bool, Errno> {
    // SAFETY: kcmp takes only integers and reads nothing from our memory for KCMP_FILE.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1 as libc::c_long,
            pid2 as libc::c_long,
            KCMP_FILE as libc::c_long,
            fd1 as libc::c_ulong,
            fd2 as libc::c_ulong,
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(r == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_dup_is_the_same_file_and_a_reopen_is_not() {
        let me = std::process::id() as i32;
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let dup = f.try_clone().unwrap();
        let other = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(same_file(me, f.as_raw_fd(), me, dup.as_raw_fd()), Ok(true));
        assert_eq!(
            same_file(me, f.as_raw_fd(), me, other.as_raw_fd()),
            Ok(false)
        );
        assert_eq!(same_file(me, f.as_raw_fd(), me, 100_000), Err(Errno::EBADF));
    }
}
