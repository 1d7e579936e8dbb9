//! The command word (and the words after it that some commands take).

/// One criu command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Dump,
    PreDump,
    Restore {
        /// With `--exec-cmd`: the program to exec after a successful restore.
        exec_cmd: Vec<String>,
    },
    LazyPages,
    Check,
    PageServer,
    Service,
    /// `criu swrk FD`: serve RPC over an inherited socket.
    Swrk {
        fd: i32,
    },
    Dedup,
    CpuinfoDump,
    CpuinfoCheck,
    /// `criu exec -t PID SYSCALL ARGS...`.
    Exec {
        syscall: Vec<String>,
    },
    /// Upstream removed `show` in favour of crit; kept to say so.
    Show,
}

impl Command {
    /// The command's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Dump => "dump",
            Command::PreDump => "pre-dump",
            Command::Restore { .. } => "restore",
            Command::LazyPages => "lazy-pages",
            Command::Check => "check",
            Command::PageServer => "page-server",
            Command::Service => "service",
            Command::Swrk { .. } => "swrk",
            Command::Dedup => "dedup",
            Command::CpuinfoDump => "cpuinfo dump",
            Command::CpuinfoCheck => "cpuinfo check",
            Command::Exec { .. } => "exec",
            Command::Show => "show",
        }
    }
}

/// Picks the command from the positional words. `exec_cmd` is `--exec-cmd`.
pub fn parse(words: &[String], exec_cmd: bool) -> Result<Command, String> {
    let Some((first, rest)) = words.split_first() else {
        return Err("command is required".into());
    };
    let no_more = |cmd: Command| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            let s = if rest.len() > 1 { "s" } else { "" };
            Err(format!("excessive parameter{s} for command {first}"))
        }
    };
    if exec_cmd && first != "restore" {
        return Err("--exec-cmd is available for the restore command only".into());
    }
    match first.as_str() {
        "dump" => no_more(Command::Dump),
        "pre-dump" => no_more(Command::PreDump),
        "restore" if exec_cmd => {
            if rest.is_empty() {
                return Err("--exec-cmd requires a command".into());
            }
            Ok(Command::Restore {
                exec_cmd: rest.to_vec(),
            })
        }
        "restore" => no_more(Command::Restore {
            exec_cmd: Vec::new(),
        }),
        "lazy-pages" => no_more(Command::LazyPages),
        "check" => no_more(Command::Check),
        "page-server" => no_more(Command::PageServer),
        "service" => no_more(Command::Service),
        "dedup" => no_more(Command::Dedup),
        "show" => Ok(Command::Show),
        "swrk" => match rest {
            [fd] => Ok(Command::Swrk {
                fd: super::values::atoi(fd) as i32,
            }),
            _ => Err("Usage: criu swrk <fd>".into()),
        },
        "cpuinfo" => match rest.first().map(String::as_str) {
            None => Err("cpuinfo requires an action: dump or check".into()),
            Some("dump") => no_more_after(rest, "cpuinfo dump").map(|_| Command::CpuinfoDump),
            Some("check") => no_more_after(rest, "cpuinfo check").map(|_| Command::CpuinfoCheck),
            Some(other) => Err(format!("unknown cpuinfo sub-command: {other}")),
        },
        "exec" => {
            if rest.is_empty() {
                return Err("exec requires a syscall name".into());
            }
            Ok(Command::Exec {
                syscall: rest.to_vec(),
            })
        }
        other => Err(format!("unknown command: {other}")),
    }
}

fn no_more_after(rest: &[String], cmd: &str) -> Result<(), String> {
    if rest.len() > 1 {
        Err(format!("excessive parameters for command {cmd}"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(words: &[&str]) -> Result<Command, String> {
        parse(
            &words.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            false,
        )
    }

    #[test]
    fn every_command_word() {
        assert_eq!(p(&["dump"]), Ok(Command::Dump));
        assert_eq!(p(&["pre-dump"]), Ok(Command::PreDump));
        assert_eq!(p(&["restore"]), Ok(Command::Restore { exec_cmd: vec![] }));
        assert_eq!(p(&["check"]), Ok(Command::Check));
        assert_eq!(p(&["page-server"]), Ok(Command::PageServer));
        assert_eq!(p(&["service"]), Ok(Command::Service));
        assert_eq!(p(&["dedup"]), Ok(Command::Dedup));
        assert_eq!(p(&["lazy-pages"]), Ok(Command::LazyPages));
        assert_eq!(p(&["swrk", "3"]), Ok(Command::Swrk { fd: 3 }));
        assert_eq!(p(&["cpuinfo", "dump"]), Ok(Command::CpuinfoDump));
        assert_eq!(p(&["cpuinfo", "check"]), Ok(Command::CpuinfoCheck));
        assert_eq!(
            p(&["exec", "open", "&/foo", "2"]),
            Ok(Command::Exec {
                syscall: vec!["open".into(), "&/foo".into(), "2".into()]
            })
        );
    }

    #[test]
    fn bad_command_lines() {
        assert!(p(&[]).unwrap_err().contains("required"));
        assert!(p(&["frobnicate"]).unwrap_err().contains("unknown command"));
        assert!(p(&["dump", "x"])
            .unwrap_err()
            .contains("excessive parameter for"));
        assert!(p(&["dump", "x", "y"])
            .unwrap_err()
            .contains("excessive parameters"));
        assert!(p(&["cpuinfo"]).is_err());
        assert!(p(&["cpuinfo", "frob"]).is_err());
        assert!(p(&["swrk"]).is_err());
        assert!(p(&["exec"]).is_err());
    }

    #[test]
    fn exec_cmd_only_with_restore() {
        let words: Vec<String> = ["restore", "sh", "-c", "true"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            parse(&words, true),
            Ok(Command::Restore {
                exec_cmd: vec!["sh".into(), "-c".into(), "true".into()]
            })
        );
        assert!(parse(&["dump".to_string()], true).is_err());
        assert!(parse(&["restore".to_string()], true).is_err());
    }
}
