//! Sends a parsed invocation to its command.

use crate::app::Dirs;
use crate::cli::{Command, Invocation};
use crate::commands;

pub fn run(inv: &Invocation, dirs: &Dirs) -> i32 {
    let o = &inv.options;
    match &inv.command {
        Command::Check => check(o),
        Command::Exec { syscall } => match o.tree {
            Some(pid) => commands::exec::run(pid, syscall),
            None => {
                tracing::error!("exec: pid not specified (-t PID)");
                1
            }
        },
        Command::Dump => commands::dump::run(o, &dirs.images),
        Command::Restore { .. } => commands::restore::run(&inv.command, o, dirs),
        Command::CpuinfoDump => commands::cpuinfo::dump(&dirs.images),
        Command::CpuinfoCheck => commands::cpuinfo::check(&dirs.images, o.cpu_cap),
        Command::Show => {
            tracing::error!("The \"show\" action is deprecated by the CRIT utility.");
            tracing::error!("To view an image use the \"crit decode -i $name --pretty\" command.");
            1
        }
        other => {
            tracing::error!("{}: not supported yet by this criu", other.name());
            1
        }
    }
}

fn check(o: &crate::cli::Options) -> i32 {
    if o.features.iter().any(|f| f == "list") {
        print_feature_list();
        return 0;
    }
    let req = commands::check::CheckRequest {
        features: o.features.clone(),
        extra: o.check_extra,
        experimental: o.check_experimental,
    };
    commands::check::run(&req)
}

/// `--feature list`: every feature name, wrapped at 80 columns.
fn print_feature_list() {
    let mut line = String::new();
    for name in commands::check::feature_names() {
        if !line.is_empty() && line.len() + 1 + name.len() > 80 {
            println!("{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(name);
    }
    println!("{line}");
}
