//! Mount probes, each run in a private mount namespace on a scratch tmpfs over /tmp, so no
//! mount or file reaches the host: autofs pipe_ino, MOVE_MOUNT_SET_GROUP, overlayfs in maps.

use super::namespaces::in_new_namespaces;
use super::{check_ret, missing, sys, ProbeError, ProbeResult};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::os::fd::AsRawFd;

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

/// Runs `f` in a new mount namespace with a private tmpfs mounted on /tmp.
fn on_scratch_tmpfs<T: Send>(
    f: impl FnOnce() -> Result<T, ProbeError> + Send,
) -> Result<T, ProbeError> {
    in_new_namespaces(libc::CLONE_NEWNS, || {
        mount(
            Some("criu-check"),
            "/tmp",
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(sys("mount a scratch tmpfs on /tmp"))?;
        mount(
            None::<&str>,
            "/tmp",
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys("make the scratch tmpfs private"))?;
        f()
    })
}

fn mkdir(path: &str) -> Result<(), ProbeError> {
    std::fs::create_dir(path).map_err(|e| sys(format!("mkdir {path}"))(io_errno(e)))
}

/// An autofs mount shows `pipe_ino=` in mountinfo.
pub fn autofs() -> ProbeResult {
    on_scratch_tmpfs(|| {
        mkdir("/tmp/autofs")?;
        let (r, w) = nix::unistd::pipe().map_err(sys("failed to create pipe"))?;
        let opts = format!(
            "fd={},pgrp={},minproto=5,maxproto=5,direct",
            w.as_raw_fd(),
            nix::unistd::getpgrp()
        );
        mount(
            Some("criu"),
            "/tmp/autofs",
            Some("autofs"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(sys("failed to mount autofs"))?;
        let info = std::fs::read_to_string("/proc/thread-self/mountinfo")
            .map_err(|e| sys("read /proc/thread-self/mountinfo")(io_errno(e)));
        let _ = umount2("/tmp/autofs", MntFlags::MNT_DETACH);
        drop((r, w));
        let info = info?;
        let line = info.lines().find(|l| l.contains(" autofs "));
        match line {
            Some(l) if l.contains("pipe_ino=") => Ok(()),
            Some(_) => Err(missing("autofs not supported: mountinfo has no pipe_ino")),
            None => Err(missing("autofs mount not found in mountinfo")),
        }
    })
}

/// move_mount(MOVE_MOUNT_SET_GROUP) copies a shared peer group onto another mount.
pub fn move_mount_set_group() -> ProbeResult {
    const MOVE_MOUNT_SET_GROUP: libc::c_uint = 0x100;
    on_scratch_tmpfs(|| {
        let dir = "/tmp/set-group";
        let sub = "/tmp/set-group/subdir";
        mkdir(dir)?;
        mount(
            Some("criu.move_mount_set_group"),
            dir,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(sys(format!("mount tmpfs on {dir}")))?;
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys(format!("make {dir} private")))?;
        mkdir(sub)?;
        mount(Some(sub), sub, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(sys(format!("bind-mount {sub}")))?;
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .map_err(sys(format!("make {dir} shared")))?;
        // SAFETY: raw move_mount with NUL-terminated paths and integer flags.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                libc::AT_FDCWD,
                c"/tmp/set-group".as_ptr(),
                libc::AT_FDCWD,
                c"/tmp/set-group/subdir".as_ptr(),
                MOVE_MOUNT_SET_GROUP,
            )
        };
        match check_ret(ret) {
            Ok(_) => Ok(()),
            Err(e @ (Errno::EINVAL | Errno::ENOSYS)) => Err(missing(format!(
                "No MOVE_MOUNT_SET_GROUP kernel feature: {e}"
            ))),
            Err(e) => Err(sys("move_mount(MOVE_MOUNT_SET_GROUP)")(e)),
        }
    })
}

/// The device and inode that /proc/self/maps shows for `addr`.
fn maps_dev_ino(addr: usize) -> Result<(u32, u32, u64), ProbeError> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| sys("read /proc/self/maps")(io_errno(e)))?;
    for line in maps.lines() {
        let mut it = line.split_whitespace();
        let range = it.next().unwrap_or("");
        let start = range
            .split('-')
            .next()
            .and_then(|s| usize::from_str_radix(s, 16).ok());
        if start != Some(addr) {
            continue;
        }
        let dev = it.nth(2).unwrap_or("");
        let ino = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let (maj, min) = dev.split_once(':').unwrap_or(("", ""));
        let maj = u32::from_str_radix(maj, 16).unwrap_or(u32::MAX);
        let min = u32::from_str_radix(min, 16).unwrap_or(u32::MAX);
        return Ok((maj, min, ino));
    }
    Err(missing("Unable to find the mapping in /proc/self/maps"))
}

/// A file mapped from overlayfs shows in /proc/self/maps with the device and inode that
/// stat() gives.
pub fn overlayfs_maps() -> ProbeResult {
    on_scratch_tmpfs(|| {
        for d in ["/tmp/l", "/tmp/u", "/tmp/w", "/tmp/m"] {
            mkdir(d)?;
        }
        mount(
            Some("test"),
            "/tmp/m",
            Some("overlay"),
            MsFlags::empty(),
            Some("lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w"),
        )
        .map_err(sys("Unable to mount overlayfs"))?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open("/tmp/m/test")
            .map_err(|e| sys("Unable to open a test file on overlayfs")(io_errno(e)))?;
        f.set_len(4096)
            .map_err(|e| sys("ftruncate the overlayfs test file")(io_errno(e)))?;
        // SAFETY: maps one page of our own file; unmapped below on every path.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys("Unable to map the test file")(Errno::last()));
        }
        let seen = maps_dev_ino(p as usize);
        // SAFETY: unmaps the page mapped above.
        unsafe { libc::munmap(p, 4096) };
        let (maj, min, ino) = seen?;
        let st = nix::sys::stat::fstat(&f).map_err(sys("stat the overlayfs test file"))?;
        let (smaj, smin) = (libc::major(st.st_dev), libc::minor(st.st_dev));
        if (maj, min, ino) == (smaj, smin, st.st_ino) {
            Ok(())
        } else {
            Err(missing(format!(
                "unmatched dev:ino {maj:x}:{min:x}:{ino:x} (expected {smaj:x}:{smin:x}:{:x})",
                st.st_ino
            )))
        }
    })
}
