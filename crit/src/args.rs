//! Command line of crit: the same subcommands and options as CRIU's crit.

pub const USAGE: &str = "usage: crit [-h] [--version] {decode,encode,info,x,show} ...

  decode [-i IN] [-o OUT] [--pretty]   convert criu image from binary type to json
  encode [-i IN] [-o OUT]              convert criu image from json type to binary
  info IN                              show info about image
  x DIR {ps,fds,mems,rss}              explore image dir
  show IN [--nopl]                     convert criu image from binary to human-readable json";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Decode {
        input: Option<String>,
        output: Option<String>,
        pretty: bool,
        no_payload: bool,
    },
    Encode {
        input: Option<String>,
        output: Option<String>,
    },
    Info {
        input: String,
    },
    Explore {
        dir: String,
        what: String,
    },
}

pub fn parse(argv: &[String]) -> Result<Command, String> {
    let Some((sub, rest)) = argv.split_first() else {
        return Err("too few arguments".into());
    };
    let mut input = None;
    let mut output = None;
    let mut pretty = false;
    let mut no_payload = false;
    let mut positional = Vec::new();
    let mut iter = rest.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("argument {name}: expected one argument"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-i" | "--in" if matches!(sub.as_str(), "decode" | "encode") => {
                input = Some(value(arg)?)
            }
            "-o" | "--out" if matches!(sub.as_str(), "decode" | "encode") => {
                output = Some(value(arg)?)
            }
            "--pretty" if sub == "decode" => pretty = true,
            "--nopl" if sub == "show" => no_payload = true,
            other if other.starts_with('-') && other.len() > 1 => {
                return Err(format!("unrecognized arguments: {other}"))
            }
            other => positional.push(other.to_string()),
        }
    }
    let command = match sub.as_str() {
        "-h" | "--help" => Command::Help,
        "--version" => Command::Version,
        "decode" | "encode" if !positional.is_empty() => {
            return Err(format!("unrecognized arguments: {}", positional.join(" ")))
        }
        "decode" => Command::Decode {
            input,
            output,
            pretty,
            no_payload: false,
        },
        "encode" => Command::Encode { input, output },
        "show" | "info" => {
            if positional.len() > 1 {
                return Err(format!(
                    "unrecognized arguments: {}",
                    positional[1..].join(" ")
                ));
            }
            let input = positional
                .pop()
                .ok_or("the following arguments are required: in")?;
            if sub == "info" {
                Command::Info { input }
            } else {
                Command::Decode {
                    input: Some(input),
                    output: None,
                    pretty: true,
                    no_payload,
                }
            }
        }
        "x" => {
            if positional.len() != 2 {
                return Err("the following arguments are required: dir, what".into());
            }
            let what = positional.pop().unwrap_or_default();
            if !matches!(what.as_str(), "ps" | "fds" | "mems" | "rss") {
                return Err(format!("argument what: invalid choice: '{what}' (choose from 'ps', 'fds', 'mems', 'rss')"));
            }
            Command::Explore {
                dir: positional.pop().unwrap_or_default(),
                what,
            }
        }
        other => return Err(format!("invalid choice: '{other}'")),
    };
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_crit_commands() {
        assert_eq!(
            p(&["decode", "-i", "a.img", "--pretty"]).unwrap(),
            Command::Decode {
                input: Some("a.img".into()),
                output: None,
                pretty: true,
                no_payload: false
            }
        );
        assert_eq!(
            p(&["encode", "--in", "a.json", "-o", "b.img"]).unwrap(),
            Command::Encode {
                input: Some("a.json".into()),
                output: Some("b.img".into())
            }
        );
        assert_eq!(
            p(&["show", "x.img", "--nopl"]).unwrap(),
            Command::Decode {
                input: Some("x.img".into()),
                output: None,
                pretty: true,
                no_payload: true
            }
        );
        assert_eq!(
            p(&["info", "x.img"]).unwrap(),
            Command::Info {
                input: "x.img".into()
            }
        );
        assert_eq!(
            p(&["x", "/d", "ps"]).unwrap(),
            Command::Explore {
                dir: "/d".into(),
                what: "ps".into()
            }
        );
        assert!(p(&["x", "/d", "nope"]).is_err());
        assert!(p(&["decode", "-i"]).is_err());
        assert!(p(&[]).is_err());
        assert!(p(&["frob"]).is_err());
    }
}
