//! `criu --help` and `criu COMMAND --help`: the options grouped as the man page groups them.

use crate::cli::docs::{Group, COMMANDS};

/// The help text; with a command, only the options that command takes.
pub fn text(command: Option<&str>) -> String {
    let mut out = String::from(crate::cli::usage::SHORT);
    out += "\nBoolean long options also take a --no- prefix that turns them off\n";
    out += "(for example --display-stats and --no-display-stats).\n";
    for group in Group::ALL {
        let rows: Vec<String> = super::options()
            .filter(|(_, d)| d.group == group)
            .filter(|(_, d)| {
                command.is_none_or(|c| d.commands.is_empty() || d.commands.contains(&c))
            })
            .map(|(s, d)| {
                let mut help = d.help.to_string();
                if let Some(def) = d.default {
                    help += &format!(" (default: {def})");
                }
                format!("  {:<30} {help}\n", super::synopsis(s, &d))
            })
            .collect();
        if !rows.is_empty() {
            out += &format!("\n{}:\n{}", group.title(), rows.concat());
        }
    }
    out
}

/// The command word among `words`, if one is a command.
pub fn command_of(words: &[String]) -> Option<&str> {
    words
        .iter()
        .map(String::as_str)
        .find(|w| COMMANDS.iter().any(|(c, _)| c == w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_in_the_help_and_commands_filter_it() {
        let all = text(None);
        for (spec, _) in crate::docs::options() {
            assert!(all.contains(&format!("--{}", spec.long)), "--{}", spec.long);
        }
        let check = text(Some("check"));
        assert!(check.contains("--feature NAME"));
        assert!(!check.contains("--tcp-established"));
        assert!(text(Some("dump")).contains("-t|--tree PID"));
        assert!(all.contains("--manage-cgroups[=MODE]"));
    }
}
