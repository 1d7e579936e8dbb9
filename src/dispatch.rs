//! Sends a parsed invocation to its command.

use crate::app::Dirs;
use crate::cli::{Command, Invocation};
use crate::commands;

pub fn run(inv: &Invocation, dirs: &Dirs) -> i32 {
    let o = &inv.options;
    // Options set but not honoured, and commands not implemented, stop here (see `support`).
    let refused = commands::support::refusals(&inv.command, o);
    if !refused.is_empty() {
        for message in &refused {
            tracing::error!("{message}");
        }
        return 1;
    }
    if matches!(
        inv.command,
        Command::Dump | Command::PreDump | Command::Restore { .. } | Command::Check
    ) {
        if let Err(e) = commands::privileges::check(inv.command.name(), o.unprivileged) {
            tracing::error!("{e}");
            return 1;
        }
    }
    match &inv.command {
        Command::Check => commands::check::run_options(o),
        Command::Exec { syscall } => match o.tree {
            Some(pid) => commands::exec::run(pid, syscall),
            None => {
                tracing::error!("exec: pid not specified (-t PID)");
                1
            }
        },
        Command::Dump => commands::dump::run(o, dirs),
        Command::PreDump => commands::dump::run_pre(o, dirs),
        Command::Restore { .. } => commands::restore::run(o, dirs),
        Command::CpuinfoDump => commands::cpuinfo::dump(&dirs.images),
        Command::CpuinfoCheck => commands::cpuinfo::check(&dirs.images, o.cpu_cap),
        Command::Show => {
            tracing::error!("The \"show\" action is deprecated by the CRIT utility.");
            tracing::error!("To view an image use the \"crit decode -i $name --pretty\" command.");
            1
        }
        Command::Swrk { fd } => crate::rpc::swrk(*fd),
        Command::Service => crate::rpc::serve(o, dirs),
        Command::PageServer => commands::page_server::run(o, dirs),
        Command::Dedup => commands::dedup::run(&dirs.images),
        // Refused above, with the options they were given.
        Command::LazyPages => {
            tracing::error!("{}: not supported yet by this criu", inv.command.name());
            1
        }
    }
}
