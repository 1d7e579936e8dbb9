//! Restore half: runs in the namespace thread. The limits go first (so objects as big as the
//! dumped ones fit), then each object with its kind's next_id set right before its *get (so
//! it gets its exact id), then the dumped next ids.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use criu_proto::images::{
    IpcDescEntry, IpcMsg, IpcMsgEntry, IpcSemEntry, IpcShmEntry, IpcVarEntry,
};
use criu_proto::{ImageKind, ImageReader};
use criu_sys::sysv_ipc as ipc;
use nix::errno::Errno;

use super::{padding, var, Context, Fail};

type Reader = ImageReader<BufReader<File>>;

/// Copy step for segment contents.
const CHUNK: u64 = 1 << 20;
/// The most semaphores a set of an image may have (the kernel's default semmsl is 32000).
const MAX_NSEMS: u32 = 65536;
/// Bits a hugetlb_flag may have: SHM_HUGETLB and the page size's log2 at bit 26.
const HUGETLB_BITS: u32 = (0x3f << 26) | ipc::SHM_HUGETLB as u32;

/// An image with the length of its file, to check sizes in entries before using them.
struct Image {
    reader: Reader,
    len: u64,
}

impl Image {
    fn open(dir: &Path, kind: &ImageKind, img: Option<u64>) -> Result<Self, Fail> {
        let reader = ImageReader::open(dir, kind, img)?;
        let path = dir.join(kind.file_name(img));
        let len = std::fs::metadata(&path)
            .map_err(|e| Fail::Bad(format!("{}: {e}", path.display())))?
            .len();
        Ok(Image { reader, len })
    }

    fn left(&self) -> u64 {
        self.len.saturating_sub(self.reader.offset())
    }

    /// Checks that `bytes` of payload can still be in the file.
    fn has(&self, what: &str, bytes: u64) -> Result<(), Fail> {
        if bytes > self.left() {
            return Err(Fail::Bad(format!(
                "{}: {what} needs {bytes} bytes, {} left in the image",
                self.reader.path(),
                self.left()
            )));
        }
        Ok(())
    }
}

pub(super) fn read_var(ns_id: u32, dir: &Path) -> Result<IpcVarEntry, Fail> {
    let mut r = ImageReader::open(dir, &ImageKind::IPC_VAR, Some(u64::from(ns_id)))?;
    r.read::<IpcVarEntry>()?
        .ok_or_else(|| Fail::Bad(format!("{}: no entry", r.path())))
}

pub(super) fn restore_all(ns_id: u32, dir: &Path) -> Result<(), Fail> {
    let img = Some(u64::from(ns_id));
    let vars = read_var(ns_id, dir)?;
    var::write_limits(&vars)?;

    let mut shm = Image::open(dir, &ImageKind::IPCNS_SHM, img)?;
    let mut segments = 0;
    while let Some(e) = shm.reader.read::<IpcShmEntry>()? {
        restore_segment(&mut shm, e)?;
        segments += 1;
    }
    let mut msg = Image::open(dir, &ImageKind::IPCNS_MSG, img)?;
    while let Some(e) = msg.reader.read::<IpcMsgEntry>()? {
        restore_queue(&mut msg, e)?;
    }
    let mut sem = Image::open(dir, &ImageKind::IPCNS_SEM, img)?;
    while let Some(e) = sem.reader.read::<IpcSemEntry>()? {
        restore_sem_set(&mut sem, e)?;
    }

    crate::mqueue::restore_ns(ns_id, dir).map_err(|e| Fail::Bad(e.to_string()))?;
    var::write_next_ids(&vars)?;
    // Set now it would destroy the segments before their tasks attach: see restore_rmid_forced.
    if vars.shm_rmid_forced == 0 || segments == 0 {
        var::write_rmid_forced(vars.shm_rmid_forced)?;
    }
    Ok(())
}

/// Creates one object with `get` right after pointing `next_id` at its id; checks the id.
fn create(
    what: &str,
    next_id: &str,
    d: &IpcDescEntry,
    get: impl FnOnce(i32, i32) -> Result<i32, Errno>,
    remove: fn(i32) -> Result<(), Errno>,
) -> Result<i32, Fail> {
    let want = i32::try_from(d.id).map_err(|_| Fail::Bad(format!("{what}: bad id")))?;
    var::write(next_id, &d.id.to_string())?;
    let flags = (d.mode & 0o777) as i32 | ipc::IPC_CREAT | ipc::IPC_EXCL;
    let got = get(d.key as i32, flags).what(|| format!("{what}: cannot create"))?;
    if got != want {
        let _ = remove(got);
        return Err(Fail::Bad(format!("{what}: created with id {got}")));
    }
    Ok(got)
}

fn restore_segment(img: &mut Image, e: IpcShmEntry) -> Result<(), Fail> {
    let d = e.desc;
    let what = format!("shm segment {}", d.id);
    if e.in_pagemaps == Some(true) {
        return Err(Fail::Bad(format!(
            "{what}: contents in pagemap images are not supported"
        )));
    }
    let padded = e.size.saturating_add(padding(e.size, 4));
    img.has(&format!("{what} of {} bytes", e.size), padded)?;
    let huge = e.hugetlb_flag.unwrap_or(0);
    if huge & !HUGETLB_BITS != 0 {
        return Err(Fail::Bad(format!("{what}: bad hugetlb_flag {huge:#x}")));
    }
    let get = |key, flags| ipc::shmget(key, e.size, flags | huge as i32);
    let id = create(&what, "kernel/shm_next_id", &d, get, ipc::shm_remove)?;
    ipc::shm_set(id, d.uid, d.gid, d.mode & 0o777).what(|| format!("{what}: cannot set owner"))?;

    let mut at = ipc::ShmAttach::new(id, false).what(|| format!("{what}: cannot attach"))?;
    let mut off = 0u64;
    while off < e.size {
        let n = CHUNK.min(e.size - off);
        let chunk = img.reader.read_payload(n)?;
        // A new segment reads zero: skipping zero chunks keeps it sparse.
        if chunk.iter().any(|b| *b != 0) {
            at.write(off as usize, &chunk)
                .what(|| format!("{what}: cannot write contents"))?;
        }
        off += n;
    }
    img.reader.read_payload(padding(e.size, 4))?;
    Ok(())
}

fn restore_queue(img: &mut Image, e: IpcMsgEntry) -> Result<(), Fail> {
    let d = e.desc;
    let what = format!("msg queue {}", d.id);
    let id = create(
        &what,
        "kernel/msg_next_id",
        &d,
        ipc::msgget,
        ipc::msg_remove,
    )?;
    let set = |qbytes: u64| {
        ipc::msg_set(id, d.uid, d.gid, d.mode & 0o777, qbytes)
            .what(|| format!("{what}: cannot set owner and qbytes {qbytes}"))
    };
    let now = ipc::msg_stat(id)
        .what(|| format!("{what}: cannot stat"))?
        .qbytes;
    let qbytes = u64::from(e.qbytes);
    // A smaller limit goes after the messages, which it might not let in.
    set(qbytes.max(now))?;
    for index in 0..e.qnum {
        let m: IpcMsg = img
            .reader
            .read()?
            .ok_or_else(|| Fail::Bad(format!("{what}: the image ends before message {index}")))?;
        let msize = u64::from(m.msize);
        img.has(
            &format!("{what}: message {index}"),
            msize + padding(msize, 8),
        )?;
        let text = img.reader.read_payload(msize)?;
        img.reader.read_payload(padding(msize, 8))?;
        let mtype = i64::try_from(m.mtype)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| Fail::Bad(format!("{what}: message {index}: bad type {}", m.mtype)))?;
        ipc::msg_send(id, mtype, &text, ipc::IPC_NOWAIT)
            .what(|| format!("{what}: cannot send message {index} of {msize} bytes"))?;
    }
    if qbytes < now {
        set(qbytes)?;
    }
    Ok(())
}

fn restore_sem_set(img: &mut Image, e: IpcSemEntry) -> Result<(), Fail> {
    let d = e.desc;
    let what = format!("sem set {}", d.id);
    if e.nsems == 0 || e.nsems > MAX_NSEMS {
        return Err(Fail::Bad(format!("{what}: {} semaphores", e.nsems)));
    }
    let bytes = (u64::from(e.nsems) * 2).next_multiple_of(8);
    img.has(&what, bytes)?;
    let nsems = e.nsems as i32;
    let get = |key, flags| ipc::semget(key, nsems, flags);
    let id = create(&what, "kernel/sem_next_id", &d, get, ipc::sem_remove)?;
    ipc::sem_set(id, d.uid, d.gid, d.mode & 0o777).what(|| format!("{what}: cannot set owner"))?;
    let raw = img.reader.read_payload(bytes)?;
    let values: Vec<u16> = raw
        .chunks_exact(2)
        .take(e.nsems as usize)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    ipc::sem_set_values(id, &values).what(|| format!("{what}: cannot set values"))?;
    Ok(())
}
