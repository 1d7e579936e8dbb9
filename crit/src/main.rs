//! `crit`: decode, encode, show, info and explore CRIU images, as CRIU's crit does.

mod args;
mod explore;

use std::io::{Read, Write};
use std::process::ExitCode;

use args::Command;
use criu_proto::json::{decode_image, encode_image, image_info, to_python_json, DecodeOptions};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let command = match args::parse(&argv) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("{}", args::USAGE);
            eprintln!("crit: error: {message}");
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("crit: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Help => {
            println!("{}", args::USAGE);
            Ok(())
        }
        Command::Version => {
            println!("{}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Decode {
            input,
            output,
            pretty,
            no_payload,
        } => {
            let (name, data) = read_input(input.as_deref())?;
            let image = decode_image(&name, &data, DecodeOptions { pretty, no_payload })
                .map_err(|e| e.to_string())?;
            let mut text = to_python_json(&image, pretty.then_some(4));
            // crit ends the JSON with a newline only on stdout.
            if output.is_none() {
                text.push('\n');
            }
            write_output(output.as_deref(), text.as_bytes())
        }
        Command::Encode { input, output } => {
            let (name, data) = read_input(input.as_deref())?;
            let image: serde_json::Value = serde_json::from_slice(&data)
                .map_err(|e| format!("{name}: cannot read JSON: {e}"))?;
            let bytes = encode_image(&name, &image).map_err(|e| e.to_string())?;
            write_output(output.as_deref(), &bytes)
        }
        Command::Info { input } => {
            let (name, data) = read_input(Some(&input))?;
            let info = image_info(&name, &data).map_err(|e| e.to_string())?;
            println!("{}", to_python_json(&info, Some(4)));
            Ok(())
        }
        Command::Explore { dir, what } => {
            let text =
                explore::explore(std::path::Path::new(&dir), &what).map_err(|e| e.to_string())?;
            print!("{text}");
            Ok(())
        }
    }
}

fn read_input(path: Option<&str>) -> Result<(String, Vec<u8>), String> {
    match path {
        Some(path) => std::fs::read(path)
            .map(|d| (path.to_string(), d))
            .map_err(|e| format!("{path}: {e}")),
        None => {
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .map_err(|e| format!("stdin: {e}"))?;
            Ok(("<stdin>".to_string(), data))
        }
    }
}

fn write_output(path: Option<&str>, bytes: &[u8]) -> Result<(), String> {
    match path {
        Some(path) => std::fs::write(path, bytes).map_err(|e| format!("{path}: {e}")),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)
                .and_then(|()| out.flush())
                .map_err(|e| format!("stdout: {e}"))
        }
    }
}
