//! Restore half, inside the task (injected syscalls): the stub's own memory goes, the mm fields
//! and every dumped area come back (pages follow from outside, see `fill`).

use crate::restore::{advice, plan, MapPlan, RestoreMemError};
use crate::vma::VMA_AREA_GUARD;
use criu_proto::images::MmEntry;
use criu_tracee::remote::{words, Remote};
use criu_tracee::RseqConfiguration;

use criu_proto::dump_images::{DumpImages, TaskImages};

fn task_err(pid: i32, what: impl Into<String>) -> RestoreMemError {
    RestoreMemError::Task {
        pid,
        what: what.into(),
    }
}

const TASK_SIZE: u64 = 0x7fff_ffff_f000;
const ARCH_MAP_VDSO_64: u64 = 0x2003;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;

/// Drops what the stub inherited from criu or its parent: its rseq registration, fds and every
/// mapping except the `inherited` areas (see crate::inherited), which it keeps.
pub fn clear_stub(
    r: &mut Remote,
    t: &TaskImages,
    rseq: RseqConfiguration,
    inherited: &[(u64, u64)],
    fd_table_shared: bool,
) -> Result<(), RestoreMemError> {
    let pid = t.pid();
    if rseq.rseq_abi_pointer != 0 {
        let area = (rseq.rseq_abi_pointer, rseq.rseq_abi_size, rseq.signature);
        let (pointer, size, signature) = area;
        let args = [
            pointer,
            u64::from(size),
            RSEQ_FLAG_UNREGISTER,
            u64::from(signature),
        ];
        r.call("rseq(unregister)", libc::SYS_rseq, &args)?;
    }
    // A table shared with the parent was emptied by it, and may hold fds the parent or a
    // sibling is using right now.
    if !fd_table_shared {
        r.call(
            "close_range",
            libc::SYS_close_range,
            &[0, u64::from(u32::MAX), 0],
        )?;
    }
    let (scratch, len) = r.inj.scratch_mapping();
    if let Some(v) =
        t.mm.vmas
            .iter()
            .find(|v| v.start < scratch + len && scratch < v.end)
    {
        return Err(task_err(
            pid,
            format!(
                "scratch area {scratch:#x} overlaps dumped area {:#x}-{:#x}",
                v.start, v.end
            ),
        ));
    }
    let mut keep: Vec<(u64, u64)> = inherited.to_vec();
    keep.push((scratch, scratch + len));
    keep.sort_unstable();
    let mut from = 0;
    for (start, end) in keep.into_iter().chain([(TASK_SIZE, TASK_SIZE)]) {
        if start > from {
            r.call("munmap", libc::SYS_munmap, &[from, start - from])?;
        }
        from = from.max(end);
    }
    Ok(())
}

/// Sets the mm fields (code/data/brk/stack/args/env, auxv, exe file) with PR_SET_MM_MAP. With
/// `exe_inherited` the exe file is left as it is: the task got the right one from its parent,
/// and the kernel refuses to replace an exe file that is still mapped.
pub fn set_mm(
    r: &mut Remote,
    all: &DumpImages,
    mm: &MmEntry,
    pid: i32,
    exe_inherited: bool,
) -> Result<(), RestoreMemError> {
    let exe = all
        .reg_path(mm.exe_file_id)
        .ok_or_else(|| {
            task_err(
                pid,
                format!("exe file id {} not in files.img", mm.exe_file_id),
            )
        })?
        .to_string();
    let exe_fd = if exe_inherited {
        u64::from(u32::MAX)
    } else {
        r.open(&exe, libc::O_RDONLY | libc::O_CLOEXEC)?
    };
    let auxv = words(&mm.mm_saved_auxv);
    let head_len = 13 * 8;
    let mut block = words(&[
        mm.mm_start_code,
        mm.mm_end_code,
        mm.mm_start_data,
        mm.mm_end_data,
        mm.mm_start_brk,
        mm.mm_brk,
        mm.mm_start_stack,
        mm.mm_arg_start,
        mm.mm_arg_end,
        mm.mm_env_start,
        mm.mm_env_end,
    ]);
    // auxv pointer, then auxv_size and exe_fd as u32; the auxv words follow the struct.
    let base = r.arg(&vec![0u8; head_len + auxv.len()])?;
    block.extend_from_slice(&(base + head_len as u64).to_le_bytes());
    block.extend_from_slice(&(auxv.len() as u32).to_le_bytes());
    block.extend_from_slice(&(exe_fd as u32).to_le_bytes());
    block.extend_from_slice(&auxv);
    let at = r.arg(&block)?;
    r.call(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        &[PR_SET_MM, PR_SET_MM_MAP, at, head_len as u64, 0],
    )?;
    if !exe_inherited {
        r.close(exe_fd)?;
    }
    Ok(())
}

/// What criu holds for the areas it hands to a task: each shared memory object (by shmid) and
/// each open file description (by files.img id), as criu's fds.
pub struct Objects<S, D> {
    pub shmem: S,
    pub description: D,
}

/// Maps every dumped VMA at its address but the `inherited` ones, already there (private pages
/// are filled afterwards from outside; shared memory comes already filled from criu through
/// `channel`, and a packet socket's ring is mapped from criu's socket sent the same way:
/// `objects` gives criu's fds of both).
pub fn map_vmas<S, D>(
    r: &mut Remote,
    all: &DumpImages,
    objects: &Objects<S, D>,
    t: &TaskImages,
    channel: &criu_tracee::FdChannel,
    inherited: &[(u64, u64)],
) -> Result<(), RestoreMemError>
where
    S: Fn(u64) -> Option<i32>,
    D: Fn(u32) -> Option<i32>,
{
    let pid = t.pid();
    let shmem = &objects.shmem;
    let mut vdso_start = None;
    for vma in &t.mm.vmas {
        match plan(vma)? {
            MapPlan::Skip | MapPlan::SysvShm { .. } => {}
            MapPlan::Vdso => {
                vdso_start.get_or_insert(vma.start);
            }
            MapPlan::Mmap { addr, len, .. } if inherited.contains(&(addr, addr + len)) => {}
            MapPlan::Mmap {
                addr,
                len,
                prot,
                flags,
                file_id,
                offset,
            } => {
                let fd = match file_id {
                    None => u64::MAX,
                    Some(id) => {
                        let path = all
                            .reg_path(id)
                            .ok_or_else(|| {
                                task_err(
                                    pid,
                                    format!("vma {addr:#x}: file id {id} not in files.img"),
                                )
                            })?
                            .to_string();
                        // A shared mapping of a file opened read-write may be made writable
                        // later by mprotect: its file is opened read-write again.
                        let opened_rdwr = vma
                            .fdflags
                            .is_some_and(|f| f as i32 & libc::O_ACCMODE == libc::O_RDWR);
                        let shared_write = flags & libc::MAP_SHARED as u64 != 0
                            && (prot & libc::PROT_WRITE as u64 != 0 || opened_rdwr);
                        let mode = if shared_write {
                            libc::O_RDWR
                        } else {
                            libc::O_RDONLY
                        };
                        r.open(&path, mode | libc::O_CLOEXEC)?
                    }
                };
                let got = r.call(
                    "mmap",
                    libc::SYS_mmap,
                    &[addr, len, prot, flags, fd, offset],
                )?;
                if file_id.is_some() {
                    r.close(fd)?;
                }
                if got as u64 != addr {
                    return Err(task_err(
                        pid,
                        format!("mmap at {addr:#x} landed at {got:#x}"),
                    ));
                }
                for adv in advice(vma) {
                    r.call("madvise", libc::SYS_madvise, &[addr, len, adv as u64])?;
                }
            }
            MapPlan::Socket {
                addr,
                len,
                prot,
                flags,
                file_id,
                offset,
            } => {
                let socket = (objects.description)(file_id)
                    .filter(|_| all.files.get(&file_id).is_some_and(|f| f.psk.is_some()))
                    .ok_or_else(|| {
                        task_err(
                            pid,
                            format!(
                                "vma {addr:#x}: packet socket {file_id} (its ring's owner) was \
                                 not restored"
                            ),
                        )
                    })?;
                let fd = channel.take(r, socket)?;
                let got = r.try_call(libc::SYS_mmap, &[addr, len, prot, flags, fd, offset])?;
                r.close(fd)?;
                if got < 0 {
                    return Err(task_err(
                        pid,
                        format!(
                            "vma {addr:#x}-{:#x}: mmap of the ring of packet socket {file_id}: \
                             {} (the area must be the socket's whole ring, RX then TX, from \
                             offset 0)",
                            addr + len,
                            std::io::Error::from_raw_os_error(-got as i32)
                        ),
                    ));
                }
                if got as u64 != addr {
                    return Err(task_err(
                        pid,
                        format!("packet ring mmap at {addr:#x} landed at {got:#x}"),
                    ));
                }
                for adv in advice(vma) {
                    r.call("madvise", libc::SYS_madvise, &[addr, len, adv as u64])?;
                }
            }
            MapPlan::Shared {
                addr,
                len,
                prot,
                flags,
                memfd_file,
                shmid,
                offset,
            } => {
                let shmid = match memfd_file {
                    None => shmid,
                    Some(id) => u64::from(
                        all.memfd_inode(id)
                            .ok_or_else(|| {
                                task_err(
                                    pid,
                                    format!(
                                        "vma {addr:#x}: memfd file {id} not in files.img/memfd.img"
                                    ),
                                )
                            })?
                            .shmid,
                    ),
                };
                let object = shmem(shmid).ok_or_else(|| {
                    task_err(
                        pid,
                        format!("vma {addr:#x}: shared memory {shmid} was not created"),
                    )
                })?;
                let fd = channel.take(r, object)?;
                let flags = flags & !(libc::MAP_ANONYMOUS as u64);
                let got = r.call(
                    "mmap(shared)",
                    libc::SYS_mmap,
                    &[addr, len, prot, flags, fd, offset],
                )?;
                r.close(fd)?;
                if got as u64 != addr {
                    return Err(task_err(
                        pid,
                        format!("shared mmap at {addr:#x} landed at {got:#x}"),
                    ));
                }
            }
        }
    }
    // Then the System V segments: an attachment may cover what earlier areas' pieces were.
    let pieces: Vec<MapPlan> =
        t.mm.vmas
            .iter()
            .map(plan)
            .filter(|p| matches!(p, Ok(MapPlan::SysvShm { .. })))
            .collect::<Result<_, _>>()?;
    for (i, piece) in pieces.iter().enumerate() {
        let MapPlan::SysvShm {
            addr,
            len,
            prot,
            shmid,
            attach,
        } = *piece
        else {
            continue;
        };
        // An attachment is writable if any of its pieces (up to the next attachment) is.
        let group = pieces[i..]
            .iter()
            .enumerate()
            .take_while(|(k, p)| *k == 0 || matches!(p, MapPlan::SysvShm { attach: false, .. }));
        let writable = group.into_iter().any(|(_, p)| {
            matches!(p, MapPlan::SysvShm { prot, .. } if prot & libc::PROT_WRITE as u64 != 0)
        });
        attach_sysv(r, pid, (addr, len, prot), (shmid, writable), attach)?;
    }
    if let Some(start) = vdso_start {
        r.call(
            "arch_prctl(ARCH_MAP_VDSO_64)",
            libc::SYS_arch_prctl,
            &[ARCH_MAP_VDSO_64, start],
        )?;
    }
    // Guard ranges (MADV_GUARD_INSTALL) once their areas are there.
    for g in t.mm.vmas.iter().filter(|v| v.status & VMA_AREA_GUARD != 0) {
        r.call(
            "madvise(MADV_GUARD_INSTALL)",
            libc::SYS_madvise,
            &[g.start, g.end - g.start, MADV_GUARD_INSTALL],
        )?;
    }
    Ok(())
}

/// shmat flags.
const SHM_RDONLY: u64 = 0o10000;
const SHM_REMAP: u64 = 0o40000;
const SHM_EXEC: u64 = 0o100000;

/// Attaches segment `shmid` at `addr` (replacing whatever the stub or a parent left there),
/// read-only unless a piece of the attachment is `writable`, then gives the area its
/// protection.
fn attach_sysv(
    r: &mut Remote,
    pid: i32,
    (addr, len, prot): (u64, u64, u64),
    (shmid, writable): (u64, bool),
    attach: bool,
) -> Result<(), RestoreMemError> {
    if attach {
        let mut flags = SHM_REMAP;
        if !writable {
            flags |= SHM_RDONLY;
        }
        if prot & libc::PROT_EXEC as u64 != 0 {
            flags |= SHM_EXEC;
        }
        let got = r.call("shmat", libc::SYS_shmat, &[shmid, addr, flags])?;
        if got as u64 != addr {
            return Err(task_err(
                pid,
                format!("System V segment {shmid} attached at {got:#x}, not {addr:#x}"),
            ));
        }
    }
    r.call(
        "mprotect(System V segment)",
        libc::SYS_mprotect,
        &[addr, len, prot],
    )?;
    Ok(())
}

/// madvise's MADV_GUARD_INSTALL (Linux 6.13).
const MADV_GUARD_INSTALL: u64 = 102;

/// A userfaultfd of the task, held by criu, watching the task's private anonymous areas (but
/// the `inherited` ones, already populated) so that their pages can be put in place with
/// UFFDIO_COPY. `None` when the kernel refuses one (the fill then writes every page the plain
/// way).
pub fn watch_anonymous_memory(
    r: &mut Remote,
    t: &TaskImages,
    inherited: &[(u64, u64)],
) -> Option<(criu_sys::uffd::Userfault, Vec<(u64, u64)>)> {
    let pid = t.host_pid();
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    let fd = r
        .try_call(libc::SYS_userfaultfd, &[flags])
        .ok()
        .filter(|fd| *fd >= 0)?;
    let taken = criu_sys::pidfd::take_fd(pid, fd as i32);
    let _ = r.close(fd as u64);
    let uffd = criu_sys::uffd::Userfault::new(taken.ok()?).ok()?;
    let mut areas = Vec::new();
    for vma in &t.mm.vmas {
        if let Ok(MapPlan::Mmap {
            addr,
            len,
            file_id: None,
            ..
        }) = plan(vma)
        {
            if !inherited.contains(&(addr, addr + len)) && uffd.register(addr, len).is_ok() {
                areas.push((addr, addr + len));
            }
        }
    }
    Some((uffd, areas))
}
