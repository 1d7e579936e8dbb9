//! System V IPC of one namespace dumped and restored into another (needs root).

mod common;

use common::*;
use criu_ns::ipc;
use criu_proto::images::{IpcDescEntry, IpcMsg, IpcMsgEntry, IpcSemEntry, IpcShmEntry};
use criu_proto::{ImageKind, ImageWriter};
use criu_sys::sysv_ipc as sys;

/// Objects and sysctls that differ from a fresh namespace's in every way the image keeps.
fn populate() {
    set("kernel/msgmnb", "32768");
    set("kernel/sem", "250 32000 40 128");
    set("fs/mqueue/msg_max", "20");

    set("kernel/shm_next_id", "65538");
    let keyed = sys::shmget(0x1234, 5000, sys::IPC_CREAT | 0o640).unwrap();
    assert_eq!(keyed, 65538);
    sys::shm_set(keyed, 1000, 2000, 0o640).unwrap();
    let mut at = sys::ShmAttach::new(keyed, false).unwrap();
    at.write(0, &pattern(5000, 3)).unwrap();
    drop(at);

    set("kernel/shm_next_id", "100");
    let private = sys::shmget(sys::IPC_PRIVATE, 3 * 4096, sys::IPC_CREAT | 0o600).unwrap();
    let mut at = sys::ShmAttach::new(private, false).unwrap();
    at.write(8190, b"across a page").unwrap();
    drop(at);

    set("kernel/sem_next_id", "7");
    let sem = sys::semget(0x5678, 3, sys::IPC_CREAT | 0o660).unwrap();
    sys::sem_set_values(sem, &[1, 300, 32767]).unwrap();
    sys::sem_set(sem, 0, 3000, 0o664).unwrap();

    let q = sys::msgget(0x9abc, sys::IPC_CREAT | 0o620).unwrap();
    sys::msg_send(q, 1, b"first", sys::IPC_NOWAIT).unwrap();
    sys::msg_send(q, 42, b"", sys::IPC_NOWAIT).unwrap();
    sys::msg_send(q, 7, &pattern(3000, 5), sys::IPC_NOWAIT).unwrap();
    sys::msg_set(q, 4000, 5000, 0o620, 20000).unwrap();

    // POSIX message queues: one bigger than a fresh namespace allows (msg_max 20 above).
    let big = criu_sys::mqueue::open("big", libc::O_RDWR | libc::O_CREAT, 0o640, Some((15, 100)))
        .unwrap();
    for (prio, text) in [
        (1u32, &b"one"[..]),
        (9, b"nine"),
        (1, b"one-again"),
        (0, b""),
    ] {
        criu_sys::mqueue::send(std::os::fd::AsFd::as_fd(&big), text, prio).unwrap();
    }
    nix::unistd::fchown(&big, Some(1000.into()), Some(2000.into())).unwrap();
    drop(criu_sys::mqueue::open("empty", libc::O_RDONLY | libc::O_CREAT, 0o600, None).unwrap());

    // Left set: the dump keeps them and the restore writes them last.
    set("kernel/shm_next_id", "500");
    set("kernel/msg_next_id", "32769");
}

#[test]
fn ipc_objects_and_sysctls_come_back_the_same() {
    need_root();
    let src = Sleeper::start();
    let dst = Sleeper::start();
    src.run(populate);
    let before = src.run(snapshot);
    let fresh = dst.run(snapshot);
    assert_ne!(
        before, fresh,
        "the source does not differ from a fresh namespace"
    );

    let dir = tempfile::tempdir().unwrap();
    let counts = ipc::dump(src.pid, 9, dir.path()).unwrap();
    assert_eq!(
        counts,
        ipc::IpcCounts {
            shm_segments: 2,
            sem_sets: 1,
            msg_queues: 1,
            posix_queues: 2,
            shm_bytes: 5000 + 3 * 4096,
        }
    );
    for name in [
        "ipcns-var-9.img",
        "ipcns-shm-9.img",
        "ipcns-sem-9.img",
        "ipcns-msg-9.img",
    ] {
        assert!(dir.path().join(name).exists(), "{name} missing");
    }
    // The dump changed nothing.
    assert_eq!(src.run(snapshot), before);

    ipc::restore(dst.pid, 9, dir.path()).unwrap();
    let after = dst.run(snapshot);
    assert_eq!(after, before);

    // And the values themselves, not only their equality.
    let shm = &after.shm;
    assert_eq!(shm.len(), 2);
    assert_eq!(
        (shm[0].0, shm[0].1.key, shm[0].1.mode & 0o777),
        (100, 0, 0o600)
    );
    assert_eq!(&shm[0].2 .0[8190..8203], b"across a page");
    assert_eq!(
        (shm[1].0, shm[1].1.key, shm[1].1.uid, shm[1].1.gid),
        (65538, 0x1234, 1000, 2000)
    );
    assert_eq!(shm[1].2 .0, pattern(5000, 3));
    assert_eq!(
        after.sem,
        vec![(7, perm(0x5678, 0, 3000, 0o664), vec![1, 300, 32767])]
    );
    let (_, qperm, qbytes, msgs) = &after.msg[0];
    assert_eq!(
        (qperm.key, qperm.uid, qperm.gid, *qbytes),
        (0x9abc, 4000, 5000, 20000)
    );
    let types: Vec<(i64, usize)> = msgs.iter().map(|(t, m)| (*t, m.0.len())).collect();
    assert_eq!(types, vec![(1, 5), (42, 0), (7, 3000)]);
    let posix: Vec<_> = after
        .posix
        .iter()
        .map(|q| (q.name.as_str(), q.uid, q.gid, q.mode, q.maxmsg, q.msgsize))
        .collect();
    assert_eq!(
        posix,
        vec![
            ("big", 1000, 2000, 0o640, 15, 100),
            ("empty", 0, 0, 0o600, 10, 8192)
        ]
    );
    let texts: Vec<(u32, &[u8])> = after.posix[0]
        .msgs
        .iter()
        .map(|m| (m.prio, &m.data[..]))
        .collect();
    assert_eq!(
        texts,
        vec![(9, &b"nine"[..]), (1, b"one"), (1, b"one-again"), (0, b"")]
    );
    assert!(after
        .sysctls
        .contains(&("kernel/msgmnb".into(), "32768".into())));
    assert!(after
        .sysctls
        .contains(&("kernel/shm_next_id".into(), "500".into())));
    assert!(after
        .sysctls
        .contains(&("kernel/sem_next_id".into(), "-1".into())));
}

#[test]
fn a_hugetlb_segment_comes_back_on_huge_pages() {
    need_root();
    let free = std::fs::read_to_string("/proc/meminfo").unwrap();
    let free: u64 = free
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    assert!(
        free >= 2,
        "needs 2 free huge pages (vm.nr_hugepages), {free} free"
    );
    let src = Sleeper::start();
    let dst = Sleeper::start();
    src.run(|| {
        let id = sys::shmget(0x4242, 5000, sys::IPC_CREAT | sys::SHM_HUGETLB | 0o600).unwrap();
        let mut at = sys::ShmAttach::new(id, false).unwrap();
        at.write(0, &pattern(5000, 9)).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    ipc::dump(src.pid, 1, dir.path()).unwrap();
    let mut r =
        criu_proto::ImageReader::open(dir.path(), &criu_proto::ImageKind::IPCNS_SHM, Some(1))
            .unwrap();
    let e: criu_proto::images::IpcShmEntry = r.read().unwrap().unwrap();
    let page = hugepage_size();
    assert_eq!(e.hugetlb_flag, Some((page.trailing_zeros() << 26) | 0o4000));
    ipc::restore(dst.pid, 1, dir.path()).unwrap();
    assert_eq!(dst.run(snapshot), src.run(snapshot));
    let huge_after = dst.run(|| {
        let at = sys::ShmAttach::new(dst_first_shm(), true).unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps
            .lines()
            .find(|l| l.starts_with(&format!("{:x}-", at.addr())))
            .unwrap()
            .to_string();
        let (a, b) = line
            .split_whitespace()
            .next()
            .unwrap()
            .split_once('-')
            .unwrap();
        u64::from_str_radix(b, 16).unwrap() - u64::from_str_radix(a, 16).unwrap()
    });
    assert_eq!(
        huge_after, page,
        "the restored segment is not on huge pages"
    );
}

fn dst_first_shm() -> i32 {
    let (max, _) = sys::shm_info().unwrap();
    (0..=max)
        .find_map(|i| sys::shm_stat_index(i).ok())
        .unwrap()
        .0
}

fn hugepage_size() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
        .unwrap();
    kb * 1024
}

#[test]
fn a_truncated_or_hostile_image_is_an_error() {
    need_root();
    let src = Sleeper::start();
    src.run(populate);
    let dir = tempfile::tempdir().unwrap();
    ipc::dump(src.pid, 3, dir.path()).unwrap();

    // Cut inside the contents of the last segment (the one at the highest index).
    let shm = dir.path().join("ipcns-shm-3.img");
    let len = std::fs::metadata(&shm).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&shm).unwrap();
    f.set_len(len - 100).unwrap();
    let dst = Sleeper::start();
    let err = ipc::restore(dst.pid, 3, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("ipc namespace of pid {}", dst.pid)),
        "{err}"
    );
    assert!(err.contains("shm segment 100 of 12288 bytes"), "{err}");

    // A segment far larger than its image: refused before anything is created.
    let mut w = ImageWriter::create(dir.path(), &ImageKind::IPCNS_SHM, Some(3)).unwrap();
    w.write(&IpcShmEntry {
        desc: desc(5),
        size: 1 << 40,
        in_pagemaps: None,
        hugetlb_flag: None,
    })
    .unwrap();
    w.finish().unwrap();
    let dst = Sleeper::start();
    let err = ipc::restore(dst.pid, 3, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shm segment 5") && err.contains("left in the image"),
        "{err}"
    );
    assert!(dst.run(snapshot).shm.is_empty());

    // A huge semaphore count, and a message longer than the file.
    ImageWriter::create(dir.path(), &ImageKind::IPCNS_SHM, Some(3))
        .unwrap()
        .finish()
        .unwrap();
    let mut w = ImageWriter::create(dir.path(), &ImageKind::IPCNS_SEM, Some(3)).unwrap();
    w.write(&IpcSemEntry {
        desc: desc(6),
        nsems: 10_000_000,
    })
    .unwrap();
    w.finish().unwrap();
    let dst = Sleeper::start();
    let err = ipc::restore(dst.pid, 3, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("sem set 6: 10000000 semaphores"), "{err}");

    let mut w = ImageWriter::create(dir.path(), &ImageKind::IPCNS_MSG, Some(3)).unwrap();
    w.write(&IpcMsgEntry {
        desc: desc(8),
        qbytes: 16384,
        qnum: 1,
    })
    .unwrap();
    w.write(&IpcMsg {
        mtype: 1,
        msize: u32::MAX,
    })
    .unwrap();
    w.finish().unwrap();
    let dst = Sleeper::start();
    let err = ipc::restore(dst.pid, 3, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("msg queue 8: message 0"), "{err}");

    // No image at all.
    let empty = tempfile::tempdir().unwrap();
    let err = ipc::restore(dst.pid, 3, empty.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ipcns-var-3.img"), "{err}");
}

fn desc(id: u32) -> IpcDescEntry {
    IpcDescEntry {
        key: 0,
        uid: 0,
        gid: 0,
        cuid: 0,
        cgid: 0,
        mode: 0o600,
        id,
    }
}
