//! Thin wrappers over the ptrace requests and raw calls nix does not cover. They allocate
//! nothing, so the emergency release in `guard` may call them from a signal handler.

use libc::{c_long, c_void, pid_t, user_regs_struct};
use nix::errno::Errno;

pub const PTRACE_GETREGSET: u32 = 0x4204;
pub const PTRACE_SETREGSET: u32 = 0x4205;
pub const PTRACE_SEIZE: u32 = 0x4206;
/// Seccomp does not apply to the tracee while it is traced with this option.
pub const PTRACE_O_SUSPEND_SECCOMP: u32 = 1 << 21;
pub const PTRACE_INTERRUPT: u32 = 0x4207;
pub const PTRACE_PEEKSIGINFO: u32 = 0x4209;
pub const PTRACE_GETSIGMASK: u32 = 0x420a;
pub const PTRACE_SETSIGMASK: u32 = 0x420b;
pub const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
pub const PTRACE_SECCOMP_GET_METADATA: u32 = 0x420d;
pub const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
pub const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
pub const NT_X86_XSTATE: usize = 0x202;
/// Size of one `siginfo_t` as the kernel copies it.
pub const SIGINFO_SIZE: usize = 128;

/// `struct ptrace_rseq_configuration` of the kernel ABI.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RseqConfiguration {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

/// `struct seccomp_metadata` of the kernel ABI.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct SeccompMetadata {
    filter_off: u64,
    flags: u64,
}

/// `struct ptrace_peeksiginfo_args` of the kernel ABI.
#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// One ptrace request; returns the kernel's non-negative result.
///
/// # Safety
/// `addr` and `data` must be what `request` expects: null, a plain number, or a pointer to
/// memory valid for the reads or writes the request does.
unsafe fn request(
    request: u32,
    tid: pid_t,
    addr: *mut c_void,
    data: *mut c_void,
) -> Result<c_long, Errno> {
    // SAFETY: the caller vouches for addr and data; ptrace itself touches nothing else.
    let r = unsafe { libc::ptrace(request, tid, addr, data) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

pub fn seize(tid: pid_t, options: u32) -> Result<(), Errno> {
    // SAFETY: SEIZE takes no pointer; options are passed by value in data.
    unsafe {
        request(
            PTRACE_SEIZE,
            tid,
            std::ptr::null_mut(),
            options as usize as *mut c_void,
        )
    }
    .map(drop)
}

pub fn interrupt(tid: pid_t) -> Result<(), Errno> {
    // SAFETY: INTERRUPT takes no arguments.
    unsafe {
        request(
            PTRACE_INTERRUPT,
            tid,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
    .map(drop)
}

pub fn cont(tid: pid_t, sig: i32) -> Result<(), Errno> {
    // SAFETY: CONT takes the signal number by value.
    unsafe {
        request(
            libc::PTRACE_CONT,
            tid,
            std::ptr::null_mut(),
            sig as usize as *mut c_void,
        )
    }
    .map(drop)
}

/// PTRACE_SYSCALL: resume until the next syscall entry or exit.
pub fn cont_syscall(tid: pid_t, sig: i32) -> Result<(), Errno> {
    // SAFETY: PTRACE_SYSCALL takes the signal number by value.
    unsafe {
        request(
            libc::PTRACE_SYSCALL,
            tid,
            std::ptr::null_mut(),
            sig as usize as *mut c_void,
        )
    }
    .map(drop)
}

pub fn detach(tid: pid_t, sig: i32) -> Result<(), Errno> {
    // SAFETY: DETACH takes the signal number by value.
    unsafe {
        request(
            libc::PTRACE_DETACH,
            tid,
            std::ptr::null_mut(),
            sig as usize as *mut c_void,
        )
    }
    .map(drop)
}

pub fn get_regs(tid: pid_t) -> Result<user_regs_struct, Errno> {
    // SAFETY: user_regs_struct is plain integers; all-zero is a valid value.
    let mut regs: user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: GETREGS writes exactly one user_regs_struct to data.
    unsafe {
        request(
            libc::PTRACE_GETREGS,
            tid,
            std::ptr::null_mut(),
            (&mut regs as *mut user_regs_struct).cast(),
        )
    }?;
    Ok(regs)
}

pub fn set_regs(tid: pid_t, regs: &user_regs_struct) -> Result<(), Errno> {
    // SAFETY: SETREGS reads exactly one user_regs_struct from data.
    unsafe {
        request(
            libc::PTRACE_SETREGS,
            tid,
            std::ptr::null_mut(),
            (regs as *const user_regs_struct).cast_mut().cast(),
        )
    }
    .map(drop)
}

pub fn get_sigmask(tid: pid_t) -> Result<u64, Errno> {
    let mut mask = 0u64;
    // SAFETY: GETSIGMASK writes addr (= 8) bytes to data, which points at a u64.
    unsafe {
        request(
            PTRACE_GETSIGMASK,
            tid,
            8 as *mut c_void,
            (&mut mask as *mut u64).cast(),
        )
    }?;
    Ok(mask)
}

pub fn set_sigmask(tid: pid_t, mask: u64) -> Result<(), Errno> {
    // SAFETY: SETSIGMASK reads addr (= 8) bytes from data, which points at a u64.
    unsafe {
        request(
            PTRACE_SETSIGMASK,
            tid,
            8 as *mut c_void,
            (&mask as *const u64).cast_mut().cast(),
        )
    }
    .map(drop)
}

/// Reads the XSAVE area into `buf`; returns how many bytes the kernel filled.
pub fn get_xstate(tid: pid_t, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: GETREGSET writes at most iov_len bytes to iov_base (our buffer) and updates iov_len.
    unsafe {
        request(
            PTRACE_GETREGSET,
            tid,
            NT_X86_XSTATE as *mut c_void,
            (&mut iov as *mut libc::iovec).cast(),
        )
    }?;
    Ok(iov.iov_len)
}

pub fn set_xstate(tid: pid_t, buf: &[u8]) -> Result<(), Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: SETREGSET only reads iov_len bytes from iov_base (our buffer).
    unsafe {
        request(
            PTRACE_SETREGSET,
            tid,
            NT_X86_XSTATE as *mut c_void,
            (&mut iov as *mut libc::iovec).cast(),
        )
    }
    .map(drop)
}

/// Copies up to `buf.len() / SIGINFO_SIZE` queued siginfos starting at `off`; returns the count.
pub fn peek_siginfo(tid: pid_t, off: u64, shared: bool, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut args = PeekSiginfoArgs {
        off,
        flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
        nr: (buf.len() / SIGINFO_SIZE) as i32,
    };
    // SAFETY: PEEKSIGINFO reads the args struct and writes at most nr siginfos into buf.
    let n = unsafe {
        request(
            PTRACE_PEEKSIGINFO,
            tid,
            (&mut args as *mut PeekSiginfoArgs).cast(),
            buf.as_mut_ptr().cast(),
        )
    }?;
    Ok(n as usize)
}

pub fn rseq_configuration(tid: pid_t) -> Result<RseqConfiguration, Errno> {
    let mut conf = RseqConfiguration::default();
    let size = std::mem::size_of::<RseqConfiguration>();
    // SAFETY: the request writes at most addr (= size of the struct) bytes to data.
    unsafe {
        request(
            PTRACE_GET_RSEQ_CONFIGURATION,
            tid,
            size as *mut c_void,
            (&mut conf as *mut RseqConfiguration).cast(),
        )
    }?;
    Ok(conf)
}

/// Instruction count of seccomp filter `index` (0 = most recently installed), and copies it into
/// `buf` when given (8 bytes per instruction, `struct sock_filter`).
pub fn seccomp_filter(
    tid: pid_t,
    index: usize,
    buf: Option<&mut [libc::sock_filter]>,
) -> Result<usize, Errno> {
    let data = match buf {
        Some(b) => b.as_mut_ptr().cast(),
        None => std::ptr::null_mut(),
    };
    // SAFETY: the caller sized buf from the count this request returned with a null buffer, and
    // the kernel writes that many instructions.
    let n = unsafe { request(PTRACE_SECCOMP_GET_FILTER, tid, index as *mut c_void, data) }?;
    Ok(n as usize)
}

pub fn seccomp_flags(tid: pid_t, index: usize) -> Result<u64, Errno> {
    let mut meta = SeccompMetadata {
        filter_off: index as u64,
        flags: 0,
    };
    let size = std::mem::size_of::<SeccompMetadata>();
    // SAFETY: the request reads and writes one seccomp_metadata of `size` bytes at data.
    unsafe {
        request(
            PTRACE_SECCOMP_GET_METADATA,
            tid,
            size as *mut c_void,
            (&mut meta as *mut SeccompMetadata).cast(),
        )
    }?;
    Ok(meta.flags)
}

pub fn gettid() -> pid_t {
    nix::unistd::gettid().as_raw()
}

pub fn tgkill(tgid: pid_t, tid: pid_t, sig: i32) -> Result<(), Errno> {
    // SAFETY: tgkill takes three integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `waitpid(tid, __WALL | extra)` returning (pid, status); pid 0 means nothing yet (WNOHANG).
pub fn wait_raw(tid: pid_t, extra: i32) -> Result<(pid_t, i32), Errno> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes one int to status.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | extra) };
        if r >= 0 {
            return Ok((r, status));
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// "/proc/<tid>/mem" as a NUL-terminated path in a stack buffer.
fn mem_path(tid: pid_t, buf: &mut [u8; 32]) {
    let prefix = b"/proc/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let mut n = tid.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = prefix.len();
    for d in digits[..len].iter().rev() {
        buf[at] = *d;
        at += 1;
    }
    let suffix = b"/mem\0";
    buf[at..at + suffix.len()].copy_from_slice(suffix);
}

/// Reads or writes the task's memory through /proc/TID/mem (forced: works on read-only code).
pub fn proc_mem(tid: pid_t, addr: u64, buf: &mut [u8], write: bool) -> Result<(), Errno> {
    let mut path = [0u8; 32];
    mem_path(tid, &mut path);
    // SAFETY: path is NUL-terminated; open touches nothing else.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    let r = if write {
        // SAFETY: pwrite reads buf.len() bytes from buf.
        unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), addr as libc::off_t) }
    } else {
        // SAFETY: pread writes at most buf.len() bytes into buf.
        unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), addr as libc::off_t) }
    };
    let err = Errno::last();
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    match r {
        r if r < 0 => Err(err),
        r if r as usize != buf.len() => Err(Errno::EIO),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_path_is_built_without_allocation() {
        let mut buf = [0u8; 32];
        mem_path(4242, &mut buf);
        assert_eq!(&buf[..15], b"/proc/4242/mem\0");
        mem_path(7, &mut buf);
        assert_eq!(&buf[..12], b"/proc/7/mem\0");
    }
}
