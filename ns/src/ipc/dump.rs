//! Dump half: runs in the namespace thread. Objects are found by kernel index with the
//! *_INFO and *_STAT commands, as CRIU does, and read without changing them (shm attached
//! read-only, messages copied with MSG_COPY).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use criu_proto::images::{IpcDescEntry, IpcMsg, IpcMsgEntry, IpcSemEntry, IpcShmEntry};
use criu_proto::{ImageKind, ImageWriter};
use criu_sys::sysv_ipc::{self as ipc, Perm};
use nix::errno::Errno;

use super::{padding, var, Context, Fail, IpcCounts};

type Writer = ImageWriter<BufWriter<File>>;

/// Copy step for segment contents.
const CHUNK: usize = 1 << 20;
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
/// Where the page size's log2 goes in SHM_HUGETLB flags (SHM_HUGE_SHIFT).
const HUGE_SHIFT: u32 = 26;

fn desc(id: i32, p: &Perm) -> IpcDescEntry {
    IpcDescEntry {
        key: p.key as u32,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode,
        id: id as u32,
    }
}

/// Calls `each` with (id, state) for every object of one kind; checks the count the kernel
/// gave, as CRIU does.
fn for_each<S>(
    kind: &str,
    info: fn() -> Result<(i32, u32), Errno>,
    stat: fn(i32) -> Result<(i32, S), Errno>,
    mut each: impl FnMut(i32, S) -> Result<(), Fail>,
) -> Result<u32, Fail> {
    let (max, used) = info().what(|| format!("cannot list {kind}s"))?;
    let mut found = 0;
    for index in 0..=max {
        match stat(index) {
            Err(Errno::EINVAL) => continue,
            Err(e) => {
                return Err(Fail::Kernel(
                    format!("{kind} at index {index}: cannot stat"),
                    e,
                ))
            }
            Ok((id, s)) => each(id, s)?,
        }
        found += 1;
    }
    if found != used {
        return Err(Fail::Bad(format!(
            "{used} {kind}s in the namespace, {found} found (it changed during the dump)"
        )));
    }
    Ok(found)
}

pub(super) fn dump_all(ns_id: u32, dir: &Path) -> Result<IpcCounts, Fail> {
    let img = Some(u64::from(ns_id));
    let vars = var::read()?;
    let mut w = ImageWriter::create(dir, &ImageKind::IPC_VAR, img)?;
    w.write(&vars)?;
    w.finish()?;

    let mut counts = IpcCounts::default();
    // With shm_rmid_forced set, our own shmdt would destroy a segment nobody else attached.
    let forced = vars.shm_rmid_forced;
    if forced != 0 {
        var::write_rmid_forced(0)?;
    }
    let shm = dump_shm(dir, img, &mut counts);
    if forced != 0 {
        var::write_rmid_forced(forced)?;
    }
    shm?;

    let mut w = ImageWriter::create(dir, &ImageKind::IPCNS_MSG, img)?;
    let msgmax = vars.msg_ctlmax as u64;
    counts.msg_queues = for_each("msg queue", ipc::msg_info, ipc::msg_stat_index, |id, st| {
        dump_queue(&mut w, id, &st, msgmax)
    })?;
    w.finish()?;

    let mut w = ImageWriter::create(dir, &ImageKind::IPCNS_SEM, img)?;
    counts.sem_sets = for_each("sem set", ipc::sem_info, ipc::sem_stat_index, |id, st| {
        dump_sem_set(&mut w, id, &st)
    })?;
    w.finish()?;
    counts.posix_queues =
        crate::mqueue::dump_ns(ns_id, dir).map_err(|e| Fail::Bad(e.to_string()))?;
    Ok(counts)
}

fn dump_shm(dir: &Path, img: Option<u64>, counts: &mut IpcCounts) -> Result<(), Fail> {
    let mut w = ImageWriter::create(dir, &ImageKind::IPCNS_SHM, img)?;
    let mut bytes = 0;
    counts.shm_segments = for_each(
        "shm segment",
        ipc::shm_info,
        ipc::shm_stat_index,
        |id, st| {
            bytes += st.size;
            dump_segment(&mut w, id, &st)
        },
    )?;
    counts.shm_bytes = bytes;
    w.finish()?;
    Ok(())
}

fn dump_segment(w: &mut Writer, id: i32, st: &ipc::ShmStat) -> Result<(), Fail> {
    let seg = || format!("shm segment {id}");
    let at = ipc::ShmAttach::new(id, true).what(|| format!("{}: cannot attach", seg()))?;
    if at.len() as u64 != st.size {
        return Err(Fail::Bad(format!(
            "{}: its size changed during the dump",
            seg()
        )));
    }
    let entry = IpcShmEntry {
        desc: desc(id, &st.perm),
        size: st.size,
        in_pagemaps: None,
        hugetlb_flag: hugetlb_flag(&at).map_err(|e| Fail::Bad(format!("{}: {e}", seg())))?,
    };
    w.write(&entry)?;
    let mut buf = vec![0u8; CHUNK.min(at.len())];
    let mut off = 0;
    while off < at.len() {
        let n = CHUNK.min(at.len() - off);
        at.read(off, &mut buf[..n])
            .what(|| format!("{}: cannot read contents", seg()))?;
        w.write_payload(&buf[..n])?;
        off += n;
    }
    w.write_payload(&vec![0u8; padding(st.size, 4) as usize])?;
    Ok(())
}

/// SHM_HUGETLB with the page size, for a segment of hugetlbfs; None for a plain one. Seen
/// through the attached mapping: its file in /proc/self/map_files is on hugetlbfs.
fn hugetlb_flag(at: &ipc::ShmAttach) -> Result<Option<u32>, String> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| format!("cannot read /proc/self/maps: {e}"))?;
    let start = format!("{:x}-", at.addr());
    let range = maps
        .lines()
        .find(|l| l.starts_with(&start))
        .and_then(|l| l.split_whitespace().next())
        .ok_or_else(|| format!("its mapping at {:#x} is not in /proc/self/maps", at.addr()))?;
    let path = format!("/proc/self/map_files/{range}");
    let fs = nix::sys::statfs::statfs(path.as_str()).map_err(|e| format!("{path}: {e}"))?;
    if fs.filesystem_type().0 as i64 != HUGETLBFS_MAGIC {
        return Ok(None);
    }
    let page = fs.block_size() as u64;
    if !page.is_power_of_two() {
        return Err(format!("hugetlb page size {page} is not a power of two"));
    }
    Ok(Some(
        (page.trailing_zeros() << HUGE_SHIFT) | ipc::SHM_HUGETLB as u32,
    ))
}

fn dump_queue(w: &mut Writer, id: i32, st: &ipc::MsgStat, msgmax: u64) -> Result<(), Fail> {
    let queue = || format!("msg queue {id}");
    let too_big =
        |what: &str, v: u64| Fail::Bad(format!("{}: {what} {v} is over 32 bits", queue()));
    let entry = IpcMsgEntry {
        desc: desc(id, &st.perm),
        qbytes: u32::try_from(st.qbytes).map_err(|_| too_big("qbytes", st.qbytes))?,
        qnum: u32::try_from(st.qnum).map_err(|_| too_big("qnum", st.qnum))?,
    };
    w.write(&entry)?;
    // No message is longer than the bytes queued; msgmax covers one sent meanwhile.
    let max = usize::try_from(st.cbytes.max(msgmax)).map_err(|_| too_big("size", st.cbytes))?;
    for index in 0..entry.qnum {
        let (mtype, text) = ipc::msg_receive(id, i64::from(index), max, true, ipc::IPC_NOWAIT)
            .what(|| format!("{}: cannot copy message {index} (MSG_COPY)", queue()))?;
        let msize = text.len() as u64;
        w.write(&IpcMsg {
            mtype: mtype as u64,
            msize: text.len() as u32,
        })?;
        w.write_payload(&text)?;
        w.write_payload(&vec![0u8; padding(msize, 8) as usize])?;
    }
    Ok(())
}

fn dump_sem_set(w: &mut Writer, id: i32, st: &ipc::SemStat) -> Result<(), Fail> {
    let set = || format!("sem set {id}");
    let nsems = u32::try_from(st.nsems)
        .map_err(|_| Fail::Bad(format!("{}: {} semaphores", set(), st.nsems)))?;
    w.write(&IpcSemEntry {
        desc: desc(id, &st.perm),
        nsems,
    })?;
    let values =
        ipc::sem_values(id, nsems as usize).what(|| format!("{}: cannot read values", set()))?;
    let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes.resize(bytes.len().next_multiple_of(8), 0);
    w.write_payload(&bytes)?;
    Ok(())
}
