//! Memory probes: map_files, soft-dirty, PAGEMAP_SCAN, userfaultfd, memfd hugetlb, AIO ring
//! remap, moving the special mappings (vDSO and friends), unaligned vmsplice, vDSO mapping.

use super::child::{raw, Child};
use super::{check_ret, missing, own_fd, sys, ProbeError, ProbeResult};
use nix::errno::Errno;
use std::os::fd::AsRawFd;

use crate::pagemap_scan as scan;

const PAGE: usize = 4096;

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    addr: usize,
    len: usize,
}

impl Mapping {
    fn anon(len: usize, prot: libc::c_int, flags: libc::c_int) -> Result<Mapping, ProbeError> {
        // SAFETY: a fresh anonymous mapping at an address the kernel picks; nothing aliases it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                flags | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys(format!("mmap {len} bytes for a probe"))(Errno::last()));
        }
        Ok(Mapping {
            addr: p as usize,
            len,
        })
    }

    /// Writes one byte at `offset` so that the page is present.
    fn touch(&self, offset: usize) {
        assert!(offset < self.len, "touch offset inside the mapping");
        // SAFETY: the address is inside our own read-write mapping.
        unsafe { std::ptr::write_volatile((self.addr + offset) as *mut u8, 1) };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

/// /proc/self/map_files is there and resolves one of our mappings.
pub fn map_files() -> ProbeResult {
    nix::unistd::access("/proc/self/map_files", nix::unistd::AccessFlags::R_OK)
        .map_err(sys("/proc/<pid>/map_files is inaccessible"))?;
    let m = Mapping::anon(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED)?;
    let path = format!("/proc/self/map_files/{:x}-{:x}", m.addr, m.addr + m.len);
    nix::sys::stat::stat(path.as_str()).map_err(sys(format!("stat {path}")))?;
    Ok(())
}

fn pagemap_entry(addr: usize) -> Result<u64, ProbeError> {
    let f = std::fs::File::open("/proc/self/pagemap").map_err(|e| {
        sys("open /proc/self/pagemap")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    })?;
    let mut buf = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, (addr / PAGE * 8) as u64).map_err(
        |e| sys("read /proc/self/pagemap")(Errno::from_raw(e.raw_os_error().unwrap_or(0))),
    )?;
    Ok(u64::from_le_bytes(buf))
}

/// Soft-dirty tracking: after clearing the bits, a written page must show bit 55 in pagemap.
pub fn soft_dirty() -> ProbeResult {
    const CLEAR_SOFT_DIRTY: &[u8] = b"4";
    const PM_SOFT_DIRTY: u64 = 1 << 55;
    let m = Mapping::anon(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE)?;
    match std::fs::write("/proc/self/clear_refs", CLEAR_SOFT_DIRTY) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Err(missing(
                "Dirty tracking is OFF (clear_refs does not know soft-dirty)",
            ))
        }
        Err(e) => {
            return Err(sys("write /proc/self/clear_refs")(Errno::from_raw(
                e.raw_os_error().unwrap_or(0),
            )))
        }
    }
    m.touch(0);
    if pagemap_entry(m.addr)? & PM_SOFT_DIRTY == 0 {
        return Err(missing(
            "Dirty tracking is OFF: pagemap shows no soft-dirty bit on a written page",
        ));
    }
    Ok(())
}

fn open_pagemap() -> Result<std::fs::File, ProbeError> {
    std::fs::File::open("/proc/self/pagemap")
        .map_err(|e| sys("open /proc/self/pagemap")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))
}

/// The regions PAGEMAP_SCAN reports in `m` for `q`, as (start, end).
fn scan_regions(m: &Mapping, q: scan::Query) -> Result<Vec<(u64, u64)>, ProbeError> {
    let f = open_pagemap()?;
    match scan::scan(&f, m.addr as u64, (m.addr + m.len) as u64, q) {
        Ok(found) => Ok(found.iter().map(|r| (r.start, r.end)).collect()),
        Err(Errno::EINVAL) | Err(Errno::ENOTTY) => {
            Err(missing("ioctl(PAGEMAP_SCAN) isn't supported"))
        }
        Err(e) => Err(sys("ioctl(PAGEMAP_SCAN)")(e)),
    }
}

/// Scans 4 pages, one of them written, for present pages with `return_mask` extra bits asked.
fn pagemap_scan_with(extra_return: u64) -> ProbeResult {
    let m = Mapping::anon(
        4 * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
    )?;
    m.touch(2 * PAGE);
    let q = scan::Query {
        flags: 0,
        all: 0,
        any: scan::PAGE_IS_PRESENT | extra_return,
    };
    let found = scan_regions(&m, q)?;
    let want = (m.addr + 2 * PAGE) as u64;
    if found != [(want, want + PAGE as u64)] {
        return Err(missing(format!(
            "ioctl(PAGEMAP_SCAN) reported {} regions, not the one written page",
            found.len()
        )));
    }
    Ok(())
}

/// Memory tracking without soft-dirty: a userfaultfd with WP_ASYNC write-protects our own
/// populated pages, and PAGEMAP_SCAN then reports exactly the one page written since.
pub fn uffd_wp_tracking() -> ProbeResult {
    let m = Mapping::anon(
        4 * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
    )?;
    for page in 0..4 {
        m.touch(page * PAGE);
    }
    let uffd = crate::uffd::Userfault::for_this_process_with(crate::uffd::UFFD_FEATURE_WP_ASYNC)
        .map_err(|e| missing(format!("userfaultfd with WP_ASYNC: {e}")))?;
    uffd.register_wp(m.addr as u64, m.len as u64)
        .map_err(sys("UFFDIO_REGISTER in write-protect mode"))?;
    let protect = scan::Query {
        flags: scan::PM_SCAN_WP_MATCHING,
        all: 0,
        any: scan::PAGE_IS_PRESENT | scan::PAGE_IS_SWAPPED,
    };
    scan_regions(&m, protect)?;
    m.touch(PAGE);
    let written = scan::Query {
        flags: 0,
        all: scan::PAGE_IS_WRITTEN,
        any: 0,
    };
    let want = (m.addr + PAGE) as u64;
    let found = scan_regions(&m, written)?;
    if found != [(want, want + PAGE as u64)] {
        return Err(missing(format!(
            "PAGEMAP_SCAN after a write-protect reported {found:x?}, not the one written page"
        )));
    }
    Ok(())
}

/// Some way to track memory changes between dumps: soft-dirty, or userfaultfd WP_ASYNC with
/// PAGEMAP_SCAN.
pub fn dirty_track() -> ProbeResult {
    soft_dirty().or_else(|soft| uffd_wp_tracking().map_err(|_| soft))
}

/// The PAGEMAP_SCAN ioctl on /proc/self/pagemap finds exactly the one page we wrote.
pub fn pagemap_scan() -> ProbeResult {
    pagemap_scan_with(0)
}

/// PAGEMAP_SCAN accepts PAGE_IS_GUARD (reports guard pages made by MADV_GUARD_INSTALL).
pub fn pagemap_scan_guard_pages() -> ProbeResult {
    pagemap_scan_with(scan::PAGE_IS_GUARD).map_err(|e| match e {
        ProbeError::Missing(_) => missing("ioctl(PAGEMAP_SCAN) doesn't support PAGE_IS_GUARD"),
        other => other,
    })
}

/// userfaultfd feature bits (UFFDIO_API `features`).
pub mod uffd_features {
    pub const EVENT_FORK: u64 = 1 << 1;
    pub const EVENT_REMAP: u64 = 1 << 2;
    pub const EVENT_REMOVE: u64 = 1 << 3;
    pub const EVENT_UNMAP: u64 = 1 << 6;
    pub const WP_ASYNC: u64 = 1 << 15;
    /// What lazy restore of a whole tree needs (non-cooperative mode).
    pub const NON_COOPERATIVE: u64 = EVENT_FORK | EVENT_REMAP | EVENT_UNMAP | EVENT_REMOVE;
}

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

const UFFD_API: u64 = 0xaa;
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f; // _IOWR(0xAA, 0x3F, struct uffdio_api)
const UFFD_USER_MODE_ONLY: libc::c_long = 1;

/// Opens a userfaultfd and runs the UFFDIO_API handshake; returns the features it offers.
pub fn uffd_api_features() -> Result<u64, ProbeError> {
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as libc::c_long;
    // SAFETY: raw userfaultfd(2) with integer flags.
    let mut ret = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
    if ret < 0 && Errno::last() == Errno::EPERM {
        // SAFETY: as above; user-mode-only faults are allowed without privilege.
        ret = unsafe { libc::syscall(libc::SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY) };
    }
    let fd = match check_ret(ret) {
        Ok(fd) => own_fd(fd),
        Err(Errno::ENOSYS) => return Err(missing("UFFD is not supported")),
        Err(e) => return Err(sys("userfaultfd()")(e)),
    };
    let mut api = UffdioApi {
        api: UFFD_API,
        features: 0,
        ioctls: 0,
    };
    // SAFETY: `api` is a live uffdio_api the kernel reads and fills.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) };
    check_ret(ret as libc::c_long).map_err(sys("Failed to get uffd API (UFFDIO_API)"))?;
    if api.api != UFFD_API {
        return Err(missing(format!(
            "Incompatible uffd API: expected {UFFD_API}, got {}",
            api.api
        )));
    }
    Ok(api.features)
}

/// memfd_create() with MFD_HUGETLB.
pub fn memfd_hugetlb() -> ProbeResult {
    const MFD_HUGETLB: libc::c_uint = 4;
    // SAFETY: raw memfd_create with a valid NUL-terminated name.
    let ret = unsafe { libc::syscall(libc::SYS_memfd_create, c"".as_ptr(), MFD_HUGETLB) };
    match check_ret(ret) {
        Ok(fd) => {
            drop(own_fd(fd));
            Ok(())
        }
        Err(e @ (Errno::EINVAL | Errno::ENOENT | Errno::ENOSYS)) => Err(missing(format!(
            "memfd_create(MFD_HUGETLB) is not supported: {e}"
        ))),
        Err(e) => Err(sys("memfd_create(\"\", MFD_HUGETLB)")(e)),
    }
}

/// Length of our mapping that starts at `addr` if it is the AIO ring.
fn aio_ring_len(addr: usize) -> Result<usize, ProbeError> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| sys("read /proc/self/maps")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    for line in maps.lines() {
        let Some((range, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(s), Ok(e)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16)) else {
            continue;
        };
        if s == addr {
            if rest.ends_with("/[aio] (deleted)") {
                return Ok(e - s);
            }
            break;
        }
    }
    Err(missing("No AIO ring at expected location"))
}

/// An AIO ring can be moved with mremap() and still works at its new address.
pub fn aio_remap() -> ProbeResult {
    let mut ctx: libc::c_ulong = 0;
    // SAFETY: io_setup writes the context (ring address) into `ctx`.
    check_ret(unsafe { libc::syscall(libc::SYS_io_setup, 16, &mut ctx as *mut libc::c_ulong) })
        .map_err(sys("No AIO syscall (io_setup)"))?;
    let result = (|| {
        let len = aio_ring_len(ctx as usize)?;
        let dest = Mapping::anon(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE)?;
        // SAFETY: moves the AIO ring (ours) over `dest` (ours); both ranges are `len` long.
        let p = unsafe {
            libc::mremap(
                ctx as *mut libc::c_void,
                len,
                len,
                libc::MREMAP_FIXED | libc::MREMAP_MAYMOVE,
                dest.addr as *mut libc::c_void,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys("Can't remap AIO ring")(Errno::last()));
        }
        // The ring now lives at dest; the kernel's context id follows it.
        ctx = dest.addr as libc::c_ulong;
        std::mem::forget(dest);
        // SAFETY: io_getevents for 0..1 events with no output array needed (min_nr 0, nr 1,
        // events NULL is only read when an event is ready, and none is).
        let r = unsafe { libc::syscall(libc::SYS_io_getevents, ctx, 0, 0, 0usize, 0usize) };
        check_ret(r).map_err(sys("AIO remap doesn't work properly (io_getevents)"))?;
        Ok(())
    })();
    // SAFETY: destroys our own AIO context; this also unmaps the ring.
    unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
    result
}

extern "C" fn ignore_signal(_sig: libc::c_int) {}

/// The special mappings ([vdso], [vvar], [vvar_vclock], [sigpage]) of our process.
fn special_mappings() -> Result<Vec<(usize, usize)>, ProbeError> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| sys("read /proc/self/maps")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    let mut out = Vec::new();
    for line in maps.lines() {
        let name = line.split_whitespace().nth(5).unwrap_or("");
        if !matches!(name, "[vdso]" | "[vvar]" | "[vvar_vclock]" | "[sigpage]") {
            continue;
        }
        let range = line.split(' ').next().unwrap_or("");
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(s), Ok(e)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16)) else {
            return Err(missing(format!("Bad maps line: {line}")));
        };
        out.push((s, e - s));
    }
    Ok(out)
}

/// A child moves the special mappings elsewhere and takes a signal: the kernel must track the
/// new place, or the child dies on return from the handler.
pub fn special_mapping_mremap() -> ProbeResult {
    const MAX: usize = 8;
    let found = special_mappings()?;
    let mut vmas = [(0usize, 0usize); MAX];
    let n = found.len().min(MAX);
    vmas[..n].copy_from_slice(&found[..n]);
    let parking: usize = vmas[..n].iter().map(|v| v.1).sum();
    // SAFETY: a zeroed sigaction is a valid starting value; the fields set below are valid.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
    let mut child = Child::spawn(move || {
        // SAFETY: only async-signal-safe calls on memory the child owns: sigaction (sets our
        // no-op handler), then raw mmap/mremap/kill/exit syscalls on its own address space.
        unsafe {
            if libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()) != 0 {
                raw::exit(2);
            }
            let lot = libc::syscall(
                libc::SYS_mmap,
                0usize,
                parking,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if lot < 0 {
                raw::exit(3);
            }
            let mut dest = lot as usize;
            for &(addr, len) in &vmas[..n] {
                let flags = libc::MREMAP_FIXED | libc::MREMAP_MAYMOVE;
                if libc::syscall(libc::SYS_mremap, addr, len, len, flags, dest) as usize != dest {
                    raw::exit(1);
                }
                dest += len;
            }
            libc::syscall(
                libc::SYS_kill,
                libc::syscall(libc::SYS_getpid),
                libc::SIGUSR1,
            );
        }
        raw::exit(0)
    })?;
    let status = child.wait_exit()?;
    if libc::WIFSIGNALED(status) {
        return Err(missing(format!(
            "Child killed by signal {}: the kernel lacks support for mremapping special mappings",
            libc::WTERMSIG(status)
        )));
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        code => Err(missing(format!(
            "special mapping mremap child exited with {code}"
        ))),
    }
}

/// vmsplice() of one unaligned byte with SPLICE_F_GIFT.
pub fn unaligned_vmsplice() -> ProbeResult {
    let (r, w) = nix::unistd::pipe().map_err(sys("Can't create pipe"))?;
    let byte = [0u8; 1];
    let iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: one iovec pointing to a live 1-byte buffer.
    let ret = unsafe {
        libc::vmsplice(
            w.as_raw_fd(),
            &iov,
            1,
            libc::SPLICE_F_GIFT | libc::SPLICE_F_NONBLOCK,
        )
    };
    drop((r, w));
    check_ret(ret as libc::c_long).map_err(sys("Unaligned vmsplice doesn't work"))?;
    Ok(())
}

const ARCH_MAP_VDSO_32: libc::c_long = 0x2002;
const ARCH_MAP_VDSO_64: libc::c_long = 0x2003;

/// Asks arch_prctl(`code`) in a child while the vDSO is still mapped: a kernel with the call
/// refuses with EEXIST (or maps it, in the throwaway child).
fn arch_map_vdso(code: libc::c_long) -> Result<bool, ProbeError> {
    let mut child = Child::spawn(move || {
        // SAFETY: raw arch_prctl with an integer address; the child is thrown away after.
        let ret = unsafe { libc::syscall(libc::SYS_arch_prctl, code, 0usize) };
        // SAFETY: reads the thread's errno location right after the call.
        let errno = unsafe { *libc::__errno_location() };
        raw::exit(if ret == 0 || errno == libc::EEXIST {
            0
        } else {
            1
        })
    })?;
    let status = child.wait_exit()?;
    if !libc::WIFEXITED(status) {
        return Err(missing(format!(
            "arch_prctl probe child died (status {status:#x})"
        )));
    }
    Ok(libc::WEXITSTATUS(status) == 0)
}

/// arch_prctl(ARCH_MAP_VDSO_64): the vDSO can be mapped at a chosen address on restore.
pub fn can_map_vdso() -> ProbeResult {
    if arch_map_vdso(ARCH_MAP_VDSO_64)? {
        Ok(())
    } else {
        Err(missing(
            "Do not have API to map vDSO - will use mremap() to restore vDSO",
        ))
    }
}

/// arch_prctl(ARCH_MAP_VDSO_32): the kernel can map a 32-bit vDSO (needed for compat tasks).
pub fn can_map_compat_vdso() -> ProbeResult {
    if arch_map_vdso(ARCH_MAP_VDSO_32)? {
        Ok(())
    } else {
        Err(missing(
            "the kernel can't map a 32-bit vDSO (ARCH_MAP_VDSO_32)",
        ))
    }
}
