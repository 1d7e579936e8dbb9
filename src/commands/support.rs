//! Which options each command honours, and the refusal of every other option a user set.
//!
//! Every option of the table is classified here, in one exhaustive `match` (a new option does
//! not compile until it is classified). An option that was set (on the command line or in a
//! config file) and that the command does not honour stops the command before it does
//! anything, with an error naming the option: nothing is parsed and then silently ignored.
//! Commands this criu does not implement are refused as a whole.

use crate::cli::table::{Opt, OPTIONS};
use crate::cli::{Command, Options};

/// A command, without the words some commands take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dump,
    PreDump,
    Restore,
    LazyPages,
    Check,
    PageServer,
    Service,
    Swrk,
    Dedup,
    CpuinfoDump,
    CpuinfoCheck,
    Exec,
    Show,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Dump,
        Kind::PreDump,
        Kind::Restore,
        Kind::LazyPages,
        Kind::Check,
        Kind::PageServer,
        Kind::Service,
        Kind::Swrk,
        Kind::Dedup,
        Kind::CpuinfoDump,
        Kind::CpuinfoCheck,
        Kind::Exec,
        Kind::Show,
    ];

    pub fn of(cmd: &Command) -> Kind {
        match cmd {
            Command::Dump => Kind::Dump,
            Command::PreDump => Kind::PreDump,
            Command::Restore { .. } => Kind::Restore,
            Command::LazyPages => Kind::LazyPages,
            Command::Check => Kind::Check,
            Command::PageServer => Kind::PageServer,
            Command::Service => Kind::Service,
            Command::Swrk { .. } => Kind::Swrk,
            Command::Dedup => Kind::Dedup,
            Command::CpuinfoDump => Kind::CpuinfoDump,
            Command::CpuinfoCheck => Kind::CpuinfoCheck,
            Command::Exec { .. } => Kind::Exec,
            Command::Show => Kind::Show,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Dump => "dump",
            Kind::PreDump => "pre-dump",
            Kind::Restore => "restore",
            Kind::LazyPages => "lazy-pages",
            Kind::Check => "check",
            Kind::PageServer => "page-server",
            Kind::Service => "service",
            Kind::Swrk => "swrk",
            Kind::Dedup => "dedup",
            Kind::CpuinfoDump => "cpuinfo dump",
            Kind::CpuinfoCheck => "cpuinfo check",
            Kind::Exec => "exec",
            Kind::Show => "show",
        }
    }

    /// Commands this criu does not implement; `show` answers on its own (it is deprecated).
    pub fn implemented(self) -> bool {
        !matches!(self, Kind::LazyPages)
    }
}

/// Where an option is honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// By every command: where the logs and images are, which config is read, and the like.
    Every,
    /// By these commands only.
    Only(&'static [Kind]),
    /// By no command yet.
    Nowhere,
}

use Kind::{Check, CpuinfoCheck, Dump, Exec, PageServer, PreDump, Restore, Service};

/// The commands that honour `opt`. Options CRIU's restore reads only at dump time (and so
/// ignores on restore, as zdtm passes a test's options to both) are listed for restore too;
/// a pre-dump takes every option of a dump, as CRIU's (it dumps memory only).
pub fn scope(opt: Opt) -> Scope {
    use Scope::{Every, Nowhere, Only};
    match opt {
        Opt::ImagesDir
        | Opt::WorkDir
        | Opt::LogFile
        | Opt::LogPid
        | Opt::Verbosity
        | Opt::Config
        | Opt::NoDefaultConfig
        | Opt::Help
        | Opt::Version
        | Opt::Close
        // Only permits deprecated features; this criu has none to permit.
        | Opt::Deprecated => Every,

        Opt::Tree => Only(&[Dump, PreDump, Exec]),
        Opt::LeaveStopped => Only(&[Dump, PreDump]),
        // Restore always leaves the tree running.
        Opt::LeaveRunning => Only(&[Dump, PreDump, Restore]),
        // `criu service -d` and `criu page-server -d` run in the background.
        Opt::RestoreDetached | Opt::Daemon => Only(&[Restore, Service, PageServer]),
        Opt::RestoreSibling => Only(&[Restore]),
        // CRIU's dump ignores --pidfile (zdtm sends it); restore writes it.
        Opt::Pidfile => Only(&[Dump, PreDump, Restore, Service, PageServer]),
        // The service's socket and readiness; the page server's address (where it listens,
        // where a dump sends its pages).
        Opt::Address => Only(&[Service, Dump, PreDump, PageServer]),
        Opt::StatusFd => Only(&[Service, PageServer]),
        // Pages sent to a page server (memory/src/page_server.rs), over TCP or a socket
        // connected already.
        Opt::PageServer => Only(&[Dump, PreDump]),
        Opt::Port | Opt::PsSocket => Only(&[Dump, PreDump, PageServer]),
        // TLS between a dump and its page server (memory/src/tls.rs).
        Opt::Tls
        | Opt::TlsCacert
        | Opt::TlsCacrl
        | Opt::TlsCert
        | Opt::TlsKey
        | Opt::TlsNoCnVerify => Only(&[Dump, PreDump, PageServer]),
        Opt::Timeout => Only(&[Dump, PreDump, Restore]),
        Opt::ActionScript => Only(&[Dump, PreDump, Restore]),
        Opt::ShellJob | Opt::FileLocks | Opt::ExtUnixSk => Only(&[Dump, PreDump, Restore]),
        // Dump: unix[INODE], net[INODE]:KEY, mnt[MOUNTPOINT]:KEY; restore: mnt[KEY]:PATH
        // (checked by `refusals`).
        Opt::External => Only(&[Dump, PreDump, Restore]),
        Opt::ExtMountMap => Only(&[Dump, PreDump, Restore]),
        Opt::AutoDedup => Only(&[Dump, PreDump, Restore]),
        Opt::Unprivileged => Only(&[Dump, PreDump, Restore, Check]),
        // Used at dump, to autodetect external mounts; accepted at restore, as CRIU does.
        Opt::EnableExternalSharing | Opt::EnableExternalMasters => {
            Only(&[Dump, PreDump, Restore])
        }
        // Restore: the new root of the mount tree; CRIU's dump ignores it (zdtm sends it).
        Opt::Root => Only(&[Dump, PreDump, Restore]),
        // One mount engine (mount-v2's: MOVE_MOUNT_SET_GROUP): the older one is not kept.
        Opt::MntnsCompatMode => Only(&[Restore]),
        Opt::InheritFd | Opt::SkipFileRwxCheck => Only(&[Restore]),
        // The outside end of a veth of the tree's network namespace.
        Opt::VethPair => Only(&[Restore]),
        // Dump-time options CRIU's restore ignores.
        Opt::LinkRemap
        | Opt::GhostLimit
        // Ghost files are always copied as data runs (SEEK_DATA/SEEK_HOLE).
        | Opt::GhostFiemap
        | Opt::EvasiveDevices
        | Opt::ForceIrmap => Only(&[Dump, PreDump, Restore]),
        // Restore takes the method from the inventory dump wrote.
        Opt::NetworkLock => Only(&[Dump, PreDump, Restore]),
        // Pages are always read while the tree runs again (`read`); `splice` takes the same
        // pages (zdtm sends it to every dump).
        Opt::PreDumpMode => Only(&[Dump, PreDump, Restore]),
        // The parent dump and the trackers left for the next one (see memory/src/track.rs).
        Opt::TrackMem => Only(&[Dump, PreDump]),
        // A page server links its dir to the parent as a dump does.
        Opt::PrevImagesDir => Only(&[Dump, PreDump, PageServer]),
        // TCP connections: dumped through repair mode, made again at restore.
        Opt::TcpClose | Opt::TcpEstablished => Only(&[Dump, PreDump, Restore]),
        // Restore accepts it, as CRIU does; the dump acts on it.
        Opt::SkipInFlight => Only(&[Dump, PreDump, Restore]),
        // Network namespace sysctls the kernel refuses are only warned about (a dump ignores it).
        Opt::WeakSysctls => Only(&[Dump, PreDump, Restore]),
        // Restore only checks it against the inventory.
        Opt::AllowUprobes => Only(&[Restore]),
        // Only `net` (the parser refuses other kinds).
        Opt::EmptyNs => Only(&[Dump, PreDump, Restore]),
        // net, ipc, uts and time (checked when the restore reads it).
        Opt::JoinNs => Only(&[Restore]),
        Opt::DisplayStats => Only(&[Dump, PreDump]),
        // Cgroups: the mode, new roots and the yard act at both ends (dump walks from
        // --cgroup-root); the properties to save and the controllers to dump at dump only,
        // restore ignores them (zdtm passes a test's options to both); the freezer is a
        // dump's.
        Opt::ManageCgroups | Opt::CgroupRoot | Opt::CgroupYard => Only(&[Dump, PreDump, Restore]),
        Opt::CgroupProps | Opt::CgroupPropsFile | Opt::CgroupDumpController => {
            Only(&[Dump, PreDump, Restore])
        }
        Opt::FreezeCgroup => Only(&[Dump, PreDump]),
        Opt::CpuCap => Only(&[Dump, PreDump, CpuinfoCheck]),
        Opt::Feature | Opt::Extra | Opt::Experimental | Opt::All => Only(&[Check]),
        // --exec-cmd after restore is not done yet.
        Opt::ExecCmd
        // Deprecated: refused while parsing already.
        | Opt::Ms
        // Namespaces, mounts.
        | Opt::SkipMnt
        | Opt::EnableFs
        // LSM.
        | Opt::LsmProfile
        | Opt::LsmMountContext
        // Iterative and remote memory.
        | Opt::LazyPages
        | Opt::Stream
        // Daemons' readiness, plugins, misc.
        | Opt::Libdir
        | Opt::IrmapScanPath
        | Opt::FileValidation
 => Nowhere,
    }
}

/// `--tls` and its files (CRIU's default paths for those not given); None without `--tls`.
pub fn tls_options(o: &Options) -> Option<criu_memory::tls::TlsOptions> {
    if !o.tls {
        return None;
    }
    let mut t = criu_memory::tls::TlsOptions {
        no_cn_verify: o.tls_no_cn_verify,
        ..Default::default()
    };
    for (opt, path) in &o.tls_files {
        let slot = match opt {
            Opt::TlsCacert => &mut t.cacert,
            Opt::TlsCacrl => &mut t.cacrl,
            Opt::TlsCert => &mut t.cert,
            Opt::TlsKey => &mut t.key,
            _ => continue,
        };
        *slot = path.into();
    }
    Some(t)
}

/// Whether `kind` honours `opt`.
pub fn honours(kind: Kind, opt: Opt) -> bool {
    match scope(opt) {
        Scope::Every => true,
        Scope::Only(kinds) => kinds.contains(&kind),
        Scope::Nowhere => false,
    }
}

/// The `--external` kinds `kind` handles: dump (and pre-dump, which takes a dump's options)
/// takes `net[INODE]:KEY` (a network namespace the restore gets from outside) and
/// `unix[INODE]` (a socket whose peer is outside the tree); restore takes `mnt[KEY]:PATH`, `veth[IN]:OUT[@BRIDGE]`, `netdev[IN]:OUT` and
/// `macvlan[IN]:OUT`; every other kind (dev, file, tty, netdev, ...) is refused.
fn external_ok(kind: Kind, value: &str) -> bool {
    let mnt = value
        .strip_prefix("mnt[")
        .and_then(|v| v.split_once("]:"))
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        || ["mnt[]", "mnt[]:s", "mnt[]:m"].contains(&value);
    // dev[MAJOR/MINOR]:KEY at dump, dev[KEY]:DEVICE at restore.
    let dev = value
        .strip_prefix("dev[")
        .and_then(|v| v.split_once("]:"))
        .is_some_and(|(a, b)| {
            !b.is_empty()
                && match kind {
                    Kind::Restore => !a.is_empty(),
                    _ => a.split_once('/').is_some_and(|(ma, mi)| {
                        ma.parse::<u32>().is_ok() && mi.parse::<u32>().is_ok()
                    }),
                }
        });
    if kind == Kind::Restore {
        return mnt || dev || criu_netdev::links::outside::Outside::is_ours(value);
    }
    let unix = value
        .strip_prefix("unix[")
        .and_then(|v| v.strip_suffix(']'))
        .is_some_and(|ino| ino.parse::<u64>().is_ok());
    let net = value
        .strip_prefix("net[")
        .and_then(|v| v.split_once("]:"))
        .is_some_and(|(ino, key)| ino.parse::<u64>().is_ok() && !key.is_empty());
    matches!(kind, Kind::Dump | Kind::PreDump) && (unix || net || mnt || dev)
}

/// Why `cmd` cannot run with `o`: one message per option set that the command does not
/// honour, then one if the command itself is not implemented. Empty when it can run.
pub fn refusals(cmd: &Command, o: &Options) -> Vec<String> {
    let kind = Kind::of(cmd);
    let name = kind.name();
    let mut out = Vec::new();
    for spec in OPTIONS {
        if !o.seen.contains(&spec.id) {
            continue;
        }
        if !honours(kind, spec.id) {
            out.push(format!(
                "{name}: option --{} is not supported yet",
                spec.long
            ));
        } else if spec.id == Opt::External {
            let only = if kind == Kind::Restore {
                "only mnt[KEY]:PATH, mnt[], dev[KEY]:DEVICE, veth[IN]:OUT[@BRIDGE], macvlan[IN]:OUT and netdev[IN]:OUT are"
            } else {
                "only unix[INODE], net[INODE]:KEY, mnt[MOUNTPOINT]:KEY, mnt[] and dev[MAJOR/MINOR]:KEY are"
            };
            for value in o.external.iter().filter(|v| !external_ok(kind, v)) {
                out.push(format!(
                    "{name}: option --external {value} is not supported yet ({only})"
                ));
            }
        }
    }
    if !kind.implemented() {
        out.push(format!("{name}: not supported yet by this criu"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::getopt::Occurrence;
    use crate::cli::table::HasArg;

    /// One command of each kind, as the parser makes it.
    fn command(kind: Kind) -> Command {
        match kind {
            Kind::Dump => Command::Dump,
            Kind::PreDump => Command::PreDump,
            Kind::Restore => Command::Restore { exec_cmd: vec![] },
            Kind::LazyPages => Command::LazyPages,
            Kind::Check => Command::Check,
            Kind::PageServer => Command::PageServer,
            Kind::Service => Command::Service,
            Kind::Swrk => Command::Swrk { fd: 3 },
            Kind::Dedup => Command::Dedup,
            Kind::CpuinfoDump => Command::CpuinfoDump,
            Kind::CpuinfoCheck => Command::CpuinfoCheck,
            Kind::Exec => Command::Exec {
                syscall: vec!["getpid".into()],
            },
            Kind::Show => Command::Show,
        }
    }

    /// A value each option with an argument accepts.
    fn sample_value(opt: Opt) -> &'static str {
        match opt {
            Opt::Tree | Opt::Close | Opt::Timeout | Opt::PsSocket | Opt::StatusFd => "3",
            Opt::Port => "12345",
            Opt::GhostLimit => "1M",
            Opt::JoinNs => "net:/x",
            Opt::VethPair => "a=b",
            Opt::ExtMountMap => "a:b",
            Opt::InheritFd => "fd[3]:pipe:[1]",
            Opt::EmptyNs => "net",
            Opt::External => "mnt[a]:b",
            Opt::PreDumpMode => "splice",
            Opt::FileValidation => "filesize",
            Opt::NetworkLock => "iptables",
            _ => "x",
        }
    }

    /// Options with just `opt` set, through the same code the parser uses.
    fn options_with(opt: Opt, has_arg: HasArg) -> Options {
        let mut o = Options::default();
        let value = (has_arg == HasArg::Required).then(|| sample_value(opt).to_string());
        // --ms is refused by the parser already; it still counts as set.
        let _ = o.apply(&Occurrence {
            id: opt,
            value,
            negated: false,
        });
        assert!(
            o.seen.contains(&opt),
            "--{} not recorded as set",
            spec_of(opt).long
        );
        o
    }

    fn spec_of(opt: Opt) -> &'static crate::cli::table::OptSpec {
        OPTIONS.iter().find(|s| s.id == opt).unwrap()
    }

    /// The whole option table, for every command: each option is honoured (the command runs
    /// on with it) or refused with a message naming it.
    #[test]
    fn every_option_of_the_table_is_honoured_or_refused_by_every_command() {
        let mut seen_ids = std::collections::BTreeSet::new();
        for spec in OPTIONS {
            assert!(
                seen_ids.insert(spec.id),
                "--{} twice in the table",
                spec.long
            );
        }
        for &kind in Kind::ALL {
            let cmd = command(kind);
            assert_eq!(cmd.name(), kind.name());
            let bare = refusals(&cmd, &Options::default());
            if kind.implemented() {
                assert!(bare.is_empty(), "{}: {bare:?}", kind.name());
            } else {
                assert_eq!(
                    bare,
                    vec![format!("{}: not supported yet by this criu", kind.name())]
                );
            }
            for spec in OPTIONS {
                let o = options_with(spec.id, spec.has_arg);
                let said = refusals(&cmd, &o);
                let named = format!("{}: option --{} ", kind.name(), spec.long);
                let refused = said.iter().any(|m| m.starts_with(&named));
                assert_eq!(
                    refused,
                    !honours(kind, spec.id),
                    "{} --{}: {said:?}",
                    kind.name(),
                    spec.long
                );
                // Nothing else is refused, so an honoured option lets an implemented command run.
                assert_eq!(
                    said.len(),
                    usize::from(refused) + usize::from(!kind.implemented()),
                    "{} --{}: {said:?}",
                    kind.name(),
                    spec.long
                );
            }
        }
    }

    /// What zdtm sends every dump and restore, and `criu check --feature`, keeps working.
    #[test]
    fn zdtm_command_lines_are_honoured() {
        let run = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            match crate::cli::parse(&args) {
                Ok(crate::cli::Parsed::Run(inv)) => refusals(&inv.command, &inv.options),
                other => panic!("{other:?}"),
            }
        };
        let common = ["--no-default-config", "-v4", "-D", "/img", "-o", "x.log"];
        let with = |cmd: &str, more: &[&'static str]| {
            let mut v: Vec<&str> = vec![cmd];
            v.extend(common);
            v.extend(more);
            run(&v)
        };
        assert_eq!(
            with(
                "dump",
                &[
                    "--tree",
                    "42",
                    "--pidfile",
                    "/p",
                    "--timeout",
                    "10",
                    "--pre-dump-mode",
                    "splice",
                    "--link-remap",
                    "--ghost-limit",
                    "1G",
                    "--file-locks",
                    "--no-ghost-fiemap",
                    "--no-mntns-compat-mode"
                ]
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            with(
                "restore",
                &[
                    "--pidfile",
                    "/p",
                    "--restore-detached",
                    "--restore-sibling",
                    "--link-remap",
                    "--ghost-limit",
                    "1G",
                    "--file-locks",
                    "--ext-unix-sk"
                ]
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            with("check", &["--feature", "mem_dirty_track"]),
            Vec::<String>::new()
        );
    }

    fn refused(args: &[&str]) -> Vec<String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let Ok(crate::cli::Parsed::Run(inv)) = crate::cli::parse(&args) else {
            panic!()
        };
        refusals(&inv.command, &inv.options)
    }

    #[test]
    fn page_server_options_are_honoured_where_criu_reads_them() {
        let dump = [
            "dump",
            "--no-default-config",
            "-t",
            "1",
            "--page-server",
            "--address",
            "127.0.0.1",
            "--port",
            "1",
        ];
        assert_eq!(refused(&dump), Vec::<String>::new());
        let server = [
            "page-server",
            "--no-default-config",
            "--address",
            "::1",
            "--port",
            "1",
            "-d",
            "--pidfile",
            "p",
            "--status-fd",
            "5",
            "--prev-images-dir",
            "../1",
        ];
        assert_eq!(refused(&server), Vec::<String>::new());
        assert_eq!(
            refused(&["page-server", "--page-server", "--track-mem"]),
            vec![
                "page-server: option --page-server is not supported yet",
                "page-server: option --track-mem is not supported yet",
            ]
        );
    }

    #[test]
    fn external_kinds_other_than_unix_inode_are_refused() {
        let mut o = Options::default();
        o.seen.insert(Opt::External);
        o.external = vec![
            "unix[123]".into(),
            "veth[x]:y".into(),
            "unix[abc]".into(),
            "mnt[]:x".into(),
        ];
        assert_eq!(
            refusals(&Command::Dump, &o),
            vec![
                "dump: option --external veth[x]:y is not supported yet (only unix[INODE], net[INODE]:KEY, mnt[MOUNTPOINT]:KEY, mnt[] and dev[MAJOR/MINOR]:KEY are)",
                "dump: option --external unix[abc] is not supported yet (only unix[INODE], net[INODE]:KEY, mnt[MOUNTPOINT]:KEY, mnt[] and dev[MAJOR/MINOR]:KEY are)",
                "dump: option --external mnt[]:x is not supported yet (only unix[INODE], net[INODE]:KEY, mnt[MOUNTPOINT]:KEY, mnt[] and dev[MAJOR/MINOR]:KEY are)",
            ]
        );
        o.external = vec!["unix[123]".into(), "net[4026531992]:extnet".into()];
        assert!(refusals(&Command::Dump, &o).is_empty());
        assert_eq!(
            refusals(&Command::Restore { exec_cmd: vec![] }, &o),
            vec![
                "restore: option --external unix[123] is not supported yet (only mnt[KEY]:PATH, mnt[], dev[KEY]:DEVICE, veth[IN]:OUT[@BRIDGE], macvlan[IN]:OUT and netdev[IN]:OUT are)",
                "restore: option --external net[4026531992]:extnet is not supported yet (only mnt[KEY]:PATH, mnt[], dev[KEY]:DEVICE, veth[IN]:OUT[@BRIDGE], macvlan[IN]:OUT and netdev[IN]:OUT are)",
            ]
        );
        o.external = vec![
            "mnt[ZDTM_DEV]:/tmp/dev".into(),
            "veth[eth0]:host0@br0".into(),
            "macvlan[mv0]:eth0".into(),
        ];
        assert!(refusals(&Command::Restore { exec_cmd: vec![] }, &o).is_empty());
    }

    #[test]
    fn a_negated_flag_is_not_set() {
        let mut o = Options::default();
        o.apply(&Occurrence {
            id: Opt::TrackMem,
            value: None,
            negated: true,
        })
        .unwrap();
        assert!(refusals(&Command::Dump, &o).is_empty());
    }
}
