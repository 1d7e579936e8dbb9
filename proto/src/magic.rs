//! CRIU's magic numbers and the names crit shows for them.

/// Head magic of every image except inventory and the service images.
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// Head magic of the service images (stats, irmap-cache).
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;

/// (name, value): the names crit prints in the JSON "magic" key. Aliases of another magic
/// (shmem pagemap, old pages, ...) are left out, as crit leaves them out.
pub const MAGICS: &[(&str, u32)] = &[
    ("IMG_COMMON", IMG_COMMON_MAGIC),
    ("IMG_SERVICE", IMG_SERVICE_MAGIC),
    ("INVENTORY", 0x5831_3116),
    ("PSTREE", 0x5027_3030),
    ("FDINFO", 0x5621_3732),
    ("PAGEMAP", 0x5608_4025),
    ("CORE", 0x5505_3847),
    ("IDS", 0x5443_2030),
    ("VMAS", 0x5412_3737),
    ("PIPES", 0x5651_3555),
    ("PIPES_DATA", 0x5645_3709),
    ("FIFO", 0x5836_4939),
    ("FIFO_DATA", 0x5933_3054),
    ("SIGACT", 0x5534_4201),
    ("UNIXSK", 0x5437_3943),
    ("INETSK", 0x5644_3851),
    ("PACKETSK", 0x6045_4618),
    ("ITIMERS", 0x5746_4056),
    ("POSIX_TIMERS", 0x5260_3957),
    ("SK_QUEUES", 0x5626_4026),
    ("UTSNS", 0x5447_3203),
    ("CREDS", 0x5402_3547),
    ("IPC_VAR", 0x5311_5007),
    ("IPCNS_SHM", 0x4628_3044),
    ("IPCNS_MSG", 0x5545_3737),
    ("IPCNS_SEM", 0x5957_3019),
    ("REG_FILES", 0x5036_3636),
    ("EXT_FILES", 0x5925_5641),
    ("FS", 0x5140_3912),
    ("MM", 0x5749_2820),
    ("REMAP_FPATH", 0x5913_3954),
    ("GHOST_FILE", 0x5258_3605),
    ("TCP_STREAM", 0x5146_5506),
    ("EVENTFD_FILE", 0x4452_3722),
    ("EVENTPOLL_FILE", 0x4502_3858),
    ("EVENTPOLL_TFD", 0x4443_3746),
    ("SIGNALFD", 0x5732_3820),
    ("INOTIFY_FILE", 0x4842_4431),
    ("INOTIFY_WD", 0x5456_2009),
    ("MNTS", 0x5556_3928),
    ("NETDEV", 0x5737_3951),
    ("NETNS", 0x5593_3752),
    ("TTY_FILES", 0x5943_3025),
    ("TTY_INFO", 0x5945_3036),
    ("TTY_DATA", 0x5941_3026),
    ("FILE_LOCKS", 0x5432_3616),
    ("RLIMIT", 0x5711_3925),
    ("FANOTIFY_FILE", 0x5509_6122),
    ("FANOTIFY_MARK", 0x5650_6035),
    ("SIGNAL", 0x5925_5647),
    ("NETLINK_SK", 0x5800_5614),
    ("NS_FILES", 0x6139_4011),
    ("TUNFILE", 0x5714_3751),
    ("CGROUP", 0x5938_3330),
    ("TIMERFD", 0x5049_3712),
    ("CPUINFO", 0x6140_4013),
    ("USERNS", 0x5547_4906),
    ("SECCOMP", 0x6441_3049),
    ("BINFMT_MISC", 0x6734_3323),
    ("AUTOFS", 0x4935_3943),
    ("FILES", 0x5630_3138),
    ("MEMFD_INODE", 0x4845_3499),
    ("TIMENS", 0x4311_4433),
    ("PIDNS", 0x6115_7326),
    ("BPFMAP_FILE", 0x5750_6142),
    ("BPFMAP_DATA", 0x6432_4033),
    ("APPARMOR", 0x5942_3047),
    ("PIDFD", 0x5443_5556),
    ("STATS", 0x5709_3306),
    ("IRMAP_CACHE", 0x5700_4059),
    ("KDAT", 0x5702_3458),
    // criu-rs's own (CRIU has no POSIX message queue images).
    ("POSIX_MQ", 0x6512_1007),
    ("POSIX_MQ_FILES", 0x6512_1008),
    // criu-rs's own: memory tracking between dumps.
    ("MEM_TRACK", 0x6512_1009),
    // criu-rs's own: pids in pid namespaces nested below the tree's.
    ("PID_LEVELS", 0x6512_100a),
    // criu-rs's own: network sysctls beyond CRIU's lists.
    ("NET_SYSCTLS", 0x6512_100b),
];

/// crit's name of a magic value.
pub fn magic_name(value: u32) -> Option<&'static str> {
    MAGICS
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(name, _)| *name)
}

/// The magic value crit gives a name.
pub fn magic_by_name(name: &str) -> Option<u32> {
    MAGICS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| *value)
}
