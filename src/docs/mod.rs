//! Everything a user reads about the options, made from the one option table
//! (`cli::table`) and its documentation (`cli::docs`): `--help`, the criu(8) man page and the
//! bash, zsh and fish completions. `cargo run --example gen_docs` writes the man pages and
//! completions under `docs/`; a test keeps those files equal to what this code makes.

pub mod completions;
pub mod help;
pub mod man;

use crate::cli::docs::{doc, OptDoc};
use crate::cli::table::{OptSpec, OPTIONS};

/// Every generated file, by its path under `docs/`.
pub fn files() -> Vec<(&'static str, String)> {
    vec![
        ("man/criu.8", man::criu_8()),
        ("man/crit.1", man::crit_1()),
        ("completions/criu.bash", completions::bash()),
        ("completions/_criu", completions::zsh()),
        ("completions/criu.fish", completions::fish()),
    ]
}

/// The documented options, in table order.
pub fn options() -> impl Iterator<Item = (&'static OptSpec, OptDoc)> {
    OPTIONS.iter().map(|s| (s, doc(s.id)))
}

/// How an option is written in help: `-t|--tree PID`, `--cpu-cap[=CAP,...]`.
pub fn synopsis(spec: &OptSpec, d: &OptDoc) -> String {
    let mut s = match spec.short {
        Some(c) => format!("-{c}|--{}", spec.long),
        None => format!("--{}", spec.long),
    };
    if let Some(arg) = d.arg {
        if arg.starts_with('[') {
            s += &format!("[={}]", &arg[1..arg.len() - 1]);
        } else {
            s += &format!(" {arg}");
        }
    }
    s
}
