//! `criu check`: probes this kernel for what checkpoint/restore needs.
//!
//! Without `--feature`, the base checks run first and the first failure ends the check with
//! "Does not look good." (exit 1). `--extra` and `--experimental` add checks whose failures
//! only turn the verdict into "Looks good but some kernel features are missing ..." (exit 1).
//! `--feature NAME` runs one named check: "NAME is supported" and exit 0, or exit 1.

mod table;
mod userspace;

#[cfg(test)]
mod tests;

use criu_sys::probe::ProbeError;
use table::{Check, Level};

pub const LOOKS_GOOD: &str = "Looks good.";
pub const LOOKS_MAYBE: &str = "Looks good but some kernel features are missing\n\
which, depending on your process tree, may cause\n\
dump or restore failure.";
pub const LOOKS_BAD: &str = "Does not look good.";

/// What `criu check` was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRequest {
    /// `--feature NAME` values; when any is given only those are checked.
    pub features: Vec<String>,
    /// `--extra` (or `--all`).
    pub extra: bool,
    /// `--experimental` (or `--all`).
    pub experimental: bool,
}

/// Every name `--feature` accepts, in the order `--feature list` prints them.
pub fn feature_names() -> Vec<&'static str> {
    table::FEATURES.iter().map(|f| f.name).collect()
}

pub fn is_known_feature(name: &str) -> bool {
    table::feature(name).is_some()
}

/// What a run of the base, `--extra` and `--experimental` checks found (every failure is
/// also logged as it is met).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The base check that failed: it ends the run ("Does not look good.").
    pub base_failed: Option<&'static str>,
    /// The `--extra`/`--experimental` checks that failed, in the order they ran.
    pub missing: Vec<&'static str>,
}

/// Runs the check; prints the verdict on stdout and returns the exit code.
pub fn run(req: &CheckRequest) -> i32 {
    if !req.features.is_empty() {
        return run_features(&req.features);
    }
    let outcome = evaluate(req);
    if outcome.base_failed.is_some() {
        tracing::warn!("{LOOKS_BAD}");
        return 1;
    }
    if outcome.missing.is_empty() {
        println!("{LOOKS_GOOD}");
        0
    } else {
        println!("{LOOKS_MAYBE}");
        1
    }
}

/// Runs the base checks (up to the first failure), then those `req` adds.
pub(crate) fn evaluate(req: &CheckRequest) -> Outcome {
    let mut outcome = Outcome::default();
    for (name, check) in table::BASE {
        if let Err(e) = check() {
            tracing::error!("{name}: {e}");
            outcome.base_failed = Some(*name);
            return outcome;
        }
    }
    let mut names: Vec<&'static str> = Vec::new();
    if req.extra {
        names.extend(table::EXTRA.iter().copied());
        if userspace::apparmor_active() {
            names.push("apparmor_stacking");
        }
    }
    if req.experimental {
        names.extend(table::EXPERIMENTAL.iter().copied());
    }
    for name in names {
        if !run_named(name) {
            outcome.missing.push(name);
        }
    }
    // Optional: only reported, never part of the verdict.
    if let Err(e) = criu_sys::probe::ptrace::hw_breakpoints() {
        tracing::warn!("Hardware breakpoints don't seem to work: {e}");
    }
    outcome
}

fn run_features(names: &[String]) -> i32 {
    for name in names {
        let Some(feature) = table::feature(name) else {
            tracing::error!("Unknown feature {name}");
            return 1;
        };
        if let Err(e) = (feature.check)() {
            report(name, feature.level, &e);
            return 1;
        }
        println!("{name} is supported");
    }
    0
}

/// Runs one `--extra`/`--experimental` check by name; false if it failed.
fn run_named(name: &str) -> bool {
    let (check, level): (Check, Level) = match table::feature(name) {
        Some(f) => (f.check, f.level),
        None => match table::EXTRA_ONLY.iter().find(|(n, _, _)| *n == name) {
            Some((_, check, level)) => (*check, *level),
            None => {
                tracing::error!("BUG: no check named {name}");
                return false;
            }
        },
    };
    match check() {
        Ok(()) => true,
        Err(e) => {
            report(name, level, &e);
            false
        }
    }
}

fn report(name: &str, level: Level, e: &ProbeError) {
    match level {
        Level::Error => tracing::error!("{name}: {e}"),
        Level::Warn => tracing::warn!("{name}: {e}"),
    }
}

/// `criu check` as the command line asks for it; `--feature list` prints the names.
pub fn run_options(o: &crate::cli::Options) -> i32 {
    if o.features.iter().any(|f| f == "list") {
        print_feature_list();
        return 0;
    }
    let req = CheckRequest {
        features: o.features.clone(),
        extra: o.check_extra,
        experimental: o.check_experimental,
    };
    run(&req)
}

/// `--feature list`: every feature name, wrapped at 80 columns.
fn print_feature_list() {
    let mut line = String::new();
    for name in feature_names() {
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
