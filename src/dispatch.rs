//! Sends a parsed invocation to its command.

use crate::app::Dirs;
use crate::cli::{Command, Invocation};

pub fn run(inv: &Invocation, dirs: &Dirs) -> i32 {
    let _ = dirs;
    match &inv.command {
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
