//! The command line, exactly as criu(8) and CRIU's test suite use it: one option table for all
//! commands, config files first, then the arguments.

pub mod command;
pub mod config;
pub mod docs;
pub mod getopt;
pub mod options;
pub mod table;
pub mod usage;
pub mod values;

pub use command::Command;
pub use options::Options;

/// A parsed invocation, ready to run.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    pub options: Options,
    /// `--close FD` values, closed before anything else runs.
    pub close_fds: Vec<i32>,
}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Parsed {
    Run(Box<Invocation>),
    Help,
    Version,
}

/// Why the command line cannot run. Both exit 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Print the message, then the short usage.
    Usage(String),
    /// Print the message only.
    Invalid(String),
}

/// Finds `--help`, `--no-default-config` and `--config` before real parsing, as CRIU does, so
/// that help works even when a config file is broken.
struct PreScan {
    help: bool,
    no_default_config: bool,
    config: Option<String>,
}

fn pre_scan(args: &[String]) -> PreScan {
    let mut out = PreScan {
        help: false,
        no_default_config: false,
        config: None,
    };
    for (i, arg) in args.iter().enumerate() {
        match arg.as_str() {
            "--" => break,
            "-h" | "--help" => out.help = true,
            "--no-default-config" => out.no_default_config = true,
            "--config" => {
                out.config = args.get(i + 1).cloned();
                out.no_default_config = true;
            }
            _ => {
                if let Some(path) = arg.strip_prefix("--config=") {
                    out.config = Some(path.to_string());
                    out.no_default_config = true;
                }
            }
        }
    }
    out
}

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> Result<Parsed, CliError> {
    if args.is_empty() {
        return Err(CliError::Usage(String::new()));
    }
    let pre = pre_scan(args);
    if pre.help {
        return Ok(Parsed::Help);
    }
    let mut options = Options::default();
    let mut close_fds = Vec::new();
    let explicit = pre.config.as_deref();
    for path in config::sources(pre.no_default_config, explicit) {
        let must_exist = explicit.is_some_and(|e| path.as_os_str() == e);
        let words =
            config::read(&path, must_exist).map_err(|e| CliError::Invalid(e.to_string()))?;
        let scan = getopt::scan(&words).map_err(|e| CliError::Usage(e.to_string()))?;
        apply_all(&mut options, &scan.options, &mut close_fds)?;
        if scan.positionals.iter().any(|_| true) {
            return Err(CliError::Invalid(format!(
                "config {}: unexpected word {:?}",
                path.display(),
                scan.positionals[0]
            )));
        }
    }
    let scan = getopt::scan(args).map_err(|e| CliError::Usage(e.to_string()))?;
    match apply_all(&mut options, &scan.options, &mut close_fds)? {
        Some(Parsed::Version) => return Ok(Parsed::Version),
        Some(Parsed::Help) => return Ok(Parsed::Help),
        _ => {}
    }
    let command = command::parse(&scan.positionals, options.exec_cmd).map_err(CliError::Usage)?;
    if let Command::Restore { exec_cmd } = &command {
        if !exec_cmd.is_empty() && options.restore_detached {
            return Err(CliError::Usage(
                "--restore-detached and --exec-cmd cannot be used together".into(),
            ));
        }
    }
    Ok(Parsed::Run(Box::new(Invocation {
        command,
        options,
        close_fds,
    })))
}

/// Applies occurrences in order; returns early on `-h` or `-V` as getopt would stop there.
fn apply_all(
    options: &mut Options,
    occurrences: &[getopt::Occurrence],
    close_fds: &mut Vec<i32>,
) -> Result<Option<Parsed>, CliError> {
    for occ in occurrences {
        match options
            .apply(occ)
            .map_err(|e| CliError::Invalid(e.to_string()))?
        {
            options::Immediate::None => {}
            options::Immediate::Close(fd) => close_fds.push(fd),
            options::Immediate::Help => return Ok(Some(Parsed::Help)),
            options::Immediate::Version => return Ok(Some(Parsed::Version)),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use options::FinalState;
    use table::Opt;

    fn run(args: &[&str]) -> Invocation {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        match parse(&args) {
            Ok(Parsed::Run(inv)) => *inv,
            other => panic!("expected a runnable invocation, got {other:?}"),
        }
    }

    fn err(args: &[&str]) -> CliError {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse(&args).expect_err("expected an error")
    }

    #[test]
    fn zdtm_dump_line() {
        let inv = run(&[
            "dump",
            "--no-default-config",
            "-v4",
            "-D",
            "/img",
            "-o",
            "dump.log",
            "--tree",
            "42",
            "--pidfile",
            "/tmp/p",
            "--timeout",
            "10",
            "--pre-dump-mode",
            "splice",
            "--root",
            "/r",
            "--external",
            "mnt[]:s",
        ]);
        assert_eq!(inv.command, Command::Dump);
        let o = &inv.options;
        assert_eq!(o.log_level, 4);
        assert_eq!(o.tree, Some(42));
        assert_eq!(o.images_dir.as_deref(), Some("/img"));
        assert_eq!(o.log_file.as_deref(), Some("dump.log"));
        assert_eq!(o.pidfile.as_deref(), Some("/tmp/p"));
        assert_eq!(o.timeout, 10);
        assert_eq!(o.external, vec!["mnt[]:s"]);
        assert_eq!(o.final_state, FinalState::Dead);
    }

    #[test]
    fn verbosity_levels() {
        assert_eq!(run(&["check", "--no-default-config"]).options.log_level, 2);
        assert_eq!(
            run(&["check", "--no-default-config", "-v"])
                .options
                .log_level,
            3
        );
        assert_eq!(
            run(&["check", "--no-default-config", "-vvv"])
                .options
                .log_level,
            5
        );
        assert_eq!(
            run(&["check", "--no-default-config", "-v", "-v"])
                .options
                .log_level,
            4
        );
        assert_eq!(
            run(&["check", "--no-default-config", "-v0"])
                .options
                .log_level,
            0
        );
        assert_eq!(
            run(&["check", "--no-default-config", "--verbosity=1"])
                .options
                .log_level,
            1
        );
        assert_eq!(
            run(&["check", "--no-default-config", "-verbosity=0"])
                .options
                .log_level,
            0
        );
    }

    #[test]
    fn later_options_override_and_negate() {
        let o = run(&["dump", "--no-default-config", "-t", "1", "-R", "-s"]).options;
        assert_eq!(o.final_state, FinalState::Stopped);
        let o = run(&[
            "restore",
            "--no-default-config",
            "-d",
            "--no-restore-detached",
        ])
        .options;
        assert!(!o.restore_detached);
        assert!(!o.seen.contains(&Opt::RestoreDetached));
    }

    #[test]
    fn repeated_options_accumulate() {
        let o = run(&[
            "restore",
            "--no-default-config",
            "--veth-pair",
            "a=b",
            "--veth-pair",
            "c=d",
            "--inherit-fd",
            "fd[3]:pipe:[123]",
            "--action-script",
            "/x",
            "--action-script",
            "/y",
            "-M",
            "a:b",
            "-M",
            "auto",
        ])
        .options;
        assert_eq!(
            o.veth_pairs,
            vec![("a".into(), "b".into()), ("c".into(), "d".into())]
        );
        assert_eq!(o.inherit_fds, vec!["fd[3]:pipe:[123]"]);
        assert_eq!(o.action_scripts, vec!["/x", "/y"]);
        assert_eq!(o.ext_mount_map, vec![("a".into(), "b".into())]);
        assert!(o.ext_mount_auto);
    }

    #[test]
    fn optional_value_options() {
        let o = run(&[
            "dump",
            "--no-default-config",
            "-t1",
            "--cpu-cap",
            "--manage-cgroups=full",
            "-x",
        ])
        .options;
        assert_eq!(o.cpu_cap, values::cpu_cap::ALL | values::cpu_cap::IMAGE);
        assert_eq!(o.manage_cgroups, Some(values::CgroupMode::Full));
        assert!(o.ext_unix_sk);
    }

    #[test]
    fn help_version_and_errors() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(parse(&args(&["-h"])), Ok(Parsed::Help)));
        assert!(matches!(
            parse(&args(&["dump", "--help", "--bogus"])),
            Ok(Parsed::Help)
        ));
        assert!(matches!(parse(&args(&["-V"])), Ok(Parsed::Version)));
        assert!(matches!(err(&["--bogus", "dump"]), CliError::Usage(_)));
        assert!(
            matches!(err(&["--no-default-config"]), CliError::Usage(m) if m.contains("required"))
        );
        assert!(
            matches!(err(&["--no-default-config", "dump", "-t", "0"]), CliError::Invalid(m) if m.contains("--tree"))
        );
        assert!(matches!(
            err(&["--no-default-config", "dump", "-t", "abc"]),
            CliError::Invalid(_)
        ));
        assert!(matches!(
            err(&["--no-default-config", "check", "--ghost-limit", "x"]),
            CliError::Invalid(_)
        ));
        assert!(matches!(
            err(&["--no-default-config", "frob"]),
            CliError::Usage(_)
        ));
        assert!(matches!(err(&[]), CliError::Usage(_)));
    }

    #[test]
    fn explicit_config_file_is_read_first_then_argv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.conf");
        std::fs::write(&path, "tree 7\nleave-running\nlog-file from-config.log\n").unwrap();
        let cfg = format!("--config={}", path.display());
        let o = run(&["dump", &cfg, "-o", "cli.log"]).options;
        assert_eq!(o.tree, Some(7));
        assert_eq!(o.final_state, FinalState::Running);
        assert_eq!(o.log_file.as_deref(), Some("cli.log"));
        let o = run(&["dump", "--config", path.to_str().unwrap()]).options;
        assert_eq!(o.log_file.as_deref(), Some("from-config.log"));
    }

    #[test]
    fn broken_or_missing_explicit_config_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.conf");
        std::fs::write(&path, "log-file a b\n").unwrap();
        let cfg = format!("--config={}", path.display());
        assert!(matches!(
            err(&["dump", &cfg, "-t", "1"]),
            CliError::Invalid(_)
        ));
        assert!(matches!(
            err(&["dump", "--config=/nonexistent.conf", "-t", "1"]),
            CliError::Invalid(_)
        ));
        std::fs::write(&path, "no-such-option\n").unwrap();
        assert!(matches!(
            err(&["dump", &cfg, "-t", "1"]),
            CliError::Usage(_)
        ));
    }
}
