//! A userfaultfd of another task, used from criu to fill that task's anonymous memory with
//! UFFDIO_COPY: the kernel puts each page in place with its content, without zeroing it first
//! and without a page fault per page.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;

const UFFD_API: u64 = 0xaa;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
// _IOWR/_IOR(0xaa, nr, size) for struct uffdio_api (24), uffdio_register (32), uffdio_range
// (16) and uffdio_copy (40).
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
const UFFDIO_UNREGISTER: libc::c_ulong = 0x8010_aa01;
const UFFDIO_COPY: libc::c_ulong = 0xc028_aa03;
// _IOWR(0xaa, 6, struct uffdio_writeprotect) (24 bytes).
const UFFDIO_WRITEPROTECT: libc::c_ulong = 0xc018_aa06;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1;
/// Write-protect faults resolved by the kernel itself: a write just clears the page's
/// protection, which PAGEMAP_SCAN then reports as written.
pub const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;

pub struct Userfault {
    fd: OwnedFd,
}

fn ioctl(fd: &OwnedFd, request: libc::c_ulong, arg: &mut [u64]) -> Result<(), Errno> {
    // SAFETY: `arg` is a live buffer of the size the request's struct has (the callers pass
    // arrays laid out as those structs); the kernel reads and writes only inside it.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg.as_mut_ptr()) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

impl Userfault {
    /// A userfaultfd of the calling process (its own memory), after the API handshake. User-mode
    /// faults only where an unprivileged caller may not have more.
    pub fn for_this_process() -> Result<Userfault, Errno> {
        Userfault::for_this_process_with(0)
    }

    /// [`Userfault::for_this_process`] asking for `features` in the handshake.
    pub fn for_this_process_with(features: u64) -> Result<Userfault, Errno> {
        const UFFD_USER_MODE_ONLY: libc::c_long = 1;
        let flags = libc::O_CLOEXEC as libc::c_long;
        // SAFETY: raw userfaultfd(2) with integer flags.
        let mut raw = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
        if raw < 0 && Errno::last() == Errno::EPERM {
            // SAFETY: as above.
            raw = unsafe { libc::syscall(libc::SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY) };
        }
        if raw < 0 {
            return Err(Errno::last());
        }
        // SAFETY: a fd number the kernel just returned to us, owned by nothing else.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
        let mut api = [UFFD_API, features, 0];
        ioctl(&fd, UFFDIO_API, &mut api)?;
        Ok(Userfault { fd })
    }

    /// Takes over a userfaultfd (created by the task) and does the API handshake.
    pub fn new(fd: OwnedFd) -> Result<Userfault, Errno> {
        let mut api = [UFFD_API, 0, 0];
        ioctl(&fd, UFFDIO_API, &mut api)?;
        Ok(Userfault { fd })
    }

    /// Takes over a userfaultfd and does the API handshake asking for asynchronous
    /// write-protection (memory tracking: see `criu_memory::track`).
    pub fn new_wp_async(fd: OwnedFd) -> Result<Userfault, Errno> {
        let mut api = [UFFD_API, UFFD_FEATURE_WP_ASYNC, 0];
        ioctl(&fd, UFFDIO_API, &mut api)?;
        Ok(Userfault { fd })
    }

    /// A userfaultfd whose handshake was done by an earlier criu (it answers EINVAL to a
    /// second one).
    pub fn adopt(fd: OwnedFd) -> Userfault {
        Userfault { fd }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Watches `len` bytes at `start` for writes to protected pages.
    pub fn register_wp(&self, start: u64, len: u64) -> Result<(), Errno> {
        let mut reg = [start, len, UFFDIO_REGISTER_MODE_WP, 0];
        ioctl(&self.fd, UFFDIO_REGISTER, &mut reg)
    }

    /// Write-protects `len` bytes at `start` (registered with [`Userfault::register_wp`]).
    pub fn write_protect(&self, start: u64, len: u64) -> Result<(), Errno> {
        let mut wp = [start, len, UFFDIO_WRITEPROTECT_MODE_WP];
        ioctl(&self.fd, UFFDIO_WRITEPROTECT, &mut wp)
    }

    /// Watches `len` bytes at `start` for missing pages.
    pub fn register(&self, start: u64, len: u64) -> Result<(), Errno> {
        let mut reg = [start, len, UFFDIO_REGISTER_MODE_MISSING, 0];
        ioctl(&self.fd, UFFDIO_REGISTER, &mut reg)
    }

    pub fn unregister(&self, start: u64, len: u64) -> Result<(), Errno> {
        let mut range = [start, len];
        ioctl(&self.fd, UFFDIO_UNREGISTER, &mut range)
    }

    /// Puts `src` (whole pages) at `dst` in the task.
    pub fn copy(&self, dst: u64, src: &[u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        while done < src.len() {
            let rest = &src[done..];
            let mut args = [
                dst + done as u64,
                rest.as_ptr() as u64,
                rest.len() as u64,
                0,
                0,
            ];
            let r = ioctl(&self.fd, UFFDIO_COPY, &mut args);
            // The last word reports bytes copied, or -errno.
            let copied = args[4] as i64;
            match r {
                Ok(()) => done += rest.len(),
                Err(Errno::EAGAIN) if copied > 0 => done += copied as usize,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_pages_into_our_own_anonymous_memory() {
        // SAFETY: userfaultfd with integer flags; the result is checked.
        let raw = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
        if raw < 0 {
            let e = Errno::last();
            if e == Errno::EPERM {
                panic!(
                    "this test needs root (userfaultfd: EPERM, vm.unprivileged_userfaultfd is 0; \
                     run the tests as root, see README)"
                );
            }
            panic!(
                "this machine lacks userfaultfd (CONFIG_USERFAULTFD): userfaultfd(2) failed: {e}. \
                 To run the rest, leave the test out: cargo nextest run \
                 -E 'not test(copies_pages_into_our_own_anonymous_memory)'"
            );
        }
        // SAFETY: a new fd nothing else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
        let uffd = Userfault::new(fd).unwrap();
        let len = 4 * 4096;
        // A fresh anonymous mapping to fill.
        // SAFETY: a new private anonymous mapping at a kernel-chosen address.
        let dst = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        } as u64;
        assert_ne!(dst as *mut libc::c_void, libc::MAP_FAILED);
        uffd.register(dst, len as u64).unwrap();
        let src: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        uffd.copy(dst, &src).unwrap();
        uffd.unregister(dst, len as u64).unwrap();
        // SAFETY: the mapping made above, now filled.
        let got = unsafe { std::slice::from_raw_parts(dst as *const u8, len) };
        assert_eq!(got, &src[..]);
        // SAFETY: unmapping what was mapped above.
        unsafe { libc::munmap(dst as *mut libc::c_void, len) };
    }
}
