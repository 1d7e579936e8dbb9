//! POSIX message queues through their raw syscalls (mq_open, mq_unlink, mq_getsetattr,
//! mq_timedsend, mq_timedreceive), on queue fds. Names are given without the leading '/'
//! (the C library strips it; the kernel takes the bare name).

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

/// The attributes of a queue (struct mq_attr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqAttr {
    /// O_NONBLOCK of the description, or 0.
    pub flags: i64,
    pub maxmsg: i64,
    pub msgsize: i64,
    pub curmsgs: i64,
}

fn c_name(name: &str) -> Result<CString, Errno> {
    if name.is_empty() || name.contains('/') {
        return Err(Errno::EINVAL);
    }
    CString::new(name).map_err(|_| Errno::EINVAL)
}

/// mq_open(2): `attr` (maxmsg, msgsize) is used only with O_CREAT.
pub fn open(name: &str, oflag: i32, mode: u32, attr: Option<(i64, i64)>) -> Result<OwnedFd, Errno> {
    let name = c_name(name)?;
    let attr = attr.map(|(maxmsg, msgsize)| {
        // SAFETY: mq_attr is plain integers; all-zero is a valid value.
        let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
        a.mq_maxmsg = maxmsg;
        a.mq_msgsize = msgsize;
        a
    });
    let attr_ptr = attr
        .as_ref()
        .map_or(std::ptr::null(), |a| a as *const libc::mq_attr);
    // SAFETY: name is a NUL-terminated string and attr_ptr is null or points at a mq_attr,
    // both alive across the call, which only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_open,
            name.as_ptr(),
            oflag as libc::c_long,
            mode as libc::c_long,
            attr_ptr,
        )
    };
    crate::ret::new_fd(r)
}

/// mq_unlink(2).
pub fn unlink(name: &str) -> Result<(), Errno> {
    let name = c_name(name)?;
    // SAFETY: name is a NUL-terminated string alive across the call, which only reads it.
    let r = unsafe { libc::syscall(libc::SYS_mq_unlink, name.as_ptr()) };
    crate::ret::check(r).map(drop)
}

/// The attributes of the queue `fd` is open on (mq_getsetattr without a change).
pub fn getattr(fd: BorrowedFd<'_>) -> Result<MqAttr, Errno> {
    // SAFETY: mq_attr is plain integers; all-zero is a valid value.
    let mut old: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: the new-attributes pointer is null (nothing changes) and `old` is a writable
    // mq_attr alive across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_getsetattr,
            fd.as_raw_fd() as libc::c_long,
            std::ptr::null::<libc::mq_attr>(),
            &mut old as *mut libc::mq_attr,
        )
    };
    crate::ret::check(r)?;
    Ok(MqAttr {
        flags: old.mq_flags,
        maxmsg: old.mq_maxmsg,
        msgsize: old.mq_msgsize,
        curmsgs: old.mq_curmsgs,
    })
}

/// Takes the first message of the queue into `buf` (at least msgsize long): its length and
/// priority. On a description opened with O_NONBLOCK an empty queue gives EAGAIN.
pub fn receive(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, u32), Errno> {
    let mut prio: libc::c_uint = 0;
    // SAFETY: buf is writable for buf.len() bytes and prio is a writable c_uint, both alive
    // across the call; the timeout pointer is null (no timeout).
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_timedreceive,
            fd.as_raw_fd() as libc::c_long,
            buf.as_mut_ptr(),
            buf.len(),
            &mut prio as *mut libc::c_uint,
            std::ptr::null::<libc::timespec>(),
        )
    };
    Ok((crate::ret::check(r)? as usize, prio))
}

/// Queues `msg` with priority `prio`. On a description opened with O_NONBLOCK a full queue
/// gives EAGAIN.
pub fn send(fd: BorrowedFd<'_>, msg: &[u8], prio: u32) -> Result<(), Errno> {
    // SAFETY: msg is readable for msg.len() bytes across the call, which only reads it; the
    // timeout pointer is null.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_timedsend,
            fd.as_raw_fd() as libc::c_long,
            msg.as_ptr(),
            msg.len(),
            prio as libc::c_uint,
            std::ptr::null::<libc::timespec>(),
        )
    };
    crate::ret::check(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_queue_takes_messages_and_gives_them_back_by_priority() {
        let name = format!("criu-rs-sys-test-{}", std::process::id());
        let fd = match open(
            &name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NONBLOCK,
            0o600,
            Some((4, 16)),
        ) {
            Ok(fd) => fd,
            Err(e) => panic!("mq_open {name}: {e}"),
        };
        unlink(&name).unwrap();
        let a = getattr(fd.as_fd()).unwrap();
        assert_eq!((a.maxmsg, a.msgsize, a.curmsgs), (4, 16, 0));
        assert_eq!(a.flags, libc::O_NONBLOCK as i64);
        send(fd.as_fd(), b"low", 1).unwrap();
        send(fd.as_fd(), b"high", 9).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(receive(fd.as_fd(), &mut buf).unwrap(), (4, 9));
        assert_eq!(receive(fd.as_fd(), &mut buf).unwrap(), (3, 1));
        assert_eq!(receive(fd.as_fd(), &mut buf), Err(Errno::EAGAIN));
        assert_eq!(unlink("a/b"), Err(Errno::EINVAL));
    }
}
