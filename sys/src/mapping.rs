//! A read-only view of a whole file mapped into criu's memory (page images), so that their
//! bytes go to a task in one copy instead of a read() and a write.

use std::fs::File;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

pub struct FileMapping {
    addr: NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: the mapping is private and read-only; sharing `&[u8]` views across threads is sound.
unsafe impl Send for FileMapping {}
// SAFETY: as above: nothing writes through the mapping.
unsafe impl Sync for FileMapping {}

impl FileMapping {
    /// Maps all of `file` read-only. An empty file gives an empty mapping.
    pub fn new(file: &File) -> std::io::Result<FileMapping> {
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let Some(nz) = NonZeroUsize::new(len) else {
            return Ok(FileMapping {
                addr: NonNull::dangling(),
                len: 0,
            });
        };
        // SAFETY: a fresh private read-only mapping of a file we hold open; the kernel picks
        // the address; the view handed out never outlives `self`, which unmaps it.
        let addr = unsafe {
            nix::sys::mman::mmap(
                None,
                nz,
                nix::sys::mman::ProtFlags::PROT_READ,
                nix::sys::mman::MapFlags::MAP_PRIVATE,
                file,
                0,
            )
        }
        .map_err(std::io::Error::from)?;
        Ok(FileMapping { addr, len })
    }

    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `addr` maps `len` readable bytes for as long as `self` lives. A file that
        // shrinks under us would fault on access; page images are not truncated while read.
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for FileMapping {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: unmapping exactly what `new` mapped; no view outlives `self`.
            let _ = unsafe { nix::sys::mman::munmap(self.addr, self.len) };
        }
    }
}

/// Fresh private anonymous memory of this process, unmapped on drop. No page is there until
/// it is first written (or put there with UFFDIO_COPY): what a restored task's memory is
/// before criu fills it.
pub struct AnonMapping {
    addr: NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: the mapping belongs to this value; `&self` hands out shared views, `&mut self`
// exclusive ones, as for a Vec.
unsafe impl Send for AnonMapping {}
// SAFETY: as above.
unsafe impl Sync for AnonMapping {}

impl AnonMapping {
    /// Maps `len` (> 0) bytes, readable and writable, at an address the kernel picks.
    pub fn new(len: usize) -> std::io::Result<AnonMapping> {
        let nz = NonZeroUsize::new(len).ok_or(std::io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh private anonymous mapping at a kernel-chosen address: it overlaps
        // nothing; `self` unmaps it.
        let addr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                nz,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_PRIVATE,
            )
        }
        .map_err(std::io::Error::from)?;
        Ok(AnonMapping { addr, len })
    }

    /// Its start address (for userfaultfd registration and UFFDIO_COPY).
    pub fn addr(&self) -> u64 {
        self.addr.as_ptr() as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its bytes. Touching a page that a userfaultfd watches and nobody filled blocks.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `addr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, writable, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.addr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for AnonMapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; no view outlives `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.addr, self.len) };
    }
}

/// Runs `f` on the first `len` bytes of `file` mapped shared and writable, then unmaps them:
/// how hugetlbfs files, which refuse write(2), get their contents. `len` must not pass the
/// file's size.
pub fn with_shared_mut<R>(
    file: &File,
    len: usize,
    f: impl FnOnce(&mut [u8]) -> R,
) -> std::io::Result<R> {
    let Some(nz) = NonZeroUsize::new(len) else {
        return Ok(f(&mut []));
    };
    // SAFETY: a fresh shared mapping of a file we hold open, at an address the kernel picks;
    // the slice made from it below lives only during `f`, before the munmap.
    let addr = unsafe {
        nix::sys::mman::mmap(
            None,
            nz,
            nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
            nix::sys::mman::MapFlags::MAP_SHARED,
            file,
            0,
        )
    }
    .map_err(std::io::Error::from)?;
    // SAFETY: `addr` maps `len` writable bytes, used by nothing else in criu until unmapped.
    let bytes = unsafe { std::slice::from_raw_parts_mut(addr.as_ptr().cast::<u8>(), len) };
    let r = f(bytes);
    // SAFETY: unmapping exactly what was mapped above; `bytes` is no longer used.
    unsafe { nix::sys::mman::munmap(addr, len) }.map_err(std::io::Error::from)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    #[test]
    fn a_shared_writable_mapping_writes_the_file() {
        use std::io::Read;
        let mut f = tempfile::tempfile().unwrap();
        f.set_len(8192).unwrap();
        super::with_shared_mut(&f, 8192, |b| b[4096..4101].copy_from_slice(b"hello")).unwrap();
        let mut all = Vec::new();
        f.read_to_end(&mut all).unwrap();
        assert_eq!(&all[4096..4101], b"hello");
        assert!(all[..4096].iter().all(|&b| b == 0));
    }

    #[test]
    fn anonymous_memory_is_filled_by_uffdio_copy() {
        let uffd = crate::uffd::Userfault::for_this_process().unwrap();
        let len = 4 * 4096;
        let mut m = super::AnonMapping::new(len).unwrap();
        uffd.register(m.addr(), len as u64).unwrap();
        let src: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        uffd.copy(m.addr(), &src).unwrap();
        uffd.unregister(m.addr(), len as u64).unwrap();
        assert_eq!(m.bytes(), &src[..]);
        m.bytes_mut()[0] = 7;
        assert_eq!(m.bytes()[0], 7);
    }

    #[test]
    fn maps_the_file_bytes() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"page image").unwrap();
        let m = super::FileMapping::new(&f).unwrap();
        assert_eq!(m.bytes(), b"page image");
        let empty = tempfile::tempfile().unwrap();
        assert!(super::FileMapping::new(&empty).unwrap().bytes().is_empty());
    }
}
