//! Parsers for the /proc files a dump reads. Each parser takes text (or bytes) so that it can be
//! tested on captured samples; thin `read_*` functions open the real files of a pid (or a
//! thread). Errors name the file and what was wrong; odd input never panics.
//!
//! One module per file family: memory (`maps`, `smaps`, `pagemap`), task state (`stat`,
//! `status`, `limits`, `values`, `timers`), the tree (`task`), files (`fd`, `fdinfo`, `locks`),
//! and the environment (`mountinfo`, `cgroup`, `ns`).

pub mod error;
mod read;
mod text;

pub mod cgroup;
pub mod fd;
pub mod fdinfo;
pub mod idmap;
pub mod limits;
pub mod locks;
pub mod maps;
pub mod mountinfo;
pub mod ns;
pub mod pagemap;
pub mod smaps;
pub mod stat;
pub mod status;
pub mod task;
pub mod timers;
pub mod values;

pub use cgroup::{read_cgroup, read_thread_cgroup, CgroupEntry};
pub use error::{ParseError, ProcError, Result};
pub use fd::{parse_fd_target, read_fds, FdTarget};
pub use fdinfo::{read_fdinfo, FdInfo};
pub use idmap::{read_id_map, IdExtent, IdMap};
pub use limits::{read_limits, Rlimit, RLIM_INFINITY};
pub use locks::{read_locks, FileLock, LockKind, LockMode, LockType};
pub use maps::{read_map_files, read_maps, MapFile, Vma, VmaName, VmaPerms};
pub use mountinfo::{read_mountinfo, MountInfo};
pub use ns::{read_ns, read_ns_links, NsKind, NsLink};
pub use pagemap::{PageRun, Pagemap, PagemapEntry, PAGE_SIZE};
pub use read::{pid_path, tid_path};
pub use smaps::{read_smaps, SmapsEntry, VmFlags};
pub use stat::{read_stat, read_thread_stat, Stat};
pub use status::{pid_seen_by, read_status, read_thread_status, Status};
pub use task::{read_auxv, read_children, read_cmdline, read_environ, read_task_ids};
pub use timers::{read_timers, PosixTimer};
pub use values::{
    read_comm, read_loginuid, read_oom_score_adj, read_personality, read_timerslack_ns,
};
