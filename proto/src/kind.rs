//! The table of image kinds: file name, magic, message type and what follows each entry.

use crate::magic::{magic_by_name, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC};

/// What an image holds besides its framed entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Only framed entries.
    None,
    /// Not a protobuf image at all (pages, ip tool dumps, tarballs): no magic, no framing.
    Raw,
    /// A `pagemap_head` entry, then `pagemap_entry` entries.
    Pagemap,
    /// A `ghost_file_entry`, then either raw file content or `ghost_chunk_entry` + data pairs.
    GhostFile,
    /// `pipe_data_entry.bytes` raw bytes follow each entry.
    PipeData,
    /// `sk_packet_entry.length` raw bytes follow each entry.
    SkQueue,
    /// `tcp_stream_entry.inq_len` + `outq_len` raw bytes follow each entry.
    TcpStream,
    /// `bpfmap_data_entry.keys_bytes` + `values_bytes` raw bytes follow each entry.
    BpfMapData,
    /// `ipc_shm_entry.size` bytes, padded to 4, follow each entry (unless `in_pagemaps`).
    IpcShm,
    /// `ipc_sem_entry.nsems` u16 values, padded to 8 bytes, follow each entry.
    IpcSem,
    /// `ipc_msg_entry.qnum` framed `ipc_msg` entries, each followed by `msize` bytes padded
    /// to 8, follow each entry.
    IpcMsg,
}

/// One kind of image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageKind {
    /// crit's name of the kind (the JSON "magic" value), e.g. "CORE".
    pub name: &'static str,
    /// File name; `%u` or `%x` stands for the id (decimal or hex).
    pub pattern: &'static str,
    /// Per-image magic; `None` for raw images.
    pub magic: Option<u32>,
    /// Service images (stats, irmap-cache) start with the service magic.
    pub service: bool,
    /// Protobuf message of the entries (package-less name).
    pub message: &'static str,
    /// What follows the entries.
    pub payload: Payload,
}

const fn kind(
    name: &'static str,
    pattern: &'static str,
    magic: u32,
    message: &'static str,
) -> ImageKind {
    ImageKind {
        name,
        pattern,
        magic: Some(magic),
        service: false,
        message,
        payload: Payload::None,
    }
}

const fn with_payload(k: ImageKind, payload: Payload) -> ImageKind {
    ImageKind { payload, ..k }
}

const fn raw(name: &'static str, pattern: &'static str) -> ImageKind {
    ImageKind {
        name,
        pattern,
        magic: None,
        service: false,
        message: "",
        payload: Payload::Raw,
    }
}

impl ImageKind {
    pub const INVENTORY: Self = kind("INVENTORY", "inventory.img", 0x5831_3116, "inventory_entry");
    pub const FDINFO: Self = kind("FDINFO", "fdinfo-%u.img", 0x5621_3732, "fdinfo_entry");
    pub const PAGEMAP: Self = with_payload(
        kind("PAGEMAP", "pagemap-%u.img", 0x5608_4025, "pagemap_entry"),
        Payload::Pagemap,
    );
    pub const SHMEM_PAGEMAP: Self = with_payload(
        kind(
            "PAGEMAP",
            "pagemap-shmem-%u.img",
            0x5608_4025,
            "pagemap_entry",
        ),
        Payload::Pagemap,
    );
    pub const PAGES: Self = raw("PAGES", "pages-%u.img");
    pub const REG_FILES: Self = kind("REG_FILES", "reg-files.img", 0x5036_3636, "reg_file_entry");
    pub const EXT_FILES: Self = kind("EXT_FILES", "ext-files.img", 0x5925_5641, "ext_file_entry");
    pub const NS_FILES: Self = kind("NS_FILES", "ns-files.img", 0x6139_4011, "ns_file_entry");
    pub const EVENTFD_FILE: Self = kind(
        "EVENTFD_FILE",
        "eventfd.img",
        0x4452_3722,
        "eventfd_file_entry",
    );
    pub const EVENTPOLL_FILE: Self = kind(
        "EVENTPOLL_FILE",
        "eventpoll.img",
        0x4502_3858,
        "eventpoll_file_entry",
    );
    pub const EVENTPOLL_TFD: Self = kind(
        "EVENTPOLL_TFD",
        "eventpoll-tfd.img",
        0x4443_3746,
        "eventpoll_tfd_entry",
    );
    pub const SIGNALFD: Self = kind("SIGNALFD", "signalfd.img", 0x5732_3820, "signalfd_entry");
    pub const INOTIFY_FILE: Self = kind(
        "INOTIFY_FILE",
        "inotify.img",
        0x4842_4431,
        "inotify_file_entry",
    );
    pub const INOTIFY_WD: Self = kind(
        "INOTIFY_WD",
        "inotify-wd.img",
        0x5456_2009,
        "inotify_wd_entry",
    );
    pub const FANOTIFY_FILE: Self = kind(
        "FANOTIFY_FILE",
        "fanotify.img",
        0x5509_6122,
        "fanotify_file_entry",
    );
    pub const FANOTIFY_MARK: Self = kind(
        "FANOTIFY_MARK",
        "fanotify-mark.img",
        0x5650_6035,
        "fanotify_mark_entry",
    );
    pub const CORE: Self = kind("CORE", "core-%u.img", 0x5505_3847, "core_entry");
    pub const IDS: Self = kind("IDS", "ids-%u.img", 0x5443_2030, "task_kobj_ids_entry");
    pub const MM: Self = kind("MM", "mm-%u.img", 0x5749_2820, "mm_entry");
    pub const VMAS: Self = kind("VMAS", "vmas-%u.img", 0x5412_3737, "vma_entry");
    pub const PIPES: Self = kind("PIPES", "pipes.img", 0x5651_3555, "pipe_entry");
    pub const PIPES_DATA: Self = with_payload(
        kind(
            "PIPES_DATA",
            "pipes-data.img",
            0x5645_3709,
            "pipe_data_entry",
        ),
        Payload::PipeData,
    );
    pub const FIFO: Self = kind("FIFO", "fifo.img", 0x5836_4939, "fifo_entry");
    pub const FIFO_DATA: Self = with_payload(
        kind("FIFO_DATA", "fifo-data.img", 0x5933_3054, "pipe_data_entry"),
        Payload::PipeData,
    );
    pub const PSTREE: Self = kind("PSTREE", "pstree.img", 0x5027_3030, "pstree_entry");
    pub const SIGACT: Self = kind("SIGACT", "sigacts-%u.img", 0x5534_4201, "sa_entry");
    pub const UNIXSK: Self = kind("UNIXSK", "unixsk.img", 0x5437_3943, "unix_sk_entry");
    pub const INETSK: Self = kind("INETSK", "inetsk.img", 0x5644_3851, "inet_sk_entry");
    pub const PACKETSK: Self = kind("PACKETSK", "packetsk.img", 0x6045_4618, "packet_sock_entry");
    pub const NETLINK_SK: Self = kind(
        "NETLINK_SK",
        "netlinksk.img",
        0x5800_5614,
        "netlink_sk_entry",
    );
    pub const SK_QUEUES: Self = with_payload(
        kind("SK_QUEUES", "sk-queues.img", 0x5626_4026, "sk_packet_entry"),
        Payload::SkQueue,
    );
    pub const ITIMERS: Self = kind("ITIMERS", "itimers-%u.img", 0x5746_4056, "itimer_entry");
    pub const POSIX_TIMERS: Self = kind(
        "POSIX_TIMERS",
        "posix-timers-%u.img",
        0x5260_3957,
        "posix_timer_entry",
    );
    pub const CREDS: Self = kind("CREDS", "creds-%u.img", 0x5402_3547, "creds_entry");
    pub const UTSNS: Self = kind("UTSNS", "utsns-%u.img", 0x5447_3203, "utsns_entry");
    pub const IPC_VAR: Self = kind("IPC_VAR", "ipcns-var-%u.img", 0x5311_5007, "ipc_var_entry");
    pub const IPCNS_SHM: Self = with_payload(
        kind(
            "IPCNS_SHM",
            "ipcns-shm-%u.img",
            0x4628_3044,
            "ipc_shm_entry",
        ),
        Payload::IpcShm,
    );
    pub const IPCNS_MSG: Self = with_payload(
        kind(
            "IPCNS_MSG",
            "ipcns-msg-%u.img",
            0x5545_3737,
            "ipc_msg_entry",
        ),
        Payload::IpcMsg,
    );
    pub const IPCNS_SEM: Self = with_payload(
        kind(
            "IPCNS_SEM",
            "ipcns-sem-%u.img",
            0x5957_3019,
            "ipc_sem_entry",
        ),
        Payload::IpcSem,
    );
    pub const FS: Self = kind("FS", "fs-%u.img", 0x5140_3912, "fs_entry");
    pub const REMAP_FPATH: Self = kind(
        "REMAP_FPATH",
        "remap-fpath.img",
        0x5913_3954,
        "remap_file_path_entry",
    );
    pub const GHOST_FILE: Self = with_payload(
        kind(
            "GHOST_FILE",
            "ghost-file-%x.img",
            0x5258_3605,
            "ghost_file_entry",
        ),
        Payload::GhostFile,
    );
    pub const MEMFD_INODE: Self =
        kind("MEMFD_INODE", "memfd.img", 0x4845_3499, "memfd_inode_entry");
    pub const TCP_STREAM: Self = with_payload(
        kind(
            "TCP_STREAM",
            "tcp-stream-%x.img",
            0x5146_5506,
            "tcp_stream_entry",
        ),
        Payload::TcpStream,
    );
    pub const MNTS: Self = kind("MNTS", "mountpoints-%u.img", 0x5556_3928, "mnt_entry");
    pub const NETDEV: Self = kind("NETDEV", "netdev-%u.img", 0x5737_3951, "net_device_entry");
    pub const NETNS: Self = kind("NETNS", "netns-%u.img", 0x5593_3752, "netns_entry");
    pub const IFADDR: Self = raw("IFADDR", "ifaddr-%u.img");
    pub const ROUTE: Self = raw("ROUTE", "route-%u.img");
    pub const ROUTE6: Self = raw("ROUTE6", "route6-%u.img");
    pub const RULE: Self = raw("RULE", "rule-%u.img");
    pub const IPTABLES: Self = raw("IPTABLES", "iptables-%u.img");
    pub const IP6TABLES: Self = raw("IP6TABLES", "ip6tables-%u.img");
    pub const NFTABLES: Self = raw("NFTABLES", "nftables-%u.img");
    pub const NETNF_CT: Self = raw("NETNF_CT", "netns-ct-%u.img");
    pub const NETNF_EXP: Self = raw("NETNF_EXP", "netns-exp-%u.img");
    pub const TMPFS_IMG: Self = raw("TMPFS_IMG", "tmpfs-%u.tar.gz.img");
    pub const TMPFS_DEV: Self = raw("TMPFS_DEV", "tmpfs-dev-%u.tar.gz.img");
    pub const AUTOFS: Self = kind("AUTOFS", "autofs-%u.img", 0x4935_3943, "autofs_entry");
    pub const BINFMT_MISC_OLD: Self = kind(
        "BINFMT_MISC",
        "binfmt-misc-%u.img",
        0x6734_3323,
        "binfmt_misc_entry",
    );
    pub const BINFMT_MISC: Self = kind(
        "BINFMT_MISC",
        "binfmt-misc.img",
        0x6734_3323,
        "binfmt_misc_entry",
    );
    pub const TTY_FILES: Self = kind("TTY_FILES", "tty.img", 0x5943_3025, "tty_file_entry");
    pub const TTY_INFO: Self = kind("TTY_INFO", "tty-info.img", 0x5945_3036, "tty_info_entry");
    pub const TTY_DATA: Self = kind("TTY_DATA", "tty-data.img", 0x5941_3026, "tty_data_entry");
    pub const FILE_LOCKS: Self = kind(
        "FILE_LOCKS",
        "filelocks.img",
        0x5432_3616,
        "file_lock_entry",
    );
    pub const RLIMIT: Self = kind("RLIMIT", "rlimit-%u.img", 0x5711_3925, "rlimit_entry");
    pub const SIGNAL: Self = kind("SIGNAL", "signal-s-%u.img", 0x5925_5647, "siginfo_entry");
    pub const PSIGNAL: Self = kind("SIGNAL", "signal-p-%u.img", 0x5925_5647, "siginfo_entry");
    pub const TUNFILE: Self = kind("TUNFILE", "tunfile.img", 0x5714_3751, "tunfile_entry");
    pub const CGROUP: Self = kind("CGROUP", "cgroup.img", 0x5938_3330, "cgroup_entry");
    pub const TIMERFD: Self = kind("TIMERFD", "timerfd.img", 0x5049_3712, "timerfd_entry");
    pub const CPUINFO: Self = kind("CPUINFO", "cpuinfo.img", 0x6140_4013, "cpuinfo_entry");
    pub const SECCOMP: Self = kind("SECCOMP", "seccomp.img", 0x6441_3049, "seccomp_entry");
    pub const USERNS: Self = kind("USERNS", "userns-%u.img", 0x5547_4906, "userns_entry");
    pub const FILES: Self = kind("FILES", "files.img", 0x5630_3138, "file_entry");
    pub const TIMENS: Self = kind("TIMENS", "timens-%u.img", 0x4311_4433, "timens_entry");
    pub const PIDNS: Self = kind("PIDNS", "pidns-%u.img", 0x6115_7326, "pidns_entry");
    pub const BPFMAP_FILE: Self = kind(
        "BPFMAP_FILE",
        "bpfmap-file.img",
        0x5750_6142,
        "bpfmap_file_entry",
    );
    pub const BPFMAP_DATA: Self = with_payload(
        kind(
            "BPFMAP_DATA",
            "bpfmap-data.img",
            0x6432_4033,
            "bpfmap_data_entry",
        ),
        Payload::BpfMapData,
    );
    pub const APPARMOR: Self = kind("APPARMOR", "apparmor.img", 0x5942_3047, "apparmor_entry");
    pub const PIDFD: Self = kind("PIDFD", "pidfd.img", 0x5443_5556, "pidfd_entry");
    /// criu-rs's own: the POSIX message queues of an IPC namespace.
    pub const POSIX_MQ: Self = kind(
        "POSIX_MQ",
        "ipcns-posix-mq-%u.img",
        0x6512_1007,
        "posix_mq_entry",
    );
    /// criu-rs's own: open descriptions of POSIX message queues.
    pub const POSIX_MQ_FILES: Self = kind(
        "POSIX_MQ_FILES",
        "posix-mq-files.img",
        0x6512_1008,
        "posix_mq_file_entry",
    );
    /// criu-rs's own: the memory tracker each task keeps between dumps (pre-dump, --track-mem).
    pub const MEM_TRACK: Self = kind("MEM_TRACK", "mem-track.img", 0x6512_1009, "mem_track_entry");
    /// criu-rs's own: pids of tasks in pid namespaces nested below the root's.
    pub const PID_LEVELS: Self = kind(
        "PID_LEVELS",
        "pid-levels.img",
        0x6512_100a,
        "pid_levels_entry",
    );
    /// criu-rs's own: a network namespace's sysctls beyond CRIU's lists.
    pub const NET_SYSCTLS: Self = kind(
        "NET_SYSCTLS",
        "net-sysctls-%u.img",
        0x6512_100b,
        "net_sysctl_entry",
    );
    pub const STATS_DUMP: Self = ImageKind {
        service: true,
        ..kind("STATS", "stats-dump", 0x5709_3306, "stats_entry")
    };
    pub const STATS_RESTORE: Self = ImageKind {
        service: true,
        ..kind("STATS", "stats-restore", 0x5709_3306, "stats_entry")
    };
    pub const IRMAP_CACHE: Self = ImageKind {
        service: true,
        ..kind(
            "IRMAP_CACHE",
            "irmap-cache",
            0x5700_4059,
            "irmap_cache_entry",
        )
    };

    /// Every kind, in CRIU's order.
    pub const ALL: &'static [ImageKind] = &[
        Self::INVENTORY,
        Self::FDINFO,
        Self::PAGEMAP,
        Self::SHMEM_PAGEMAP,
        Self::REG_FILES,
        Self::EXT_FILES,
        Self::NS_FILES,
        Self::EVENTFD_FILE,
        Self::EVENTPOLL_FILE,
        Self::EVENTPOLL_TFD,
        Self::SIGNALFD,
        Self::INOTIFY_FILE,
        Self::INOTIFY_WD,
        Self::FANOTIFY_FILE,
        Self::FANOTIFY_MARK,
        Self::CORE,
        Self::IDS,
        Self::MM,
        Self::VMAS,
        Self::PIPES,
        Self::PIPES_DATA,
        Self::FIFO,
        Self::FIFO_DATA,
        Self::PSTREE,
        Self::SIGACT,
        Self::UNIXSK,
        Self::INETSK,
        Self::PACKETSK,
        Self::NETLINK_SK,
        Self::SK_QUEUES,
        Self::ITIMERS,
        Self::POSIX_TIMERS,
        Self::CREDS,
        Self::UTSNS,
        Self::IPC_VAR,
        Self::IPCNS_SHM,
        Self::IPCNS_MSG,
        Self::IPCNS_SEM,
        Self::FS,
        Self::REMAP_FPATH,
        Self::GHOST_FILE,
        Self::MEMFD_INODE,
        Self::TCP_STREAM,
        Self::MNTS,
        Self::NETDEV,
        Self::NETNS,
        Self::IFADDR,
        Self::ROUTE,
        Self::ROUTE6,
        Self::RULE,
        Self::IPTABLES,
        Self::IP6TABLES,
        Self::NFTABLES,
        Self::TMPFS_IMG,
        Self::TMPFS_DEV,
        Self::AUTOFS,
        Self::BINFMT_MISC_OLD,
        Self::BINFMT_MISC,
        Self::TTY_FILES,
        Self::TTY_INFO,
        Self::TTY_DATA,
        Self::FILE_LOCKS,
        Self::RLIMIT,
        Self::PAGES,
        Self::SIGNAL,
        Self::PSIGNAL,
        Self::TUNFILE,
        Self::CGROUP,
        Self::TIMERFD,
        Self::CPUINFO,
        Self::SECCOMP,
        Self::USERNS,
        Self::NETNF_CT,
        Self::NETNF_EXP,
        Self::FILES,
        Self::TIMENS,
        Self::PIDNS,
        Self::BPFMAP_FILE,
        Self::BPFMAP_DATA,
        Self::APPARMOR,
        Self::PIDFD,
        Self::POSIX_MQ,
        Self::POSIX_MQ_FILES,
        Self::MEM_TRACK,
        Self::PID_LEVELS,
        Self::NET_SYSCTLS,
        Self::STATS_DUMP,
        Self::STATS_RESTORE,
        Self::IRMAP_CACHE,
    ];

    /// The u32 values at the start of the file: none for raw images, only the kind's magic
    /// for inventory, else the common or service head magic and then the kind's magic.
    pub fn head(&self) -> Vec<u32> {
        match self.magic {
            None => Vec::new(),
            Some(magic) if *self == Self::INVENTORY => vec![magic],
            Some(magic) if self.service => vec![IMG_SERVICE_MAGIC, magic],
            Some(magic) => vec![IMG_COMMON_MAGIC, magic],
        }
    }

    /// The file name for an id (ignored by kinds without one in their name).
    pub fn file_name(&self, id: Option<u64>) -> String {
        let id = id.unwrap_or(0);
        self.pattern
            .replace("%u", &id.to_string())
            .replace("%x", &format!("{id:x}"))
    }

    /// Whether the file name needs an id.
    pub fn has_id(&self) -> bool {
        self.pattern.contains('%')
    }

    /// The first kind (in CRIU's order) that crit calls `name`.
    pub fn by_name(name: &str) -> Option<&'static ImageKind> {
        Self::ALL.iter().find(|k| k.name == name)
    }

    /// The first framed kind with this per-image magic.
    pub fn by_magic(magic: u32) -> Option<&'static ImageKind> {
        Self::ALL.iter().find(|k| k.magic == Some(magic))
    }

    /// Whether crit's magic table agrees with this kind (a consistency check for tests).
    pub fn magic_is_named(&self) -> bool {
        self.magic.is_none() || magic_by_name(self.name) == self.magic
    }
}
