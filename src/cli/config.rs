//! CRIU configuration files: one option per line without the leading dashes, an optional value
//! after blanks (double quotes keep blanks, `\"` is a quote), `#` starts a comment.
//! Sources in order: /etc/criu/default.conf, ~/.criu/default.conf (both skipped with
//! `--no-default-config` or `--config`), `$CRIU_CONFIG_FILE`, then `--config FILE`.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("config {path}: line {line}: unsupported configuration file format: {text}")]
    Format {
        path: String,
        line: usize,
        text: String,
    },
    #[error("config {path}: cannot read: {reason}")]
    Read { path: String, reason: String },
}

/// Turns a config file's text into command-line words (`--name`, `value`).
pub fn words_of(text: &str, path: &str) -> Result<Vec<String>, ConfigError> {
    let mut words = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || ConfigError::Format {
            path: path.to_string(),
            line: n + 1,
            text: raw.to_string(),
        };
        let (name, rest) = match line.find(char::is_whitespace) {
            Some(at) => (&line[..at], line[at..].trim_start()),
            None => (line, ""),
        };
        words.push(format!("--{name}"));
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        let (value, tail) = if let Some(quoted) = rest.strip_prefix('"') {
            split_quoted(quoted).ok_or_else(bad)?
        } else {
            match rest.find(char::is_whitespace) {
                Some(at) => (rest[..at].to_string(), &rest[at..]),
                None => (rest.to_string(), ""),
            }
        };
        let tail = tail.trim_start();
        if !(tail.is_empty() || tail.starts_with('#')) {
            return Err(bad());
        }
        words.push(value);
    }
    Ok(words)
}

/// Splits `text` (after an opening quote) at the closing unescaped quote.
fn split_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some((_, '"'))) => {
                value.push('"');
                chars.next();
            }
            '"' => return Some((value, &text[at + 1..])),
            _ => value.push(c),
        }
    }
    None
}

/// Which config files to read before the command line.
pub fn sources(no_default: bool, explicit: Option<&str>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if !no_default {
        files.push(PathBuf::from("/etc/criu/default.conf"));
        if let Some(home) = std::env::var_os("HOME") {
            files.push(Path::new(&home).join(".criu/default.conf"));
        }
    }
    if let Some(env) = std::env::var_os("CRIU_CONFIG_FILE") {
        files.push(PathBuf::from(env));
    }
    if let Some(path) = explicit {
        files.push(PathBuf::from(path));
    }
    files
}

/// Reads one config file; a default file that does not exist is no error, an explicit one is.
pub fn read(path: &Path, must_exist: bool) -> Result<Vec<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => words_of(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => Ok(Vec::new()),
        Err(e) => Err(ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_values_comments_and_quotes() {
        let text = "# a comment\n\
                    tcp-established\n\
                    \n\
                    log-file   dump.log   # trailing comment\n\
                    lsm-profile \"apparmor:my profile\"\n\
                    action-script \"say \\\"hi\\\"\"\n\
                    \tleave-running\n";
        assert_eq!(
            words_of(text, "t").unwrap(),
            vec![
                "--tcp-established",
                "--log-file",
                "dump.log",
                "--lsm-profile",
                "apparmor:my profile",
                "--action-script",
                "say \"hi\"",
                "--leave-running"
            ]
        );
    }

    #[test]
    fn empty_quoted_value() {
        assert_eq!(words_of("root \"\"", "t").unwrap(), vec!["--root", ""]);
    }

    #[test]
    fn extra_words_are_rejected() {
        assert!(matches!(
            words_of("log-file a b", "t"),
            Err(ConfigError::Format { line: 1, .. })
        ));
        assert!(matches!(
            words_of("root \"open", "t"),
            Err(ConfigError::Format { .. })
        ));
        assert!(matches!(
            words_of("root \"a\" b", "t"),
            Err(ConfigError::Format { .. })
        ));
    }

    #[test]
    fn explicit_config_replaces_default_files() {
        let with_default = sources(false, None);
        assert!(with_default
            .iter()
            .any(|p| p == Path::new("/etc/criu/default.conf")));
        let explicit = sources(true, Some("/tmp/x.conf"));
        assert!(!explicit
            .iter()
            .any(|p| p == Path::new("/etc/criu/default.conf")));
        assert_eq!(explicit.last().unwrap(), Path::new("/tmp/x.conf"));
    }

    #[test]
    fn missing_default_file_is_fine_missing_explicit_is_not() {
        assert_eq!(
            read(Path::new("/nonexistent/criu.conf"), false).unwrap(),
            Vec::<String>::new()
        );
        assert!(read(Path::new("/nonexistent/criu.conf"), true).is_err());
    }
}
