//! The parsed options of one invocation, filled occurrence by occurrence in the order
//! config files and then the command line give them.

use std::collections::BTreeSet;

use super::getopt::Occurrence;
use super::table::{long_name, Opt};
use super::values::{self, CgroupMode};

/// What to do with the tree after a successful dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinalState {
    #[default]
    Dead,
    Running,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreDumpMode {
    #[default]
    Splice,
    Read,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileValidation {
    FileSize,
    BuildId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkLock {
    Iptables,
    Nftables,
    Skip,
}

/// Every setting criu(8) knows. Repeatable options keep every value in order.
#[derive(Debug, Clone)]
pub struct Options {
    pub tree: Option<i32>,
    pub final_state: FinalState,
    pub restore_detached: bool,
    pub restore_sibling: bool,
    pub images_dir: Option<String>,
    pub work_dir: Option<String>,
    pub log_file: Option<String>,
    pub log_pid: bool,
    pub log_level: i64,
    pub pidfile: Option<String>,
    pub root: Option<String>,
    pub join_ns: Vec<String>,
    pub ext_unix_sk: bool,
    pub ext_unix_sk_inodes: Vec<u64>,
    pub shell_job: bool,
    pub file_locks: bool,
    pub tcp_established: bool,
    pub tcp_close: bool,
    pub skip_in_flight: bool,
    pub evasive_devices: bool,
    pub link_remap: bool,
    pub force_irmap: bool,
    pub irmap_scan_paths: Vec<String>,
    pub ghost_limit: u64,
    pub ghost_fiemap: bool,
    pub veth_pairs: Vec<(String, String)>,
    pub action_scripts: Vec<String>,
    pub external: Vec<String>,
    pub ext_mount_map: Vec<(String, String)>,
    pub ext_mount_auto: bool,
    pub inherit_fds: Vec<String>,
    pub skip_mnt: Vec<String>,
    pub enable_fs: Vec<String>,
    pub empty_ns_net: bool,
    pub freeze_cgroup: Option<String>,
    pub timeout: u32,
    pub cpu_cap: u32,
    pub manage_cgroups: Option<CgroupMode>,
    pub cgroup_roots: Vec<(Option<String>, String)>,
    pub cgroup_props: Option<String>,
    pub cgroup_props_file: Option<String>,
    pub cgroup_dump_controllers: Vec<String>,
    pub cgroup_yard: Option<String>,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
    pub page_server: bool,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub ps_socket: Option<i32>,
    pub status_fd: Option<i32>,
    pub prev_images_dir: Option<String>,
    pub track_mem: bool,
    pub auto_dedup: bool,
    pub pre_dump_mode: PreDumpMode,
    pub lazy_pages: bool,
    pub stream: bool,
    pub features: Vec<String>,
    pub check_extra: bool,
    pub check_experimental: bool,
    pub exec_cmd: bool,
    pub file_validation: Option<FileValidation>,
    pub network_lock: Option<NetworkLock>,
    pub display_stats: bool,
    pub weak_sysctls: bool,
    pub libdir: Option<String>,
    pub tls: bool,
    pub tls_no_cn_verify: bool,
    pub tls_files: Vec<(Opt, String)>,
    pub enable_external_sharing: bool,
    pub enable_external_masters: bool,
    pub deprecated: bool,
    pub skip_file_rwx_check: bool,
    pub mntns_compat_mode: bool,
    pub unprivileged: bool,
    pub allow_uprobes: bool,
    /// Options given at all, in any source: commands refuse the ones they cannot honour yet.
    pub seen: BTreeSet<Opt>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tree: None,
            final_state: FinalState::Dead,
            restore_detached: false,
            restore_sibling: false,
            images_dir: None,
            work_dir: None,
            log_file: None,
            log_pid: false,
            log_level: 2,
            pidfile: None,
            root: None,
            join_ns: Vec::new(),
            ext_unix_sk: false,
            ext_unix_sk_inodes: Vec::new(),
            shell_job: false,
            file_locks: false,
            tcp_established: false,
            tcp_close: false,
            skip_in_flight: false,
            evasive_devices: false,
            link_remap: false,
            force_irmap: false,
            irmap_scan_paths: Vec::new(),
            ghost_limit: 1 << 20,
            ghost_fiemap: false,
            veth_pairs: Vec::new(),
            action_scripts: Vec::new(),
            external: Vec::new(),
            ext_mount_map: Vec::new(),
            ext_mount_auto: false,
            inherit_fds: Vec::new(),
            skip_mnt: Vec::new(),
            enable_fs: Vec::new(),
            empty_ns_net: false,
            freeze_cgroup: None,
            timeout: 10,
            cpu_cap: values::cpu_cap::DEFAULT,
            manage_cgroups: None,
            cgroup_roots: Vec::new(),
            cgroup_props: None,
            cgroup_props_file: None,
            cgroup_dump_controllers: Vec::new(),
            cgroup_yard: None,
            lsm_profile: None,
            lsm_mount_context: None,
            page_server: false,
            address: None,
            port: None,
            ps_socket: None,
            status_fd: None,
            prev_images_dir: None,
            track_mem: false,
            auto_dedup: false,
            pre_dump_mode: PreDumpMode::Splice,
            lazy_pages: false,
            stream: false,
            features: Vec::new(),
            check_extra: false,
            check_experimental: false,
            exec_cmd: false,
            file_validation: None,
            network_lock: None,
            display_stats: false,
            weak_sysctls: false,
            libdir: None,
            tls: false,
            tls_no_cn_verify: false,
            tls_files: Vec::new(),
            enable_external_sharing: false,
            enable_external_masters: false,
            deprecated: false,
            skip_file_rwx_check: false,
            mntns_compat_mode: false,
            unprivileged: false,
            allow_uprobes: false,
            seen: BTreeSet::new(),
        }
    }
}

/// A bad option value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("invalid argument for --{name}: {value}")]
    BadArgument { name: &'static str, value: String },
    #[error("{0}")]
    Message(String),
}

/// What the parser must do after an option that acts at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Immediate {
    None,
    Help,
    Version,
    /// `--close FD`: CRIU closes it while parsing.
    Close(i32),
}

fn split_pair(value: &str, sep: char) -> Option<(String, String)> {
    value
        .split_once(sep)
        .map(|(a, b)| (a.to_string(), b.to_string()))
}

impl Options {
    /// Applies one occurrence.
    pub fn apply(&mut self, occ: &Occurrence) -> Result<Immediate, OptionError> {
        let name = long_name(occ.id);
        let bad = || OptionError::BadArgument {
            name,
            value: occ.value.clone().unwrap_or_default(),
        };
        let on = !occ.negated;
        let value = occ.value.clone();
        let text = || value.clone().ok_or_else(bad);
        if on {
            self.seen.insert(occ.id);
        } else {
            self.seen.remove(&occ.id);
        }
        match occ.id {
            Opt::Help => return Ok(Immediate::Help),
            Opt::Version => return Ok(Immediate::Version),
            Opt::Close => {
                let fd = values::atoi(&text()?);
                return Ok(Immediate::Close(i32::try_from(fd).map_err(|_| bad())?));
            }
            Opt::Tree => {
                let pid = values::atoi(&text()?);
                if pid <= 0 || pid > i64::from(i32::MAX) {
                    return Err(bad());
                }
                self.tree = Some(pid as i32);
            }
            Opt::LeaveStopped => self.final_state = FinalState::Stopped,
            Opt::LeaveRunning => self.final_state = FinalState::Running,
            Opt::RestoreDetached | Opt::Daemon => self.restore_detached = on,
            Opt::RestoreSibling => self.restore_sibling = on,
            Opt::ImagesDir => self.images_dir = Some(text()?),
            Opt::WorkDir => self.work_dir = Some(text()?),
            Opt::LogFile => self.log_file = Some(text()?),
            Opt::LogPid => self.log_pid = on,
            Opt::Verbosity => {
                self.log_level = match value.as_deref() {
                    None => self.log_level + 1,
                    Some(v) if v.starts_with('v') => self.log_level + v.len() as i64 + 1,
                    Some(v) => values::atoi(v),
                }
            }
            Opt::Pidfile => self.pidfile = Some(text()?),
            Opt::Root => self.root = Some(text()?),
            Opt::JoinNs => {
                let v = text()?;
                if !v.contains(':') {
                    return Err(bad());
                }
                self.join_ns.push(v);
            }
            Opt::ExtUnixSk => {
                self.ext_unix_sk = true;
                if let Some(v) = &value {
                    for ino in v.split(',') {
                        let ino = ino.parse::<u64>().map_err(|_| {
                            OptionError::Message(format!(
                                "Failed to parse unix socket inode from optarg: {v}"
                            ))
                        })?;
                        self.ext_unix_sk_inodes.push(ino);
                    }
                }
            }
            Opt::ShellJob => self.shell_job = on,
            Opt::FileLocks => self.file_locks = on,
            Opt::TcpEstablished => self.tcp_established = on,
            Opt::TcpClose => self.tcp_close = on,
            Opt::SkipInFlight => self.skip_in_flight = on,
            Opt::EvasiveDevices => self.evasive_devices = on,
            Opt::LinkRemap => self.link_remap = on,
            Opt::ForceIrmap => self.force_irmap = on,
            Opt::IrmapScanPath => self.irmap_scan_paths.push(text()?),
            Opt::GhostLimit => self.ghost_limit = values::size(&text()?).ok_or_else(bad)?,
            Opt::GhostFiemap => self.ghost_fiemap = on,
            Opt::VethPair => self
                .veth_pairs
                .push(split_pair(&text()?, '=').ok_or_else(bad)?),
            Opt::ActionScript => self.action_scripts.push(text()?),
            Opt::External => self.external.push(text()?),
            Opt::ExtMountMap => {
                let v = text()?;
                if v == "auto" {
                    self.ext_mount_auto = true;
                } else {
                    self.ext_mount_map
                        .push(split_pair(&v, ':').ok_or_else(bad)?);
                }
            }
            Opt::InheritFd => {
                let v = text()?;
                if !(v.starts_with("fd[") && v.contains("]:")) {
                    return Err(OptionError::Message(format!(
                        "inherit fd: bad format '{v}', expected fd[NUM]:RESOURCE"
                    )));
                }
                self.inherit_fds.push(v);
            }
            Opt::SkipMnt => self.skip_mnt.push(text()?),
            Opt::EnableFs => self.enable_fs.push(text()?),
            Opt::EmptyNs => {
                let v = text()?;
                if v != "net" {
                    return Err(OptionError::Message(format!(
                        "Unsupported empty namespace: {v}"
                    )));
                }
                self.empty_ns_net = true;
            }
            Opt::FreezeCgroup => self.freeze_cgroup = Some(text()?),
            Opt::Timeout => {
                self.timeout = u32::try_from(values::atoi(&text()?)).map_err(|_| bad())?
            }
            Opt::CpuCap => {
                self.cpu_cap =
                    values::cpu_cap(self.cpu_cap, value.as_deref()).map_err(OptionError::Message)?
            }
            Opt::ManageCgroups => {
                self.manage_cgroups =
                    Some(values::cgroup_mode(value.as_deref()).map_err(OptionError::Message)?)
            }
            Opt::CgroupRoot => {
                let v = text()?;
                self.cgroup_roots.push(match v.split_once(':') {
                    Some((ctl, path)) => (Some(ctl.to_string()), path.to_string()),
                    None => (None, v),
                });
            }
            Opt::CgroupProps => self.cgroup_props = Some(text()?),
            Opt::CgroupPropsFile => self.cgroup_props_file = Some(text()?),
            Opt::CgroupDumpController => self.cgroup_dump_controllers.push(text()?),
            Opt::CgroupYard => self.cgroup_yard = Some(text()?),
            Opt::LsmProfile => self.lsm_profile = Some(text()?),
            Opt::LsmMountContext => self.lsm_mount_context = Some(text()?),
            Opt::PageServer => self.page_server = on,
            Opt::Address => self.address = Some(text()?),
            Opt::Port => {
                let port = values::atoi(&text()?);
                self.port = Some(
                    u16::try_from(port)
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(bad)?,
                );
            }
            Opt::PsSocket => self.ps_socket = Some(values::atoi(&text()?) as i32),
            Opt::StatusFd => {
                let v = text()?;
                let fd = v.trim().parse::<i32>().map_err(|_| {
                    OptionError::Message("Unable to parse a value of --status-fd".into())
                })?;
                self.status_fd = Some(fd);
            }
            Opt::PrevImagesDir => self.prev_images_dir = Some(text()?),
            Opt::TrackMem => self.track_mem = on,
            Opt::AutoDedup => self.auto_dedup = on,
            Opt::PreDumpMode => {
                self.pre_dump_mode = match text()?.as_str() {
                    "splice" => PreDumpMode::Splice,
                    "read" => PreDumpMode::Read,
                    _ => {
                        return Err(OptionError::Message(
                            "Unable to parse value of --pre-dump-mode".into(),
                        ))
                    }
                }
            }
            Opt::LazyPages => self.lazy_pages = on,
            Opt::Stream => self.stream = on,
            Opt::Feature => self.features.push(text()?),
            Opt::Extra => self.check_extra = on,
            Opt::Experimental => self.check_experimental = on,
            Opt::All => {
                self.check_extra = true;
                self.check_experimental = true;
            }
            Opt::ExecCmd => self.exec_cmd = true,
            Opt::FileValidation => {
                self.file_validation = Some(match text()?.as_str() {
                    "filesize" => FileValidation::FileSize,
                    "buildid" => FileValidation::BuildId,
                    other => {
                        return Err(OptionError::Message(format!(
                            "Unknown file validation method `{other}' selected"
                        )))
                    }
                })
            }
            Opt::NetworkLock => {
                self.network_lock = Some(match text()?.as_str() {
                    "iptables" => NetworkLock::Iptables,
                    "nftables" => NetworkLock::Nftables,
                    "skip" | "none" => NetworkLock::Skip,
                    other => {
                        return Err(OptionError::Message(format!(
                            "Invalid value for --network-lock: {other}"
                        )))
                    }
                })
            }
            Opt::DisplayStats => self.display_stats = on,
            Opt::WeakSysctls => self.weak_sysctls = on,
            Opt::Libdir => self.libdir = Some(text()?),
            Opt::Tls => self.tls = on,
            Opt::TlsNoCnVerify => self.tls_no_cn_verify = true,
            Opt::TlsCacert | Opt::TlsCacrl | Opt::TlsCert | Opt::TlsKey => {
                self.tls_files.push((occ.id, text()?))
            }
            Opt::EnableExternalSharing => self.enable_external_sharing = true,
            Opt::EnableExternalMasters => self.enable_external_masters = true,
            Opt::Deprecated => self.deprecated = on,
            Opt::SkipFileRwxCheck => self.skip_file_rwx_check = on,
            Opt::MntnsCompatMode => self.mntns_compat_mode = on,
            Opt::Unprivileged => self.unprivileged = on,
            Opt::AllowUprobes => self.allow_uprobes = on,
            Opt::Ms => {
                return Err(OptionError::Message(
                    "--ms is deprecated; see \"Check options\" of criu --help".into(),
                ))
            }
            // Handled before parsing: they choose which config files are read.
            Opt::Config | Opt::NoDefaultConfig => {}
        }
        Ok(Immediate::None)
    }
}
