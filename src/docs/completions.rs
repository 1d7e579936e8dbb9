//! Shell completions for criu and crit (bash, zsh, fish): commands, options, and the values
//! some options take (`--manage-cgroups` modes, `--feature` names, directories, files).

use crate::cli::docs::{OptDoc, COMMANDS, MANAGE_CGROUPS_MODES, NETWORK_LOCK_METHODS, NS_KINDS};
use crate::cli::table::{HasArg, OptSpec};

/// What to offer after an option that takes an argument.
enum Value {
    Words(Vec<&'static str>),
    Dir,
    File,
    Anything,
}

fn value_of(spec: &OptSpec, d: &OptDoc) -> Value {
    match spec.long {
        "manage-cgroups" => Value::Words(MANAGE_CGROUPS_MODES.to_vec()),
        "network-lock" => Value::Words(NETWORK_LOCK_METHODS.to_vec()),
        "feature" => {
            let mut names = crate::commands::check::feature_names();
            names.push("list");
            Value::Words(names)
        }
        "empty-ns" => Value::Words(vec!["net"]),
        "pre-dump-mode" => Value::Words(vec!["splice", "read"]),
        "file-validation" => Value::Words(vec!["filesize", "buildid"]),
        "join-ns" => Value::Words(NS_KINDS.to_vec()),
        _ => match d.arg {
            Some("DIR") | Some("PATH") => Value::Dir,
            Some("FILE") => Value::File,
            _ => Value::Anything,
        },
    }
}

/// Options that take an argument as the next word (optional ones only attach with `=`).
fn takes_next_word(spec: &OptSpec) -> bool {
    spec.has_arg == HasArg::Required
}

fn all_option_words() -> Vec<String> {
    let mut words = Vec::new();
    for (spec, _) in super::options() {
        if let Some(c) = spec.short {
            words.push(format!("-{c}"));
        }
        words.push(format!("--{}", spec.long));
    }
    words
}

fn command_words() -> Vec<&'static str> {
    COMMANDS.iter().map(|(c, _)| *c).collect()
}

const CRIT_COMMANDS: &str = "decode encode info x show";

pub fn bash() -> String {
    let mut cases = String::new();
    for (spec, d) in super::options().filter(|(s, _)| takes_next_word(s)) {
        let mut names = format!("--{}", spec.long);
        if let Some(c) = spec.short {
            names = format!("-{c}|{names}");
        }
        let action = match value_of(spec, &d) {
            Value::Words(w) => format!("COMPREPLY=($(compgen -W \"{}\" -- \"$cur\"))", w.join(" ")),
            Value::Dir => "COMPREPLY=($(compgen -d -- \"$cur\"))".into(),
            Value::File => "COMPREPLY=($(compgen -f -- \"$cur\"))".into(),
            Value::Anything => "COMPREPLY=()".into(),
        };
        cases += &format!("        {names}) {action}; return ;;\n");
    }
    format!(
        "# bash completion for criu and crit (generated from criu's option table)\n\
_criu() {{\n\
    local cur=\"${{COMP_WORDS[COMP_CWORD]}}\" prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
    case \"$prev\" in\n{cases}    esac\n\
    case \"$cur\" in\n\
        --manage-cgroups=*) COMPREPLY=($(compgen -P --manage-cgroups= -W \"{modes}\" -- \"${{cur#*=}}\")); return ;;\n\
        -*) COMPREPLY=($(compgen -W \"{opts}\" -- \"$cur\")); return ;;\n\
    esac\n\
    local w\n\
    for w in \"${{COMP_WORDS[@]:1:COMP_CWORD-1}}\"; do\n\
        case \" {cmds} \" in *\" $w \"*) COMPREPLY=(); return ;; esac\n\
    done\n\
    COMPREPLY=($(compgen -W \"{cmds}\" -- \"$cur\"))\n\
}}\n\
complete -F _criu criu\n\
\n\
_crit() {{\n\
    local cur=\"${{COMP_WORDS[COMP_CWORD]}}\" prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
    case \"$prev\" in\n\
        -i|--in|info|show) COMPREPLY=($(compgen -f -X '!*.img' -- \"$cur\") $(compgen -d -- \"$cur\")); return ;;\n\
        -o|--out) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n\
        x) COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n\
    esac\n\
    if [ \"$COMP_CWORD\" -eq 1 ]; then\n\
        COMPREPLY=($(compgen -W \"{crit} -h --help --version\" -- \"$cur\"))\n\
    elif [ \"${{COMP_WORDS[1]}}\" = x ] && [ \"$COMP_CWORD\" -eq 3 ]; then\n\
        COMPREPLY=($(compgen -W \"ps fds mems rss\" -- \"$cur\"))\n\
    else\n\
        COMPREPLY=($(compgen -W \"-i --in -o --out --pretty --nopl -h --help\" -- \"$cur\"))\n\
    fi\n\
}}\n\
complete -F _crit crit\n",
        modes = MANAGE_CGROUPS_MODES.join(" "),
        opts = all_option_words().join(" "),
        cmds = command_words().join(" "),
        crit = CRIT_COMMANDS,
    )
}

/// zsh's `_arguments` spec of one option.
fn zsh_spec(spec: &OptSpec, d: &OptDoc) -> String {
    let help = d.help.replace('\'', "'\\''").replace([':', '[', ']'], " ");
    let value = if takes_next_word(spec) {
        let arg = d.arg.unwrap_or("ARG").replace(':', " ");
        match value_of(spec, d) {
            Value::Words(w) => format!(":{arg}:({})", w.join(" ")),
            Value::Dir => format!(":{arg}:_files -/"),
            Value::File => format!(":{arg}:_files"),
            Value::Anything => format!(":{arg}: "),
        }
    } else if spec.has_arg == HasArg::Optional {
        match value_of(spec, d) {
            Value::Words(w) => format!("=-::value:({})", w.join(" ")),
            _ => "=-::value: ".into(),
        }
    } else {
        String::new()
    };
    let mut out = format!("    '--{}[{help}]{value}' \\\n", spec.long);
    if let Some(c) = spec.short {
        let value = value.replacen("=-", "-", 1);
        out += &format!("    '-{c}[{help}]{value}' \\\n");
    }
    out
}

pub fn zsh() -> String {
    let mut out = String::from("#compdef criu crit\n# zsh completion for criu and crit (generated from criu's option table)\n\n");
    out += "_criu() {\n  _arguments -s \\\n";
    for (spec, d) in super::options() {
        out += &zsh_spec(spec, &d);
    }
    out += "    '1:command:((";
    for (cmd, what) in COMMANDS {
        out += &format!("{cmd}\\:\"{}\" ", what.replace('\'', "'\\''"));
    }
    out += "))' \\\n    '*::argument: '\n}\n\n";
    out += "_crit() {\n  _arguments \\\n    '1:command:(decode encode info x show)' \\\n    '(-i --in)'{-i,--in}'[input image]:image:_files -g \"*.img\"' \\\n    '(-o --out)'{-o,--out}'[output file]:file:_files' \\\n    '--pretty[indent the JSON]' \\\n    '--nopl[leave page payloads out]' \\\n    '*:image:_files -g \"*.img\"'\n}\n\n";
    out += "case \"$service\" in\n  criu) _criu \"$@\" ;;\n  crit) _crit \"$@\" ;;\nesac\n";
    out
}

pub fn fish() -> String {
    let mut out =
        String::from("# fish completion for criu and crit (generated from criu's option table)\n");
    let cmds = command_words().join(" ");
    out +=
        &format!("complete -c criu -f -n 'not __fish_seen_subcommand_from {cmds}' -a '{cmds}'\n");
    for (spec, d) in super::options() {
        let mut line = format!("complete -c criu -l {}", spec.long);
        if let Some(c) = spec.short {
            line += &format!(" -s {c}");
        }
        if takes_next_word(spec) {
            line += match value_of(spec, &d) {
                Value::Words(w) => format!(" -x -a '{}'", w.join(" ")),
                Value::Dir => " -x -a '(__fish_complete_directories)'".into(),
                Value::File => " -r -F".into(),
                Value::Anything => " -x".into(),
            }
            .as_str();
        }
        line += &format!(" -d '{}'\n", d.help.replace('\'', "\\'"));
        out += &line;
    }
    out += &format!("complete -c crit -f -n 'not __fish_seen_subcommand_from {CRIT_COMMANDS}' -a '{CRIT_COMMANDS}'\n");
    out += "complete -c crit -s i -l in -r -F -d 'input image'\n";
    out += "complete -c crit -s o -l out -r -F -d 'output file'\n";
    out += "complete -c crit -l pretty -d 'indent the JSON'\n";
    out += "complete -c crit -l nopl -d 'leave page payloads out'\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_in_every_completion() {
        let (b, z, f) = (bash(), zsh(), fish());
        for (spec, _) in crate::docs::options() {
            let long = format!("--{}", spec.long);
            assert!(
                b.contains(&format!("{long} ")) || b.contains(&format!("{long}\"")),
                "bash {long}"
            );
            assert!(z.contains(&format!("'{long}[")), "zsh {long}");
            assert!(f.contains(&format!("-l {} ", spec.long)), "fish {long}");
        }
        assert!(
            b.contains(
                "--manage-cgroups) COMPREPLY=($(compgen -W \"none props soft full strict ignore\""
            ) || b.contains("none props soft full strict ignore")
        );
        assert!(f.contains("mem_dirty_track"));
    }
}
