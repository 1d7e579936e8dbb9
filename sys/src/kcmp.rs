//! kcmp(2): whether two fds, possibly in two processes, are one open file description.

use nix::errno::Errno;

/// KCMP_FILE and KCMP_FILES from linux/kcmp.h.
const KCMP_FILE: libc::c_int = 0;
const KCMP_FILES: libc::c_int = 2;

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
    Ok(crate::ret::check(r)? == 0)
}

/// Whether processes `pid1` and `pid2` share one fd table (one was made by the other with
/// CLONE_FILES). Needs ptrace read access to both.
pub fn same_fd_table(pid1: i32, pid2: i32) -> Result<bool, Errno> {
    // SAFETY: kcmp takes only integers and reads nothing from our memory for KCMP_FILES.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1 as libc::c_long,
            pid2 as libc::c_long,
            KCMP_FILES as libc::c_long,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    Ok(crate::ret::check(r)? == 0)
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

    #[test]
    fn a_process_shares_its_own_fd_table_and_not_a_forked_childs() {
        let me = std::process::id() as i32;
        assert_eq!(same_fd_table(me, me), Ok(true));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let got = same_fd_table(me, child.id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(got, Ok(false));
    }
}
