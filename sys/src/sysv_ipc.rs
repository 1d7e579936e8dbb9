//! System V IPC (shm, sem, msg): thin safe wrappers over the glibc calls. They act on the IPC
//! namespace of the calling thread.

use nix::errno::Errno;

use crate::ret::check;

/// From linux/shm.h; the libc crate lacks them.
const SHM_STAT: libc::c_int = 13;
const SHM_INFO: libc::c_int = 14;
/// Mode bit of a segment removed while still attached (linux/shm.h).
pub const SHM_DEST: u32 = 0o1000;
pub use libc::{IPC_CREAT, IPC_EXCL, IPC_NOWAIT, IPC_PRIVATE, SHM_HUGETLB};

/// Owner, creator and mode of one object, as IPC_STAT gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub mode: u32,
}

impl Perm {
    fn from(p: &libc::ipc_perm) -> Self {
        Perm {
            key: p.__key,
            uid: p.uid,
            gid: p.gid,
            cuid: p.cuid,
            cgid: p.cgid,
            mode: p.mode as u32,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ShmStat {
    pub perm: Perm,
    pub size: u64,
    pub nattch: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct SemStat {
    pub perm: Perm,
    pub nsems: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct MsgStat {
    pub perm: Perm,
    pub qnum: u64,
    pub qbytes: u64,
    /// Bytes queued now: no queued message is longer.
    pub cbytes: u64,
}

/// The highest index in use and the number of segments (SHM_INFO).
pub fn shm_info() -> Result<(i32, u32), Errno> {
    // struct shm_info: an int and five unsigned longs; used_ids is the int.
    let mut info = [0u64; 16];
    // SAFETY: SHM_INFO writes a struct shm_info (48 bytes) into the 128-byte buffer.
    let max = check(unsafe { libc::shmctl(0, SHM_INFO, info.as_mut_ptr().cast()) })?;
    Ok((max, info[0] as u32))
}

fn shm_ctl(id: i32, cmd: libc::c_int, ds: &mut libc::shmid_ds) -> Result<i32, Errno> {
    // SAFETY: IPC_STAT, SHM_STAT and IPC_SET read or write one shmid_ds, which `ds` is.
    check(unsafe { libc::shmctl(id, cmd, ds) })
}

fn shm_ds(id: i32, cmd: libc::c_int) -> Result<(i32, libc::shmid_ds), Errno> {
    // SAFETY: shmid_ds is plain integers, valid when zeroed.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    let ret = shm_ctl(id, cmd, &mut ds)?;
    Ok((ret, ds))
}

fn shm_stat_of(ds: &libc::shmid_ds) -> ShmStat {
    ShmStat {
        perm: Perm::from(&ds.shm_perm),
        size: ds.shm_segsz as u64,
        nattch: ds.shm_nattch,
    }
}

/// The id and state of the segment at kernel index `index` (SHM_STAT); EINVAL for a free slot.
pub fn shm_stat_index(index: i32) -> Result<(i32, ShmStat), Errno> {
    let (id, ds) = shm_ds(index, SHM_STAT)?;
    Ok((id, shm_stat_of(&ds)))
}

pub fn shm_stat(id: i32) -> Result<ShmStat, Errno> {
    Ok(shm_stat_of(&shm_ds(id, libc::IPC_STAT)?.1))
}

/// Sets owner and the permission bits of a segment (IPC_SET).
pub fn shm_set(id: i32, uid: u32, gid: u32, mode: u32) -> Result<(), Errno> {
    let (_, mut ds) = shm_ds(id, libc::IPC_STAT)?;
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = mode as u16;
    shm_ctl(id, libc::IPC_SET, &mut ds).map(drop)
}

pub fn shm_remove(id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID reads nothing from the buffer argument.
    check(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

pub fn shmget(key: i32, size: u64, flags: i32) -> Result<i32, Errno> {
    let size = usize::try_from(size).map_err(|_| Errno::EINVAL)?;
    // SAFETY: shmget takes only integers.
    check(unsafe { libc::shmget(key, size, flags) })
}

/// A segment attached to this process; detached on drop.
pub struct ShmAttach {
    addr: *mut libc::c_void,
    len: usize,
}

impl ShmAttach {
    /// Attaches segment `id` (read-only or read-write) at an address the kernel picks.
    pub fn new(id: i32, read_only: bool) -> Result<Self, Errno> {
        let len = usize::try_from(shm_stat(id)?.size).map_err(|_| Errno::EINVAL)?;
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: a new mapping at an address of the kernel's choosing; it replaces nothing.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if addr as isize == -1 {
            return Err(Errno::last());
        }
        Ok(ShmAttach { addr, len })
    }

    pub fn addr(&self) -> usize {
        self.addr as usize
    }

    /// Size of the segment when attached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `buf.len()` bytes from `offset` of the segment.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Errno> {
        let end = offset.checked_add(buf.len()).ok_or(Errno::EINVAL)?;
        if end > self.len {
            return Err(Errno::EINVAL);
        }
        // SAFETY: [offset, end) lies in the attached segment, which stays mapped while
        // `self` lives; a byte copy of shared memory others may write only sees their bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.addr.cast::<u8>().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }

    /// Copies `data` to `offset` of the segment (attached read-write).
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), Errno> {
        let end = offset.checked_add(data.len()).ok_or(Errno::EINVAL)?;
        if end > self.len {
            return Err(Errno::EINVAL);
        }
        // SAFETY: as in `read`; a read-only attach faults, which is the caller's promise.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.addr.cast::<u8>().add(offset),
                data.len(),
            )
        };
        Ok(())
    }
}

impl Drop for ShmAttach {
    fn drop(&mut self) {
        // SAFETY: the address shmat returned; nothing refers to the mapping after this.
        unsafe { libc::shmdt(self.addr) };
    }
}

/// The highest index in use and the number of semaphore sets (SEM_INFO).
pub fn sem_info() -> Result<(i32, u32), Errno> {
    // SAFETY: seminfo is plain integers, valid when zeroed.
    let mut info: libc::seminfo = unsafe { std::mem::zeroed() };
    let ptr: *mut libc::seminfo = &mut info;
    // SAFETY: SEM_INFO writes one struct seminfo through the semun pointer.
    let max = check(unsafe { libc::semctl(0, 0, libc::SEM_INFO, ptr) })?;
    Ok((max, info.semusz as u32))
}

fn sem_ds(id: i32, cmd: libc::c_int) -> Result<(i32, libc::semid_ds), Errno> {
    // SAFETY: semid_ds is plain integers, valid when zeroed.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    let ptr: *mut libc::semid_ds = &mut ds;
    // SAFETY: IPC_STAT and SEM_STAT write one semid_ds through the semun pointer.
    let ret = check(unsafe { libc::semctl(id, 0, cmd, ptr) })?;
    Ok((ret, ds))
}

fn sem_stat_of(ds: &libc::semid_ds) -> SemStat {
    SemStat {
        perm: Perm::from(&ds.sem_perm),
        nsems: ds.sem_nsems,
    }
}

/// The id and state of the set at kernel index `index` (SEM_STAT); EINVAL for a free slot.
pub fn sem_stat_index(index: i32) -> Result<(i32, SemStat), Errno> {
    let (id, ds) = sem_ds(index, libc::SEM_STAT)?;
    Ok((id, sem_stat_of(&ds)))
}

pub fn sem_stat(id: i32) -> Result<SemStat, Errno> {
    Ok(sem_stat_of(&sem_ds(id, libc::IPC_STAT)?.1))
}

pub fn sem_set(id: i32, uid: u32, gid: u32, mode: u32) -> Result<(), Errno> {
    let (_, mut ds) = sem_ds(id, libc::IPC_STAT)?;
    ds.sem_perm.uid = uid;
    ds.sem_perm.gid = gid;
    ds.sem_perm.mode = mode as u16;
    let ptr: *mut libc::semid_ds = &mut ds;
    // SAFETY: IPC_SET reads one semid_ds through the semun pointer.
    check(unsafe { libc::semctl(id, 0, libc::IPC_SET, ptr) }).map(drop)
}

pub fn sem_remove(id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID takes no semun argument.
    check(unsafe { libc::semctl(id, 0, libc::IPC_RMID) }).map(drop)
}

pub fn semget(key: i32, nsems: i32, flags: i32) -> Result<i32, Errno> {
    // SAFETY: semget takes only integers.
    check(unsafe { libc::semget(key, nsems, flags) })
}

/// Every value of set `id`, one GETVAL each: no buffer sized by a count that could change.
pub fn sem_values(id: i32, nsems: usize) -> Result<Vec<u16>, Errno> {
    (0..nsems)
        .map(|i| {
            let i = i32::try_from(i).map_err(|_| Errno::EINVAL)?;
            // SAFETY: GETVAL takes no semun argument.
            check(unsafe { libc::semctl(id, i, libc::GETVAL) }).map(|v| v as u16)
        })
        .collect()
}

/// Sets every value of set `id` at once (SETALL); `values` must hold exactly its nsems.
pub fn sem_set_values(id: i32, values: &[u16]) -> Result<(), Errno> {
    if sem_stat(id)?.nsems != values.len() as u64 {
        return Err(Errno::EINVAL);
    }
    let ptr = values.as_ptr();
    // SAFETY: SETALL reads nsems u16 through the semun pointer, and `values` has that many
    // (checked just above; a set's nsems never changes).
    check(unsafe { libc::semctl(id, 0, libc::SETALL, ptr) }).map(drop)
}

/// The highest index in use and the number of queues (MSG_INFO).
pub fn msg_info() -> Result<(i32, u32), Errno> {
    // SAFETY: msginfo is plain integers, valid when zeroed.
    let mut info: libc::msginfo = unsafe { std::mem::zeroed() };
    let ptr: *mut libc::msginfo = &mut info;
    // SAFETY: MSG_INFO writes one struct msginfo, passed where a msqid_ds pointer goes.
    let max = check(unsafe { libc::msgctl(0, libc::MSG_INFO, ptr.cast()) })?;
    Ok((max, info.msgpool as u32))
}

fn msg_ds(id: i32, cmd: libc::c_int) -> Result<(i32, libc::msqid_ds), Errno> {
    // SAFETY: msqid_ds is plain integers, valid when zeroed.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT and MSG_STAT write one msqid_ds.
    let ret = check(unsafe { libc::msgctl(id, cmd, &mut ds) })?;
    Ok((ret, ds))
}

fn msg_stat_of(ds: &libc::msqid_ds) -> MsgStat {
    MsgStat {
        perm: Perm::from(&ds.msg_perm),
        qnum: ds.msg_qnum,
        qbytes: ds.msg_qbytes,
        cbytes: ds.__msg_cbytes,
    }
}

/// The id and state of the queue at kernel index `index` (MSG_STAT); EINVAL for a free slot.
pub fn msg_stat_index(index: i32) -> Result<(i32, MsgStat), Errno> {
    let (id, ds) = msg_ds(index, libc::MSG_STAT)?;
    Ok((id, msg_stat_of(&ds)))
}

pub fn msg_stat(id: i32) -> Result<MsgStat, Errno> {
    Ok(msg_stat_of(&msg_ds(id, libc::IPC_STAT)?.1))
}

/// Sets owner, permission bits and the byte limit of a queue (IPC_SET; raising qbytes over
/// kernel.msgmnb needs CAP_SYS_RESOURCE).
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> Result<(), Errno> {
    let (_, mut ds) = msg_ds(id, libc::IPC_STAT)?;
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    ds.msg_perm.mode = mode as u16;
    ds.msg_qbytes = qbytes;
    // SAFETY: IPC_SET reads one msqid_ds.
    check(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

pub fn msg_remove(id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID reads nothing from the buffer argument.
    check(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

pub fn msgget(key: i32, flags: i32) -> Result<i32, Errno> {
    // SAFETY: msgget takes only integers.
    check(unsafe { libc::msgget(key, flags) })
}

/// Queues one message of type `mtype` (> 0).
pub fn msg_send(id: i32, mtype: i64, data: &[u8], flags: i32) -> Result<(), Errno> {
    // struct msgbuf: a long, then the text; u64 words keep it aligned.
    let mut buf = vec![0u64; 1 + data.len().div_ceil(8)];
    buf[0] = mtype as u64;
    for (word, chunk) in buf[1..].iter_mut().zip(data.chunks(8)) {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        *word = u64::from_ne_bytes(bytes);
    }
    // SAFETY: msgsnd reads a long and `data.len()` bytes after it, all inside `buf`.
    check(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), data.len(), flags) }).map(drop)
}

/// Receives a message: with `copy` (MSG_COPY) the one at index `typ` is copied and stays
/// queued, else as msgrcv's `msgtyp` says. Gives its type and text; `max` bounds the text.
pub fn msg_receive(
    id: i32,
    typ: i64,
    max: usize,
    copy: bool,
    flags: i32,
) -> Result<(i64, Vec<u8>), Errno> {
    let mut buf = vec![0u64; 1 + max.div_ceil(8)];
    let flags = flags | if copy { libc::MSG_COPY } else { 0 };
    // SAFETY: msgrcv writes a long and at most `max` bytes after it, all inside `buf`.
    let got = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), max, typ, flags) };
    let got = check(got as i64)? as usize;
    let mtype = buf[0] as i64;
    let text: Vec<u8> = buf[1..]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(got)
        .collect();
    Ok((mtype, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_queue_keeps_a_copied_message() {
        let id = msgget(IPC_PRIVATE, IPC_CREAT | 0o600).unwrap();
        msg_send(id, 7, b"hello", IPC_NOWAIT).unwrap();
        let copied = msg_receive(id, 0, 64, true, IPC_NOWAIT);
        let st = msg_stat(id).unwrap();
        let taken = msg_receive(id, 0, 64, false, IPC_NOWAIT);
        msg_remove(id).unwrap();
        assert_eq!(copied, Ok((7, b"hello".to_vec())));
        assert_eq!(st.qnum, 1);
        assert_eq!(taken, Ok((7, b"hello".to_vec())));
    }

    #[test]
    fn shm_and_sem_round_trip_their_contents() {
        let id = shmget(IPC_PRIVATE, 5000, IPC_CREAT | 0o600).unwrap();
        let mut at = ShmAttach::new(id, false).unwrap();
        at.write(4990, b"0123456789").unwrap();
        assert_eq!(at.write(4995, b"0123456789"), Err(Errno::EINVAL));
        let mut back = [0u8; 10];
        at.read(4990, &mut back).unwrap();
        drop(at);
        shm_remove(id).unwrap();
        assert_eq!(&back, b"0123456789");

        let sem = semget(IPC_PRIVATE, 3, IPC_CREAT | 0o600).unwrap();
        let set = sem_set_values(sem, &[1, 2, 3]);
        let values = sem_values(sem, 3);
        sem_remove(sem).unwrap();
        set.unwrap();
        assert_eq!(values, Ok(vec![1, 2, 3]));
    }
}
