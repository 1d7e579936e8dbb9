//! The one option table shared by every command, as criu(8) defines it.

/// Whether an option takes an argument (getopt's `no_argument`, `required_argument`,
/// `optional_argument`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HasArg {
    No,
    Required,
    /// Only attached: `-v4`, `--cpu-cap=fpu`; never the next word.
    Optional,
}

/// Identity of an option, independent of how it was spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Opt {
    Tree,
    LeaveStopped,
    LeaveRunning,
    RestoreDetached,
    RestoreSibling,
    Daemon,
    ImagesDir,
    WorkDir,
    LogFile,
    JoinNs,
    Root,
    ExtUnixSk,
    Help,
    TcpEstablished,
    Close,
    LogPid,
    Version,
    EvasiveDevices,
    Pidfile,
    VethPair,
    ActionScript,
    LinkRemap,
    ShellJob,
    FileLocks,
    PageServer,
    Address,
    Port,
    PrevImagesDir,
    Ms,
    TrackMem,
    AutoDedup,
    Libdir,
    CpuCap,
    ForceIrmap,
    ExtMountMap,
    ExecCmd,
    ManageCgroups,
    CgroupRoot,
    InheritFd,
    Feature,
    SkipMnt,
    EnableFs,
    EnableExternalSharing,
    EnableExternalMasters,
    FreezeCgroup,
    GhostLimit,
    IrmapScanPath,
    LsmProfile,
    Timeout,
    External,
    EmptyNs,
    LazyPages,
    Extra,
    Experimental,
    All,
    CgroupProps,
    CgroupPropsFile,
    CgroupDumpController,
    SkipInFlight,
    Deprecated,
    DisplayStats,
    WeakSysctls,
    StatusFd,
    TcpClose,
    Verbosity,
    PsSocket,
    Stream,
    Config,
    NoDefaultConfig,
    TlsCacert,
    TlsCacrl,
    TlsCert,
    TlsKey,
    Tls,
    TlsNoCnVerify,
    CgroupYard,
    PreDumpMode,
    FileValidation,
    SkipFileRwxCheck,
    LsmMountContext,
    NetworkLock,
    MntnsCompatMode,
    Unprivileged,
    GhostFiemap,
    AllowUprobes,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct OptSpec {
    pub long: &'static str,
    pub short: Option<char>,
    pub has_arg: HasArg,
    pub id: Opt,
    /// A boolean option that also has a `--no-NAME` form.
    pub negatable: bool,
}

const fn spec(long: &'static str, short: Option<char>, has_arg: HasArg, id: Opt) -> OptSpec {
    OptSpec {
        long,
        short,
        has_arg,
        id,
        negatable: false,
    }
}

const fn flag(long: &'static str, id: Opt) -> OptSpec {
    OptSpec {
        long,
        short: None,
        has_arg: HasArg::No,
        id,
        negatable: true,
    }
}

const fn flag_short(long: &'static str, short: char, id: Opt) -> OptSpec {
    OptSpec {
        long,
        short: Some(short),
        has_arg: HasArg::No,
        id,
        negatable: true,
    }
}

use HasArg::{No, Optional as Opt_, Required as Req};

/// Every option of criu(8). The order matters only for help and abbreviation ties.
pub const OPTIONS: &[OptSpec] = &[
    spec("tree", Some('t'), Req, Opt::Tree),
    spec("leave-stopped", Some('s'), No, Opt::LeaveStopped),
    spec("leave-running", Some('R'), No, Opt::LeaveRunning),
    flag_short("restore-detached", 'd', Opt::RestoreDetached),
    flag_short("restore-sibling", 'S', Opt::RestoreSibling),
    flag("daemon", Opt::Daemon),
    spec("images-dir", Some('D'), Req, Opt::ImagesDir),
    spec("work-dir", Some('W'), Req, Opt::WorkDir),
    spec("log-file", Some('o'), Req, Opt::LogFile),
    spec("join-ns", Some('J'), Req, Opt::JoinNs),
    spec("root", Some('r'), Req, Opt::Root),
    spec("ext-unix-sk", Some('x'), Opt_, Opt::ExtUnixSk),
    spec("help", Some('h'), No, Opt::Help),
    flag("tcp-established", Opt::TcpEstablished),
    spec("close", None, Req, Opt::Close),
    flag("log-pid", Opt::LogPid),
    spec("version", Some('V'), No, Opt::Version),
    flag("evasive-devices", Opt::EvasiveDevices),
    spec("pidfile", None, Req, Opt::Pidfile),
    spec("veth-pair", None, Req, Opt::VethPair),
    spec("action-script", None, Req, Opt::ActionScript),
    flag("link-remap", Opt::LinkRemap),
    flag_short("shell-job", 'j', Opt::ShellJob),
    flag_short("file-locks", 'l', Opt::FileLocks),
    flag("page-server", Opt::PageServer),
    spec("address", None, Req, Opt::Address),
    spec("port", None, Req, Opt::Port),
    spec("prev-images-dir", None, Req, Opt::PrevImagesDir),
    spec("ms", None, No, Opt::Ms),
    flag("track-mem", Opt::TrackMem),
    flag("auto-dedup", Opt::AutoDedup),
    spec("libdir", Some('L'), Req, Opt::Libdir),
    spec("cpu-cap", None, Opt_, Opt::CpuCap),
    flag("force-irmap", Opt::ForceIrmap),
    spec("ext-mount-map", Some('M'), Req, Opt::ExtMountMap),
    spec("exec-cmd", None, No, Opt::ExecCmd),
    spec("manage-cgroups", None, Opt_, Opt::ManageCgroups),
    spec("cgroup-root", None, Req, Opt::CgroupRoot),
    spec("inherit-fd", None, Req, Opt::InheritFd),
    spec("feature", None, Req, Opt::Feature),
    spec("skip-mnt", None, Req, Opt::SkipMnt),
    spec("enable-fs", None, Req, Opt::EnableFs),
    spec(
        "enable-external-sharing",
        None,
        No,
        Opt::EnableExternalSharing,
    ),
    spec(
        "enable-external-masters",
        None,
        No,
        Opt::EnableExternalMasters,
    ),
    spec("freeze-cgroup", None, Req, Opt::FreezeCgroup),
    spec("ghost-limit", None, Req, Opt::GhostLimit),
    spec("irmap-scan-path", None, Req, Opt::IrmapScanPath),
    spec("lsm-profile", None, Req, Opt::LsmProfile),
    spec("timeout", None, Req, Opt::Timeout),
    spec("external", None, Req, Opt::External),
    spec("empty-ns", None, Req, Opt::EmptyNs),
    spec("lazy-pages", None, No, Opt::LazyPages),
    flag("extra", Opt::Extra),
    flag("experimental", Opt::Experimental),
    spec("all", None, No, Opt::All),
    spec("cgroup-props", None, Req, Opt::CgroupProps),
    spec("cgroup-props-file", None, Req, Opt::CgroupPropsFile),
    spec(
        "cgroup-dump-controller",
        None,
        Req,
        Opt::CgroupDumpController,
    ),
    flag("skip-in-flight", Opt::SkipInFlight),
    flag("deprecated", Opt::Deprecated),
    flag("display-stats", Opt::DisplayStats),
    flag("weak-sysctls", Opt::WeakSysctls),
    spec("status-fd", None, Req, Opt::StatusFd),
    flag("tcp-close", Opt::TcpClose),
    spec("verbosity", Some('v'), Opt_, Opt::Verbosity),
    spec("ps-socket", None, Req, Opt::PsSocket),
    flag("stream", Opt::Stream),
    spec("config", None, Req, Opt::Config),
    spec("no-default-config", None, No, Opt::NoDefaultConfig),
    spec("tls-cacert", None, Req, Opt::TlsCacert),
    spec("tls-cacrl", None, Req, Opt::TlsCacrl),
    spec("tls-cert", None, Req, Opt::TlsCert),
    spec("tls-key", None, Req, Opt::TlsKey),
    flag("tls", Opt::Tls),
    spec("tls-no-cn-verify", None, No, Opt::TlsNoCnVerify),
    spec("cgroup-yard", None, Req, Opt::CgroupYard),
    spec("pre-dump-mode", None, Req, Opt::PreDumpMode),
    spec("file-validation", None, Req, Opt::FileValidation),
    flag("skip-file-rwx-check", Opt::SkipFileRwxCheck),
    spec("lsm-mount-context", None, Req, Opt::LsmMountContext),
    spec("network-lock", None, Req, Opt::NetworkLock),
    flag("mntns-compat-mode", Opt::MntnsCompatMode),
    flag("unprivileged", Opt::Unprivileged),
    flag("ghost-fiemap", Opt::GhostFiemap),
    flag("allow-uprobes", Opt::AllowUprobes),
];

/// The long name of an option, for messages.
pub fn long_name(id: Opt) -> &'static str {
    OPTIONS.iter().find(|s| s.id == id).map_or("?", |s| s.long)
}

/// The table row of a short option letter.
pub fn by_short(c: char) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|s| s.short == Some(c))
}
