//! What each option of the table means: its group, argument, default, commands and help. The
//! match is exhaustive, so a new option does not build until it is documented; `--help`, the
//! man page and the shell completions are all made from here.

use super::table::Opt;

/// The sections of `--help` and of the man page, in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Common,
    DumpRestore,
    Resources,
    Namespaces,
    Network,
    Mounts,
    Cgroups,
    Memory,
    Server,
    Check,
    Logging,
    Config,
}

impl Group {
    pub const ALL: [Group; 12] = [
        Group::Common,
        Group::DumpRestore,
        Group::Resources,
        Group::Namespaces,
        Group::Network,
        Group::Mounts,
        Group::Cgroups,
        Group::Memory,
        Group::Server,
        Group::Check,
        Group::Logging,
        Group::Config,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Group::Common => "Common",
            Group::DumpRestore => "Dump and restore",
            Group::Resources => "Files and external resources",
            Group::Namespaces => "Namespaces",
            Group::Network => "Network",
            Group::Mounts => "Mounts",
            Group::Cgroups => "Cgroups",
            Group::Memory => "Memory and migration",
            Group::Server => "Page server and service",
            Group::Check => "Check",
            Group::Logging => "Logging",
            Group::Config => "Configuration",
        }
    }
}

/// The commands, as typed, with one line each (the man page's COMMANDS section).
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "dump",
        "checkpoint a process tree identified by its root's pid",
    ),
    (
        "pre-dump",
        "copy the memory of a running tree ahead of a dump",
    ),
    ("restore", "restore a process tree from images"),
    ("check", "check what the kernel supports"),
    ("page-server", "receive pages of a dump over the network"),
    ("service", "serve RPC requests on a unix socket"),
    (
        "swrk",
        "serve RPC requests on an inherited socket (runtimes use it)",
    ),
    ("lazy-pages", "serve pages of a lazy restore"),
    ("dedup", "remove pages already in a parent image"),
    ("exec", "run a system call inside a stopped task"),
    ("cpuinfo", "dump or check the cpu information image"),
];

/// The value lists completions offer.
pub const MANAGE_CGROUPS_MODES: &[&str] = &["none", "props", "soft", "full", "strict", "ignore"];
pub const NETWORK_LOCK_METHODS: &[&str] = &["iptables", "nftables", "skip"];
pub const NS_KINDS: &[&str] = &["net", "ipc", "uts", "time", "mnt", "user"];

/// One option's documentation.
#[derive(Debug, Clone, Copy)]
pub struct OptDoc {
    pub group: Group,
    /// The argument's name, for example `PID`; none for a flag.
    pub arg: Option<&'static str>,
    pub default: Option<&'static str>,
    /// The commands that take it; empty means every command.
    pub commands: &'static [&'static str],
    pub help: &'static str,
}

const ALL: &[&str] = &[];
const DUMP: &[&str] = &["dump", "pre-dump"];
const RESTORE: &[&str] = &["restore"];
const DR: &[&str] = &["dump", "pre-dump", "restore"];
const SERVERS: &[&str] = &["page-server", "service", "lazy-pages"];

const fn d(
    group: Group,
    arg: Option<&'static str>,
    commands: &'static [&'static str],
    help: &'static str,
) -> OptDoc {
    OptDoc {
        group,
        arg,
        default: None,
        commands,
        help,
    }
}

const fn with_default(doc: OptDoc, default: &'static str) -> OptDoc {
    OptDoc {
        default: Some(default),
        ..doc
    }
}

/// The documentation of `id`.
pub fn doc(id: Opt) -> OptDoc {
    use Group::*;
    match id {
        Opt::Tree => d(
            DumpRestore,
            Some("PID"),
            &["dump", "pre-dump", "exec"],
            "the root of the process tree to checkpoint",
        ),
        Opt::LeaveStopped => d(
            DumpRestore,
            None,
            DR,
            "leave the tasks stopped after dump or restore",
        ),
        Opt::LeaveRunning => d(
            DumpRestore,
            None,
            DUMP,
            "leave the tasks running after dump",
        ),
        Opt::RestoreDetached => d(
            DumpRestore,
            None,
            &["restore", "service", "page-server", "lazy-pages"],
            "do not wait for the restored tree (servers: run as a daemon)",
        ),
        Opt::RestoreSibling => d(
            DumpRestore,
            None,
            RESTORE,
            "restore the root task as a sibling of criu",
        ),
        Opt::Daemon => d(Server, None, SERVERS, "run in the background"),
        Opt::ImagesDir => with_default(
            d(Common, Some("DIR"), ALL, "directory of the image files"),
            ".",
        ),
        Opt::WorkDir => with_default(
            d(
                Common,
                Some("DIR"),
                ALL,
                "directory of logs, pidfiles and statistics",
            ),
            "the images dir",
        ),
        Opt::LogFile => d(
            Logging,
            Some("FILE"),
            ALL,
            "log file, relative to the work dir; - for stderr",
        ),
        Opt::JoinNs => d(
            Namespaces,
            Some("NS:PID|PATH[,OPTS]"),
            RESTORE,
            "restore into an existing namespace",
        ),
        Opt::Root => d(
            Mounts,
            Some("PATH"),
            DR,
            "root of the restored tree (pivot_root into it)",
        ),
        Opt::ExtUnixSk => d(
            Resources,
            Some("[INODE,...]"),
            DR,
            "allow unix sockets connected to the outside",
        ),
        Opt::Help => d(Common, None, ALL, "show this help"),
        Opt::TcpEstablished => d(
            Network,
            None,
            DR,
            "checkpoint and restore established TCP connections",
        ),
        Opt::Close => d(Common, Some("FD"), ALL, "close FD before anything else"),
        Opt::LogPid => d(Logging, None, ALL, "one log file per process (FILE.PID)"),
        Opt::Version => d(Common, None, ALL, "show the version"),
        Opt::EvasiveDevices => d(
            Resources,
            None,
            DR,
            "open devices by any path to the same device",
        ),
        Opt::Pidfile => d(
            Common,
            Some("FILE"),
            &["restore", "service", "page-server", "lazy-pages"],
            "write the restored root's (or the server's) pid to FILE",
        ),
        Opt::VethPair => d(
            Network,
            Some("IN=OUT[@BRIDGE]"),
            RESTORE,
            "the outside end of a veth pair, enslaved to BRIDGE if given",
        ),
        Opt::ActionScript => d(
            Common,
            Some("FILE"),
            ALL,
            "run FILE at each action (repeatable)",
        ),
        Opt::LinkRemap => d(
            Resources,
            None,
            DUMP,
            "link unlinked open files back under a temporary name",
        ),
        Opt::ShellJob => d(
            DumpRestore,
            None,
            DR,
            "the tree is a shell job: it shares criu's session and terminal",
        ),
        Opt::FileLocks => d(Resources, None, DR, "dump and restore file locks"),
        Opt::PageServer => d(
            Memory,
            None,
            &["dump", "pre-dump", "lazy-pages"],
            "send pages to a page server",
        ),
        Opt::Address => d(
            Server,
            Some("ADDR"),
            &["dump", "pre-dump", "page-server", "lazy-pages", "service"],
            "page server address (service: socket path)",
        ),
        Opt::Port => d(
            Server,
            Some("PORT"),
            &["dump", "pre-dump", "page-server", "lazy-pages"],
            "page server port (page-server: without it, a free one, logged)",
        ),
        Opt::PrevImagesDir => d(
            Memory,
            Some("DIR"),
            &["dump", "pre-dump", "page-server"],
            "the images of the previous round, relative to the images dir",
        ),
        Opt::Ms => d(
            Check,
            None,
            &["check"],
            "check only what a minimal dump needs",
        ),
        Opt::TrackMem => d(Memory, None, DUMP, "track memory changes for later rounds"),
        Opt::AutoDedup => d(
            Memory,
            None,
            &["dump", "pre-dump", "restore"],
            "punch pages that a newer image holds out of older ones",
        ),
        Opt::Libdir => d(Common, Some("DIR"), ALL, "plugin directory"),
        Opt::CpuCap => with_default(
            d(
                DumpRestore,
                Some("[CAP,...]"),
                &["dump", "restore", "cpuinfo"],
                "cpu capabilities to write or check: cpu, fpu, ins, all, none, ^CAP",
            ),
            "fpu",
        ),
        Opt::ForceIrmap => d(
            Resources,
            None,
            DUMP,
            "resolve inotify watches by path even when the kernel has handles",
        ),
        Opt::ExtMountMap => d(
            Mounts,
            Some("KEY:VAL|auto"),
            DR,
            "an external mount: dump names it KEY, restore binds VAL there",
        ),
        Opt::ExecCmd => d(
            DumpRestore,
            None,
            RESTORE,
            "after restore, exec the command given after --",
        ),
        Opt::ManageCgroups => with_default(
            d(
                Cgroups,
                Some("[MODE]"),
                DR,
                "how cgroups are restored: none, props, soft, full, strict, ignore",
            ),
            "soft",
        ),
        Opt::CgroupRoot => d(
            Cgroups,
            Some("[CTL:]PATH"),
            RESTORE,
            "restore the tree's cgroups under PATH",
        ),
        Opt::InheritFd => d(
            Resources,
            Some("fd[N]:RES"),
            RESTORE,
            "give the restored tree criu's fd N for resource RES",
        ),
        Opt::Feature => d(
            Check,
            Some("NAME"),
            &["check"],
            "check one feature; list shows the names",
        ),
        Opt::SkipMnt => d(
            Mounts,
            Some("PATH"),
            DUMP,
            "leave the mount at PATH out of the dump",
        ),
        Opt::EnableFs => d(
            Mounts,
            Some("FS[,FS...]"),
            DUMP,
            "dump mounts of these filesystems as if external",
        ),
        Opt::EnableExternalSharing => d(
            Mounts,
            None,
            DR,
            "allow external mounts with shared propagation",
        ),
        Opt::EnableExternalMasters => d(
            Mounts,
            None,
            DR,
            "allow external mounts with slave propagation",
        ),
        Opt::FreezeCgroup => d(
            Cgroups,
            Some("PATH"),
            DUMP,
            "freeze the tree through this cgroup's freezer",
        ),
        Opt::GhostLimit => with_default(
            d(
                Resources,
                Some("SIZE"),
                DUMP,
                "largest deleted file whose contents go into the images",
            ),
            "1M",
        ),
        Opt::IrmapScanPath => d(
            Resources,
            Some("PATH"),
            DUMP,
            "where to look for inotify watch paths",
        ),
        Opt::LsmProfile => d(
            DumpRestore,
            Some("TYPE:NAME"),
            RESTORE,
            "restore under this LSM profile",
        ),
        Opt::Timeout => with_default(
            d(
                DumpRestore,
                Some("SECONDS"),
                DR,
                "bound on collecting and freezing tasks",
            ),
            "10",
        ),
        Opt::External => d(
            Resources,
            Some("RES"),
            DR,
            "an external resource: tty[], file[], dev[], unix[], mnt[], net[], veth[], macvlan[]",
        ),
        Opt::EmptyNs => d(
            Namespaces,
            Some("net"),
            DR,
            "make the namespace empty; a script or runtime fills it",
        ),
        Opt::LazyPages => d(
            Memory,
            None,
            &["dump", "restore"],
            "restore memory lazily through userfaultfd",
        ),
        Opt::Extra => d(Check, None, &["check"], "check extra features too"),
        Opt::Experimental => d(Check, None, &["check"], "check experimental features too"),
        Opt::All => d(Check, None, &["check"], "check every feature"),
        Opt::CgroupProps => d(
            Cgroups,
            Some("YAML"),
            DUMP,
            "which cgroup properties to dump (CRIU's YAML)",
        ),
        Opt::CgroupPropsFile => d(Cgroups, Some("FILE"), DUMP, "the same from a file"),
        Opt::CgroupDumpController => d(
            Cgroups,
            Some("NAME"),
            DUMP,
            "dump only these controllers (repeatable)",
        ),
        Opt::SkipInFlight => d(Network, None, DUMP, "drop TCP connections not yet accepted"),
        Opt::Deprecated => d(Common, None, ALL, "allow deprecated behaviour"),
        Opt::DisplayStats => d(Logging, None, DR, "print statistics at the end"),
        Opt::WeakSysctls => d(
            Network,
            None,
            DR,
            "only warn about namespace sysctls the kernel refuses",
        ),
        Opt::StatusFd => d(Server, Some("FD"), SERVERS, "write a byte to FD once ready"),
        Opt::TcpClose => d(
            Network,
            None,
            RESTORE,
            "restore established TCP connections closed",
        ),
        Opt::Verbosity => with_default(
            d(
                Logging,
                Some("[NUM]"),
                ALL,
                "0 none, 1 errors, 2 warnings, 3 information with timestamps, 4 debug; -v repeats",
            ),
            "2",
        ),
        Opt::PsSocket => d(
            Server,
            Some("FD"),
            &["dump", "pre-dump", "page-server", "lazy-pages"],
            "use this connected socket for the page server",
        ),
        Opt::Stream => d(
            Memory,
            None,
            DR,
            "stream images through criu-image-streamer",
        ),
        Opt::Config => d(Config, Some("FILE"), ALL, "read options from FILE"),
        Opt::NoDefaultConfig => d(
            Config,
            None,
            ALL,
            "do not read /etc/criu/default.conf or ~/.criu/default.conf",
        ),
        Opt::TlsCacert => d(Server, Some("FILE"), SERVERS, "TLS CA certificate"),
        Opt::TlsCacrl => d(
            Server,
            Some("FILE"),
            SERVERS,
            "TLS certificate revocation list",
        ),
        Opt::TlsCert => d(Server, Some("FILE"), SERVERS, "TLS certificate"),
        Opt::TlsKey => d(Server, Some("FILE"), SERVERS, "TLS private key"),
        Opt::Tls => d(Server, None, SERVERS, "use TLS for the page server"),
        Opt::TlsNoCnVerify => d(Server, None, SERVERS, "do not check the peer's common name"),
        Opt::CgroupYard => d(
            Cgroups,
            Some("PATH"),
            DR,
            "where criu mounts cgroup hierarchies",
        ),
        Opt::PreDumpMode => with_default(
            d(
                Memory,
                Some("splice|read"),
                DUMP,
                "how pre-dump copies memory",
            ),
            "splice",
        ),
        Opt::FileValidation => with_default(
            d(
                Resources,
                Some("filesize|buildid"),
                RESTORE,
                "how restore checks that a file is the dumped one",
            ),
            "buildid",
        ),
        Opt::SkipFileRwxCheck => d(
            Resources,
            None,
            RESTORE,
            "do not check file permissions on restore",
        ),
        Opt::LsmMountContext => d(
            Mounts,
            Some("CTX"),
            RESTORE,
            "mount context for restored mounts",
        ),
        Opt::NetworkLock => with_default(
            d(
                Network,
                Some("iptables|nftables|skip"),
                DR,
                "how TCP connections are locked during dump and restore",
            ),
            "iptables",
        ),
        Opt::MntnsCompatMode => d(
            Mounts,
            None,
            RESTORE,
            "restore mount namespaces with the older engine",
        ),
        Opt::Unprivileged => d(
            Common,
            None,
            ALL,
            "run without root, with CAP_CHECKPOINT_RESTORE",
        ),
        Opt::GhostFiemap => d(
            Resources,
            None,
            DUMP,
            "keep only the data extents of deleted files",
        ),
        Opt::AllowUprobes => d(DumpRestore, None, DR, "allow tasks with uprobes"),
    }
}
