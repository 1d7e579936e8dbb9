//! Helpers of the ipc tests: sleepers in their own IPC namespace and a snapshot of one.
#![allow(dead_code)]

use std::process::{Child, Command};

use criu_procfs::NsKind;
use criu_sys::sysv_ipc::{self as sys, Perm};

pub fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (they make IPC namespaces)"
    );
}

/// A `sleep` in a new IPC namespace, killed on drop (also when the test fails).
pub struct Sleeper {
    pub pid: i32,
    child: Child,
}

impl Sleeper {
    pub fn start() -> Self {
        let child = Command::new("unshare")
            .args(["--ipc", "sh", "-c", "exec sleep 60"])
            .spawn()
            .expect("cannot run unshare");
        let me = Sleeper {
            pid: child.id() as i32,
            child,
        };
        let ours = std::fs::read_link("/proc/self/ns/ipc").unwrap();
        for _ in 0..500 {
            match std::fs::read_link(format!("/proc/{}/ns/ipc", me.pid)) {
                Ok(theirs) if theirs != ours => return me,
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        panic!("pid {} never got its own IPC namespace", me.pid);
    }

    /// Runs `work` in a thread inside this sleeper's IPC namespace.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        criu_ns::enter::in_namespaces_of(self.pid, &[NsKind::Ipc], work).unwrap()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn set(name: &str, value: &str) {
    std::fs::write(format!("/proc/sys/{name}"), value)
        .unwrap_or_else(|e| panic!("cannot set {name} to {value}: {e}"));
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn perm(key: i32, uid: u32, gid: u32, mode: u32) -> Perm {
    Perm {
        key,
        uid,
        gid,
        cuid: 0,
        cgid: 0,
        mode,
    }
}

pub const SYSCTLS: &[&str] = &[
    "kernel/sem",
    "kernel/msgmax",
    "kernel/msgmnb",
    "kernel/msgmni",
    "kernel/auto_msgmni",
    "kernel/shmmax",
    "kernel/shmall",
    "kernel/shmmni",
    "kernel/shm_rmid_forced",
    "kernel/msg_next_id",
    "kernel/sem_next_id",
    "kernel/shm_next_id",
    "fs/mqueue/queues_max",
    "fs/mqueue/msg_max",
    "fs/mqueue/msgsize_max",
    "fs/mqueue/msg_default",
    "fs/mqueue/msgsize_default",
];

/// Bytes shown by length and a checksum, so a failed comparison stays readable.
#[derive(PartialEq)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sum = self.0.iter().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        });
        write!(f, "{} bytes, fnv {sum:016x}", self.0.len())
    }
}

/// id, perm, qbytes, messages (type, text) in order
pub type Queue = (i32, Perm, u64, Vec<(i64, Bytes)>);

/// Everything the images keep of one namespace, as seen from inside it.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    /// id, perm, contents
    pub shm: Vec<(i32, Perm, Bytes)>,
    /// id, perm, values
    pub sem: Vec<(i32, Perm, Vec<u16>)>,
    pub msg: Vec<Queue>,
    /// POSIX message queues (name, owner, mode, attributes, messages), as the dump reads them.
    pub posix: Vec<criu_proto::images::PosixMqEntry>,
    pub sysctls: Vec<(String, String)>,
}

fn all<S>(
    info: fn() -> Result<(i32, u32), nix::errno::Errno>,
    stat: fn(i32) -> Result<(i32, S), nix::errno::Errno>,
) -> Vec<(i32, S)> {
    let (max, _) = info().unwrap();
    let mut found: Vec<(i32, S)> = (0..=max).filter_map(|i| stat(i).ok()).collect();
    found.sort_by_key(|(id, _)| *id);
    found
}

/// Call inside the namespace (`Sleeper::run(snapshot)`).
pub fn snapshot() -> Snapshot {
    let shm = all(sys::shm_info, sys::shm_stat_index)
        .into_iter()
        .map(|(id, st)| {
            let at = sys::ShmAttach::new(id, true).unwrap();
            let mut data = vec![0u8; at.len()];
            at.read(0, &mut data).unwrap();
            (id, st.perm, Bytes(data))
        })
        .collect();
    let sem = all(sys::sem_info, sys::sem_stat_index)
        .into_iter()
        .map(|(id, st)| (id, st.perm, sys::sem_values(id, st.nsems as usize).unwrap()))
        .collect();
    let msg = all(sys::msg_info, sys::msg_stat_index)
        .into_iter()
        .map(|(id, st)| {
            let max = st.cbytes.max(8192) as usize;
            let msgs = (0..st.qnum as i64)
                .map(|i| sys::msg_receive(id, i, max, true, sys::IPC_NOWAIT).unwrap())
                .map(|(t, m)| (t, Bytes(m)))
                .collect();
            (id, st.perm, st.qbytes, msgs)
        })
        .collect();
    let sysctls = SYSCTLS
        .iter()
        .map(|name| {
            let v = std::fs::read_to_string(format!("/proc/sys/{name}")).unwrap();
            (
                name.to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    Snapshot {
        shm,
        sem,
        msg,
        posix: criu_ns::mqueue::list_ns().unwrap(),
        sysctls,
    }
}
