//! A GNU `getopt_long` work-alike: options anywhere (argument permutation), `--` ends options,
//! unique prefixes of long names, `--name=value`, clustered short options, and optional
//! arguments that must be attached (`-v4`, `--cpu-cap=fpu`).

use super::table::{by_short, HasArg, Opt, OptSpec, OPTIONS};

/// One option occurrence, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub id: Opt,
    pub value: Option<String>,
    /// `--no-NAME` was used.
    pub negated: bool,
}

/// The result of scanning one argument vector.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    pub options: Vec<Occurrence>,
    pub positionals: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GetoptError {
    #[error("unrecognized option '--{0}'")]
    UnknownLong(String),
    #[error("option '--{0}' is ambiguous; possibilities: {1}")]
    Ambiguous(String, String),
    #[error("option '--{0}' doesn't allow an argument")]
    UnexpectedArgument(String),
    #[error("option '--{0}' requires an argument")]
    LongNeedsArgument(String),
    #[error("invalid option -- '{0}'")]
    UnknownShort(char),
    #[error("option requires an argument -- '{0}'")]
    ShortNeedsArgument(char),
}

/// A long name as the user may type it: the option itself or its `no-` form.
struct LongName {
    name: String,
    spec: &'static OptSpec,
    negated: bool,
}

fn long_names() -> Vec<LongName> {
    let mut names = Vec::with_capacity(OPTIONS.len() * 2);
    for spec in OPTIONS {
        names.push(LongName {
            name: spec.long.to_string(),
            spec,
            negated: false,
        });
        if spec.negatable {
            names.push(LongName {
                name: format!("no-{}", spec.long),
                spec,
                negated: true,
            });
        }
    }
    names
}

/// Finds a long option by exact name or by a unique prefix, as glibc does: several prefix
/// matches are fine when they all denote the same option and sense.
fn find_long(typed: &str) -> Result<(&'static OptSpec, bool), GetoptError> {
    let names = long_names();
    if let Some(n) = names.iter().find(|n| n.name == typed) {
        return Ok((n.spec, n.negated));
    }
    let matches: Vec<&LongName> = names.iter().filter(|n| n.name.starts_with(typed)).collect();
    match matches.as_slice() {
        [] => Err(GetoptError::UnknownLong(typed.to_string())),
        [first, rest @ ..] => {
            if rest
                .iter()
                .all(|n| n.spec.id == first.spec.id && n.negated == first.negated)
            {
                Ok((first.spec, first.negated))
            } else {
                let all: Vec<String> = matches.iter().map(|n| format!("'--{}'", n.name)).collect();
                Err(GetoptError::Ambiguous(typed.to_string(), all.join(" ")))
            }
        }
    }
}

/// Scans `args` (without the program name).
pub fn scan(args: &[String]) -> Result<Scan, GetoptError> {
    let mut out = Scan::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            out.positionals.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (typed, attached) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let (spec, negated) = find_long(typed)?;
            let value = match (spec.has_arg, attached) {
                (HasArg::No, Some(_)) => {
                    return Err(GetoptError::UnexpectedArgument(spec.long.to_string()))
                }
                (HasArg::No, None) | (HasArg::Optional, None) => None,
                (_, Some(v)) => Some(v),
                (HasArg::Required, None) => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| GetoptError::LongNeedsArgument(spec.long.to_string()))?;
                    i += 1;
                    Some(v.clone())
                }
            };
            out.options.push(Occurrence {
                id: spec.id,
                value,
                negated,
            });
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') {
            let cluster: Vec<char> = arg[1..].chars().collect();
            let mut j = 0;
            while j < cluster.len() {
                let c = cluster[j];
                j += 1;
                let spec = by_short(c).ok_or(GetoptError::UnknownShort(c))?;
                let rest: String = cluster[j..].iter().collect();
                let value = match spec.has_arg {
                    HasArg::No => None,
                    HasArg::Optional => (!rest.is_empty()).then_some(rest),
                    HasArg::Required if !rest.is_empty() => Some(rest),
                    HasArg::Required => {
                        let v = args.get(i).ok_or(GetoptError::ShortNeedsArgument(c))?;
                        i += 1;
                        Some(v.clone())
                    }
                };
                let takes_rest = value.is_some();
                out.options.push(Occurrence {
                    id: spec.id,
                    value,
                    negated: false,
                });
                if takes_rest {
                    break;
                }
            }
            continue;
        }
        out.positionals.push(arg.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(args: &[&str]) -> Result<Scan, GetoptError> {
        scan(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    fn occ(id: Opt, value: Option<&str>) -> Occurrence {
        Occurrence {
            id,
            value: value.map(str::to_string),
            negated: false,
        }
    }

    #[test]
    fn options_before_and_after_the_command() {
        let r = s(&["-t", "42", "dump", "-D", "/img", "--leave-running"]).unwrap();
        assert_eq!(r.positionals, vec!["dump"]);
        assert_eq!(
            r.options,
            vec![
                occ(Opt::Tree, Some("42")),
                occ(Opt::ImagesDir, Some("/img")),
                occ(Opt::LeaveRunning, None)
            ]
        );
    }

    #[test]
    fn long_with_equals_or_separate_word() {
        let r = s(&["--images-dir=/a", "--log-file", "x.log"]).unwrap();
        assert_eq!(
            r.options,
            vec![
                occ(Opt::ImagesDir, Some("/a")),
                occ(Opt::LogFile, Some("x.log"))
            ]
        );
    }

    #[test]
    fn required_argument_may_start_with_a_dash() {
        let r = s(&["--log-file", "-weird"]).unwrap();
        assert_eq!(r.options, vec![occ(Opt::LogFile, Some("-weird"))]);
    }

    #[test]
    fn combined_short_options() {
        let r = s(&["-jd", "restore"]).unwrap();
        assert_eq!(
            r.options,
            vec![occ(Opt::ShellJob, None), occ(Opt::RestoreDetached, None)]
        );
        let r = s(&["-Dimg"]).unwrap();
        assert_eq!(r.options, vec![occ(Opt::ImagesDir, Some("img"))]);
        let r = s(&["-jt", "5"]).unwrap();
        assert_eq!(
            r.options,
            vec![occ(Opt::ShellJob, None), occ(Opt::Tree, Some("5"))]
        );
    }

    #[test]
    fn verbosity_forms() {
        assert_eq!(s(&["-v"]).unwrap().options, vec![occ(Opt::Verbosity, None)]);
        assert_eq!(
            s(&["-v4"]).unwrap().options,
            vec![occ(Opt::Verbosity, Some("4"))]
        );
        assert_eq!(
            s(&["-vvv"]).unwrap().options,
            vec![occ(Opt::Verbosity, Some("vv"))]
        );
        assert_eq!(
            s(&["--verbosity=3"]).unwrap().options,
            vec![occ(Opt::Verbosity, Some("3"))]
        );
        // An optional argument is never taken from the next word.
        let r = s(&["--verbosity", "3"]).unwrap();
        assert_eq!(r.options, vec![occ(Opt::Verbosity, None)]);
        assert_eq!(r.positionals, vec!["3"]);
        // CRIU's test suite passes this; getopt reads it as -v with a junk argument.
        assert_eq!(
            s(&["-verbosity=0"]).unwrap().options,
            vec![occ(Opt::Verbosity, Some("erbosity=0"))]
        );
    }

    #[test]
    fn optional_arguments() {
        assert_eq!(
            s(&["--cpu-cap"]).unwrap().options,
            vec![occ(Opt::CpuCap, None)]
        );
        assert_eq!(
            s(&["--cpu-cap=^fpu"]).unwrap().options,
            vec![occ(Opt::CpuCap, Some("^fpu"))]
        );
        assert_eq!(
            s(&["--manage-cgroups"]).unwrap().options,
            vec![occ(Opt::ManageCgroups, None)]
        );
        assert_eq!(s(&["-x"]).unwrap().options, vec![occ(Opt::ExtUnixSk, None)]);
        assert_eq!(
            s(&["-x123"]).unwrap().options,
            vec![occ(Opt::ExtUnixSk, Some("123"))]
        );
    }

    #[test]
    fn negated_flags_and_prefixes() {
        let r = s(&["--no-display-stats", "--leave-run"]).unwrap();
        assert_eq!(
            r.options,
            vec![
                Occurrence {
                    id: Opt::DisplayStats,
                    value: None,
                    negated: true
                },
                occ(Opt::LeaveRunning, None)
            ]
        );
        assert!(matches!(s(&["--tls-c"]), Err(GetoptError::Ambiguous(..))));
        // An exact name wins over longer names it prefixes.
        assert_eq!(s(&["--tls"]).unwrap().options, vec![occ(Opt::Tls, None)]);
    }

    #[test]
    fn double_dash_ends_options() {
        let r = s(&["exec", "-t", "1", "--", "close", "-1"]).unwrap();
        assert_eq!(r.positionals, vec!["exec", "close", "-1"]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            s(&["--bogus"]),
            Err(GetoptError::UnknownLong("bogus".into()))
        );
        assert_eq!(s(&["-q"]), Err(GetoptError::UnknownShort('q')));
        assert_eq!(s(&["-t"]), Err(GetoptError::ShortNeedsArgument('t')));
        assert_eq!(
            s(&["--tree"]),
            Err(GetoptError::LongNeedsArgument("tree".into()))
        );
        assert_eq!(
            s(&["--leave-running=1"]),
            Err(GetoptError::UnexpectedArgument("leave-running".into()))
        );
    }

    #[test]
    fn repeated_options_are_all_kept() {
        let r = s(&["-M", "a:b", "--external", "x", "-M", "c:d", "--external=y"]).unwrap();
        let ids: Vec<Opt> = r.options.iter().map(|o| o.id).collect();
        assert_eq!(
            ids,
            vec![
                Opt::ExtMountMap,
                Opt::External,
                Opt::ExtMountMap,
                Opt::External
            ]
        );
    }
}
