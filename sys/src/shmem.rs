//! Shared memory objects that criu creates once and every restored task maps.

use std::os::fd::OwnedFd;

/// A new memfd named `name`, close-on-exec, sealable; `hugetlb` is 0 or MFD_HUGETLB with its
/// page size bits (memfd.img's hugetlb_flag).
pub fn memfd(name: &str, hugetlb: u32) -> std::io::Result<OwnedFd> {
    let flags = nix::sys::memfd::MFdFlags::MFD_CLOEXEC
        | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING
        | nix::sys::memfd::MFdFlags::from_bits_retain(hugetlb as libc::c_uint);
    nix::sys::memfd::memfd_create(name, flags).map_err(std::io::Error::from)
}

/// Anonymous shared memory of `size` bytes (what `mmap(MAP_SHARED|MAP_ANONYMOUS)` creates,
/// shown as `/dev/zero (deleted)`), as an fd: mapped once here, opened through
/// /proc/self/map_files, then unmapped.
pub fn anonymous_shared(size: u64) -> std::io::Result<OwnedFd> {
    let len = std::num::NonZeroUsize::new(size.max(4096) as usize)
        .ok_or(std::io::ErrorKind::InvalidInput)?;
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing; nothing else
    // refers to it and it is unmapped below.
    let addr = unsafe {
        nix::sys::mman::mmap_anonymous(
            None,
            len,
            nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
            nix::sys::mman::MapFlags::MAP_SHARED,
        )
    }
    .map_err(std::io::Error::from)?;
    let start = addr.as_ptr() as usize;
    let path = format!("/proc/self/map_files/{:x}-{:x}", start, start + len.get());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path);
    // SAFETY: the mapping made above, of `len` bytes, used by nobody.
    let unmapped = unsafe { nix::sys::mman::munmap(addr, len.get()) };
    let file = file?;
    unmapped.map_err(std::io::Error::from)?;
    Ok(OwnedFd::from(file))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};

    #[test]
    fn anonymous_shared_memory_is_a_readable_writable_file() {
        let fd = super::anonymous_shared(8192).unwrap();
        let mut f = std::fs::File::from(fd);
        f.write_all(b"hello").unwrap();
        f.rewind().unwrap();
        let mut buf = [0u8; 5];
        f.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let link = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&f)
        ))
        .unwrap();
        assert!(link.to_string_lossy().starts_with("/dev/zero"), "{link:?}");
    }

    #[test]
    fn memfd_has_its_name() {
        let fd = super::memfd("criu-test", 0).unwrap();
        let link = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .unwrap();
        assert!(
            link.to_string_lossy().contains("memfd:criu-test"),
            "{link:?}"
        );
    }
}
