//! One run of `criu`: parse, set up the work dir and the log, run the command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cli::{self, usage, CliError, Invocation, Parsed};

/// Where a command works: the images dir (absolute) and the work dir (criu's cwd).
#[derive(Debug, Clone)]
pub struct Dirs {
    pub images: PathBuf,
    pub work: PathBuf,
}

/// Runs one invocation and returns the exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let mut words = Vec::with_capacity(args.len());
    for a in args.into_iter().skip(1) {
        match a.into_string() {
            Ok(s) => words.push(s),
            Err(a) => {
                eprintln!("Error: argument {a:?} is not valid UTF-8");
                return 1;
            }
        }
    }
    let inv = match cli::parse(&words) {
        Ok(Parsed::Run(inv)) => inv,
        Ok(Parsed::Help) => {
            print!(
                "{}",
                crate::docs::help::text(crate::docs::help::command_of(&words))
            );
            return 0;
        }
        Ok(Parsed::Version) => {
            print!("{}", usage::version());
            return 0;
        }
        Err(CliError::Usage(message)) => {
            if !message.is_empty() {
                eprintln!("Error: {message}");
            }
            print!("{}{}", usage::SHORT, usage::MORE);
            return 1;
        }
        Err(CliError::Invalid(message)) => {
            eprintln!("Error: {message}");
            return 1;
        }
    };
    // SIGPIPE would kill us on a closed log pipe or socket; we handle write errors instead.
    let _ = criu_sys::signals::ignore_sigpipe();
    let dirs = match setup(&inv) {
        Ok(dirs) => dirs,
        Err(message) => {
            tracing::error!("{message}");
            return 1;
        }
    };
    let log_to_file = inv.options.log_file.as_deref().is_some_and(|f| f != "-");
    let progress = crate::progress::wanted(inv.command.name(), log_to_file);
    if progress {
        crate::progress::start(inv.command.name());
    }
    let rc = crate::dispatch::run(&inv, &dirs);
    if progress {
        crate::progress::finish(rc == 0);
    }
    rc
}

/// The directory criu was started in, before it entered the work dir (a command that starts
/// criu again with the same arguments starts it there).
pub static START_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Resolves the directories, enters the work dir and opens the log, so that the log file
/// exists even when the command fails right away.
pub fn setup(inv: &Invocation) -> Result<Dirs, String> {
    let o = &inv.options;
    let images = absolute(Path::new(o.images_dir.as_deref().unwrap_or(".")));
    let work = o
        .work_dir
        .as_deref()
        .map_or_else(|| images.clone(), |w| absolute(Path::new(w)));
    if let Ok(cwd) = std::env::current_dir() {
        let _ = START_DIR.set(cwd);
    }
    if let Err(e) = std::env::set_current_dir(&work) {
        crate::log::init(o.log_level, None);
        return Err(format!("Can't change directory to {}: {e}", work.display()));
    }
    let log_file = match &o.log_file {
        Some(name) if name != "-" => {
            let name = if o.log_pid {
                format!("{name}.{}", std::process::id())
            } else {
                name.clone()
            };
            match crate::log::open_log_file(Path::new(&name)) {
                Ok(f) => Some(f),
                Err(e) => {
                    crate::log::init(o.log_level, None);
                    return Err(format!(
                        "Can't create log file {}: {e}",
                        work.join(&name).display()
                    ));
                }
            }
        }
        _ => None,
    };
    crate::log::init(o.log_level, log_file);
    tracing::info!(
        "criu-rs {} ({})",
        env!("CARGO_PKG_VERSION"),
        inv.command.name()
    );
    for fd in &inv.close_fds {
        tracing::info!("Closing fd {fd}");
        let _ = nix::unistd::close(*fd);
    }
    let needs_images = !matches!(
        inv.command,
        cli::Command::Service
            | cli::Command::Swrk { .. }
            | cli::Command::Check
            | cli::Command::Exec { .. }
    );
    if needs_images && !images.is_dir() {
        return Err(format!("Couldn't open image dir {}", images.display()));
    }
    Ok(Dirs { images, work })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
